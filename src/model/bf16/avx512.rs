//! The AVX512-BF16 kernel (CPUs without AMX: AMD Zen 4/5, Intel Cooper Lake): eight rows at a
//! time, each row's 32 outputs in two 16-lane f32 accumulators, one `vdpbf16ps` per row,
//! 16 columns and input pair. Also the vectorised f32 → bf16 rounding both kernels use.

use std::arch::x86_64::*;

/// Whether the CPU has AVX-512 F/BW and AVX512-BF16.
pub(super) fn available() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512bf16")
}

/// Rounds the first `n` values of `src` into `dst[0..n]` to nearest-even bf16
/// (`vcvtneps2bf16`), 16 at a time.
///
/// # Safety
/// [`available`] is true; `n <= src.len()` and `dst` is valid for `n` writes.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(super) unsafe fn convert(src: &[f32], dst: *mut u16, n: usize) {
    let mut i = 0;
    while i + 16 <= n {
        let v = _mm512_loadu_ps(src.as_ptr().add(i));
        let h: __m256bh = _mm512_cvtneps_pbh(v);
        _mm256_storeu_si256(
            dst.add(i) as *mut __m256i,
            std::mem::transmute::<__m256bh, __m256i>(h),
        );
        i += 16;
    }
    if i < n {
        // 1 to 15 values left.
        let mask: __mmask16 = ((1u32 << (n - i)) - 1) as u16;
        let v = _mm512_maskz_loadu_ps(mask, src.as_ptr().add(i));
        let h: __m256bh = _mm512_cvtneps_pbh(v);
        _mm256_mask_storeu_epi16(
            dst.add(i) as *mut i16,
            mask,
            std::mem::transmute::<__m256bh, __m256i>(h),
        );
    }
}

/// As `amx::block`: `c[0..32][0..32] = a[0..32][..] · panel`.
///
/// # Safety
/// [`available`] is true; the extents are as for `amx::block`.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(super) unsafe fn block(
    a: *const u16,
    a_stride: usize,
    panel: *const u16,
    k_blocks: usize,
    c: *mut f32,
    c_stride: usize,
) {
    for r0 in (0..32).step_by(8) {
        let mut acc = [[_mm512_setzero_ps(); 2]; 8];
        for kb in 0..k_blocks {
            let bk = panel.add(kb * 1024);
            for p in 0..16 {
                let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(bk.add(p * 32) as _));
                let b1: __m512bh =
                    std::mem::transmute(_mm512_loadu_si512(bk.add(512 + p * 32) as _));
                for (i, acc) in acc.iter_mut().enumerate() {
                    let pair = (a.add((r0 + i) * a_stride + kb * 32 + 2 * p) as *const i32)
                        .read_unaligned();
                    let x: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair));
                    acc[0] = _mm512_dpbf16_ps(acc[0], x, b0);
                    acc[1] = _mm512_dpbf16_ps(acc[1], x, b1);
                }
            }
        }
        for (i, acc) in acc.iter().enumerate() {
            let row = c.add((r0 + i) * c_stride);
            _mm512_storeu_ps(row, acc[0]);
            _mm512_storeu_ps(row.add(16), acc[1]);
        }
    }
}

/// `super::finish_row` compiled for AVX-512 (16 lanes; the baseline build has 4).
///
/// # Safety
/// [`available`] is true.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(super) unsafe fn finish_row(
    row: &mut [f32],
    bias: &[f32],
    residual: Option<&[f32]>,
    relu: bool,
) {
    super::finish_row(row, bias, residual, relu)
}
