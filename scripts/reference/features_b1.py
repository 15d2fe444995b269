"""PyTorch side of scripts/bench/features_cold.sh: a one-off feature extraction as a person runs it.

Builds torchvision's ResNet (its trunk up to the pool), loads the same `.safetensors` backbone
`captioner features --backbone` reads, and computes the pooled feature of every image in a folder at
batch 1 with the tutorial's transform (PIL open + convert("RGB") + Resize((224, 224)) + ToTensor +
Normalize), in eval mode under no_grad. Prints one JSON line: seconds for `import torch`, for the
model's construction and load, for the loop over the images (from the first file read to the last
feature), and the number of images.

    /work/pyref/bin/python scripts/reference/features_b1.py --images DIR --backbone r50.safetensors --threads 2
"""

import argparse
import json
import pathlib
import time

t_start = time.perf_counter()
import torch  # noqa: E402
import torchvision  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from torchvision import transforms  # noqa: E402

t_imported = time.perf_counter()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", required=True)
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    model = getattr(torchvision.models, a.arch)(weights=None)
    sd = load_file(a.backbone)
    model.load_state_dict(sd, strict=False)
    model.eval()
    trunk = torch.nn.Sequential(*list(model.children())[:-1])
    transform = transforms.Compose(
        [
            transforms.Resize((224, 224)),
            transforms.ToTensor(),
            transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        ]
    )
    t1 = time.perf_counter()
    files = sorted(p for p in pathlib.Path(a.images).iterdir() if p.is_file())
    rows = []
    with torch.no_grad():
        for p in files:
            x = transform(Image.open(p).convert("RGB")).unsqueeze(0)
            rows.append(trunk(x).flatten(1))
    t2 = time.perf_counter()
    print(
        json.dumps(
            {
                "import_s": t_imported - t_start,
                "load_s": t1 - t0,
                "loop_s": t2 - t1,
                "images": len(rows),
                "torch": torch.__version__,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
