"""PyTorch eager side of `captioner bench encoder` (embedded in the binary with include_str!).

Run by hand:  python3 scripts/reference/bench_encoder.py --threads 2 --iters 5 --batches 1,16
Needs torch and torchvision (`pip install torch torchvision`). Prints one JSON object per batch
size and precision: {"batch": B, "precision": "f32", "images_per_s": X, "ms_per_batch": Y,
"ms": [each call]}; with --bf16 also each batch under torch.autocast("cpu", dtype=torch.bfloat16)
(oneDNN's bf16 kernels). --pause-ms sleeps before every timed call, so each starts from an idle
machine as a person's one-off command does. With --interleaved (how the bench runs it): a ready
line, then the lines of each batch size read from stdin, so the bench can alternate the two
sides. Random weights: speed does not depend on the values.
"""

import argparse
import contextlib
import json
import sys
import time

import torch
import torchvision


def timed(trunk, x, cast, iters, pause_ms):
    """Milliseconds of `iters` calls after one warm-up call, each after `pause_ms` idle."""
    times = []
    with torch.no_grad(), cast():
        trunk(x)  # warm-up
        for _ in range(iters):
            if pause_ms > 0:
                time.sleep(pause_ms / 1e3)
            t0 = time.perf_counter()
            trunk(x)
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--pause-ms", type=float, default=0.0)
    ap.add_argument("--interleaved", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = getattr(torchvision.models, a.arch)(weights=None).eval()
    trunk = torch.nn.Sequential(*list(model.children())[:-1])
    casts = {"f32": contextlib.nullcontext}
    if a.bf16:
        casts["bf16"] = lambda: torch.autocast("cpu", dtype=torch.bfloat16)

    def lines(b):
        x = torch.randn(b, 3, 224, 224)
        for precision, cast in casts.items():
            ms = timed(trunk, x, cast, a.iters, a.pause_ms)
            med = sorted(ms)[len(ms) // 2] / 1e3
            line = {"batch": b, "precision": precision, "images_per_s": b / med, "ms_per_batch": med * 1e3, "ms": ms}
            print(json.dumps(line), flush=True)

    if a.interleaved:
        # Driven by `captioner bench encoder`: a ready line, then for each batch size read from
        # stdin one line per precision, until stdin closes.
        print(json.dumps({"ready": True, "torch": torch.__version__}), flush=True)
        for request in sys.stdin:
            lines(int(request))
    else:
        for b in [int(s) for s in a.batches.split(",")]:
            lines(b)


if __name__ == "__main__":
    main()
