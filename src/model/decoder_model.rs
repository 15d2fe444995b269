//! Either decoder, as a model file holds it: what captioning, export and serving load.

use super::attention::{AttentionDecoder, FILE_PREFIX};
use super::CaptionModel;
use crate::run::DecoderKind;
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// The decoder a model file holds.
#[derive(Debug)]
pub enum DecoderModel {
    /// The seed's head + LSTM, fed the pooled feature.
    Lstm(CaptionModel),
    /// Soft attention over the trunk's feature map.
    Attention(AttentionDecoder),
}

impl DecoderModel {
    /// Words in its vocabulary.
    pub fn vocab_size(&self) -> usize {
        match self {
            DecoderModel::Lstm(m) => m.decoder.vocab_size(),
            DecoderModel::Attention(d) => d.dims().vocab,
        }
    }

    /// Size of the image feature (a pooled feature, or a map cell) it reads.
    pub fn feature_dim(&self) -> usize {
        match self {
            DecoderModel::Lstm(m) => m.head.feature_dim(),
            DecoderModel::Attention(d) => d.dims().channels,
        }
    }

    /// `lstm` or `attention`, as `config.json` names it.
    pub fn kind(&self) -> DecoderKind {
        match self {
            DecoderModel::Lstm(_) => DecoderKind::Lstm,
            DecoderModel::Attention(_) => DecoderKind::Attention,
        }
    }

    /// A model file's decoder: the attention decoder's tensors, or the head + LSTM's.
    pub fn from_tensors(tensors: &HashMap<String, Tensor>) -> Result<Self> {
        if AttentionDecoder::is_in(tensors) {
            Ok(DecoderModel::Attention(AttentionDecoder::from_tensors(
                tensors,
                FILE_PREFIX,
            )?))
        } else {
            Ok(DecoderModel::Lstm(CaptionModel::from_tensors(tensors)?))
        }
    }

    /// Reads a model file (`best.safetensors`).
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let checkpoint = |msg: String| Error::Checkpoint {
            path: path.to_path_buf(),
            msg,
        };
        let tensors =
            candle_core::safetensors::load(path, device).map_err(|e| checkpoint(e.to_string()))?;
        Self::from_tensors(&tensors).map_err(|e| checkpoint(e.to_string()))
    }

    /// Every tensor, named as in model files.
    pub fn tensors(&self) -> Result<Vec<(String, Tensor)>> {
        match self {
            DecoderModel::Lstm(m) => Ok(m.tensors()),
            DecoderModel::Attention(d) => d.tensors(FILE_PREFIX),
        }
    }
}
