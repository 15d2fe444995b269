"""Greedy-decoding parity fixture (tests/it/caption.rs reads it).

Run from the repository root:  /work/pyref/bin/python scripts/reference/greedy_fixtures.py
Writes tests/fixtures/decode/greedy.safetensors (about 60 KB).

A small seeded model in the seed's shapes (head Linear(D, E) + BatchNorm1d in eval mode with
non-trivial running statistics; DecoderRNN Embedding(V, E), LSTM(E, H), Linear(H, V)), its
weights scaled up so that captions vary and end at different lengths, and features of 12 images.
torch runs the incremental greedy loop: image embedding, then startofseq, then each argmax, carrying
(h, c), at most 25 words, stopping at endofseq. Stored: every weight under the checkpoint names
(`encoder.*`, `decoder.*`), `features`, `tokens` [images, 25] (word ids, -1 after the end), and
`min_logit_gap`, the smallest gap between the best and second-best logit over all steps, so a
near-tie that float rounding could flip is visible here rather than as a flaky test.
"""
import os

import torch
from torch import nn
from safetensors.torch import save_file

V, D, E, H = 40, 24, 32, 48
START, END, MAX_WORDS, IMAGES = 1, 2, 25, 12


def main():
    torch.manual_seed(5)
    torch.set_num_threads(1)
    linear_h, bn = nn.Linear(D, E), nn.BatchNorm1d(E, momentum=0.01)
    embed, lstm, linear = nn.Embedding(V, E), nn.LSTM(E, H, 1, batch_first=True), nn.Linear(H, V)
    with torch.no_grad():
        for p in list(lstm.parameters()):
            p.mul_(6.0)
        linear.weight.mul_(12.0)
        linear.bias[END] += 1.0
        bn.running_mean.copy_(torch.randn(E) * 0.1)
        bn.running_var.copy_(torch.rand(E) + 0.5)
        bn.weight.copy_(torch.rand(E) + 0.5)
        bn.bias.copy_(torch.randn(E) * 0.1)
    for m in (linear_h, bn, embed, lstm, linear):
        m.eval()
    feats = torch.randn(IMAGES, D)
    tokens = torch.full((IMAGES, MAX_WORDS), -1, dtype=torch.int64)
    min_gap = float("inf")
    with torch.no_grad():
        emb = bn(linear_h(feats))
        for i in range(IMAGES):
            _, state = lstm(emb[i : i + 1].unsqueeze(1))
            tok = START
            for k in range(MAX_WORDS):
                out, state = lstm(embed(torch.tensor([[tok]])), state)
                logits = linear(out[0, -1])
                top = logits.topk(2)
                min_gap = min(min_gap, float(top.values[0] - top.values[1]))
                tok = int(top.indices[0])
                if tok == END:
                    break
                tokens[i, k] = tok
    out = {"features": feats, "tokens": tokens, "min_logit_gap": torch.tensor([min_gap])}
    for prefix, mod in (("encoder.linear.", linear_h), ("encoder.bn.", bn), ("decoder.embed.", embed),
                        ("decoder.lstm.", lstm), ("decoder.linear.", linear)):
        for name, t in mod.state_dict().items():
            if not name.endswith("num_batches_tracked"):
                out[prefix + name] = t.contiguous().clone()
    path = "tests/fixtures/decode/greedy.safetensors"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_file(out, path)
    lens = [(int((r >= 0).sum())) for r in tokens]
    print(path, "lengths", lens, "distinct words", len(set(tokens[tokens >= 0].tolist())), "min gap", min_gap)
    print(tokens[:4].tolist())


if __name__ == "__main__":
    main()
