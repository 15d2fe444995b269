#!/usr/bin/env bash
# Sharded against single-process on one corpus (issue #18's check): feature extraction in N
# shards into one cache, then the merge, must give the single run's files byte for byte; captioning
# in N shards (--format jsonl) must give the single run's lines once sorted. Prints the timings.
#
#   scripts/scale/shard_equality.sh [--bin target/release/captioner] [--images 2000] [--shards 4]
#                                   [--keep DIR]   (keep the work folder: corpus, caches, model)
#
# A ResNet-18 with random weights at 112x112 (the demo's backbone) keeps it to minutes on 2 cores;
# the model for captioning is trained for 3 epochs on the single run's features.
set -euo pipefail
bin=target/release/captioner images=2000 shards=4 keep=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin="$2"; shift 2 ;;
    --images) images="$2"; shift 2 ;;
    --shards) shards="$2"; shift 2 ;;
    --keep) keep="$2"; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
done
bin="$(realpath "$bin")"
if [ -n "$keep" ]; then mkdir -p "$keep"; work="$(realpath "$keep")"; else work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT; fi
cd "$work"
# The scheduler's variables would shard the single runs too.
unset SLURM_ARRAY_TASK_ID SLURM_ARRAY_TASK_COUNT SLURM_ARRAY_TASK_MIN JOB_COMPLETION_INDEX
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

echo "== $images scenes, $shards shards, in $work ($(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
[ -f scenes/captions.txt ] || "$bin" synth --images "$images" --out scenes >/dev/null
[ -f r18.safetensors ] || "$bin" init-backbone --arch resnet18 --seed 7 --out r18.safetensors >/dev/null
feat=(--data scenes --backbone r18.safetensors --arch resnet18 --image-size 112 --no-progress)
rm -rf single sharded
t0=$(now); "$bin" features "${feat[@]}" --cache single >/dev/null; t1=$(now)
single_s=$(secs "$t0" "$t1")
shard_times=()
for ((i = 0; i < shards; i++)); do
  a=$(now); "$bin" features "${feat[@]}" --cache sharded --shard "$i/$shards" 2>/dev/null | sed 's/^/   /'; b=$(now)
  shard_times+=("$(secs "$a" "$b")")
done
a=$(now); "$bin" features "${feat[@]}" --cache sharded | sed 's/^/   /'; b=$(now)
merge_s=$(secs "$a" "$b")
features_equal=yes
for f in features.safetensors images.json cache.json; do
  if cmp -s "single/$f" "sharded/$f"; then echo "   $f: identical ($(stat -c %s "single/$f") bytes, sha256 $(sha256sum "single/$f" | cut -c1-16))"
  else echo "   $f: DIFFERS"; features_equal=no; fi
done

[ -f run/best.safetensors ] || "$bin" train --data scenes --backbone r18.safetensors --arch resnet18 --image-size 112 \
  --cache single --run run --epochs 3 --no-progress >/dev/null 2>&1
a=$(now); "$bin" caption --model run --format jsonl --no-progress scenes/Images > single.jsonl; b=$(now)
caption_single_s=$(secs "$a" "$b")
caption_times=()
for ((i = 0; i < shards; i++)); do
  a=$(now); "$bin" caption --model run --format jsonl --no-progress --shard "$i/$shards" scenes/Images > "shard-$i.jsonl" 2>/dev/null; b=$(now)
  caption_times+=("$(secs "$a" "$b") s, $(wc -l < "shard-$i.jsonl") lines")
done
sort single.jsonl > single.sorted
cat shard-*.jsonl | sort > sharded.sorted
captions_equal=no
cmp -s single.sorted sharded.sorted && captions_equal=yes

echo "== results"
echo "FEATURES_BIT_EQUAL $features_equal (single run ${single_s} s; shards ${shard_times[*]} s; merge ${merge_s} s)"
echo "CAPTIONS_EQUAL_SORTED $captions_equal ($(wc -l < single.sorted) lines; single ${caption_single_s} s; shards: ${caption_times[*]})"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
[ "$features_equal" = yes ] && [ "$captions_equal" = yes ]
