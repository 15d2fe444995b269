//! Training data as the trainer sees it: one feature row per image and captions as token ids,
//! shuffled each epoch with a seeded ChaCha8 generator and cut into batches.

use crate::model::decoder::TeacherBatch;
use crate::{Error, Result};
use candle_core::Tensor;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// One caption of one image: the image's row in the feature matrix and the caption's word ids
/// (no startofseq / endofseq / pad).
#[derive(Debug, Clone, PartialEq)]
pub struct Caption {
    /// The image's row in the feature matrix.
    pub image: usize,
    /// The caption's word ids.
    pub tokens: Vec<u32>,
}

/// Cached features `[N_images, D]` and the train and validation captions.
#[derive(Debug, Clone)]
pub struct TrainData {
    /// Every image's feature, `[N_images, D]`.
    pub features: Tensor,
    /// The captions trained on.
    pub train: Vec<Caption>,
    /// The captions validated on.
    pub val: Vec<Caption>,
    /// Every image's feature map `[N_images, P, C]`, memory-mapped (attention decoder only).
    pub spatial: Option<std::sync::Arc<crate::features::SpatialFeatures>>,
}

impl TrainData {
    /// Checks the captions against the feature matrix and the vocabulary size.
    pub fn validate(&self, feature_dim: usize, vocab: usize) -> Result<()> {
        let (n, d) = self.features.dims2()?;
        if d != feature_dim {
            return Err(Error::Invalid(format!(
                "features are {d}-d, the model expects {feature_dim}"
            )));
        }
        if let Some(maps) = &self.spatial {
            if maps.len() != n || maps.dim() != d {
                return Err(Error::Invalid(format!(
                    "{} holds {} feature maps of {} channels for {n} features of {d}",
                    maps.path().display(),
                    maps.len(),
                    maps.dim()
                )));
            }
        }
        if self.train.is_empty() || self.val.is_empty() {
            return Err(Error::Invalid(
                "training needs at least one train and one validation caption".into(),
            ));
        }
        for c in self.train.iter().chain(&self.val) {
            if c.image >= n {
                return Err(Error::Invalid(format!(
                    "caption refers to image row {} of {n}",
                    c.image
                )));
            }
            if let Some(t) = c.tokens.iter().find(|&&t| t as usize >= vocab) {
                return Err(Error::Invalid(format!(
                    "token id {t} outside vocabulary of {vocab}"
                )));
            }
        }
        Ok(())
    }
}

/// This epoch's caption order: a permutation of `0..n` drawn from `rng`.
pub fn epoch_order(n: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    order
}

/// The features `[B, D]` and teacher-forced batch of `captions[idx]`, longest caption first
/// (a stable sort, so equal lengths keep `idx`'s order): the recurrence then runs only the
/// captions still going at each step (`model::lstm`'s live prefix). The loss is a mean over the
/// batch's tokens, so the order changes nothing but the summation order.
pub fn make_batch(
    features: &Tensor,
    captions: &[Caption],
    idx: &[usize],
) -> Result<(Tensor, TeacherBatch)> {
    let mut idx = idx.to_vec();
    idx.sort_by_key(|&i| std::cmp::Reverse(captions[i].tokens.len()));
    let rows: Vec<u32> = idx.iter().map(|&i| captions[i].image as u32).collect();
    let rows = Tensor::from_vec(rows, idx.len(), features.device())?;
    let feats = features.index_select(&rows, 0)?;
    let toks: Vec<&[u32]> = idx.iter().map(|&i| captions[i].tokens.as_slice()).collect();
    Ok((feats, TeacherBatch::new(&toks, features.device())?))
}
