//! Pillow's antialiased bilinear resize (`Image.resize(size, BILINEAR)`, which torchvision's
//! `Resize` calls on a PIL image), reproduced to the last bit.
//!
//! Hand-written on purpose: exact parity needs Pillow's own arithmetic (triangle filter widened by
//! the downscale factor, coefficients normalised then rounded to 22-bit fixed point, a horizontal
//! pass over only the rows the vertical pass reads, rounding and clipping to u8 after each pass).
//! Generic resizers, the `image` crate's included, compute in floating point and differ by a level
//! here and there. The coefficient tables are computed once per call and both passes run over
//! contiguous rows in integer arithmetic, which is also what makes it fast.

use image::RgbImage;

/// Fixed-point bits of the coefficients: Pillow's `PRECISION_BITS` (32 - 8 - 2).
const PRECISION_BITS: u32 = 32 - 8 - 2;
const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// For each output index, the first input index, how many inputs it reads, and their weights.
struct Coefficients {
    starts: Vec<usize>,
    lens: Vec<usize>,
    /// `lens.len() * ksize` weights, row `i` at `i * ksize`.
    weights: Vec<i32>,
    ksize: usize,
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the bilinear (triangle) filter,
/// box `[0, in_size]`. The float expressions keep Pillow's order of operations.
fn coefficients(in_size: u32, out_size: u32) -> Coefficients {
    let scale = f64::from(in_size as f32) / f64::from(out_size);
    let filterscale = scale.max(1.0);
    let support = filterscale; // the triangle filter's support is 1.0
    let ksize = support.ceil() as usize * 2 + 1;
    let out = out_size as usize;
    let mut starts = Vec::with_capacity(out);
    let mut lens = Vec::with_capacity(out);
    let mut weights = vec![0i32; out * ksize];
    let mut k = vec![0f64; ksize];
    for (xx, row) in weights.chunks_exact_mut(ksize).enumerate() {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C's (int) cast truncates toward zero, as `as i64` does.
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(i64::from(in_size)) - xmin;
        let len = xmax.max(0) as usize;
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(len) {
            let w = triangle(((x as i64 + xmin) as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        for (kx, fixed) in k.iter().zip(row.iter_mut()).take(len) {
            let v = if ww != 0.0 { kx / ww } else { *kx };
            let scaled = v * f64::from(1u32 << PRECISION_BITS);
            *fixed = if v < 0.0 {
                (scaled - 0.5) as i32
            } else {
                (scaled + 0.5) as i32
            };
        }
        starts.push(xmin as usize);
        lens.push(len);
    }
    Coefficients {
        starts,
        lens,
        weights,
        ksize,
    }
}

fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

/// Pillow's `clip8`: drop the fixed-point fraction, clamp to 0..=255.
#[inline(always)]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes `img` to `w`×`h` exactly as Pillow's `Image.resize((w, h), Image.BILINEAR)` does.
pub fn resize_bilinear_antialias(img: &RgbImage, w: u32, h: u32) -> RgbImage {
    let (in_w, in_h) = img.dimensions();
    if in_w == 0 || in_h == 0 || w == 0 || h == 0 {
        return RgbImage::new(w, h);
    }
    // Pillow skips a pass whose size does not change.
    let need_horizontal = w != in_w;
    let need_vertical = h != in_h;
    let mut vert = coefficients(in_h, h);
    // Rows of the source the vertical pass reads: the horizontal pass only produces those.
    let first_row = vert.starts[0];
    let last_row = vert.starts[h as usize - 1] + vert.lens[h as usize - 1];

    let (mut data, mut width) = (None::<Vec<u8>>, in_w as usize);
    if need_horizontal {
        let horiz = coefficients(in_w, w);
        let rows = &img.as_raw()[first_row * width * 3..last_row * width * 3];
        data = Some(horizontal_pass(rows, width, &horiz));
        width = w as usize;
        for s in &mut vert.starts {
            *s -= first_row;
        }
    }
    let src: &[u8] = data.as_deref().unwrap_or(img.as_raw());
    let out = if need_vertical {
        vertical_pass(src, width, &vert)
    } else {
        src.to_vec()
    };
    // Both passes produce exactly w*h*3 bytes.
    RgbImage::from_raw(w, h, out).unwrap_or_else(|| RgbImage::new(w, h))
}

/// Resamples each row of `src` (RGB rows of `in_w` pixels) to `coeffs.starts.len()` pixels.
fn horizontal_pass(src: &[u8], in_w: usize, coeffs: &Coefficients) -> Vec<u8> {
    let out_w = coeffs.starts.len();
    let rows = src.len() / (in_w * 3);
    let mut out = vec![0u8; rows * out_w * 3];
    for (in_row, out_row) in src
        .chunks_exact(in_w * 3)
        .zip(out.chunks_exact_mut(out_w * 3))
    {
        for (xx, px) in out_row.chunks_exact_mut(3).enumerate() {
            let start = coeffs.starts[xx];
            let len = coeffs.lens[xx];
            let k = &coeffs.weights[xx * coeffs.ksize..xx * coeffs.ksize + len];
            let pixels = &in_row[start * 3..(start + len) * 3];
            let (mut r, mut g, mut b) = (HALF, HALF, HALF);
            for (p, &kx) in pixels.chunks_exact(3).zip(k) {
                r += i32::from(p[0]) * kx;
                g += i32::from(p[1]) * kx;
                b += i32::from(p[2]) * kx;
            }
            px[0] = clip8(r);
            px[1] = clip8(g);
            px[2] = clip8(b);
        }
    }
    out
}

/// Resamples the columns of `src` (rows of `width` RGB pixels) to `coeffs.starts.len()` rows. Whole
/// rows are accumulated at a time (integer sums, so the order does not change the result).
fn vertical_pass(src: &[u8], width: usize, coeffs: &Coefficients) -> Vec<u8> {
    let row_len = width * 3;
    let out_h = coeffs.starts.len();
    let mut out = vec![0u8; out_h * row_len];
    let mut acc = vec![0i32; row_len];
    for (yy, out_row) in out.chunks_exact_mut(row_len).enumerate() {
        let start = coeffs.starts[yy];
        let len = coeffs.lens[yy];
        let k = &coeffs.weights[yy * coeffs.ksize..yy * coeffs.ksize + len];
        acc.fill(HALF);
        for (y, &ky) in k.iter().enumerate() {
            let row = &src[(start + y) * row_len..(start + y + 1) * row_len];
            for (a, &p) in acc.iter_mut().zip(row) {
                *a += i32::from(p) * ky;
            }
        }
        for (o, &a) in out_row.iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coefficients_sum_to_one_and_stay_in_bounds() {
        for (i, o) in [(500, 224), (100, 224), (224, 224), (3, 224), (1000, 7)] {
            let c = coefficients(i, o);
            for xx in 0..o as usize {
                assert!(c.starts[xx] + c.lens[xx] <= i as usize);
                let sum: i32 = c.weights[xx * c.ksize..][..c.lens[xx]].iter().sum();
                assert!(
                    (sum - (1 << PRECISION_BITS)).abs() <= c.ksize as i32,
                    "{i}->{o} at {xx}: {sum}"
                );
            }
        }
    }

    #[test]
    fn uniform_image_stays_uniform_and_same_size_is_identity() {
        let flat = RgbImage::from_pixel(37, 23, image::Rgb([12, 200, 99]));
        let out = resize_bilinear_antialias(&flat, 224, 224);
        assert!(out.pixels().all(|p| p.0 == [12, 200, 99]));
        let noisy = RgbImage::from_fn(31, 17, |x, y| {
            image::Rgb([(x * 7 + y) as u8, (x * y) as u8, 255 - x as u8])
        });
        assert_eq!(resize_bilinear_antialias(&noisy, 31, 17), noisy);
    }

    #[test]
    fn small_rows_match_pillow() {
        // Expected values printed by Pillow 13: Image.fromarray(row).resize((n, 1), Image.BILINEAR).
        let row = |vals: &[u8]| {
            RgbImage::from_fn(vals.len() as u32, 1, |x, _| {
                image::Rgb([vals[x as usize]; 3])
            })
        };
        let reds = |img: RgbImage| img.pixels().map(|p| p[0]).collect::<Vec<u8>>();
        assert_eq!(
            reds(resize_bilinear_antialias(&row(&[0, 80, 160, 240]), 2, 1)),
            [57, 183]
        );
        let five = row(&[0, 80, 160, 240, 17]);
        assert_eq!(reds(resize_bilinear_antialias(&five, 3, 1)), [34, 160, 113]);
        assert_eq!(
            reds(resize_bilinear_antialias(&five, 7, 1)),
            [0, 46, 103, 160, 217, 144, 17]
        );
    }
}
