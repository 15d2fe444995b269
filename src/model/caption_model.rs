//! Head + decoder as one model, the part of the captioner after the frozen trunk: one definition
//! for training (`train::loss`) and inference (`decode`), and the weights file
//! (`best.safetensors`, `last/weights.safetensors`) it is saved to.

use crate::model::decoder::{Decoder, TeacherBatch, DECODER_PREFIX};
use crate::model::head::{Head, HEAD_PREFIX};
use crate::{Error, Result};
use candle_core::{Device, Tensor, Var};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::path::Path;

/// The trained part of the captioner: everything after the frozen trunk.
#[derive(Debug, Clone)]
pub struct CaptionModel {
    /// Linear + BatchNorm1d: the image feature as the LSTM's first input.
    pub head: Head,
    /// Embedding, LSTM and output layer.
    pub decoder: Decoder,
    /// Buffers the training step's fused ops keep between steps (see [`Scratch`]).
    scratch: Scratch,
}

/// Large buffers a model's training step reuses from one step to the next (the output layer's
/// `[N, V]` gradient, 46 MB at vocabulary 9000): allocating them afresh cost page faults and a
/// memset per step. Owned by one model, so concurrent trainings never share one and the memory
/// goes with the model; a clone of the model starts with none.
#[derive(Debug, Default)]
pub struct Scratch(std::sync::Arc<std::sync::Mutex<Vec<f32>>>);

impl Clone for Scratch {
    fn clone(&self) -> Self {
        Scratch::default()
    }
}

impl Scratch {
    /// The kept buffer (or a new one), `len` long; its contents are arbitrary.
    pub(crate) fn take(&self, len: usize) -> Vec<f32> {
        let mut b = self
            .0
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default();
        b.resize(len, 0.0);
        b
    }

    /// Keeps `b` for the next [`Scratch::take`] if it is larger than the one kept.
    pub(crate) fn give(&self, b: Vec<f32>) {
        if let Ok(mut s) = self.0.lock() {
            if b.capacity() > s.capacity() {
                *s = b;
            }
        }
    }

    /// Bytes held between steps.
    pub fn held_bytes(&self) -> usize {
        self.0.lock().map(|s| s.capacity() * 4).unwrap_or(0)
    }

    /// Another handle on the same buffers, for an op of this model's step.
    pub(crate) fn share(&self) -> Scratch {
        Scratch(self.0.clone())
    }
}

impl CaptionModel {
    /// A freshly initialised model (PyTorch's default init, drawn from `rng`).
    pub fn new(
        feature_dim: usize,
        vocab: usize,
        embed: usize,
        hidden: usize,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<Self> {
        let head = Head::new(feature_dim, embed, rng, device)?;
        let decoder = Decoder::new(vocab, embed, hidden, rng, device)?;
        Ok(Self {
            head,
            decoder,
            scratch: Scratch::default(),
        })
    }

    /// Rebuilds the model from `encoder.*` and `decoder.*` tensors.
    pub fn from_tensors(map: &HashMap<String, Tensor>) -> Result<Self> {
        let decoder = Decoder::from_tensors(map, DECODER_PREFIX)?;
        let w = map
            .get(&format!("{HEAD_PREFIX}linear.weight"))
            .ok_or_else(|| Error::Invalid(format!("missing tensor {HEAD_PREFIX}linear.weight")))?;
        let (embed, feature_dim) = w.dims2()?;
        let head = Head::from_tensors(map, HEAD_PREFIX, feature_dim, embed)?;
        Ok(Self {
            head,
            decoder,
            scratch: Scratch::default(),
        })
    }

    /// Loads a weights file written by [`CaptionModel::save`].
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let map = candle_core::safetensors::load(path, device).map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        Self::from_tensors(&map).map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })
    }

    /// Writes every tensor (parameters and BatchNorm running statistics) atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let map: HashMap<String, Tensor> = self.tensors().into_iter().collect();
        crate::fsutil::write_atomic_with(path, |tmp| {
            candle_core::safetensors::save(&map, tmp).map_err(|e| Error::Checkpoint {
                path: tmp.to_path_buf(),
                msg: e.to_string(),
            })
        })
    }

    /// Every tensor under its checkpoint name (`encoder.linear.weight`, `decoder.lstm....`).
    pub fn tensors(&self) -> Vec<(String, Tensor)> {
        let mut t = self.head.tensors(HEAD_PREFIX);
        t.extend(self.decoder.tensors(DECODER_PREFIX));
        t
    }

    /// The trainable parameters, in a fixed order.
    pub fn vars(&self) -> Vec<(String, Var)> {
        let mut v = self.head.vars(HEAD_PREFIX);
        v.extend(self.decoder.vars(DECODER_PREFIX));
        v
    }

    /// The buffers this model's training steps reuse.
    pub fn scratch(&self) -> &Scratch {
        &self.scratch
    }

    /// The image embeddings `[B, E]`: the head in training mode (batch statistics, running
    /// statistics updated) when `train`, else in eval mode.
    pub fn image(&mut self, features: &Tensor, train: bool) -> Result<Tensor> {
        if train {
            self.head.forward_train(features)
        } else {
            self.head.forward(features)
        }
    }

    /// Logits `[N, V]` of the batch's real positions (the head in training mode when `train`).
    pub fn logits(
        &mut self,
        features: &Tensor,
        batch: &TeacherBatch,
        train: bool,
    ) -> Result<Tensor> {
        let image = self.image(features, train)?;
        self.decoder.forward_teacher(&image, batch)
    }
}
