//! What the training loop needs of a decoder, whichever it is: train on a batch, finish an epoch,
//! score the validation captions, and hand over its weights and optimiser state for checkpoints.
//! `LstmLearner` is the seed's head + LSTM with candle's autograd and [`Adam`];
//! `AttentionLearner` the attention decoder with its hand-written backward pass and
//! [`BufferAdam`].

use crate::model::attention::teacher::{backward, forward, PassOptions, TeacherBatch};
use crate::model::attention::{AttentionDecoder, AttentionDims, FILE_PREFIX, PARAMS};
use crate::model::CaptionModel;
use crate::run::{AttentionConfig, BnStatistics, TrainConfig};
use crate::text::{END, START};
use crate::train::adam::{Adam, AdamConfig, BufferAdam};
use crate::train::batches::{make_batch, Caption, TrainData};
use crate::train::checkpoint::SavedTensors;
use crate::train::teacher_step::loss_and_gradients;
use crate::train::trainer::{evaluate, set_bn_statistics};
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::Path;

/// A decoder being trained, with its optimiser.
pub trait Learner {
    /// Trains on the captions `idx` of `data.train`; `rng` draws anything random (dropout).
    /// Returns the batch's mean loss and its tokens, or `None` when the batch was skipped.
    fn train_batch(
        &mut self,
        data: &TrainData,
        idx: &[usize],
        rng: &mut ChaCha8Rng,
    ) -> Result<Option<(f64, usize)>>;
    /// Work after an epoch's batches, before validation (the head's BatchNorm statistics).
    fn end_epoch(&mut self, data: &TrainData) -> Result<()>;
    /// Token-weighted mean cross-entropy over `data.val`, in evaluation mode.
    fn val_loss(&mut self, data: &TrainData, batch_size: usize) -> Result<f64>;
    /// Writes the weights as a model file (`best.safetensors`).
    fn save(&self, path: &Path) -> Result<()>;
    /// The weights, for `last/`.
    fn weights(&self) -> Result<Vec<(String, Tensor)>>;
    /// The optimiser's moments, for `last/`.
    fn optimizer_state(&self) -> Result<Vec<(String, Tensor)>>;
    /// Optimiser steps taken.
    fn steps(&self) -> u64;
}

/// A fresh learner for `cfg`, or one restored from `last/`'s weights and optimiser state.
pub fn learner(
    cfg: &TrainConfig,
    data: &TrainData,
    restore: Option<(SavedTensors, HashMap<String, Tensor>, u64)>,
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> Result<Box<dyn Learner>> {
    let adam = AdamConfig {
        lr: cfg.lr,
        ..AdamConfig::default()
    };
    let checkpoint_error = |path: &Path, e: Error| Error::Checkpoint {
        path: path.to_path_buf(),
        msg: e.to_string(),
    };
    match cfg.decoder {
        crate::run::DecoderKind::Lstm => {
            let model = match &restore {
                Some((saved, _, _)) => CaptionModel::from_tensors(&saved.tensors)
                    .map_err(|e| checkpoint_error(&saved.path, e))?,
                None => CaptionModel::new(
                    cfg.feature_dim,
                    cfg.vocab_size,
                    cfg.embed,
                    cfg.hidden,
                    rng,
                    device,
                )?,
            };
            let mut opt = Adam::new(model.vars(), adam)?;
            if let Some((_, state, step)) = &restore {
                opt.load_state(state, *step)?;
            }
            Ok(Box::new(LstmLearner {
                model,
                opt,
                bn: cfg.bn_statistics,
            }))
        }
        crate::run::DecoderKind::Attention => {
            let att = cfg.attention.unwrap_or_default();
            let maps = data.spatial.as_ref().ok_or_else(|| {
                Error::Invalid(
                    "the attention decoder trains on feature maps: the cache has none (extract \
                     with `captioner features --spatial`)"
                        .into(),
                )
            })?;
            let dims = AttentionDims {
                vocab: cfg.vocab_size,
                channels: maps.dim(),
                embed: cfg.embed,
                attention: att.attention_dim,
                hidden: cfg.hidden,
            };
            let decoder = match &restore {
                Some((saved, _, _)) => AttentionDecoder::from_tensors(&saved.tensors, FILE_PREFIX)
                    .map_err(|e| checkpoint_error(&saved.path, e))?,
                None => AttentionDecoder::new(dims, rng),
            };
            if decoder.dims() != dims {
                return Err(Error::Invalid(format!(
                    "the attention decoder has sizes {:?}, the run {dims:?}",
                    decoder.dims()
                )));
            }
            let mut opt = BufferAdam::new(decoder.zeros_like().iter().map(Vec::len), adam);
            if let Some((_, state, step)) = &restore {
                opt.load_state(&param_names(), state, *step)?;
            }
            Ok(Box::new(AttentionLearner {
                decoder,
                opt,
                cfg: att,
            }))
        }
    }
}

/// The seed's head + LSTM decoder.
struct LstmLearner {
    model: CaptionModel,
    opt: Adam,
    bn: BnStatistics,
}

impl Learner for LstmLearner {
    fn train_batch(
        &mut self,
        data: &TrainData,
        idx: &[usize],
        _rng: &mut ChaCha8Rng,
    ) -> Result<Option<(f64, usize)>> {
        // BatchNorm cannot train on one row; PyTorch would fail, we skip that last caption.
        if idx.len() < 2 {
            return Ok(None);
        }
        let (f, b) = make_batch(&data.features, &data.train, idx)?;
        let loss = crate::pool::in_pool(|| -> Result<f64> {
            let (loss, grads) = loss_and_gradients(&mut self.model, &f, &b)?;
            self.opt.step(&grads)?;
            Ok(loss as f64)
        })?;
        Ok(Some((loss, b.tokens)))
    }

    fn end_epoch(&mut self, data: &TrainData) -> Result<()> {
        if self.bn == BnStatistics::Precise {
            set_bn_statistics(&mut self.model, &data.features, &data.train)?;
        }
        Ok(())
    }

    fn val_loss(&mut self, data: &TrainData, batch_size: usize) -> Result<f64> {
        evaluate(&mut self.model, &data.features, &data.val, batch_size)
    }

    fn save(&self, path: &Path) -> Result<()> {
        self.model.save(path)
    }

    fn weights(&self) -> Result<Vec<(String, Tensor)>> {
        Ok(self.model.tensors())
    }

    fn optimizer_state(&self) -> Result<Vec<(String, Tensor)>> {
        self.opt.state_tensors()
    }

    fn steps(&self) -> u64 {
        self.opt.step_count()
    }
}

/// The attention decoder's parameter names, in its order.
fn param_names() -> Vec<&'static str> {
    PARAMS.iter().map(|&(_, n)| n).collect()
}

/// The soft-attention decoder.
struct AttentionLearner {
    decoder: AttentionDecoder,
    opt: BufferAdam,
    cfg: AttentionConfig,
}

/// The feature maps `[B, P, C]` of the images of `captions[idx]`, read from the mapped cache.
fn gather_maps(data: &TrainData, captions: &[Caption], idx: &[usize]) -> Result<(Vec<f32>, usize)> {
    let maps = data
        .spatial
        .as_ref()
        .ok_or_else(|| Error::Internal("attention batch without feature maps".into()))?;
    let row = maps.cells() * maps.dim();
    let mut out = vec![0.0; idx.len() * row];
    out.par_chunks_mut(row.max(1))
        .zip(idx.par_iter())
        .for_each(|(o, &i)| maps.row_to(captions[i].image, o));
    Ok((out, maps.cells()))
}

impl AttentionLearner {
    fn pass(
        &self,
        data: &TrainData,
        captions: &[Caption],
        idx: &[usize],
        opts: PassOptions,
        rng: &mut ChaCha8Rng,
    ) -> Result<crate::model::attention::teacher::Pass> {
        let (maps, cells) = gather_maps(data, captions, idx)?;
        let words: Vec<&[u32]> = idx.iter().map(|&i| captions[i].tokens.as_slice()).collect();
        let batch = TeacherBatch {
            maps: &maps,
            cells,
            captions: &words,
            start: START,
            end: END,
        };
        forward(&self.decoder, &batch, opts, rng)
    }
}

impl Learner for AttentionLearner {
    fn train_batch(
        &mut self,
        data: &TrainData,
        idx: &[usize],
        rng: &mut ChaCha8Rng,
    ) -> Result<Option<(f64, usize)>> {
        if idx.is_empty() {
            return Ok(None);
        }
        let opts = PassOptions {
            dropout: self.cfg.dropout,
            alpha_c: self.cfg.alpha_c,
        };
        let clip = self.cfg.grad_clip;
        crate::pool::in_pool(|| {
            let pass = self.pass(data, &data.train, idx, opts, rng)?;
            let mut grads = backward(&self.decoder, &pass)?;
            // The tutorial's clip_gradient: every element into [−clip, clip].
            grads.par_iter_mut().for_each(|g| {
                for x in g.iter_mut() {
                    *x = x.clamp(-clip, clip);
                }
            });
            self.opt.step(self.decoder.params_mut(), &grads)?;
            Ok(Some((pass.loss.total(), pass.loss.tokens)))
        })
    }

    fn end_epoch(&mut self, _data: &TrainData) -> Result<()> {
        Ok(())
    }

    fn val_loss(&mut self, data: &TrainData, batch_size: usize) -> Result<f64> {
        let eval = PassOptions {
            dropout: 0.0,
            alpha_c: 0.0,
        };
        let idx: Vec<usize> = (0..data.val.len()).collect();
        let mut rng = rand::SeedableRng::seed_from_u64(0);
        crate::pool::in_pool(|| {
            let (mut sum, mut tokens) = (0f64, 0usize);
            for chunk in idx.chunks(batch_size.max(1)) {
                let pass = self.pass(data, &data.val, chunk, eval, &mut rng)?;
                sum += pass.loss.ce * pass.loss.tokens as f64;
                tokens += pass.loss.tokens;
            }
            Ok(sum / tokens.max(1) as f64)
        })
    }

    fn save(&self, path: &Path) -> Result<()> {
        self.decoder.save(path)
    }

    fn weights(&self) -> Result<Vec<(String, Tensor)>> {
        self.decoder.tensors(FILE_PREFIX)
    }

    fn optimizer_state(&self) -> Result<Vec<(String, Tensor)>> {
        self.opt.state_tensors(&param_names())
    }

    fn steps(&self) -> u64 {
        self.opt.step_count()
    }
}
