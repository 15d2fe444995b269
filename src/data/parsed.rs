//! What a layout reader hands to the corpus builder: captions grouped by image name in order of first
//! appearance, plus the rows it could not use.

use crate::data::{SplitName, Tally};
use std::collections::HashMap;

/// One image as named by the captions file.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedImage {
    /// The image's name in the captions file.
    pub file: String,
    /// Its captions, in file order.
    pub captions: Vec<String>,
    /// The part the dataset's own split puts it in, if any.
    pub split: Option<SplitName>,
}

/// The content of a captions file.
#[derive(Debug, Default)]
pub struct ParsedCaptions {
    /// The images named, in order of first appearance.
    pub images: Vec<ParsedImage>,
    /// Rows or entries that could not be parsed.
    pub bad_rows: Tally,
    /// Token-file lines whose name is not an image file name.
    pub skipped_lines: Tally,
    index: HashMap<String, usize>,
}

impl ParsedCaptions {
    /// The entry for `file`, created at the end if it is new (so images keep file order).
    pub fn image_mut(&mut self, file: &str) -> &mut ParsedImage {
        let next = self.images.len();
        let i = *self.index.entry(file.to_owned()).or_insert(next);
        if i == next {
            self.images.push(ParsedImage {
                file: file.to_owned(),
                captions: Vec::new(),
                split: None,
            });
        }
        &mut self.images[i]
    }

    /// Adds a caption to `file`.
    pub fn push(&mut self, file: &str, caption: &str) {
        self.image_mut(file).captions.push(caption.to_owned());
    }

    /// The entry for `file`, if the captions name it.
    pub fn get_mut(&mut self, file: &str) -> Option<&mut ParsedImage> {
        let i = *self.index.get(file)?;
        self.images.get_mut(i)
    }
}

/// Strips a UTF-8 byte-order mark, which some editors put at the start of text files.
pub fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes)
}

/// Splits text bytes into lines, accepting `\n` and `\r\n` endings; yields 1-based line numbers.
pub fn lines(bytes: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    strip_bom(bytes)
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .enumerate()
        .map(|(i, l)| (i + 1, l))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_by_image_in_first_appearance_order() {
        let mut p = ParsedCaptions::default();
        p.push("b.jpg", "one");
        p.push("a.jpg", "two");
        p.push("b.jpg", "three");
        let files: Vec<_> = p.images.iter().map(|i| i.file.as_str()).collect();
        assert_eq!(files, ["b.jpg", "a.jpg"]);
        assert_eq!(p.images[0].captions, ["one", "three"]);
    }

    #[test]
    fn lines_handle_bom_and_crlf() {
        let got: Vec<_> = lines(b"\xef\xbb\xbfa\r\nb\n").collect();
        assert_eq!(got, [(1, &b"a"[..]), (2, &b"b"[..]), (3, &b""[..])]);
    }
}
