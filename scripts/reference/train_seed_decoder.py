"""The seed's decoder in PyTorch, trained on a captioner run's cached features, split and vocabulary,
to compare best validation losses (issue 4: within 0.05 of captioner's).

Run (after `captioner train --data DATA --run RUN ...`):
    /work/pyref/bin/python scripts/reference/train_seed_decoder.py --data DATA --run RUN \
        [--epochs 30] [--patience 5] [--batch-size 64] [--lr 1e-3] [--seed 0] [--threads 2]

Model as the seed (minus its ResNet, whose output is the cached feature): Linear(D->256) +
BatchNorm1d(256, momentum=0.01) for the image; Embedding(V, 256) -> LSTM(256->512) -> Linear(512->V).
Sequence = [image embedding, startofseq, w1..wn]; the outputs after startofseq, w1..wn are scored
against w1..wn, endofseq with cross-entropy ignoring pad. Adam(lr), batch 64, shuffled each epoch,
validation loss (mean over real tokens, eval mode) every epoch, stop after `patience` epochs
without improvement (0: never). Prints one line per epoch and `best val loss X at epoch E`.
Nothing is written; CI never runs this.
"""

import argparse
import csv
import json
import os
import re
import time

import torch
import torch.nn as nn
from safetensors.torch import load_file

PAD, START, END, UNK = 0, 1, 2, 3
MAX_WORDS = 40  # captioner's MAX_CAPTION_WORDS


def tokenize(s):
    return re.findall(r"\w+", s.lower())


class Model(nn.Module):
    def __init__(self, feature_dim, vocab, embed=256, hidden=512):
        super().__init__()
        self.linear = nn.Linear(feature_dim, embed)
        self.bn = nn.BatchNorm1d(embed, momentum=0.01)
        self.embed = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, feats, inputs):
        img = self.bn(self.linear(feats)).unsqueeze(1)  # [B, 1, E]
        x = torch.cat([img, self.embed(inputs)], dim=1)  # [B, 1 + T, E]
        h, _ = self.lstm(x)
        return self.out(h[:, 1:, :])  # outputs after startofseq, w1..wn


def batch(caps, idx):
    """inputs [B, T] = startofseq w1..wn pad...; targets [B, T] = w1..wn endofseq pad..."""
    sel = [caps[i] for i in idx]
    t = max(len(c[1]) for c in sel) + 1
    inputs = torch.full((len(sel), t), PAD, dtype=torch.long)
    targets = torch.full((len(sel), t), PAD, dtype=torch.long)
    for r, (_, toks) in enumerate(sel):
        inputs[r, 0] = START
        inputs[r, 1 : len(toks) + 1] = torch.tensor(toks, dtype=torch.long)
        targets[r, : len(toks)] = torch.tensor(toks, dtype=torch.long)
        targets[r, len(toks)] = END
    rows = torch.tensor([c[0] for c in sel], dtype=torch.long)
    return rows, inputs, targets


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--cache", help="feature cache (default: config.json's)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--patience", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)

    cfg = json.load(open(os.path.join(a.run, "config.json")))
    cache = a.cache or cfg["feature_cache"]
    feats = load_file(os.path.join(cache, "features.safetensors"))["features"].float()
    names = json.load(open(os.path.join(cache, "images.json")))
    row = {n: i for i, n in enumerate(names)}
    itos = json.load(open(os.path.join(a.run, "vocab.json")))["itos"]
    stoi = {w: i for i, w in enumerate(itos)}
    split = json.load(open(os.path.join(a.run, "split.json")))

    captions = {}
    with open(os.path.join(a.data, "captions.txt"), newline="") as f:
        for rec in csv.DictReader(f):
            captions.setdefault(rec["image"].strip(), []).append(rec["caption"])

    def caps_of(images):
        out = []
        for name in images:
            if name not in row:
                continue
            for c in captions.get(name, []):
                toks = [stoi.get(w, UNK) for w in tokenize(c)][:MAX_WORDS]
                out.append((row[name], toks))
        return out

    train, val = caps_of(split["train"]), caps_of(split["val"])
    print(f"{len(train)} train / {len(val)} val captions, vocabulary {len(itos)}, features {tuple(feats.shape)}")

    model = Model(feats.shape[1], len(itos))
    opt = torch.optim.Adam(model.parameters(), lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
    ce_sum = nn.CrossEntropyLoss(ignore_index=PAD, reduction="sum")
    ce_mean = nn.CrossEntropyLoss(ignore_index=PAD)

    def val_loss():
        model.eval()
        total, tokens = 0.0, 0
        with torch.no_grad():
            for s in range(0, len(val), a.batch_size):
                rows, inp, tgt = batch(val, range(s, min(s + a.batch_size, len(val))))
                logits = model(feats[rows], inp)
                total += ce_sum(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1)).item()
                tokens += int((tgt != PAD).sum())
        return total / max(tokens, 1)

    best, best_epoch, since = None, None, 0
    for epoch in range(1, a.epochs + 1):
        start = time.time()
        model.train()
        order = torch.randperm(len(train)).tolist()
        tl, tt = 0.0, 0
        for s in range(0, len(order), a.batch_size):
            idx = order[s : s + a.batch_size]
            if len(idx) < 2:  # BatchNorm cannot train on one row (captioner skips it too)
                continue
            rows, inp, tgt = batch(train, idx)
            logits = model(feats[rows], inp)
            loss = ce_mean(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            n = int((tgt != PAD).sum())
            tl += loss.item() * n
            tt += n
        v = val_loss()
        improved = best is None or v < best
        if improved:
            best, best_epoch, since = v, epoch, 0
        else:
            since += 1
        print(
            f"epoch {epoch}: train loss {tl / max(tt, 1):.4f}, val loss {v:.4f}"
            f"{' (best)' if improved else ''}, {time.time() - start:.1f} s"
        )
        if a.patience > 0 and since >= a.patience:
            print(f"no improvement for {a.patience} epochs, stopping")
            break
    print(f"best val loss {best:.4f} at epoch {best_epoch}")


if __name__ == "__main__":
    main()
