//! What loading a corpus found wrong: counts with the first few examples, so a user can fix the
//! files without the loader stopping at the first problem (unless `--strict`).

use crate::data::Layout;
use serde::Serialize;
use std::path::PathBuf;

/// How many examples a [`Tally`] keeps.
pub const MAX_EXAMPLES: usize = 5;

/// A count of one kind of problem and its first examples.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// How many problems of this kind were found.
    pub count: usize,
    /// Descriptions of the first [`MAX_EXAMPLES`] of them.
    pub examples: Vec<String>,
}

impl Tally {
    /// Counts one more problem, keeping its description if it is among the first few.
    pub fn add(&mut self, example: impl Into<String>) {
        self.count += 1;
        if self.examples.len() < MAX_EXAMPLES {
            self.examples.push(example.into());
        }
    }

    /// `"3 (first: a, b, c)"`, or `"0"`.
    pub fn summary(&self) -> String {
        if self.examples.is_empty() {
            self.count.to_string()
        } else {
            format!("{} (first: {})", self.count, self.examples.join("; "))
        }
    }
}

/// The outcome of loading a corpus.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadReport {
    /// The layout read.
    pub layout: Layout,
    /// Other layouts whose captions file is also in the directory (not read).
    pub also_present: Vec<Layout>,
    /// The captions file read.
    pub captions_file: PathBuf,
    /// The folder the image paths are relative to.
    pub image_root: PathBuf,
    /// Rows or entries that could not be parsed (wrong field count, empty caption, bad encoding).
    pub bad_rows: Tally,
    /// Token-file lines whose name is not an image file name (`2258277193_586949ec62.jpg.1#0`).
    pub skipped_lines: Tally,
    /// Images named by captions but absent on disk: those images are left out of the corpus.
    pub missing_images: Tally,
    /// Image files in the image folder that no caption names.
    pub images_without_captions: Tally,
    /// Images of the corpus that the dataset's own split does not place, when it has one.
    pub unsplit_images: Tally,
}

impl LoadReport {
    /// The problems that `--strict` refuses, as `(name, tally)` pairs.
    pub fn problems(&self) -> [(&'static str, &Tally); 4] {
        [
            ("bad rows", &self.bad_rows),
            ("skipped lines", &self.skipped_lines),
            ("missing images", &self.missing_images),
            ("images without captions", &self.images_without_captions),
        ]
    }

    /// True when nothing was wrong.
    pub fn is_clean(&self) -> bool {
        self.problems().iter().all(|(_, t)| t.count == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_keeps_the_first_examples() {
        let mut t = Tally::default();
        assert_eq!(t.summary(), "0");
        for i in 0..8 {
            t.add(format!("row {i}"));
        }
        assert_eq!(t.count, 8);
        assert_eq!(t.examples.len(), MAX_EXAMPLES);
        assert!(t.summary().starts_with("8 (first: row 0; row 1"));
    }
}
