//! Text: the tokenizer (Python's `re.findall(r"\w+", s.lower())`) and the word vocabulary.

pub mod tokenize;
pub mod vocab;

pub use tokenize::tokenize;
pub use vocab::{VocabSource, Vocabulary, END, PAD, START, UNK};
