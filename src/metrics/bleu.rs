//! BLEU-1..4 exactly as pycocoevalcap's `Bleu(4)` computes it: clipped n-gram matches and
//! candidate n-gram counts summed over the corpus, the "closest" reference length per image,
//! and the scorer's `tiny`/`small` constants that keep zero counts from dividing by zero.

use super::{check_images, ngram_counts, TokenizedHyps, TokenizedRefs};
use crate::Result;
use std::collections::{BTreeMap, HashMap};

const N: usize = 4;
/// Added to every numerator (`tiny` in bleu_scorer.py), so a zero count gives ~0, not 0/0.
const TINY: f64 = 1e-15;
/// Added to every denominator (`small` in bleu_scorer.py).
const SMALL: f64 = 1e-9;

/// What BLEU needs from one image (`cook_test` in bleu_scorer.py).
struct Cooked {
    testlen: usize,
    reflen: usize,
    guess: [usize; N],
    correct: [usize; N],
}

fn cook(hyp: &[String], refs: &[Vec<String>]) -> Cooked {
    let mut max_ref: HashMap<&[String], usize> = HashMap::new();
    for r in refs {
        for (gram, c) in ngram_counts(r, N) {
            let m = max_ref.entry(gram).or_insert(0);
            *m = (*m).max(c);
        }
    }
    let testlen = hyp.len();
    // "closest": the reference length nearest to the hypothesis length, the shorter on a tie.
    let reflen = refs
        .iter()
        .map(|r| (r.len().abs_diff(testlen), r.len()))
        .min()
        .map_or(0, |(_, l)| l);
    let mut correct = [0; N];
    for (gram, c) in ngram_counts(hyp, N) {
        correct[gram.len() - 1] += c.min(max_ref.get(gram).copied().unwrap_or(0));
    }
    let guess = std::array::from_fn(|k| (testlen + 1).saturating_sub(k + 1));
    Cooked {
        testlen,
        reflen,
        guess,
        correct,
    }
}

/// BLEU-1..4 from summed counts, with the brevity penalty, as `compute_score` does.
fn score(testlen: usize, reflen: usize, guess: &[usize; N], correct: &[usize; N]) -> [f64; N] {
    let mut out = [0.0; N];
    let mut product = 1.0;
    for k in 0..N {
        product *= (correct[k] as f64 + TINY) / (guess[k] as f64 + SMALL);
        out[k] = product.powf(1.0 / (k + 1) as f64);
    }
    let ratio = (testlen as f64 + TINY) / (reflen as f64 + SMALL);
    if ratio < 1.0 {
        let penalty = (1.0 - 1.0 / ratio).exp();
        for v in &mut out {
            *v *= penalty;
        }
    }
    out
}

/// Corpus BLEU-1..4 of `hyps` against `refs` (pycocoevalcap `Bleu(4)`, option "closest").
pub fn bleu(refs: &TokenizedRefs, hyps: &TokenizedHyps) -> Result<[f64; N]> {
    check_images(refs, hyps)?;
    let (mut testlen, mut reflen) = (0, 0);
    let (mut guess, mut correct) = ([0; N], [0; N]);
    for (image, hyp) in hyps {
        let c = cook(hyp, &refs[image]);
        testlen += c.testlen;
        reflen += c.reflen;
        for k in 0..N {
            guess[k] += c.guess[k];
            correct[k] += c.correct[k];
        }
    }
    Ok(score(testlen, reflen, &guess, &correct))
}

/// Sentence-level BLEU-1..4 per image, as pycocoevalcap returns them beside the corpus score.
pub fn bleu_per_image(
    refs: &TokenizedRefs,
    hyps: &TokenizedHyps,
) -> Result<BTreeMap<String, [f64; N]>> {
    check_images(refs, hyps)?;
    Ok(hyps
        .iter()
        .map(|(image, hyp)| {
            let c = cook(hyp, &refs[image]);
            (
                image.clone(),
                score(c.testlen, c.reflen, &c.guess, &c.correct),
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn closest_reference_length_prefers_the_shorter_on_a_tie() {
        let c = cook(&words("a b c d"), &[words("a b c d e"), words("a b c")]);
        assert_eq!(c.reflen, 3);
        assert_eq!(c.guess, [4, 3, 2, 1]);
        assert_eq!(c.correct, [4, 3, 2, 1]);
    }

    #[test]
    fn clipping_and_brevity_penalty() {
        // "the the the" against "the cat": one clipped unigram match out of three.
        let c = cook(&words("the the the"), &[words("the cat")]);
        assert_eq!(c.correct, [1, 0, 0, 0]);
        // One word against a two-word reference: precision 1, brevity penalty exp(1 - 2/1).
        let s = score(1, 2, &[1, 0, 0, 0], &[1, 0, 0, 0]);
        assert!((s[0] - (-1.0f64).exp()).abs() < 1e-8, "{s:?}");
        // No bigram to guess: BLEU-2 is ~0, not NaN.
        assert!(s[1] < 1e-3 && s[1] >= 0.0, "{s:?}");
    }
}
