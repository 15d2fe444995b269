//! ROUGE-L as pycocoevalcap's `Rouge()` computes it: per image, the best LCS precision and the
//! best LCS recall over its references combined into an F-measure with beta = 1.2, then the mean
//! over images.

use super::{check_images, np_mean, TokenizedHyps, TokenizedRefs};
use crate::Result;
use std::collections::BTreeMap;

const BETA: f64 = 1.2;

/// Length of the longest common subsequence of `a` and `b`.
fn lcs(a: &[&str], b: &[&str]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y {
                prev[j] + 1
            } else {
                prev[j + 1].max(cur[j])
            };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The tokens as pycocoevalcap sees them: it splits the joined caption on " ", so an empty
/// caption is one empty token (length 1), not zero tokens.
fn as_split(tokens: &[String]) -> Vec<&str> {
    if tokens.is_empty() {
        vec![""]
    } else {
        tokens.iter().map(String::as_str).collect()
    }
}

/// ROUGE-L of one hypothesis against its references (`calc_score` in rouge.py).
fn image_score(hyp: &[String], refs: &[Vec<String>]) -> f64 {
    let c = as_split(hyp);
    let (mut prec_max, mut rec_max) = (0.0f64, 0.0f64);
    for r in refs {
        let r = as_split(r);
        let l = lcs(&r, &c) as f64;
        prec_max = prec_max.max(l / c.len() as f64);
        rec_max = rec_max.max(l / r.len() as f64);
    }
    if prec_max != 0.0 && rec_max != 0.0 {
        let b2 = BETA * BETA;
        ((1.0 + b2) * prec_max * rec_max) / (rec_max + b2 * prec_max)
    } else {
        0.0
    }
}

/// ROUGE-L per image.
pub fn rouge_l_per_image(
    refs: &TokenizedRefs,
    hyps: &TokenizedHyps,
) -> Result<BTreeMap<String, f64>> {
    check_images(refs, hyps)?;
    Ok(hyps
        .iter()
        .map(|(image, hyp)| (image.clone(), image_score(hyp, &refs[image])))
        .collect())
}

/// ROUGE-L of the corpus: the mean of the per-image scores.
pub fn rouge_l(refs: &TokenizedRefs, hyps: &TokenizedHyps) -> Result<f64> {
    let per_image: Vec<f64> = rouge_l_per_image(refs, hyps)?.into_values().collect();
    Ok(np_mean(&per_image))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn lcs_counts_a_subsequence_not_a_substring() {
        assert_eq!(lcs(&["a", "b", "c", "d"], &["a", "x", "c", "d"]), 3);
        assert_eq!(lcs(&["a", "b"], &[]), 0);
    }

    #[test]
    fn f_measure_with_beta() {
        // LCS 2, precision 2/2, recall 2/4.
        let s = image_score(&words("a dog"), &[words("a big dog runs")]);
        let (p, r, b2) = (1.0, 0.5, 1.44);
        assert!((s - (1.0 + b2) * p * r / (r + b2 * p)).abs() < 1e-12);
        // Empty hypothesis against an empty reference is a match of the empty token.
        assert_eq!(image_score(&[], &[vec![]]), 1.0);
        assert_eq!(image_score(&[], &[words("a dog")]), 0.0);
    }
}
