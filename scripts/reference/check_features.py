"""Checks `captioner features` against torchvision on real files, preprocessing included.

Saves a randomly initialised torchvision ResNet (`torch.save(model.state_dict())`, a real zip-pickle `.pth`),
runs `captioner features` with it over a corpus, runs torchvision on the same image files with the tutorial's
transform (PIL open + convert("RGB") + Resize((224,224)) + ToTensor + Normalize), and prints the cosine
similarity and relative max difference per image.

Run by hand (needs torch, torchvision, Pillow, safetensors):
    /work/pyref/bin/python scripts/reference/check_features.py --data scenes --captioner target/release/captioner \
        [--arch resnet50] [--limit 20]
"""

import argparse
import json
import pathlib
import subprocess
import tempfile

import torch
import torchvision
from PIL import Image
from safetensors.torch import load_file
from torchvision import transforms


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--captioner", required=True)
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--limit", type=int, default=20)
    args = ap.parse_args()

    torch.manual_seed(0)
    model = getattr(torchvision.models, args.arch)(weights=None).eval()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        weights = tmp / f"{args.arch}-random.pth"
        torch.save(model.state_dict(), weights)
        cache = tmp / "cache"
        subprocess.run(
            [args.captioner, "features", "--data", args.data, "--backbone", str(weights), "--cache", str(cache),
             "--arch", args.arch, "--no-progress"],
            check=True,
        )
        ours = load_file(str(cache / "features.safetensors"))["features"]
        names = json.loads((cache / "images.json").read_text())

    root = pathlib.Path(args.data)
    image_dir = next(d for d in [root / "Images", root / "Flicker8k_Dataset", root / "images", root] if d.is_dir())
    tf = transforms.Compose([
        transforms.Resize((224, 224)),
        transforms.ToTensor(),
        transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ])
    trunk = torch.nn.Sequential(*list(model.children())[:-1])
    worst = 1.0
    for i, name in enumerate(names[: args.limit]):
        x = tf(Image.open(image_dir / name).convert("RGB")).unsqueeze(0)
        with torch.no_grad():
            ref = trunk(x).flatten(1)[0]
        got = ours[i]
        cos = torch.nn.functional.cosine_similarity(ref, got, dim=0).item()
        rel = ((ref - got).abs().max() / ref.abs().max()).item()
        worst = min(worst, cos)
        print(f"{name}: cosine {cos:.7f}  max|diff|/max|ref| {rel:.2e}")
    print(f"worst cosine over {min(len(names), args.limit)} images: {worst:.7f}")


if __name__ == "__main__":
    main()
