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

/// Flickr8k caption lengths, a line `words captions` each (`#` lines are comments): 739 captions
/// sampled from Flickr8k.token.txt, counted as the vocabulary counts them.
const FLICKR8K_LENGTHS: &str = include_str!("../../scripts/bench/flickr8k_caption_lengths.txt");

/// [`FLICKR8K_LENGTHS`] as `(words, captions)` pairs.
fn flickr8k_lengths() -> Vec<(usize, u32)> {
    FLICKR8K_LENGTHS
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut f = l.split_whitespace().map(str::parse::<u32>);
            match (f.next(), f.next()) {
                (Some(Ok(words)), Some(Ok(n))) => (words as usize, n),
                // The file is compiled in; `lengths_table_parses` checks it.
                _ => panic!("flickr8k_caption_lengths.txt: bad line {l:?}"),
            }
        })
        .collect()
}

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
        Lengths::Flickr8k => {
            let table = flickr8k_lengths();
            (0..BATCH).map(|_| draw_length(rng, &table)).collect()
        }
    };
    out.sort_unstable_by(|a, b| b.cmp(a));
    out
}

/// One length drawn from `table` with its sample's frequency.
fn draw_length(rng: &mut ChaCha8Rng, table: &[(usize, u32)]) -> usize {
    let total: u32 = table.iter().map(|&(_, n)| n).sum();
    let mut pick = rng.random_range(0..total);
    for &(words, n) in table {
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
/// lengths (3–25 words, mean 11.8; 819 scored tokens, 1664 padded positions)". Every caption
/// scores its words and endofseq; the seed's output layer and loss run on B × (longest + 1).
pub(super) fn describe(lengths: &[usize], kind: Lengths) -> String {
    let (min, max) = (
        lengths.iter().copied().min().unwrap_or(0),
        lengths.iter().copied().max().unwrap_or(0),
    );
    let words: usize = lengths.iter().sum();
    let mean = words as f64 / lengths.len().max(1) as f64;
    match kind {
        Lengths::Fixed(words) => format!("{} captions of {words} words", lengths.len()),
        Lengths::Flickr8k => format!(
            "{} captions of Flickr8k's lengths ({min}–{max} words, mean {mean:.1}; {} scored \
             tokens, {} padded positions)",
            lengths.len(),
            words + lengths.len(),
            lengths.len() * (max + 1)
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
        let known: Vec<usize> = flickr8k_lengths().iter().map(|&(w, _)| w).collect();
        assert!(lengths.iter().all(|l| known.contains(l)), "{lengths:?}");
        // A real batch mixes lengths: padding is the point of drawing them.
        assert!(lengths[0] > lengths[BATCH - 1], "{lengths:?}");
    }

    #[test]
    fn lengths_table_parses() {
        let table = flickr8k_lengths();
        assert_eq!(table.iter().map(|&(_, n)| n).sum::<u32>(), 739);
        assert_eq!(table.first(), Some(&(2, 1)));
        assert_eq!(table.last(), Some(&(31, 1)));
        assert!(table.windows(2).all(|w| w[0].0 < w[1].0), "{table:?}");
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
        assert_eq!(
            describe(&[3, 1], Lengths::Flickr8k),
            "2 captions of Flickr8k's lengths (1–3 words, mean 2.0; 6 scored tokens, 8 padded \
             positions)"
        );
    }
}
