//! Where the attention decoder looked, as a picture people can read: the image, then one panel per
//! generated word with that word's attention weights upsampled smoothly (bilinear, from the
//! feature-map grid) to the image and laid over it, the word under each panel. Text is drawn with
//! the font embedded for the loss plot, so every machine draws the same picture.

use crate::captioner::WordAttention;
use crate::train::plot::{register_font, FONT};
use crate::{fsutil, Error, Result};
use image::RgbImage;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

/// Height of a panel, pixels.
const PANEL_H: u32 = 180;
/// Room for the word under a panel.
const LABEL_H: u32 = 28;
const MARGIN: u32 = 8;
/// Panels per row.
const COLUMNS: usize = 5;

/// Weight of the `[h, w]` grid `cells` at pixel `(x, y)` of a `pw × ph` panel: bilinear between
/// cell centres, clamped at the edges.
fn upsample(cells: &[f32], [gh, gw]: [usize; 2], (x, y): (u32, u32), (pw, ph): (u32, u32)) -> f32 {
    let coord = |p: u32, n: u32, g: usize| -> (usize, usize, f32) {
        let c = ((p as f32 + 0.5) / n as f32 * g as f32 - 0.5).clamp(0.0, (g - 1) as f32);
        let lo = c.floor() as usize;
        (lo, (lo + 1).min(g - 1), c - lo as f32)
    };
    let (y0, y1, fy) = coord(y, ph, gh);
    let (x0, x1, fx) = coord(x, pw, gw);
    let at = |r: usize, c: usize| cells[r * gw + c];
    let top = at(y0, x0) * (1.0 - fx) + at(y0, x1) * fx;
    let bottom = at(y1, x0) * (1.0 - fx) + at(y1, x1) * fx;
    top * (1.0 - fy) + bottom * fy
}

/// The image with one word's weights laid over it: attended regions keep their light, the rest
/// is dimmed (the weights are scaled so the word's largest is 1).
fn overlay(base: &RgbImage, cells: &[f32], grid: [usize; 2]) -> RgbImage {
    let max = cells.iter().fold(f32::MIN_POSITIVE, |m, &v| m.max(v));
    let size = base.dimensions();
    let mut out = base.clone();
    for (x, y, px) in out.enumerate_pixels_mut() {
        let a = (upsample(cells, grid, (x, y), size) / max).clamp(0.0, 1.0);
        for c in px.0.iter_mut() {
            *c = (*c as f32 * (0.2 + 0.8 * a) + 45.0 * a).min(255.0) as u8;
        }
    }
    out
}

/// Draws `image`, then a panel per word of `words` with its row of `attention` over the image,
/// into the PNG `out` (written atomically).
pub fn write_attention_png(
    image: &RgbImage,
    words: &[String],
    attention: &WordAttention,
    out: &Path,
) -> Result<()> {
    let [gh, gw] = attention.grid;
    if gh == 0
        || gw == 0
        || attention.weights.len() != words.len()
        || attention.weights.iter().any(|w| w.len() != gh * gw)
    {
        return Err(Error::Internal(format!(
            "{} words with {} rows of attention for a {gh}×{gw} grid",
            words.len(),
            attention.weights.len()
        )));
    }
    let (iw, ih) = image.dimensions();
    let pw = ((PANEL_H as f32 * iw as f32 / ih.max(1) as f32).round() as u32).clamp(60, 400);
    let base = image::imageops::resize(image, pw, PANEL_H, image::imageops::FilterType::Triangle);
    let panels = words.len() + 1;
    let cols = panels.min(COLUMNS) as u32;
    let rows = panels.div_ceil(COLUMNS) as u32;
    let (w, h) = (
        MARGIN + cols * (pw + MARGIN),
        MARGIN + rows * (PANEL_H + LABEL_H + MARGIN),
    );
    let mut canvas = RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
    let origin = |k: usize| -> (u32, u32) {
        let (r, c) = ((k / COLUMNS) as u32, (k % COLUMNS) as u32);
        (
            MARGIN + c * (pw + MARGIN),
            MARGIN + r * (PANEL_H + LABEL_H + MARGIN),
        )
    };
    image::imageops::replace(&mut canvas, &base, origin(0).0 as i64, origin(0).1 as i64);
    for (k, cells) in attention.weights.iter().enumerate() {
        let (x, y) = origin(k + 1);
        image::imageops::replace(
            &mut canvas,
            &overlay(&base, cells, [gh, gw]),
            x as i64,
            y as i64,
        );
    }
    register_font().map_err(|e| Error::format(out, e))?;
    {
        let mut buf = canvas.as_raw().clone();
        let draw_err = |e: &dyn std::fmt::Display| {
            Error::format(out, format!("cannot draw the attention picture: {e}"))
        };
        {
            let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
            let style = (FONT, 17)
                .into_font()
                .color(&RGBColor(20, 20, 20))
                .pos(Pos::new(HPos::Center, VPos::Top));
            let labels = std::iter::once("(image)").chain(words.iter().map(String::as_str));
            for (k, word) in labels.enumerate() {
                let (x, y) = origin(k);
                let at = ((x + pw / 2) as i32, (y + PANEL_H + 5) as i32);
                root.draw(&Text::new(word.to_string(), at, style.clone()))
                    .map_err(|e| draw_err(&e))?;
            }
            root.present().map_err(|e| draw_err(&e))?;
        }
        canvas = RgbImage::from_raw(w, h, buf)
            .ok_or_else(|| Error::Internal("attention picture buffer of the wrong size".into()))?;
    }
    fsutil::write_atomic_with(out, |tmp| {
        canvas
            .save_with_format(tmp, image::ImageFormat::Png)
            .map_err(|e| Error::format(out, format!("cannot write the PNG: {e}")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsampling_puts_each_cell_at_its_place_and_blends_between() {
        // A 2×2 grid with all weight top-left, on a 40×40 panel.
        let cells = [1.0, 0.0, 0.0, 0.0];
        let at = |x, y| upsample(&cells, [2, 2], (x, y), (40, 40));
        assert_eq!(at(0, 0), 1.0);
        assert_eq!(at(39, 39), 0.0);
        assert_eq!(at(39, 0), 0.0);
        let mid = at(19, 19);
        assert!(mid > 0.2 && mid < 0.3, "{mid}");
        // Monotone from the attended corner.
        assert!(at(5, 5) > at(15, 15) && at(15, 15) > at(25, 25));
    }

    #[test]
    fn the_picture_has_a_panel_per_word_and_dims_what_is_not_attended() {
        let dir = tempfile::tempdir().unwrap();
        let img = RgbImage::from_pixel(120, 90, image::Rgb([200, 200, 200]));
        let words: Vec<String> = ["a", "dog", "left"].iter().map(|s| s.to_string()).collect();
        let att = WordAttention {
            grid: [2, 2],
            weights: vec![
                vec![0.25; 4],
                vec![0.7, 0.1, 0.1, 0.1],
                vec![0.1, 0.1, 0.1, 0.7],
            ],
        };
        let out = dir.path().join("x.png");
        write_attention_png(&img, &words, &att, &out).unwrap();
        let png = image::open(&out).unwrap().to_rgb8();
        let pw = 240; // 180 × 120 / 90
        assert_eq!(
            png.dimensions(),
            (
                MARGIN + 4 * (pw + MARGIN),
                MARGIN + PANEL_H + LABEL_H + MARGIN
            )
        );
        // Panel 2 ("dog") is bright top-left and dim bottom-right; panel 3 the other way.
        let px = |panel: u32, x: u32, y: u32| {
            png.get_pixel(MARGIN + panel * (pw + MARGIN) + x, MARGIN + y)
                .0[0]
        };
        assert!(px(2, 10, 10) > px(2, pw - 10, PANEL_H - 10) + 60);
        assert!(px(3, pw - 10, PANEL_H - 10) > px(3, 10, 10) + 60);
        // The uniform word lights the whole image alike.
        assert_eq!(px(1, 10, 10), px(1, pw - 10, PANEL_H - 10));
        // Something (the word) is drawn under each panel.
        let label_dark = (0..pw).any(|x| {
            (0..LABEL_H - 6).any(|y| {
                png.get_pixel(MARGIN + 2 * (pw + MARGIN) + x, MARGIN + PANEL_H + 3 + y)
                    .0[0]
                    < 100
            })
        });
        assert!(label_dark, "no label under the panel");
        assert!(write_attention_png(&img, &words[..2], &att, &out).is_err());
    }
}
