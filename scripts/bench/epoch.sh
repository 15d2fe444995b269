#!/usr/bin/env bash
# One training epoch, captioner against the PyTorch reference decoder, on the same feature cache,
# split and vocabulary (issue #19, item 1). Each epoch is the training batches, the head's BatchNorm
# statistics recomputed over the training features (captioner's default, `--bn-stats precise` on
# the PyTorch side) and the validation loss: captioner's `seconds` in metrics.jsonl, the reference's
# "N s" per epoch line. Both sides use the same threads; the features are extracted first and
# excluded from both.
#
#   scripts/bench/epoch.sh [--python /work/pyref/bin/python] [--images 2000] [--epochs 3] [--threads 2]
#                          [--words N] [--work DIR]
#
# The corpus is `captioner synth` scenes (a vocabulary of ~60 words at min-freq 5); the backbone a
# random ResNet-50 at 64×64 pixels (2048-d features like the pretrained one at 224; the decoder's
# work does not depend on the image size). With --words N (e.g. 3000, Flickr8k's vocabulary at
# min-freq 5), every caption is replaced by one of Flickr8k's lengths (the histogram in
# scripts/bench/flickr8k_caption_lengths.txt) in words drawn uniformly from N made-up words, so
# the vocabulary is ~N: the captions no longer describe the images, which an epoch's speed does
# not depend on. Prints each side's per-epoch seconds and the ratio of their medians.
# CAPTIONER_BIN overrides the binary (default: target/release/captioner). CI never runs it.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
python=python3 images=2000 epochs=3 threads=2 words="" work=""
while [ $# -gt 0 ]; do
  case "$1" in
    --python) python="$2"; shift 2 ;;
    --images) images="$2"; shift 2 ;;
    --epochs) epochs="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --words) words="$2"; shift 2 ;;
    --work) work="$2"; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
done
bin="${CAPTIONER_BIN:-$root/target/release/captioner}"
[ -x "$bin" ] || (cd "$root" && cargo build --release)
work="${work:-$(mktemp -d)}"
mkdir -p "$work"
corpus="$work/scenes"
if [ ! -f "$corpus/captions.txt" ]; then
  "$bin" synth --out "$corpus" --images "$images" --seed 5 --force >/dev/null
fi
if [ -n "$words" ]; then
  corpus="$work/words$words"
  rm -rf "$corpus" && mkdir -p "$corpus" && ln -s "$work/scenes/Images" "$corpus/Images"
  "$python" - "$work/scenes/captions.txt" "$corpus/captions.txt" "$words" "$root/scripts/bench/flickr8k_caption_lengths.txt" <<'PY'
import csv, random, sys
src, dst, n, table = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
lengths = [tuple(map(int, l.split())) for l in open(table) if l.strip() and not l.startswith("#")]
rng = random.Random(5)
with open(src, newline="") as f, open(dst, "w", newline="") as g:
    out = csv.writer(g)
    out.writerow(["image", "caption"])
    for row in csv.DictReader(f):
        k = rng.choices([w for w, _ in lengths], [c for _, c in lengths])[0]
        out.writerow([row["image"], " ".join(f"w{rng.randrange(n)}" for _ in range(k)) + " ."])
PY
fi
[ -f "$work/r50.safetensors" ] || "$bin" init-backbone --arch resnet50 --out "$work/r50.safetensors" >/dev/null
rm -rf "$work/run"
export RAYON_NUM_THREADS="$threads"
"$bin" train --data "$corpus" --backbone "$work/r50.safetensors" --run "$work/run" --image-size 64 \
  --epochs "$epochs" --no-progress >"$work/train.log" 2>&1 || { cat "$work/train.log" >&2; exit 1; }
ours=$("$python" -c '
import json, sys
print(" ".join("%.2f" % json.loads(l)["seconds"] for l in open(sys.argv[1]) if l.strip()))
' "$work/run/metrics.jsonl")
theirs=$("$python" "$root/scripts/reference/train_seed_decoder.py" --data "$corpus" --run "$work/run" \
  --epochs "$epochs" --patience 0 --bn-stats precise --threads "$threads" \
  | grep -oE ", [0-9.]+ s$" | grep -oE "[0-9.]+" | tr '\n' ' ')
vocab=$("$python" -c 'import json,sys; v=json.load(open(sys.argv[1])); print(len(v.get("itos", v)) if isinstance(v, dict) else len(v))' "$work/run/vocab.json")
"$python" - "$ours" "$theirs" "$vocab" "$threads" <<'PY'
import statistics, sys
ours = [float(x) for x in sys.argv[1].split()]
theirs = [float(x) for x in sys.argv[2].split()]
print(f"one training epoch (train batches + BatchNorm statistics + validation loss), vocabulary {sys.argv[3]}, {sys.argv[4]} threads")
print(f"{'implementation':<22} {'s/epoch (each)':<30} {'median':>8}")
print(f"{'captioner':<22} {' '.join(f'{x:.2f}' for x in ours):<30} {statistics.median(ours):>8.2f}")
print(f"{'pytorch reference':<22} {' '.join(f'{x:.2f}' for x in theirs):<30} {statistics.median(theirs):>8.2f}")
print(f"ratio (pytorch / captioner): {statistics.median(theirs) / statistics.median(ours):.2f}x")
PY
