//! Decoding captions from a trained model: greedy and beam search.
