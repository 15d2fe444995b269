//! Image bytes to RGB8 exactly as `PIL.Image.open(path).convert("RGB")` does, with the pixel-bomb
//! limit checked from the header before any pixel is decoded.
//!
//! EXIF orientation is NOT applied, as in PIL without `ImageOps.exif_transpose`: a photo whose EXIF
//! says "rotate 90°" is preprocessed as stored, exactly as the PyTorch tutorial saw it.
//!
//! Pillow's conversions copied here (checked against Pillow 13 by the fixtures in
//! `tests/fixtures/preprocess`): alpha is dropped, never composited; 16-bit grayscale (mode `I;16`) is
//! clipped at 255; 16-bit RGB(A) and 16-bit gray+alpha keep the high byte; CMYK JPEGs are read as
//! Adobe-inverted and turned into RGB with Pillow's `cmyk2rgb`; GIFs give their first frame through
//! the palette. JPEGs are decoded by libjpeg-turbo's own code (see `decode_jpeg`); truncated JPEGs are
//! errors, as in Pillow without `LOAD_TRUNCATED_IMAGES`.

use crate::vision::header::check_pixel_limit;
use crate::{Error, Result};
use image::{DynamicImage, ImageFormat, RgbImage};
use std::io::Cursor;
use std::path::Path;

/// Reads and decodes the image at `path` (format from its content, not its extension).
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_rgb(&bytes, path)
}

/// Decodes an image held in memory; `path_for_errors` names it in every error.
pub fn decode_rgb(bytes: &[u8], path_for_errors: &Path) -> Result<RgbImage> {
    let path = path_for_errors;
    if bytes.is_empty() {
        return Err(image_error(path, "empty file (0 bytes)"));
    }
    let format = image::guess_format(bytes)
        .map_err(|_| image_error(path, "not an image (unknown format)"))?;
    let (width, height) = image::ImageReader::with_format(Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(|e| image_error(path, format!("unreadable image header: {e}")))?;
    check_pixel_limit(path, width, height)?;
    if width == 0 || height == 0 {
        return Err(image_error(
            path,
            format!("image has no pixels ({width}x{height})"),
        ));
    }
    let rgb = match format {
        ImageFormat::Jpeg => decode_jpeg(bytes, path)?,
        ImageFormat::Gif => decode_gif_first_frame(bytes, path)?,
        _ => {
            let img = image::load_from_memory_with_format(bytes, format)
                .map_err(|e| image_error(path, format!("cannot decode {format:?} image: {e}")))?;
            let gray16_is_i16 = format == ImageFormat::Png && png_color_type(bytes) == Some(0);
            to_rgb_like_pillow(img, gray16_is_i16)
        }
    };
    Ok(rgb)
}

fn image_error(path: &Path, msg: impl Into<String>) -> Error {
    Error::Image {
        path: path.into(),
        msg: msg.into(),
    }
}

/// The colour type byte of a PNG's IHDR chunk (0 = gray, 2 = RGB, 3 = palette, 4 = gray+alpha, 6 = RGBA).
fn png_color_type(bytes: &[u8]) -> Option<u8> {
    (bytes.get(12..16)? == b"IHDR").then(|| bytes.get(25).copied())?
}

/// Pillow's `convert("RGB")` for what the `image` crate decodes. `gray16_is_i16`: a 16-bit gray+alpha
/// image that is really 16-bit gray with a tRNS chunk, which Pillow opens as `I;16` (clipped) rather
/// than as gray+alpha (high byte).
fn to_rgb_like_pillow(img: DynamicImage, gray16_is_i16: bool) -> RgbImage {
    let (w, h) = (img.width(), img.height());
    let gray = |g: Vec<u8>| {
        RgbImage::from_fn(w, h, |x, y| {
            let v = g[(y * w + x) as usize];
            image::Rgb([v, v, v])
        })
    };
    match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        DynamicImage::ImageRgba8(rgba) => rgb_from_channels(w, h, rgba.as_raw(), 4, |v| v),
        DynamicImage::ImageLuma8(l) => gray(l.into_raw()),
        DynamicImage::ImageLumaA8(la) => gray(la.as_raw().chunks_exact(2).map(|p| p[0]).collect()),
        // Pillow opens 16-bit gray as mode I;16, whose conversion to RGB clips at 255.
        DynamicImage::ImageLuma16(l) => {
            gray(l.as_raw().iter().map(|&v| v.min(255) as u8).collect())
        }
        DynamicImage::ImageLumaA16(la) => gray(
            la.as_raw()
                .chunks_exact(2)
                .map(|p| {
                    if gray16_is_i16 {
                        p[0].min(255) as u8
                    } else {
                        (p[0] >> 8) as u8
                    }
                })
                .collect(),
        ),
        // Pillow unpacks 16-bit RGB(A) with the "RGB;16B" raw modes: the high byte of each sample.
        DynamicImage::ImageRgb16(rgb) => {
            rgb_from_channels(w, h, rgb.as_raw(), 3, |v| (v >> 8) as u8)
        }
        DynamicImage::ImageRgba16(rgba) => {
            rgb_from_channels(w, h, rgba.as_raw(), 4, |v| (v >> 8) as u8)
        }
        // Float images (TIFF, HDR) have no Pillow RGB8 counterpart worth copying: clamp and round.
        other => other.to_rgb8(),
    }
}

/// RGB8 from the first three of `stride` interleaved channels, each mapped by `to_u8`.
fn rgb_from_channels<T: Copy>(
    w: u32,
    h: u32,
    samples: &[T],
    stride: usize,
    to_u8: impl Fn(T) -> u8,
) -> RgbImage {
    let mut out = Vec::with_capacity(samples.len() / stride * 3);
    for px in samples.chunks_exact(stride) {
        out.extend_from_slice(&[to_u8(px[0]), to_u8(px[1]), to_u8(px[2])]);
    }
    RgbImage::from_raw(w, h, out).unwrap_or_else(|| RgbImage::new(w, h))
}

/// JPEG through libjpeg-turbo's decoder (as built into MozJPEG, linked statically): Pillow decodes
/// with libjpeg-turbo, and pure-Rust decoders (zune-jpeg, jpeg-decoder) upsample chroma and round
/// the IDCT differently, up to 3 levels per pixel, which breaks the parity limits. Decoding settings
/// are libjpeg's defaults, which Pillow keeps: integer "slow" IDCT, fancy upsampling.
fn decode_jpeg(bytes: &[u8], path: &Path) -> Result<RgbImage> {
    check_jpeg_complete(bytes, path)?;
    // libjpeg reports fatal errors by unwinding (mozjpeg's error manager); nothing is shared
    // across the boundary but the input slice, so catching it is sound.
    let decoded = std::panic::catch_unwind(|| -> std::io::Result<(u32, u32, Vec<u8>)> {
        use mozjpeg::ColorSpace as Cs;
        let d = mozjpeg::Decompress::new_mem(bytes)?;
        let source = d.color_space();
        let mut started = match source {
            Cs::JCS_CMYK | Cs::JCS_YCCK => d.to_colorspace(Cs::JCS_CMYK)?,
            Cs::JCS_GRAYSCALE => d.grayscale()?,
            _ => d.rgb()?,
        };
        let (w, h) = (started.width() as u32, started.height() as u32);
        let pixels: Vec<u8> = started.read_scanlines()?;
        started.finish()?;
        let rgb = match source {
            Cs::JCS_CMYK | Cs::JCS_YCCK => pixels
                .chunks_exact(4)
                .flat_map(cmyk_inverted_to_rgb)
                .collect(),
            Cs::JCS_GRAYSCALE => pixels.iter().flat_map(|&v| [v, v, v]).collect(),
            _ => pixels,
        };
        Ok((w, h, rgb))
    });
    let (w, h, rgb) = match decoded {
        Ok(Ok(decoded)) => decoded,
        Ok(Err(e)) => return Err(image_error(path, format!("cannot decode JPEG: {e}"))),
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "libjpeg error".into());
            return Err(image_error(path, format!("cannot decode JPEG: {msg}")));
        }
    };
    RgbImage::from_raw(w, h, rgb)
        .ok_or_else(|| image_error(path, "cannot decode JPEG: short pixel buffer"))
}

/// Pillow refuses a JPEG whose data ends before its last scan does ("image file is truncated");
/// libjpeg only warns and pads with grey. Entropy-coded data cannot contain the end-of-image marker
/// (0xFF is always stuffed), so a complete file has one after its last start-of-scan marker.
fn check_jpeg_complete(bytes: &[u8], path: &Path) -> Result<()> {
    let last_sos = bytes.windows(2).rposition(|m| m == [0xFF, 0xDA]);
    let complete = last_sos.is_some_and(|sos| bytes[sos..].windows(2).any(|m| m == [0xFF, 0xD9]));
    if complete {
        Ok(())
    } else {
        Err(image_error(
            path,
            "image file is truncated (no end-of-image marker after the last scan)",
        ))
    }
}

/// Pillow reads every CMYK JPEG as Adobe-inverted ("CMYK;I") and converts with `cmyk2rgb`:
/// `255 - k' - c*(255 - k')/255` with the rounding of its `MULDIV255`.
fn cmyk_inverted_to_rgb(stored: &[u8]) -> [u8; 3] {
    let k = 255 - u32::from(stored[3]);
    let nk = 255 - k;
    let channel = |stored_c: u8| {
        let c = 255 - u32::from(stored_c);
        let t = c * nk + 128;
        (nk - (((t >> 8) + t) >> 8)) as u8
    };
    [channel(stored[0]), channel(stored[1]), channel(stored[2])]
}

/// The first frame of a GIF as Pillow shows it: palette indices through the frame's palette (local,
/// else global), on a screen-sized canvas filled with the transparent index if any, else index 0.
fn decode_gif_first_frame(bytes: &[u8], path: &Path) -> Result<RgbImage> {
    let gif_error = |e: gif::DecodingError| image_error(path, format!("cannot decode GIF: {e}"));
    let mut options = gif::DecodeOptions::new();
    options.set_color_output(gif::ColorOutput::Indexed);
    let mut decoder = options.read_info(Cursor::new(bytes)).map_err(gif_error)?;
    let (sw, sh) = (u32::from(decoder.width()), u32::from(decoder.height()));
    let global = decoder.global_palette().map(<[u8]>::to_vec);
    let frame = decoder
        .read_next_frame()
        .map_err(gif_error)?
        .ok_or_else(|| image_error(path, "GIF has no frames"))?;
    let palette = frame
        .palette
        .as_deref()
        .or(global.as_deref())
        .unwrap_or(&[]);
    let colour = |index: u8| {
        let i = usize::from(index) * 3;
        palette
            .get(i..i + 3)
            .map_or([0, 0, 0], |c| [c[0], c[1], c[2]])
    };
    let fill = colour(frame.transparent.unwrap_or(0));
    let mut out = RgbImage::from_pixel(sw, sh, image::Rgb(fill));
    let (fw, fh) = (u32::from(frame.width), u32::from(frame.height));
    for fy in 0..fh {
        for fx in 0..fw {
            let (x, y) = (u32::from(frame.left) + fx, u32::from(frame.top) + fy);
            let Some(&index) = frame.buffer.get((fy * fw + fx) as usize) else {
                continue;
            };
            if x < sw && y < sh {
                out.put_pixel(x, y, image::Rgb(colour(index)));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmyk_conversion_matches_pillow_values() {
        // Pillow 13: CMYK (c, m, y, k) -> RGB, stored inverted in the JPEG.
        let cases = [
            ([0, 0, 0, 0], [255, 255, 255]),
            ([255, 0, 0, 0], [0, 255, 255]),
            ([100, 50, 200, 30], [137, 181, 49]),
            ([10, 20, 30, 255], [0, 0, 0]),
        ];
        for (cmyk, rgb) in cases {
            let stored = cmyk.map(|v: u8| 255 - v);
            assert_eq!(cmyk_inverted_to_rgb(&stored), rgb, "cmyk {cmyk:?}");
        }
    }

    #[test]
    fn sixteen_bit_conversions_follow_pillow() {
        // Gray 16 (I;16): clipped. RGB 16: high byte. Values as checked with Pillow 13.
        let gray =
            image::ImageBuffer::from_raw(6, 1, vec![0u16, 100, 255, 256, 1000, 65535]).unwrap();
        let rgb = to_rgb_like_pillow(DynamicImage::ImageLuma16(gray), false);
        let reds: Vec<u8> = rgb.pixels().map(|p| p[0]).collect();
        assert_eq!(reds, [0, 100, 255, 255, 255, 255]);
        let c16 = image::ImageBuffer::from_raw(
            2,
            1,
            vec![0x1234u16, 0xabcd, 0xff01, 0x00ff, 0x0100, 0x8080],
        )
        .unwrap();
        let rgb = to_rgb_like_pillow(DynamicImage::ImageRgb16(c16), false);
        assert_eq!(rgb.as_raw(), &[18, 171, 255, 0, 1, 128]);
    }

    #[test]
    fn jpeg_completeness_needs_an_end_marker_after_the_last_scan() {
        let p = Path::new("x.jpg");
        let whole = [0xFF, 0xD8, 0xFF, 0xDA, 1, 2, 0xFF, 0x00, 3, 0xFF, 0xD9];
        assert!(check_jpeg_complete(&whole, p).is_ok());
        assert!(check_jpeg_complete(&whole[..9], p).is_err());
        // An end marker before the last scan (an embedded thumbnail's) does not count.
        let thumb_only = [0xFF, 0xD8, 0xFF, 0xDA, 0xFF, 0xD9, 0xFF, 0xDA, 5, 6];
        assert!(check_jpeg_complete(&thumb_only, p).is_err());
    }

    #[test]
    fn alpha_is_dropped_not_composited() {
        let rgba =
            image::RgbaImage::from_raw(2, 1, vec![10, 20, 30, 0, 200, 100, 50, 128]).unwrap();
        let rgb = to_rgb_like_pillow(DynamicImage::ImageRgba8(rgba), false);
        assert_eq!(rgb.as_raw(), &[10, 20, 30, 200, 100, 50]);
    }
}
