//! The recurrent product of the training LSTM, `rows · M` for a weight matrix `M [K, N]` packed
//! once per pass into panels of [`WIDTH`] columns, and the panel kernel that computes it.
//!
//! Why our own kernel (measured, docs/performance.md): each forward step of the recurrence is a
//! small product (64 × 512 × 2048 at batch 64) followed by the gate arithmetic. Through `gemm`
//! every step packed its operands again and ran as its own parallel section, with the gates in a
//! second one. Here W_hhᵀ is packed once per pass, and each step is one parallel section over
//! runs of batch rows that computes its rows' products and then their gates while they are in
//! the cache. The backward pass's per-step product (64 × 2048 × 512) uses the same kernel with
//! W_hh packed as it is where the CPU has AVX-512 ([`panels_pay_backward`]).
//!
//! Every output element is summed over `k` in the same order whatever the rows, the tile or the
//! thread count, so a row's result does not depend on the batch around it.

use rayon::prelude::*;

/// Columns per panel: 16 f32, one AVX-512 register or two AVX2 registers per row of a tile.
pub(super) const WIDTH: usize = 16;
/// Steps of `k` per pass over a panel: a 256 × 16 panel chunk is 16 KB, so it stays in the L1
/// cache while the tile rows stream past it.
const KC: usize = 256;

/// Copies `rows` rows of `cols` values, `src_rs` apart in `src`, into `dst` with rows
/// `cols + 16` apart, and returns that stride. The left operand of [`panel_product`] is read one
/// value per row at a time from `MR` rows: rows a multiple of 4 KB apart (the LSTM's saved states,
/// 6H = 12 KB at H 512) all fall into the same sets of the L1 cache and evict the panel.
pub(super) fn staggered_rows(
    dst: &mut Vec<f32>,
    src: &[f32],
    src_rs: usize,
    rows: usize,
    cols: usize,
) -> usize {
    let rs = cols + 16;
    dst.clear();
    dst.resize(rows * rs, 0.0);
    for (d, s) in dst.chunks_exact_mut(rs).zip(src.chunks(src_rs)) {
        d[..cols].copy_from_slice(&s[..cols]);
    }
    rs
}

/// A `[K, N]` matrix as `ceil(N / WIDTH)` panels of `K × WIDTH` values, row-major within each,
/// columns past `N` zero.
pub(super) struct Panels {
    data: Vec<f32>,
    k: usize,
}

impl Panels {
    /// Packs `[K, N]` given by `at(kk, col)`; `order` lists which of the matrix's column blocks of
    /// `WIDTH` goes into each panel, and how many of its columns are real (`(first column, width)`).
    pub fn pack(
        k: usize,
        order: impl IntoIterator<Item = (usize, usize)>,
        at: impl Fn(usize, usize) -> f32 + Sync,
    ) -> Self {
        let order: Vec<(usize, usize)> = order.into_iter().collect();
        let mut data = vec![0f32; order.len() * k * WIDTH];
        // Panels in parallel: packing W_hh once per pass is a few percent of a small step.
        data.par_chunks_mut((k * WIDTH).max(1))
            .zip(&order)
            .for_each(|(panel, &(first, width))| {
                for (kk, row) in panel.chunks_exact_mut(WIDTH).enumerate() {
                    for (c, x) in row[..width].iter_mut().enumerate() {
                        *x = at(kk, first + c);
                    }
                }
            });
        Self { data, k }
    }

    /// Panel `p`.
    pub fn panel(&self, p: usize) -> &[f32] {
        &self.data[p * self.k * WIDTH..(p + 1) * self.k * WIDTH]
    }

    /// `out [m, panels · WIDTH] = rows · M` for the `m` rows of `k` values `src_rs` apart in `src`
    /// (copied into `a` first, [`staggered_rows`]); `out` is resized and overwritten.
    pub fn product_of_rows(
        &self,
        out: &mut Vec<f32>,
        a: &mut Vec<f32>,
        src: &[f32],
        src_rs: usize,
        m: usize,
    ) {
        let panels = self.data.len() / (self.k * WIDTH).max(1);
        let out_rs = panels * WIDTH;
        let a_rs = staggered_rows(a, src, src_rs, m, self.k);
        out.clear();
        out.resize(m * out_rs, 0.0);
        for p in 0..panels {
            panel_product(&mut out[p * WIDTH..], out_rs, a, a_rs, m, self.panel(p));
        }
    }
}

/// `out[r · out_rs + c] += Σ_kk a[r · a_rs + kk] · panel[kk · WIDTH + c]` for `rows` rows, `c` in
/// `0..WIDTH` and `kk` in `0..k` (`k` = the panel's depth): one panel of a [`Panels`] product.
///
/// # Panics
/// When a slice is too short for the rows, strides and `k` given.
pub(super) fn panel_product(
    out: &mut [f32],
    out_rs: usize,
    a: &[f32],
    a_rs: usize,
    rows: usize,
    panel: &[f32],
) {
    panel_product_on(isa(), out, out_rs, a, a_rs, rows, panel)
}

/// [`panel_product`] with the kernel of `isa`, which this CPU must have (the tests run every
/// kernel the CPU has).
fn panel_product_on(
    isa: Isa,
    out: &mut [f32],
    out_rs: usize,
    a: &[f32],
    a_rs: usize,
    rows: usize,
    panel: &[f32],
) {
    let k = panel.len() / WIDTH;
    if rows == 0 || k == 0 {
        return;
    }
    assert!(
        out_rs >= WIDTH
            && out.len() >= (rows - 1) * out_rs + WIDTH
            && a_rs >= k
            && a.len() >= (rows - 1) * a_rs + k,
        "panel product: operands too short"
    );
    match isa {
        // SAFETY: `isa` checked that the CPU has the features; the lengths were checked above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { product_avx512(out, out_rs, a, a_rs, rows, panel, k) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { product_avx2(out, out_rs, a, a_rs, rows, panel, k) },
        // SAFETY: the lengths were checked above.
        _ => unsafe {
            product::<PORTABLE_ROWS>(out, out_rs, a, a_rs, rows, panel, k, |x, y, acc| {
                acc + x * y
            })
        },
    }
}

/// Whether the backward pass's per-step product `dgates · W_hh` runs on this kernel rather than
/// `gemm`. Measured (docs/performance.md): on Zen 4 with AVX-512 the backward through time took
/// 40.7–42.7 ms against gemm's 43.6–47.5 (bench shapes, min of 10, three rounds); on Zen 3 with
/// AVX2 the kernel made the step's backward slower (77–81 → 89–92 ms).
pub(super) fn panels_pay_backward() -> bool {
    isa() == Isa::Avx512
}

/// Rows per tile of each kernel (see the kernels for why).
const AVX512_ROWS: usize = 12;
const AVX2_ROWS: usize = 4;
const PORTABLE_ROWS: usize = 3;

/// The instruction set the kernel runs with, detected once.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
enum Isa {
    Avx512,
    Avx2,
    Portable,
}

/// The kernels this CPU can run, the fastest first.
fn isas() -> Vec<Isa> {
    let mut all = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        let fma = std::arch::is_x86_feature_detected!("fma");
        if fma && std::arch::is_x86_feature_detected!("avx512f") {
            all.push(Isa::Avx512);
        }
        if fma && std::arch::is_x86_feature_detected!("avx2") {
            all.push(Isa::Avx2);
        }
    }
    all.push(Isa::Portable);
    all
}

fn isa() -> Isa {
    static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
    *ISA.get_or_init(|| isas()[0])
}

/// Twelve rows per tile: twelve 16-lane accumulators, enough independent chains for two FMA pipes.
///
/// # Safety
/// The CPU has AVX-512F and FMA; lengths as [`panel_product`] checks.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn product_avx512(
    out: &mut [f32],
    out_rs: usize,
    a: &[f32],
    a_rs: usize,
    rows: usize,
    panel: &[f32],
    k: usize,
) {
    product::<AVX512_ROWS>(out, out_rs, a, a_rs, rows, panel, k, f32::mul_add)
}

/// Four rows per tile: eight 8-lane accumulators, as many chains as two FMA pipes of latency 4
/// keep busy (six rows measured the same, and split a batch of 64 between two threads unevenly).
///
/// # Safety
/// The CPU has AVX2 and FMA; lengths as [`panel_product`] checks.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn product_avx2(
    out: &mut [f32],
    out_rs: usize,
    a: &[f32],
    a_rs: usize,
    rows: usize,
    panel: &[f32],
    k: usize,
) {
    product::<AVX2_ROWS>(out, out_rs, a, a_rs, rows, panel, k, f32::mul_add)
}

/// The blocked loop: chunks of [`KC`] steps of `k`, within each tiles of `MR` rows, then the
/// remaining rows in tiles of 4, 2 and 1. Always inlined, so it is compiled with its caller's
/// features.
///
/// # Safety
/// Lengths as [`panel_product`] checks.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn product<const MR: usize>(
    out: &mut [f32],
    out_rs: usize,
    a: &[f32],
    a_rs: usize,
    rows: usize,
    panel: &[f32],
    k: usize,
    madd: impl Fn(f32, f32, f32) -> f32 + Copy,
) {
    let (o, a, p) = (out.as_mut_ptr(), a.as_ptr(), panel.as_ptr());
    let mut k0 = 0;
    while k0 < k {
        let k1 = (k0 + KC).min(k);
        let mut r = 0;
        while r + MR <= rows {
            tile::<MR>(
                o.add(r * out_rs),
                out_rs,
                a.add(r * a_rs),
                a_rs,
                p,
                k0,
                k1,
                madd,
            );
            r += MR;
        }
        while r < rows {
            let left = rows - r;
            let (o, a) = (o.add(r * out_rs), a.add(r * a_rs));
            r += if left >= 4 && MR > 4 {
                tile::<4>(o, out_rs, a, a_rs, p, k0, k1, madd);
                4
            } else if left >= 2 {
                tile::<2>(o, out_rs, a, a_rs, p, k0, k1, madd);
                2
            } else {
                tile::<1>(o, out_rs, a, a_rs, p, k0, k1, madd);
                1
            };
        }
        k0 = k1;
    }
}

/// `MR` rows × [`WIDTH`] columns of the output, over `k0..k1`, in registers.
///
/// # Safety
/// `out` valid for `MR` rows of `WIDTH` values `out_rs` apart, `a` for `MR` rows of `k1` values
/// `a_rs` apart, `panel` for `k1` rows of `WIDTH`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<const MR: usize>(
    out: *mut f32,
    out_rs: usize,
    a: *const f32,
    a_rs: usize,
    panel: *const f32,
    k0: usize,
    k1: usize,
    madd: impl Fn(f32, f32, f32) -> f32,
) {
    let mut acc = [[0f32; WIDTH]; MR];
    for (r, acc) in acc.iter_mut().enumerate() {
        *acc = *(out.add(r * out_rs) as *const [f32; WIDTH]);
    }
    for kk in k0..k1 {
        let b = &*(panel.add(kk * WIDTH) as *const [f32; WIDTH]);
        for (r, acc) in acc.iter_mut().enumerate() {
            let x = *a.add(r * a_rs + kk);
            for c in 0..WIDTH {
                acc[c] = madd(x, b[c], acc[c]);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        *(out.add(r * out_rs) as *mut [f32; WIDTH]) = *acc;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::cpu_math::{matmul_into, View};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Every panel of a packed product against `matmul_into` (gemm), for row counts that use
    /// every tile size, a depth that is not a multiple of the chunk, strided rows of `a` and an
    /// accumulating output, and with the columns of the last panel padded.
    #[test]
    fn panel_products_match_matmul() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let (k, n): (usize, usize) = (300, 37);
        let m: Vec<f32> = (0..k * n).map(|_| rng.random_range(-1.0..1.0)).collect();
        let blocks: Vec<(usize, usize)> = (0..n.div_ceil(WIDTH))
            .map(|p| (p * WIDTH, WIDTH.min(n - p * WIDTH)))
            .collect();
        let panels = Panels::pack(k, blocks.iter().copied(), |kk, c| m[kk * n + c]);
        for rows in [1, 2, 3, 5, 6, 7, 12, 13, 29] {
            let a_rs = k + 3;
            let a: Vec<f32> = (0..rows * a_rs)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let start: Vec<f32> = (0..rows * n).map(|_| rng.random_range(-1.0..1.0)).collect();
            let mut want = start.clone();
            let av = View {
                data: &a,
                rows,
                cols: k,
                rs: a_rs,
                cs: 1,
            };
            matmul_into(&mut want, av, View::row_major(&m, k, n), 1.0, true).unwrap();
            for (p, &(first, width)) in blocks.iter().enumerate() {
                let out_rs = WIDTH + 5;
                let mut out = vec![0f32; rows * out_rs];
                for r in 0..rows {
                    out[r * out_rs..r * out_rs + width]
                        .copy_from_slice(&start[r * n + first..r * n + first + width]);
                }
                for isa in isas() {
                    let mut out = out.clone();
                    panel_product_on(isa, &mut out, out_rs, &a, a_rs, rows, panels.panel(p));
                    for r in 0..rows {
                        for c in 0..width {
                            let (got, want) = (out[r * out_rs + c], want[r * n + first + c]);
                            assert!(
                                (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                                "{isa:?}, rows {rows}, row {r}, column {}: {got} vs {want}",
                                first + c
                            );
                        }
                        // The padded columns of the last panel multiply zeros.
                        for c in width..WIDTH {
                            assert_eq!(out[r * out_rs + c], 0.0);
                        }
                    }
                }
            }
        }
    }

    /// A row's result is bit-equal whatever rows come with it (it fills a different tile), with
    /// every kernel this CPU has.
    #[test]
    fn a_row_alone_equals_the_row_among_others() {
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let k = 520;
        let m: Vec<f32> = (0..k * WIDTH)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let panels = Panels::pack(k, [(0, WIDTH)], |kk, c| m[kk * WIDTH + c]);
        let rows = 13;
        let a: Vec<f32> = (0..rows * k).map(|_| rng.random_range(-1.0..1.0)).collect();
        for isa in isas() {
            let mut all = vec![0f32; rows * WIDTH];
            panel_product_on(isa, &mut all, WIDTH, &a, k, rows, panels.panel(0));
            for r in 0..rows {
                let mut one = vec![0f32; WIDTH];
                panel_product_on(isa, &mut one, WIDTH, &a[r * k..], k, 1, panels.panel(0));
                assert_eq!(one, all[r * WIDTH..(r + 1) * WIDTH], "{isa:?}");
            }
        }
    }
}
