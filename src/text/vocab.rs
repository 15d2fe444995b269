//! The word vocabulary: four special tokens, then every word seen at least `min_freq` times, in
//! order of first appearance (the tutorial's order, so ids match a Python run on the same captions).
//! Stored as readable JSON: `{"min_freq": 5, "itos": ["<pad>", "<startofseq>", ...]}`.

use crate::text::tokenize;
use crate::{fsutil, Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// Padding id (batches are padded with it; the loss ignores it).
pub const PAD: u32 = 0;
/// Start-of-sequence id, fed to the decoder first.
pub const START: u32 = 1;
/// End-of-sequence id: the decoder stops when it emits it.
pub const END: u32 = 2;
/// Id of every word not in the vocabulary.
pub const UNK: u32 = 3;

/// The special tokens, at ids 0..4.
pub const SPECIALS: [&str; 4] = ["<pad>", "<startofseq>", "<endofseq>", "<unk>"];

/// Which captions the vocabulary is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VocabSource {
    /// Only the captions of the training images, so validation words stay unknown as they would be
    /// for new images.
    Train,
    /// All captions, as the tutorial does.
    All,
}

impl VocabSource {
    /// The lower-case name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            VocabSource::Train => "train",
            VocabSource::All => "all",
        }
    }
}

/// Words ↔ ids. Serialises as `{"min_freq": .., "itos": [..]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "VocabFile", into = "VocabFile")]
pub struct Vocabulary {
    min_freq: usize,
    itos: Vec<String>,
    stoi: HashMap<String, u32>,
}

/// The on-disk form of a [`Vocabulary`].
#[derive(Serialize, Deserialize)]
struct VocabFile {
    min_freq: usize,
    itos: Vec<String>,
}

impl Vocabulary {
    /// Builds the vocabulary from captions in corpus order: words with at least `min_freq`
    /// occurrences, ordered by their first appearance.
    pub fn build<'a>(captions: impl IntoIterator<Item = &'a str>, min_freq: usize) -> Self {
        let mut counts: HashMap<String, usize> = HashMap::new();
        let mut order: Vec<String> = Vec::new();
        for caption in captions {
            for word in tokenize(caption) {
                let count = counts.entry(word).or_insert_with_key(|w| {
                    order.push(w.clone());
                    0
                });
                *count += 1;
            }
        }
        let itos = SPECIALS
            .iter()
            .map(|s| s.to_string())
            .chain(order.into_iter().filter(|w| counts[w] >= min_freq))
            .collect();
        // Words are unique by construction and never clash with the specials ('<' is not a word
        // character), so no check is needed here.
        Self::indexed(min_freq, itos)
    }

    fn indexed(min_freq: usize, itos: Vec<String>) -> Self {
        let stoi = itos
            .iter()
            .enumerate()
            .map(|(id, w)| (w.clone(), id as u32))
            .collect();
        Self {
            min_freq,
            itos,
            stoi,
        }
    }

    fn from_itos(min_freq: usize, itos: Vec<String>) -> std::result::Result<Self, String> {
        if itos.len() < SPECIALS.len() || itos[..SPECIALS.len()] != SPECIALS {
            return Err(format!("the first tokens must be {SPECIALS:?}"));
        }
        if itos.len() > u32::MAX as usize {
            return Err("too many tokens".into());
        }
        let vocab = Self::indexed(min_freq, itos);
        if vocab.stoi.len() != vocab.itos.len() {
            let mut seen = std::collections::HashSet::new();
            let dup = vocab.itos.iter().find(|w| !seen.insert(*w));
            return Err(format!("token {:?} appears twice", dup.map_or("", |w| w)));
        }
        Ok(vocab)
    }

    /// Number of tokens, specials included.
    pub fn len(&self) -> usize {
        self.itos.len()
    }

    /// Always false: the four specials are always there.
    pub fn is_empty(&self) -> bool {
        self.itos.is_empty()
    }

    /// The minimum count a word needed to be included.
    pub fn min_freq(&self) -> usize {
        self.min_freq
    }

    /// All tokens, by id.
    pub fn itos(&self) -> &[String] {
        &self.itos
    }

    /// The id of `word`, if it is in the vocabulary.
    pub fn id(&self, word: &str) -> Option<u32> {
        self.stoi.get(word).copied()
    }

    /// The token with id `id`.
    pub fn word(&self, id: u32) -> Option<&str> {
        self.itos.get(id as usize).map(String::as_str)
    }

    /// Tokenizes `text` and maps each word to its id ([`UNK`] when unknown). No specials are added.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        tokenize(text)
            .iter()
            .map(|w| self.id(w).unwrap_or(UNK))
            .collect()
    }

    /// Joins the words of `ids` with spaces, skipping [`PAD`] and [`START`] and stopping at [`END`].
    /// Ids outside the vocabulary read as `<unk>`.
    pub fn decode(&self, ids: &[u32]) -> String {
        ids.iter()
            .take_while(|&&id| id != END)
            .filter(|&&id| id != PAD && id != START)
            .map(|&id| self.word(id).unwrap_or(SPECIALS[UNK as usize]))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Writes the vocabulary as JSON, atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        fsutil::write_json_atomic(path, self)
    }

    /// Reads a vocabulary written by [`Vocabulary::save`], checking the specials and uniqueness.
    pub fn load(path: &Path) -> Result<Self> {
        let file: VocabFile = fsutil::read_json(path)?;
        Self::from_itos(file.min_freq, file.itos).map_err(|msg| Error::format(path, msg))
    }
}

impl TryFrom<VocabFile> for Vocabulary {
    type Error = String;
    fn try_from(file: VocabFile) -> std::result::Result<Self, String> {
        Self::from_itos(file.min_freq, file.itos)
    }
}

impl From<Vocabulary> for VocabFile {
    fn from(v: Vocabulary) -> Self {
        VocabFile {
            min_freq: v.min_freq,
            itos: v.itos,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPTIONS: [&str; 3] = ["A dog runs.", "The dog sleeps; a cat runs", "a bird"];

    #[test]
    fn words_follow_first_appearance_and_min_freq() {
        let v = Vocabulary::build(CAPTIONS, 1);
        let words: Vec<_> = v.itos()[4..].iter().map(String::as_str).collect();
        assert_eq!(words, ["a", "dog", "runs", "the", "sleeps", "cat", "bird"]);
        let v2 = Vocabulary::build(CAPTIONS, 2);
        // "a" x3, "dog" x2, "runs" x2: order of first appearance, not of frequency.
        assert_eq!(&v2.itos()[4..], ["a", "dog", "runs"]);
        assert_eq!(Vocabulary::build(CAPTIONS, 4).len(), 4);
    }

    #[test]
    fn encode_and_decode() {
        let v = Vocabulary::build(CAPTIONS, 2);
        assert_eq!(v.encode("A zebra runs"), [4, UNK, 6]);
        assert_eq!(v.decode(&[START, 4, 5, UNK, END, 6, PAD]), "a dog <unk>");
        assert_eq!(v.decode(&[PAD, 6, 999]), "runs <unk>");
        assert_eq!(v.decode(&[END, 4]), "");
    }

    #[test]
    fn json_round_trip_and_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vocab.json");
        let v = Vocabulary::build(CAPTIONS, 1);
        v.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"min_freq\": 1") && text.contains("\"<startofseq>\""));
        assert_eq!(Vocabulary::load(&path).unwrap(), v);

        std::fs::write(&path, r#"{"min_freq":1,"itos":["a","b"]}"#).unwrap();
        let err = Vocabulary::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("vocab.json") && err.contains("first tokens"),
            "{err}"
        );
        let dup = r#"{"min_freq":1,"itos":["<pad>","<startofseq>","<endofseq>","<unk>","x","x"]}"#;
        std::fs::write(&path, dup).unwrap();
        assert!(Vocabulary::load(&path)
            .unwrap_err()
            .to_string()
            .contains("twice"));
    }
}
