//! The training-step benches' batch: [`BATCH`] captions of random word ids, either all the same
//! length or with lengths drawn from Flickr8k's own captions, so that the batch is padded the way
//! a real one is.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Captions per step of both training-step benches.
pub(super) const BATCH: usize = 64;
/// Words per caption of the attention bench, and of `bench train`'s batch before its lengths were
/// drawn from Flickr8k (`--words 19` now).
pub(super) const WORDS: usize = 19;

/// Flickr8k caption lengths: `(words, captions)` for 739 captions of Flickr8k.token.txt (four
/// stretches of the file: its start and 25%, 50% and 75% into it), counted as the vocabulary
/// counts them (`\w+` tokens of the lower-cased caption). Mean 11.3 words, median 11, 90th
/// percentile 17, longest 31.
const FLICKR8K_LENGTHS: &[(usize, u32)] = &[
    (2, 1),
    (3, 2),
    (4, 7),
    (5, 20),
    (6, 45),
    (7, 59),
    (8, 66),
    (9, 68),
    (10, 69),
    (11, 84),
    (12, 74),
    (13, 54),
    (14, 41),
    (15, 35),
    (16, 31),
    (17, 29),
    (18, 14),
    (19, 15),
    (20, 9),
    (21, 4),
    (22, 3),
    (23, 4),
    (24, 1),
    (25, 2),
    (30, 1),
    (31, 1),
];

/// How long the bench's captions are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lengths {
    /// Every caption this many words: no padding anywhere.
    Fixed(usize),
    /// Drawn from [`FLICKR8K_LENGTHS`]: the batch is padded to its longest caption.
    Flickr8k,
}

/// [`BATCH`] caption lengths in words, longest first (the order `train::batches` lays a batch
/// out in, so the recurrence's live prefixes are the captions still running).
pub(super) fn caption_lengths(rng: &mut ChaCha8Rng, lengths: Lengths) -> Vec<usize> {
    let mut out: Vec<usize> = match lengths {
        Lengths::Fixed(words) => vec![words; BATCH],
        Lengths::Flickr8k => (0..BATCH).map(|_| flickr8k_length(rng)).collect(),
    };
    out.sort_unstable_by(|a, b| b.cmp(a));
    out
}

/// One length drawn from [`FLICKR8K_LENGTHS`] with its sample's frequency.
fn flickr8k_length(rng: &mut ChaCha8Rng) -> usize {
    let total: u32 = FLICKR8K_LENGTHS.iter().map(|&(_, n)| n).sum();
    let mut pick = rng.random_range(0..total);
    for &(words, n) in FLICKR8K_LENGTHS {
        if pick < n {
            return words;
        }
        pick -= n;
    }
    unreachable!("pick < total")
}

/// One caption of random word ids (never a special token) per length.
pub(super) fn random_captions(
    rng: &mut ChaCha8Rng,
    vocab: usize,
    lengths: &[usize],
) -> Vec<Vec<u32>> {
    lengths
        .iter()
        .map(|&words| {
            (0..words)
                .map(|_| rng.random_range(4..vocab as u32))
                .collect()
        })
        .collect()
}

/// What the header says of the batch: "64 captions of 19 words" or "64 captions of Flickr8k's
/// lengths (4–23 words, mean 11.2)".
pub(super) fn describe(lengths: &[usize], kind: Lengths) -> String {
    let (min, max) = (
        lengths.iter().copied().min().unwrap_or(0),
        lengths.iter().copied().max().unwrap_or(0),
    );
    let mean = lengths.iter().sum::<usize>() as f64 / lengths.len().max(1) as f64;
    match kind {
        Lengths::Fixed(words) => format!("{} captions of {words} words", lengths.len()),
        Lengths::Flickr8k => format!(
            "{} captions of Flickr8k's lengths ({min}–{max} words, mean {mean:.1}; padded to \
             the longest)",
            lengths.len()
        ),
    }
}

/// The lengths as the PyTorch scripts' `--lengths` flag takes them: "19,19,...".
pub(super) fn lengths_flag(lengths: &[usize]) -> String {
    lengths
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn flickr8k_lengths_come_from_the_table_longest_first() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let lengths = caption_lengths(&mut rng, Lengths::Flickr8k);
        assert_eq!(lengths.len(), BATCH);
        assert!(lengths.windows(2).all(|w| w[0] >= w[1]), "{lengths:?}");
        let known: Vec<usize> = FLICKR8K_LENGTHS.iter().map(|&(w, _)| w).collect();
        assert!(lengths.iter().all(|l| known.contains(l)), "{lengths:?}");
        // A real batch mixes lengths: padding is the point of drawing them.
        assert!(lengths[0] > lengths[BATCH - 1], "{lengths:?}");
    }

    #[test]
    fn fixed_lengths_and_captions_fit_the_vocabulary() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let lengths = caption_lengths(&mut rng, Lengths::Fixed(7));
        assert_eq!(lengths, vec![7; BATCH]);
        let caps = random_captions(&mut rng, 10, &[3, 1]);
        assert_eq!(caps.iter().map(Vec::len).collect::<Vec<_>>(), [3, 1]);
        assert!(caps.iter().flatten().all(|&w| (4..10).contains(&w)));
        assert_eq!(lengths_flag(&[3, 1]), "3,1");
    }
}
