//! f32 products with a constant right operand (a convolution's weights) packed once, on AVX-512.
//!
//! `gemm` packs its operands on every call. For the ResNet's convolutions at batch 1 that is the
//! weights, repacked for every block of columns and by each thread: `perf` of `bench encoder
//! --batches 1` on Zen 4 put 11% of all samples (a fifth of the forward pass) in `gemm`'s
//! `pack_lhs`. Here the weights are laid out once, at first use, as panels of [`PANEL`] columns
//! (`[K, 64]` each, row-major), and the kernel multiplies six rows of the left operand by a panel
//! at a time: per step of `k`, four 16-lane loads of the panel, six broadcasts, 24 FMAs into 24
//! accumulators (the same register tile as gemm's `x4x6`), with the bias, residual and ReLU
//! applied as the last block of `k` is stored. Written by hand because no crate takes prepacked
//! operands; CPUs without AVX-512F keep `gemm` ([`pays`]).
//!
//! Each output row is summed in the same order whatever the other rows, the split between tasks
//! or the thread count, so an image's features do not depend on its batch.

use crate::model::cpu_math::SendPtr;
use rayon::prelude::*;

/// Columns per panel: four 16-lane registers.
pub const PANEL: usize = 64;
/// Rows of the left operand per tile.
const MR: usize = 6;
/// Steps of `k` per pass over a panel: a 256 × 64 panel chunk (64 KB, in L2) is reused by every
/// tile of rows before the next chunk. `bench encoder --batches 1` on Zen 4, six alternating
/// runs each (ms): 128: 47.1–57.1, 256: 48.1–54.3, 512: 46.8–54.8; 256 kept.
const KC: usize = 256;

/// Whether products run here rather than through `gemm`: the CPU has AVX-512F, and
/// `CAPTIONER_PREPACKED` is not `off` (for side-by-side comparisons in one binary).
pub fn pays() -> bool {
    static PAYS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PAYS.get_or_init(|| {
        let off = std::env::var("CAPTIONER_PREPACKED").is_ok_and(|v| v == "off");
        !off && avx512_available()
    })
}

fn avx512_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// A `[K, N]` matrix, `N` a multiple of [`PANEL`], as `N / 64` panels of `[K, 64]`, row-major.
#[derive(Debug, Clone)]
pub struct F32Panels {
    k: usize,
    n: usize,
    data: Vec<f32>,
}

impl F32Panels {
    /// Packs a row-major `[k, n]` matrix; `None` when `n` is not a multiple of [`PANEL`] or `k`
    /// is 0 (those stay with `gemm`).
    pub fn pack(w: &[f32], k: usize, n: usize) -> Option<Self> {
        if n == 0 || !n.is_multiple_of(PANEL) || k == 0 || w.len() != k * n {
            return None;
        }
        let mut data = vec![0f32; k * n];
        data.par_chunks_mut(k * PANEL)
            .enumerate()
            .for_each(|(p, panel)| {
                for (kk, dst) in panel.chunks_exact_mut(PANEL).enumerate() {
                    dst.copy_from_slice(&w[kk * n + p * PANEL..][..PANEL]);
                }
            });
        Some(Self { k, n, data })
    }

    /// Rows of the packed matrix.
    pub fn k(&self) -> usize {
        self.k
    }

    /// The matrix back in row-major order.
    pub fn unpack(&self) -> Vec<f32> {
        let (k, n) = (self.k, self.n);
        let mut w = vec![0f32; k * n];
        for (p, panel) in self.data.chunks_exact(k * PANEL).enumerate() {
            for (kk, src) in panel.chunks_exact(PANEL).enumerate() {
                w[kk * n + p * PANEL..][..PANEL].copy_from_slice(src);
            }
        }
        w
    }

    /// Columns of the packed matrix.
    pub fn n(&self) -> usize {
        self.n
    }

    fn panels(&self) -> usize {
        self.n / PANEL
    }
}

/// What is done to each output value after the product: `relu?(y + bias + residual?)`.
#[derive(Debug, Clone, Copy)]
pub struct Finish<'a> {
    /// One value per output column.
    pub bias: &'a [f32],
    /// A row-major `[m, n]` matrix added after the bias.
    pub residual: Option<&'a [f32]>,
    /// Whether negative results become 0.
    pub relu: bool,
}

/// The left operand: `m` rows of `k` values, row `r` at `data[r * rs..]`.
#[derive(Debug, Clone, Copy)]
pub struct Rows<'a> {
    pub data: &'a [f32],
    pub m: usize,
    pub k: usize,
    pub rs: usize,
}

impl Rows<'_> {
    fn fits(&self) -> bool {
        self.m == 0 || (self.m - 1) * self.rs + self.k <= self.data.len()
    }
}

fn check(a: &Rows<'_>, w: &F32Panels, finish: Option<&Finish<'_>>) {
    assert!(avx512_available(), "f32 panel products need AVX-512F");
    assert!(
        a.k == w.k && a.fits(),
        "[{}, {}] rows {} apart in {} values · [{}, {}]",
        a.m,
        a.k,
        a.rs,
        a.data.len(),
        w.k,
        w.n
    );
    if let Some(f) = finish {
        assert_eq!(f.bias.len(), w.n, "bias length");
        if let Some(r) = f.residual {
            assert_eq!(r.len(), a.m * w.n, "residual length");
        }
    }
}

/// `relu?(a · w + bias + residual?)` as a fresh row-major `[m, n]` matrix, split across rayon's
/// threads by blocks of rows and, when the rows are few (batch 1's late stages), by panels.
///
/// # Panics
/// When the CPU lacks AVX-512F or the shapes do not match (internal errors: callers check
/// [`pays`] and build both operands).
pub fn product(a: Rows<'_>, w: &F32Panels, finish: Option<Finish<'_>>) -> Vec<f32> {
    check(&a, w, finish.as_ref());
    let (m, n) = (a.m, w.n);
    let mut out: Vec<f32> = Vec::with_capacity(m * n);
    if m == 0 {
        return out;
    }
    let threads = rayon::current_num_threads().max(1);
    // Row blocks of whole tiles, at most 192 rows (a 192 × 128 block of the left operand is
    // 96 KB, in L2), enough of them for 8 per thread where the rows allow.
    let tiles = m.div_ceil(MR);
    let row_blocks = tiles.div_ceil(192 / MR).max(tiles.min(8 * threads));
    let tiles_per_block = tiles.div_ceil(row_blocks);
    let row_blocks = tiles.div_ceil(tiles_per_block);
    let block_rows = tiles_per_block * MR;
    // Few row blocks: split the panels too, so every thread has work.
    let panels = w.panels();
    let panel_groups = panels.min((4 * threads).div_ceil(row_blocks)).max(1);
    let per_group = panels.div_ceil(panel_groups);
    let panel_groups = panels.div_ceil(per_group);
    let dst = SendPtr(out.spare_capacity_mut().as_mut_ptr() as *mut f32);
    (0..row_blocks * panel_groups)
        .into_par_iter()
        .for_each(|task| {
            let (rb, pg) = (task / panel_groups, task % panel_groups);
            let rows = rb * block_rows..((rb + 1) * block_rows).min(m);
            let cols = pg * per_group..((pg + 1) * per_group).min(panels);
            // SAFETY: AVX-512F checked by `check`; the rows and panels are in range; each
            // (row block, panel group) belongs to this task alone, so its part of `out` is
            // written by no other.
            unsafe { block(a, w, rows, cols, dst.get(), finish.as_ref()) };
        });
    // SAFETY: the tasks cover every row block × panel group, and `block` writes every element
    // of its rows × panels.
    unsafe { out.set_len(m * n) };
    out
}

/// `dst = a · w` on the calling thread alone, for callers that run several products side by
/// side (the Winograd convolution's α² products). Every element of `dst` is written.
///
/// # Panics
/// As [`product`], or when `dst` is not `m · n` long.
pub fn product_serial_uninit(dst: &mut [std::mem::MaybeUninit<f32>], a: Rows<'_>, w: &F32Panels) {
    check(&a, w, None);
    assert_eq!(dst.len(), a.m * w.n, "output length");
    // SAFETY: as in `product`, with one task covering all rows and panels of `dst`.
    unsafe {
        block(
            a,
            w,
            0..a.m,
            0..w.panels(),
            dst.as_mut_ptr() as *mut f32,
            None,
        )
    };
}

/// The rows × panels block of the product into `out` (row-major, `w.n` columns), block of `k`
/// by block of `k`, the tile kernel over every tile of rows of each panel.
///
/// # Safety
/// AVX-512F; `rows` within `a.m`, `panels` within `w`'s panels; `out` valid for writes of
/// those rows × columns.
#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx512f"))]
unsafe fn block(
    a: Rows<'_>,
    w: &F32Panels,
    rows: std::ops::Range<usize>,
    panels: std::ops::Range<usize>,
    out: *mut f32,
    finish: Option<&Finish<'_>>,
) {
    let (k, n) = (w.k, w.n);
    let mut k0 = 0;
    while k0 < k {
        let kc = KC.min(k - k0);
        let last = k0 + kc == k;
        for p in panels.clone() {
            let panel = w.data.as_ptr().add(p * k * PANEL + k0 * PANEL);
            let col0 = p * PANEL;
            let fin = match finish {
                Some(f) if last => Some(TileFinish {
                    bias: f.bias.as_ptr().add(col0),
                    residual: f.residual.map(|r| r.as_ptr().add(col0)),
                    relu: f.relu,
                }),
                _ => None,
            };
            let mut r = rows.start;
            while r < rows.end {
                let mr = MR.min(rows.end - r);
                let t = Tile {
                    a: a.data.as_ptr().add(r * a.rs + k0),
                    a_rs: a.rs,
                    panel,
                    kc,
                    c: out.add(r * n + col0),
                    c_rs: n,
                    accumulate: k0 > 0,
                    finish: fin.map(|f| TileFinish {
                        residual: f.residual.map(|p| p.add(r * n)),
                        ..f
                    }),
                };
                match mr {
                    6 => tile::<6>(&t),
                    5 => tile::<5>(&t),
                    4 => tile::<4>(&t),
                    3 => tile::<3>(&t),
                    2 => tile::<2>(&t),
                    _ => tile::<1>(&t),
                }
                r += mr;
            }
        }
        k0 += kc;
    }
}

/// The finish of one tile: pointers at its first column (and, for the residual, first row).
#[derive(Clone, Copy)]
struct TileFinish {
    bias: *const f32,
    residual: Option<*const f32>,
    relu: bool,
}

/// One tile's operands: `R` rows of `a` (`a_rs` apart) times `kc` rows of a panel, into `R`
/// rows of 64 values of `c` (`c_rs` apart), added to what `c` holds when `accumulate`.
struct Tile {
    a: *const f32,
    a_rs: usize,
    panel: *const f32,
    kc: usize,
    c: *mut f32,
    c_rs: usize,
    accumulate: bool,
    finish: Option<TileFinish>,
}

/// `c[0..R][0..64] (+)= a[0..R][0..kc] · panel[0..kc][0..64]`, then the finish if any.
///
/// # Safety
/// AVX-512F; the pointers valid for the extents above (and the residual for `R` rows `c_rs`
/// apart).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn tile<const R: usize>(t: &Tile) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); 4]; R];
    if t.accumulate {
        for (r, row) in acc.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = _mm512_loadu_ps(t.c.add(r * t.c_rs + 16 * j));
            }
        }
    }
    for kk in 0..t.kc {
        let p = t.panel.add(kk * PANEL);
        let w = [
            _mm512_loadu_ps(p),
            _mm512_loadu_ps(p.add(16)),
            _mm512_loadu_ps(p.add(32)),
            _mm512_loadu_ps(p.add(48)),
        ];
        for (r, row) in acc.iter_mut().enumerate() {
            let x = _mm512_set1_ps(*t.a.add(r * t.a_rs + kk));
            for (v, &wj) in row.iter_mut().zip(&w) {
                *v = _mm512_fmadd_ps(x, wj, *v);
            }
        }
    }
    if let Some(f) = t.finish {
        let zero = _mm512_setzero_ps();
        for (r, row) in acc.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                let mut y = _mm512_add_ps(*v, _mm512_loadu_ps(f.bias.add(16 * j)));
                if let Some(res) = f.residual {
                    y = _mm512_add_ps(y, _mm512_loadu_ps(res.add(r * t.c_rs + 16 * j)));
                }
                if f.relu {
                    y = _mm512_max_ps(y, zero);
                }
                *v = y;
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        for (j, v) in row.iter().enumerate() {
            _mm512_storeu_ps(t.c.add(r * t.c_rs + 16 * j), *v);
        }
    }
}

/// No kernel outside x86_64: [`pays`] is false there, so no product reaches it.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn tile<const R: usize>(_: &Tile) {
    unreachable!("f32 panels run on x86_64 only")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// `relu?(a·w + bias + residual?)` in f64, the reference, with the sum of the terms'
    /// magnitudes (what an f32 sum's rounding error is proportional to).
    fn reference(
        a: &Rows<'_>,
        w: &[f32],
        n: usize,
        finish: Option<&Finish<'_>>,
    ) -> Vec<(f64, f64)> {
        let mut out = vec![(0f64, 0f64); a.m * n];
        for r in 0..a.m {
            for c in 0..n {
                let (mut s, mut mag) = (0f64, 0f64);
                for kk in 0..a.k {
                    let t = a.data[r * a.rs + kk] as f64 * w[kk * n + c] as f64;
                    s += t;
                    mag += t.abs();
                }
                if let Some(f) = finish {
                    s += f.bias[c] as f64;
                    mag += (f.bias[c] as f64).abs();
                    if let Some(res) = f.residual {
                        s += res[r * n + c] as f64;
                        mag += (res[r * n + c] as f64).abs();
                    }
                    if f.relu {
                        s = s.max(0.0);
                    }
                }
                out[r * n + c] = (s, mag);
            }
        }
        out
    }

    /// The largest error relative to the terms' magnitudes.
    fn max_error(got: &[f32], want: &[(f64, f64)]) -> f64 {
        assert_eq!(got.len(), want.len());
        got.iter()
            .zip(want)
            .map(|(&g, &(w, mag))| (g as f64 - w).abs() / mag.max(1e-30))
            .fold(0.0, f64::max)
    }

    /// Every tile height (1–6 rows left over), one and several blocks of `k` (a block boundary
    /// inside and at the end), one and many panels, rows further apart than `k`, and the three
    /// finishes, against an f64 reference; and a row's values do not depend on the other rows.
    #[test]
    fn panel_products_match_the_reference() {
        if !avx512_available() {
            eprintln!("skipped: no AVX-512F");
            return;
        }
        let mut seed = 1;
        for &(m, k, n, extra) in &[
            (1, 1, 64, 0),
            (5, 3, 64, 2),
            (6, 128, 128, 0),
            (7, 129, 64, 5),
            (13, 300, 192, 0),
            (49, 512, 2048, 0),
            (200, 147, 64, 1),
        ] {
            let rs = k + extra;
            let data = random(m * rs, seed);
            let w = random(k * n, seed + 1);
            let bias = random(n, seed + 2);
            let residual = random(m * n, seed + 3);
            seed += 4;
            let a = Rows {
                data: &data,
                m,
                k,
                rs,
            };
            let packed = F32Panels::pack(&w, k, n).expect("n is a multiple of 64");
            let finishes = [
                None,
                Some(Finish {
                    bias: &bias,
                    residual: None,
                    relu: false,
                }),
                Some(Finish {
                    bias: &bias,
                    residual: None,
                    relu: true,
                }),
                Some(Finish {
                    bias: &bias,
                    residual: Some(&residual),
                    relu: true,
                }),
            ];
            for finish in finishes {
                let got = product(a, &packed, finish);
                let want = reference(&a, &w, n, finish.as_ref());
                let err = max_error(&got, &want);
                let what = finish.map(|f| (f.residual.is_some(), f.relu));
                assert!(
                    err < 1e-6,
                    "[{m}, {k}]·[{k}, {n}] (residual, relu) {what:?}: {err}"
                );
            }
            let mut serial = vec![std::mem::MaybeUninit::new(f32::NAN); m * n];
            product_serial_uninit(&mut serial, a, &packed);
            let serial: Vec<f32> = serial.iter().map(|v| unsafe { v.assume_init() }).collect();
            assert_eq!(
                serial,
                product(a, &packed, None),
                "[{m}, {k}]·[{k}, {n}] serial"
            );
            // The last row alone gives the bits it had among all the rows.
            let last = Rows {
                data: &data[(m - 1) * rs..],
                m: 1,
                k,
                rs,
            };
            assert_eq!(product(last, &packed, None)[..], serial[(m - 1) * n..]);
        }
    }

    #[test]
    fn only_whole_panels_are_packed() {
        assert!(F32Panels::pack(&[0.0; 3 * 48], 3, 48).is_none());
        assert!(F32Panels::pack(&[0.0; 0], 0, 64).is_none());
        assert!(F32Panels::pack(&[0.0; 5], 1, 64).is_none());
        let w: Vec<f32> = (0..2 * 128).map(|i| i as f32).collect();
        let p = F32Panels::pack(&w, 2, 128).unwrap();
        // Panel 1, row 1 starts with column 64 of row 1.
        assert_eq!(p.data[2 * 64 + 64], w[128 + 64]);
        assert_eq!((p.k(), p.n()), (2, 128));
        assert_eq!(p.unpack(), w);
    }

    /// `cargo test --release --lib time_panel_products -- --ignored --nocapture`: min of 15
    /// calls, ms, gemm (`matmul_fresh`) against the panel product, for the batch-1 ResNet-50's
    /// product shapes `[m, k] · [k, n]`.
    #[test]
    #[ignore]
    fn time_panel_products() {
        use candle_core::{Device, Tensor};
        let (mut total_gemm, mut total_panels) = (0.0, 0.0);
        for &(m, k, n) in &[
            (12544, 147, 64),
            (3136, 64, 64),
            (3136, 64, 256),
            (3136, 256, 64),
            (3136, 256, 128),
            (784, 1152, 128),
            (784, 128, 512),
            (784, 512, 128),
            (196, 2304, 256),
            (196, 256, 1024),
            (196, 1024, 256),
            (49, 4608, 512),
            (49, 512, 2048),
            (49, 2048, 512),
            (49, 1024, 2048),
        ] {
            let a = random(m * k, 1);
            let w = random(k * n, 2);
            let at = Tensor::from_slice(&a, (m, k), &Device::Cpu).unwrap();
            let wt = Tensor::from_slice(&w, (k, n), &Device::Cpu).unwrap();
            let packed = F32Panels::pack(&w, k, n).unwrap();
            let rows = Rows {
                data: &a,
                m,
                k,
                rs: k,
            };
            let g = crate::pool::in_pool(|| {
                min_ms(|| {
                    crate::model::cpu_math::matmul_fresh(&at, &wt).unwrap();
                })
            });
            let p = crate::pool::in_pool(|| {
                min_ms(|| {
                    product(rows, &packed, None);
                })
            });
            total_gemm += g;
            total_panels += p;
            let gflop = 2.0 * (m * k * n) as f64 / 1e9;
            eprintln!(
                "[{m}, {k}]·[{k}, {n}]: gemm {g:.3} ms ({:.0} GFLOP/s), panels {p:.3} ms ({:.0})",
                gflop / g * 1e3,
                gflop / p * 1e3
            );
        }
        eprintln!("total: gemm {total_gemm:.2} ms, panels {total_panels:.2} ms");
    }

    /// The fastest of 15 calls of `f` after one warm-up, in ms (the timing tests here and in
    /// the Winograd module).
    pub(crate) fn min_ms(mut f: impl FnMut()) -> f64 {
        f();
        (0..15)
            .map(|_| {
                let t = std::time::Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1e3
            })
            .fold(f64::INFINITY, f64::min)
    }
}
