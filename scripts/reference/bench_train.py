"""PyTorch side of `captioner bench train` (embedded in the binary with include_str!).

Also runnable by hand:  python3 scripts/reference/bench_train.py --threads 2 --steps 10
The seed's training step: head (Linear 2048->256 + BatchNorm1d) and DecoderRNN (Embedding,
LSTM 256->512, Linear 512->9000) on a batch of 64 captions of 19 words (image step + startofseq
+ 19 words = 21 LSTM steps, 20 scored tokens each), cross-entropy, backward, Adam.
--lengths 15,12,9,... (how the bench runs it, longest first) gives each caption its own word
count instead: the batch is padded to the longest caption, as the seed's collate pads it, and the
LSTM, the output layer and the loss (ignore_index) run over every padded position, as the seed's
do. The LSTM runs on the padded batch, not packed: on the CPU, a packed batch of mixed lengths
took PyTorch longer (vocabulary 63: ~200 against ~140 ms a step; 3000: ~330 against ~290 ms).
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
p.add_argument("--lengths", help="comma-separated words per caption, longest first")
a = p.parse_args()
words_per_caption = (
    [int(w) for w in a.lengths.split(",")] if a.lengths else [a.words] * a.batch
)
torch.set_num_threads(a.threads)
torch.manual_seed(0)

linear_h = nn.Linear(a.feature, 256)
bn = nn.BatchNorm1d(256, momentum=0.01)
embed = nn.Embedding(a.vocab, 256)
lstm = nn.LSTM(256, 512, 1, batch_first=True)
linear = nn.Linear(512, a.vocab)
params = [q for m in (linear_h, bn, embed, lstm, linear) for q in m.parameters()]
opt = torch.optim.Adam(params, lr=1e-3)

batch = len(words_per_caption)
longest = max(words_per_caption)
feats = torch.randn(batch, a.feature)
# inputs: startofseq w1..wn pad...; targets: w1..wn endofseq pad... (pad = 0, ignored by the loss)
inputs = torch.zeros(batch, longest + 1, dtype=torch.long)
targets = torch.zeros(batch, longest + 1, dtype=torch.long)
for row, n in enumerate(words_per_caption):
    words = torch.randint(4, a.vocab, (n,))
    inputs[row, 0] = 1
    inputs[row, 1 : n + 1] = words
    targets[row, :n] = words
    targets[row, n] = 2


def step():
    img = bn(linear_h(feats))
    x = torch.cat([img.unsqueeze(1), embed(inputs)], 1)
    hidden, _ = lstm(x)
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
