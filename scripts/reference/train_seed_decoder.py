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
Nothing is written unless --eval-out or --save-weights is given; CI never runs this.

Caption metrics (issue 5: beam 3 BLEU-4 >= greedy, both within 0.02 of this decoder's):
    ... train_seed_decoder.py --data DATA --run RUN --eval-out HYPS.json [--beam 1 3] [--split test]
        [--refs COCO_GT.json] [--tokenizer auto|ptb|regex] [--length-alpha 0]
after training, restores the weights of the best validation epoch (BatchNorm statistics included),
switches to eval mode and captions the split's images from the cached features, once per --beam K:
K = 1 is greedy (image step, startofseq, then the argmax fed back carrying (h, c); at most 25 words,
stopping at endofseq), K > 1 is captioner's beam search (src/decode/beam.rs, step for step: the top K
tokens of every live hypothesis pooled per image, best K non-end candidates kept, a candidate ending
in endofseq finishes, an image stops at K finished; at the word limit the live ones count only where
none finished; ranked by summed log-probability, divided by length^alpha when --length-alpha > 0).
Captions are the vocabulary's words joined by spaces (`<unk>` as is), as captioner writes them.
Scores are pycocoevalcap 1.2's Bleu(4), Rouge() and Cider() (CIDEr-D) against the raw references
(captions.txt, or the annotations file of `captioner eval --coco-out`, --refs), both sides tokenized
by pycocoevalcap's PTBTokenizer (java; COCOEvalCap's procedure; captioner's `eval` emulates it), or,
with --tokenizer regex or without java, by re.findall(r"\\w+", lower()) on both sides. Prints one JSON
line per beam, {"bleu1".."bleu4", "rouge_l", "cider", "images"} as `captioner eval --json` plus
"beam", and writes {"<image file>": "<caption>"} to --eval-out (to FILE.beamK.json per beam when
several are asked). --score-hyps FILE scores such a file (e.g. `captioner eval --hyps-out`) with the
same scorer and exits without training, to check that both sides score alike. --weights FILE (a
captioner run's best.safetensors) decodes and scores with captioner's own trained weights instead of
training, to check that both sides decode alike; --save-weights FILE writes the best epoch's weights
under captioner's names, so that `captioner eval` can decode them (put them as best.safetensors in a
copy of the run directory).
"""

import argparse
import contextlib
import copy
import csv
import json
import os
import re
import shutil
import sys
import time

import numpy as np

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

PAD, START, END, UNK = 0, 1, 2, 3
MAX_WORDS = 40  # captioner's MAX_CAPTION_WORDS
MAX_DECODE_WORDS = 25  # captioner's decode::MAX_WORDS (the reference's max_length)


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

    def start(self, feats):
        """(h, c) after the image step; its output is not a word (training never scores it)."""
        img = self.bn(self.linear(feats)).unsqueeze(1)  # [B, 1, E]
        _, state = self.lstm(img)
        return state

    def step(self, tokens, state):
        """Log-probabilities [B, V] of the next word after feeding `tokens` [B], and the new (h, c)."""
        h, state = self.lstm(self.embed(tokens).unsqueeze(1), state)
        return torch.log_softmax(self.out(h[:, 0, :]), dim=-1), state


def teacher_tensors(sel):
    """For captions `sel` [(row, word ids)]: inputs [B, T] = startofseq w1..wn pad... and targets [B, T] =
    w1..wn endofseq pad..., T = the longest caption + 1 (also train_attention_decoder.py's layout)."""
    t = max(len(c[1]) for c in sel) + 1
    inputs = torch.full((len(sel), t), PAD, dtype=torch.long)
    targets = torch.full((len(sel), t), PAD, dtype=torch.long)
    for r, (_, toks) in enumerate(sel):
        inputs[r, 0] = START
        inputs[r, 1 : len(toks) + 1] = torch.tensor(toks, dtype=torch.long)
        targets[r, : len(toks)] = torch.tensor(toks, dtype=torch.long)
        targets[r, len(toks)] = END
    return inputs, targets


def batch(caps, idx):
    """Feature rows [B], inputs and targets [B, T] (`teacher_tensors`) of captions `caps[idx]`."""
    sel = [caps[i] for i in idx]
    inputs, targets = teacher_tensors(sel)
    rows = torch.tensor([c[0] for c in sel], dtype=torch.long)
    return rows, inputs, targets


def greedy(model, feats):
    """Greedy word ids per image (no specials), as captioner's decode/greedy.rs."""
    out = [[] for _ in range(feats.shape[0])]
    state = model.start(feats)
    active = list(range(feats.shape[0]))
    tokens = torch.full((len(active),), START, dtype=torch.long)
    for _ in range(MAX_DECODE_WORDS):
        lp, state = model.step(tokens, state)
        best = lp.argmax(dim=-1).tolist()  # first index wins ties, as captioner's argmax
        keep, nxt = [], []
        for r, t in enumerate(best):
            if t == END:
                continue
            out[active[r]].append(t)
            if len(out[active[r]]) < MAX_DECODE_WORDS:
                keep.append(r)
                nxt.append(t)
        if not keep:
            break
        if len(keep) < len(active):
            idx = torch.tensor(keep, dtype=torch.long)
            state = (state[0][:, idx], state[1][:, idx])
        active = [active[r] for r in keep]
        tokens = torch.tensor(nxt, dtype=torch.long)
    return out


def top_k(row, k):
    """The k largest entries of a float32 row as (index, value), largest first, ties to the lower index."""
    idx = np.argsort(-row, kind="stable")[:k]
    return [(int(i), row[i]) for i in idx]


def beam_search(model, feat, k, alpha=0.0):
    """Best word ids for one image [1, D] under captioner's beam search (decode/beam.rs)."""
    def score(lp, n):
        return lp if alpha == 0.0 else lp / np.float32(max(n, 1)) ** np.float32(alpha)

    state = model.start(feat)
    live = [([], np.float32(0.0))]  # (tokens, summed log-prob), row r of `state` is live[r]
    feed = [START]
    finished = []  # (tokens, log-prob, score)
    for _ in range(MAX_DECODE_WORDS):
        lp, nstate = model.step(torch.tensor(feed, dtype=torch.long), state)
        lp = lp.numpy().astype(np.float32)
        cands = []
        for r, (_, hlp) in enumerate(live):
            for t, v in top_k(lp[r], k):
                cands.append((r, t, np.float32(hlp + v)))
        cands.sort(key=lambda c: (-c[2], c[0], c[1]))
        nlive, parents, nfeed = [], [], []
        for r, t, l in cands:
            if len(nlive) == k or len(finished) >= k:
                break
            if t == END:
                finished.append((live[r][0], l, score(l, len(live[r][0]) + 1)))
                continue
            nlive.append((live[r][0] + [t], l))
            parents.append(r)
            nfeed.append(t)
        if len(finished) >= k or not nlive:
            live = []
            break
        idx = torch.tensor(parents, dtype=torch.long)
        state = (nstate[0][:, idx], nstate[1][:, idx])
        live, feed = nlive, nfeed
    if not finished:  # cut by the word limit: the live ones compete as they are
        finished = [(t, l, score(l, len(t))) for t, l in live]
    if not finished:
        return []
    finished.sort(key=lambda f: -f[2])  # stable, as Rust's sort_by
    return finished[0][0]


def caption_text(itos, ids):
    """captioner's Vocabulary::decode: words joined by spaces, pad and startofseq skipped."""
    return " ".join(itos[i] if i < len(itos) else "<unk>" for i in ids if i not in (PAD, START))


def load_refs(a, captions, names):
    """Raw reference captions per image: --refs (a captioner --coco-out annotations file) or captions.txt."""
    if a.refs:
        gt = json.load(open(a.refs))
        fname = {im["id"]: im["file_name"] for im in gt["images"]}
        refs = {}
        for ann in gt["annotations"]:
            refs.setdefault(fname[ann["image_id"]], []).append(ann["caption"])
    else:
        refs = captions
    missing = [n for n in names if not refs.get(n)]
    if missing:
        raise SystemExit(f"{len(missing)} image(s) without references, e.g. {missing[0]}")
    return {n: refs[n] for n in names}


def score(refs, hyps, tokenizer):
    """pycocoevalcap 1.2 Bleu(4), Rouge, Cider on {image: [raw refs]} and {image: raw hyp}."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    keys = sorted(hyps)
    if tokenizer == "ptb":
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        tok = PTBTokenizer()
        gts = tok.tokenize({k: [{"caption": c} for c in refs[k]] for k in keys})
        res = tok.tokenize({k: [{"caption": hyps[k]}] for k in keys})
    else:
        gts = {k: [" ".join(tokenize(c)) for c in refs[k]] for k in keys}
        res = {k: [" ".join(tokenize(hyps[k]))] for k in keys}
    with contextlib.redirect_stdout(sys.stderr):  # the scorers print; stdout keeps the JSON line
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        rouge, _ = Rouge().compute_score(gts, res)
        cider, _ = Cider().compute_score(gts, res)
    out = {f"bleu{i + 1}": float(b) for i, b in enumerate(bleu)}
    out.update(rouge_l=float(rouge), cider=float(cider), images=len(keys))
    return out


CAPTIONER_NAMES = {"encoder.linear": "linear", "encoder.bn": "bn", "decoder.embed": "embed",
                   "decoder.lstm": "lstm", "decoder.linear": "out"}


def save_captioner_weights(state, path):
    """Writes a state dict of Model under captioner's tensor names (BatchNorm's batch counter dropped)."""
    ours = {v: k for k, v in CAPTIONER_NAMES.items()}
    out = {}
    for k, v in state.items():
        prefix, _, leaf = k.rpartition(".")
        if leaf != "num_batches_tracked":
            out[f"{ours[prefix]}.{leaf}"] = v.detach().float().contiguous()
    save_file(out, path)


def load_captioner_weights(model, path):
    """Copies a captioner weights file (PyTorch parameter names under encoder./decoder.) into `model`."""
    names = CAPTIONER_NAMES
    state = {}
    for k, v in load_file(path).items():
        prefix, _, leaf = k.rpartition(".")
        if prefix not in names:
            raise SystemExit(f"{path}: unexpected tensor {k}")
        state[f"{names[prefix]}.{leaf}"] = v.float()
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not m.endswith("num_batches_tracked") for m in missing):
        raise SystemExit(f"{path}: missing {missing}, unexpected {unexpected}")


def hyps_path(path, beam, several):
    if not several:
        return path
    root, ext = os.path.splitext(path)
    return f"{root}.beam{beam}{ext or '.json'}"


def read_run_corpus(data, run, names):
    """What a reference trainer reads of a captioner run (this one and train_attention_decoder.py):
    the vocabulary `itos`, the split, every image's raw captions from DATA/captions.txt, and
    `caps_of(images)` -> [(row in the cache's `names`, word ids)], tokenised and cut as captioner does."""
    row = {n: i for i, n in enumerate(names)}
    itos = json.load(open(os.path.join(run, "vocab.json")))["itos"]
    stoi = {w: i for i, w in enumerate(itos)}
    split = json.load(open(os.path.join(run, "split.json")))
    captions = {}
    with open(os.path.join(data, "captions.txt"), newline="") as f:
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

    return itos, split, captions, caps_of


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
    ap.add_argument("--eval-out", metavar="FILE", help="after training, caption --split with the best "
                    "weights, print the scores as JSON and write {image: caption} here")
    ap.add_argument("--beam", type=int, nargs="+", default=[1], metavar="K",
                    help="beam sizes to decode with (1: greedy); several give one JSON line each")
    ap.add_argument("--length-alpha", type=float, default=0.0, help="beam length normalisation (captioner's)")
    ap.add_argument("--bn-stats", choices=["ema", "precise"], default="ema",
                    help="ema: BatchNorm's running averages, as the seed; precise: recompute them over the "
                    "training captions' features after every epoch, as `captioner train --bn-stats precise`")
    ap.add_argument("--split", choices=["test", "val"], default="test")
    ap.add_argument("--refs", metavar="COCO_GT", help="references from `captioner eval --coco-out`'s "
                    "captions_gt.json instead of captions.txt")
    ap.add_argument("--tokenizer", choices=["auto", "ptb", "regex"], default="auto",
                    help="ptb: pycocoevalcap's PTBTokenizer (java); regex: \\w+ lower-case on both "
                    "sides; auto: ptb when java is found")
    ap.add_argument("--weights", metavar="FILE", help="with --eval-out: decode with this captioner "
                    "weights file (RUN/best.safetensors) instead of training")
    ap.add_argument("--save-weights", metavar="FILE", help="write the best epoch's weights here, "
                    "under captioner's tensor names")
    ap.add_argument("--score-hyps", metavar="FILE", help="only score this {image: caption} file "
                    "(e.g. captioner eval --hyps-out) against --split's references, then exit")
    a = ap.parse_args()
    if any(k < 1 for k in a.beam):
        ap.error("--beam must be at least 1")
    if a.weights and not a.eval_out:
        ap.error("--weights needs --eval-out")
    if a.weights and a.save_weights:
        ap.error("--save-weights writes trained weights; it cannot go with --weights")
    tokenizer = a.tokenizer
    if tokenizer == "auto":
        tokenizer = "ptb" if shutil.which("java") else "regex"
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)

    cfg = json.load(open(os.path.join(a.run, "config.json")))
    cache = a.cache or cfg["feature_cache"]
    feats = load_file(os.path.join(cache, "features.safetensors"))["features"].float()
    names = json.load(open(os.path.join(cache, "images.json")))
    itos, split, captions, caps_of = read_run_corpus(a.data, a.run, names)

    if a.score_hyps:
        hyps = json.load(open(a.score_hyps))
        names = sorted(split[a.split])
        if sorted(hyps) != names:
            raise SystemExit(f"{a.score_hyps} does not caption exactly the {a.split} images")
        s = score(load_refs(a, captions, names), hyps, tokenizer)
        print(f"scored {a.score_hyps} ({tokenizer} tokenizer)", file=sys.stderr)
        print(json.dumps(s), flush=True)
        return

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

    train_rows = torch.tensor([r for r, _ in train], dtype=torch.long)

    def set_bn_statistics():
        """Mean and unbiased variance of Linear(feature) over every training caption (captioner's Head::set_statistics)."""
        with torch.no_grad():
            z = model.linear(feats[train_rows])
            model.bn.running_mean.copy_(z.mean(0))
            model.bn.running_var.copy_(z.var(0, unbiased=True))

    best, best_epoch, since = None, None, 0
    for epoch in range(1, 0 if a.weights else a.epochs + 1):
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
        if a.bn_stats == "precise":
            set_bn_statistics()
        v = val_loss()
        improved = best is None or v < best
        if improved:
            best, best_epoch, since = v, epoch, 0
            if a.eval_out or a.save_weights:
                best_state = copy.deepcopy(model.state_dict())
        else:
            since += 1
        print(
            f"epoch {epoch}: train loss {tl / max(tt, 1):.4f}, val loss {v:.4f}"
            f"{' (best)' if improved else ''}, {time.time() - start:.1f} s",
            flush=True,
        )
        if a.patience > 0 and since >= a.patience:
            print(f"no improvement for {a.patience} epochs, stopping")
            break
    if a.weights:
        load_captioner_weights(model, a.weights)
        label = a.weights
        if a.bn_stats == "precise":  # the file's statistics replaced by its weights' own
            set_bn_statistics()
            label += " (precise BatchNorm statistics)"
        print(f"{a.weights}: val loss {val_loss():.4f}", flush=True)
    else:
        label = f"epoch-{best_epoch}"
        print(f"best val loss {best:.4f} at epoch {best_epoch}", flush=True)
        if a.save_weights:
            save_captioner_weights(best_state, a.save_weights)
            print(f"wrote the epoch-{best_epoch} weights to {a.save_weights}", file=sys.stderr)
    if not a.eval_out:
        return

    if not a.weights:
        model.load_state_dict(best_state)
    model.eval()
    names = sorted(split[a.split])
    absent = [n for n in names if n not in row]
    if absent:
        raise SystemExit(f"{len(absent)} {a.split} image(s) are not in the feature cache, e.g. {absent[0]}")
    refs = load_refs(a, captions, names)
    f = feats[torch.tensor([row[n] for n in names], dtype=torch.long)]
    for k in a.beam:
        start = time.time()
        with torch.no_grad():
            if k == 1:
                ids = greedy(model, f)
            else:
                ids = [beam_search(model, f[i : i + 1], k, a.length_alpha) for i in range(len(names))]
        hyps = {n: caption_text(itos, t) for n, t in zip(names, ids)}
        path = hyps_path(a.eval_out, k, len(a.beam) > 1)
        with open(path, "w") as fh:
            json.dump(hyps, fh, indent=1, sort_keys=True)
        s = score(refs, hyps, tokenizer)
        print(f"{'greedy' if k == 1 else f'beam {k}'}: {len(names)} {a.split} images decoded in "
              f"{time.time() - start:.1f} s with the {label} weights, {tokenizer} tokenizer, "
              f"captions in {path}", file=sys.stderr)
        print(json.dumps({**s, "beam": k}), flush=True)


if __name__ == "__main__":
    main()
