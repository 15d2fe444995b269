"""PyTorch side of `captioner bench train` (embedded in the binary with include_str!).

Also runnable by hand:  python3 scripts/reference/bench_train.py --threads 2 --steps 10
The seed's training step: head (Linear 2048->256 + BatchNorm1d) and DecoderRNN (Embedding,
LSTM 256->512, Linear 512->9000) on a batch of 64 captions of 19 words (image step + startofseq
+ 19 words = 21 LSTM steps, 20 scored tokens each), cross-entropy, backward, Adam.
Prints one JSON line: {"ms": [per-step milliseconds], "threads": N, "torch": version}. With
--interleaved (how the bench runs it): a ready line after the warm-up, then one {"ms": [...]} line
of --steps timed steps for each line read from stdin, so the bench can alternate the two sides.
"""
import argparse
import json
import sys
import time

import torch
from torch import nn

p = argparse.ArgumentParser()
p.add_argument("--threads", type=int, default=2)
p.add_argument("--steps", type=int, default=10)
p.add_argument("--warmup", type=int, default=2)
p.add_argument("--interleaved", action="store_true")
p.add_argument("--batch", type=int, default=64)
p.add_argument("--words", type=int, default=19)
p.add_argument("--vocab", type=int, default=9000)
p.add_argument("--feature", type=int, default=2048)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)

linear_h = nn.Linear(a.feature, 256)
bn = nn.BatchNorm1d(256, momentum=0.01)
embed = nn.Embedding(a.vocab, 256)
lstm = nn.LSTM(256, 512, 1, batch_first=True)
linear = nn.Linear(512, a.vocab)
params = [q for m in (linear_h, bn, embed, lstm, linear) for q in m.parameters()]
opt = torch.optim.Adam(params, lr=1e-3)

feats = torch.randn(a.batch, a.feature)
words = torch.randint(4, a.vocab, (a.batch, a.words))
inputs = torch.cat([torch.ones(a.batch, 1, dtype=torch.long), words], 1)
targets = torch.cat([words, torch.full((a.batch, 1), 2, dtype=torch.long)], 1)
lengths = [a.words + 2] * a.batch


def step():
    img = bn(linear_h(feats))
    x = torch.cat([img.unsqueeze(1), embed(inputs)], 1)
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True)
    out, _ = lstm(packed)
    hidden, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True)
    logits = linear(hidden[:, 1:].reshape(-1, 512))
    loss = nn.functional.cross_entropy(logits, targets.reshape(-1), ignore_index=0)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()


def timed_steps():
    ms = []
    for _ in range(a.steps):
        t = time.perf_counter()
        step()
        ms.append((time.perf_counter() - t) * 1000)
    return ms


for _ in range(a.warmup):
    step()
info = {"threads": torch.get_num_threads(), "torch": torch.__version__}
if a.interleaved:
    # Driven by `captioner bench train`: ready after the warm-up, then --steps timed steps for
    # each line on stdin, until stdin closes.
    print(json.dumps({"ready": True, **info}), flush=True)
    for _ in sys.stdin:
        print(json.dumps({"ms": timed_steps()}), flush=True)
else:
    print(json.dumps({"ms": timed_steps(), **info}))
