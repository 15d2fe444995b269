//! The LSTM decoder of "Show and Tell": `Embedding(V,E)` → `LSTM(E→H)` → `Linear(H→V)`, with a
//! teacher-forced forward for training and a single-step API for greedy and beam search.
//!
//! Names mirror the seed's `DecoderRNN` (`embed.weight`, `lstm.weight_ih_l0`, ..., `linear.*`);
//! checkpoints store them under `decoder.` (see [`DECODER_PREFIX`]).

use crate::model::lstm::{take, uniform, Lstm, LstmState};
use crate::model::token_projection::project_tokens;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor, Var};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use std::collections::HashMap;

/// The prefix of the decoder's tensors in checkpoints and exports.
pub const DECODER_PREFIX: &str = "decoder.";

/// Padding id (the vocabulary's specials have fixed ids, shared with [`crate::text::vocab`]).
pub const PAD: u32 = 0;
/// Start-of-sequence id, fed after the image.
pub const START: u32 = 1;
/// End-of-sequence id, the target after a caption's last word.
pub const END: u32 = 2;
/// Id of a word not in the vocabulary.
pub const UNK: u32 = 3;

/// Embedding → LSTM → Linear.
#[derive(Debug, Clone)]
pub struct Decoder {
    /// `embed.weight`, `[V, E]`.
    pub embed: Var,
    /// The LSTM, `E → H`.
    pub lstm: Lstm,
    /// `linear.weight`, `[V, H]`.
    pub linear_weight: Var,
    /// `linear.bias`, `[V]`.
    pub linear_bias: Var,
}

/// A teacher-forced batch of captions, time-major. For captions `w1..wn` the LSTM sees
/// `[image, startofseq, w1..wn]` (padded to the longest); the outputs after `startofseq, w1..wn`
/// are scored against `w1..wn, endofseq`; the output after the image step is not scored.
#[derive(Debug, Clone)]
pub struct TeacherBatch {
    /// `[T-1, B]` u32: `startofseq, w1..wn, pad...` per column.
    pub inputs: Tensor,
    /// `[N]` u32: the target of every real (non-pad) position, in time-major order.
    pub targets: Tensor,
    /// Each real position's row in the `[(T-1)*B, H]` time-major outputs (`N` of them).
    pub positions: Vec<u32>,
    /// Number of scored tokens N (words + one endofseq per caption).
    pub tokens: usize,
}

impl TeacherBatch {
    /// Builds the batch from captions given as word ids without specials.
    pub fn new(captions: &[&[u32]], device: &Device) -> Result<Self> {
        let b = captions.len();
        if b == 0 {
            return Err(Error::Internal("empty caption batch".into()));
        }
        let steps = captions.iter().map(|c| c.len()).max().unwrap_or(0) + 1;
        let mut inputs = vec![PAD; steps * b];
        let mut targets = Vec::new();
        let mut positions = Vec::new();
        for (col, cap) in captions.iter().enumerate() {
            inputs[col] = START;
            for (k, &w) in cap.iter().enumerate() {
                inputs[(k + 1) * b + col] = w;
            }
        }
        for t in 0..steps {
            for (col, cap) in captions.iter().enumerate() {
                let target = match t.cmp(&cap.len()) {
                    std::cmp::Ordering::Less => cap[t],
                    std::cmp::Ordering::Equal => END,
                    std::cmp::Ordering::Greater => continue,
                };
                targets.push(target);
                positions.push((t * b + col) as u32);
            }
        }
        let tokens = targets.len();
        Ok(Self {
            inputs: Tensor::from_vec(inputs, (steps, b), device)?,
            targets: Tensor::from_vec(targets, tokens, device)?,
            positions,
            tokens,
        })
    }

    /// Number of captions B.
    pub fn batch_size(&self) -> usize {
        self.inputs.dims()[1]
    }
}

impl Decoder {
    /// PyTorch's default init: embedding N(0,1), LSTM and linear U(-1/sqrt(fan), 1/sqrt(fan)).
    pub fn new(
        vocab: usize,
        embed: usize,
        hidden: usize,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<Self> {
        let emb: Vec<f32> = (0..vocab * embed)
            .map(|_| StandardNormal.sample(rng))
            .collect();
        let embed_var = Var::from_tensor(&Tensor::from_vec(emb, (vocab, embed), device)?)?;
        let lstm = Lstm::new(embed, hidden, rng, device)?;
        let k = 1.0 / (hidden as f32).sqrt();
        Ok(Self {
            embed: embed_var,
            lstm,
            linear_weight: uniform(rng, &[vocab, hidden], k, device)?,
            linear_bias: uniform(rng, &[vocab], k, device)?,
        })
    }

    /// Rebuilds the decoder from `{prefix}embed.weight` etc.; sizes are read from the tensors.
    pub fn from_tensors(map: &HashMap<String, Tensor>, prefix: &str) -> Result<Self> {
        let n = |s: &str| format!("{prefix}{s}");
        let dims = |name: &str| {
            map.get(name)
                .map(|t| t.dims().to_vec())
                .ok_or_else(|| Error::Invalid(format!("missing tensor {name}")))
        };
        let e = dims(&n("embed.weight"))?;
        let l = dims(&n("linear.weight"))?;
        let (vocab, embed) = match e.as_slice() {
            [v, e] => (*v, *e),
            _ => return Err(Error::Invalid("embed.weight must be 2-D".into())),
        };
        let hidden = l.get(1).copied().unwrap_or(0);
        Ok(Self {
            embed: take(map, &n("embed.weight"), &[vocab, embed])?,
            lstm: Lstm::from_tensors(map, &n("lstm."), embed, hidden)?,
            linear_weight: take(map, &n("linear.weight"), &[vocab, hidden])?,
            linear_bias: take(map, &n("linear.bias"), &[vocab])?,
        })
    }

    /// The trainable parameters under `prefix`.
    pub fn vars(&self, prefix: &str) -> Vec<(String, Var)> {
        let mut v = vec![(format!("{prefix}embed.weight"), self.embed.clone())];
        v.extend(self.lstm.vars(&format!("{prefix}lstm.")));
        v.push((format!("{prefix}linear.weight"), self.linear_weight.clone()));
        v.push((format!("{prefix}linear.bias"), self.linear_bias.clone()));
        v
    }

    /// Every tensor under `prefix`, for saving.
    pub fn tensors(&self, prefix: &str) -> Vec<(String, Tensor)> {
        self.vars(prefix)
            .into_iter()
            .map(|(n, v)| (n, v.as_tensor().detach()))
            .collect()
    }

    /// Vocabulary size V.
    pub fn vocab_size(&self) -> usize {
        self.embed.dims()[0]
    }

    /// Embedding size E.
    pub fn embed_size(&self) -> usize {
        self.embed.dims()[1]
    }

    /// LSTM hidden size H.
    pub fn hidden_size(&self) -> usize {
        self.lstm.hidden_size()
    }

    /// Embeddings of token ids: `ids [..]` u32 → `[.., E]`.
    pub fn embed_tokens(&self, ids: &Tensor) -> Result<Tensor> {
        let shape = ids.dims().to_vec();
        let flat = ids.flatten_all()?;
        let e = self.embed.as_tensor().index_select(&flat, 0)?;
        let mut out = shape;
        out.push(self.embed_size());
        Ok(e.reshape(out)?)
    }

    /// `hidden [N, H]` → logits `[N, V]`.
    pub fn project(&self, hidden: &Tensor) -> Result<Tensor> {
        self.output_layer(hidden, false)
    }

    /// The output layer; `decoding` as in [`crate::model::lstm::times_wt`].
    fn output_layer(&self, hidden: &Tensor, decoding: bool) -> Result<Tensor> {
        let logits = crate::model::lstm::times_wt(hidden, &self.linear_weight, decoding)?;
        Ok(logits.broadcast_add(self.linear_bias.as_tensor())?)
    }

    /// One decoding step: `x [B, E]` (an image embedding or token embeddings) → logits `[B, V]`
    /// and the new state. `None` starts from zeros. Not for training (see [`Lstm::step`]).
    pub fn step(&self, x: &Tensor, state: Option<&LstmState>) -> Result<(Tensor, LstmState)> {
        let s = self.lstm.step(x, state)?;
        Ok((self.output_layer(&s.h, true)?, s))
    }

    /// Teacher-forced forward: image embeddings `[B, E]` and a batch → logits `[N, V]` for the
    /// batch's real positions only (in the order of `batch.targets`): pad positions never reach
    /// the output layer, which is most of the step's cost.
    pub fn forward_teacher(&self, image: &Tensor, batch: &TeacherBatch) -> Result<Tensor> {
        self.project(&self.hidden_teacher(image, batch)?)
    }

    /// The LSTM outputs `[N, H]` that [`Decoder::forward_teacher`] projects to logits.
    pub fn hidden_teacher(&self, image: &Tensor, batch: &TeacherBatch) -> Result<Tensor> {
        let b = batch.batch_size();
        if image.dims() != [b, self.embed_size()] {
            return Err(Error::Internal(format!(
                "image embeddings have shape {:?}, expected [{b}, {}]",
                image.dims(),
                self.embed_size()
            )));
        }
        // The first LSTM step sees the image; its output is not scored.
        let rows: Vec<u32> = batch.positions.iter().map(|&p| p + b as u32).collect();
        if image.device().is_cpu() {
            let xp = project_tokens(
                self.embed.as_tensor(),
                self.lstm.weight_ih.as_tensor(),
                image,
                &batch.inputs,
            )?;
            return self.lstm.rows_from_projection(&xp, b, &rows);
        }
        let words = self.embed_tokens(&batch.inputs)?;
        let x = Tensor::cat(&[&image.unsqueeze(0)?, &words], 0)?;
        self.lstm.forward_rows(&x, &rows)
    }
}

/// Reads `[B, V]` logits as `DType::F32` rows (helper for decoders).
pub fn logits_to_vec(logits: &Tensor) -> Result<Vec<Vec<f32>>> {
    Ok(logits.to_dtype(DType::F32)?.to_vec2()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn teacher_batch_lays_out_inputs_targets_and_positions_time_major() {
        let b = TeacherBatch::new(&[&[7, 8], &[9]], &Device::Cpu).unwrap();
        // inputs [T-1=3, B=2]: start, w1, w2 / start, w1, pad
        assert_eq!(
            b.inputs.to_vec2::<u32>().unwrap(),
            vec![vec![START, START], vec![7, 9], vec![8, PAD]]
        );
        // t=0: 7 (col 0), 9 (col 1); t=1: 8, END; t=2: END (col 0 only).
        assert_eq!(b.targets.to_vec1::<u32>().unwrap(), vec![7, 9, 8, END, END]);
        assert_eq!(b.positions, vec![0, 1, 2, 3, 4]);
        let b = TeacherBatch::new(&[&[], &[5, 6]], &Device::Cpu).unwrap();
        assert_eq!(b.targets.to_vec1::<u32>().unwrap(), vec![END, 5, 6, END]);
        assert_eq!(b.positions, vec![0, 1, 3, 5]);
        assert_eq!(b.tokens, 4);
    }
}
