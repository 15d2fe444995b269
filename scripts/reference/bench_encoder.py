"""PyTorch eager side of `captioner bench encoder` (embedded in the binary with include_str!).

Run by hand:  python3 scripts/reference/bench_encoder.py --threads 2 --iters 5 --batches 1,16
Needs torch and torchvision (`pip install torch torchvision`). Prints one JSON object per batch
size: {"batch": B, "images_per_s": X, "ms_per_batch": Y}. Random weights: speed does not depend
on the values.
"""

import argparse
import json
import time

import torch
import torchvision


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--arch", default="resnet50")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = getattr(torchvision.models, a.arch)(weights=None).eval()
    trunk = torch.nn.Sequential(*list(model.children())[:-1])
    for b in [int(s) for s in a.batches.split(",")]:
        x = torch.randn(b, 3, 224, 224)
        times = []
        with torch.no_grad():
            trunk(x)  # warm-up
            for _ in range(a.iters):
                t0 = time.perf_counter()
                trunk(x)
                times.append(time.perf_counter() - t0)
        times.sort()
        med = times[len(times) // 2]
        print(json.dumps({"batch": b, "images_per_s": b / med, "ms_per_batch": med * 1e3}), flush=True)


if __name__ == "__main__":
    main()
