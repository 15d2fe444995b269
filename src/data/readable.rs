//! Whether the images of a corpus can be read: the header first (refusing pixel bombs before any
//! pixel is decoded), then a full decode so truncated files are caught too. Runs in parallel.

use crate::data::jpeg_end::check_jpeg_complete;
use crate::data::CaptionCorpus;
use crate::vision::header;
use crate::{Error, Result};
use rayon::prelude::*;
use serde::Serialize;
use std::path::Path;

/// A PNG's final chunk: length 0, type `IEND`, CRC.
const PNG_IEND: [u8; 12] = [0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82];

/// An image that could not be read, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unreadable {
    /// The image's name in the corpus.
    pub file: String,
    /// Why it could not be read, on one line and without the path.
    pub error: String,
}

/// Reads the header of the image at `path`, checks the pixel limit, then decodes every pixel; a
/// JPEG must also reach its end marker (see [`check_jpeg_complete`]).
pub fn check_image(path: &Path) -> Result<()> {
    header::probe(path)?;
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |msg: String| Error::Image {
        path: path.into(),
        msg,
    };
    let format = image::guess_format(&bytes).map_err(|e| bad(format!("unknown format: {e}")))?;
    let decoded = image::load_from_memory_with_format(&bytes, format);
    if let (Err(e), image::ImageFormat::Png) = (&decoded, format) {
        // Pillow reads a PNG whose IEND chunk is missing (all pixel data present); the png crate
        // wants IEND. Accept it when adding IEND is all it takes, so both report the same files.
        let mut ended = bytes.clone();
        ended.extend_from_slice(&PNG_IEND);
        image::load_from_memory_with_format(&ended, format)
            .map_err(|_| bad(format!("cannot decode: {e}")))?;
    } else {
        decoded.map_err(|e| bad(format!("cannot decode: {e}")))?;
    }
    if format == image::ImageFormat::Jpeg {
        check_jpeg_complete(&bytes).map_err(bad)?;
    }
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
        // Cut inside the pixel data: the header reads fine, zune-jpeg would decode it anyway.
        std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
        let err = check_image(&cut).unwrap_err().to_string();
        assert!(
            err.contains("cut.jpg") && err.contains("truncated"),
            "{err}"
        );

        // A PNG without its IEND chunk still reads (as in Pillow); one cut in its data does not.
        let png = dir.path().join("a.png");
        img.save(&png).unwrap();
        let bytes = std::fs::read(&png).unwrap();
        std::fs::write(&png, &bytes[..bytes.len() - PNG_IEND.len()]).unwrap();
        check_image(&png).unwrap();
        std::fs::write(&png, &bytes[..bytes.len() - 40]).unwrap();
        assert!(check_image(&png).is_err());
    }
}
