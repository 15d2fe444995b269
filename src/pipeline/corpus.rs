//! [`CorpusSpec`]: where a corpus is and how to turn it into a split and a vocabulary — the choices
//! `inspect`, `features`, `train` and `eval` share.

use crate::data::{CaptionCorpus, DatasetSplit, Layout, LoadOptions, SplitRatios};
use crate::text::{VocabSource, Vocabulary};
use std::path::PathBuf;

/// A corpus directory with the way to read, split and count it.
#[derive(Debug, Clone)]
pub struct CorpusSpec {
    /// Corpus directory (Kaggle `captions.txt` + `Images/`, `Flickr8k.token.txt`, or Karpathy JSON).
    pub data: PathBuf,
    /// Layout to read instead of detecting it.
    pub format: Option<Layout>,
    /// Bad rows, skipped lines, missing or uncaptioned images are errors instead of being skipped.
    pub strict: bool,
    /// Keep words seen at least this many times.
    pub min_freq: usize,
    /// Count words in the training captions only, or in all captions (the tutorial).
    pub vocab_from: VocabSource,
    /// Fractions train/val/test of a random split, for a dataset without a split of its own.
    pub split_ratios: SplitRatios,
    /// Seed of the random split.
    pub seed: u64,
    /// A `split.json` to read instead of computing the split.
    pub split_file: Option<PathBuf>,
}

impl CorpusSpec {
    /// The defaults of the command line for `data`: detected layout, lenient, min-freq 5,
    /// vocabulary from the training captions, 80/10/10 split with seed 42.
    pub fn new(data: impl Into<PathBuf>) -> Self {
        Self {
            data: data.into(),
            format: None,
            strict: false,
            min_freq: 5,
            vocab_from: VocabSource::Train,
            split_ratios: SplitRatios::default(),
            seed: 42,
            split_file: None,
        }
    }

    /// Reads the corpus.
    pub fn load(&self) -> crate::Result<CaptionCorpus> {
        CaptionCorpus::load(
            &self.data,
            &LoadOptions {
                format: self.format,
                strict: self.strict,
            },
        )
    }

    /// The split file's split if one is given, else the dataset's own, else a seeded random one.
    pub fn split(&self, corpus: &CaptionCorpus) -> crate::Result<DatasetSplit> {
        Ok(match &self.split_file {
            Some(path) => DatasetSplit::load_for(path, corpus)?,
            None => DatasetSplit::from_corpus(corpus, self.split_ratios, self.seed),
        })
    }

    /// Where [`CorpusSpec::split`] takes the split from, for reports: "file", "dataset" or "random".
    pub fn split_source(&self, corpus: &CaptionCorpus) -> &'static str {
        if self.split_file.is_some() {
            "file"
        } else if corpus.has_own_split() {
            "dataset"
        } else {
            "random"
        }
    }

    /// The vocabulary of the training captions (or of all captions, per `vocab_from`).
    pub fn vocabulary(&self, corpus: &CaptionCorpus, split: &DatasetSplit) -> Vocabulary {
        match self.vocab_from {
            VocabSource::Train => {
                Vocabulary::build(corpus.captions_of(&split.train), self.min_freq)
            }
            VocabSource::All => Vocabulary::build(corpus.captions(), self.min_freq),
        }
    }
}
