//! Rasterises a [`Scene`] into an RGB image: shaded background, anti-aliased shapes (coverage from
//! signed distances), then mild per-pixel noise. Hand-written because it is ~100 lines and a drawing
//! crate would add a dependency for four primitives.

use super::scene::{Object, Scene, Shape, Texture, RING_HALF_WIDTH, RING_MID};
use image::RgbImage;

/// Amplitude of the per-pixel noise, in 8-bit levels.
const NOISE: i32 = 5;

/// Renders `scene`; a pure function of the scene (its `noise_seed` included).
pub fn render(scene: &Scene) -> RgbImage {
    let (w, h) = (scene.width as usize, scene.height as usize);
    let mut px = vec![[0f32; 3]; w * h];
    for y in 0..h {
        for x in 0..w {
            let shade = match scene.texture {
                Texture::Plain => 0.0,
                Texture::VerticalGradient(a) => a * (2.0 * y as f32 / h as f32 - 1.0),
                Texture::HorizontalGradient(a) => a * (2.0 * x as f32 / w as f32 - 1.0),
            };
            px[y * w + x] = scene.background_rgb.map(|c| c as f32 + shade);
        }
    }
    for o in &scene.objects {
        paint(&mut px, w, h, o);
    }
    let mut img = RgbImage::new(scene.width, scene.height);
    for (i, (p, out)) in px.iter().zip(img.pixels_mut()).enumerate() {
        let n = noise(scene.noise_seed, i as u64);
        for (c, (o, v)) in out.0.iter_mut().zip(p).enumerate() {
            let jitter = ((n >> (8 * c)) & 0xff) as i32 % (2 * NOISE + 1) - NOISE;
            *o = (v + jitter as f32).round().clamp(0.0, 255.0) as u8;
        }
    }
    img
}

/// Blends `o` over the pixels of its bounding box with coverage `clamp(0.5 - distance, 0, 1)`,
/// which gives a one-pixel anti-aliased edge.
fn paint(px: &mut [[f32; 3]], w: usize, h: usize, o: &Object) {
    let poly = polygon(o);
    let r = o.radius + 2.0;
    let x0 = (o.cx - r).floor().max(0.0) as usize;
    let y0 = (o.cy - r).floor().max(0.0) as usize;
    let x1 = ((o.cx + r).ceil() as usize).min(w);
    let y1 = ((o.cy + r).ceil() as usize).min(h);
    let colour = o.rgb.map(|c| c as f32);
    for y in y0..y1 {
        for x in x0..x1 {
            let (sx, sy) = (x as f32 + 0.5, y as f32 + 0.5);
            let d = match o.shape {
                Shape::Circle => (sx - o.cx).hypot(sy - o.cy) - o.radius,
                Shape::Ring => {
                    ((sx - o.cx).hypot(sy - o.cy) - RING_MID * o.radius).abs()
                        - RING_HALF_WIDTH * o.radius
                }
                _ => polygon_distance((sx, sy), &poly),
            };
            let a = (0.5 - d).clamp(0.0, 1.0);
            if a > 0.0 {
                let p = &mut px[y * w + x];
                for (v, target) in p.iter_mut().zip(colour) {
                    *v += a * (target - *v);
                }
            }
        }
    }
}

/// The vertices of a polygonal shape in image coordinates (empty for circles and rings).
fn polygon(o: &Object) -> Vec<(f32, f32)> {
    let up = -std::f32::consts::FRAC_PI_2; // image y grows downwards: -90 degrees points up
    let (radii, start): (Vec<f32>, f32) = match o.shape {
        Shape::Circle | Shape::Ring => return Vec::new(),
        Shape::Square => (vec![1.0; 4], std::f32::consts::FRAC_PI_4),
        Shape::Triangle => (vec![1.0; 3], up),
        Shape::Star => ((0..10).map(|i| [1.0, 0.45][i % 2]).collect(), up),
        Shape::Rectangle => {
            // Half-extents (0.9 r, 0.42 r): a wide bar whose corners stay within the radius.
            let (hw, hh) = (0.9 * o.radius, 0.42 * o.radius);
            let (s, c) = o.rotation.sin_cos();
            return [(-hw, -hh), (hw, -hh), (hw, hh), (-hw, hh)]
                .iter()
                .map(|&(x, y)| (o.cx + x * c - y * s, o.cy + x * s + y * c))
                .collect();
        }
    };
    let n = radii.len() as f32;
    radii
        .iter()
        .enumerate()
        .map(|(i, &k)| {
            let t = start + o.rotation + std::f32::consts::TAU * i as f32 / n;
            (o.cx + k * o.radius * t.cos(), o.cy + k * o.radius * t.sin())
        })
        .collect()
}

/// Signed distance from `p` to a closed polygon: negative inside (even-odd rule).
fn polygon_distance(p: (f32, f32), poly: &[(f32, f32)]) -> f32 {
    let mut best = f32::INFINITY;
    let mut inside = false;
    for i in 0..poly.len() {
        let a = poly[i];
        let b = poly[(i + 1) % poly.len()];
        let (ex, ey) = (b.0 - a.0, b.1 - a.1);
        let (px, py) = (p.0 - a.0, p.1 - a.1);
        let t = ((px * ex + py * ey) / (ex * ex + ey * ey)).clamp(0.0, 1.0);
        best = best.min((px - t * ex).hypot(py - t * ey));
        if (a.1 > p.1) != (b.1 > p.1) && p.0 < a.0 + ex * (p.1 - a.1) / ey {
            inside = !inside;
        }
    }
    if inside {
        -best
    } else {
        best
    }
}

/// SplitMix64 of (seed, pixel index): cheap, deterministic, independent per pixel, so the noise
/// does not depend on the order in which pixels or images are produced.
fn noise(seed: u64, i: u64) -> u64 {
    let mut z = seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synth::scene::Colour;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn object_centres_show_their_colour_and_corners_the_background() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..200 {
            let s = Scene::random(&mut rng);
            let img = render(&s);
            for o in &s.objects {
                let (x, y) = o.interior_point();
                let p = img.get_pixel(x as u32, y as u32).0;
                assert_eq!(Colour::nearest(p), o.colour, "{s:?}");
            }
            let corner = img.get_pixel(0, 0).0;
            assert_eq!(Colour::nearest(corner), s.background, "{s:?}");
        }
    }

    #[test]
    fn shapes_cover_plausible_areas() {
        // The filled fraction of the circumscribed disc tells the shapes apart and catches a
        // polygon drawn inside out or not at all.
        let expected = [
            (Shape::Circle, 1.0),
            (Shape::Ring, 2.0 * RING_MID * 2.0 * RING_HALF_WIDTH),
            (Shape::Square, 2.0 / std::f32::consts::PI),
            (Shape::Triangle, 0.413),
            (Shape::Rectangle, 4.0 * 0.9 * 0.42 / std::f32::consts::PI),
        ];
        for (shape, frac) in expected {
            let o = Object {
                shape,
                colour: Colour::Red,
                rgb: [255, 0, 0],
                cx: 100.0,
                cy: 100.0,
                radius: 60.0,
                rotation: 0.1,
            };
            let mut px = vec![[0f32; 3]; 200 * 200];
            paint(&mut px, 200, 200, &o);
            let area: f32 = px.iter().map(|p| p[0] / 255.0).sum();
            let disc = std::f32::consts::PI * 60.0 * 60.0;
            let got = area / disc;
            assert!((got - frac).abs() < 0.02, "{shape:?}: {got} vs {frac}");
        }
    }
}
