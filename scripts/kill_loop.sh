#!/usr/bin/env bash
# Kill loop (issue #16): one training run is killed with SIGKILL at KILLS random moments and
# resumed with `train --resume` each time; at the end its files must be bit-identical to an
# uninterrupted run of the same command. The kills land anywhere: while the corpus is read, while
# the feature cache is filled, mid-epoch, while checkpoints are written.
#
#   scripts/kill_loop.sh [--binary target/release/captioner] [--kills 20] [--images 300]
#                        [--epochs 16] [--seed N] [--keep DIR]
#
# Prints one line per kill (when, what the run had written) and a verdict: KILL LOOP PASS when
# best.safetensors, last/ and the metrics (without wall-clock fields) are byte-identical.
set -euo pipefail
command -v jq >/dev/null || { echo "jq is required (apt-get install jq)" >&2; exit 1; }

binary="target/release/captioner" kills=20 images=300 epochs=16 seed=$RANDOM keep=""
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --kills) kills="$2"; shift 2 ;;
    --images) images="$2"; shift 2 ;;
    --epochs) epochs="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    --keep) keep="$2"; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
done
[ -x "$binary" ] || { echo "$binary: not an executable (cargo build --release first)" >&2; exit 2; }
binary="$(cd "$(dirname "$binary")" && pwd)/$(basename "$binary")"
RANDOM=$seed

if [ -n "$keep" ]; then work="$keep"; mkdir -p "$work"; else work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT; fi
cd "$work"
"$binary" synth --out scenes --images "$images" --seed 11 --force >/dev/null
"$binary" init-backbone --arch resnet18 --out backbone.safetensors --seed 3 >/dev/null

train() { # RUN [extra flags]: the same command every time; each run has its own feature cache.
  # exec: started in the background, the subshell becomes captioner itself, so `$!` is the
  # process that SIGKILL must reach (killing a subshell would leave its training running on).
  local run="$1"; shift
  exec "$binary" train --data scenes --backbone backbone.safetensors --arch resnet18 --image-size 64 \
    --run "$run" --epochs "$epochs" --patience 0 --batch-size 32 --no-progress "$@"
}

echo "== uninterrupted reference run ($images scenes, $epochs epochs)"
start=$(date +%s.%N)
(train reference) >reference.log 2>&1 || { cat reference.log >&2; exit 1; }
reference_s=$(echo "$(date +%s.%N) - $start" | bc)
echo "took ${reference_s} s"

echo "== the same run, killed $kills times (seed $seed)"
# Each attempt lives for a random time of up to two epochs (plus start-up), so attempts die during
# start-up, while the cache fills, mid-epoch and while checkpoints are written, and the run still
# advances from kill to kill (a kill loses the epoch in flight).
ms_total=$(printf '%.0f' "$(echo "$reference_s * 1000" | bc)")
ms_span=$(( 2 * ms_total / epochs + 500 ))
# Attempts go on until KILLS of them were really killed; one that ends by itself means the run
# finished first, and the loop fails (more --epochs make room for more kills).
i=0 killed=0
while [ "$killed" -lt "$kills" ]; do
  i=$((i + 1))
  delay_ms=$(( 100 + (RANDOM * 32768 + RANDOM) % ms_span ))
  train killed --resume >"killed-$i.log" 2>&1 &
  pid=$!
  sleep "$(echo "$delay_ms / 1000" | bc -l)"
  if kill -KILL "$pid" 2>/dev/null; then outcome="killed"; killed=$((killed + 1)); else outcome="had already finished"; fi
  rc=0; wait "$pid" 2>/dev/null || rc=$?
  # An attempt that ended by itself must have succeeded (the run was complete): an error is a
  # failure of resume.
  if [ "$outcome" != killed ] && [ "$rc" != 0 ]; then
    echo "attempt $i failed by itself (exit $rc):" >&2; cat "killed-$i.log" >&2; exit 1
  fi
  pgrep -f "run killed" >/dev/null && { echo "attempt $i left a training running" >&2; exit 1; }
  epochs_done=0; [ -f killed/metrics.jsonl ] && epochs_done=$(wc -l < killed/metrics.jsonl)
  cached=0; [ -d killed/features ] && cached=$(find killed/features -type f | wc -l)
  printf 'attempt %2d, %6d ms: %s (%d kills); epochs in metrics.jsonl: %s; cache files: %s\n' \
    "$i" "$delay_ms" "$outcome" "$killed" "$epochs_done" "$cached"
  if [ "$outcome" != killed ]; then
    echo "KILL LOOP FAIL: the run finished after $killed kills; rerun with more --epochs" >&2
    exit 1
  fi
done
echo "== final resume to the end"
(train killed --resume) >final.log 2>&1 || { cat final.log >&2; exit 1; }

# Compare what the run keeps. Wall-clock fields (epoch seconds, tokens/s, the interrupted epoch's
# seconds so far) differ between any two runs: jq drops them; paths name the run: sed folds them.
wall_clock() { # FILE: the JSON or JSON-lines file without wall-clock keys, sorted keys
  jq -S -c 'del(.seconds, .tokens_per_s, .partial_seconds)
            | if .history then .history |= map(del(.seconds, .tokens_per_s)) else . end' "$1" \
    | sed 's#killed/#RUN/#g; s#reference/#RUN/#g'
}
status=0
same() { # LABEL: report a comparison result
  if [ "$1" = 0 ]; then echo "same   $2"; else echo "DIFFER $2"; status=1; fi
}
for f in best.safetensors vocab.json split.json features/features.safetensors features/images.json \
         $(cd reference && find last -name '*.safetensors' | sort); do
  rc=0; cmp -s "reference/$f" "killed/$f" || rc=$?; same $rc "$f"
done
for f in config.json metrics.jsonl last/state.json; do
  rc=0; diff <(wall_clock "reference/$f") <(wall_clock "killed/$f") >/dev/null || rc=$?; same $rc "$f (without wall-clock fields)"
done
if [ $status -eq 0 ]; then echo "KILL LOOP PASS: $kills kills, bit-identical"; else echo "KILL LOOP FAIL"; exit 1; fi
