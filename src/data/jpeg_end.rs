//! Detects JPEG files cut short. The `image` crate (zune-jpeg) decodes a truncated JPEG without an
//! error, filling the missing rows; Pillow refuses it ("image file is truncated"). To report the same
//! files as broken we walk the marker segments and require the end-of-image marker (`FF D9`).

/// `Err` when the JPEG stream in `bytes` ends before its end-of-image marker.
pub fn check_jpeg_complete(bytes: &[u8]) -> Result<(), String> {
    const TRUNCATED: &str = "truncated JPEG (no end-of-image marker)";
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return Err("not a JPEG stream".into());
    }
    let mut i = 2;
    while i + 1 < bytes.len() {
        if bytes[i] != 0xFF {
            // Entropy-coded data: only a marker can end it.
            i += 1;
            continue;
        }
        match bytes[i + 1] {
            0xD9 => return Ok(()),
            // Fill byte, stuffed zero, restart markers, TEM: no length follows.
            0xFF => i += 1,
            0x00 | 0x01 | 0xD0..=0xD7 => i += 2,
            _ => {
                // A segment with a length (APPn, DQT, DHT, SOF, SOS, ...): skip it whole, so an
                // EXIF thumbnail's own FF D9 inside APP1 is not mistaken for ours.
                let Some(len) = bytes.get(i + 2..i + 4) else {
                    return Err(TRUNCATED.into());
                };
                let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
                if len < 2 {
                    return Err(format!("corrupt JPEG segment length {len} at byte {i}"));
                }
                i += 2 + len;
            }
        }
    }
    Err(TRUNCATED.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_jpeg_passes_every_cut_fails() {
        let img =
            image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8 * 6, y as u8 * 8, 7]));
        let mut jpeg = Vec::new();
        img.write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
        check_jpeg_complete(&jpeg).unwrap();
        for cut in [1, 2, 10, jpeg.len() / 2, jpeg.len() - 3] {
            assert!(
                check_jpeg_complete(&jpeg[..jpeg.len() - cut]).is_err(),
                "cut {cut}"
            );
        }
        // Bytes after the end marker (some cameras append data) are accepted, as Pillow does.
        let mut trailing = jpeg.clone();
        trailing.extend_from_slice(b"trailer");
        check_jpeg_complete(&trailing).unwrap();
    }

    #[test]
    fn thumbnail_end_marker_inside_app1_is_skipped() {
        // SOI, APP1 holding a fake thumbnail with its own FF D9, then nothing: truncated.
        let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x06, 0xFF, 0xD8, 0xFF, 0xD9];
        assert!(check_jpeg_complete(&bytes).is_err());
        bytes.extend_from_slice(&[0xFF, 0xD9]);
        check_jpeg_complete(&bytes).unwrap();
    }
}
