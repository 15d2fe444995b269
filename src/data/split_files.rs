//! Flickr8k's own split: `Flickr_8k.{train,dev,test}Images.txt`, one image name per line, beside the
//! captions file. `dev` is the validation set.

use crate::data::parsed::{lines, ParsedCaptions};
use crate::data::SplitName;
use crate::{Error, Result};
use std::path::Path;

/// The split files and the part each one fills.
pub const SPLIT_FILES: [(&str, SplitName); 3] = [
    ("Flickr_8k.trainImages.txt", SplitName::Train),
    ("Flickr_8k.devImages.txt", SplitName::Val),
    ("Flickr_8k.testImages.txt", SplitName::Test),
];

/// Marks the images of `parsed` with the part their split file puts them in. Files that are absent
/// are ignored; names not in the captions are ignored too (they are counted as missing elsewhere
/// when the captions name them). An image listed twice keeps its first part (train, dev, test).
/// Returns whether any split file was present.
pub fn apply(dir: &Path, parsed: &mut ParsedCaptions) -> Result<bool> {
    let mut any = false;
    for (name, part) in SPLIT_FILES {
        let path = dir.join(name);
        if !path.is_file() {
            continue;
        }
        any = true;
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        for (_, line) in lines(&bytes) {
            let file = String::from_utf8_lossy(line);
            if let Some(image) = parsed.get_mut(file.trim()) {
                image.split.get_or_insert(part);
            }
        }
    }
    Ok(any)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_files_mark_images_first_part_wins() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = ParsedCaptions::default();
        for f in ["a.jpg", "b.jpg", "c.jpg", "d.jpg"] {
            p.push(f, "x");
        }
        assert!(!apply(dir.path(), &mut p).unwrap());
        std::fs::write(
            dir.path().join(SPLIT_FILES[0].0),
            "a.jpg\r\nb.jpg\nzzz.jpg\n",
        )
        .unwrap();
        std::fs::write(dir.path().join(SPLIT_FILES[1].0), "c.jpg\nb.jpg\n").unwrap();
        assert!(apply(dir.path(), &mut p).unwrap());
        let parts: Vec<_> = p.images.iter().map(|i| i.split).collect();
        use SplitName::*;
        assert_eq!(parts, [Some(Train), Some(Train), Some(Val), None]);
    }
}
