//! Winograd F(m×m, 3×3) convolutions (Lavin & Gray, "Fast Algorithms for Convolutional Neural
//! Networks", 2016) for the NHWC trunk's 3×3 stride-1 layers, which are ~37% of ResNet-50's
//! multiply-adds. Each m×m block of outputs comes from an α×α block of inputs (α = m + 2) as
//! `Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`; over all tiles the element-wise products become α² independent
//! matrix products `[tiles, Cin] · [Cin, Cout]`, with (m + 2)² / (9 m²) of the direct
//! convolution's multiplications: 16/36 for F(2×2), 36/144 for F(4×4). Hand-written because candle
//! has no NHWC convolution, let alone a Winograd one; the products go through `gemm`, or on AVX-512
//! CPUs through [`f32_panels`] with `U` packed once.
//!
//! Data flow: the weights are transformed once at load (in f64, rounded once); a convolution
//! transforms its input tiles into `V [tiles, α², Cin]`, multiplies each of the α² slices
//! by its `U [Cin, Cout]` into `M [α², tiles, Cout]`, and transforms `M` back into the NHWC output
//! with the bias, the residual and the ReLU applied on the way.

use crate::model::cpu_math::{matmul_serial_uninit, View};
use crate::model::f32_panels::{self, product_serial_uninit, F32Panels, Rows};
use crate::model::wide::wide_copies;
use rayon::prelude::*;
use std::sync::OnceLock;

/// The output tile of a Winograd convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tile {
    /// F(2×2, 3×3): 4×4 input tiles, 2.25× fewer multiplications, small transforms.
    F2,
    /// F(4×4, 3×3): 6×6 input tiles, 4× fewer multiplications, larger transforms and rounding.
    F4,
}

/// The three transform matrices of one tile size, row-major.
struct Transforms {
    /// Output tile side m.
    m: usize,
    /// Input tile side α = m + 2.
    alpha: usize,
    /// `Bᵀ [α, α]`.
    bt: &'static [f64],
    /// `G [α, 3]`.
    g: &'static [f64],
    /// `Aᵀ [m, α]`.
    at: &'static [f64],
}

const F2_TRANSFORMS: Transforms = Transforms {
    m: 2,
    alpha: 4,
    #[rustfmt::skip]
    bt: &[
        1.0, 0.0, -1.0, 0.0,
        0.0, 1.0, 1.0, 0.0,
        0.0, -1.0, 1.0, 0.0,
        0.0, 1.0, 0.0, -1.0,
    ],
    #[rustfmt::skip]
    g: &[
        1.0, 0.0, 0.0,
        0.5, 0.5, 0.5,
        0.5, -0.5, 0.5,
        0.0, 0.0, 1.0,
    ],
    #[rustfmt::skip]
    at: &[
        1.0, 1.0, 1.0, 0.0,
        0.0, 1.0, -1.0, -1.0,
    ],
};

const F4_TRANSFORMS: Transforms = Transforms {
    m: 4,
    alpha: 6,
    #[rustfmt::skip]
    bt: &[
        4.0, 0.0, -5.0, 0.0, 1.0, 0.0,
        0.0, -4.0, -4.0, 1.0, 1.0, 0.0,
        0.0, 4.0, -4.0, -1.0, 1.0, 0.0,
        0.0, -2.0, -1.0, 2.0, 1.0, 0.0,
        0.0, 2.0, -1.0, -2.0, 1.0, 0.0,
        0.0, 4.0, 0.0, -5.0, 0.0, 1.0,
    ],
    #[rustfmt::skip]
    g: &[
        1.0 / 4.0, 0.0, 0.0,
        -1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0,
        -1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0,
        1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0,
        1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0,
        0.0, 0.0, 1.0,
    ],
    #[rustfmt::skip]
    at: &[
        1.0, 1.0, 1.0, 1.0, 1.0, 0.0,
        0.0, 1.0, -1.0, 2.0, -2.0, 0.0,
        0.0, 1.0, 1.0, 4.0, 4.0, 0.0,
        0.0, 1.0, -1.0, 8.0, -8.0, 1.0,
    ],
};

impl Tile {
    fn transforms(self) -> &'static Transforms {
        match self {
            Tile::F2 => &F2_TRANSFORMS,
            Tile::F4 => &F4_TRANSFORMS,
        }
    }
}

/// A 3×3 convolution's weights in the Winograd domain: `U [α², Cin, Cout]`.
#[derive(Debug, Clone)]
pub struct WinogradWeights {
    tile: Tile,
    cin: usize,
    cout: usize,
    /// `U`, row-major; empty when the products run on [`Self::panels`].
    u: Vec<f32>,
    /// Each of the α² `[Cin, Cout]` matrices of `U` packed for [`f32_panels`], where that pays.
    panels: Option<Vec<F32Panels>>,
}

impl WinogradWeights {
    /// Transforms a 3×3 weight laid out as the NHWC trunk keeps it, `[9·Cin, Cout]` with rows
    /// ordered (dy, dx, ci): `U = G g Gᵀ` per (ci, co), in f64, rounded once.
    pub fn new(weight: &[f32], cin: usize, cout: usize, tile: Tile) -> Self {
        assert_eq!(
            weight.len(),
            9 * cin * cout,
            "a 3x3 weight [9·{cin}, {cout}]"
        );
        let t = tile.transforms();
        let a = t.alpha;
        let mut u = vec![0f32; a * a * cin * cout];
        u.par_chunks_mut(cout).enumerate().for_each(|(row, out)| {
            let (p, ci) = (row / cin, row % cin);
            let (i, j) = (p / a, p % a);
            let mut sum = vec![0f64; cout];
            for dy in 0..3 {
                for dx in 0..3 {
                    let coef = t.g[i * 3 + dy] * t.g[j * 3 + dx];
                    if coef == 0.0 {
                        continue;
                    }
                    let g = &weight[((dy * 3 + dx) * cin + ci) * cout..][..cout];
                    for (s, &g) in sum.iter_mut().zip(g) {
                        *s += coef * g as f64;
                    }
                }
            }
            for (o, s) in out.iter_mut().zip(sum) {
                *o = s as f32;
            }
        });
        let panels = f32_panels::pays()
            .then(|| {
                u.chunks_exact(cin * cout)
                    .map(|up| F32Panels::pack(up, cin, cout))
                    .collect::<Option<Vec<_>>>()
            })
            .flatten();
        let u = if panels.is_some() { Vec::new() } else { u };
        Self {
            tile,
            cin,
            cout,
            u,
            panels,
        }
    }
}

/// Fewest tiles (of one image) for which a Winograd convolution beats the direct one, with
/// `gemm`'s products. Per layer on the AVX2 Zen 3
/// (`cargo test --release --lib time_layers -- --ignored`, min of 15, ms direct / F2 / F4):
/// batch 1 at 56×56×64 (196 F4 tiles) 1.99 / 1.75 / 1.20, 28×28×128 (49) 1.75 / 1.41 / 0.88,
/// 14×14×256 (16 F4, 49 F2 tiles) 1.87 / 1.22 / 1.50, 7×7×512 (4 F4, 16 F2 tiles) 2.38 / 2.76 /
/// 5.60; batch 16 at 7×7×512 (64 F4 tiles) 22.8 / 16.8 / 11.4. With few tiles the α² products
/// have few rows and their weights, α²/9 times the direct one's, dominate.
pub const MIN_TILES_GEMM: usize = 49;

/// [`MIN_TILES_GEMM`] with the products on [`f32_panels`] (AVX-512), which lose less on few
/// rows. Zen 4, same test (direct on gemm): batch 1 at 14×14×256 1.19 / 0.69 / 0.52, 7×7×512
/// 1.84 / 0.91 / 1.18. A whole batch-1 ResNet-50 (min of 15 passes, three alternating rounds,
/// ms): 49.0, 51.4, 53.8 with 16 against 52.3, 53.8, 52.3 with 49; batch 16: 869–890 against
/// 870–1006. The price: `layer3`'s F(4×4) and `layer4`'s F(2×2) weights, ~60 MB more.
pub const MIN_TILES_PANELS: usize = 16;

/// The tile for a 3×3 stride-1 convolution of `[h, w, ·]` maps: F(4×4) when one image makes at
/// least [`MIN_TILES_PANELS`] (or, where products run on `gemm`, [`MIN_TILES_GEMM`]) tiles, else
/// F(2×2) when that does, else `None` (the direct convolution).
/// Per image, not per batch: an image's features must not depend on the batch it came in
/// (sharded extraction merges to the bytes of one process).
/// `CAPTIONER_WINOGRAD=off|f2|f4` forces a choice (for comparisons).
pub fn tile_for(h: usize, w: usize) -> Option<Tile> {
    static FORCED: OnceLock<Option<Option<Tile>>> = OnceLock::new();
    let forced = FORCED.get_or_init(|| match std::env::var("CAPTIONER_WINOGRAD").as_deref() {
        Ok("off") => Some(None),
        Ok("f2") => Some(Some(Tile::F2)),
        Ok("f4") => Some(Some(Tile::F4)),
        _ => None,
    });
    if let Some(t) = forced {
        return *t;
    }
    let tiles = |m: usize| h.div_ceil(m) * w.div_ceil(m);
    let min_tiles = if f32_panels::pays() {
        MIN_TILES_PANELS
    } else {
        MIN_TILES_GEMM
    };
    if tiles(4) >= min_tiles {
        Some(Tile::F4)
    } else if tiles(2) >= min_tiles {
        Some(Tile::F2)
    } else {
        None
    }
}

/// A convolution's Winograd weights for each tile, each transformed the first time a map needs
/// it (a 224×224 ResNet-50 never uses F(4×4) in `layer3` and `layer4`, whose transformed
/// weights would be 4× the direct ones).
#[derive(Debug, Clone, Default)]
pub struct LazyWinograd {
    f2: OnceLock<WinogradWeights>,
    f4: OnceLock<WinogradWeights>,
}

impl LazyWinograd {
    /// The weights for `tile`, transformed on first use from the direct `[9·Cin, Cout]` that
    /// `weight` gives.
    pub fn get<E>(
        &self,
        tile: Tile,
        cin: usize,
        cout: usize,
        weight: impl FnOnce() -> Result<Vec<f32>, E>,
    ) -> Result<&WinogradWeights, E> {
        let cell = match tile {
            Tile::F2 => &self.f2,
            Tile::F4 => &self.f4,
        };
        if let Some(w) = cell.get() {
            return Ok(w);
        }
        let w = WinogradWeights::new(&weight()?, cin, cout, tile);
        Ok(cell.get_or_init(|| w))
    }
}

/// What follows the convolution's bias.
#[derive(Clone, Copy)]
pub enum After<'a> {
    /// Nothing.
    Linear,
    /// ReLU.
    Relu,
    /// Adds this `[B, H, W, Cout]` tensor, then ReLU.
    ResidualRelu(&'a [f32]),
}

wide_copies! {
    /// `dst [r, r, c] = L src Lᵀ` for `L [r, n]` and `src [n, n, c]` (channels innermost), through
    /// `tmp [r, n, c]`; zero coefficients are skipped. Run by the copy compiled for the CPU's widest
    /// vectors ([`crate::model::wide`]; the same bits as the baseline copy, tested below).
    fn sandwich, sandwich_avx512, sandwich_avx2 = sandwich_portable(
        l: &[f32],
        r: usize,
        n: usize,
        src: &[f32],
        c: usize,
        tmp: &mut [f32],
        dst: &mut [f32],
    );
}

/// The arithmetic of [`sandwich`].
#[inline(always)]
fn sandwich_portable(
    l: &[f32],
    r: usize,
    n: usize,
    src: &[f32],
    c: usize,
    tmp: &mut [f32],
    dst: &mut [f32],
) {
    tmp[..r * n * c].fill(0.0);
    for i in 0..r {
        for k in 0..n {
            let coef = l[i * n + k];
            if coef == 0.0 {
                continue;
            }
            for j in 0..n {
                let s = &src[(k * n + j) * c..][..c];
                let t = &mut tmp[(i * n + j) * c..][..c];
                for (t, &s) in t.iter_mut().zip(s) {
                    *t += coef * s;
                }
            }
        }
    }
    dst[..r * r * c].fill(0.0);
    for i in 0..r {
        for j in 0..r {
            let d = &mut dst[(i * r + j) * c..][..c];
            for k in 0..n {
                let coef = l[j * n + k];
                if coef == 0.0 {
                    continue;
                }
                let t = &tmp[(i * n + k) * c..][..c];
                for (d, &t) in d.iter_mut().zip(t) {
                    *d += coef * t;
                }
            }
        }
    }
}

/// The 3×3, stride-1, padding-1 convolution of `x [B, H, W, Cin]` (NHWC) with `w`, plus `bias`,
/// then `after`: `[B, H, W, Cout]`.
pub fn conv3x3(
    x: &[f32],
    (b, h, w_, cin): (usize, usize, usize, usize),
    w: &WinogradWeights,
    bias: &[f32],
    after: After<'_>,
) -> Vec<f32> {
    assert_eq!(cin, w.cin, "input channels");
    assert_eq!(x.len(), b * h * w_ * cin, "input size");
    assert_eq!(bias.len(), w.cout, "bias size");
    let t = w.tile.transforms();
    let (m, a) = (t.m, t.alpha);
    let aa = a * a;
    let cout = w.cout;
    let (th, tw) = (h.div_ceil(m), w_.div_ceil(m));
    let tiles = b * th * tw;
    let bt: Vec<f32> = t.bt.iter().map(|&v| v as f32).collect();
    let at: Vec<f32> = t.at.iter().map(|&v| v as f32).collect();

    // V [tiles, α², Cin]: one task per row of tiles.
    // The three buffers start uninitialised: every element is written below, once.
    let mut v: Vec<f32> = Vec::with_capacity(tiles * aa * cin);
    v.spare_capacity_mut()[..tiles * aa * cin]
        .par_chunks_mut(tw * aa * cin)
        .enumerate()
        .for_each(|(row, out)| {
            let (bi, ty) = (row / th, row % th);
            let img = &x[bi * h * w_ * cin..][..h * w_ * cin];
            let mut d = vec![0f32; aa * cin];
            let mut tmp = vec![0f32; aa * cin];
            let mut vt = vec![0f32; aa * cin];
            for (tx, dst) in out.chunks_exact_mut(aa * cin).enumerate() {
                for dy in 0..a {
                    let iy = (ty * m + dy) as isize - 1;
                    for dx in 0..a {
                        let ix = (tx * m + dx) as isize - 1;
                        let cell = &mut d[(dy * a + dx) * cin..][..cin];
                        if iy >= 0 && iy < h as isize && ix >= 0 && ix < w_ as isize {
                            let at = (iy as usize * w_ + ix as usize) * cin;
                            cell.copy_from_slice(&img[at..at + cin]);
                        } else {
                            cell.fill(0.0);
                        }
                    }
                }
                sandwich(&bt, a, a, &d, cin, &mut tmp, &mut vt);
                for (o, &v) in dst.iter_mut().zip(&vt) {
                    o.write(v);
                }
            }
        });
    // SAFETY: the chunks of `tw · α² · Cin` cover the `tiles · α² · Cin` values (`tiles` is `b ·
    // th` rows of `tw`), and each tile's `α² · Cin` values were written above.
    unsafe { v.set_len(tiles * aa * cin) };

    // M [α², tiles, Cout]: the α² products, one task each.
    let mut prod: Vec<f32> = Vec::with_capacity(aa * tiles * cout);
    prod.spare_capacity_mut()[..aa * tiles * cout]
        .par_chunks_mut(tiles * cout)
        .enumerate()
        .for_each(|(p, dst)| {
            if let Some(panels) = &w.panels {
                let vp = Rows {
                    data: &v[p * cin..],
                    m: tiles,
                    k: cin,
                    rs: aa * cin,
                };
                return product_serial_uninit(dst, vp, &panels[p]);
            }
            let vp = View {
                data: &v[p * cin..],
                rows: tiles,
                cols: cin,
                rs: aa * cin,
                cs: 1,
            };
            let up = View::row_major(&w.u[p * cin * cout..][..cin * cout], cin, cout);
            matmul_serial_uninit(dst, vp, up);
        });
    // SAFETY: the α² products each wrote all of their `tiles · Cout` values.
    unsafe { prod.set_len(aa * tiles * cout) };
    drop(v);

    // The output, one task per row of tiles of each image.
    let mut y: Vec<f32> = Vec::with_capacity(b * h * w_ * cout);
    y.spare_capacity_mut()[..b * h * w_ * cout]
        .par_chunks_mut(h * w_ * cout)
        .enumerate()
        .for_each(|(bi, img_out)| {
            img_out
                .par_chunks_mut(m * w_ * cout)
                .enumerate()
                .for_each(|(ty, out)| {
                    let rows = out.len() / (w_ * cout);
                    let mut mt = vec![0f32; aa * cout];
                    let mut tmp = vec![0f32; m * a * cout];
                    let mut yt = vec![0f32; m * m * cout];
                    for tx in 0..tw {
                        let tile = (bi * th + ty) * tw + tx;
                        for p in 0..aa {
                            mt[p * cout..][..cout]
                                .copy_from_slice(&prod[(p * tiles + tile) * cout..][..cout]);
                        }
                        sandwich(&at, m, a, &mt, cout, &mut tmp, &mut yt);
                        for i in 0..rows {
                            for j in 0..m.min(w_ - tx * m) {
                                let ox = tx * m + j;
                                let o = &mut out[(i * w_ + ox) * cout..][..cout];
                                let s = &yt[(i * m + j) * cout..][..cout];
                                match after {
                                    After::Linear => {
                                        for ((o, &s), &bv) in o.iter_mut().zip(s).zip(bias) {
                                            o.write(s + bv);
                                        }
                                    }
                                    After::Relu => {
                                        for ((o, &s), &bv) in o.iter_mut().zip(s).zip(bias) {
                                            o.write((s + bv).max(0.0));
                                        }
                                    }
                                    After::ResidualRelu(r) => {
                                        let oy = ty * m + i;
                                        let r = &r[((bi * h + oy) * w_ + ox) * cout..][..cout];
                                        for (((o, &s), &bv), &rv) in
                                            o.iter_mut().zip(s).zip(bias).zip(r)
                                        {
                                            o.write((s + bv + rv).max(0.0));
                                        }
                                    }
                                }
                            }
                        }
                    }
                });
        });
    // SAFETY: per image, the chunks of `m` output rows cover its `h` rows; in each, every row `i`
    // and column `tx · m + j < W` (all `W` of them) was written for all `Cout` channels.
    unsafe { y.set_len(b * h * w_ * cout) };
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::resnet::cpu_ops::Im2Col;
    use candle_core::{Device, Tensor};

    /// The direct convolution (im2col + product + bias + after) as the trunk computes it.
    fn direct(
        x: &[f32],
        dims: (usize, usize, usize, usize),
        weight: &[f32],
        cout: usize,
        bias: &[f32],
        after: After<'_>,
    ) -> Vec<f32> {
        let (b, h, w, cin) = dims;
        let xt = Tensor::from_slice(x, (b, h, w, cin), &Device::Cpu).unwrap();
        let cols = xt
            .apply_op1_no_bwd(&Im2Col {
                k: 3,
                stride: 1,
                pad: 1,
            })
            .unwrap();
        let wt = Tensor::from_slice(weight, (9 * cin, cout), &Device::Cpu).unwrap();
        let y = cols.matmul(&wt).unwrap().flatten_all().unwrap();
        let y = y.to_vec1::<f32>().unwrap();
        y.chunks(cout)
            .enumerate()
            .flat_map(|(row, ys)| {
                ys.iter().zip(bias).enumerate().map(move |(co, (&v, &bv))| {
                    let v = v + bv;
                    match after {
                        After::Linear => v,
                        After::Relu => v.max(0.0),
                        After::ResidualRelu(r) => (v + r[row * cout + co]).max(0.0),
                    }
                })
            })
            .collect()
    }

    fn random(n: usize, seed: u64, scale: f32) -> Vec<f32> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-scale..scale)).collect()
    }

    /// Max |a − b| over max |b|.
    fn relative(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        let diff = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        let top = b.iter().map(|y| y.abs()).fold(0f32, f32::max);
        diff / top.max(f32::MIN_POSITIVE)
    }

    #[test]
    fn winograd_matches_the_direct_convolution() {
        // Sizes the tiles do and do not divide, one and several images, a channel count that is
        // not a multiple of the vector width; output channels in whole panels of 64 (products on
        // `f32_panels` where the CPU has AVX-512) and not.
        for tile in [Tile::F2, Tile::F4] {
            for &(b, h, w, cin, cout) in &[
                (1, 7, 7, 24, 40),
                (2, 8, 9, 13, 16),
                (1, 14, 14, 64, 64),
                (2, 9, 10, 32, 128),
                (3, 5, 3, 8, 7),
                (1, 1, 1, 4, 4),
            ] {
                let x = random(b * h * w * cin, 1, 2.0);
                // He-like scale, as a trained ResNet's folded weights.
                let weight = random(9 * cin * cout, 2, (2.0 / (9.0 * cin as f32)).sqrt());
                let bias = random(cout, 3, 0.1);
                let res = random(b * h * w * cout, 4, 1.0);
                let wg = WinogradWeights::new(&weight, cin, cout, tile);
                for after in [After::Linear, After::Relu, After::ResidualRelu(&res)] {
                    let got = conv3x3(&x, (b, h, w, cin), &wg, &bias, after);
                    let want = direct(&x, (b, h, w, cin), &weight, cout, &bias, after);
                    let rel = relative(&got, &want);
                    assert!(
                        rel <= 1e-4,
                        "{tile:?} {b}x{h}x{w}x{cin} -> {cout}: relative error {rel}"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod wide_tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    type Sandwich = unsafe fn(&[f32], usize, usize, &[f32], usize, &mut [f32], &mut [f32]);

    /// Every compiled copy of the transform this CPU can run gives the baseline copy's bits, for
    /// both tiles' input and output transforms and a channel count that fills no vector.
    #[test]
    fn wide_sandwiches_give_the_baseline_bits() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut copies: Vec<(&str, Sandwich)> =
            vec![("baseline", sandwich_portable), ("dispatch", sandwich)];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                copies.push(("avx512", sandwich_avx512));
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                copies.push(("avx2", sandwich_avx2));
            }
        }
        let c = 45;
        for tile in [Tile::F2, Tile::F4] {
            let t = tile.transforms();
            for (l, r, n) in [(&t.bt, t.alpha, t.alpha), (&t.at, t.m, t.alpha)] {
                let l: Vec<f32> = l.iter().map(|&v| v as f32).collect();
                let src: Vec<f32> = (0..n * n * c)
                    .map(|_| rng.random_range(-1.0..1.0))
                    .collect();
                let mut want: Option<Vec<u32>> = None;
                for &(name, f) in &copies {
                    let (mut tmp, mut dst) = (vec![0f32; r * n * c], vec![0f32; r * r * c]);
                    // SAFETY: only the copies whose features the CPU has were listed.
                    unsafe { f(&l, r, n, &src, c, &mut tmp, &mut dst) };
                    let bits: Vec<u32> = dst.iter().map(|x| x.to_bits()).collect();
                    match &want {
                        None => want = Some(bits),
                        Some(w) => assert_eq!(&bits, w, "{name} differs from the baseline"),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod timing {
    use super::*;
    use crate::model::f32_panels::tests::min_ms;
    use crate::model::resnet::cpu_ops::Im2Col;
    use candle_core::{Device, Tensor};

    #[test]
    #[ignore]
    fn time_layers() {
        for &(b, hw, c) in &[
            (1, 56, 64),
            (1, 28, 128),
            (1, 14, 256),
            (1, 7, 512),
            (16, 56, 64),
            (16, 14, 256),
            (16, 7, 512),
        ] {
            let x = vec![0.5f32; b * hw * hw * c];
            let wt = vec![0.01f32; 9 * c * c];
            let bias = vec![0f32; c];
            let xt = Tensor::from_slice(&x, (b, hw, hw, c), &Device::Cpu).unwrap();
            let wtt = Tensor::from_slice(&wt, (9 * c, c), &Device::Cpu).unwrap();
            let d = crate::pool::in_pool(|| {
                min_ms(|| {
                    let cols = xt
                        .apply_op1_no_bwd(&Im2Col {
                            k: 3,
                            stride: 1,
                            pad: 1,
                        })
                        .unwrap();
                    crate::model::cpu_math::matmul_fresh(&cols, &wtt).unwrap();
                })
            });
            let f2w = WinogradWeights::new(&wt, c, c, Tile::F2);
            let f4w = WinogradWeights::new(&wt, c, c, Tile::F4);
            let f2 = crate::pool::in_pool(|| {
                min_ms(|| {
                    conv3x3(&x, (b, hw, hw, c), &f2w, &bias, After::Relu);
                })
            });
            let f4 = crate::pool::in_pool(|| {
                min_ms(|| {
                    conv3x3(&x, (b, hw, hw, c), &f4w, &bias, After::Relu);
                })
            });
            eprintln!("b{b} {hw}x{hw}x{c}: direct {d:.2} f2 {f2:.2} f4 {f4:.2} ms");
        }
    }
}
