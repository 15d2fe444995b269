"""PyTorch side of `captioner bench caption` (embedded in the binary with include_str!).

Run by hand:  python3 scripts/reference/bench_caption.py --image photo.jpg --threads 2 --iters 5
Needs torch, torchvision and Pillow. One image end to end, as the seed's app does it: PIL open +
convert("RGB"), Resize((224, 224)) + ToTensor + Normalize, torchvision resnet50 without fc,
Linear + BatchNorm1d head, and the seed's DecoderRNN (Embedding, LSTM, Linear) decoded with the
tutorial's inference loop fixed to carry the LSTM state (one LSTM step per word, nothing re-fed).
Random weights, vocabulary 9000; endofseq is suppressed (its bias is -1e4) so every caption is the
full 25 words on both sides: equal work. Prints one JSON object per mode: {"mode", "ms" (the median),
"all_ms", "words"}; with --interleaved (how the bench runs it) a ready line, then the line of each mode read
from stdin, so the bench can alternate the two sides.

With --decoder attention: the trunk without its pool and fc (the 7x7x2048 map), and the soft-attention
decoder of sgrvinod's tutorial (Attention, LSTMCell, f_beta gate; E = A = H = 512) decoded as its
caption.py does (k = 1 is greedy), its attention recomputing encoder_att(a) at every step as the
tutorial's module does.
"""

import argparse
import json
import sys
import time

import torch
import torchvision
from PIL import Image
from torch import nn
from torchvision import transforms

START, END, MAX_WORDS = 1, 2, 25


class Model(nn.Module):
    def __init__(self, arch, vocab, embed=256, hidden=512):
        super().__init__()
        net = getattr(torchvision.models, arch)(weights=None)
        dim = net.fc.in_features
        net.fc = nn.Identity()
        self.trunk = net
        self.linear_h = nn.Linear(dim, embed)
        self.bn = nn.BatchNorm1d(embed, momentum=0.01)
        self.embed = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, 1, batch_first=True)
        self.linear = nn.Linear(hidden, vocab)
        with torch.no_grad():
            self.linear.bias[END] = -1e4
        self.transform = Model.transform_of()

    @staticmethod
    def transform_of():
        return transforms.Compose(
            [
                transforms.Resize((224, 224)),
                transforms.ToTensor(),
                transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
            ]
        )

    def image_state(self, path):
        img = Image.open(path).convert("RGB")
        x = self.transform(img).unsqueeze(0)
        emb = self.bn(self.linear_h(self.trunk(x)))
        _, state = self.lstm(emb.unsqueeze(1))
        return state

    def greedy(self, path):
        state = self.image_state(path)
        tok = torch.tensor([[START]])
        words = []
        for _ in range(MAX_WORDS):
            out, state = self.lstm(self.embed(tok), state)
            nxt = int(self.linear(out[:, -1]).argmax(-1))
            if nxt == END:
                break
            words.append(nxt)
            tok = torch.tensor([[nxt]])
        return words

    def beam(self, path, k):
        h, c = self.image_state(path)
        toks = torch.tensor([[START]])
        scores = torch.zeros(1)
        seqs = [[]]
        for _ in range(MAX_WORDS):
            out, (h, c) = self.lstm(self.embed(toks), (h, c))
            logp = torch.log_softmax(self.linear(out[:, -1]), -1)  # [rows, V]
            total = (scores[:, None] + logp).flatten()
            best = total.topk(k)
            rows = best.indices // logp.shape[1]
            words = best.indices % logp.shape[1]
            scores = best.values
            seqs = [seqs[r] + [int(w)] for r, w in zip(rows.tolist(), words.tolist())]
            h, c = h[:, rows], c[:, rows]
            toks = words[:, None]
        return seqs[0]


class AttentionModel(nn.Module):
    """The tutorial's DecoderWithAttention at inference, behind a ResNet trunk without pool and fc."""

    def __init__(self, arch, vocab, size=512):
        super().__init__()
        net = getattr(torchvision.models, arch)(weights=None)
        dim = net.fc.in_features
        self.trunk = nn.Sequential(*list(net.children())[:-2])
        self.encoder_att = nn.Linear(dim, size)
        self.decoder_att = nn.Linear(size, size)
        self.full_att = nn.Linear(size, 1)
        self.embedding = nn.Embedding(vocab, size)
        self.decode_step = nn.LSTMCell(size + dim, size)
        self.init_h, self.init_c = nn.Linear(dim, size), nn.Linear(dim, size)
        self.f_beta = nn.Linear(size, dim)
        self.fc = nn.Linear(size, vocab)
        with torch.no_grad():
            self.fc.bias[END] = -1e4
        self.transform = Model.transform_of()

    def encode(self, path):
        img = Image.open(path).convert("RGB")
        x = self.transform(img).unsqueeze(0)
        a = self.trunk(x)  # [1, C, 7, 7]
        return a.permute(0, 2, 3, 1).reshape(1, -1, a.shape[1])

    def step(self, a, tok, h, c):
        att = self.full_att(torch.relu(self.encoder_att(a) + self.decoder_att(h).unsqueeze(1))).squeeze(2)
        alpha = torch.softmax(att, 1)
        awe = (a * alpha.unsqueeze(2)).sum(1)
        awe = torch.sigmoid(self.f_beta(h)) * awe
        h, c = self.decode_step(torch.cat([self.embedding(tok), awe], 1), (h, c))
        return torch.log_softmax(self.fc(h), 1), h, c

    def greedy(self, path):
        return self.beam(path, 1)

    def beam(self, path, k):
        a = self.encode(path)
        mean = a.mean(1)
        h, c = self.init_h(mean), self.init_c(mean)
        a = a.expand(k, -1, -1) if k > 1 else a
        h, c = h.expand(k, -1).contiguous(), c.expand(k, -1).contiguous()
        toks = torch.full((k,), START, dtype=torch.long)
        scores = torch.zeros(k)
        seqs = [[] for _ in range(k)]
        for t in range(MAX_WORDS):
            logp, h, c = self.step(a, toks, h, c)
            total = scores[:, None] + logp if t > 0 else logp[:1]
            best = total.flatten().topk(k)
            rows = best.indices // logp.shape[1]
            words = best.indices % logp.shape[1]
            scores = best.values
            seqs = [seqs[r] + [int(w)] for r, w in zip(rows.tolist(), words.tolist())]
            h, c, toks = h[rows], c[rows], words
        return seqs[0]


def timed_ms(iters, f, pause_ms=0.0):
    """Milliseconds of `iters` calls of f after one warm-up call, each after `pause_ms` idle."""
    f()  # warm-up
    times = []
    for _ in range(iters):
        if pause_ms > 0:
            time.sleep(pause_ms / 1e3)
        t0 = time.perf_counter()
        f()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--vocab", type=int, default=9000)
    ap.add_argument("--beam", type=int, default=3)
    ap.add_argument("--decoder", default="lstm", choices=["lstm", "attention"])
    ap.add_argument("--interleaved", action="store_true")
    ap.add_argument("--pause-ms", type=float, default=0.0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.decoder == "attention":
        model = AttentionModel(a.arch, a.vocab).eval()
    else:
        model = Model(a.arch, a.vocab).eval()
    modes = {
        "greedy": lambda: model.greedy(a.image),
        f"beam{a.beam}": lambda: model.beam(a.image, a.beam),
    }

    def line(mode):
        words = len(modes[mode]())
        ms = timed_ms(a.iters, modes[mode], a.pause_ms)
        med = sorted(ms)[len(ms) // 2]
        print(json.dumps({"mode": mode, "ms": med, "all_ms": ms, "words": words}), flush=True)

    with torch.no_grad():
        if a.interleaved:
            # Driven by `captioner bench caption`: a ready line, then one line for each mode read
            # from stdin, until stdin closes.
            print(json.dumps({"ready": True, "torch": torch.__version__}), flush=True)
            for request in sys.stdin:
                line(request.strip())
        else:
            for mode in modes:
                line(mode)


if __name__ == "__main__":
    main()
