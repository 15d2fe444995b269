//! Image headers: dimensions read without decoding pixels, so a decompression bomb is refused before
//! any memory is spent on it.

use crate::{Error, Result};
use std::path::Path;

/// Pillow's `Image.MAX_IMAGE_PIXELS`: larger images are refused, as Pillow's bomb check does.
pub const MAX_IMAGE_PIXELS: u64 = 89_478_485;

/// Width and height of an image, from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageHeader {
    /// Width, pixels.
    pub width: u32,
    /// Height, pixels.
    pub height: u32,
}

/// Reads the header of the image at `path` and checks it against [`MAX_IMAGE_PIXELS`].
pub fn probe(path: &Path) -> Result<ImageHeader> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.len() == 0 {
        return Err(Error::Image {
            path: path.into(),
            msg: "empty file (0 bytes)".into(),
        });
    }
    // The format comes from the content, never from the extension.
    let mut head = [0u8; 64];
    let n = {
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        f.read(&mut head).map_err(|e| Error::io(path, e))?
    };
    let format = image::guess_format(&head[..n]).map_err(|_| Error::Image {
        path: path.into(),
        msg: "not an image (unknown format)".into(),
    })?;
    let mut reader = image::ImageReader::open(path).map_err(|e| Error::io(path, e))?;
    reader.set_format(format);
    let (width, height) = reader.into_dimensions().map_err(|e| Error::Image {
        path: path.into(),
        msg: format!("unreadable image header: {e}"),
    })?;
    check_pixel_limit(path, width, height)?;
    Ok(ImageHeader { width, height })
}

/// Reads the header of an in-memory image (an upload) and checks it against [`MAX_IMAGE_PIXELS`];
/// `name` stands in for the path in errors.
pub fn probe_bytes(bytes: &[u8], name: &str) -> Result<ImageHeader> {
    let path = Path::new(name);
    if bytes.is_empty() {
        return Err(Error::Image {
            path: path.into(),
            msg: "empty file (0 bytes)".into(),
        });
    }
    let format = image::guess_format(bytes).map_err(|_| Error::Image {
        path: path.into(),
        msg: "not an image (unknown format)".into(),
    })?;
    let reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let (width, height) = reader.into_dimensions().map_err(|e| Error::Image {
        path: path.into(),
        msg: format!("unreadable image header: {e}"),
    })?;
    check_pixel_limit(path, width, height)?;
    Ok(ImageHeader { width, height })
}

/// Refuses images over [`MAX_IMAGE_PIXELS`].
pub fn check_pixel_limit(path: &Path, width: u32, height: u32) -> Result<()> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels > MAX_IMAGE_PIXELS {
        return Err(Error::PixelLimit {
            path: path.into(),
            width,
            height,
            pixels,
            limit: MAX_IMAGE_PIXELS,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_non_image_files_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.jpg");
        std::fs::write(&empty, b"").unwrap();
        let err = probe(&empty).unwrap_err().to_string();
        assert!(
            err.contains("empty.jpg") && err.contains("0 bytes"),
            "{err}"
        );
        let text = dir.path().join("notes.jpg");
        std::fs::write(&text, b"this is not an image at all").unwrap();
        let err = probe(&text).unwrap_err().to_string();
        assert!(
            err.contains("notes.jpg") && err.contains("not an image"),
            "{err}"
        );
    }

    #[test]
    fn pixel_bomb_is_refused_from_the_header() {
        // A PNG header claiming 10000x10000 pixels, with no pixel data at all.
        let mut png = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(b"IHDR");
        ihdr.extend_from_slice(&10_000u32.to_be_bytes());
        ihdr.extend_from_slice(&10_000u32.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        png.extend_from_slice(&13u32.to_be_bytes());
        png.extend_from_slice(&ihdr);
        png.extend_from_slice(&crc32(&ihdr).to_be_bytes());
        // An empty IDAT chunk: the decoder reads the header up to the first data chunk.
        png.extend_from_slice(&0u32.to_be_bytes());
        png.extend_from_slice(b"IDAT");
        png.extend_from_slice(&crc32(b"IDAT").to_be_bytes());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bomb.png");
        std::fs::write(&path, &png).unwrap();
        match probe(&path) {
            Err(Error::PixelLimit { pixels, .. }) => assert_eq!(pixels, 100_000_000),
            other => panic!("expected PixelLimit, got {other:?}"),
        }
        let small = dir.path().join("ok.png");
        image::RgbImage::new(3, 2).save(&small).unwrap();
        assert_eq!(
            probe(&small).unwrap(),
            ImageHeader {
                width: 3,
                height: 2
            }
        );
    }

    #[test]
    fn probe_bytes_reads_uploads_and_refuses_bombs() {
        let mut png = Vec::new();
        image::RgbImage::new(5, 4)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        assert_eq!(
            probe_bytes(&png, "upload").unwrap(),
            ImageHeader {
                width: 5,
                height: 4
            }
        );
        let err = probe_bytes(b"hello", "upload").unwrap_err().to_string();
        assert!(
            err.contains("upload") && err.contains("not an image"),
            "{err}"
        );
        assert!(probe_bytes(b"", "upload")
            .unwrap_err()
            .to_string()
            .contains("0 bytes"));
        // Patch the IHDR to claim 20000x20000 pixels, with a matching CRC.
        png[16..20].copy_from_slice(&20_000u32.to_be_bytes());
        png[20..24].copy_from_slice(&20_000u32.to_be_bytes());
        let crc = crc32(&png[12..29]);
        png[29..33].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            probe_bytes(&png, "upload"),
            Err(Error::PixelLimit { width: 20_000, .. })
        ));
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
}
