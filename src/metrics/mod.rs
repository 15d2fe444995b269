//! Caption metrics equal to coco-caption's (pycocoevalcap 1.2): BLEU-1..4, ROUGE-L and CIDEr-D on
//! PTB-tokenized captions, plus the files the official toolkit reads for METEOR and SPICE.

pub mod bleu;
pub mod cider;
pub mod coco;
pub mod rouge;
pub mod tokenize;

pub use bleu::{bleu, bleu_per_image};
pub use cider::{cider_d, cider_d_per_image};
pub use rouge::{rouge_l, rouge_l_per_image};
pub use tokenize::ptb_tokenize;

use crate::{Error, Result};
use std::collections::{BTreeMap, HashMap};

/// Tokenized reference captions per image (image file name → captions → tokens).
pub type TokenizedRefs = BTreeMap<String, Vec<Vec<String>>>;
/// Tokenized hypothesis caption per image (image file name → tokens).
pub type TokenizedHyps = BTreeMap<String, Vec<String>>;

/// Corpus scores, as printed by `captioner eval --json`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Scores {
    /// BLEU-1, 0..=1.
    pub bleu1: f64,
    /// BLEU-2, 0..=1.
    pub bleu2: f64,
    /// BLEU-3, 0..=1.
    pub bleu3: f64,
    /// BLEU-4, 0..=1.
    pub bleu4: f64,
    /// ROUGE-L, 0..=1.
    pub rouge_l: f64,
    /// CIDEr-D, on coco-caption's scale (×10, so it can exceed 1).
    pub cider: f64,
    /// Number of images scored.
    pub images: usize,
}

impl Scores {
    /// The metrics under their usual names, in the order tables show them.
    pub fn named(&self) -> [(&'static str, f64); 6] {
        [
            ("BLEU-1", self.bleu1),
            ("BLEU-2", self.bleu2),
            ("BLEU-3", self.bleu3),
            ("BLEU-4", self.bleu4),
            ("ROUGE-L", self.rouge_l),
            ("CIDEr-D", self.cider),
        ]
    }
}

/// Scores raw captions: tokenizes them with [`ptb_tokenize`] and runs every metric.
/// Every image must have a hypothesis and at least one reference.
pub fn evaluate(
    refs: &BTreeMap<String, Vec<String>>,
    hyps: &BTreeMap<String, String>,
) -> Result<Scores> {
    check_images(refs, hyps)?;
    let refs: TokenizedRefs = refs
        .iter()
        .map(|(k, v)| (k.clone(), v.iter().map(|c| ptb_tokenize(c)).collect()))
        .collect();
    let hyps: TokenizedHyps = hyps
        .iter()
        .map(|(k, v)| (k.clone(), ptb_tokenize(v)))
        .collect();
    evaluate_tokenized(&refs, &hyps)
}

/// Scores already tokenized captions with every metric.
pub fn evaluate_tokenized(refs: &TokenizedRefs, hyps: &TokenizedHyps) -> Result<Scores> {
    let [bleu1, bleu2, bleu3, bleu4] = bleu(refs, hyps)?;
    Ok(Scores {
        bleu1,
        bleu2,
        bleu3,
        bleu4,
        rouge_l: rouge_l(refs, hyps)?,
        cider: cider_d(refs, hyps)?,
        images: hyps.len(),
    })
}

/// Checks that references and hypotheses name the same images, that there is at least one
/// image, and that every image has a reference (pycocoevalcap asserts the same).
pub fn check_images<R, H>(
    refs: &BTreeMap<String, Vec<R>>,
    hyps: &BTreeMap<String, H>,
) -> Result<()> {
    if let Some(k) = hyps.keys().find(|k| !refs.contains_key(*k)) {
        return Err(Error::Invalid(format!(
            "image {k} has a hypothesis but no references"
        )));
    }
    if let Some(k) = refs.keys().find(|k| !hyps.contains_key(*k)) {
        return Err(Error::Invalid(format!(
            "image {k} has references but no hypothesis"
        )));
    }
    if let Some((k, _)) = refs.iter().find(|(_, v)| v.is_empty()) {
        return Err(Error::Invalid(format!(
            "image {k} has an empty list of references"
        )));
    }
    if hyps.is_empty() {
        return Err(Error::Invalid("no images to evaluate".into()));
    }
    Ok(())
}

/// Counts of all 1- to `n`-grams of `words`, keyed by the n-gram's slice of words.
pub(crate) fn ngram_counts(words: &[String], n: usize) -> HashMap<&[String], usize> {
    let mut counts = HashMap::new();
    for k in 1..=n {
        for gram in words.windows(k) {
            *counts.entry(gram).or_insert(0) += 1;
        }
    }
    counts
}

/// numpy's `np.mean` of a 1-D float64 array: pairwise summation in blocks, as numpy does,
/// so corpus means agree with pycocoevalcap to the last bits.
pub(crate) fn np_mean(values: &[f64]) -> f64 {
    np_pairwise_sum(values) / values.len() as f64
}

/// numpy's `pairwise_sum` (numpy/_core/src/umath/loops_utils.h): unrolled by 8 below 128.
fn np_pairwise_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        a.iter().fold(0.0, |s, x| s + x)
    } else if n <= 128 {
        let mut r = [a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]];
        let mut i = 8;
        while i < n - n % 8 {
            for j in 0..8 {
                r[j] += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for x in &a[i..] {
            res += x;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        np_pairwise_sum(&a[..n2]) + np_pairwise_sum(&a[n2..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs_hyps(
        r: &[(&str, &[&str])],
        h: &[(&str, &str)],
    ) -> (BTreeMap<String, Vec<String>>, BTreeMap<String, String>) {
        let refs = r
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect();
        let hyps = h
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        (refs, hyps)
    }

    #[test]
    fn mismatched_images_are_invalid() {
        let (refs, hyps) = refs_hyps(&[("a.jpg", &["a dog"])], &[("b.jpg", "a dog")]);
        assert!(matches!(evaluate(&refs, &hyps), Err(Error::Invalid(_))));
        let (refs, hyps) = refs_hyps(
            &[("a.jpg", &["a dog"]), ("b.jpg", &["a cat"])],
            &[("a.jpg", "a dog")],
        );
        assert!(matches!(evaluate(&refs, &hyps), Err(Error::Invalid(_))));
        let (refs, hyps) = refs_hyps(&[("a.jpg", &[])], &[("a.jpg", "a dog")]);
        assert!(matches!(evaluate(&refs, &hyps), Err(Error::Invalid(_))));
        let (refs, hyps) = refs_hyps(&[], &[]);
        assert!(matches!(evaluate(&refs, &hyps), Err(Error::Invalid(_))));
    }

    #[test]
    fn perfect_hypotheses_score_one() {
        let (refs, hyps) = refs_hyps(
            &[
                ("a.jpg", &["A dog runs on the grass."]),
                ("b.jpg", &["two cats sleep on a red sofa"]),
            ],
            &[
                ("a.jpg", "a dog runs on the grass"),
                ("b.jpg", "Two cats sleep on a red sofa!"),
            ],
        );
        let s = evaluate(&refs, &hyps).unwrap();
        for v in [s.bleu1, s.bleu2, s.bleu3, s.bleu4, s.rouge_l] {
            assert!((v - 1.0).abs() < 1e-6, "{s:?}");
        }
        assert_eq!(s.images, 2);
    }

    #[test]
    fn numpy_pairwise_sum_matches_plain_sum_closely() {
        let v: Vec<f64> = (0..1000).map(|i| (i as f64 * 0.37).sin()).collect();
        let plain: f64 = v.iter().sum();
        assert!((np_pairwise_sum(&v) - plain).abs() < 1e-9);
        assert_eq!(np_mean(&[1.0, 2.0, 3.0]), 2.0);
    }
}
