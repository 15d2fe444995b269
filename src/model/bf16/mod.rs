//! bf16 matrix products for the trunk's opt-in `--precision bf16`: bf16 weights and activations,
//! f32 accumulation, on CPUs that multiply bf16 natively. Two kernels, chosen at run time:
//! AMX tiles (Intel Sapphire Rapids and later: one `tdpbf16ps` is a 16×16×32 product) and
//! AVX512-BF16 dot products (`vdpbf16ps`, also AMD Zen 4 and later). Hand-written because the
//! `gemm` crate has no bf16 kernels and candle's bf16 matmul on the CPU converts to f32 first;
//! measured in docs/performance.md (`bench encoder --bf16`, `bench precision`).
//!
//! Both kernels read the same packed weights ([`PackedWeights`]: per block of 32 output columns
//! and 32 inputs, two 16×16 tiles of input pairs, the layout AMX's B operand wants) and the same
//! row-major bf16 activations ([`Activations`], rows padded to a multiple of 32 with zeros, the
//! inner dimension to a multiple of 32).

use crate::model::cpu_math::SendPtr;
use crate::model::resnet::cpu_ops::taps_inside;
use crate::{Error, Result};
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::sync::OnceLock;

#[cfg(target_arch = "x86_64")]
mod amx;
#[cfg(target_arch = "x86_64")]
mod avx512;

/// Inputs per block (one AMX tile row: 32 bf16 = 64 bytes).
const BLOCK_K: usize = 32;
/// Output columns per block (two AMX tiles of 16 f32 columns).
const BLOCK_N: usize = 32;
/// Rows per block (two AMX tiles of 16 rows).
const BLOCK_M: usize = 32;
/// Packed weight elements per (column block, input block): two tiles of 16 input pairs × 16
/// columns × 2.
const BLOCK_ELEMS: usize = BLOCK_K * BLOCK_N;
/// Row blocks a task walks for each column block (128 rows: their bf16 activations stay in the
/// L2 cache while the task's weight blocks are read once).
const GROUP_M: usize = 4;

/// Which bf16 kernel runs the products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// Intel AMX tiles (`tdpbf16ps`).
    Amx,
    /// AVX512-BF16 dot products (`vdpbf16ps`).
    Avx512,
}

impl std::fmt::Display for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kernel::Amx => "AMX-BF16",
            Kernel::Avx512 => "AVX512-BF16",
        })
    }
}

/// The best bf16 kernel this CPU has (AMX before AVX512-BF16; `CAPTIONER_BF16_KERNEL=avx512`
/// forces the latter, for comparisons), or an error saying bf16 is not available here.
pub fn kernel() -> Result<Kernel> {
    static DETECTED: OnceLock<Option<Kernel>> = OnceLock::new();
    DETECTED.get_or_init(detect).ok_or_else(|| {
        Error::Invalid(
            "precision bf16 needs a CPU with AMX-BF16 or AVX512-BF16 (Intel Sapphire Rapids or \
             later, AMD Zen 4 or later); this one has neither: use f32"
                .into(),
        )
    })
}

/// Whether [`Kernel::Avx512`] runs here (every CPU with AMX-BF16 also has it).
pub fn avx512_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        avx512::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn detect() -> Option<Kernel> {
    if !avx512_available() {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let forced_avx512 = std::env::var("CAPTIONER_BF16_KERNEL").is_ok_and(|k| k == "avx512");
        if !forced_avx512 && amx::available() {
            return Some(Kernel::Amx);
        }
    }
    Some(Kernel::Avx512)
}

/// `x` rounded to the nearest bf16 (ties to even), as its bits; NaN stays NaN.
pub fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    ((bits + 0x7fff + ((bits >> 16) & 1)) >> 16) as u16
}

/// The f32 value of bf16 bits.
pub fn from_bf16(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// Rounds `src` into `dst` (same length) with [`to_bf16`]; vectorised where AVX512-BF16 exists.
#[cfg(test)]
fn convert(src: &[f32], dst: &mut [u16]) {
    // SAFETY: u16 and MaybeUninit<u16> have the same layout; every element written is a u16.
    let dst = unsafe { &mut *(dst as *mut [u16] as *mut [MaybeUninit<u16>]) };
    convert_uninit(src, dst);
}

/// [`convert`] into memory not yet initialised: all of `dst` is written.
fn convert_uninit(src: &[f32], dst: &mut [MaybeUninit<u16>]) {
    debug_assert_eq!(src.len(), dst.len());
    #[cfg(target_arch = "x86_64")]
    if avx512::available() {
        // SAFETY: the CPU has AVX512-BF16 (checked above); the slices have equal lengths and
        // `convert` writes each element of `dst` once.
        unsafe { avx512::convert(src, dst.as_mut_ptr() as *mut u16, dst.len().min(src.len())) };
        return;
    }
    for (d, &s) in dst.iter_mut().zip(src) {
        d.write(to_bf16(s));
    }
}

fn round_up(x: usize, to: usize) -> usize {
    x.div_ceil(to) * to
}

/// A `[k, n]` f32 weight matrix rounded to bf16 and packed for the kernels, zero-padded to
/// multiples of 32 both ways.
#[derive(Debug, Clone)]
pub struct PackedWeights {
    k: usize,
    n: usize,
    k_blocks: usize,
    n_blocks: usize,
    data: Vec<u16>,
}

impl PackedWeights {
    /// Packs the row-major `[k, n]` matrix `w`.
    pub fn pack(w: &[f32], k: usize, n: usize) -> Result<Self> {
        if w.len() != k * n || k == 0 || n == 0 {
            return Err(Error::Internal(format!(
                "bf16 pack: {} values for a [{k}, {n}] matrix",
                w.len()
            )));
        }
        let (k_blocks, n_blocks) = (k.div_ceil(BLOCK_K), n.div_ceil(BLOCK_N));
        let mut data = vec![0u16; k_blocks * n_blocks * BLOCK_ELEMS];
        data.par_chunks_mut(k_blocks * BLOCK_ELEMS)
            .enumerate()
            .for_each(|(nb, panel)| {
                for (kb, block) in panel.chunks_mut(BLOCK_ELEMS).enumerate() {
                    // Tile t holds columns nb·32 + t·16 ..+16; its row p holds, for each column
                    // c, the pair of inputs kb·32 + 2p and kb·32 + 2p + 1.
                    for (i, v) in block.iter_mut().enumerate() {
                        let (t, p, c, j) = (i / 512, (i / 32) % 16, (i / 2) % 16, i % 2);
                        let (row, col) = (kb * BLOCK_K + 2 * p + j, nb * BLOCK_N + t * 16 + c);
                        if row < k && col < n {
                            *v = to_bf16(w[row * n + col]);
                        }
                    }
                }
            });
        Ok(Self {
            k,
            n,
            k_blocks,
            n_blocks,
            data,
        })
    }

    /// Rows (inputs) of the matrix.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Columns (outputs) of the matrix.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Bytes of packed data.
    pub fn bytes(&self) -> usize {
        self.data.len() * 2
    }
}

/// A row-major `[m, k]` activation matrix in bf16, rows padded to a multiple of 32 and the
/// inner dimension to a multiple of 32, with zeros.
#[derive(Debug)]
pub struct Activations {
    m: usize,
    k: usize,
    /// Elements per (padded) row.
    stride: usize,
    data: Vec<u16>,
}

impl Activations {
    /// The matrix with every row written by `fill(first row, rows)` over chunks of whole rows
    /// (in parallel; the rows past `m` are zeros). The buffer is not zero-filled first: `fill`
    /// must write every element of its rows, padding included (a memset of the whole matrix
    /// was 9% of a bf16 forward pass in `perf`).
    fn build(
        m: usize,
        k: usize,
        rows_per_task: usize,
        fill: impl Fn(usize, &mut [MaybeUninit<u16>]) + Sync,
    ) -> Self {
        let stride = round_up(k.max(1), BLOCK_K);
        let len = round_up(m.max(1), BLOCK_M) * stride;
        let mut data: Vec<u16> = Vec::with_capacity(len);
        let buf = &mut data.spare_capacity_mut()[..len];
        let (rows, pad) = buf.split_at_mut(m * stride);
        rows.par_chunks_mut(rows_per_task.max(1) * stride)
            .enumerate()
            .for_each(|(i, chunk)| fill(i * rows_per_task.max(1), chunk));
        pad.fill(MaybeUninit::new(0));
        // SAFETY: `fill` wrote every element of rows 0..m (its contract) and the padding rows
        // were zeroed: all `len` elements are initialised.
        unsafe { data.set_len(len) };
        Self { m, k, stride, data }
    }

    /// Rounds the row-major `[m, k]` f32 matrix `x`.
    pub fn from_rows(x: &[f32], m: usize, k: usize) -> Result<Self> {
        if x.len() != m * k {
            return Err(Error::Internal(format!(
                "bf16 rows: {} values for [{m}, {k}]",
                x.len()
            )));
        }
        let stride = round_up(k.max(1), BLOCK_K);
        Ok(Self::build(m, k, 64, |first, chunk| {
            for (d, s) in chunk.chunks_mut(stride).zip(x[first * k..].chunks(k)) {
                convert_uninit(s, &mut d[..k]);
                d[k..].fill(MaybeUninit::new(0));
            }
        }))
    }

    /// im2col of an NHWC image batch `x` `[b, h, w, c]` straight into bf16: row `(b, oy, ox)`
    /// holds the `k×k` taps ordered (dy, dx, channel), zeros in the padding — the layout of the
    /// f32 `Im2Col` and of the trunk's `[k·k·Cin, Cout]` weights.
    pub fn im2col(
        x: &[f32],
        (b, h, w, c): (usize, usize, usize, usize),
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Result<Self> {
        if x.len() != b * h * w * c || h + 2 * pad < k || w + 2 * pad < k || stride == 0 {
            return Err(Error::Internal(format!(
                "bf16 im2col: {} values for [{b}, {h}, {w}, {c}], k {k} stride {stride} pad {pad}",
                x.len()
            )));
        }
        let out = |n: usize| (n + 2 * pad - k) / stride + 1;
        let (ho, wo) = (out(h), out(w));
        let cols = k * k * c;
        let row = round_up(cols, BLOCK_K);
        let zero = MaybeUninit::new(0);
        let a = Self::build(b * ho * wo, cols, wo, |first, chunk| {
            // One output image row (`wo` rows of the matrix) per task.
            let (bi, oy) = (first / wo / ho, (first / wo) % ho);
            let img = &x[bi * h * w * c..(bi + 1) * h * w * c];
            for (ox, dst) in chunk.chunks_mut(row).enumerate() {
                for dy in 0..k {
                    let iy = (oy * stride + dy) as isize - pad as isize;
                    let taps = dy * k * c..(dy + 1) * k * c;
                    if iy < 0 || iy >= h as isize {
                        dst[taps].fill(zero);
                        continue;
                    }
                    let (x0, lo, hi) = taps_inside(ox, stride, pad, k, w);
                    let d = &mut dst[taps];
                    if lo >= hi {
                        d.fill(zero);
                        continue;
                    }
                    // The taps inside the line are side by side in the input: one run.
                    let at = ((iy as usize) * w) as isize + x0;
                    let src =
                        &img[(at + lo as isize) as usize * c..(at + hi as isize) as usize * c];
                    let (before, rest) = d.split_at_mut(lo * c);
                    let (inside, after) = rest.split_at_mut((hi - lo) * c);
                    before.fill(zero);
                    after.fill(zero);
                    convert_uninit(src, inside);
                }
                dst[cols..].fill(zero);
            }
        });
        Ok(a)
    }

    /// Rows of the matrix (without the padding).
    pub fn m(&self) -> usize {
        self.m
    }

    /// Columns of the matrix (without the padding).
    pub fn k(&self) -> usize {
        self.k
    }
}

/// What is done to each 32×32 block of a product while it is still in the L1 cache:
/// `+ bias[column]`, then `+ residual[row, column]`, then ReLU. One pass over the output fewer
/// than a separate epilogue.
#[derive(Debug, Clone, Copy)]
pub struct Epilogue<'a> {
    /// One value per output column.
    pub bias: &'a [f32],
    /// A row-major `[m, n]` matrix added after the bias.
    pub residual: Option<&'a [f32]>,
    /// Whether negative results become 0.
    pub relu: bool,
}

/// `a · w` as a row-major `[m, n]` f32 matrix, with `kernel` (which must be one this CPU has:
/// [`kernel`] or, for [`Kernel::Avx512`], [`avx512_available`]). Work is split across rayon's
/// threads by groups of 128 rows and, when the rows are few (batch 1's late stages), by columns.
pub fn matmul(kernel: Kernel, a: &Activations, w: &PackedWeights) -> Result<Vec<f32>> {
    matmul_then(kernel, a, w, None)
}

/// [`matmul`] with `epilogue` applied to each block as it is computed.
pub fn matmul_then(
    kernel: Kernel,
    a: &Activations,
    w: &PackedWeights,
    epilogue: Option<Epilogue>,
) -> Result<Vec<f32>> {
    if let Some(e) = &epilogue {
        if e.bias.len() != w.n || e.residual.is_some_and(|r| r.len() != a.m * w.n) {
            return Err(Error::Internal(format!(
                "bf16 epilogue: {} biases and {:?} residual values for [{}, {}]",
                e.bias.len(),
                e.residual.map(|r| r.len()),
                a.m,
                w.n
            )));
        }
    }
    if a.k != w.k {
        return Err(Error::Internal(format!(
            "bf16 matmul: [{}, {}] · [{}, {}]",
            a.m, a.k, w.k, w.n
        )));
    }
    let usable = match kernel {
        Kernel::Avx512 => avx512_available(),
        Kernel::Amx => self::kernel().ok() == Some(Kernel::Amx),
    };
    if !usable {
        return Err(Error::Internal(format!(
            "the {kernel} kernel is not available"
        )));
    }
    let (m, n) = (a.m, w.n);
    if m == 0 {
        return Ok(Vec::new());
    }
    let m_blocks = m.div_ceil(BLOCK_M);
    let m_groups = m_blocks.div_ceil(GROUP_M);
    let threads = rayon::current_num_threads().max(1);
    let n_split = if m_groups >= 2 * threads {
        1
    } else {
        w.n_blocks.min((2 * threads).div_ceil(m_groups))
    };
    let n_per_task = w.n_blocks.div_ceil(n_split);
    let n_tasks = w.n_blocks.div_ceil(n_per_task);
    let mut out: Vec<f32> = Vec::with_capacity(m * n);
    let ptr = SendPtr(out.spare_capacity_mut().as_mut_ptr() as *mut f32);
    (0..m_groups * n_tasks).into_par_iter().for_each(|task| {
        let (g, t) = (task / n_tasks, task % n_tasks);
        let blocks_m = g * GROUP_M..((g + 1) * GROUP_M).min(m_blocks);
        let blocks_n = t * n_per_task..((t + 1) * n_per_task).min(w.n_blocks);
        // SAFETY: the kernel is available (checked above); the blocks are inside `a`'s padded
        // rows and `w`'s packed blocks; each (row block, column block) pair belongs to exactly
        // one task, and only its rows < m and columns < n are written.
        unsafe { run_task(kernel, a, w, blocks_m, blocks_n, ptr, m, n, epilogue) };
    });
    // SAFETY: the tasks cover every row block × column block, and each writes all of its rows
    // < m and columns < n, so all m·n elements are initialised.
    unsafe { out.set_len(m * n) };
    Ok(out)
}

/// One task: the blocks `blocks_m × blocks_n` of the product, column block by column block.
///
/// # Safety
/// As in [`matmul`]: `kernel` available, blocks in range, no other task writes these blocks.
#[allow(clippy::too_many_arguments)]
unsafe fn run_task(
    kernel: Kernel,
    a: &Activations,
    w: &PackedWeights,
    blocks_m: std::ops::Range<usize>,
    blocks_n: std::ops::Range<usize>,
    out: SendPtr,
    m: usize,
    n: usize,
    epilogue: Option<Epilogue>,
) {
    let mut scratch = [0f32; BLOCK_M * BLOCK_N];
    #[cfg(target_arch = "x86_64")]
    if kernel == Kernel::Amx {
        amx::configure();
    }
    for nb in blocks_n {
        let panel = w.data.as_ptr().add(nb * w.k_blocks * BLOCK_ELEMS);
        for mb in blocks_m.clone() {
            let rows = (m - mb * BLOCK_M).min(BLOCK_M);
            let cols = (n - nb * BLOCK_N).min(BLOCK_N);
            let a_block = a.data.as_ptr().add(mb * BLOCK_M * a.stride);
            let full = rows == BLOCK_M && cols == BLOCK_N;
            let (c, c_stride) = if full {
                (out.get().add(mb * BLOCK_M * n + nb * BLOCK_N), n)
            } else {
                (scratch.as_mut_ptr(), BLOCK_N)
            };
            match kernel {
                #[cfg(target_arch = "x86_64")]
                Kernel::Amx => amx::block(a_block, a.stride, panel, w.k_blocks, c, c_stride),
                #[cfg(target_arch = "x86_64")]
                Kernel::Avx512 => avx512::block(a_block, a.stride, panel, w.k_blocks, c, c_stride),
                #[cfg(not(target_arch = "x86_64"))]
                _ => unreachable!("no bf16 kernel outside x86_64"),
            }
            if !full {
                for r in 0..rows {
                    std::ptr::copy_nonoverlapping(
                        scratch.as_ptr().add(r * BLOCK_N),
                        out.get().add((mb * BLOCK_M + r) * n + nb * BLOCK_N),
                        cols,
                    );
                }
            }
            if let Some(e) = &epilogue {
                let col0 = nb * BLOCK_N;
                let bias = &e.bias[col0..col0 + cols];
                for r in mb * BLOCK_M..mb * BLOCK_M + rows {
                    let row = std::slice::from_raw_parts_mut(out.get().add(r * n + col0), cols);
                    let res = e.residual.map(|x| &x[r * n + col0..r * n + col0 + cols]);
                    #[cfg(target_arch = "x86_64")]
                    avx512::finish_row(row, bias, res, e.relu);
                    #[cfg(not(target_arch = "x86_64"))]
                    finish_row(row, bias, res, e.relu);
                }
            }
        }
    }
}

/// `row = relu?(row + bias + residual?)`, element by element.
#[inline(always)]
pub(crate) fn finish_row(row: &mut [f32], bias: &[f32], residual: Option<&[f32]>, relu: bool) {
    match (residual, relu) {
        (Some(res), true) => {
            for ((v, b), r) in row.iter_mut().zip(bias).zip(res) {
                *v = (*v + b + r).max(0.0);
            }
        }
        (Some(res), false) => {
            for ((v, b), r) in row.iter_mut().zip(bias).zip(res) {
                *v = *v + b + r;
            }
        }
        (None, true) => {
            for (v, b) in row.iter_mut().zip(bias) {
                *v = (*v + b).max(0.0);
            }
        }
        (None, false) => {
            for (v, b) in row.iter_mut().zip(bias) {
                *v += b;
            }
        }
    }
}

#[cfg(test)]
mod tests;
