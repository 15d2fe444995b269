"""Fixtures for the preprocessing parity test (tests/it/preprocess.rs).

Run by hand from the repository root:

    /work/pyref/bin/python scripts/reference/preprocess_fixtures.py

It generates small photo-like images (gradients, shapes, noise) in every format and mode captioner must
read, saves them in tests/fixtures/preprocess/images/, and for each one records what Pillow + torchvision
make of it with the seed's transform

    Compose([Resize((224, 224)), ToTensor(), Normalize(ImageNet mean, std)])
    applied to PIL.Image.open(path).convert("RGB")

as tests/fixtures/preprocess/expected/<image>.png (the 224x224 RGB8 output of Pillow's resize: lossless,
exact) and tests/fixtures/preprocess/expected.json (per image: Pillow's mode and size, the SHA-256 of the
decoded RGB8 pixels, and every 499th value of the torchvision tensor, so ToTensor + Normalize are checked
against torch itself). Images are regenerated from fixed seeds; rerunning gives the same files.
"""

import hashlib
import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import PIL
import torch
import torchvision
from PIL import Image, ImageDraw
from torchvision import transforms

ROOT = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "preprocess"
IMAGES = ROOT / "images"
EXPECTED = ROOT / "expected"
TENSOR_STRIDE = 499

TRANSFORM = transforms.Compose(
    [
        transforms.Resize((224, 224)),
        transforms.ToTensor(),
        transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ]
)


def photo(w, h, seed, channels=3):
    """Photo-like float image in [0, 255]: smooth gradients, soft texture, shapes, mild noise."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    base = np.empty((h, w, 3))
    for c in range(3):
        a, b = rng.uniform(-1, 1, 2)
        f = rng.uniform(0.03, 0.12)
        base[..., c] = 128 + 70 * (a * x / w + b * y / h) + 30 * np.sin(f * x + c) * np.cos(f * 0.7 * y)
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(5):
        x0, y0 = rng.randint(0, w), rng.randint(0, h)
        x1, y1 = x0 + rng.randint(4, w // 2 + 5), y0 + rng.randint(4, h // 2 + 5)
        colour = tuple(int(v) for v in rng.randint(0, 256, 3))
        if rng.rand() < 0.5:
            draw.ellipse([x0, y0, x1, y1], fill=colour)
        else:
            draw.rectangle([x0, y0, x1, y1], fill=colour)
    draw.line([(0, rng.randint(0, h)), (w, rng.randint(0, h))], fill=(250, 250, 250), width=2)
    arr = np.asarray(img).astype(np.float64) + rng.normal(0, 3, (h, w, 3))
    arr = np.clip(arr, 0, 255)
    if channels == 1:
        arr = arr @ np.array([0.299, 0.587, 0.114])
    return arr


def u8(arr):
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)


def png_rgb16(path, arr16):
    """Pillow cannot write 16-bit RGB PNGs, so this one is written chunk by chunk."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    h, w, _ = arr16.shape
    rows = b"".join(b"\x00" + arr16[r].astype(">u2").tobytes() for r in range(h))
    data = b"\x89PNG\r\n\x1a\n"
    data += chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
    data += chunk(b"IDAT", zlib.compress(rows, 9))
    data += chunk(b"IEND", b"")
    path.write_bytes(data)


def make_images():
    """Writes every fixture image; returns their file names."""
    made = []

    def save(name, img, **kw):
        img.save(IMAGES / name, **kw)
        made.append(name)

    save("jpeg_rgb_320x240.jpg", Image.fromarray(u8(photo(320, 240, 1))), quality=90)
    save("jpeg_rgb444_odd_237x181.jpg", Image.fromarray(u8(photo(237, 181, 2))), quality=85, subsampling=0)
    save("jpeg_rgb422_odd_203x147.jpg", Image.fromarray(u8(photo(203, 147, 3))), quality=80, subsampling=1)
    save("jpeg_progressive_211x158.jpg", Image.fromarray(u8(photo(211, 158, 24))), quality=88, progressive=True)
    save("jpeg_rgb_upscale_100x80.jpg", Image.fromarray(u8(photo(100, 80, 4))), quality=92)
    save("jpeg_gray_150x113.jpg", Image.fromarray(u8(photo(150, 113, 5, channels=1)), "L"), quality=90)
    cmyk = Image.fromarray(u8(photo(161, 120, 6))).convert("CMYK")
    save("jpeg_cmyk_161x120.jpg", cmyk, quality=90)
    # EXIF Orientation = 6 ("rotate 90 CW to display"): Pillow without exif_transpose ignores it.
    exif = Image.Exif()
    exif[0x0112] = 6
    save("jpeg_exif_rot6_120x80.jpg", Image.fromarray(u8(photo(120, 80, 7))), quality=90, exif=exif)

    save("png_rgb_256x192.png", Image.fromarray(u8(photo(256, 192, 8))))
    save("png_rgb_upscale_100x80.png", Image.fromarray(u8(photo(100, 80, 9))))
    save("png_rgb_224x96.png", Image.fromarray(u8(photo(224, 96, 10))))
    rgba = np.dstack([u8(photo(200, 150, 11)), u8(np.linspace(0, 255, 200 * 150).reshape(150, 200))])
    rgba[:40, :60, 3] = 0  # fully transparent corner: Pillow keeps its colour, it does not composite
    save("png_rgba_200x150.png", Image.fromarray(rgba, "RGBA"))
    la = np.dstack([u8(photo(121, 97, 12, 1)), u8(photo(121, 97, 13, 1))])
    save("png_la_121x97.png", Image.fromarray(la, "LA"))
    save("png_l_90x67.png", Image.fromarray(u8(photo(90, 67, 14, 1)), "L"))
    pal = Image.fromarray(u8(photo(140, 100, 15))).quantize(colors=64, method=Image.Quantize.MEDIANCUT)
    save("png_p_140x100.png", pal)
    # 16-bit gray: values up to ~1000, so Pillow's I;16 -> RGB conversion clips part of it at 255.
    gray16 = (photo(130, 95, 16, 1) * 4).astype(np.uint16)
    save("png_gray16_130x95.png", Image.fromarray(gray16))
    rgb16 = (photo(110, 90, 17) * 257 + np.random.RandomState(17).randint(0, 257, (90, 110, 3))).astype(np.uint16)
    png_rgb16(IMAGES / "png_rgb16_110x90.png", np.clip(rgb16, 0, 65535))
    made.append("png_rgb16_110x90.png")

    save("webp_lossless_180x135.webp", Image.fromarray(u8(photo(180, 135, 18))), lossless=True)
    save("webp_lossy_181x137.webp", Image.fromarray(u8(photo(181, 137, 19))), quality=80)
    frames = [Image.fromarray(u8(photo(160, 120, 20 + i))).quantize(colors=128) for i in range(2)]
    frames[0].save(IMAGES / "gif_2frame_160x120.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    made.append("gif_2frame_160x120.gif")
    save("bmp_rgb_60x45.bmp", Image.fromarray(u8(photo(60, 45, 22))))
    save("tiff_rgb_lzw_141x106.tif", Image.fromarray(u8(photo(141, 106, 23))), compression="tiff_lzw")
    return made


def main():
    IMAGES.mkdir(parents=True, exist_ok=True)
    EXPECTED.mkdir(parents=True, exist_ok=True)
    records = []
    for name in make_images():
        path = IMAGES / name
        with Image.open(path) as opened:
            mode, size = opened.mode, opened.size
            rgb = opened.convert("RGB")
        resized = rgb.resize((224, 224), Image.BILINEAR)
        tensor = TRANSFORM(rgb)
        # torchvision's Resize on a PIL image is exactly Pillow's bilinear resize: check it, so the PNG
        # below really is the uint8 image torchvision normalises.
        from_png = transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])(transforms.ToTensor()(resized))
        assert torch.equal(tensor, from_png), name
        expected_name = Path(name).stem + ".png"
        resized.save(EXPECTED / expected_name, optimize=True)
        flat = tensor.flatten().numpy()
        records.append(
            {
                "file": name,
                "pil_mode": mode,
                "width": size[0],
                "height": size[1],
                "decoded_rgb_sha256": hashlib.sha256(np.asarray(rgb).tobytes()).hexdigest(),
                "expected_png": expected_name,
                "tensor_stride": TENSOR_STRIDE,
                # Shortest decimals that round-trip in float32 keep the file small and exact.
                "tensor_excerpt": [float(str(v)) for v in flat[::TENSOR_STRIDE]],
                "tensor_channel_mean": [float(str(v)) for v in tensor.mean(dim=(1, 2)).numpy()],
            }
        )
        print(f"{name:34s} mode={mode:5s} size={size}")
    meta = {
        "generator": "scripts/reference/preprocess_fixtures.py",
        "pillow": PIL.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "transform": "Compose([Resize((224,224)), ToTensor(), Normalize([0.485,0.456,0.406],[0.229,0.224,0.225])])",
        "images": records,
    }
    (ROOT / "expected.json").write_text(json.dumps(meta, separators=(",", ":")).replace('{"file"', '\n{"file"') + "\n")


if __name__ == "__main__":
    main()
