"""PyTorch side of `captioner bench train --decoder attention` (embedded in the binary with include_str!).

Also runnable by hand:  python3 scripts/reference/bench_train_attention.py --threads 2 --steps 10
One training step of sgrvinod's DecoderWithAttention (a-PyTorch-Tutorial-to-Image-Captioning),
written the way the tutorial's models.py / train.py write it: random encoder output [64, 49, 2048]
(no encoder training), captions of 19 words (startofseq w1..w19 endofseq, caption length 21, so
20 decode steps with the full batch each), attention 512, embedding 512, LSTMCell hidden 512,
dropout 0.5, fc 512->9000; cross-entropy over the packed targets + doubly stochastic attention
regularisation, backward, gradients clamped to [-5, 5], Adam(lr=4e-4).
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
p.add_argument("--cells", type=int, default=49)
p.add_argument("--channels", type=int, default=2048)
p.add_argument("--vocab", type=int, default=9000)
p.add_argument("--words", type=int, default=19)
p.add_argument("--embed", type=int, default=512)
p.add_argument("--attention", type=int, default=512)
p.add_argument("--hidden", type=int, default=512)
p.add_argument("--dropout", type=float, default=0.5)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)

ALPHA_C, LR, GRAD_CLIP = 1.0, 4e-4, 5.0


class Attention(nn.Module):
    def __init__(self, encoder_dim, decoder_dim, attention_dim):
        super().__init__()
        self.encoder_att = nn.Linear(encoder_dim, attention_dim)
        self.decoder_att = nn.Linear(decoder_dim, attention_dim)
        self.full_att = nn.Linear(attention_dim, 1)
        self.relu = nn.ReLU()
        self.softmax = nn.Softmax(dim=1)

    def forward(self, encoder_out, decoder_hidden):
        att1 = self.encoder_att(encoder_out)  # (batch_size, num_pixels, attention_dim)
        att2 = self.decoder_att(decoder_hidden)  # (batch_size, attention_dim)
        att = self.full_att(self.relu(att1 + att2.unsqueeze(1))).squeeze(2)  # (batch_size, num_pixels)
        alpha = self.softmax(att)
        attention_weighted_encoding = (encoder_out * alpha.unsqueeze(2)).sum(dim=1)  # (batch_size, encoder_dim)
        return attention_weighted_encoding, alpha


class DecoderWithAttention(nn.Module):
    def __init__(self, attention_dim, embed_dim, decoder_dim, vocab_size, encoder_dim, dropout):
        super().__init__()
        self.vocab_size = vocab_size
        self.attention = Attention(encoder_dim, decoder_dim, attention_dim)
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.dropout = nn.Dropout(p=dropout)
        self.decode_step = nn.LSTMCell(embed_dim + encoder_dim, decoder_dim, bias=True)
        self.init_h = nn.Linear(encoder_dim, decoder_dim)
        self.init_c = nn.Linear(encoder_dim, decoder_dim)
        self.f_beta = nn.Linear(decoder_dim, encoder_dim)
        self.sigmoid = nn.Sigmoid()
        self.fc = nn.Linear(decoder_dim, vocab_size)
        self.embedding.weight.data.uniform_(-0.1, 0.1)  # the tutorial's init_weights()
        self.fc.bias.data.fill_(0)
        self.fc.weight.data.uniform_(-0.1, 0.1)

    def init_hidden_state(self, encoder_out):
        mean_encoder_out = encoder_out.mean(dim=1)
        return self.init_h(mean_encoder_out), self.init_c(mean_encoder_out)

    def forward(self, encoder_out, encoded_captions, caption_lengths):
        batch_size = encoder_out.size(0)
        encoder_dim = encoder_out.size(-1)
        encoder_out = encoder_out.view(batch_size, -1, encoder_dim)  # (batch_size, num_pixels, encoder_dim)
        num_pixels = encoder_out.size(1)
        # Sort by decreasing length (all equal here, so every step runs the full batch).
        caption_lengths, sort_ind = caption_lengths.squeeze(1).sort(dim=0, descending=True)
        encoder_out = encoder_out[sort_ind]
        encoded_captions = encoded_captions[sort_ind]
        embeddings = self.embedding(encoded_captions)  # (batch_size, max_caption_length, embed_dim)
        h, c = self.init_hidden_state(encoder_out)
        # No decoding at the endofseq position: decode lengths are caption lengths - 1.
        decode_lengths = (caption_lengths - 1).tolist()
        predictions = torch.zeros(batch_size, max(decode_lengths), self.vocab_size)
        alphas = torch.zeros(batch_size, max(decode_lengths), num_pixels)
        for t in range(max(decode_lengths)):
            batch_size_t = sum([l > t for l in decode_lengths])
            attention_weighted_encoding, alpha = self.attention(encoder_out[:batch_size_t], h[:batch_size_t])
            gate = self.sigmoid(self.f_beta(h[:batch_size_t]))  # gating scalar, (batch_size_t, encoder_dim)
            attention_weighted_encoding = gate * attention_weighted_encoding
            h, c = self.decode_step(
                torch.cat([embeddings[:batch_size_t, t, :], attention_weighted_encoding], dim=1),
                (h[:batch_size_t], c[:batch_size_t]))
            preds = self.fc(self.dropout(h))  # (batch_size_t, vocab_size)
            predictions[:batch_size_t, t, :] = preds
            alphas[:batch_size_t, t, :] = alpha
        return predictions, encoded_captions, decode_lengths, alphas, sort_ind


decoder = DecoderWithAttention(a.attention, a.embed, a.hidden, a.vocab, a.channels, a.dropout)
decoder.train()
opt = torch.optim.Adam(params=filter(lambda q: q.requires_grad, decoder.parameters()), lr=LR)
criterion = nn.CrossEntropyLoss()

imgs = torch.randn(a.batch, a.cells, a.channels)  # encoder output, not trained
words = torch.randint(4, a.vocab, (a.batch, a.words))
caps = torch.cat([torch.ones(a.batch, 1, dtype=torch.long), words,  # startofseq w1..wn endofseq
                  torch.full((a.batch, 1), 2, dtype=torch.long)], 1)
caplens = torch.full((a.batch, 1), a.words + 2, dtype=torch.long)


def clip_gradient(optimizer, grad_clip):
    for group in optimizer.param_groups:
        for param in group["params"]:
            if param.grad is not None:
                param.grad.data.clamp_(-grad_clip, grad_clip)


def step():
    scores, caps_sorted, decode_lengths, alphas, sort_ind = decoder(imgs, caps, caplens)
    targets = caps_sorted[:, 1:]  # w1..wn endofseq
    scores = nn.utils.rnn.pack_padded_sequence(scores, decode_lengths, batch_first=True).data
    targets = nn.utils.rnn.pack_padded_sequence(targets, decode_lengths, batch_first=True).data
    loss = criterion(scores, targets)
    # The tutorial writes ((1. - alphas.sum(dim=1)) ** 2).mean(), averaging over pixels too; our spec
    # sums over pixels and averages over the batch. Same work, P times larger term.
    loss += ALPHA_C * ((1. - alphas.sum(dim=1)) ** 2).sum(dim=1).mean()
    opt.zero_grad()
    loss.backward()
    clip_gradient(opt, GRAD_CLIP)
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
