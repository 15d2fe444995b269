//! From a corpus, its split, a vocabulary and the feature cache to the trainer's [`TrainData`]:
//! every caption of every train (val) image that has a cached feature, as token ids.

use crate::data::CaptionCorpus;
use crate::features::FeatureCache;
use crate::text::Vocabulary;
use crate::train::{Caption, TrainData};
use crate::Result;
use std::collections::HashMap;

/// Captions of at most this many words are kept whole; longer ones are cut (Flickr8k's longest is ~35).
pub const MAX_CAPTION_WORDS: usize = 40;

/// The trainer's data, plus the images of the split that had no feature (unreadable images).
#[derive(Debug)]
pub struct PreparedTrainData {
    /// Features and captions, ready for [`crate::train::train`].
    pub data: TrainData,
    /// Images of the split left out because the cache has no feature for them.
    pub missing_features: Vec<String>,
}

/// Builds train and validation captions for `train_images` and `val_images`.
pub fn build_train_data(
    corpus: &CaptionCorpus,
    train_images: &[String],
    val_images: &[String],
    vocab: &Vocabulary,
    cache: &FeatureCache,
) -> Result<PreparedTrainData> {
    let by_name: HashMap<&str, usize> = corpus
        .images
        .iter()
        .enumerate()
        .map(|(i, r)| (r.file.as_str(), i))
        .collect();
    let mut missing = Vec::new();
    let mut captions_of = |images: &[String]| -> Vec<Caption> {
        let mut out = Vec::new();
        for name in images {
            let (Some(&rec), Some(row)) = (by_name.get(name.as_str()), cache.row(name)) else {
                missing.push(name.clone());
                continue;
            };
            for caption in &corpus.images[rec].captions {
                let mut tokens = vocab.encode(caption);
                tokens.truncate(MAX_CAPTION_WORDS);
                out.push(Caption { image: row, tokens });
            }
        }
        out
    };
    let train = captions_of(train_images);
    let val = captions_of(val_images);
    Ok(PreparedTrainData {
        data: TrainData {
            features: cache.features.clone(),
            train,
            val,
            spatial: cache.spatial.clone(),
        },
        missing_features: missing,
    })
}
