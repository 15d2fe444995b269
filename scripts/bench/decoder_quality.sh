#!/usr/bin/env bash
# The attention decoder against the seed's LSTM decoder on rendered scenes (issue #14's quality
# table): the same corpus, calibrated backbone, feature cache and split for both, three training
# seeds each, scored on the held-out test scenes with greedy and beam-3 decoding.
#
#   scripts/bench/decoder_quality.sh [--work DIR] [--images 2000] [--seeds "0 1 2"] [--epochs 20]
#                                    [--patience 3] [--python P]
#
# Setup: `synth` scenes (seed 0), a random ResNet-18 whose BatchNorm statistics are recomputed on 64
# of the scenes (`init-backbone --calibrate`: with the init's identity statistics its features are in
# the hundreds and barely tell images apart), 112×112 pixels as the demo, features with --spatial (a
# 4×4 grid of 512 channels). The split is the first run's split.json for every run (`--seed` would
# also redraw the split), so the seeds change only the initialisation and the batch order. With
# --python P (a Python with torch) the PyTorch reference of the attention decoder
# (scripts/reference/train_attention_decoder.py) is trained on the first attention run's cache, split
# and vocabulary with the same settings, and its best validation loss is printed beside captioner's.
# Prints a markdown table and writes every run under DIR. CAPTIONER_BIN overrides the binary (default:
# target/release/captioner, built if missing). CI never runs it.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
work="" images=2000 seeds="0 1 2" epochs=20 patience=3 python=""
while [ $# -gt 0 ]; do
  case "$1" in
    --work) work="$2"; shift 2 ;;
    --images) images="$2"; shift 2 ;;
    --seeds) seeds="$2"; shift 2 ;;
    --epochs) epochs="$2"; shift 2 ;;
    --patience) patience="$2"; shift 2 ;;
    --python) python="$2"; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
done
bin="${CAPTIONER_BIN:-$root/target/release/captioner}"
[ -x "$bin" ] || (cd "$root" && cargo build --release)
work="${work:-$(mktemp -d)}"
mkdir -p "$work"
scenes="$work/scenes" backbone="$work/r18cal.safetensors" cache="$work/features"
[ -f "$scenes/captions.txt" ] || "$bin" synth --out "$scenes" --images "$images" --seed 0 --force >/dev/null
[ -f "$backbone" ] || "$bin" init-backbone --arch resnet18 --seed 0 --calibrate "$scenes/Images" \
  --calibrate-images 64 --out "$backbone" >/dev/null
common=(--data "$scenes" --backbone "$backbone" --arch resnet18 --image-size 112 --cache "$cache")
"$bin" features "${common[@]}" --spatial --no-progress >/dev/null

split=""
for seed in $seeds; do
  for decoder in lstm attention; do
    run="$work/$decoder-$seed"
    if [ ! -f "$run/eval-beam3.json" ]; then
      rm -rf "$run"
      args=(train "${common[@]}" --run "$run" --decoder "$decoder" --epochs "$epochs" \
        --patience "$patience" --seed "$seed" --no-progress)
      [ -n "$split" ] && args+=(--split-file "$split")
      start=$(date +%s)
      "$bin" "${args[@]}" >"$run.log" 2>&1 || { cat "$run.log" >&2; exit 1; }
      echo $(( $(date +%s) - start )) >"$run/seconds"
      for beam in 1 3; do
        "$bin" eval --model "$run" --data "$scenes" --beam "$beam" --json --no-progress \
          >"$run/eval-beam$beam.json"
      done
    fi
    [ -n "$split" ] || split="$run/split.json"
  done
done

if [ -n "$python" ] && [ ! -f "$work/reference.log" ]; then
  first=$(echo "$seeds" | awk '{print $1}')
  "$python" "$root/scripts/reference/train_attention_decoder.py" --data "$scenes" \
    --run "$work/attention-$first" --cache "$cache" --threads 2 >"$work/reference.log.tmp"
  mv "$work/reference.log.tmp" "$work/reference.log"
fi

python3 - "$work" "$seeds" <<'PY'
import json, statistics, sys
work, seeds = sys.argv[1], sys.argv[2].split()
def best(run):
    rows = [json.loads(l) for l in open(f"{run}/metrics.jsonl") if l.strip()]
    b = min(rows, key=lambda r: r["val_loss"])
    return b["val_loss"], b["epoch"], len(rows)
print("| decoder | seed | best val loss (epoch of run) | BLEU-4 greedy | CIDEr-D greedy | BLEU-4 beam 3 | CIDEr-D beam 3 | s |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
summary = {}
for decoder in ("lstm", "attention"):
    cols = []
    for seed in seeds:
        run = f"{work}/{decoder}-{seed}"
        vl, ep, n = best(run)
        g = json.load(open(f"{run}/eval-beam1.json"))
        b = json.load(open(f"{run}/eval-beam3.json"))
        secs = open(f"{run}/seconds").read().strip()
        vals = [vl, g["bleu4"], g["cider"], b["bleu4"], b["cider"]]
        cols.append(vals)
        print(f"| {decoder} | {seed} | {vl:.4f} ({ep} of {n}) | {vals[1]:.4f} | {vals[2]:.4f} | {vals[3]:.4f} | {vals[4]:.4f} | {secs} |")
    summary[decoder] = cols
for decoder, cols in summary.items():
    means = [statistics.mean(c[i] for c in cols) for i in range(5)]
    sds = [statistics.stdev(c[i] for c in cols) if len(cols) > 1 else 0.0 for i in range(5)]
    cells = " | ".join(f"{m:.4f} ± {s:.4f}" for m, s in zip(means, sds))
    print(f"| **{decoder}, mean ± sd** | | {cells} | |")
try:
    ref = [l for l in open(f"{work}/reference.log") if l.startswith("best val loss")]
    print(f"\nPyTorch reference of the attention decoder (seed {seeds[0]}'s cache, split, vocabulary, settings): {ref[-1].strip()}")
    print(f"captioner, same run: best val loss {best(f'{work}/attention-{seeds[0]}')[0]:.4f}")
except FileNotFoundError:
    pass
PY
