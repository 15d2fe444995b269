"""Parity fixtures for the head + LSTM decoder + loss + Adam (tests/it/decoder.rs reads them).

Run from the repository root:  /work/pyref/bin/python scripts/reference/decoder_fixtures.py
Writes tests/fixtures/decoder/parity.safetensors (a few KB).

Weights, features and captions come from formulas both sides compute (see `formula`), so no
weight file is committed. The model is the seed's EncoderCNN head (Linear + BatchNorm1d,
momentum 0.01) and DecoderRNN (Embedding, LSTM, Linear), fed [image, startofseq, w1..wn] and
scored on the outputs after startofseq..wn against w1..wn, endofseq, pad ignored.
"""
import math
import os

import numpy as np
import torch
from torch import nn
from safetensors.torch import save_file

V, D, E, H = 50, 64, 256, 512
PAD, START, END = 0, 1, 2


def formula(shape, seed, scale):
    """scale * sin(0.5 + 0.731 i + 1.3 seed) over the flat index i, computed in float64."""
    n = int(np.prod(shape))
    i = np.arange(n, dtype=np.float64)
    return torch.from_numpy((scale * np.sin(0.5 + 0.731 * i + 1.3 * seed)).astype(np.float32)).reshape(shape)


def captions():
    lens = [5, 3, 7, 1]
    return [[3 + (7 * b + 3 * k) % (V - 3) for k in range(n)] for b, n in enumerate(lens)]


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear_h = nn.Linear(D, E)
        self.bn = nn.BatchNorm1d(E, momentum=0.01)
        self.embed = nn.Embedding(V, E)
        self.lstm = nn.LSTM(E, H, 1, batch_first=True)
        self.linear = nn.Linear(H, V)
        k_d, k_h = 1 / math.sqrt(D), 1 / math.sqrt(H)
        with torch.no_grad():
            self.linear_h.weight.copy_(formula((E, D), 1, k_d))
            self.linear_h.bias.copy_(formula((E,), 2, k_d))
            self.bn.weight.copy_(formula((E,), 3, 0.5) + 1.0)
            self.bn.bias.copy_(formula((E,), 4, 0.1))
            self.embed.weight.copy_(formula((V, E), 5, 1.0))
            self.lstm.weight_ih_l0.copy_(formula((4 * H, E), 6, k_h))
            self.lstm.weight_hh_l0.copy_(formula((4 * H, H), 7, k_h))
            self.lstm.bias_ih_l0.copy_(formula((4 * H,), 8, k_h))
            self.lstm.bias_hh_l0.copy_(formula((4 * H,), 9, k_h))
            self.linear.weight.copy_(formula((V, H), 10, k_h))
            self.linear.bias.copy_(formula((V,), 11, k_h))

    def forward(self, feats, caps):
        img = self.bn(self.linear_h(feats))
        b, t = len(caps), max(len(c) for c in caps) + 1
        inputs = torch.full((b, t), PAD, dtype=torch.long)
        targets = torch.full((b, t), PAD, dtype=torch.long)
        for j, c in enumerate(caps):
            inputs[j, : len(c) + 1] = torch.tensor([START] + c)
            targets[j, : len(c) + 1] = torch.tensor(c + [END])
        x = torch.cat([img.unsqueeze(1), self.embed(inputs)], 1)
        out, _ = self.lstm(x)
        logits = self.linear(out[:, 1:])  # [B, T-1, V]
        loss = nn.functional.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=PAD)
        # Real positions in time-major order, as the Rust side lays them out.
        mask = targets.t() != PAD
        real = logits.transpose(0, 1)[mask]
        return real, loss


def main():
    torch.set_num_threads(1)
    model = Model()
    feats = formula((4, D), 12, 1.0)
    caps = captions()
    out = {"features": feats}
    model.train()
    logits, loss = model(feats, caps)
    out["train_logits"] = logits.detach().contiguous()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    losses = []
    for _ in range(3):
        opt.zero_grad()
        logits, loss = model(feats, caps)
        losses.append(loss.item())
        loss.backward()
        if not losses[1:]:
            # Gradients at the start: a few rows of each parameter (Adam's first steps are
            # sign-like, so the step losses alone would not catch a wrong gradient magnitude).
            for name, q in model.named_parameters():
                out["grad." + name] = q.grad.reshape(q.grad.shape[0], -1)[:8].contiguous().clone()
        opt.step()
    logits, loss = model(feats, caps)
    losses.append(loss.item())
    out["losses"] = torch.tensor(losses, dtype=torch.float64)
    out["running_mean"] = model.bn.running_mean.detach().clone()
    out["running_var"] = model.bn.running_var.detach().clone()
    out["lstm_bias_hh_after"] = model.lstm.bias_hh_l0.detach().clone()
    model.eval()
    with torch.no_grad():
        logits, loss = model(feats, caps)
    out["eval_logits"] = logits.contiguous()
    out["eval_loss"] = torch.tensor([loss.item()], dtype=torch.float64)
    path = "tests/fixtures/decoder/parity.safetensors"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_file(out, path)
    print(path, "losses", losses, "eval", loss.item())


if __name__ == "__main__":
    main()
