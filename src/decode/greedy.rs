//! Greedy decoding: image, then startofseq, then each argmax, carrying (h, c); at most [`MAX_WORDS`] words,
//! stopping at endofseq. All images of a batch advance together; finished rows are dropped from the batch.

use super::{Decoded, StepModel, MAX_WORDS};
use crate::text::vocab::{END, START};
use crate::Result;

/// Greedy captions for `images` images whose features `model` was prepared with.
pub fn greedy<M: StepModel>(model: &M, images: usize) -> Result<Vec<Decoded>> {
    let mut out: Vec<Decoded> = (0..images)
        .map(|_| Decoded {
            tokens: Vec::new(),
            log_prob: 0.0,
            ended: false,
        })
        .collect();
    if images == 0 {
        return Ok(out);
    }
    let mut state = model.start(images)?;
    // Rows still decoding, as indices into `out`.
    let mut active: Vec<usize> = (0..images).collect();
    let mut tokens: Vec<u32> = vec![START; images];
    for _ in 0..MAX_WORDS {
        let (log_probs, next_state) = model.step(&tokens, &state)?;
        let mut keep = Vec::with_capacity(active.len());
        let mut next_tokens = Vec::with_capacity(active.len());
        for (row, lp) in log_probs.iter().enumerate() {
            let id = active[row];
            let (best, best_lp) = argmax(lp);
            let caption = &mut out[id];
            caption.log_prob += best_lp;
            if best == END {
                caption.ended = true;
                continue;
            }
            caption.tokens.push(best);
            if caption.tokens.len() < MAX_WORDS {
                keep.push(row);
                next_tokens.push(best);
            }
        }
        if keep.is_empty() {
            break;
        }
        state = if keep.len() == active.len() {
            next_state
        } else {
            model.select(&next_state, &keep)?
        };
        active = keep.iter().map(|&r| active[r]).collect();
        tokens = next_tokens;
    }
    Ok(out)
}

/// Index and value of the largest entry; the first one wins ties, as torch.argmax does.
pub(crate) fn argmax(row: &[f32]) -> (u32, f32) {
    let mut best = 0usize;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    (best as u32, row[best])
}
