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
//! the palette. Truncated JPEGs are errors, as in Pillow without `LOAD_TRUNCATED_IMAGES`.

use crate::vision::header::check_pixel_limit;
use crate::{Error, Result};
use image::{DynamicImage, ImageFormat, RgbImage};
use std::io::Cursor;
use std::path::Path;
use zune_core::colorspace::ColorSpace;

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
    let format =
        image::guess_format(bytes).map_err(|_| image_error(path, "not an image (unknown format)"))?;
    let (width, height) = image::ImageReader::with_format(Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(|e| image_error(path, format!("unreadable image header: {e}")))?;
    check_pixel_limit(path, width, height)?;
    if width == 0 || height == 0 {
        return Err(image_error(path, format!("image has no pixels ({width}x{height})")));
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
    let gray = |g: Vec<u8>| RgbImage::from_fn(w, h, |x, y| {
        let v = g[(y * w + x) as usize];
        image::Rgb([v, v, v])
    });
    match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        DynamicImage::ImageRgba8(rgba) => rgb_from_channels(w, h, rgba.as_raw(), 4, |v| v),
        DynamicImage::ImageLuma8(l) => gray(l.into_raw()),
        DynamicImage::ImageLumaA8(la) => gray(la.as_raw().chunks_exact(2).map(|p| p[0]).collect()),
        // Pillow opens 16-bit gray as mode I;16, whose conversion to RGB clips at 255.
        DynamicImage::ImageLuma16(l) => gray(l.as_raw().iter().map(|&v| v.min(255) as u8).collect()),
        DynamicImage::ImageLumaA16(la) => gray(
            la.as_raw()
                .chunks_exact(2)
                .map(|p| if gray16_is_i16 { p[0].min(255) as u8 } else { (p[0] >> 8) as u8 })
                .collect(),
        ),
        // Pillow unpacks 16-bit RGB(A) with the "RGB;16B" raw modes: the high byte of each sample.
        DynamicImage::ImageRgb16(rgb) => rgb_from_channels(w, h, rgb.as_raw(), 3, |v| (v >> 8) as u8),
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

/// JPEG through zune-jpeg directly (the `image` crate would convert CMYK with its own formula).
fn decode_jpeg(bytes: &[u8], path: &Path) -> Result<RgbImage> {
    use zune_core::options::DecoderOptions;
    use zune_jpeg::JpegDecoder;
    // Strict mode turns a truncated stream into an error instead of grey padding, as Pillow does.
    let options = DecoderOptions::default()
        .set_max_width(usize::MAX)
        .set_max_height(usize::MAX)
        .set_strict_mode(true);
    let jpeg_error = |e: zune_jpeg::errors::DecodeErrors| image_error(path, format!("cannot decode JPEG: {e}"));
    let mut probe = JpegDecoder::new_with_options(Cursor::new(bytes), options);
    probe.decode_headers().map_err(jpeg_error)?;
    let input = probe.input_colorspace().unwrap_or(ColorSpace::YCbCr);
    let out_space = match input {
        ColorSpace::CMYK => ColorSpace::CMYK,
        ColorSpace::Luma | ColorSpace::LumaA => ColorSpace::Luma,
        _ => ColorSpace::RGB,
    };
    let mut decoder =
        JpegDecoder::new_with_options(Cursor::new(bytes), options.jpeg_set_out_colorspace(out_space));
    let pixels = decoder.decode().map_err(jpeg_error)?;
    let info = decoder
        .info()
        .ok_or_else(|| image_error(path, "cannot decode JPEG: no header"))?;
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    let rgb = match out_space {
        ColorSpace::CMYK => pixels.chunks_exact(4).flat_map(cmyk_inverted_to_rgb).collect(),
        ColorSpace::Luma => pixels.iter().flat_map(|&v| [v, v, v]).collect(),
        _ => pixels,
    };
    RgbImage::from_raw(w, h, rgb).ok_or_else(|| image_error(path, "cannot decode JPEG: short pixel buffer"))
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
    let palette = frame.palette.as_deref().or(global.as_deref()).unwrap_or(&[]);
    let colour = |index: u8| {
        let i = usize::from(index) * 3;
        palette.get(i..i + 3).map_or([0, 0, 0], |c| [c[0], c[1], c[2]])
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
        let gray = image::ImageBuffer::from_raw(6, 1, vec![0u16, 100, 255, 256, 1000, 65535]).unwrap();
        let rgb = to_rgb_like_pillow(DynamicImage::ImageLuma16(gray), false);
        let reds: Vec<u8> = rgb.pixels().map(|p| p[0]).collect();
        assert_eq!(reds, [0, 100, 255, 255, 255, 255]);
        let c16 = image::ImageBuffer::from_raw(2, 1, vec![0x1234u16, 0xabcd, 0xff01, 0x00ff, 0x0100, 0x8080]).unwrap();
        let rgb = to_rgb_like_pillow(DynamicImage::ImageRgb16(c16), false);
        assert_eq!(rgb.as_raw(), &[18, 171, 255, 0, 1, 128]);
    }

    #[test]
    fn alpha_is_dropped_not_composited() {
        let rgba = image::RgbaImage::from_raw(2, 1, vec![10, 20, 30, 0, 200, 100, 50, 128]).unwrap();
        let rgb = to_rgb_like_pillow(DynamicImage::ImageRgba8(rgba), false);
        assert_eq!(rgb.as_raw(), &[10, 20, 30, 200, 100, 50]);
    }
}
