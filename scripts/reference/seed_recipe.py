"""The seed (the PyTorch image-captioning tutorial) training recipe, reproduced to TIME it on the CPU.

Why: the seed recomputes the frozen ResNet-50 feature of an image once per caption (5 per image) every
epoch, where `captioner train` computes it once and caches it. This script runs the seed's own training
loop for a few batches of epoch 1, times them, and extrapolates to one epoch, to 50 epochs (the seed's
schedule, no early stopping) and to its best epoch (4 in the tutorial's own Flickr8k run).

Run (Kaggle Flickr8k layout: DIR/captions.txt with header `image,caption`, and DIR/Images/):
    /work/pyref/bin/python scripts/reference/seed_recipe.py --data DIR [--threads 2] [--batches 20] \
        [--seed 0] [--best-epoch 4]
Smoke test on a tiny synthetic corpus (about a minute on 2 cores):
    captioner synth --out /tmp/seedtest --images 40 --seed 1
    /work/pyref/bin/python scripts/reference/seed_recipe.py --data /tmp/seedtest --batches 2
It needs torch, torchvision and Pillow, downloads nothing and writes nothing. CI never runs it.

The recipe, as the seed has it:
  * one dataset item PER CAPTION: (transform(PIL.Image.open(path).convert("RGB")), token ids), the
    transform being Resize((224, 224)) + ToTensor() + Normalize(ImageNet mean/std), done in
    __getitem__, so every caption re-decodes and re-resizes its image, every epoch;
  * vocabulary from ALL captions: re.findall(r"\\w+", caption.lower()), specials pad=0, startofseq=1,
    endofseq=2, unk=3, min frequency 1 (words in order of first appearance); a caption is
    [startofseq] + ids + [endofseq]; a batch is padded with pad to its longest caption;
  * random_split of the caption items 80/20 (int(0.8 * n) train, the rest val), seeded (--seed);
  * EncoderCNN: torchvision resnet50 with every parameter requires_grad=False, its children minus
    fc, flattened, then Linear(2048 -> 256) + BatchNorm1d(256, momentum=0.01). The model is in
    train() mode while training, so the ResNet's BatchNorm layers use batch statistics (and update
    their running stats), as in the seed. weights=None here (the pretrained file cannot be downloaded
    on this machine): the compute is identical, only the numbers differ;
  * DecoderRNN: Embedding(V, 256), LSTM(256, 512, batch_first=True), Linear(512, V). Inputs are
    [features, embed(captions[:, :-1])]; outputs[:, 1:] (after startofseq, w1..wn) are scored against
    captions[:, 1:] (w1..wn, endofseq) with CrossEntropyLoss(ignore_index=pad);
  * Adam(lr=1e-3) over the encoder's Linear + BatchNorm and the whole decoder; batch 64, shuffle=True;
  * validation every epoch: the same loss over the val split, model.eval(), torch.no_grad().
DataLoader num_workers=0 (the images are decoded in the training process, as in a plain run of the
seed; more workers would hide decoding on a machine with spare cores, not on 2 shared ones).

Timing: batches are timed end to end (DataLoader fetch, i.e. 64 image decodes + resizes, then forward,
backward and Adam step), after --warmup untimed batches (default 2). Only full batches of 64 are
timed where the split has any (a trailing partial batch is run untimed); if the train loader runs out,
a new epoch's shuffled loader continues it. Validation: 3 batches in eval mode with no_grad, timed the
same way. Output: one JSON line on stdout, a short summary on stderr.
"""

import argparse
import csv
import json
import math
import os
import re
import statistics
import sys
import time
from collections import Counter

import torch
import torch.nn as nn
import torchvision
from PIL import Image
from torch.utils.data import DataLoader, Dataset, random_split
from torchvision import models, transforms

PAD, START, END, UNK = 0, 1, 2, 3
BATCH = 64


def tokenize(text):
    return re.findall(r"\w+", text.lower())


class Vocabulary:
    def __init__(self, captions, freq_threshold=1):
        self.itos = {PAD: "pad", START: "startofseq", END: "endofseq", UNK: "unk"}
        self.stoi = {v: k for k, v in self.itos.items()}
        counts = Counter()
        order = []
        for c in captions:
            for w in tokenize(c):
                if w not in counts:
                    order.append(w)
                counts[w] += 1
        for w in order:
            if counts[w] >= freq_threshold and w not in self.stoi:
                idx = len(self.itos)
                self.itos[idx] = w
                self.stoi[w] = idx

    def __len__(self):
        return len(self.itos)

    def numericalize(self, text):
        return [self.stoi.get(w, UNK) for w in tokenize(text)]


class FlickrDataset(Dataset):
    """One item per caption row; the image is opened and transformed on every access."""

    def __init__(self, root, rows, vocab, transform):
        self.root = root
        self.rows = rows
        self.vocab = vocab
        self.transform = transform

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        name, caption = self.rows[i]
        image = Image.open(os.path.join(self.root, "Images", name)).convert("RGB")
        image = self.transform(image)
        ids = [START] + self.vocab.numericalize(caption) + [END]
        return image, torch.tensor(ids, dtype=torch.long)


def collate(batch):
    images = torch.stack([b[0] for b in batch])
    captions = nn.utils.rnn.pad_sequence([b[1] for b in batch], batch_first=True, padding_value=PAD)
    return images, captions


class EncoderCNN(nn.Module):
    def __init__(self, embed_size):
        super().__init__()
        resnet = models.resnet50(weights=None)
        for p in resnet.parameters():
            p.requires_grad = False
        self.resnet = nn.Sequential(*list(resnet.children())[:-1])
        self.linear = nn.Linear(resnet.fc.in_features, embed_size)
        self.bn = nn.BatchNorm1d(embed_size, momentum=0.01)

    def forward(self, images):
        features = self.resnet(images)
        features = features.reshape(features.size(0), -1)
        return self.bn(self.linear(features))


class DecoderRNN(nn.Module):
    def __init__(self, embed_size, hidden_size, vocab_size, num_layers=1):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_size)
        self.lstm = nn.LSTM(embed_size, hidden_size, num_layers, batch_first=True)
        self.linear = nn.Linear(hidden_size, vocab_size)

    def forward(self, features, captions):
        embeddings = self.embed(captions[:, :-1])
        inputs = torch.cat((features.unsqueeze(1), embeddings), 1)
        hiddens, _ = self.lstm(inputs)
        return self.linear(hiddens)


class CaptionModel(nn.Module):
    def __init__(self, vocab_size):
        super().__init__()
        self.encoder = EncoderCNN(256)
        self.decoder = DecoderRNN(256, 512, vocab_size)

    def forward(self, images, captions):
        return self.decoder(self.encoder(images), captions)


def caption_loss(model, criterion, images, captions, vocab_size):
    outputs = model(images, captions)
    # outputs: [image step, after startofseq, after w1, ..., after wn] = captions' length L;
    # drop the image step: L-1 predictions for captions[:, 1:] = w1..wn, endofseq.
    assert outputs.shape[:2] == captions.shape, (outputs.shape, captions.shape)
    return criterion(outputs[:, 1:].reshape(-1, vocab_size), captions[:, 1:].reshape(-1))


def read_rows(root):
    with open(os.path.join(root, "captions.txt"), newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return [(r["image"].strip(), r["caption"]) for r in reader]


class Batches:
    """Yields batches from a loader forever, starting a new (reshuffled) epoch when it runs out."""

    def __init__(self, loader):
        self.loader = loader
        self.it = iter(loader)
        self.epochs_started = 1

    def next(self):
        try:
            return next(self.it)
        except StopIteration:
            self.it = iter(self.loader)
            self.epochs_started += 1
            return next(self.it)


def run_timed(batches, step, warmup, n, has_full):
    """Runs `warmup` batches untimed, then times `n` batches (full ones only when `has_full`)."""
    for _ in range(warmup):
        images, captions = batches.next()
        step(images, captions)
    total, data, compute, sizes, untimed_partial = [], [], [], [], 0
    while len(total) < n:
        t0 = time.perf_counter()
        images, captions = batches.next()
        t1 = time.perf_counter()
        step(images, captions)
        t2 = time.perf_counter()
        if has_full and images.size(0) < BATCH:
            untimed_partial += 1
            continue
        total.append(t2 - t0)
        data.append(t1 - t0)
        compute.append(t2 - t1)
        sizes.append(images.size(0))
    return total, data, compute, sizes, untimed_partial


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="Kaggle Flickr8k layout: captions.txt + Images/")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", type=int, default=20, help="training batches of epoch 1 to time")
    ap.add_argument("--warmup", type=int, default=2, help="untimed batches before the timed ones")
    ap.add_argument("--val-batches", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--best-epoch", type=int, default=4,
                    help="the seed's best epoch (the tutorial's Flickr8k run peaks at 4 of 50)")
    ap.add_argument("--epochs", type=int, default=50, help="the seed's schedule (no early stopping)")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    rows = read_rows(a.data)
    vocab = Vocabulary([c for _, c in rows], freq_threshold=1)
    V = len(vocab)
    transform = transforms.Compose([
        transforms.Resize((224, 224)),
        transforms.ToTensor(),
        transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ])
    dataset = FlickrDataset(a.data, rows, vocab, transform)
    n_train = int(0.8 * len(dataset))
    n_val = len(dataset) - n_train
    train_set, val_set = random_split(dataset, [n_train, n_val],
                                      generator=torch.Generator().manual_seed(a.seed))
    train_loader = DataLoader(train_set, batch_size=BATCH, shuffle=True, num_workers=0,
                              collate_fn=collate)
    val_loader = DataLoader(val_set, batch_size=BATCH, shuffle=False, num_workers=0,
                            collate_fn=collate)

    model = CaptionModel(V)
    criterion = nn.CrossEntropyLoss(ignore_index=PAD)
    params = (list(model.decoder.parameters()) + list(model.encoder.linear.parameters())
              + list(model.encoder.bn.parameters()))
    assert all(not p.requires_grad for p in model.encoder.resnet.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-3)

    losses = []

    def train_step(images, captions):
        optimizer.zero_grad()
        loss = caption_loss(model, criterion, images, captions, V)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())

    def val_step(images, captions):
        with torch.no_grad():
            losses.append(caption_loss(model, criterion, images, captions, V).item())

    model.train()
    train_batches = Batches(train_loader)
    tr_total, tr_data, tr_compute, tr_sizes, tr_partial = run_timed(
        train_batches, train_step, a.warmup, a.batches, has_full=n_train >= BATCH)

    model.eval()
    val_batches = Batches(val_loader)
    va_total, va_data, va_compute, va_sizes, va_partial = run_timed(
        val_batches, val_step, 0, a.val_batches, has_full=n_val >= BATCH)

    mean = statistics.fmean(tr_total)
    median = statistics.median(tr_total)
    bpe = math.ceil(n_train / BATCH)
    epoch_s = mean * bpe
    val_mean = statistics.fmean(va_total)
    val_bpe = math.ceil(n_val / BATCH)
    val_epoch_s = val_mean * val_bpe
    full_epoch_s = epoch_s + val_epoch_s
    out = {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "threads": a.threads,
        "num_workers": 0,
        "images": len({r[0] for r in rows}),
        "captions": len(rows),
        "vocab": V,
        "warmup_batches": a.warmup,
        "batches_timed": len(tr_total),
        "batch_sizes_timed": sorted(set(tr_sizes)),
        "partial_batches_untimed": tr_partial,
        "train_epochs_touched": train_batches.epochs_started,
        "sec_per_batch": mean,
        "sec_per_batch_mean": mean,
        "sec_per_batch_median": median,
        "sec_per_batch_min": min(tr_total),
        "sec_per_batch_max": max(tr_total),
        "data_sec_per_batch_mean": statistics.fmean(tr_data),
        "step_sec_per_batch_mean": statistics.fmean(tr_compute),
        "captions_train": n_train,
        "batches_per_epoch": bpe,
        "epoch_s_extrapolated": epoch_s,
        "captions_val": n_val,
        "val_batches_timed": len(va_total),
        "val_batch_sizes_timed": sorted(set(va_sizes)),
        "val_sec_per_batch_mean": val_mean,
        "val_sec_per_batch_median": statistics.median(va_total),
        "val_batches_per_epoch": val_bpe,
        "val_epoch_s_extrapolated": val_epoch_s,
        "epoch_with_val_s": full_epoch_s,
        "epochs": a.epochs,
        "epochs50_h": a.epochs * full_epoch_s / 3600,
        "epochs50_train_only_h": a.epochs * epoch_s / 3600,
        "best_epoch": a.best_epoch,
        "to_best_epoch_h": a.best_epoch * full_epoch_s / 3600,
        "first_losses": [round(x, 4) for x in losses[:3]],
    }
    print(json.dumps(out))
    partial_note = ""
    if n_train < BATCH or n_val < BATCH:
        partial_note = " (split smaller than one batch: partial batches timed, extrapolation not meaningful)"
    print(
        f"seed recipe, torch {torch.__version__}, {a.threads} threads, num_workers=0: "
        f"{len(tr_total)} train batches of {BATCH} timed after {a.warmup} warm-up: "
        f"mean {mean:.2f} s, median {median:.2f} s "
        f"(data {out['data_sec_per_batch_mean']:.2f} s + step {out['step_sec_per_batch_mean']:.2f} s){partial_note}\n"
        f"  train {n_train} captions = {bpe} batches -> {epoch_s / 60:.1f} min/epoch; "
        f"val {n_val} captions = {val_bpe} batches x {val_mean:.2f} s -> {val_epoch_s / 60:.1f} min\n"
        f"  {a.epochs} epochs: {out['epochs50_h']:.2f} h (train only {out['epochs50_train_only_h']:.2f} h); "
        f"to best epoch {a.best_epoch}: {out['to_best_epoch_h']:.2f} h",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
