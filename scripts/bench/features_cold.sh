#!/usr/bin/env bash
# A one-off feature extraction at batch 1, as a person runs it after the machine has been idle:
# `captioner features --batch-size 1` over N images against the same work in PyTorch
# (scripts/reference/features_b1.py: import torch, build torchvision's ResNet-50, load the same
# backbone, then PIL + the tutorial's transform + the trunk, image by image). Issue #19, item 2.
#
#   scripts/bench/features_cold.sh [--python /work/pyref/bin/python] [--images 16] [--rounds 3]
#                                  [--pause 5] [--threads 2] [--work DIR]
#
# Each round sleeps --pause seconds before each side, so both start from an idle machine, then runs
# captioner and then PyTorch. Reported per side, medians over the rounds:
#   - command: the whole process's wall time, start to exit (PyTorch's includes `import torch`, listed
#     apart as well);
#   - images: the extraction itself, from the first image read to the last feature (captioner's
#     "computing X s"; the Python script's own clock), and the images/s it makes.
# The corpus is N `captioner synth` scenes (500×375-ish JPEGs), the backbone a random ResNet-50
# (`captioner init-backbone`): speed does not depend on the weights. CAPTIONER_BIN overrides the
# binary (default: target/release/captioner). CI never runs it.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
python=python3 images=16 rounds=3 pause=5 threads=2 work=""
while [ $# -gt 0 ]; do
  case "$1" in
    --python) python="$2"; shift 2 ;;
    --images) images="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --pause) pause="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --work) work="$2"; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
done
bin="${CAPTIONER_BIN:-$root/target/release/captioner}"
[ -x "$bin" ] || (cd "$root" && cargo build --release)
work="${work:-$(mktemp -d)}"
mkdir -p "$work"
corpus="$work/scenes$images"
[ -f "$corpus/captions.txt" ] || "$bin" synth --out "$corpus" --images "$images" --seed 7 --force >/dev/null
[ -f "$work/r50.safetensors" ] || "$bin" init-backbone --arch resnet50 --out "$work/r50.safetensors" >/dev/null
now() { date +%s.%N; }
ours_cmd=() ours_img=() theirs_cmd=() theirs_img=() theirs_import=()
for r in $(seq "$rounds"); do
  rm -rf "$work/cache"
  sleep "$pause"
  t0=$(now)
  line=$(RAYON_NUM_THREADS="$threads" "$bin" features --data "$corpus" --backbone "$work/r50.safetensors" \
    --cache "$work/cache" --batch-size 1 --no-progress 2>&1 | grep -o 'computing [0-9.]* s' | head -1)
  t1=$(now)
  ours_cmd+=("$(echo "$t1 - $t0" | bc -l)")
  ours_img+=("$(echo "$line" | awk '{print $2}')")
  sleep "$pause"
  t0=$(now)
  json=$("$python" "$root/scripts/reference/features_b1.py" --images "$corpus/Images" \
    --backbone "$work/r50.safetensors" --threads "$threads")
  t1=$(now)
  theirs_cmd+=("$(echo "$t1 - $t0" | bc -l)")
  theirs_img+=("$(echo "$json" | "$python" -c 'import json,sys; print(json.load(sys.stdin)["loop_s"])')")
  theirs_import+=("$(echo "$json" | "$python" -c 'import json,sys; print(json.load(sys.stdin)["import_s"])')")
  printf 'round %s: captioner command %.2f s, images %s s; pytorch command %.2f s (import %.2f s), images %.2f s\n' \
    "$r" "${ours_cmd[-1]}" "${ours_img[-1]}" "${theirs_cmd[-1]}" "${theirs_import[-1]}" "${theirs_img[-1]}"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
oc=$(median "${ours_cmd[@]}") oi=$(median "${ours_img[@]}")
tc=$(median "${theirs_cmd[@]}") ti=$(median "${theirs_img[@]}") tm=$(median "${theirs_import[@]}")
echo "features of $images images at batch 1, resnet50, $threads threads, each run after ${pause} s idle, median of $rounds rounds"
printf '%-26s %10s %10s %10s\n' "" captioner pytorch ratio
printf '%-26s %9.2fs %9.2fs %9.2fx\n' "whole command" "$oc" "$tc" "$(echo "$tc / $oc" | bc -l)"
printf '%-26s %10s %9.2fs\n' "  of which import torch" "" "$tm"
printf '%-26s %9.2fs %9.2fs %9.2fx\n' "images (read to feature)" "$oi" "$ti" "$(echo "$ti / $oi" | bc -l)"
printf '%-26s %10.2f %10.2f\n' "  images/s" "$(echo "$images / $oi" | bc -l)" "$(echo "$images / $ti" | bc -l)"
