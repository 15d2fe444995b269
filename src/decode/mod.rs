//! Decoding captions from a trained model: greedy and beam search, batched across images.
//! Both are written against [`StepModel`], so the search logic is tested on small hand-made models and
//! used unchanged on the real head + LSTM decoder.

pub mod attention_steps;
pub mod beam;
pub mod greedy;
pub mod lstm_steps;
pub mod step_model;

pub use attention_steps::{AttentionState, AttentionSteps};
pub use beam::{beam_search, beam_search_all, BeamOptions};
pub use greedy::greedy;
pub use lstm_steps::LstmSteps;
pub use step_model::StepModel;

/// Captions are cut after this many words, as in the reference (`max_length = 25`).
pub const MAX_WORDS: usize = 25;

/// One decoded caption: word ids (no specials) and the sum of their log-probabilities
/// (end-of-sequence included when the caption ended by itself).
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The word ids, without start and end tokens.
    pub tokens: Vec<u32>,
    /// Sum of the log-probabilities of the tokens (and of end-of-sequence when `ended`).
    pub log_prob: f32,
    /// False when the caption was cut at the word limit instead of ending with endofseq.
    pub ended: bool,
}
#[cfg(test)]
mod tests;
