//! Building blocks of the fused CPU ops (LSTM, output layer + loss, ResNet trunk): the one way to
//! borrow a tensor's or a custom op's f32 data (slices and strided [`View`]s), strided matrix
//! products through the `gemm` crate that candle's own matmul uses, deterministic column sums and
//! a product for decoding's few-row matrices. Strides let the ops multiply transposed operands and
//! slices of their saved state in place, where candle would copy them first.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, DType, Layout, Storage, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

/// A read-only strided matrix: element `(r, c)` is `data[r * rs + c * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> View<'a> {
    /// A custom op's 2-D f32 input as candle laid it out (any strides, any offset), or an error
    /// naming `what`.
    pub fn of(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<Self> {
        let data = f32_storage(s, what)?;
        let (rows, cols) = l.shape().dims2()?;
        let st = l.stride();
        let v = Self {
            data: data.get(l.start_offset()..).unwrap_or_default(),
            rows,
            cols,
            rs: st[0],
            cs: st[1],
        };
        if !v.fits() {
            candle_core::bail!("{what}: layout {l:?} exceeds its {} values", data.len());
        }
        Ok(v)
    }

    /// A row-major `[rows, cols]` matrix.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// The transposed matrix (no copy).
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    /// This matrix with adjacent columns, so that [`View::row`] applies: itself, or a row-major
    /// copy in `buf` when its columns are strided (a layout candle may hand a custom op).
    pub fn unit_cols<'b>(self, buf: &'b mut Vec<f32>) -> View<'b>
    where
        'a: 'b,
    {
        if self.cs == 1 || self.cols <= 1 {
            return self;
        }
        buf.clear();
        buf.reserve(self.rows * self.cols);
        for r in 0..self.rows {
            buf.extend((0..self.cols).map(|c| self.data[r * self.rs + c * self.cs]));
        }
        View::row_major(buf, self.rows, self.cols)
    }

    /// Row `r` as a slice of `cols` values; the columns must be adjacent (see
    /// [`View::unit_cols`]).
    #[inline]
    pub fn row(&self, r: usize) -> &'a [f32] {
        assert!(
            self.cs == 1 || self.cols <= 1,
            "row of a column-strided view"
        );
        let at = r * self.rs;
        &self.data[at..at + self.cols]
    }

    fn fits(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.rs + (self.cols - 1) * self.cs < self.data.len()
    }
}

/// `dst [a.rows, b.cols]` (row-major) `= dst + beta · a · b` when `accumulate`, else `beta · a · b`,
/// on rayon's threads.
pub(crate) fn matmul_into(
    dst: &mut [f32],
    a: View<'_>,
    b: View<'_>,
    beta: f32,
    accumulate: bool,
) -> candle_core::Result<()> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if b.rows != k || dst.len() != m * n || !a.fits() || !b.fits() {
        candle_core::bail!(
            "matmul: [{m}, {k}] · [{}, {n}] into {} elements does not fit",
            b.rows,
            dst.len()
        );
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            dst.fill(0.0);
        }
        return Ok(());
    }
    // SAFETY: the shapes and strides were checked above to stay inside the three slices, and
    // `dst` is borrowed mutably, so it aliases neither input.
    unsafe { gemm_views(dst.as_mut_ptr(), a, b, beta, accumulate) };
    Ok(())
}

/// `dst [a.rows, b.cols] = a · b` into uninitialised memory, on the calling thread alone, for
/// callers that run several products side by side (the Winograd convolution's α² products).
/// Every element of `dst` is written.
pub(crate) fn matmul_serial_uninit(
    dst: &mut [std::mem::MaybeUninit<f32>],
    a: View<'_>,
    b: View<'_>,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert!(
        b.rows == k && k > 0 && dst.len() == m * n && a.fits() && b.fits(),
        "matmul: [{m}, {k}] · [{}, {n}] into {} elements does not fit",
        b.rows,
        dst.len()
    );
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the shapes and strides were checked above to stay inside the three slices, and
    // `dst` is borrowed mutably, so it aliases neither input. With `read_dst` false and `k > 0`
    // gemm writes every element of dst without reading it.
    let dst = dst.as_mut_ptr() as *mut f32;
    unsafe { gemm_views_strided(dst, n, a, b, 1.0, false, Parallelism::None) };
}

/// `dst = (dst if read_dst) + beta · a · b` through gemm, `dst` a row-major `[a.rows, b.cols]`
/// matrix at `dst`.
///
/// gemm vectorises along the rows of its destination and copies (packs) a left operand whose rows
/// are not adjacent one scalar at a time. Our operands are mostly row-major, so `a · b` as written
/// packs all of `a` and scatters into the row-major `dst`; computed as `dstᵀ = bᵀ · aᵀ` instead, a
/// row-major `b` needs no packing and `dstᵀ` is written with vector stores. This takes the order
/// that packs less (perf: the scalar packing was 24% of a vocabulary-63 training step).
///
/// # Safety
/// `a` and `b` must fit their data (`View::fits`), `k = a.cols = b.rows > 0` unless `read_dst`,
/// and `dst` must be valid for writes (and reads when `read_dst`) of `a.rows · b.cols` values
/// that alias neither input.
unsafe fn gemm_views(dst: *mut f32, a: View<'_>, b: View<'_>, beta: f32, read_dst: bool) {
    let (m, n) = (a.rows, b.cols);
    let threads = rayon::current_num_threads();
    if threads <= 1 {
        return gemm_views_strided(dst, n, a, b, beta, read_dst, Parallelism::None);
    }
    if m > FEW_ROWS_SPLIT || n < 2 * SPLIT_COLUMNS {
        return gemm_views_strided(dst, n, a, b, beta, read_dst, Parallelism::Rayon(threads));
    }
    // Few rows (a batch-1 ResNet's 7×7 maps: 49; the training LSTM's batch of 64): gemm splits
    // by rows, so one block of rows ran on one thread (batch-1 `layer4` at 73–128 GFLOP/s
    // against ~300 elsewhere, `bench encoder` per layer). Each thread takes a slice of the
    // columns instead, on its own.
    let parts = threads.min(n / SPLIT_COLUMNS);
    let width = n.div_ceil(parts).div_ceil(16) * 16;
    let dst = SendPtr(dst);
    (0..parts).into_par_iter().for_each(|p| {
        let (c0, c1) = (p * width, ((p + 1) * width).min(n));
        if c0 >= c1 {
            return;
        }
        let part = View {
            data: &b.data[c0 * b.cs..],
            rows: b.rows,
            cols: c1 - c0,
            rs: b.rs,
            cs: b.cs,
        };
        // SAFETY: columns c0..c1 of every row of `dst` (row stride n), which the caller
        // guarantees; the parts' columns do not overlap; `part` is `b`'s columns c0..c1, inside
        // `b` because `b` fits its data.
        unsafe {
            gemm_views_strided(
                dst.get().add(c0),
                n,
                a,
                part,
                beta,
                read_dst,
                Parallelism::None,
            )
        };
    });
}

/// [`gemm_views`] into a destination whose rows are `dst_rs` values apart, with `parallelism`.
///
/// # Safety
/// As [`gemm_views`], `dst` valid for the `a.rows` rows of `b.cols` values `dst_rs` apart.
unsafe fn gemm_views_strided(
    dst: *mut f32,
    dst_rs: usize,
    a: View<'_>,
    b: View<'_>,
    beta: f32,
    read_dst: bool,
    parallelism: Parallelism,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let pack_as_written = if a.rs == 1 { 0 } else { m * k };
    let pack_transposed = if b.cs == 1 { 0 } else { n * k };
    if pack_transposed < pack_as_written {
        gemm::gemm(
            n,
            m,
            k,
            dst,
            dst_rs as isize,
            1,
            read_dst,
            b.data.as_ptr(),
            b.rs as isize,
            b.cs as isize,
            a.data.as_ptr(),
            a.rs as isize,
            a.cs as isize,
            1.0,
            beta,
            false,
            false,
            false,
            parallelism,
        );
    } else {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            read_dst,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            beta,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `scale ·` the column sums of a row-major `[rows, cols]` matrix; each column is summed in row
/// order, so the result does not depend on the thread count.
pub(crate) fn column_sums(m: &[f32], cols: usize, scale: f32) -> Vec<f32> {
    const BLOCK: usize = 256;
    let mut out = vec![0f32; cols];
    if cols == 0 {
        return out;
    }
    out.par_chunks_mut(BLOCK).enumerate().for_each(|(k, out)| {
        let range = k * BLOCK..k * BLOCK + out.len();
        for row in m.chunks_exact(cols) {
            for (o, &x) in out.iter_mut().zip(&row[range.clone()]) {
                *o += x;
            }
        }
        for o in out.iter_mut() {
            *o *= scale;
        }
    });
    out
}

/// `a [m, k] · b [k, n]` for contiguous f32 CPU tensors into a fresh, never zero-filled buffer:
/// candle's matmul zero-fills its output first, ~42 MB per batch-1 ResNet-50 image that `gemm`
/// overwrites anyway. No autograd: for the trunk's inference only.
pub(crate) fn matmul_fresh(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    let (m, k) = a.dims2()?;
    let (k2, n) = b.dims2()?;
    if k != k2 {
        candle_core::bail!("matmul: [{m}, {k}] · [{k2}, {n}]");
    }
    if k == 0 {
        return a.matmul(b);
    }
    let out = with_data(a, |ad| with_data(b, |bd| product_uninit(ad, bd, m, k, n)))?;
    Tensor::from_vec(out, (m, n), a.device())
}

/// The row-major `[m, n]` product of row-major `a [m, k]` and `b [k, n]`, `k > 0`, written into
/// an uninitialised buffer (see [`matmul_fresh`]).
fn product_uninit(
    a: &[f32],
    b: &[f32],
    m: usize,
    k: usize,
    n: usize,
) -> candle_core::Result<Vec<f32>> {
    let (av, bv) = (View::row_major(a, m, k), View::row_major(b, k, n));
    if k == 0 || !av.fits() || !bv.fits() {
        candle_core::bail!("matmul: [{m}, {k}] · [{k}, {n}] does not fit its data");
    }
    let len = m * n;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    if len > 0 {
        // SAFETY: `out` has room for `m * n` values and is written as a row-major [m, n] matrix;
        // the inputs' extents were checked above. With `read_dst` false and `k > 0`, gemm
        // computes every element of dst without reading it, so after the call all `len`
        // elements are initialised.
        let dst = out.spare_capacity_mut().as_mut_ptr() as *mut f32;
        unsafe { gemm_views(dst, av, bv, 1.0, false) };
        unsafe { out.set_len(len) };
    }
    Ok(out)
}

/// Products with at most this many rows split their columns between the threads
/// ([`matmul_fresh`]).
const FEW_ROWS_SPLIT: usize = 96;
/// The narrowest column slice a thread gets.
const SPLIT_COLUMNS: usize = 128;

/// An output pointer shared by parallel tasks that each write their own disjoint part of it (the
/// column split of few-row products here, the blocks of `bf16::matmul`).
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub(crate) *mut f32);
// SAFETY: the users' tasks write disjoint elements and the buffer outlives them (each user's
// SAFETY comment says why).
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// The pointer (a method, so closures capture the whole `SendPtr`, not its raw field).
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

/// `x [m, k] · wᵀ` for a row-major `w [n, k]` when `x` has a few rows (1 to 8) and both are f32
/// on the CPU, reading each row of `w` once for all rows of `x`, blocks of rows of `w` split
/// between the threads; `None` otherwise (gemm). At this size gemm packs `w` on every call (for
/// beam search's 3×512×9000 output layer 1.7 ms a step against 0.7 ms here), and its one-row
/// path reads `w` on one thread: a 25-word greedy caption took 24 ms, 16.5 ms here. Bound by
/// reading the weights (18 MB for the output layer). No autograd: for decoding only.
/// The most rows [`few_rows_times_wt`] takes; more go to candle's matmul. Its arithmetic for a row
/// does not depend on the other rows, so a caption decoded among at most this many rows is the
/// caption decoded alone (the server's batches rely on it).
pub(crate) const FEW_ROWS: usize = 8;

pub(crate) fn few_rows_times_wt(x: &Tensor, w: &Tensor) -> candle_core::Result<Option<Tensor>> {
    let (m, k) = x.dims2()?;
    let (n, k2) = w.dims2()?;
    let f32_cpu = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32;
    if !(1..=FEW_ROWS).contains(&m) || k != k2 || !f32_cpu(x) || !f32_cpu(w) {
        return Ok(None);
    }
    let t = with_data(x, |xs| {
        with_data(w, |wd| Ok(rows_times_wt(xs, wd, m, k, n)))
    })?;
    let mut out = vec![0f32; m * n];
    for (j, row) in t.chunks_exact(m).enumerate() {
        for (i, &v) in row.iter().enumerate() {
            out[i * n + j] = v;
        }
    }
    Ok(Some(Tensor::from_vec(out, (m, n), x.device())?))
}

/// `xs [m, k] · wdᵀ` for `wd [n, k]`, as `[n, m]` (see [`few_rows_times_wt`]).
fn rows_times_wt(xs: &[f32], wd: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    const BLOCK: usize = 128;
    let fma = has_fma();
    // [n, m]: each task takes BLOCK rows of w and all rows of x.
    let mut t = vec![0f32; n * m];
    t.par_chunks_mut(BLOCK * m)
        .enumerate()
        .for_each(|(blk, out)| {
            let w = &wd[blk * BLOCK * k..((blk * BLOCK + out.len() / m) * k)];
            #[cfg(target_arch = "x86_64")]
            if fma {
                // SAFETY: `has_fma` checked that this CPU has AVX2 and FMA.
                unsafe { block_fma(out, w, xs, m, k) };
                return;
            }
            let _ = fma;
            block_portable(out, w, xs, m, k);
        });
    t
}

/// Whether the FMA kernel can run here (AVX2 and FMA, detected once at run time).
fn has_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static FMA: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *FMA.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// One block of [`rows_times_wt`]: `out [rows of w, m]` for the rows `w` of the weights, four
/// SSE lanes at a time on the binary's x86-64 baseline.
fn block_portable(out: &mut [f32], w: &[f32], xs: &[f32], m: usize, k: usize) {
    block::<16>(out, w, xs, m, k, |a, b, acc| acc + a * b);
}

/// [`block_portable`] compiled for AVX2 with fused multiply-adds into 64 lanes (eight 8-wide
/// accumulators, enough independent chains to keep both FMA units busy): decoding a caption
/// spends most of its time here. Each row's sum is still independent of the other rows.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn block_fma(out: &mut [f32], w: &[f32], xs: &[f32], m: usize, k: usize) {
    block::<64>(out, w, xs, m, k, f32::mul_add);
}

/// The loop of both kernels: each row of `w` against every row of `xs`, `LANES` partial sums
/// combined by `madd(a, b, acc)`. Always inlined, so it is compiled with its caller's features.
#[inline(always)]
fn block<const LANES: usize>(
    out: &mut [f32],
    w: &[f32],
    xs: &[f32],
    m: usize,
    k: usize,
    madd: impl Fn(f32, f32, f32) -> f32,
) {
    for (o, wr) in out.chunks_exact_mut(m).zip(w.chunks_exact(k)) {
        for (i, o) in o.iter_mut().enumerate() {
            let xr = &xs[i * k..(i + 1) * k];
            let mut acc = [0f32; LANES];
            for (a, b) in xr.chunks_exact(LANES).zip(wr.chunks_exact(LANES)) {
                for l in 0..LANES {
                    acc[l] = madd(a[l], b[l], acc[l]);
                }
            }
            let tail = k - k % LANES;
            let rest: f32 = xr[tail..].iter().zip(&wr[tail..]).map(|(a, b)| a * b).sum();
            *o = acc.iter().sum::<f32>() + rest;
        }
    }
}

/// The f32 values of CPU storage, or an error naming `what` and the dtype it has instead: the
/// one place that takes f32 data out of candle's storage enum.
fn f32_storage<'a>(s: &'a CpuStorage, what: &str) -> candle_core::Result<&'a [f32]> {
    match s {
        CpuStorage::F32(d) => Ok(d),
        other => candle_core::bail!("{what} must be f32, not {:?}", other.dtype()),
    }
}

/// The f32 data of a custom op's contiguous input, or an error naming `what`.
pub(crate) fn f32_data<'a>(
    s: &'a CpuStorage,
    l: &Layout,
    what: &str,
) -> candle_core::Result<&'a [f32]> {
    let data = f32_storage(s, what)?;
    match l.contiguous_offsets() {
        Some((a, b)) if b <= data.len() => Ok(&data[a..b]),
        _ => candle_core::bail!("{what} must be contiguous f32"),
    }
}

/// [`f32_data`] for an in-place op's destination.
pub(crate) fn f32_data_mut<'a>(
    s: &'a mut CpuStorage,
    l: &Layout,
    what: &str,
) -> candle_core::Result<&'a mut [f32]> {
    let dtype = s.dtype();
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(d), Some((a, b))) if b <= d.len() => Ok(&mut d[a..b]),
        (CpuStorage::F32(_), _) => candle_core::bail!("{what} must be contiguous f32"),
        _ => candle_core::bail!("{what} must be f32, not {dtype:?}"),
    }
}

/// Runs `f` on the f32 data of a CPU tensor, without a copy when it is contiguous already.
pub(crate) fn with_data<R>(
    t: &Tensor,
    f: impl FnOnce(&[f32]) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(s) => f(f32_data(s, layout, "tensor")?),
        _ => candle_core::bail!("expected a CPU tensor"),
    }
}

/// The f32 data of a contiguous CPU tensor, borrowed for as long as this lives (it holds the
/// storage's read lock: drop it before anything writes the tensor in place).
pub(crate) struct HostData<'a> {
    guard: Box<dyn std::ops::Deref<Target = Storage> + 'a>,
    range: std::ops::Range<usize>,
}

impl std::ops::Deref for HostData<'_> {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        match &**self.guard {
            Storage::Cpu(CpuStorage::F32(d)) => &d[self.range.clone()],
            // `host_data` only builds one over CPU f32 storage.
            _ => &[],
        }
    }
}

/// Borrows `t`'s f32 data without a copy; `t` must be a contiguous f32 CPU tensor (the parameters
/// and inputs of a training step are).
pub(crate) fn host_data<'a>(t: &'a Tensor, what: &str) -> candle_core::Result<HostData<'a>> {
    let (guard, layout) = t.storage_and_layout();
    let range = match (&*guard, layout.contiguous_offsets()) {
        (Storage::Cpu(CpuStorage::F32(d)), Some((a, b))) if b <= d.len() => a..b,
        _ => candle_core::bail!("{what} must be a contiguous f32 CPU tensor"),
    };
    Ok(HostData {
        guard: Box::new(guard),
        range,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_into_handles_transposed_and_strided_operands() {
        // a = [[1, 2, 3], [4, 5, 6]] stored transposed; b = rows 0 and 2 of a padded [3, 4].
        let a_t = [1.0, 4.0, 2.0, 5.0, 3.0, 6.0];
        let a = View::row_major(&a_t, 3, 2).t();
        let padded = [1.0, 0.0, 9.0, 9.0, 0.0, 1.0, 9.0, 9.0, 1.0, 1.0, 9.0, 9.0];
        let b = View {
            data: &padded,
            rows: 3,
            cols: 2,
            rs: 4,
            cs: 1,
        };
        let mut dst = vec![1.0; 4];
        matmul_into(&mut dst, a, b, 2.0, true).unwrap();
        // a·b = [[1+3, 2+3], [4+6, 5+6]] = [[4, 5], [10, 11]]; 1 + 2·that.
        assert_eq!(dst, vec![9.0, 11.0, 21.0, 23.0]);
        matmul_into(&mut dst, a, b, 1.0, false).unwrap();
        assert_eq!(dst, vec![4.0, 5.0, 10.0, 11.0]);
        let short = View::row_major(&a_t[..5], 3, 2);
        assert!(matmul_into(&mut dst, short.t(), b, 1.0, false).is_err());
    }

    #[test]
    fn column_sums_cover_partial_blocks() {
        let cols = 300;
        let m: Vec<f32> = (0..3 * cols).map(|i| (i % cols) as f32).collect();
        let s = column_sums(&m, cols, 0.5);
        assert_eq!(s.len(), cols);
        for (c, &x) in s.iter().enumerate() {
            assert_eq!(x, 1.5 * c as f32);
        }
    }

    #[test]
    fn few_rows_product_matches_matmul_and_declines_other_shapes() {
        let dev = candle_core::Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (300, 37), &dev).unwrap();
        for m in [1usize, 2, 3, 8] {
            let x = Tensor::randn(0f32, 1.0, (m, 37), &dev).unwrap();
            let got = few_rows_times_wt(&x, &w)
                .unwrap()
                .expect("1..=8 rows use the kernel");
            let want = x.matmul(&w.t().unwrap()).unwrap();
            assert_eq!(got.dims(), [m, 300]);
            let d = (&got - &want).unwrap().abs().unwrap().max_all().unwrap();
            assert!(d.to_scalar::<f32>().unwrap() < 1e-4, "{m} rows");
        }
        for m in [9usize, 64] {
            let x = Tensor::randn(0f32, 1.0, (m, 37), &dev).unwrap();
            assert!(few_rows_times_wt(&x, &w).unwrap().is_none(), "{m} rows");
        }
    }

    #[test]
    fn few_rows_kernels_match_matmul_and_a_row_alone() {
        let dev = candle_core::Device::Cpu;
        // k covers the FMA kernel's 64-lane loop and its tail; n more than one block of 128.
        let (k, n) = (517usize, 300usize);
        let w = Tensor::randn(0f32, 1.0, (n, k), &dev).unwrap();
        let x = Tensor::randn(0f32, 1.0, (8, k), &dev).unwrap();
        let want = x.matmul(&w.t().unwrap()).unwrap();
        let got = few_rows_times_wt(&x, &w).unwrap().unwrap();
        let d = (&got - &want).unwrap().abs().unwrap().max_all().unwrap();
        assert!(d.to_scalar::<f32>().unwrap() < 1e-3);
        // Both kernels, whichever this CPU dispatches to.
        let (xs, wd) = (
            x.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            w.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        let mut portable = vec![0f32; n * 8];
        block_portable(&mut portable, &wd, &xs, 8, k);
        let dispatched = rows_times_wt(&xs, &wd, 8, k, n);
        for (a, b) in portable.iter().zip(&dispatched) {
            assert!((a - b).abs() < 1e-3, "{a} vs {b}");
        }
        // A row's result is the same, bit for bit, alone or among 8 (the server's batches).
        let row3 = x.narrow(0, 3, 1).unwrap();
        let alone = few_rows_times_wt(&row3, &w).unwrap().unwrap();
        let among = got.narrow(0, 3, 1).unwrap();
        assert_eq!(
            alone.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            among.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
    }

    #[test]
    fn fresh_matmul_matches_candle() {
        let dev = candle_core::Device::Cpu;
        // The last three take the column split (few rows, wide enough) when there are threads.
        for (m, k, n) in [
            (1, 7, 5),
            (37, 64, 33),
            (130, 3, 300),
            (49, 300, 520),
            (96, 64, 2048),
            (1, 512, 256),
        ] {
            let a = Tensor::randn(0f32, 1.0, (m, k), &dev).unwrap();
            let b = Tensor::randn(0f32, 1.0, (k, n), &dev).unwrap();
            let got = matmul_fresh(&a, &b).unwrap();
            let d = (&got - &a.matmul(&b).unwrap()).unwrap().abs().unwrap();
            assert!(d.max_all().unwrap().to_scalar::<f32>().unwrap() < 1e-4);
        }
        let a = Tensor::zeros((2, 3), DType::F32, &dev).unwrap();
        assert!(matmul_fresh(&a, &a).is_err());
    }
}
