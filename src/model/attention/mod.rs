//! The soft-attention decoder of "Show, Attend and Tell" (Xu et al. 2015), as the most used PyTorch
//! tutorial of it builds it (sgrvinod's `DecoderWithAttention`, whose parameter names it keeps):
//!
//! ```text
//! h0 = init_h(mean_i a_i), c0 = init_c(mean_i a_i)
//! e_ti = full_att(relu(encoder_att(a_i) + decoder_att(h_{t-1}))),  α_t = softmax_i(e_t)
//! z_t = sigmoid(f_beta(h_{t-1})) ⊙ Σ_i α_ti a_i
//! h_t, c_t = decode_step([embedding(y_{t-1}); z_t], (h_{t-1}, c_{t-1}))      (an LSTMCell)
//! logits_t = fc(dropout(h_t))
//! ```
//!
//! over the trunk's last feature map `a` (`P` cells of `C` channels). Training runs it with an
//! explicit forward and backward pass ([`teacher`]), no autograd graph: per-step graph nodes
//! made candle's backward quadratic in the sequence length (docs/performance.md). Decoding uses
//! the same step ([`step`]). The parameters are plain f32 buffers, saved under their PyTorch names.

pub mod step;
pub mod teacher;
#[cfg(test)]
mod tests;

use crate::{Error, Result};
use candle_core::{Device, Tensor};
use rand::Rng;
use std::collections::HashMap;

/// The decoder's sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AttentionDims {
    /// Vocabulary V.
    pub vocab: usize,
    /// Channels C of a feature-map cell (2048 for ResNet-50).
    pub channels: usize,
    /// Word embedding E.
    pub embed: usize,
    /// Attention layer A.
    pub attention: usize,
    /// LSTM hidden state H.
    pub hidden: usize,
}

/// The parameters, in the order of [`PARAMS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Param {
    EncW,
    EncB,
    DecW,
    DecB,
    FullW,
    FullB,
    Emb,
    WIh,
    WHh,
    BIh,
    BHh,
    InitHW,
    InitHB,
    InitCW,
    InitCB,
    FbW,
    FbB,
    FcW,
    FcB,
}

/// Every parameter with its PyTorch name.
pub const PARAMS: [(Param, &str); 19] = [
    (Param::EncW, "attention.encoder_att.weight"),
    (Param::EncB, "attention.encoder_att.bias"),
    (Param::DecW, "attention.decoder_att.weight"),
    (Param::DecB, "attention.decoder_att.bias"),
    (Param::FullW, "attention.full_att.weight"),
    (Param::FullB, "attention.full_att.bias"),
    (Param::Emb, "embedding.weight"),
    (Param::WIh, "decode_step.weight_ih"),
    (Param::WHh, "decode_step.weight_hh"),
    (Param::BIh, "decode_step.bias_ih"),
    (Param::BHh, "decode_step.bias_hh"),
    (Param::InitHW, "init_h.weight"),
    (Param::InitHB, "init_h.bias"),
    (Param::InitCW, "init_c.weight"),
    (Param::InitCB, "init_c.bias"),
    (Param::FbW, "f_beta.weight"),
    (Param::FbB, "f_beta.bias"),
    (Param::FcW, "fc.weight"),
    (Param::FcB, "fc.bias"),
];

impl AttentionDims {
    /// The shape of `p`, as PyTorch has it.
    pub fn shape(&self, p: Param) -> Vec<usize> {
        let AttentionDims {
            vocab: v,
            channels: c,
            embed: e,
            attention: a,
            hidden: h,
        } = *self;
        match p {
            Param::EncW => vec![a, c],
            Param::EncB | Param::DecB => vec![a],
            Param::DecW => vec![a, h],
            Param::FullW => vec![1, a],
            Param::FullB => vec![1],
            Param::Emb => vec![v, e],
            Param::WIh => vec![4 * h, e + c],
            Param::WHh => vec![4 * h, h],
            Param::BIh | Param::BHh => vec![4 * h],
            Param::InitHW | Param::InitCW => vec![h, c],
            Param::InitHB | Param::InitCB => vec![h],
            Param::FbW => vec![c, h],
            Param::FbB => vec![c],
            Param::FcW => vec![v, h],
            Param::FcB => vec![v],
        }
    }

    /// Elements of `p`.
    pub fn len(&self, p: Param) -> usize {
        self.shape(p).iter().product()
    }
}

/// The prefix of the decoder's tensor names in model files (`decoder.attention.full_att.weight`):
/// strip it and the names are the tutorial's state dict.
pub const FILE_PREFIX: &str = "decoder.";

/// The decoder: its sizes and one f32 buffer per parameter.
#[derive(Debug, Clone)]
pub struct AttentionDecoder {
    dims: AttentionDims,
    params: Vec<Vec<f32>>,
}

/// One buffer per parameter, in the order of [`PARAMS`]: gradients, or Adam's moments.
pub type ParamBuffers = Vec<Vec<f32>>;

impl AttentionDecoder {
    /// A freshly initialised decoder: embedding and `fc.weight` uniform in ±0.1 and `fc.bias`
    /// zero (the tutorial's `init_weights`), every other parameter as PyTorch initialises its
    /// `nn.Linear` / `nn.LSTMCell` (uniform in ±1/√fan_in, ±1/√H for the cell).
    pub fn new(dims: AttentionDims, rng: &mut impl Rng) -> Self {
        let params = PARAMS
            .iter()
            .map(|&(p, _)| {
                let shape = dims.shape(p);
                let n: usize = shape.iter().product();
                let bound = match p {
                    Param::Emb | Param::FcW => 0.1,
                    Param::FcB => 0.0,
                    Param::WIh | Param::WHh | Param::BIh | Param::BHh => {
                        1.0 / (dims.hidden as f32).sqrt()
                    }
                    // A bias shares its layer's fan-in: the weight's second dimension.
                    _ => {
                        let fan_in = match p {
                            Param::EncW | Param::EncB | Param::InitHW | Param::InitHB => {
                                dims.channels
                            }
                            Param::InitCW | Param::InitCB => dims.channels,
                            Param::DecW | Param::DecB | Param::FbW | Param::FbB => dims.hidden,
                            _ => dims.attention,
                        };
                        1.0 / (fan_in as f32).sqrt()
                    }
                };
                (0..n)
                    .map(|_| {
                        if bound == 0.0 {
                            0.0
                        } else {
                            rng.random_range(-bound..bound)
                        }
                    })
                    .collect()
            })
            .collect();
        Self { dims, params }
    }

    /// A decoder from named tensors (`prefix` + the PyTorch names), with sizes read off them.
    pub fn from_tensors(map: &HashMap<String, Tensor>, prefix: &str) -> Result<Self> {
        let get = |name: &str| -> Result<&Tensor> {
            map.get(&format!("{prefix}{name}")).ok_or_else(|| {
                Error::Invalid(format!("attention decoder: no tensor {prefix}{name}"))
            })
        };
        let (vocab, embed) = get("embedding.weight")?.dims2()?;
        let (attention, channels) = get("attention.encoder_att.weight")?.dims2()?;
        let (hidden, _) = get("init_h.weight")?.dims2()?;
        let dims = AttentionDims {
            vocab,
            channels,
            embed,
            attention,
            hidden,
        };
        let mut params = Vec::with_capacity(PARAMS.len());
        for (p, name) in PARAMS {
            let t = get(name)?;
            if t.dims() != dims.shape(p) {
                return Err(Error::Invalid(format!(
                    "attention decoder: {prefix}{name} has shape {:?}, expected {:?}",
                    t.dims(),
                    dims.shape(p)
                )));
            }
            params.push(
                t.to_dtype(candle_core::DType::F32)?
                    .flatten_all()?
                    .to_vec1::<f32>()?,
            );
        }
        Ok(Self { dims, params })
    }

    /// The parameters as tensors named `prefix` + their PyTorch names.
    pub fn tensors(&self, prefix: &str) -> Result<Vec<(String, Tensor)>> {
        PARAMS
            .iter()
            .zip(&self.params)
            .map(|(&(p, name), data)| {
                let t = Tensor::from_slice(data, self.dims.shape(p), &Device::Cpu)?;
                Ok((format!("{prefix}{name}"), t))
            })
            .collect()
    }

    /// Whether a model file's tensors are an attention decoder's (its `decoder.` names).
    pub fn is_in(map: &HashMap<String, Tensor>) -> bool {
        map.contains_key(&format!("{FILE_PREFIX}{}", PARAMS[0].1))
    }

    /// Reads a model file written by [`Self::save`].
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let map =
            candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| Error::Checkpoint {
                path: path.to_path_buf(),
                msg: e.to_string(),
            })?;
        Self::from_tensors(&map, FILE_PREFIX).map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })
    }

    /// Writes the parameters atomically, named [`FILE_PREFIX`] + their PyTorch names.
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        let map: HashMap<String, Tensor> = self.tensors(FILE_PREFIX)?.into_iter().collect();
        crate::fsutil::write_atomic_with(path, |tmp| {
            candle_core::safetensors::save(&map, tmp).map_err(|e| Error::Checkpoint {
                path: tmp.to_path_buf(),
                msg: e.to_string(),
            })
        })
    }

    /// The sizes.
    pub fn dims(&self) -> AttentionDims {
        self.dims
    }

    /// One parameter's values (row-major, PyTorch's shape).
    pub fn param(&self, p: Param) -> &[f32] {
        &self.params[p as usize]
    }

    /// Every parameter, in the order of [`PARAMS`], for an optimiser.
    pub fn params_mut(&mut self) -> &mut [Vec<f32>] {
        &mut self.params
    }

    /// Zeroed buffers shaped like the parameters.
    pub fn zeros_like(&self) -> ParamBuffers {
        self.params.iter().map(|p| vec![0.0; p.len()]).collect()
    }
}
