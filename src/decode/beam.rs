//! Beam search, batched across images: every live hypothesis of every image is one row of the model's
//! state. A hypothesis that emits endofseq is finished; an image is done when it has `beam` finished
//! hypotheses or none alive. When no hypothesis ends before the word limit, the live ones compete as they
//! are, so a caption always comes back.

use super::{Decoded, StepModel, MAX_WORDS};
use crate::text::vocab::{END, START};
use crate::Result;

/// Options of [`beam_search`].
#[derive(Debug, Clone, Copy)]
pub struct BeamOptions {
    /// Hypotheses kept per image (1 gives greedy decoding).
    pub beam: usize,
    /// Length normalisation: finished scores are divided by `length^alpha`, where length counts the words
    /// and the endofseq token. 0 ranks by plain summed log-probability.
    pub length_alpha: f32,
}

impl Default for BeamOptions {
    fn default() -> Self {
        BeamOptions {
            beam: 3,
            length_alpha: 0.0,
        }
    }
}

#[derive(Debug, Clone)]
struct Hypothesis {
    tokens: Vec<u32>,
    log_prob: f32,
}

/// The best caption of each of `images` images under beam search.
pub fn beam_search<M: StepModel>(
    model: &M,
    images: usize,
    opts: BeamOptions,
) -> Result<Vec<Decoded>> {
    Ok(beam_search_all(model, images, opts)?
        .into_iter()
        .map(|mut f| {
            if f.is_empty() {
                Decoded {
                    tokens: Vec::new(),
                    log_prob: f32::NEG_INFINITY,
                    ended: false,
                }
            } else {
                f.swap_remove(0)
            }
        })
        .collect())
}

/// Every finished caption of each of `images` images under beam search (at most `beam`), best
/// first: the first is [`beam_search`]'s, the others are the beam's alternatives.
pub fn beam_search_all<M: StepModel>(
    model: &M,
    images: usize,
    opts: BeamOptions,
) -> Result<Vec<Vec<Decoded>>> {
    let k = opts.beam.max(1);
    let score = |log_prob: f32, len: usize| {
        if opts.length_alpha == 0.0 {
            log_prob
        } else {
            log_prob / (len.max(1) as f32).powf(opts.length_alpha)
        }
    };
    let mut finished: Vec<Vec<(Decoded, f32)>> = vec![Vec::new(); images];
    // Live hypotheses, row by row: (image, hypothesis). Row r of `state` belongs to `live[r]`.
    let mut live: Vec<(usize, Hypothesis)> = (0..images)
        .map(|i| {
            (
                i,
                Hypothesis {
                    tokens: Vec::new(),
                    log_prob: 0.0,
                },
            )
        })
        .collect();
    if images == 0 {
        return Ok(Vec::new());
    }
    let mut state = model.start(images)?;
    let mut feed: Vec<u32> = vec![START; images];

    for _ in 0..MAX_WORDS {
        let (log_probs, next_state) = model.step(&feed, &state)?;
        // Candidates per image: (parent row, token, new log-prob).
        let mut candidates: Vec<Vec<(usize, u32, f32)>> = vec![Vec::new(); images];
        for (row, lp) in log_probs.iter().enumerate() {
            let (image, hyp) = &live[row];
            for (token, value) in top_k(lp, k) {
                candidates[*image].push((row, token, hyp.log_prob + value));
            }
        }
        let mut next_live = Vec::new();
        let mut parents = Vec::new();
        let mut next_feed = Vec::new();
        for (image, mut cands) in candidates.into_iter().enumerate() {
            // Highest log-probability first; ties by parent row then token, so results are deterministic.
            cands.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
            let mut kept = 0;
            for (row, token, log_prob) in cands {
                if kept == k || finished[image].len() >= k {
                    break;
                }
                let parent = &live[row].1;
                if token == END {
                    let d = Decoded {
                        tokens: parent.tokens.clone(),
                        log_prob,
                        ended: true,
                    };
                    let s = score(log_prob, d.tokens.len() + 1);
                    finished[image].push((d, s));
                    continue;
                }
                let mut tokens = parent.tokens.clone();
                tokens.push(token);
                next_live.push((image, Hypothesis { tokens, log_prob }));
                parents.push(row);
                next_feed.push(token);
                kept += 1;
            }
        }
        // Images that already have `k` finished captions stop growing.
        let keep: Vec<usize> = (0..next_live.len())
            .filter(|&i| finished[next_live[i].0].len() < k)
            .collect();
        if keep.is_empty() {
            live.clear();
            break;
        }
        let rows: Vec<usize> = keep.iter().map(|&i| parents[i]).collect();
        feed = keep.iter().map(|&i| next_feed[i]).collect();
        live = keep.into_iter().map(|i| next_live[i].clone()).collect();
        state = model.select(&next_state, &rows)?;
    }
    // Hypotheses cut by the word limit count only where no hypothesis ended by itself.
    for (image, hyp) in live {
        if finished[image].is_empty() {
            let len = hyp.tokens.len();
            let s = score(hyp.log_prob, len);
            finished[image].push((
                Decoded {
                    tokens: hyp.tokens,
                    log_prob: hyp.log_prob,
                    ended: false,
                },
                s,
            ));
        }
    }
    Ok(finished
        .into_iter()
        .map(|mut f| {
            // Stable: equal scores keep the order they finished in.
            f.sort_by(|a, b| b.1.total_cmp(&a.1));
            f.into_iter().map(|(d, _)| d).collect()
        })
        .collect())
}

/// The `k` largest entries of `row` as (index, value), largest first; ties go to the lower index.
fn top_k(row: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    for (i, &v) in row.iter().enumerate() {
        if best.len() == k && v <= best[k - 1].1 {
            continue;
        }
        let pos = best.iter().position(|&(_, b)| v > b).unwrap_or(best.len());
        best.insert(pos, (i as u32, v));
        best.truncate(k);
    }
    best
}
