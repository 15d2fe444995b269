//! The split into train / validation / test, always by image (never by caption, so no image's
//! captions leak into validation). Saved as `split.json` = `{"train": [..], "val": [..], "test": [..]}`.

use crate::data::CaptionCorpus;
use crate::{fsutil, Error, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::Path;

/// One part of a split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SplitName {
    /// The images trained on.
    Train,
    /// The images held out for validation during training.
    Val,
    /// The images held out for the final evaluation.
    Test,
}

impl SplitName {
    /// Reads Karpathy's `split` field. `restval` (the COCO validation images Karpathy did not hold
    /// out) goes to train, as in his and most later work.
    pub fn from_karpathy(s: &str) -> Option<Self> {
        match s {
            "train" | "restval" => Some(SplitName::Train),
            "val" => Some(SplitName::Val),
            "test" => Some(SplitName::Test),
            _ => None,
        }
    }
}

/// Fractions of the images for train, val and test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SplitRatios {
    /// Fraction of the images for training.
    pub train: f64,
    /// Fraction of the images for validation.
    pub val: f64,
    /// Fraction of the images for testing.
    pub test: f64,
}

impl Default for SplitRatios {
    fn default() -> Self {
        SplitRatios {
            train: 0.8,
            val: 0.1,
            test: 0.1,
        }
    }
}

impl SplitRatios {
    /// Checks that each ratio is finite and >= 0 and that they sum to 1 (within 1e-6).
    pub fn new(train: f64, val: f64, test: f64) -> Result<Self> {
        let all = [train, val, test];
        if all.iter().any(|r| !r.is_finite() || *r < 0.0)
            || (all.iter().sum::<f64>() - 1.0).abs() > 1e-6
        {
            return Err(Error::Invalid(format!(
                "split ratios {train},{val},{test}: each must be >= 0 and they must sum to 1"
            )));
        }
        Ok(Self { train, val, test })
    }
}

impl std::str::FromStr for SplitRatios {
    type Err = Error;
    /// Parses `"0.8,0.1,0.1"`.
    fn from_str(s: &str) -> Result<Self> {
        let parts: Vec<f64> = s
            .split(',')
            .map(|p| p.trim().parse::<f64>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::Invalid(format!("split ratios {s:?}: {e}")))?;
        match parts[..] {
            [a, b, c] => Self::new(a, b, c),
            _ => Err(Error::Invalid(format!(
                "split ratios {s:?}: expected three numbers train,val,test"
            ))),
        }
    }
}

/// Image file names of each part.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSplit {
    /// The training images.
    pub train: Vec<String>,
    /// The validation images.
    pub val: Vec<String>,
    /// The test images.
    pub test: Vec<String>,
}

impl DatasetSplit {
    /// The dataset's own split when it has one (Karpathy's `split` field, Flickr8k's split files;
    /// images it does not place are left out), else [`DatasetSplit::random`].
    pub fn from_corpus(corpus: &CaptionCorpus, ratios: SplitRatios, seed: u64) -> Self {
        if !corpus.has_own_split() {
            return Self::random(corpus, ratios, seed);
        }
        let mut split = Self::default();
        for image in &corpus.images {
            if let Some(part) = image.split {
                split.part_mut(part).push(image.file.clone());
            }
        }
        split
    }

    /// A seeded random split of the images (ChaCha8, stable across versions). Val and test get
    /// `round(n * ratio)` images, train the rest; each part keeps corpus order.
    pub fn random(corpus: &CaptionCorpus, ratios: SplitRatios, seed: u64) -> Self {
        let n = corpus.images.len();
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
        let n_val = ((n as f64 * ratios.val).round() as usize).min(n);
        let n_test = ((n as f64 * ratios.test).round() as usize).min(n - n_val);
        let mut parts = [
            order[n_val + n_test..].to_vec(),
            order[..n_val].to_vec(),
            order[n_val..n_val + n_test].to_vec(),
        ];
        let names = |idx: &mut Vec<usize>| -> Vec<String> {
            idx.sort_unstable();
            idx.iter().map(|&i| corpus.images[i].file.clone()).collect()
        };
        let [train, val, test] = &mut parts;
        Self {
            train: names(train),
            val: names(val),
            test: names(test),
        }
    }

    /// The images of one part.
    pub fn part(&self, name: SplitName) -> &[String] {
        match name {
            SplitName::Train => &self.train,
            SplitName::Val => &self.val,
            SplitName::Test => &self.test,
        }
    }

    fn part_mut(&mut self, name: SplitName) -> &mut Vec<String> {
        match name {
            SplitName::Train => &mut self.train,
            SplitName::Val => &mut self.val,
            SplitName::Test => &mut self.test,
        }
    }

    /// Writes `split.json` atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        fsutil::write_json_atomic(path, self)
    }

    /// Reads a `split.json`; an image in two parts is an error. See [`DatasetSplit::check_against`].
    pub fn load(path: &Path) -> Result<Self> {
        let split: Self = fsutil::read_json(path)?;
        let mut seen = HashSet::new();
        let twice: Vec<&str> = [&split.train, &split.val, &split.test]
            .into_iter()
            .flatten()
            .filter(|f| !seen.insert(f.as_str()))
            .map(String::as_str)
            .collect();
        if !twice.is_empty() {
            return Err(Error::format(
                path,
                format!(
                    "{} image(s) in two parts, first: {}",
                    twice.len(),
                    first_few(&twice)
                ),
            ));
        }
        Ok(split)
    }

    /// Loads `path` and checks that every image it names is in `corpus`.
    pub fn load_for(path: &Path, corpus: &CaptionCorpus) -> Result<Self> {
        let split = Self::load(path)?;
        split
            .check_against(corpus)
            .map_err(|msg| Error::format(path, msg))?;
        Ok(split)
    }

    /// Err naming the first few images of the split that the corpus does not hold.
    pub fn check_against(&self, corpus: &CaptionCorpus) -> std::result::Result<(), String> {
        let known: HashSet<&str> = corpus.images.iter().map(|i| i.file.as_str()).collect();
        let unknown: Vec<&str> = [&self.train, &self.val, &self.test]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .filter(|f| !known.contains(f))
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        Err(format!(
            "{} image(s) of the split are not in the corpus, first: {}",
            unknown.len(),
            first_few(&unknown)
        ))
    }
}

fn first_few(names: &[&str]) -> String {
    names.iter().take(5).copied().collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_validated() {
        assert!("0.8,0.1,0.1".parse::<SplitRatios>().is_ok());
        assert!("0.8, 0.2, 0".parse::<SplitRatios>().is_ok());
        assert!("0.8,0.1".parse::<SplitRatios>().is_err());
        assert!("0.8,0.3,-0.1".parse::<SplitRatios>().is_err());
        assert!("0.8,0.1,0.2".parse::<SplitRatios>().is_err());
        assert!("a,b,c".parse::<SplitRatios>().is_err());
        assert!("NaN,0,1".parse::<SplitRatios>().is_err());
        assert_eq!(SplitRatios::default().train, 0.8);
    }

    #[test]
    fn karpathy_restval_goes_to_train() {
        assert_eq!(SplitName::from_karpathy("restval"), Some(SplitName::Train));
        assert_eq!(SplitName::from_karpathy("dev"), None);
    }

    #[test]
    fn json_is_exactly_three_lists() {
        let s = DatasetSplit {
            train: vec!["a.jpg".into()],
            val: vec![],
            test: vec!["b.jpg".into()],
        };
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"train":["a.jpg"],"val":[],"test":["b.jpg"]}"#
        );
    }
}
