//! The seed's image transform, `Resize((224, 224))` + `ToTensor()` + `Normalize(ImageNet mean, std)`
//! on `PIL.Image.open(path).convert("RGB")`, as a CHW `f32` tensor of 3×224×224 values.

use crate::vision::{decode, resize};
use crate::Result;
use image::RgbImage;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Side of the square image the encoder sees.
pub const IMAGE_SIZE: usize = 224;

/// Identifies what [`preprocess`] computes; part of the feature-cache key. Bump it whenever the
/// output of preprocessing changes for any image.
pub const PREPROCESS_VERSION: &str = "pil-bilinear224-imagenet-v1";

/// ImageNet channel means (R, G, B), as torchvision's `Normalize` gets them.
pub const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (R, G, B), as torchvision's `Normalize` gets them.
pub const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// The normalised value of every u8 level per channel, computed with torchvision's float32
/// operations in its order (`x / 255`, then `- mean`, then `/ std`), so the table is bit-identical.
fn level_table() -> [[f32; 256]; 3] {
    let mut table = [[0f32; 256]; 3];
    for (c, row) in table.iter_mut().enumerate() {
        for (v, out) in row.iter_mut().enumerate() {
            *out = (v as f32 / 255.0 - MEAN[c]) / STD[c];
        }
    }
    table
}

/// Writes `img` (normally 224×224) as normalised CHW values into `out`, which must hold
/// `3 * width * height` floats.
pub fn normalize_into(img224: &RgbImage, out: &mut [f32]) {
    let plane = img224.width() as usize * img224.height() as usize;
    assert_eq!(
        out.len(),
        3 * plane,
        "normalize_into: output buffer has the wrong length"
    );
    let table = level_table();
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    for (i, px) in img224.as_raw().chunks_exact(3).enumerate() {
        r[i] = table[0][usize::from(px[0])];
        g[i] = table[1][usize::from(px[1])];
        b[i] = table[2][usize::from(px[2])];
    }
}

/// [`PREPROCESS_VERSION`] for images resized to `side`×`side` (the seed's transform at 224; other
/// sides only for models trained at that size, such as the demo's).
pub fn preprocess_version(side: usize) -> String {
    if side == IMAGE_SIZE {
        PREPROCESS_VERSION.to_string()
    } else {
        PREPROCESS_VERSION.replace("224", &side.to_string())
    }
}

/// Resizes an RGB image to 224×224 as torchvision does on a PIL image and normalises it (CHW).
pub fn preprocess(img: &RgbImage) -> Vec<f32> {
    preprocess_sized(img, IMAGE_SIZE)
}

/// [`preprocess`] with `Resize((side, side))` instead of 224.
pub fn preprocess_sized(img: &RgbImage, side: usize) -> Vec<f32> {
    let resized = resize::resize_bilinear_antialias(img, side as u32, side as u32);
    let mut out = vec![0f32; 3 * side * side];
    normalize_into(&resized, &mut out);
    out
}

/// Reads, decodes and preprocesses the image at `path`.
pub fn preprocess_file(path: &Path) -> Result<Vec<f32>> {
    preprocess_file_sized(path, IMAGE_SIZE)
}

/// [`preprocess_file`] at `side`×`side`.
pub fn preprocess_file_sized(path: &Path, side: usize) -> Result<Vec<f32>> {
    Ok(preprocess_sized(&decode::load_rgb(path)?, side))
}

/// Preprocesses many images at `side`×`side` in parallel (rayon); each result stands alone, so one
/// unreadable image does not stop the others. Results are in the order of `paths`.
pub fn preprocess_batch_sized(paths: &[PathBuf], side: usize) -> Vec<Result<Vec<f32>>> {
    paths
        .par_iter()
        .map(|p| preprocess_file_sized(p, side))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_is_channel_planar() {
        let img = RgbImage::from_fn(2, 1, |x, _| {
            image::Rgb(if x == 0 { [0, 128, 255] } else { [255, 0, 128] })
        });
        let mut out = vec![0f32; 6];
        normalize_into(&img, &mut out);
        let expect = |v: f32, c: usize| (v / 255.0 - MEAN[c]) / STD[c];
        let want = [
            expect(0.0, 0),
            expect(255.0, 0),
            expect(128.0, 1),
            expect(0.0, 1),
            expect(255.0, 2),
            expect(128.0, 2),
        ];
        assert_eq!(out, want);
        assert!((out[0] + 2.117_904_2).abs() < 1e-6, "{}", out[0]);
    }

    #[test]
    fn batch_keeps_order_and_isolates_failures() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.png");
        RgbImage::from_pixel(30, 20, image::Rgb([255, 255, 255]))
            .save(&good)
            .unwrap();
        let bad = dir.path().join("bad.png");
        std::fs::write(&bad, b"not a png").unwrap();
        let out = preprocess_batch_sized(&[bad.clone(), good.clone()], IMAGE_SIZE);
        assert!(out[0].as_ref().unwrap_err().to_string().contains("bad.png"));
        let white = out[1].as_ref().unwrap();
        assert_eq!(white.len(), 3 * IMAGE_SIZE * IMAGE_SIZE);
        assert!((white[0] - (1.0 - MEAN[0]) / STD[0]).abs() < 1e-6);
    }
}
