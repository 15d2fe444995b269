//! Reader for Kaggle's Flickr8k `captions.txt`: CSV with the header `image,caption`, one caption per
//! row, captions with commas quoted.

use crate::data::layout::has_image_extension;
use crate::data::parsed::{strip_bom, ParsedCaptions};
use crate::{Error, Result};
use std::path::Path;

/// Reads `captions.txt`. A missing or wrong header is an error; a bad row is counted and skipped.
pub fn read(path: &Path) -> Result<ParsedCaptions> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = strip_bom(&bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text);
    let mut records = reader.byte_records();
    let header: Vec<String> = match records.next() {
        Some(Ok(h)) => h
            .iter()
            .map(|f| String::from_utf8_lossy(f).trim().to_owned())
            .collect(),
        Some(Err(e)) => return Err(Error::format(path, format!("unreadable header: {e}"))),
        None => {
            return Err(Error::format(
                path,
                "empty file: expected the header image,caption",
            ))
        }
    };
    if header != ["image", "caption"] {
        return Err(Error::format(
            path,
            format!(
                "expected the header image,caption, found {}",
                header.join(",")
            ),
        ));
    }
    let mut parsed = ParsedCaptions::default();
    let mut lines = LineCounter::new(text);
    for record in records {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                parsed.bad_rows.add(format!("{e}"));
                continue;
            }
        };
        // csv's own line count lags by one on CRLF files, so count newlines up to the record.
        let offset = record.position().map_or(0, |p| p.byte() as usize);
        let line = lines.line_at(offset);
        match parse_row(&record) {
            Ok((image, caption)) => parsed.push(&image, &caption),
            Err(msg) => parsed.bad_rows.add(format!("line {line}: {msg}")),
        }
    }
    Ok(parsed)
}

/// 1-based line numbers of increasing byte offsets, counted incrementally.
struct LineCounter<'a> {
    text: &'a [u8],
    offset: usize,
    line: usize,
}

impl<'a> LineCounter<'a> {
    fn new(text: &'a [u8]) -> Self {
        Self {
            text,
            offset: 0,
            line: 1,
        }
    }

    fn line_at(&mut self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        if end > self.offset {
            self.line += self.text[self.offset..end]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            self.offset = end;
        }
        self.line
    }
}

fn parse_row(record: &csv::ByteRecord) -> std::result::Result<(String, String), String> {
    if record.len() != 2 {
        return Err(format!("expected 2 fields, found {}", record.len()));
    }
    let field = |i: usize| {
        std::str::from_utf8(&record[i])
            .map(|s| s.trim().to_owned())
            .map_err(|_| "not valid UTF-8".to_string())
    };
    let (image, caption) = (field(0)?, field(1)?);
    if !has_image_extension(&image) {
        return Err(format!("{image:?} is not an image file name"));
    }
    if caption.is_empty() {
        return Err(format!("empty caption for {image}"));
    }
    Ok((image, caption))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_quoted_commas_bom_crlf_and_counts_bad_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("captions.txt");
        let text = "\u{feff}image,caption\n\
                    a.jpg,\"A dog, brown, runs .\"\r\n\
                    b.jpg,A cat\n\
                    a.jpg,A dog\n\
                    c.jpg,too,many,fields\r\n\
                    d.jpg,\n\
                    notes.txt,hello\r\n";
        std::fs::write(&path, text).unwrap();
        let p = read(&path).unwrap();
        assert_eq!(p.images.len(), 2);
        assert_eq!(p.images[0].captions, ["A dog, brown, runs .", "A dog"]);
        assert_eq!(p.bad_rows.count, 3);
        assert!(
            p.bad_rows.examples[0].starts_with("line 5:"),
            "{:?}",
            p.bad_rows
        );
        assert!(
            p.bad_rows.examples[2].starts_with("line 7:"),
            "{:?}",
            p.bad_rows
        );
    }

    #[test]
    fn wrong_header_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("captions.txt");
        std::fs::write(&path, "file,text\na.jpg,x\n").unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(
            err.contains("captions.txt") && err.contains("file,text"),
            "{err}"
        );
        std::fs::write(&path, "").unwrap();
        assert!(read(&path).is_err());
    }
}
