//! Reader for the original Flickr8k `Flickr8k.token.txt`: `name.jpg#k<TAB>caption` per line. The real
//! file holds lines such as `2258277193_586949ec62.jpg.1#0` whose name is not an image file: they are
//! skipped and counted.

use crate::data::layout::has_image_extension;
use crate::data::parsed::{lines, ParsedCaptions};
use crate::{Error, Result};
use std::path::Path;

/// What one line of the token file is.
enum Line<'a> {
    Caption(&'a str, &'a str),
    Skipped(String),
    Bad(String),
}

/// Reads the token file; malformed lines are counted, never fatal.
pub fn read(path: &Path) -> Result<ParsedCaptions> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut parsed = ParsedCaptions::default();
    for (n, raw) in lines(&bytes) {
        let Ok(text) = std::str::from_utf8(raw) else {
            parsed.bad_rows.add(format!("line {n}: not valid UTF-8"));
            continue;
        };
        if text.trim().is_empty() {
            continue;
        }
        match parse_line(text) {
            Line::Caption(image, caption) => parsed.push(image, caption),
            Line::Skipped(msg) => parsed.skipped_lines.add(format!("line {n}: {msg}")),
            Line::Bad(msg) => parsed.bad_rows.add(format!("line {n}: {msg}")),
        }
    }
    Ok(parsed)
}

fn parse_line(text: &str) -> Line<'_> {
    let Some((key, caption)) = text.split_once('\t') else {
        return Line::Bad("no tab between name#k and caption".into());
    };
    let Some((image, k)) = key.trim().rsplit_once('#') else {
        return Line::Bad(format!("{key:?} is not name#k"));
    };
    if !has_image_extension(image) {
        return Line::Skipped(format!("{image:?} is not an image file name"));
    }
    if k.is_empty() || !k.bytes().all(|b| b.is_ascii_digit()) {
        return Line::Bad(format!("{key:?}: caption number {k:?} is not a number"));
    }
    let caption = caption.trim();
    if caption.is_empty() {
        return Line::Bad(format!("empty caption for {image}"));
    }
    Line::Caption(image, caption)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_captions_and_counts_bogus_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Flickr8k.token.txt");
        let text = "a.jpg#0\tA dog runs .\r\n\
                    a.jpg#1\tA brown dog\r\n\
                    2258277193_586949ec62.jpg.1#0\tA bogus line\r\n\
                    b.jpg#0\tA cat\r\n\
                    \r\n\
                    no tab here\r\n\
                    c.jpg#x\tbad number\r\n\
                    d.jpg#0\t   \r\n";
        std::fs::write(&path, text).unwrap();
        let p = read(&path).unwrap();
        let files: Vec<_> = p.images.iter().map(|i| i.file.as_str()).collect();
        assert_eq!(files, ["a.jpg", "b.jpg"]);
        assert_eq!(p.images[0].captions, ["A dog runs .", "A brown dog"]);
        assert_eq!(p.skipped_lines.count, 1);
        assert!(p.skipped_lines.examples[0].contains("2258277193_586949ec62.jpg.1"));
        assert_eq!(p.bad_rows.count, 3, "{:?}", p.bad_rows);
    }
}
