#!/usr/bin/env bash
# End-to-end training time, captioner against the seed's recipe, on the same 2000-scene corpus and
# the same CPU (issue #8, item 4). Takes ~10 minutes on 2 cores; CI never runs it.
#
#   scripts/bench/end_to_end.sh [--python /work/pyref/bin/python] [--images 2000] [--batches 20] [--work DIR]
#
# 1. `captioner train` with its defaults (ResNet-50 features computed once and cached, then the
#    decoder with early stopping), wall time including feature extraction, with a random-init
#    ResNet-50 (the compute is that of the pretrained one).
# 2. scripts/reference/seed_recipe.py: the tutorial's loop (every caption's image through ResNet-50,
#    every epoch), timed for --batches batches and extrapolated to one epoch, to 50 epochs, and to
#    the epoch where captioner's run found its best validation loss.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
python=python3 images=2000 batches=20 work=""
while [ $# -gt 0 ]; do
  case "$1" in
    --python) python="$2"; shift 2 ;;
    --images) images="$2"; shift 2 ;;
    --batches) batches="$2"; shift 2 ;;
    --work) work="$2"; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
done
bin="$root/target/release/captioner"
[ -x "$bin" ] || (cd "$root" && cargo build --release)
work="${work:-$(mktemp -d)}"
mkdir -p "$work"
"$bin" synth --out "$work/scenes" --images "$images" --seed 5 --force >/dev/null
"$bin" init-backbone --arch resnet50 --out "$work/r50.safetensors" >/dev/null
rm -rf "$work/run"
start=$(date +%s.%N)
"$bin" train --data "$work/scenes" --backbone "$work/r50.safetensors" --run "$work/run" --no-progress \
  2>&1 | tee "$work/train.log" | grep -E "features:|trained"
end=$(date +%s.%N)
ours=$(echo "$end - $start" | bc)
best=$(grep -oE "at epoch [0-9]+" "$work/train.log" | tail -1 | grep -oE "[0-9]+")
seed=$("$python" "$root/scripts/reference/seed_recipe.py" --data "$work/scenes" --batches "$batches" \
  --best-epoch "$best")
echo "$seed"
"$python" - "$ours" "$best" "$seed" <<'PY'
import json, sys
ours, best, seed = float(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
epoch = seed["epoch_with_val_s"]
print(f"captioner train (defaults, features included): {ours:.0f} s, best val loss at epoch {best}")
print(f"seed recipe: {epoch:.0f} s per epoch (train + validation, extrapolated from {seed['batches_timed']} batches)")
print(f"  to 50 epochs: {50 * epoch / 3600:.2f} h  ->  {50 * epoch / ours:.0f}x captioner")
print(f"  to its best epoch ({best}): {best * epoch / 60:.1f} min  ->  {best * epoch / ours:.1f}x captioner")
PY
