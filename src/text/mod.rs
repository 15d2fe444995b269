//! Text: tokenizer and vocabulary.
