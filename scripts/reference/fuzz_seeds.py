#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into fuzz/corpus/<target>/ (standard library only:
no Pillow or torch needed). Images are written by small hand-made encoders, in every format the
`image` crate decodes here, plus the small fixtures of tests/fixtures; .pth files copy the real
torch.save fixture with variations; the rest are small valid (and a few deliberately hostile)
files. Run from the repository root: python3 scripts/reference/fuzz_seeds.py"""

import io
import json
import os
import shutil
import stat
import struct
import zipfile
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")
FIXTURES = os.path.join(ROOT, "tests", "fixtures")


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    assert len(data) < 64 * 1024, (target, name, len(data))
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def pixels(w, h):
    return [((x * 37 + y * 11) % 256, (x * 5 + y * 29) % 256, (x * y) % 256) for y in range(h) for x in range(w)]


# ------------------------------------------------------------------------------------ images

def png(w, h, color_type=2, depth=8, interlace=0, extra=b"", bomb=None):
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    hw, hh = bomb or (w, h)
    ihdr = struct.pack(">IIBBBBB", hw, hh, depth, color_type, 0, 0, interlace)
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type]
    px = pixels(w, h)
    raw = bytearray()
    for y in range(h):
        raw.append(0)
        for x in range(w):
            r, g, b = px[y * w + x]
            vals = {0: [r], 2: [r, g, b], 3: [x % 4], 4: [r, g], 6: [r, g, b, 200]}[color_type]
            for v in vals:
                raw += bytes([v]) if depth == 8 else struct.pack(">H", v * 257)
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
    if color_type == 3:
        out += chunk(b"PLTE", bytes([255, 0, 0, 0, 255, 0, 0, 0, 255, 250, 250, 250]))
    out += extra
    out += chunk(b"IDAT", zlib.compress(bytes(raw), 9)) + chunk(b"IEND", b"")
    return out


def bmp(w, h, bpp=24):
    rows = []
    px = pixels(w, h)
    for y in range(h - 1, -1, -1):
        row = bytearray()
        for x in range(w):
            r, g, b = px[y * w + x]
            row += bytes([b, g, r]) if bpp == 24 else bytes([x % 4])
        while len(row) % 4:
            row.append(0)
        rows.append(bytes(row))
    palette = b"".join(bytes([c, 255 - c, c // 2, 0]) for c in (0, 80, 160, 240)) if bpp == 8 else b""
    data = b"".join(rows)
    off = 14 + 40 + len(palette)
    head = b"BM" + struct.pack("<IHHI", off + len(data), 0, 0, off)
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, bpp, 0, len(data), 2835, 2835, 4 if bpp == 8 else 0, 0)
    return head + info + palette + data


def tiff(w, h):
    data = bytes(v for p in pixels(w, h) for v in p)
    entries = [
        (256, 3, 1, w), (257, 3, 1, h), (258, 3, 3, 0), (259, 3, 1, 1), (262, 3, 1, 2),
        (273, 4, 1, 0), (277, 3, 1, 3), (278, 3, 1, h), (279, 4, 1, len(data)),
    ]
    ifd_off = 8
    n = len(entries)
    bps_off = ifd_off + 2 + n * 12 + 4
    data_off = bps_off + 6
    out = b"II*\x00" + struct.pack("<I", ifd_off) + struct.pack("<H", n)
    for tag, typ, count, val in entries:
        if tag == 258:
            val = bps_off
        if tag == 273:
            val = data_off
        if typ == 3 and count == 1:
            out += struct.pack("<HHIHH", tag, typ, count, val, 0)
        else:
            out += struct.pack("<HHII", tag, typ, count, val)
    out += struct.pack("<I", 0) + struct.pack("<HHH", 8, 8, 8) + data
    return out


def ico(inner, w, h):
    return struct.pack("<HHH", 0, 1, 1) + struct.pack("<BBBBHHII", w, h, 0, 0, 1, 32, len(inner), 22) + inner


def ico_bmp(w, h):
    # A 32-bit DIB with its AND mask, height doubled, as icons hold them.
    px = pixels(w, h)
    rows = b"".join(bytes(v for x in range(w) for v in (px[y * w + x][2], px[y * w + x][1], px[y * w + x][0], 255)) for y in range(h - 1, -1, -1))
    mask_row = ((w + 31) // 32) * 4
    info = struct.pack("<IiiHHIIiiII", 40, w, 2 * h, 1, 32, 0, 0, 0, 0, 0, 0)
    return ico(info + rows + b"\x00" * (mask_row * h), w, h)


def pnm(kind, w, h):
    px = pixels(w, h)
    if kind == "P6":
        return b"P6\n%d %d\n255\n" % (w, h) + bytes(v for p in px for v in p)
    if kind == "P5":
        return b"P5 %d %d 255\n" % (w, h) + bytes(p[0] for p in px)
    if kind == "P3":
        return (b"P3\n# comment\n%d %d\n255\n" % (w, h)) + " ".join(str(v) for p in px for v in p).encode() + b"\n"
    if kind == "P2":
        return (b"P2\n%d %d\n15\n" % (w, h)) + " ".join(str(p[0] % 16) for p in px).encode() + b"\n"
    if kind == "P1":
        return (b"P1\n%d %d\n" % (w, h)) + " ".join(str(p[0] % 2) for p in px).encode() + b"\n"
    if kind == "P4":
        rows = b""
        for y in range(h):
            bits = 0
            row = bytearray()
            for x in range(w):
                bits = (bits << 1) | (px[y * w + x][0] & 1)
                if x % 8 == 7:
                    row.append(bits)
                    bits = 0
            if w % 8:
                row.append(bits << (8 - w % 8))
            rows += bytes(row)
        return b"P4\n%d %d\n" % (w, h) + rows
    if kind == "P7":
        return (b"P7\nWIDTH %d\nHEIGHT %d\nDEPTH 4\nMAXVAL 255\nTUPLTYPE RGB_ALPHA\nENDHDR\n" % (w, h)) + bytes(v for p in px for v in (*p, 255))
    if kind == "P6-16":
        return b"P6\n%d %d\n65535\n" % (w, h) + b"".join(struct.pack(">H", v * 257) for p in px for v in p)
    raise ValueError(kind)


def tga(w, h, rle=False):
    px = pixels(w, h)
    head = struct.pack("<BBBHHBHHHHBB", 0, 0, 10 if rle else 2, 0, 0, 0, 0, 0, w, h, 24, 0x20)
    if not rle:
        return head + bytes(v for p in px for v in (p[2], p[1], p[0]))
    body = bytearray()
    for p in px:
        body += bytes([0, p[2], p[1], p[0]])  # raw packets of one pixel
    return head + bytes(body)


def qoi(w, h):
    out = b"qoif" + struct.pack(">IIBB", w, h, 3, 0)
    for p in pixels(w, h):
        out += bytes([0xFE, *p])
    return out + b"\x00" * 7 + b"\x01"


def farbfeld(w, h):
    return b"farbfeld" + struct.pack(">II", w, h) + b"".join(struct.pack(">HHHH", r * 257, g * 257, b * 257, 65535) for r, g, b in pixels(w, h))


def hdr(w, h):
    head = b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y %d +X %d\n" % (h, w)
    return head + bytes(v for r, g, b in pixels(w, h) for v in (r // 2 + 1, g // 2 + 1, b // 2 + 1, 128))


def dds_dxt1(w, h):
    head = struct.pack("<4sIIIIIII", b"DDS ", 124, 0x1007, h, w, 0, 0, 0) + b"\x00" * 44
    pf = struct.pack("<II4sIIIII", 32, 4, b"DXT1", 0, 0, 0, 0, 0)
    caps = struct.pack("<IIIII", 0x1000, 0, 0, 0, 0)
    blocks = b"".join(struct.pack("<HHI", 0xF800, 0x001F, 0x1B1B1B1B ^ i) for i in range((w // 4) * (h // 4)))
    return head + pf + caps + blocks


def gif(w, h, frames=1, local=False, transparent=None):
    # Uncompressed-style LZW: a clear code before the code table fills, so every code is 9 bits
    # wide for a 256-colour palette (min code size 8).
    def lzw(indices):
        bits, nbits, out = 0, 0, bytearray()
        def emit(code):
            nonlocal bits, nbits
            bits |= code << nbits
            nbits += 9
            while nbits >= 8:
                out.append(bits & 0xFF)
                bits >>= 8
                nbits -= 8
        emit(256)
        for i, v in enumerate(indices):
            if i and i % 250 == 0:
                emit(256)
            emit(v)
        emit(257)
        if nbits:
            out.append(bits & 0xFF)
        blocks = bytearray()
        for i in range(0, len(out), 255):
            part = out[i:i + 255]
            blocks += bytes([len(part)]) + part
        return bytes([8]) + bytes(blocks) + b"\x00"
    palette = bytes(v for i in range(256) for v in (i, 255 - i, (i * 7) % 256))
    out = b"GIF89a" + struct.pack("<HHBBB", w, h, 0xF7, 0, 0) + palette
    for f in range(frames):
        if transparent is not None:
            out += b"\x21\xF9\x04" + bytes([1, 0, 0, transparent, 0])
        fw, fh = (w - f, h - f) if f else (w, h)
        flags = 0x87 if local else 0
        out += b"\x2C" + struct.pack("<HHHHB", f, f, fw, fh, flags)
        if local:
            out += palette[::-1]
        out += lzw([(x + y + f * 9) % 256 for y in range(fh) for x in range(fw)])
    return out + b"\x3B"


def write_images():
    imgs = {
        "png_rgb_8x6.png": png(8, 6),
        "png_gray_7x5.png": png(7, 5, 0),
        "png_gray16_5x4.png": png(5, 4, 0, 16),
        "png_gray16_trns_5x4.png": png(5, 4, 0, 16, extra=b"\x00\x00\x00\x02tRNS\x01\x00" + struct.pack(">I", zlib.crc32(b"tRNS\x01\x00"))),
        "png_palette_9x3.png": png(9, 3, 3),
        "png_la_4x4.png": png(4, 4, 4),
        "png_la16_3x3.png": png(3, 3, 4, 16),
        "png_rgba_6x6.png": png(6, 6, 6),
        "png_rgb16_4x3.png": png(4, 3, 2, 16),
        "png_rgba16_3x2.png": png(3, 2, 6, 16),
        "png_interlaced_9x9.png": png(9, 9, 2, 8, 1),
        "png_bomb_20000x20000.png": png(2, 2, bomb=(20000, 20000)),
        "png_bomb_9460x9460.png": png(2, 2, bomb=(9460, 9460)),
        "png_1x1.png": png(1, 1),
        "bmp_24_7x5.bmp": bmp(7, 5),
        "bmp_8_6x4.bmp": bmp(6, 4, 8),
        "tiff_rgb_5x4.tif": tiff(5, 4),
        "ico_png_8x8.ico": ico(png(8, 8, 6), 8, 8),
        "ico_bmp_8x8.ico": ico_bmp(8, 8),
        "pnm_p6_5x4.ppm": pnm("P6", 5, 4),
        "pnm_p6_16bit_3x3.ppm": pnm("P6-16", 3, 3),
        "pnm_p5_5x4.pgm": pnm("P5", 5, 4),
        "pnm_p3_3x2.ppm": pnm("P3", 3, 2),
        "pnm_p2_3x2.pgm": pnm("P2", 3, 2),
        "pnm_p1_9x2.pbm": pnm("P1", 9, 2),
        "pnm_p4_10x3.pbm": pnm("P4", 10, 3),
        "pam_p7_3x3.pam": pnm("P7", 3, 3),
        "tga_6x4.tga": tga(6, 4),
        "tga_rle_5x3.tga": tga(5, 3, True),
        "qoi_4x4.qoi": qoi(4, 4),
        "farbfeld_3x3.ff": farbfeld(3, 3),
        "hdr_4x3.hdr": hdr(4, 3),
        "dds_dxt1_8x8.dds": dds_dxt1(8, 8),
        "gif_12x8.gif": gif(12, 8),
        "gif_2frames_local_10x6.gif": gif(10, 6, frames=2, local=True, transparent=3),
    }
    for name, data in imgs.items():
        put("image", name, data)
    src = os.path.join(FIXTURES, "preprocess", "images")
    for name in sorted(os.listdir(src)):
        size = os.path.getsize(os.path.join(src, name))
        if size <= 16 * 1024:
            shutil.copy(os.path.join(src, name), os.path.join(CORPUS, "image", name))
    return imgs


# ------------------------------------------------------------------------------------ pth

def rezip(src, edit_pickle=None, compress=zipfile.ZIP_STORED, extra=None, drop=()):
    zin = zipfile.ZipFile(src)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compress) as z:
        for n in zin.namelist():
            if n in drop:
                continue
            data = zin.read(n)
            if n.endswith("data.pkl") and edit_pickle:
                data = edit_pickle(data)
            z.writestr(n, data)
        for n, data in (extra or {}).items():
            z.writestr(n, data)
    return out.getvalue()


def write_pth():
    small = os.path.join(FIXTURES, "resnet", "small.pth")
    evil = os.path.join(FIXTURES, "resnet", "evil.pth")
    put("pth", "small.pth", open(small, "rb").read())
    put("pth", "evil.pth", open(evil, "rb").read())
    put("pth", "small_deflated.pth", rezip(small, compress=zipfile.ZIP_DEFLATED))
    # conv.weight (4,3,3,3) strides (27,9,3,1) read as a transposed view: strides (1,4,12,36).
    put("pth", "small_strided.pth", rezip(small, lambda p: p.replace(b"K\x1bK\tK\x03K\x01t", b"K\x01K\x04K\x0cK$t", 1)))
    # Two tensors on one storage: the second names storage '0' as well.
    put("pth", "small_shared_storage.pth", rezip(small, lambda p: p.replace(b"X\x01\x00\x00\x001", b"X\x01\x00\x00\x000", 1)))
    # The storage entry missing, and a huge declared storage size (BININT 2^31-1 elements).
    put("pth", "small_missing_storage.pth", rezip(small, drop=("small/data/0",)))
    put("pth", "small_huge_storage.pth", rezip(small, lambda p: p.replace(b"K\x6ct", b"J\xff\xff\xff\x7ft", 1)))
    put("pth", "small_bad_global.pth", rezip(small, lambda p: p.replace(b"torch._utils\n_rebuild_tensor_v2", b"os\nsystem", 1)))
    put("pth", "not_a_zip.pth", b"\x80\x02}q\x00.")
    put("pth", "empty_zip.pth", rezip(small, drop=tuple(zipfile.ZipFile(small).namelist())))


# ------------------------------------------------------------------------------------ safetensors

def safetensors(tensors, metadata=None):
    header, data = {}, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if metadata is not None:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


def f32(n, scale=0.01):
    return struct.pack("<%df" % n, *[((i * 7919) % 200 - 100) * scale for i in range(n)])


def caption_model_tensors(feature=6, embed=4, hidden=5, vocab=7):
    return {
        "encoder.linear.weight": ("F32", [embed, feature], f32(embed * feature)),
        "encoder.linear.bias": ("F32", [embed], f32(embed)),
        "encoder.bn.weight": ("F32", [embed], f32(embed, 0.1)),
        "encoder.bn.bias": ("F32", [embed], f32(embed)),
        "encoder.bn.running_mean": ("F32", [embed], f32(embed)),
        "encoder.bn.running_var": ("F32", [embed], struct.pack("<%df" % embed, *([1.0] * embed))),
        "decoder.embed.weight": ("F32", [vocab, embed], f32(vocab * embed)),
        "decoder.lstm.weight_ih_l0": ("F32", [4 * hidden, embed], f32(4 * hidden * embed)),
        "decoder.lstm.weight_hh_l0": ("F32", [4 * hidden, hidden], f32(4 * hidden * hidden)),
        "decoder.lstm.bias_ih_l0": ("F32", [4 * hidden], f32(4 * hidden)),
        "decoder.lstm.bias_hh_l0": ("F32", [4 * hidden], f32(4 * hidden)),
        "decoder.linear.weight": ("F32", [vocab, hidden], f32(vocab * hidden)),
        "decoder.linear.bias": ("F32", [vocab], f32(vocab)),
    }


VOCAB = {"min_freq": 1, "itos": ["<pad>", "<startofseq>", "<endofseq>", "<unk>", "a", "red", "square"]}


def write_safetensors():
    put("safetensors", "caption_model.safetensors", safetensors(caption_model_tensors()))
    put("safetensors", "backbone_dtypes.safetensors", safetensors({
        "conv1.weight": ("F16", [2, 1, 1, 1], b"\x00\x3c\x00\xbc"),
        "bn1.running_var": ("BF16", [2], b"\x80\x3f\x80\x3f"),
        "bn1.num_batches_tracked": ("I64", [], struct.pack("<q", 7)),
        "fc.bias": ("F64", [1], struct.pack("<d", 0.5)),
        "mask": ("U8", [3], b"\x01\x00\x01"),
        "odd": ("I32", [1], b"\x01\x00\x00\x00"),
    }))
    put("safetensors", "optimizer_state.safetensors", safetensors({
        "m.encoder.linear.weight": ("F32", [2, 3], f32(6)),
        "step": ("F64", [], struct.pack("<d", 3.0)),
    }))
    config = {
        "format": "captioner-run-v1", "data": "scenes", "layout": "kaggle", "arch": "resnet18",
        "backbone": "resnet18.safetensors", "backbone_sha256": "00" * 32,
        "preprocess_version": "pil-bilinear32-imagenet-v1", "image_size": 32, "feature_cache": "cache",
        "min_freq": 1, "vocab_from": "train", "split_source": "random", "preset": None,
        "train": {"epochs": 1, "batch_size": 4, "lr": 0.001, "seed": 0, "patience": 5, "embed": 4,
                  "hidden": 5, "feature_dim": 6, "vocab_size": 7, "bn_statistics": "precise"},
    }
    meta = {"format": "captioner-model-v1", "vocab": json.dumps(VOCAB), "config": json.dumps(config),
            "split": json.dumps({"train": ["a.jpg"], "val": [], "test": ["b.jpg"]})}
    tensors = caption_model_tensors()
    tensors["trunk.conv1.weight"] = ("F32", [2, 3, 1, 1], f32(6))
    put("safetensors", "export_like.safetensors", safetensors(tensors, meta))
    put("safetensors", "export_no_config.safetensors", safetensors({"x": ("F32", [1], f32(1))}, {"format": "captioner-model-v1", "vocab": json.dumps(VOCAB)}))
    put("safetensors", "empty.safetensors", safetensors({}))


# ------------------------------------------------------------------------------------ text

def write_text():
    put("kaggle_csv", "captions.txt", "image,caption\n1000268201_693b08cb0e.jpg,A child in a pink dress is climbing up a set of stairs in an entry way .\n1000268201_693b08cb0e.jpg,\"A girl going into a wooden building , with quotes \"\"inside\"\" .\"\n1001773457_577c3a7d70.jpg,A black dog and a spotted dog are fighting\n")
    put("kaggle_csv", "captions_crlf_bom.txt", "\ufeffimage,caption\r\nscene_000001.jpg,a red square\r\nscene_000001.jpg,\r\nnot_an_image.txt,words\r\nonly_one_field\r\nscene_000002.png,a,b,c\r\n")
    put("kaggle_csv", "bad_header.txt", "img,text\na.jpg,b\n")
    put("kaggle_csv", "unterminated_quote.txt", "image,caption\na.jpg,\"never closed\nb.jpg,x\n")
    put("token_file", "Flickr8k.token.txt", "1000268201_693b08cb0e.jpg#0\tA child in a pink dress is climbing up a set of stairs in an entry way .\n1000268201_693b08cb0e.jpg#1\tA girl going into a wooden building .\n2258277193_586949ec62.jpg.1#0\tskipped line\n")
    put("token_file", "odd_lines.txt", b"a.jpg#0\tfine\r\nno tab here\nb.jpg#x\tbad k\nc.jpg\tno hash\n\xff\xfe\tnot utf8\n\n   \nd.JPG#4\t  spaces  \n")
    karpathy = {"images": [
        {"filename": "1000268201_693b08cb0e.jpg", "split": "train", "sentences": [{"raw": "A child in a pink dress .", "tokens": ["a", "child"]}, {"raw": "A girl ."}]},
        {"filepath": "val2014", "filename": "COCO_val2014_000000391895.jpg", "split": "restval", "sentences": [{"raw": "A man riding a bike"}]},
        {"filename": "x.jpg", "split": "test", "sentences": []},
        {"filename": "y.txt", "split": "val", "sentences": [{"raw": "not an image"}]},
        {"split": "train"},
        {"filename": "z.jpg", "split": "nowhere", "sentences": [{"raw": 5}, {"tokens": []}]},
    ], "dataset": "flickr8k"}
    put("karpathy_json", "dataset_flickr8k.json", json.dumps(karpathy))
    put("karpathy_json", "bom_pretty.json", "\ufeff" + json.dumps({"images": karpathy["images"][:2]}, indent=1))
    put("karpathy_json", "no_images.json", '{"dataset": "coco"}')
    put("vocab_json", "vocab.json", json.dumps(VOCAB, indent=2))
    put("vocab_json", "vocab_bigger_min_freq.json", json.dumps({"min_freq": 5, "itos": VOCAB["itos"] + ["dog", "runs", "on", "the", "beach", "ünïcode"]}))
    put("vocab_json", "vocab_dup.json", json.dumps({"min_freq": 1, "itos": VOCAB["itos"] + ["a"]}))
    put("vocab_json", "vocab_bad_specials.json", '{"min_freq":1,"itos":["a","b"]}')


# ------------------------------------------------------------------------------------ zips

def zip_of(entries, compress=zipfile.ZIP_DEFLATED):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compress) as z:
        for name, data, *mode in entries:
            info = zipfile.ZipInfo(name)
            info.compress_type = compress
            if mode:
                info.create_system = 3
                info.external_attr = mode[0] << 16
            z.writestr(info, data)
    return out.getvalue()


def write_zips():
    put("zip_extract", "flickr8k_like.zip", zip_of([
        ("Flicker8k_Dataset/", b""), ("Flicker8k_Dataset/a.jpg", b"\xff\xd8jpeg"), ("Flickr8k.token.txt", b"a.jpg#0\tx\n"),
        ("__MACOSX/._a.jpg", b"fork"), ("dataset_flickr8k.json", b'{"images": []}'),
    ]))
    put("zip_extract", "stored.zip", zip_of([("a.txt", b"hello"), ("dir/./b.txt", b"world")], zipfile.ZIP_STORED))
    put("zip_extract", "slip_parent.zip", zip_of([("ok.txt", b"fine"), ("../evil.txt", b"escaped")]))
    put("zip_extract", "slip_nested.zip", zip_of([("a/../../evil.txt", b"escaped")]))
    put("zip_extract", "slip_inner_dotdot.zip", zip_of([("a/../b.txt", b"inner")]))
    put("zip_extract", "absolute.zip", zip_of([("/tmp/evil.txt", b"abs")]))
    put("zip_extract", "backslash.zip", zip_of([("..\\evil.txt", b"win"), ("C:\\evil.txt", b"drive")]))
    put("zip_extract", "symlink.zip", zip_of([("link", b"../../etc/passwd", stat.S_IFLNK | 0o777), ("link/x.txt", b"through")]))
    put("zip_extract", "file_then_dir.zip", zip_of([("a", b"file"), ("a/b", b"under a file")]))
    put("zip_extract", "only_list.zip", zip_of([("deep/dataset_flickr8k.json", b"{}"), ("other.json", b"{}")]))


# ------------------------------------------------------------------------------------ http

def write_http(imgs):
    jpeg = open(os.path.join(FIXTURES, "preprocess", "images", "jpeg_rgb_upscale_100x80.jpg"), "rb").read()
    # mode 0: raw body; byte 2 picks the content type (0 image/png, 1 image/jpeg, 3 octet-stream, 4 text/plain)
    put("http_upload", "raw_png.bin", bytes([0, 0, 0]) + imgs["png_rgb_8x6.png"])
    put("http_upload", "raw_jpeg_beam3.bin", bytes([0, 2, 1]) + jpeg)
    put("http_upload", "raw_gif.bin", bytes([0, 1, 2]) + imgs["gif_12x8.gif"])
    put("http_upload", "raw_bomb.bin", bytes([0, 0, 0]) + imgs["png_bomb_20000x20000.png"])
    put("http_upload", "raw_text.bin", bytes([0, 0, 4]) + b"hello")
    put("http_upload", "raw_bad_beam.bin", bytes([0, 5, 0]) + imgs["png_1x1.png"])
    # mode 1: a form with the bytes in its image field; byte 2 picks the part's type
    put("http_upload", "form_png.bin", bytes([1, 0, 0]) + imgs["png_palette_9x3.png"])
    put("http_upload", "form_bmp_octet.bin", bytes([1, 1, 3]) + imgs["bmp_24_7x5.bmp"])
    put("http_upload", "form_no_type_webp.bin", bytes([1, 0, 5]) + open(os.path.join(FIXTURES, "preprocess", "images", "webp_lossy_181x137.webp"), "rb").read())
    put("http_upload", "form_not_image.bin", bytes([1, 0, 0]) + b"GIF89a broken")
    # mode 2: the bytes are the multipart body
    body = (b"--FUZZBOUNDARY\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nx\r\n"
            b"--FUZZBOUNDARY\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n"
            + imgs["png_gray_7x5.png"] + b"\r\n--FUZZBOUNDARY--\r\n")
    put("http_upload", "multipart_two_fields.bin", bytes([2, 1]) + body)
    put("http_upload", "multipart_no_image.bin", bytes([2, 0]) + b"--FUZZBOUNDARY\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nx\r\n--FUZZBOUNDARY--\r\n")
    put("http_upload", "multipart_truncated.bin", bytes([2, 0]) + body[:90])
    # mode 3: the whole request
    put("http_upload", "request_get_info.bin", bytes([3, 0]) + b"GET /api/info HTTP/1.1\r\nHost: x\r\n\r\n")
    put("http_upload", "request_chunked.bin", bytes([3, 0]) + b"POST /api/caption?beam=2 HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n" % len(imgs["png_1x1.png"]) + imgs["png_1x1.png"] + b"\r\n0\r\n\r\n")
    put("http_upload", "request_expect.bin", bytes([3, 0]) + b"POST /api/caption HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Type: image/bmp\r\nContent-Length: 5\r\n\r\nBMxyz")
    put("http_upload", "request_put.bin", bytes([3, 0]) + b"PUT /api/caption HTTP/1.0\r\n\r\n")


def main():
    if os.path.isdir(CORPUS):
        pass
    imgs = write_images()
    write_pth()
    write_safetensors()
    write_text()
    write_zips()
    write_http(imgs)


if __name__ == "__main__":
    main()
