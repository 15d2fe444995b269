"""Parity fixtures for the soft-attention decoder (Show, Attend and Tell) + loss + Adam + greedy.

Run from the repository root:  /work/pyref/bin/python scripts/reference/attention_fixtures.py
Writes tests/fixtures/attention/parity.safetensors (about 80 KB).

The model is sgrvinod's DecoderWithAttention (a-PyTorch-Tutorial-to-Image-Captioning), with its
parameter names, on spatial features a [B, P, C]:
  h0 = init_h(mean_i a_i), c0 = init_c(mean_i a_i)                      (no activation)
  per step: e_i = full_att(relu(encoder_att(a_i) + decoder_att(h))), alpha = softmax_i(e),
  z = sigmoid(f_beta(h)) * sum_i alpha_i a_i, (h, c) = LSTMCell(cat[embedding(y), z], (h, c))
  (embedding first; gates i, f, g, o), logits = fc(dropout(h)).
Captions (ids >= 3) have lengths 5, 3, 7, 1; caption b is fed START w1..wn and scored against
w1..wn END over its own n+1 steps only. Loss = token-weighted mean cross-entropy over the 20 real
targets + ALPHA_C * mean_b sum_i (1 - sum_t alpha_bti)^2, t over caption b's own steps. (The
tutorial's `.mean()` also averages over pixels; this spec sums over them, i.e. P times larger.)
Dropout has p = 0, so train mode is deterministic and equals eval mode apart from the loss term.
Row order of `logits`/`alphas`: time-major, real rows only (step 0 for b = 0..3, step 1, ...).

Weights and features come from `formula(shape, seed, scale)` so no weight file is committed:
  seed  tensor                        shape        scale
   1    attention.encoder_att.weight  [A, C]       1/sqrt(C)
   2    attention.encoder_att.bias    [A]          1/sqrt(C)
   3    attention.decoder_att.weight  [A, H]       1/sqrt(H)
   4    attention.decoder_att.bias    [A]          1/sqrt(H)
   5    attention.full_att.weight     [1, A]       1/sqrt(A)
   6    attention.full_att.bias       [1]          1/sqrt(A)
   7    embedding.weight              [V, E]       0.1
   8    decode_step.weight_ih         [4H, E+C]    1/sqrt(H)   (all four LSTMCell tensors use
   9    decode_step.weight_hh         [4H, H]      1/sqrt(H)    PyTorch's own LSTMCell bound
  10    decode_step.bias_ih           [4H]         1/sqrt(H)    1/sqrt(hidden), as in
  11    decode_step.bias_hh           [4H]         1/sqrt(H)    decoder_fixtures.py)
  12    init_h.weight                 [H, C]       1/sqrt(C)
  13    init_h.bias                   [H]          1/sqrt(C)
  14    init_c.weight                 [H, C]       1/sqrt(C)
  15    init_c.bias                   [H]          1/sqrt(C)
  16    f_beta.weight                 [C, H]       1/sqrt(H)
  17    f_beta.bias                   [C]          1/sqrt(H)
  18    fc.weight                     [V, H]       1/sqrt(H)
  19    fc.bias                       [V]          1/sqrt(H)
  50    features                      [B, P, C]    1.0
Gradients are stored raw (before the [-5, 5] clamp of the Adam steps). `grad.attention.full_att.bias`
is mathematically zero (softmax ignores a shift), so it holds float rounding only: compare it with
an absolute tolerance; its post-Adam value is noise-driven and is not stored (it cannot affect outputs).
"""
import math
import os

import numpy as np
import torch
from torch import nn
from safetensors.torch import save_file

V, P, C, E, A, H, B = 40, 6, 32, 24, 20, 28, 4
PAD, START, END = 0, 1, 2
ALPHA_C, LR, CLIP, MAX_WORDS = 1.0, 4e-4, 5.0, 25


def formula(shape, seed, scale):
    """scale * sin(0.5 + 0.731 i + 1.3 seed) over the flat index i, computed in float64."""
    n = int(np.prod(shape))
    i = np.arange(n, dtype=np.float64)
    return torch.from_numpy((scale * np.sin(0.5 + 0.731 * i + 1.3 * seed)).astype(np.float32)).reshape(shape)


def captions():
    lens = [5, 3, 7, 1]
    return [[3 + (7 * b + 3 * k) % (V - 3) for k in range(n)] for b, n in enumerate(lens)]


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder_att = nn.Linear(C, A)
        self.decoder_att = nn.Linear(H, A)
        self.full_att = nn.Linear(A, 1)

    def forward(self, a, h):
        e = self.full_att(torch.relu(self.encoder_att(a) + self.decoder_att(h).unsqueeze(1))).squeeze(2)
        alpha = torch.softmax(e, dim=1)  # [B, P]
        return (a * alpha.unsqueeze(2)).sum(1), alpha


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.attention = Attention()
        self.embedding = nn.Embedding(V, E)
        self.dropout = nn.Dropout(p=0.0)
        self.decode_step = nn.LSTMCell(E + C, H)
        self.init_h, self.init_c = nn.Linear(C, H), nn.Linear(C, H)
        self.f_beta = nn.Linear(H, C)
        self.fc = nn.Linear(H, V)
        k_c, k_h, k_a = 1 / math.sqrt(C), 1 / math.sqrt(H), 1 / math.sqrt(A)
        table = [("attention.encoder_att.weight", 1, k_c), ("attention.encoder_att.bias", 2, k_c),
                 ("attention.decoder_att.weight", 3, k_h), ("attention.decoder_att.bias", 4, k_h),
                 ("attention.full_att.weight", 5, k_a), ("attention.full_att.bias", 6, k_a),
                 ("embedding.weight", 7, 0.1),
                 ("decode_step.weight_ih", 8, k_h), ("decode_step.weight_hh", 9, k_h),
                 ("decode_step.bias_ih", 10, k_h), ("decode_step.bias_hh", 11, k_h),
                 ("init_h.weight", 12, k_c), ("init_h.bias", 13, k_c),
                 ("init_c.weight", 14, k_c), ("init_c.bias", 15, k_c),
                 ("f_beta.weight", 16, k_h), ("f_beta.bias", 17, k_h),
                 ("fc.weight", 18, k_h), ("fc.bias", 19, k_h)]
        params = dict(self.named_parameters())
        assert sorted(params) == sorted(n for n, _, _ in table)
        with torch.no_grad():
            for name, seed, scale in table:
                params[name].copy_(formula(tuple(params[name].shape), seed, scale))

    def init_state(self, a):
        mean = a.mean(1)
        return self.init_h(mean), self.init_c(mean)

    def step(self, a, tok, h, c):
        awe, alpha = self.attention(a, h)
        z = torch.sigmoid(self.f_beta(h)) * awe
        h, c = self.decode_step(torch.cat([self.embedding(tok), z], 1), (h, c))
        return self.fc(self.dropout(h)), h, c, alpha

    def forward(self, a, caps):
        """Real-position logits and alphas (time-major), CE, attention term and total loss."""
        t_max = max(len(c) for c in caps) + 1
        inputs = torch.full((B, t_max), PAD, dtype=torch.long)
        targets = torch.full((B, t_max), PAD, dtype=torch.long)
        for j, cap in enumerate(caps):
            inputs[j, : len(cap) + 1] = torch.tensor([START] + cap)
            targets[j, : len(cap) + 1] = torch.tensor(cap + [END])
        h, c = self.init_state(a)
        logits, alphas = [], []
        for t in range(t_max):  # steps past a caption's end are run but masked out (steps are causal)
            out, h, c, alpha = self.step(a, inputs[:, t], h, c)
            logits.append(out)
            alphas.append(alpha)
        logits, alphas = torch.stack(logits), torch.stack(alphas)  # [T, B, V], [T, B, P]
        mask = targets.t() != PAD  # [T, B]
        real_logits, real_alphas = logits[mask], alphas[mask]
        ce = nn.functional.cross_entropy(real_logits, targets.t()[mask])
        att_sum = (alphas * mask.unsqueeze(2)).sum(0)  # [B, P], own steps only
        reg = ALPHA_C * ((1.0 - att_sum) ** 2).sum(1).mean()
        return real_logits, real_alphas, ce, reg, ce + reg


def f64(x):
    return torch.tensor([float(x)], dtype=torch.float64)


def main():
    torch.set_num_threads(1)
    model = Decoder()
    feats = formula((B, P, C), 50, 1.0)
    caps = captions()
    out = {"features": feats}
    model.train()
    logits, alphas, ce, reg, loss = model(feats, caps)
    out.update(logits=logits.detach().contiguous(), alphas=alphas.detach().contiguous(),
               ce=f64(ce.item()), att_reg=f64(reg.item()), loss=f64(loss.item()))
    loss.backward()
    for name, q in model.named_parameters():
        g = q.grad.detach().clone().contiguous()
        out["grad." + name] = g
        print(f"grad {name:30s} norm {g.norm().item():.6e}  max|g| {g.abs().max().item():.3e}")
        assert name == "attention.full_att.bias" or g.abs().max() > 1e-4, name
    opt = torch.optim.Adam(model.parameters(), lr=LR, betas=(0.9, 0.999), eps=1e-8)
    losses = []
    for _ in range(3):
        opt.zero_grad()
        _, _, _, _, loss = model(feats, caps)
        losses.append(loss.item())
        loss.backward()
        for q in model.parameters():
            q.grad.clamp_(-CLIP, CLIP)  # the tutorial's clip_gradient
        opt.step()
    losses.append(model(feats, caps)[4].item())
    out["losses"] = torch.tensor(losses, dtype=torch.float64)
    for name in ("fc.bias", "decode_step.bias_hh", "attention.full_att.weight"):
        out["after." + name] = dict(model.named_parameters())[name].detach().clone().contiguous()
    model.eval()
    with torch.no_grad():
        logits, _, ce, _, _ = model(feats, caps)
        out.update(eval_logits=logits.contiguous(), eval_ce=f64(ce.item()))
        # Greedy decoding of image 0: START, then each argmax, at most MAX_WORDS steps, stop at END.
        a = feats[:1]
        h, c = model.init_state(a)
        tok, words, galphas, min_gap = START, [], [], float("inf")
        for k in range(MAX_WORDS):
            lg, h, c, alpha = model.step(a, torch.tensor([tok]), h, c)
            galphas.append(alpha[0])
            if k == 0:
                out["greedy.logits_first"] = lg[0].clone()
            top = lg[0].topk(2)
            min_gap = min(min_gap, float(top.values[0] - top.values[1]))
            tok = int(top.indices[0])
            if tok == END:
                break
            words.append(tok)
    out["greedy.words"] = torch.tensor(words, dtype=torch.int64)
    out["greedy.alphas"] = torch.stack(galphas).contiguous()
    path = "tests/fixtures/attention/parity.safetensors"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_file(out, path)
    print(path, f"{os.path.getsize(path)} bytes, rows {out['logits'].shape[0]}")
    print("ce", out["ce"].item(), "att_reg", out["att_reg"].item(), "loss", out["loss"].item())
    print("losses", losses, "eval_ce", out["eval_ce"].item())
    print("greedy words", words, "steps", len(galphas), "min logit gap", min_gap)


if __name__ == "__main__":
    main()
