#!/usr/bin/env python3
"""Reference counts for `captioner inspect --json`, computed independently in Python.

For a corpus directory in any of the three layouts (Kaggle captions.txt, Flickr8k.token.txt,
Karpathy dataset_*.json) it prints one JSON object with the keys of `inspect --json`: layout, images,
captions, missing_images, bad_rows, skipped_lines, images_without_captions, unsplit_images, split,
vocab_size (+ the vocabulary itself as "vocab"), caption_length and unreadable_images (Pillow).
Tokens are re.findall(r"\\w+", caption.lower()); the vocabulary is the 4 specials then the words
with count >= min_freq in order of first appearance, from the training images or all captions.

Run on one corpus:
    /work/pyref/bin/python scripts/reference/corpus_reference.py DIR [--format kaggle|token|karpathy]
        [--min-freq K] [--vocab-from train|all] [--split-file split.json]
Regenerate the committed fixture (the test writes the corpus, this script describes it):
    CAPTIONER_REFERENCE_CORPUS=/tmp/refcorpus cargo test --test it data::write_reference_corpus -- --ignored
    /work/pyref/bin/python scripts/reference/corpus_reference.py --fixture /tmp/refcorpus \
        > tests/fixtures/data/corpus_reference.json
"""
import argparse
import csv
import io
import json
import os
import re
import sys
import warnings

from PIL import Image

MAX_IMAGE_PIXELS = 89_478_485
IMAGE_EXTENSIONS = {"jpg", "jpeg", "png", "bmp", "gif", "webp", "tif", "tiff", "ppm"}
IMAGE_FOLDERS = ["Images", "Flicker8k_Dataset", "images"]
KARPATHY_FILES = ["dataset_flickr8k.json", "dataset_flickr30k.json", "dataset_coco.json"]
SPLIT_FILES = [("Flickr_8k.trainImages.txt", "train"), ("Flickr_8k.devImages.txt", "val"),
               ("Flickr_8k.testImages.txt", "test")]
KARPATHY_SPLITS = {"train": "train", "restval": "train", "val": "val", "test": "test"}
SPECIALS = ["<pad>", "<startofseq>", "<endofseq>", "<unk>"]


def has_image_extension(name):
    stem, dot, ext = name.rpartition(".")
    return bool(dot) and stem != "" and not stem.endswith("/") and ext.lower() in IMAGE_EXTENSIONS


def text_lines(data):
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return [l[:-1] if l.endswith(b"\r") else l for l in data.split(b"\n")]


class Parsed:
    def __init__(self):
        self.images = {}  # name -> {"captions": [...], "split": str|None}; dicts keep insertion order
        self.bad_rows = 0
        self.skipped_lines = 0

    def push(self, name, caption):
        self.images.setdefault(name, {"captions": [], "split": None})["captions"].append(caption)


def read_kaggle(path):
    data = open(path, "rb").read()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    rows = csv.reader(io.StringIO(data.decode("utf-8", "surrogateescape"), newline=""))
    header = next(rows, None)
    if header is None or [h.strip() for h in header] != ["image", "caption"]:
        raise SystemExit(f"{path}: bad header")
    p = Parsed()
    for row in rows:
        if not row:
            continue
        if len(row) != 2 or any(re.search("[\udc80-\udcff]", f) for f in row):
            p.bad_rows += 1
            continue
        image, caption = row[0].strip(), row[1].strip()
        if not has_image_extension(image) or not caption:
            p.bad_rows += 1
            continue
        p.push(image, caption)
    return p


def read_token(path):
    p = Parsed()
    for raw in text_lines(open(path, "rb").read()):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            p.bad_rows += 1
            continue
        if not line.strip():
            continue
        key, tab, caption = line.partition("\t")
        image, hash_, k = key.strip().rpartition("#")
        if not tab or not hash_:
            p.bad_rows += 1
        elif not has_image_extension(image):
            p.skipped_lines += 1
        elif not (k and all("0" <= ch <= "9" for ch in k)) or not caption.strip():
            p.bad_rows += 1
        else:
            p.push(image, caption.strip())
    return p


def karpathy_name_split(entry):
    name = entry.get("filename") if isinstance(entry, dict) else None
    if not isinstance(name, str) or not name.strip():
        return None
    name = name.strip()
    fp = entry.get("filepath")
    if fp is not None and not isinstance(fp, str):
        return None
    file = f"{fp.strip().rstrip('/')}/{name}" if fp and fp.strip() else name
    if not has_image_extension(file):
        return None
    split = entry.get("split")
    if split is None:
        return file, None
    if not isinstance(split, str) or split not in KARPATHY_SPLITS:
        return None
    return file, KARPATHY_SPLITS[split]


def read_karpathy(path):
    data = open(path, "rb").read()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    p = Parsed()
    for entry in json.loads(data)["images"]:
        ns = karpathy_name_split(entry)
        sentences = entry.get("sentences") if ns else None
        if ns is None or not isinstance(sentences, list) or not sentences:
            p.bad_rows += 1
            continue
        file, split = ns
        captions = []
        for s in sentences:
            raw = s.get("raw") if isinstance(s, dict) else None
            if isinstance(raw, str) and raw.strip():
                captions.append(raw.strip())
            else:
                p.bad_rows += 1
        if captions:
            img = p.images.setdefault(file, {"captions": [], "split": None})
            img["captions"].extend(captions)
            img["split"] = img["split"] or split
    return p


def apply_split_files(d, p):
    for name, part in SPLIT_FILES:
        path = os.path.join(d, name)
        if os.path.isfile(path):
            for raw in text_lines(open(path, "rb").read()):
                img = p.images.get(raw.decode("utf-8", "replace").strip())
                if img is not None and img["split"] is None:
                    img["split"] = part


def captions_file(d, layout):
    names = {"kaggle": ["captions.txt"], "token": ["Flickr8k.token.txt"], "karpathy": KARPATHY_FILES}
    return next((os.path.join(d, n) for n in names[layout] if os.path.isfile(os.path.join(d, n))), None)


def detect(d):
    return next(l for l in ["kaggle", "token", "karpathy"] if captions_file(d, l))


def uncaptioned(root, named):
    count = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [n for n in dirnames if not n.startswith(".")]
        for f in filenames:
            if f.startswith("."):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), root).replace(os.sep, "/")
            count += has_image_extension(rel) and rel not in named
    return count


def image_error(path):
    try:
        if os.path.getsize(path) == 0:
            return "empty file"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                w, h = im.size
                if w * h > MAX_IMAGE_PIXELS:
                    return "pixel bomb"
                im.load()
    except Exception as e:  # any failure is what we are counting
        return (str(e) or type(e).__name__).replace(path, os.path.basename(path))
    return None


def tokenize(s):
    return re.findall(r"\w+", s.lower())


def vocabulary(captions, min_freq):
    counts, order = {}, []
    for c in captions:
        for w in tokenize(c):
            if w not in counts:
                counts[w] = 0
                order.append(w)
            counts[w] += 1
    return SPECIALS + [w for w in order if counts[w] >= min_freq]


def describe(d, layout=None, min_freq=5, vocab_from="train", split_file=None):
    layout = layout or detect(d)
    path = captions_file(d, layout)
    p = {"kaggle": read_kaggle, "token": read_token, "karpathy": read_karpathy}[layout](path)
    if layout != "karpathy":
        apply_split_files(d, p)
    root = next((os.path.join(d, f) for f in IMAGE_FOLDERS if os.path.isdir(os.path.join(d, f))), d)
    without = uncaptioned(root, set(p.images))
    corpus, missing = [], 0
    for name, img in p.images.items():
        parts = name.split("/")
        if name.startswith("/") or ".." in parts or parts[0] == ".":
            p.bad_rows += 1
        elif not os.path.isfile(os.path.join(root, name)):
            missing += 1
        else:
            corpus.append((name, img["captions"], img["split"]))
    own = any(s for _, _, s in corpus)
    if split_file:
        split = json.load(open(split_file))
    elif own:
        split = {part: [n for n, _, s in corpus if s == part] for part in ["train", "val", "test"]}
    else:
        split = None  # a random split is ChaCha8 in Rust: not reproduced here
    train = set(split["train"]) if split else set()
    if vocab_from == "all":
        vocab = vocabulary((c for _, caps, _ in corpus for c in caps), min_freq)
    else:
        vocab = vocabulary((c for n, caps, _ in corpus if n in train for c in caps), min_freq)
    lengths = [len(tokenize(c)) for _, caps, _ in corpus for c in caps]
    unreadable = []
    for name, _, _ in corpus:
        err = image_error(os.path.join(root, name))
        if err:
            unreadable.append({"file": name, "error": err})
    return {
        "layout": layout,
        "images": len(corpus),
        "captions": len(lengths),
        "missing_images": missing,
        "bad_rows": p.bad_rows,
        "skipped_lines": p.skipped_lines,
        "images_without_captions": without,
        "unsplit_images": sum(1 for _, _, s in corpus if s is None) if own else 0,
        "split": {k: len(v) for k, v in split.items()} if split else None,
        "vocab_size": len(vocab),
        "vocab": vocab,
        "min_freq": min_freq,
        "vocab_from": vocab_from,
        "caption_length": {
            "min": min(lengths, default=0),
            "mean": sum(lengths) / len(lengths) if lengths else 0.0,
            "max": max(lengths, default=0),
        },
        "unreadable_images": unreadable,
    }


# The option sets the committed fixture covers, for each layout of the test corpus.
FIXTURE_CASES = [
    {"min_freq": 1, "vocab_from": "train"},
    {"min_freq": 2, "vocab_from": "all"},
    {"min_freq": 1, "vocab_from": "train", "split_file": "split.json"},
]


def fixture(root):
    out = []
    for layout in ["kaggle", "token", "karpathy"]:
        d = os.path.join(root, layout)
        for case in FIXTURE_CASES:
            kw = dict(case)
            if "split_file" in kw:
                kw["split_file"] = os.path.join(d, kw["split_file"])
            out.append({"dir": layout, "args": case, "expected": describe(d, **kw)})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--fixture", action="store_true",
                    help="DIR holds kaggle/, token/, karpathy/: print the test fixture")
    ap.add_argument("--format", choices=["kaggle", "token", "karpathy"])
    ap.add_argument("--min-freq", type=int, default=5)
    ap.add_argument("--vocab-from", choices=["train", "all"], default="train")
    ap.add_argument("--split-file")
    a = ap.parse_args()
    if a.fixture:
        result = fixture(a.dir)
    else:
        result = describe(a.dir, a.format, a.min_freq, a.vocab_from, a.split_file)
    json.dump(result, sys.stdout, indent=1, ensure_ascii=False)
    print()


if __name__ == "__main__":
    main()
