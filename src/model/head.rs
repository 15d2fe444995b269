//! The encoder's head: `Linear(D→E)` + `BatchNorm1d(E, momentum 0.01, eps 1e-5)` with PyTorch's
//! semantics, turning a frozen trunk feature into the decoder's first input.
//!
//! Names mirror the seed's `EncoderCNN` minus its ResNet (`linear.*`, `bn.*`); checkpoints store
//! them under `encoder.` (see [`HEAD_PREFIX`]).

use crate::model::lstm::{take, uniform};
use crate::Result;
use candle_core::{DType, Device, Tensor, Var};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;

/// The prefix of the head's tensors in checkpoints and exports.
pub const HEAD_PREFIX: &str = "encoder.";

/// BatchNorm1d's running-average momentum (the seed's `momentum=0.01`).
pub const BN_MOMENTUM: f64 = 0.01;
/// BatchNorm1d's epsilon (PyTorch's default).
pub const BN_EPS: f64 = 1e-5;

/// Linear + BatchNorm1d. Trainable: `linear.weight [E, D]`, `linear.bias [E]`, `bn.weight [E]`,
/// `bn.bias [E]`; buffers: `bn.running_mean [E]`, `bn.running_var [E]`.
#[derive(Debug, Clone)]
pub struct Head {
    /// `linear.weight`, `[E, D]`.
    pub linear_weight: Var,
    /// `linear.bias`, `[E]`.
    pub linear_bias: Var,
    /// `bn.weight` (BatchNorm scale), `[E]`.
    pub bn_weight: Var,
    /// `bn.bias` (BatchNorm shift), `[E]`.
    pub bn_bias: Var,
    /// `bn.running_mean`, `[E]`: the mean eval mode normalises with (a running average of batch
    /// means, or set by [`Head::set_statistics`]).
    pub running_mean: Tensor,
    /// `bn.running_var`, `[E]`: the variance eval mode normalises with (likewise).
    pub running_var: Tensor,
}

impl Head {
    /// PyTorch's default init: Linear from U(-1/sqrt(D), 1/sqrt(D)); BN weight 1, bias 0,
    /// running mean 0, running var 1.
    pub fn new(
        feature_dim: usize,
        embed: usize,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<Self> {
        let k = 1.0 / (feature_dim as f32).sqrt();
        Ok(Self {
            linear_weight: uniform(rng, &[embed, feature_dim], k, device)?,
            linear_bias: uniform(rng, &[embed], k, device)?,
            bn_weight: Var::from_tensor(&Tensor::ones(embed, DType::F32, device)?)?,
            bn_bias: Var::from_tensor(&Tensor::zeros(embed, DType::F32, device)?)?,
            running_mean: Tensor::zeros(embed, DType::F32, device)?,
            running_var: Tensor::ones(embed, DType::F32, device)?,
        })
    }

    /// Rebuilds the head from `{prefix}linear.weight` etc. (see [`Head::tensors`]).
    pub fn from_tensors(
        map: &HashMap<String, Tensor>,
        prefix: &str,
        feature_dim: usize,
        embed: usize,
    ) -> Result<Self> {
        let n = |s: &str| format!("{prefix}{s}");
        Ok(Self {
            linear_weight: take(map, &n("linear.weight"), &[embed, feature_dim])?,
            linear_bias: take(map, &n("linear.bias"), &[embed])?,
            bn_weight: take(map, &n("bn.weight"), &[embed])?,
            bn_bias: take(map, &n("bn.bias"), &[embed])?,
            running_mean: take(map, &n("bn.running_mean"), &[embed])?
                .as_tensor()
                .clone(),
            running_var: take(map, &n("bn.running_var"), &[embed])?
                .as_tensor()
                .clone(),
        })
    }

    /// The trainable parameters under `prefix`.
    pub fn vars(&self, prefix: &str) -> Vec<(String, Var)> {
        vec![
            (format!("{prefix}linear.weight"), self.linear_weight.clone()),
            (format!("{prefix}linear.bias"), self.linear_bias.clone()),
            (format!("{prefix}bn.weight"), self.bn_weight.clone()),
            (format!("{prefix}bn.bias"), self.bn_bias.clone()),
        ]
    }

    /// Every tensor (parameters and running statistics) under `prefix`, for saving.
    pub fn tensors(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut out: Vec<(String, Tensor)> = self
            .vars(prefix)
            .into_iter()
            .map(|(n, v)| (n, v.as_tensor().detach()))
            .collect();
        out.push((
            format!("{prefix}bn.running_mean"),
            self.running_mean.clone(),
        ));
        out.push((format!("{prefix}bn.running_var"), self.running_var.clone()));
        out
    }

    /// Trunk feature size D.
    pub fn feature_dim(&self) -> usize {
        self.linear_weight.dims()[1]
    }

    /// Embedding size E.
    pub fn embed_size(&self) -> usize {
        self.linear_weight.dims()[0]
    }

    fn linear(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.matmul(&self.linear_weight.t()?)?
            .broadcast_add(self.linear_bias.as_tensor())?)
    }

    /// Eval mode: normalises with the running statistics. `x [B, D]` → `[B, E]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.linear(x)?;
        let scale =
            (self.running_var.affine(1.0, BN_EPS)?.sqrt()?.recip()? * self.bn_weight.as_tensor())?;
        let shift = (self.bn_bias.as_tensor() - (&self.running_mean * &scale)?)?;
        Ok(y.broadcast_mul(&scale)?.broadcast_add(&shift)?)
    }

    /// Sets the running statistics to the exact mean and unbiased variance of `Linear(x)` over the rows
    /// of `x [N, D]`, row `i` counted `counts[i]` times ("precise BatchNorm"). The running averages
    /// trail the weights: with momentum 0.01 they remember ~100 batches of a Linear layer that Adam keeps
    /// moving, so eval mode normalises with statistics of older weights. Recomputing them for the best
    /// checkpoints of 8 runs on a 2000-scene corpus lowered those checkpoints' val loss from 0.81–0.87
    /// to 0.75–0.80 (docs/seed-decoder-comparison.md).
    pub fn set_statistics(&mut self, x: &Tensor, counts: &[u32]) -> Result<()> {
        let n: f64 = counts.iter().map(|&c| c as f64).sum();
        if counts.len() != x.dim(0)? || n < 2.0 {
            return Err(crate::Error::Invalid(format!(
                "BatchNorm statistics need at least 2 counted rows and one count per row ({} rows, {} counts, {n} counted)",
                x.dim(0)?,
                counts.len()
            )));
        }
        let y = self.linear(x)?;
        let w = Tensor::from_iter(counts.iter().map(|&c| c as f32), x.device())?.unsqueeze(1)?;
        // Sums in f64 would be exact to more digits, but the products are f32 like everything else
        // here; per-column means are centred before squaring, so no catastrophic cancellation.
        let mean = (y.broadcast_mul(&w)?.sum(0)? / n)?;
        let centred = y.broadcast_sub(&mean.unsqueeze(0)?)?;
        let var = (centred.sqr()?.broadcast_mul(&w)?.sum(0)? / (n - 1.0))?;
        self.running_mean = mean;
        self.running_var = var;
        Ok(())
    }

    /// Training mode: normalises with the batch's statistics (biased variance) and moves the
    /// running statistics towards them (unbiased variance), as PyTorch does.
    pub fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
        let y = self.linear(x)?;
        let b = y.dim(0)?;
        if b < 2 {
            return Err(crate::Error::Invalid(
                "BatchNorm in training mode needs at least 2 rows per batch".into(),
            ));
        }
        let mean = y.mean_keepdim(0)?;
        let centred = y.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(0)?;
        let inv_std = var.affine(1.0, BN_EPS)?.sqrt()?.recip()?;
        let out = centred
            .broadcast_mul(&inv_std)?
            .broadcast_mul(self.bn_weight.as_tensor())?
            .broadcast_add(self.bn_bias.as_tensor())?;
        let m = BN_MOMENTUM;
        let mean = mean.detach().squeeze(0)?;
        let unbiased = (var.detach().squeeze(0)? * (b as f64 / (b as f64 - 1.0)))?;
        self.running_mean = ((&self.running_mean * (1.0 - m))? + (mean * m)?)?;
        self.running_var = ((&self.running_var * (1.0 - m))? + (unbiased * m)?)?;
        Ok(out)
    }
}
