//! CIDEr-D as pycocoevalcap's `Cider()` computes it: TF-IDF vectors of 1- to 4-grams with the
//! document frequency taken from the references of the evaluated images, clipped cosine
//! similarity per n, a Gaussian length penalty (sigma 6), averaged over n and references, ×10.
//! All in f64, like the reference's float64 numpy.

use super::{check_images, ngram_counts, np_mean, TokenizedHyps, TokenizedRefs};
use crate::Result;
use std::collections::{BTreeMap, HashMap, HashSet};

const N: usize = 4;
const SIGMA: f64 = 6.0;

/// A caption's TF-IDF vector per n-gram length, its norms and its "length".
struct Vector<'a> {
    weights: [HashMap<&'a [String], f64>; N],
    norms: [f64; N],
    /// cider_scorer.py counts the *bigrams* here (`if n == 1`), so the length penalty uses
    /// len - 1; kept as is to match.
    length: usize,
}

struct Idf<'a> {
    df: HashMap<&'a [String], f64>,
    log_images: f64,
}

impl<'a> Idf<'a> {
    fn vector(&self, counts: &HashMap<&'a [String], usize>) -> Vector<'a> {
        let mut weights: [HashMap<&'a [String], f64>; N] = Default::default();
        let mut norms = [0.0; N];
        let mut length = 0;
        for (&gram, &tf) in counts {
            let df = self.df.get(gram).copied().unwrap_or(0.0).max(1.0).ln();
            let n = gram.len() - 1;
            let w = tf as f64 * (self.log_images - df);
            weights[n].insert(gram, w);
            norms[n] += w.powi(2);
            if n == 1 {
                length += tf;
            }
        }
        Vector {
            weights,
            norms: norms.map(f64::sqrt),
            length,
        }
    }
}

/// Clipped cosine similarity per n with the Gaussian length penalty (`sim` in cider_scorer.py).
fn similarity(hyp: &Vector, reference: &Vector) -> [f64; N] {
    let delta = hyp.length as f64 - reference.length as f64;
    let penalty = std::f64::consts::E.powf(-(delta * delta) / (2.0 * SIGMA * SIGMA));
    std::array::from_fn(|n| {
        let mut val = 0.0;
        for (gram, &h) in &hyp.weights[n] {
            let r = reference.weights[n].get(gram).copied().unwrap_or(0.0);
            val += h.min(r) * r;
        }
        if hyp.norms[n] != 0.0 && reference.norms[n] != 0.0 {
            val /= hyp.norms[n] * reference.norms[n];
        }
        val * penalty
    })
}

/// CIDEr-D per image.
pub fn cider_d_per_image(
    refs: &TokenizedRefs,
    hyps: &TokenizedHyps,
) -> Result<BTreeMap<String, f64>> {
    check_images(refs, hyps)?;
    let ref_counts: BTreeMap<&String, Vec<HashMap<&[String], usize>>> = refs
        .iter()
        .map(|(image, rs)| (image, rs.iter().map(|r| ngram_counts(r, N)).collect()))
        .collect();
    // Document frequency: in how many images' reference sets each n-gram occurs.
    let mut df: HashMap<&[String], f64> = HashMap::new();
    for counts in ref_counts.values() {
        let grams: HashSet<&[String]> = counts.iter().flat_map(|c| c.keys().copied()).collect();
        for gram in grams {
            *df.entry(gram).or_insert(0.0) += 1.0;
        }
    }
    let idf = Idf {
        df,
        log_images: (refs.len() as f64).ln(),
    };
    Ok(hyps
        .iter()
        .map(|(image, hyp)| {
            let v = idf.vector(&ngram_counts(hyp, N));
            let rcs = &ref_counts[image];
            let mut sum = [0.0; N];
            for rc in rcs {
                let s = similarity(&v, &idf.vector(rc));
                for n in 0..N {
                    sum[n] += s[n];
                }
            }
            let score = np_mean(&sum) / rcs.len() as f64 * 10.0;
            (image.clone(), score)
        })
        .collect())
}

/// CIDEr-D of the corpus: the mean of the per-image scores.
pub fn cider_d(refs: &TokenizedRefs, hyps: &TokenizedHyps) -> Result<f64> {
    let per_image: Vec<f64> = cider_d_per_image(refs, hyps)?.into_values().collect();
    Ok(np_mean(&per_image))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn one_image_scores_zero_because_every_idf_is_zero() {
        let refs: TokenizedRefs = [("a".to_string(), vec![words("a dog runs")])].into();
        let hyps: TokenizedHyps = [("a".to_string(), words("a dog runs"))].into();
        assert_eq!(cider_d(&refs, &hyps).unwrap(), 0.0);
    }

    #[test]
    fn exact_match_beats_partial_match() {
        let refs: TokenizedRefs = [
            ("a".to_string(), vec![words("a dog runs on grass")]),
            ("b".to_string(), vec![words("two cats sleep inside")]),
        ]
        .into();
        let exact: TokenizedHyps = [
            ("a".to_string(), words("a dog runs on grass")),
            ("b".to_string(), words("two cats sleep inside")),
        ]
        .into();
        let partial: TokenizedHyps = [
            ("a".to_string(), words("a dog sleeps")),
            ("b".to_string(), words("two cats sleep inside")),
        ]
        .into();
        let e = cider_d_per_image(&refs, &exact).unwrap();
        let p = cider_d_per_image(&refs, &partial).unwrap();
        // Identical vectors: cosine 1 for each n, times 10 (idf ln 2 for every gram).
        assert!((e["a"] - 10.0).abs() < 1e-12, "{e:?}");
        assert!(p["a"] < e["a"] && p["b"] == e["b"]);
    }
}
