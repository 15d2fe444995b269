//! Preprocessing parity with Pillow + torchvision on the fixtures written by
//! `scripts/reference/preprocess_fixtures.py`, plus the error paths of image decoding.
//!
//! Reproduce the parity figures: `cargo test --test it preprocess:: -- --nocapture`.

use crate::common::{fixture, pixel_bomb_png};
use captioner::vision::decode::{decode_rgb, load_rgb};
use captioner::vision::preprocess::{self, normalize_into, preprocess_file, IMAGE_SIZE, MEAN, STD};
use captioner::vision::resize::resize_bilinear_antialias;
use captioner::Error;
use image::{ImageDecoder, RgbImage};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    fixture("preprocess")
}

#[derive(serde::Deserialize)]
struct Expected {
    images: Vec<Record>,
}

#[derive(serde::Deserialize)]
struct Record {
    file: String,
    pil_mode: String,
    width: u32,
    height: u32,
    decoded_rgb_sha256: String,
    expected_png: String,
    tensor_stride: usize,
    tensor_excerpt: Vec<f32>,
}

fn expected() -> Expected {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Formats whose decoding is lossless: Pillow and we must agree on every decoded pixel, and
/// therefore on every resized pixel too.
fn lossless(file: &str) -> bool {
    !(file.ends_with(".jpg") || file.starts_with("webp_lossy"))
}

#[test]
fn parity_with_pillow_and_torchvision() {
    let side = IMAGE_SIZE as u32;
    let (mut worst_mean, mut worst_max) = (0f64, 0f32);
    let mut failures = Vec::new();
    println!(
        "{:34} {:5} {:>6} {:>7} {:>9} {:>10} {:>10} {:>10}",
        "image", "mode", "decode", "u8 max", "u8 mean", "norm mean", "norm max", "torch max"
    );
    for rec in expected().images {
        let decoded = load_rgb(&fixtures().join("images").join(&rec.file)).unwrap();
        assert_eq!(
            decoded.dimensions(),
            (rec.width, rec.height),
            "{}",
            rec.file
        );
        let decode_exact = hex::encode(Sha256::digest(decoded.as_raw())) == rec.decoded_rgb_sha256;

        let want = image::open(fixtures().join("expected").join(&rec.expected_png))
            .unwrap()
            .to_rgb8();
        let ours = resize_bilinear_antialias(&decoded, side, side);
        let u8_diffs: Vec<u8> = ours
            .as_raw()
            .iter()
            .zip(want.as_raw())
            .map(|(a, b)| a.abs_diff(*b))
            .collect();
        let u8_max = u8_diffs.iter().copied().max().unwrap_or(0);
        let u8_mean = u8_diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / u8_diffs.len() as f64;

        // The whole tensor against Pillow's resize output through torchvision's formula ...
        let tensor = preprocess::preprocess(&decoded);
        let mut reference = vec![0f32; tensor.len()];
        normalize_into(&want, &mut reference);
        let diffs: Vec<f32> = tensor
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).abs())
            .collect();
        let norm_max = diffs.iter().copied().fold(0f32, f32::max);
        let norm_mean = diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64;
        // ... and an excerpt of it against the tensor torch itself computed.
        let torch_max = rec
            .tensor_excerpt
            .iter()
            .enumerate()
            .map(|(i, &t)| (tensor[i * rec.tensor_stride] - t).abs())
            .fold(0f32, f32::max);

        println!(
            "{:34} {:5} {:>6} {:>7} {:>9.5} {:>10.6} {:>10.6} {:>10.2e}",
            rec.file,
            rec.pil_mode,
            if decode_exact { "exact" } else { "differs" },
            u8_max,
            u8_mean,
            norm_mean,
            norm_max,
            torch_max
        );
        worst_mean = worst_mean.max(norm_mean);
        worst_max = worst_max.max(norm_max).max(torch_max);
        if norm_mean > 0.005 || norm_max > 0.05 || torch_max > 0.05 {
            failures.push(format!(
                "{}: mean {norm_mean} max {norm_max} torch {torch_max}",
                rec.file
            ));
        }
        if lossless(&rec.file) && !(decode_exact && u8_max == 0 && torch_max <= 1e-6) {
            failures.push(format!(
                "{}: lossless format must match exactly (decode exact {decode_exact}, u8 max {u8_max}, torch {torch_max})",
                rec.file
            ));
        }
    }
    println!("worst over all images: mean |diff| {worst_mean:.6}, max |diff| {worst_max:.6} (normalized units)");
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn exif_orientation_is_not_applied() {
    let path = fixtures().join("images/jpeg_exif_rot6_120x80.jpg");
    let mut decoder = image::ImageReader::open(&path)
        .unwrap()
        .into_decoder()
        .unwrap();
    assert_eq!(
        decoder.orientation().unwrap(),
        image::metadata::Orientation::Rotate90
    );
    // Stored landscape, EXIF says rotate to portrait: we, like PIL, keep it as stored.
    assert_eq!(load_rgb(&path).unwrap().dimensions(), (120, 80));
}

#[test]
fn decode_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let jpeg = std::fs::read(fixtures().join("images/jpeg_rgb_320x240.jpg")).unwrap();
    let cut = dir.path().join("cut_short.jpg");
    std::fs::write(&cut, &jpeg[..jpeg.len() / 2]).unwrap();
    let garbage = dir.path().join("garbage.png");
    std::fs::write(
        &garbage,
        (0..4000u32)
            .map(|i| (i * 7919 % 251) as u8)
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    let png = std::fs::read(fixtures().join("images/png_rgb_256x192.png")).unwrap();
    let bad_png = dir.path().join("bad_data.png");
    std::fs::write(&bad_png, &png[..png.len() - 5000]).unwrap();
    let empty = dir.path().join("empty.webp");
    std::fs::write(&empty, b"").unwrap();
    for path in [&cut, &garbage, &bad_png, &empty] {
        let err = preprocess_file(path).unwrap_err();
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(err.to_string().contains(name), "{err}");
    }
    let missing = dir.path().join("missing.jpg");
    assert!(matches!(load_rgb(&missing), Err(Error::Io { .. })));
}

#[test]
fn pixel_bombs_are_refused_from_the_header_alone() {
    // Headers claiming 20000x20000 pixels with no pixel data behind them: decoding would fail with a
    // data error, so a PixelLimit error shows the check ran on the header, before any decoding.
    let png = pixel_bomb_png(20_000, 20_000);
    let gif = gif_header(20_000);

    for (name, bytes) in [("bomb.png", &png), ("bomb.gif", &gif)] {
        match decode_rgb(bytes, Path::new(name)) {
            Err(e @ Error::PixelLimit { pixels, .. }) => {
                assert_eq!(pixels, 400_000_000);
                assert!(e.to_string().contains(name), "{e}");
            }
            other => panic!("{name}: expected PixelLimit, got {other:?}"),
        }
    }
    // Just under the limit is not refused by the check (it fails later, for lack of pixel data).
    let side = 9459u32; // 9459^2 = 89,472,681 <= 89,478,485
    let small = gif_header(side as u16);
    assert!(!matches!(
        decode_rgb(&small, Path::new("ok.gif")),
        Err(Error::PixelLimit { .. })
    ));
}

#[test]
fn normalisation_matches_torchvision_constants() {
    // ToTensor + Normalize on a white and a black pixel.
    let img = RgbImage::from_fn(2, 1, |x, _| image::Rgb([if x == 0 { 255 } else { 0 }; 3]));
    let mut out = vec![0f32; 6];
    normalize_into(&img, &mut out);
    for c in 0..3 {
        assert!((out[2 * c] - (1.0 - MEAN[c]) / STD[c]).abs() < 1e-6);
        assert!((out[2 * c + 1] + MEAN[c] / STD[c]).abs() < 1e-6);
    }
}

/// Speed figure: `cargo test --test it preprocess::speed -- --ignored --nocapture`.
#[test]
#[ignore]
fn speed_of_preprocess_file_on_a_500x375_jpeg() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("photo.jpg");
    let img = RgbImage::from_fn(500, 375, |x, y| {
        image::Rgb([(x / 2) as u8, (y * 2 / 3) as u8, ((x * y) % 251) as u8])
    });
    let file = std::fs::File::create(&path).unwrap();
    image::codecs::jpeg::JpegEncoder::new_with_quality(file, 90)
        .encode_image(&img)
        .unwrap();
    for _ in 0..3 {
        preprocess_file(&path).unwrap();
    }
    let n = 50;
    let start = std::time::Instant::now();
    for _ in 0..n {
        std::hint::black_box(preprocess_file(&path).unwrap());
    }
    let total = start.elapsed().as_secs_f64() * 1e3 / f64::from(n);
    let decoded = load_rgb(&path).unwrap();
    let start = std::time::Instant::now();
    for _ in 0..n {
        std::hint::black_box(resize_bilinear_antialias(&decoded, 224, 224));
    }
    let resize = start.elapsed().as_secs_f64() * 1e3 / f64::from(n);
    println!("preprocess_file 500x375 JPEG: {total:.3} ms/image (resize alone {resize:.3} ms)");
}

/// A GIF with a `side`×`side` screen and one frame descriptor of that size, but no pixel data.
fn gif_header(side: u16) -> Vec<u8> {
    let mut gif = b"GIF89a".to_vec();
    gif.extend_from_slice(&side.to_le_bytes());
    gif.extend_from_slice(&side.to_le_bytes());
    gif.extend_from_slice(&[0, 0, 0]);
    gif.push(0x2C); // image descriptor
    gif.extend_from_slice(&[0, 0, 0, 0]);
    gif.extend_from_slice(&side.to_le_bytes());
    gif.extend_from_slice(&side.to_le_bytes());
    gif.extend_from_slice(&[0, 8]); // no local palette; LZW minimum code size, then nothing
    gif
}
