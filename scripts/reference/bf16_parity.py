"""PyTorch's own bf16 error on the weights `captioner bench precision` measures (docs/performance.md).

Run by hand:  python3 scripts/reference/bf16_parity.py BACKBONE.safetensors IMAGE_DIR [--images 64]
Needs torch, torchvision and safetensors. Loads the ResNet-50 state_dict (torchvision names, e.g. one
written by `captioner init-backbone --calibrate DIR`), computes the pooled features of the first
images of IMAGE_DIR (sorted *.jpg, torchvision's Resize(256)+CenterCrop(224)+Normalize) in f32 and
under torch.autocast("cpu", dtype=torch.bfloat16), and prints the per-image cosine between the two
and the mean cosine between different images' f32 features.
"""

import argparse
import glob

import torch
import torchvision
from PIL import Image
from safetensors.torch import load_file


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("backbone")
    ap.add_argument("image_dir")
    ap.add_argument("--images", dest="n", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = torchvision.models.resnet50(weights=None)
    model.load_state_dict(load_file(a.backbone))
    trunk = torch.nn.Sequential(*list(model.eval().children())[:-1])
    t = torchvision.transforms
    tf = t.Compose([t.Resize(256), t.CenterCrop(224), t.ToTensor(),
                    t.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    files = sorted(glob.glob(a.image_dir + "/*.jpg"))[: a.n]
    x = torch.stack([tf(Image.open(f).convert("RGB")) for f in files])
    with torch.no_grad():
        f32 = trunk(x).flatten(1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            b16 = trunk(x).flatten(1).float()
    cos = torch.nn.functional.cosine_similarity(f32, b16)
    print(f"torch {torch.__version__}, {len(files)} images, bf16 autocast against f32")
    print("per-image cosine: min %.6f  median %.6f  mean %.6f" % (cos.min(), cos.median(), cos.mean()))
    fn = torch.nn.functional.normalize(f32)
    sim = fn @ fn.T
    n = len(files)
    print("cosine between different images' f32 features: mean %.4f" % ((sim.sum() - sim.trace()) / (n * (n - 1))))


if __name__ == "__main__":
    main()
