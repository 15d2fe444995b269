"""PyTorch eager side of `captioner bench encoder` (embedded in the binary with include_str!).

Run by hand:  python3 scripts/reference/bench_encoder.py --threads 2 --iters 5 --batches 1,16
Needs torch and torchvision (`pip install torch torchvision`). Prints one JSON object per batch
size and precision: {"batch": B, "precision": "f32", "images_per_s": X, "ms_per_batch": Y};
with --bf16 also each batch under torch.autocast("cpu", dtype=torch.bfloat16) (oneDNN's bf16
kernels). --pause-ms sleeps before every timed call, so each starts from an idle machine as a
person's one-off command does. Random weights: speed does not depend on the values.
"""

import argparse
import json
import contextlib
import time

import torch
import torchvision


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--pause-ms", type=float, default=0.0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = getattr(torchvision.models, a.arch)(weights=None).eval()
    trunk = torch.nn.Sequential(*list(model.children())[:-1])
    precisions = ["f32", "bf16"] if a.bf16 else ["f32"]
    for b in [int(s) for s in a.batches.split(",")]:
        x = torch.randn(b, 3, 224, 224)
        for precision in precisions:
            cast = (
                torch.autocast("cpu", dtype=torch.bfloat16)
                if precision == "bf16"
                else contextlib.nullcontext()
            )
            times = []
            with torch.no_grad(), cast:
                trunk(x)  # warm-up
                for _ in range(a.iters):
                    if a.pause_ms > 0:
                        time.sleep(a.pause_ms / 1e3)
                    t0 = time.perf_counter()
                    trunk(x)
                    times.append(time.perf_counter() - t0)
            times.sort()
            med = times[len(times) // 2]
            line = {"batch": b, "precision": precision, "images_per_s": b / med, "ms_per_batch": med * 1e3}
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
