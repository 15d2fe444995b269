"""The soft-attention decoder (Show, Attend and Tell, sgrvinod's tutorial) in PyTorch, trained on a
captioner run's cached feature maps, split and vocabulary, to compare best validation losses
(docs/attention.md: within 0.05 of `captioner train --decoder attention`'s).

Run (after `captioner train --data DATA --run RUN --decoder attention ...`):
    /work/pyref/bin/python scripts/reference/train_attention_decoder.py --data DATA --run RUN \
        [--epochs N] [--patience N] [--batch-size 64] [--lr 4e-4] [--seed 0] [--threads 2] \
        [--embed-dim 512] [--attention-dim 512] [--hidden-dim 512] [--dropout 0.5] [--alpha-c 1] \
        [--grad-clip 5] [--cache CACHE]

Every hyper-parameter defaults to the run's config.json (`train`: epochs, batch_size, lr, seed,
patience, embed, hidden, and `attention`: attention_dim, dropout, alpha_c, grad_clip); a flag
overrides it. A run that did not train the attention decoder (no `attention` in its config) gets the
tutorial's sizes instead (E = A = H = 512, dropout 0.5, alpha_c 1, grad clip 5, lr 4e-4). The maps
are CACHE/spatial.safetensors (one f16 tensor `spatial` [N, P, C], rows in the order of
CACHE/images.json; CACHE is config.json's feature_cache or --cache), memory-mapped, each batch's rows
copied out as float32. Vocabulary (vocab.json), split (split.json), captions (DATA/captions.txt) and
their tokenisation are train_seed_decoder.py's, which mirror captioner's.

Model as scripts/reference/attention_fixtures.py (captioner's architecture and parameter names):
h0 = init_h(mean_i a_i), c0 = init_c(mean_i a_i); per step e = full_att(relu(encoder_att(a) +
decoder_att(h))), alpha = softmax over the cells, z = sigmoid(f_beta(h)) * sum_i alpha_i a_i,
(h, c) = LSTMCell([embedding(y); z], (h, c)), logits = fc(dropout(h)). Embedding and fc.weight start
uniform in +-0.1, fc.bias at 0, the rest as PyTorch initialises them. Inputs `startofseq w1..wn`,
targets `w1..wn endofseq`; a batch's captions are sorted by length, longest first, and step t runs
the rows still going, as the tutorial does, so each caption runs exactly its own n + 1 steps. Loss =
mean cross-entropy over the real target tokens + alpha_c * batch mean of sum_i (1 - sum_t alpha_ti)^2
(summed over the cells, as captioner; the tutorial's `.mean()` also averages over them). Every
gradient element clamped to [-grad_clip, grad_clip], then Adam(lr). Training captions shuffled each
epoch by a torch generator seeded by --seed; every batch is trained, the last short one included.

Printed per epoch: the train loss (token-weighted mean of the loss trained on, cross-entropy +
regulariser, as metrics.jsonl's train_loss) and the validation loss (token-weighted cross-entropy
over every validation caption in eval mode: no dropout, no regulariser, as metrics.jsonl's
val_loss), and the seconds taken. Stops after `patience` epochs without improvement (0: never), then
prints `best val loss X at epoch E`. Nothing is written; CI never runs this.
"""

import argparse
import json
import os
import struct
import time

import numpy as np

import torch
import torch.nn as nn

# The run's vocabulary, split and captions are read as the seed decoder's reference reads them.
from train_seed_decoder import PAD, read_run_corpus, teacher_tensors

# captioner's AttentionConfig::default() and TrainConfig::attention(): the tutorial's settings.
TUTORIAL = {"embed": 512, "hidden": 512, "lr": 4e-4,
            "attention_dim": 512, "dropout": 0.5, "alpha_c": 1.0, "grad_clip": 5.0}


def open_spatial(path):
    """The `spatial` tensor [N, P, C] of a spatial feature file as a read-only float16 memmap."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    info = header.get("spatial")
    if info is None:
        raise SystemExit(f"{path}: no tensor named `spatial`")
    if info["dtype"] != "F16" or len(info["shape"]) != 3:
        raise SystemExit(f"{path}: `spatial` is {info['dtype']} {info['shape']}, expected F16 [N, P, C]")
    begin, end = info["data_offsets"]
    shape = tuple(info["shape"])
    if end - begin != 2 * int(np.prod(shape)):
        raise SystemExit(f"{path}: `spatial` holds {end - begin} bytes for shape {shape}")
    return np.memmap(path, dtype="<f2", mode="r", offset=8 + n + begin, shape=shape)


class Attention(nn.Module):
    def __init__(self, channels, hidden, attention):
        super().__init__()
        self.encoder_att = nn.Linear(channels, attention)
        self.decoder_att = nn.Linear(hidden, attention)
        self.full_att = nn.Linear(attention, 1)

    def forward(self, a, h):
        e = self.full_att(torch.relu(self.encoder_att(a) + self.decoder_att(h).unsqueeze(1))).squeeze(2)
        alpha = torch.softmax(e, dim=1)  # [B, P]
        return (a * alpha.unsqueeze(2)).sum(1), alpha


class Decoder(nn.Module):
    def __init__(self, channels, vocab, embed=512, hidden=512, attention=512, dropout=0.5):
        super().__init__()
        self.attention = Attention(channels, hidden, attention)
        self.embedding = nn.Embedding(vocab, embed)
        self.dropout = nn.Dropout(p=dropout)
        self.decode_step = nn.LSTMCell(embed + channels, hidden)
        self.init_h, self.init_c = nn.Linear(channels, hidden), nn.Linear(channels, hidden)
        self.f_beta = nn.Linear(hidden, channels)
        self.fc = nn.Linear(hidden, vocab)
        with torch.no_grad():  # the tutorial's init_weights
            self.embedding.weight.uniform_(-0.1, 0.1)
            self.fc.weight.uniform_(-0.1, 0.1)
            self.fc.bias.fill_(0)

    def forward(self, a, inputs, lengths):
        """Logits [B, T, V] and alphas [B, T, P] of captions sorted longest first (zero past a
        caption's own `lengths` steps); a [B, P, C], inputs [B, T]."""
        b, t_max = inputs.shape
        mean = a.mean(1)
        h, c = self.init_h(mean), self.init_c(mean)
        emb = self.embedding(inputs)  # [B, T, E]
        logits = a.new_zeros(b, t_max, self.fc.out_features)
        alphas = a.new_zeros(b, t_max, a.shape[1])
        for t in range(t_max):
            n = sum(1 for l in lengths if l > t)  # rows still running: the first n
            awe, alpha = self.attention(a[:n], h[:n])
            z = torch.sigmoid(self.f_beta(h[:n])) * awe
            h, c = self.decode_step(torch.cat([emb[:n, t], z], 1), (h[:n], c[:n]))
            logits[:n, t] = self.fc(self.dropout(h))
            alphas[:n, t] = alpha
        return logits, alphas


def batch(caps, idx, maps):
    """Feature maps [B, P, C] (float32), inputs [B, T] = startofseq w1..wn pad..., targets [B, T] =
    w1..wn endofseq pad... and lengths n + 1, sorted by length, longest first (stable)."""
    sel = sorted((caps[i] for i in idx), key=lambda c: -len(c[1]))
    inputs, targets = teacher_tensors(sel)
    a = torch.from_numpy(np.asarray(maps[[c[0] for c in sel]], dtype=np.float32))
    return a, inputs, targets, [len(c[1]) + 1 for c in sel]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--cache", help="feature cache (default: config.json's)")
    ap.add_argument("--epochs", type=int, help="default: config.json's")
    ap.add_argument("--patience", type=int, help="default: config.json's (0: never stop early)")
    ap.add_argument("--batch-size", type=int, help="default: config.json's")
    ap.add_argument("--lr", type=float, help="default: config.json's")
    ap.add_argument("--seed", type=int, help="default: config.json's")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--embed-dim", type=int, help="default: config.json's embed")
    ap.add_argument("--attention-dim", type=int, help="default: config.json's")
    ap.add_argument("--hidden-dim", type=int, help="default: config.json's hidden")
    ap.add_argument("--dropout", type=float, help="default: config.json's")
    ap.add_argument("--alpha-c", type=float, help="default: config.json's")
    ap.add_argument("--grad-clip", type=float, help="default: config.json's")
    a = ap.parse_args()

    cfg = json.load(open(os.path.join(a.run, "config.json")))
    tc = cfg["train"]
    att = tc.get("attention")
    if tc.get("decoder", "lstm") != "attention" or att is None:
        print(f"{a.run} did not train the attention decoder: the tutorial's sizes, dropout, alpha_c, "
              "grad clip and lr by default")
        tc = {**tc, "embed": TUTORIAL["embed"], "hidden": TUTORIAL["hidden"], "lr": TUTORIAL["lr"]}
        att = TUTORIAL

    def pick(flag, value):
        return value if flag is None else flag

    epochs = pick(a.epochs, tc["epochs"])
    patience = pick(a.patience, tc["patience"])
    batch_size = pick(a.batch_size, tc["batch_size"])
    lr = pick(a.lr, tc["lr"])
    seed = pick(a.seed, tc["seed"])
    embed = pick(a.embed_dim, tc["embed"])
    hidden = pick(a.hidden_dim, tc["hidden"])
    attention_dim = pick(a.attention_dim, att["attention_dim"])
    dropout = pick(a.dropout, att["dropout"])
    alpha_c = pick(a.alpha_c, att["alpha_c"])
    grad_clip = pick(a.grad_clip, att["grad_clip"])
    if batch_size < 1 or not 0 <= dropout < 1 or alpha_c < 0 or grad_clip <= 0:
        ap.error("need --batch-size >= 1, 0 <= --dropout < 1, --alpha-c >= 0, --grad-clip > 0")
    torch.manual_seed(seed)
    torch.set_num_threads(a.threads)
    shuffle = torch.Generator().manual_seed(seed)

    cache = a.cache or cfg["feature_cache"]
    maps = open_spatial(os.path.join(cache, "spatial.safetensors"))
    names = json.load(open(os.path.join(cache, "images.json")))
    if maps.shape[0] != len(names):
        raise SystemExit(f"{cache}: {maps.shape[0]} feature maps for {len(names)} images in images.json")
    itos, split, _, caps_of = read_run_corpus(a.data, a.run, names)
    train, val = caps_of(split["train"]), caps_of(split["val"])
    print(f"{len(train)} train / {len(val)} val captions, vocabulary {len(itos)}, maps {tuple(maps.shape)}; "
          f"embed {embed}, attention {attention_dim}, hidden {hidden}, dropout {dropout}, alpha_c {alpha_c}, "
          f"grad clip {grad_clip}, lr {lr}, batch {batch_size}, seed {seed}", flush=True)
    if not train or not val:
        raise SystemExit("training needs at least one train and one validation caption")

    model = Decoder(maps.shape[2], len(itos), embed, hidden, attention_dim, dropout)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8)
    ce_sum = nn.CrossEntropyLoss(ignore_index=PAD, reduction="sum")

    def val_loss():
        model.eval()
        total, tokens = 0.0, 0
        with torch.no_grad():
            for s in range(0, len(val), batch_size):
                f, inp, tgt, lengths = batch(val, range(s, min(s + batch_size, len(val))), maps)
                logits, _ = model(f, inp, lengths)
                total += ce_sum(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1)).item()
                tokens += int((tgt != PAD).sum())
        return total / max(tokens, 1)

    best, best_epoch, since = None, None, 0
    for epoch in range(1, epochs + 1):
        start = time.time()
        model.train()
        order = torch.randperm(len(train), generator=shuffle).tolist()
        tl, tt = 0.0, 0
        for s in range(0, len(order), batch_size):
            f, inp, tgt, lengths = batch(train, order[s : s + batch_size], maps)
            logits, alphas = model(f, inp, lengths)
            n = int((tgt != PAD).sum())
            ce = ce_sum(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1)) / n
            reg = alpha_c * ((1.0 - alphas.sum(1)) ** 2).sum(1).mean()
            loss = ce + reg
            opt.zero_grad()
            loss.backward()
            for q in model.parameters():
                q.grad.clamp_(-grad_clip, grad_clip)  # the tutorial's clip_gradient
            opt.step()
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
            f"{' (best)' if improved else ''}, {time.time() - start:.1f} s",
            flush=True,
        )
        if patience > 0 and since >= patience:
            print(f"no improvement for {patience} epochs, stopping")
            break
    if best is None:
        raise SystemExit("no epoch trained (--epochs 0)")
    print(f"best val loss {best:.4f} at epoch {best_epoch}", flush=True)


if __name__ == "__main__":
    main()
