//! The interface a decoder offers to the search algorithms: feed the image, then one token per row at a
//! time, carrying the recurrent state. Nothing is re-fed: each step costs one LSTM step per row.

use crate::Result;

/// A model that can be decoded one token at a time, with one row per hypothesis.
pub trait StepModel {
    /// The recurrent state of all rows.
    type State;

    /// Feeds the images (one row each) and returns the state after the image step.
    fn start(&self, images: usize) -> Result<Self::State>;

    /// Feeds `tokens[r]` to row `r`; returns the log-probabilities of the next token for each row
    /// (`rows × vocabulary`) and the new state.
    fn step(&self, tokens: &[u32], state: &Self::State) -> Result<(Vec<Vec<f32>>, Self::State)>;

    /// The state made of rows `rows` of `state`, in that order (rows may repeat).
    fn select(&self, state: &Self::State, rows: &[usize]) -> Result<Self::State>;
}

/// Turns logits into log-probabilities, in place (numerically stable log-softmax).
pub fn log_softmax_in_place(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = row.iter().map(|v| (v - max).exp()).sum();
    let log_z = max + sum.ln();
    for v in row.iter_mut() {
        *v -= log_z;
    }
}
