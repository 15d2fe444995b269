//! Whether the images of a corpus can be read: the header first (refusing pixel bombs before any
//! pixel is decoded), then a full decode so truncated files are caught too. Runs in parallel.

use crate::data::CaptionCorpus;
use crate::vision::header;
use crate::{Error, Result};
use rayon::prelude::*;
use serde::Serialize;
use std::path::Path;

/// An image that could not be read, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unreadable {
    pub file: String,
    pub error: String,
}

/// Reads the header of the image at `path`, checks the pixel limit, then decodes every pixel.
pub fn check_image(path: &Path) -> Result<()> {
    header::probe(path)?;
    let reader = image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| Error::io(path, e))?;
    reader.decode().map_err(|e| Error::Image {
        path: path.into(),
        msg: format!("cannot decode: {e}"),
    })?;
    Ok(())
}

/// The images of `corpus` that [`check_image`] refuses, in corpus order. Never stops early.
pub fn unreadable_images(corpus: &CaptionCorpus) -> Vec<Unreadable> {
    corpus
        .images
        .par_iter()
        .filter_map(|image| {
            check_image(&image.path).err().map(|e| Unreadable {
                file: image.file.clone(),
                error: error_without_path(&e, &image.path),
            })
        })
        .collect()
}

/// The error message on one line, without its leading `path: ` since the file is named beside it.
fn error_without_path(e: &Error, path: &Path) -> String {
    let msg = e.to_string();
    let prefix = format!("{}: ", path.display());
    let msg = msg.strip_prefix(&prefix).unwrap_or(&msg);
    // Some decoders end their messages with a newline; a report line must stay one line.
    msg.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_jpeg_is_refused_and_whole_one_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let img =
            image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 90]));
        let good = dir.path().join("good.jpg");
        img.save(&good).unwrap();
        check_image(&good).unwrap();
        let bytes = std::fs::read(&good).unwrap();
        let cut = dir.path().join("cut.jpg");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let err = check_image(&cut).unwrap_err().to_string();
        assert!(err.contains("cut.jpg"), "{err}");
    }
}
