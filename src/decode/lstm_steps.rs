//! The trained head + LSTM decoder as a [`StepModel`]: the image embedding is fed once, then one token
//! per row, carrying `(h, c)`; beam search reorders rows by selecting rows of `h` and `c`.

use super::step_model::log_softmax_in_place;
use super::StepModel;
use crate::model::decoder::logits_to_vec;
use crate::model::lstm::LstmState;
use crate::model::CaptionModel;
use crate::{Error, Result};
use candle_core::Tensor;

/// Decoding steps of `model` for a batch of trunk features.
pub struct LstmSteps<'a> {
    model: &'a CaptionModel,
    /// Head output `[B, E]` (eval mode), one row per image.
    image: Tensor,
}

impl<'a> LstmSteps<'a> {
    /// Prepares decoding for `features [B, D]` (the trunk's pooled features, on the model's device).
    pub fn new(model: &'a CaptionModel, features: &Tensor) -> Result<Self> {
        let (_, d) = features.dims2()?;
        if d != model.head.feature_dim() {
            return Err(Error::Invalid(format!(
                "features have {d} values per image, the model's head expects {}",
                model.head.feature_dim()
            )));
        }
        let image = model
            .head
            .forward(&features.to_dtype(candle_core::DType::F32)?)?;
        Ok(Self { model, image })
    }

    /// Number of images.
    pub fn images(&self) -> usize {
        self.image.dims()[0]
    }
}

impl StepModel for LstmSteps<'_> {
    type State = LstmState;

    fn start(&self, images: usize) -> Result<LstmState> {
        if images != self.images() {
            return Err(Error::Invalid(format!(
                "asked to decode {images} images, features were given for {}",
                self.images()
            )));
        }
        // The output after the image step is not a word (training never scores it).
        let (_, state) = self.model.decoder.step(&self.image, None)?;
        Ok(state)
    }

    fn step(&self, tokens: &[u32], state: &LstmState) -> Result<(Vec<Vec<f32>>, LstmState)> {
        let ids = Tensor::from_slice(tokens, tokens.len(), self.image.device())?;
        let x = self.model.decoder.embed_tokens(&ids)?;
        let (logits, next) = self.model.decoder.step(&x, Some(state))?;
        let mut rows = logits_to_vec(&logits)?;
        for row in &mut rows {
            log_softmax_in_place(row);
        }
        Ok((rows, next))
    }

    fn select(&self, state: &LstmState, rows: &[usize]) -> Result<LstmState> {
        let idx: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
        let idx = Tensor::from_vec(idx, rows.len(), state.h.device())?;
        Ok(LstmState {
            h: state.h.contiguous()?.index_select(&idx, 0)?,
            c: state.c.contiguous()?.index_select(&idx, 0)?,
        })
    }
}
