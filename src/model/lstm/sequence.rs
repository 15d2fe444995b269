//! The whole LSTM recurrence as one CPU op with hand-written backpropagation through time, whose
//! output is only the hidden states of the rows the loss scores. Per-step graph nodes made
//! candle's backward quadratic in the sequence length; returning every step's state made it
//! slice, select and zero-pad megabytes of gradient per step (docs/performance.md). The op keeps
//! each step's cell and gates itself, for its backward pass.

use super::gates;
use super::recurrent::{panels_pay_backward, Panels, WIDTH};
use crate::model::cpu_math::{column_sums, f32_data, matmul_into, with_data, SendPtr, View};
use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;
use std::sync::Mutex;

/// `CustomOp3(xp [T·B, 4H] = x·W_ihᵀ (time-major), W_hh [4H, H], bias [4H] = b_ih + b_hh)` →
/// the hidden states `[N, H]` of `rows` (indices into the `T·B` steps), from a zero state.
pub(crate) struct LstmRows {
    batch: usize,
    rows: Vec<u32>,
    /// Per step, the batch rows the recurrence computes: every row up to the last one whose
    /// output some scored step still depends on (see [`live_prefixes`]).
    live: Vec<usize>,
    /// Per step and batch row `h | c | i f g o` (6H) of the last forward pass, for backward.
    saved: Mutex<Option<Vec<f32>>>,
}

impl LstmRows {
    /// The op for a time-major sequence of `batch` columns whose outputs are `rows`.
    pub fn new(batch: usize, rows: Vec<u32>) -> Self {
        Self {
            live: live_prefixes(batch, &rows),
            batch,
            rows,
            saved: Mutex::new(None),
        }
    }
}

/// The input projections `x_t · W_ihᵀ` the recurrence adds at each step and batch row: row `i`
/// (time-major, `t · B + r`) of `table`, or row `index[i]` of it when there is an index (a
/// teacher-forced batch repeats few distinct words: their projections once, and an index).
#[derive(Clone, Copy)]
pub(crate) struct InputRows<'a> {
    /// Rows of 4H values.
    pub table: &'a [f32],
    /// Which row of `table` each of the T·B positions reads; `None`: row `i` itself.
    pub index: Option<&'a [u32]>,
}

impl<'a> InputRows<'a> {
    /// One row per position, in order (no index).
    pub(crate) fn dense(table: &'a [f32]) -> Self {
        Self { table, index: None }
    }

    /// Position `i`'s row of `g4` values.
    #[inline]
    fn row(&self, i: usize, g4: usize) -> &[f32] {
        let at = match self.index {
            Some(index) => index[i] as usize,
            None => i,
        };
        &self.table[at * g4..(at + 1) * g4]
    }

    /// Whether the rows cover `positions` positions of `g4` values.
    fn fits(&self, positions: usize, g4: usize) -> bool {
        let rows = self.table.len() / g4.max(1);
        self.table.len() == rows * g4
            && match self.index {
                Some(index) => {
                    index.len() == positions && index.iter().all(|&i| (i as usize) < rows)
                }
                None => rows == positions,
            }
    }
}

impl LstmRows {
    /// The hidden states `[N, H]` of the op's rows, and every step's `h | c | i f g o` for
    /// [`LstmRows::backward`]; `dims` `(T, B, H)` as [`sizes`] checks them.
    pub(crate) fn forward(
        &self,
        xp: InputRows<'_>,
        w: &[f32],
        bias: &[f32],
        dims: (usize, usize, usize),
    ) -> candle_core::Result<(Vec<f32>, Vec<f32>)> {
        let (t_len, b, h) = dims;
        if let Some(&bad) = self.rows.iter().find(|&&r| r as usize >= t_len * b) {
            candle_core::bail!("lstm sequence: row {bad} outside {t_len} steps of {b}");
        }
        if !xp.fits(t_len * b, 4 * h) || w.len() != 4 * h * h || bias.len() != 4 * h {
            candle_core::bail!("lstm sequence: operands do not fit {t_len} steps of {b} × {h}");
        }
        let out = recurrence(xp, w, bias, dims, &self.live)?;
        let mut hidden = Vec::with_capacity(self.rows.len() * h);
        for &r in &self.rows {
            let at = r as usize * 6 * h;
            hidden.extend_from_slice(&out[at..at + h]);
        }
        Ok((hidden, out))
    }

    /// `(d xp [T·B, 4H], d W_hh [4H, H], d bias [4H])` from the saved states of
    /// [`LstmRows::forward`] and the gradient `grad [N, H]` of its output.
    pub(crate) fn backward(
        &self,
        saved: &[f32],
        grad: &[f32],
        w: &[f32],
        dims: (usize, usize, usize),
    ) -> candle_core::Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
        let (t_len, b, h) = dims;
        if grad.len() != self.rows.len() * h || saved.len() != t_len * b * 6 * h {
            candle_core::bail!("lstm sequence: gradient of {} values", grad.len());
        }
        // The gradient of every step's h: the scored rows' gradients, zero elsewhere.
        let mut gh = vec![0f32; t_len * b * h];
        for (&r, g) in self.rows.iter().zip(grad.chunks_exact(h.max(1))) {
            let dst = &mut gh[r as usize * h..(r as usize + 1) * h];
            for (d, &g) in dst.iter_mut().zip(g) {
                *d += g;
            }
        }
        let (d_xp, d_w) = through_time(saved, &gh, w, dims, &self.live, panels_pay_backward())?;
        let d_bias = column_sums(&d_xp, 4 * h, 1.0);
        Ok((d_xp, d_w, d_bias))
    }
}

/// Per step `t`, how many leading batch rows the recurrence runs: one past the last column that
/// has a scored row at `t` or later (a step's state only feeds later steps of its own column).
/// Steps past a caption's end are padding nobody reads; with the columns sorted longest first
/// (as `train::batches` lays batches out) the prefix is exactly the captions still running, so
/// a batch of mixed lengths costs the steps of its captions, not B × the longest (PyTorch's padded
/// `nn.LSTM` runs them all). Entries past the last scored step are 0.
pub(crate) fn live_prefixes(batch: usize, rows: &[u32]) -> Vec<usize> {
    if batch == 0 {
        return Vec::new();
    }
    // The last step each column is scored at.
    let mut last: Vec<Option<usize>> = vec![None; batch];
    for &r in rows {
        let (t, col) = (r as usize / batch, r as usize % batch);
        last[col] = Some(last[col].map_or(t, |l: usize| l.max(t)));
    }
    let steps = last.iter().flatten().max().map_or(0, |&t| t + 1);
    (0..steps)
        .map(|t| {
            last.iter()
                .rposition(|l| l.is_some_and(|l| l >= t))
                .map_or(0, |c| c + 1)
        })
        .collect()
}

/// Sizes `(T, B, H)` from the three inputs' shapes and the batch size.
fn sizes(
    xp: &Shape,
    w: &Shape,
    bias: &Shape,
    b: usize,
) -> candle_core::Result<(usize, usize, usize)> {
    let (steps, g4) = xp.dims2()?;
    let (t_len, h) = (steps / b.max(1), g4 / 4);
    if b == 0 || steps % b != 0 || g4 % 4 != 0 || w.dims() != [g4, h] || bias.dims() != [g4] {
        candle_core::bail!(
            "lstm sequence: input {:?}, W_hh {:?}, bias {:?} do not fit",
            xp.dims(),
            w.dims(),
            bias.dims()
        );
    }
    Ok((t_len, b, h))
}

/// Splits the batch rows `0..b` into `parts` runs of about equal work, a row's work being the
/// steps it is live at (`live` prefixes shrink with `t`, so the first rows are the longest).
fn balanced_runs(live: &[usize], b: usize, parts: usize) -> Vec<std::ops::Range<usize>> {
    let steps = |r: usize| live.iter().filter(|&&n| r < n).count();
    let total: usize = (0..b).map(steps).sum();
    let mut runs = Vec::with_capacity(parts);
    let (mut start, mut done, mut r) = (0, 0, 0);
    for k in 1..=parts {
        let goal = total * k / parts.max(1);
        while r < b && done + steps(r) / 2 < goal {
            done += steps(r);
            r += 1;
        }
        if k == parts {
            r = b;
        }
        if r > start {
            runs.push(start..r);
        }
        start = r;
    }
    runs
}

/// Runs the recurrence: `[T, B, 6H]` of `h | c | i f g o`.
///
/// A batch row's states depend on its own row only, so there is one task per thread for the whole
/// pass: each thread runs its run of rows (of about equal work, [`balanced_runs`]) through every
/// step with no barrier between steps. Per step, a task computes its rows' recurrent products
/// `h_{t-1} · W_hhᵀ` (W_hhᵀ packed into panels once for the pass, `recurrent.rs`), adds the
/// input projection and the bias, and runs the gate arithmetic on them while they are in its
/// cache. Every thread reads all of W_hh each step (4 MB at H 512, from the shared L3 cache);
/// splitting by hidden units instead kept W_hh apart per thread but made the gate arithmetic read
/// 64-byte pieces of every row, which measured slower. One parallel section per step instead (the rows split anew at each) gave the same bits and
/// measured 13–15% slower on Zen 4 (29.0–30.3 against 24.8–26.5 ms, bench shapes, min of 10).
fn recurrence(
    xp: InputRows<'_>,
    w: &[f32],
    bias: &[f32],
    (t_len, b, h): (usize, usize, usize),
    live: &[usize],
) -> candle_core::Result<Vec<f32>> {
    let (g4, h6) = (4 * h, 6 * h);
    let g4p = g4.div_ceil(WIDTH) * WIDTH;
    let mut out = vec![0f32; t_len * b * h6];
    let panels = Panels::pack(
        h,
        (0..g4p / WIDTH).map(|p| (p * WIDTH, WIDTH.min(g4 - p * WIDTH))),
        |k, col| w[col * h + k],
    );
    let zeros = vec![0f32; h];
    let runs = balanced_runs(live, b, rayon::current_num_threads().max(1));
    let base = SendPtr(out.as_mut_ptr());
    runs.into_par_iter().for_each(|run| {
        let (mut h_rows, mut pre) = (Vec::new(), Vec::new());
        for t in 0..t_len {
            let n = live.get(t).copied().unwrap_or(0).min(b).min(run.end);
            if n <= run.start {
                break;
            }
            let (r0, m) = (run.start, n - run.start);
            // SAFETY: this task alone writes and reads rows `run` of every step, and `out`
            // outlives the tasks; step t's rows and step t-1's rows do not overlap.
            let rows = unsafe {
                std::slice::from_raw_parts_mut(base.get().add((t * b + r0) * h6), m * h6)
            };
            let prev = (t > 0).then(|| unsafe {
                std::slice::from_raw_parts(base.get().add(((t - 1) * b + r0) * h6), m * h6)
            });
            match prev {
                // h_{t-1} · W_hhᵀ.
                Some(prev) => panels.product_of_rows(&mut pre, &mut h_rows, prev, h6, m),
                None => {
                    pre.clear();
                    pre.resize(m * g4p, 0.0);
                }
            }
            for (r, (row, pre)) in rows
                .chunks_exact_mut(h6)
                .zip(pre.chunks_exact_mut(g4p))
                .enumerate()
            {
                let x = xp.row(t * b + r0 + r, g4);
                for ((p, &x), &bias) in pre.iter_mut().zip(x).zip(bias) {
                    *p += x + bias;
                }
                let c_prev = match prev {
                    Some(p) => &p[r * h6 + h..r * h6 + 2 * h],
                    None => &zeros[..],
                };
                let (h_out, rest) = row.split_at_mut(h);
                let (c_out, acts) = rest.split_at_mut(h);
                gates::forward(&pre[..g4], c_prev, h_out, c_out, acts);
            }
        }
    });
    Ok(out)
}

impl CustomOp3 for LstmRows {
    fn name(&self) -> &'static str {
        "lstm-rows"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let dims = sizes(l1.shape(), l2.shape(), l3.shape(), self.batch)?;
        let table = f32_data(s1, l1, "lstm sequence: input")?;
        let (hidden, out) = self.forward(
            InputRows::dense(table),
            f32_data(s2, l2, "lstm sequence: W_hh")?,
            f32_data(s3, l3, "lstm sequence: bias")?,
            dims,
        )?;
        if let Ok(mut slot) = self.saved.lock() {
            *slot = Some(out);
        }
        let h = dims.2;
        Ok((CpuStorage::F32(hidden), Shape::from((self.rows.len(), h))))
    }

    fn bwd(
        &self,
        xp: &Tensor,
        w_hh: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dims = sizes(xp.shape(), w_hh.shape(), bias.shape(), self.batch)?;
        let (t_len, b, h) = dims;
        let saved = self.saved.lock().ok().and_then(|mut s| s.take());
        let (d_xp, d_w, d_bias) = with_data(grad_res, |grad| {
            with_data(w_hh, |w| {
                let saved = match saved {
                    Some(s) => s,
                    // Backward run twice over the same graph: run the recurrence again.
                    None => with_data(xp, |x| {
                        let x = InputRows::dense(x);
                        with_data(bias, |bs| recurrence(x, w, bs, dims, &self.live))
                    })?,
                };
                self.backward(&saved, grad, w, dims)
            })
        })?;
        let dev = xp.device();
        Ok((
            Some(Tensor::from_vec(d_xp, (t_len * b, 4 * h), dev)?),
            Some(Tensor::from_vec(d_w, (4 * h, h), dev)?),
            Some(Tensor::from_vec(d_bias, 4 * h, dev)?),
        ))
    }
}

/// Backward through time from the saved states and the gradient of every step's h →
/// (d xp `[T, B, 4H]`, d W_hh `[4H, H]`).
/// Only the live prefix of each step runs (`live`, as in [`recurrence`]): going back in time the
/// prefix only grows, so the rows of `dh_next` and `dc_next` beyond it are still zero.
/// `on_panels` picks how the per-step product `dh_{t-1} = dgates_t · W_hh` runs
/// ([`panels_pay_backward`]): on the packed panels in [`rows_through_time`], or through `gemm` in
/// [`steps_through_time`].
fn through_time(
    saved: &[f32],
    gh: &[f32],
    w: &[f32],
    dims: (usize, usize, usize),
    live: &[usize],
    on_panels: bool,
) -> candle_core::Result<(Vec<f32>, Vec<f32>)> {
    let d_xp = if on_panels {
        rows_through_time(saved, gh, w, dims, live)
    } else {
        steps_through_time(saved, gh, w, dims, live)?
    };
    let d_w = recurrent_weight_gradient(&d_xp, saved, dims, live)?;
    Ok((d_xp, d_w))
}

/// One step's gate backward for `m` rows from batch row `r0`: adds the loss's gradient `gh` to
/// `dh`, then turns `dh` and `dc` (carried from step t+1) into `dgates` rows `dg` and the next
/// `dc`.
#[allow(clippy::too_many_arguments)]
fn gates_backward_rows(
    saved: &[f32],
    gh: &[f32],
    (t, b, h): (usize, usize, usize),
    r0: usize,
    dg: &mut [f32],
    dh: &mut [f32],
    dc: &mut [f32],
    zeros: &[f32],
) {
    let (g4, h6) = (4 * h, 6 * h);
    for (r, ((dg, dc), dh)) in dg
        .chunks_exact_mut(g4)
        .zip(dc.chunks_exact_mut(h))
        .zip(dh.chunks_exact_mut(h))
        .enumerate()
    {
        let at = t * b + r0 + r;
        let row = &saved[at * h6..(at + 1) * h6];
        let c_prev = if t == 0 {
            zeros
        } else {
            &saved[(at - b) * h6 + h..(at - b) * h6 + 2 * h]
        };
        // This step's h feeds the loss and the next step.
        for (d, &g) in dh.iter_mut().zip(&gh[at * h..(at + 1) * h]) {
            *d += g;
        }
        gates::backward(&row[2 * h..], &row[h..2 * h], c_prev, dh, dc, dg);
    }
}

/// The steps of backward through time with one task per thread for the whole pass, as in
/// [`recurrence`]: a row's gradients depend on its own row only, so each thread carries its run of
/// rows back through every step with no barrier between steps, running their gate backward and
/// then `dh_{t-1} = dgates_t · W_hh` on W_hh packed into panels once for the pass. Through `gemm`
/// that product packed all of W_hh (4 MB at H 512) again every step.
fn rows_through_time(
    saved: &[f32],
    gh: &[f32],
    w: &[f32],
    (t_len, b, h): (usize, usize, usize),
    live: &[usize],
) -> Vec<f32> {
    let g4 = 4 * h;
    let mut d_xp = vec![0f32; t_len * b * g4];
    let zeros = vec![0f32; h];
    // W_hh [4H, H] as it is: K = 4H, N = H, padded to whole panels.
    let hp = h.div_ceil(WIDTH) * WIDTH;
    let panels = Panels::pack(
        g4,
        (0..hp / WIDTH).map(|p| (p * WIDTH, WIDTH.min(h - p * WIDTH))),
        |k, col| w[k * h + col],
    );
    let runs = balanced_runs(live, b, rayon::current_num_threads().max(1));
    let base = SendPtr(d_xp.as_mut_ptr());
    runs.into_par_iter().for_each(|run| {
        let mut dh = vec![0f32; run.len() * h];
        let mut dc = vec![0f32; run.len() * h];
        let (mut a_rows, mut product) = (Vec::new(), Vec::new());
        for t in (0..t_len).rev() {
            let n = live.get(t).copied().unwrap_or(0).min(run.end);
            if n <= run.start {
                continue;
            }
            let (r0, m) = (run.start, n - run.start);
            // SAFETY: this task alone touches rows `run` of every step of `d_xp`, which outlives
            // the tasks.
            let dg = unsafe {
                std::slice::from_raw_parts_mut(base.get().add((t * b + r0) * g4), m * g4)
            };
            let (dh, dc) = (&mut dh[..m * h], &mut dc[..m * h]);
            gates_backward_rows(saved, gh, (t, b, h), r0, dg, dh, dc, &zeros);
            if t > 0 {
                panels.product_of_rows(&mut product, &mut a_rows, dg, g4, m);
                for (d, p) in dh.chunks_exact_mut(h).zip(product.chunks_exact(hp)) {
                    d.copy_from_slice(&p[..h]);
                }
            }
        }
    });
    d_xp
}

/// The steps of backward through time one at a time: the gate backward of the step's rows in
/// parallel, then `dh_{t-1} = dgates_t · W_hh` through `gemm`.
fn steps_through_time(
    saved: &[f32],
    gh: &[f32],
    w: &[f32],
    (t_len, b, h): (usize, usize, usize),
    live: &[usize],
) -> candle_core::Result<Vec<f32>> {
    let g4 = 4 * h;
    let mut d_xp = vec![0f32; t_len * b * g4];
    let mut dh_next = vec![0f32; b * h];
    let mut dc_next = vec![0f32; b * h];
    let zeros = vec![0f32; h];
    for t in (0..t_len).rev() {
        let n = live.get(t).copied().unwrap_or(0).min(b);
        if n == 0 {
            continue;
        }
        let dg = &mut d_xp[t * b * g4..(t * b + n) * g4];
        dg.par_chunks_mut(g4)
            .zip(dc_next[..n * h].par_chunks_mut(h))
            .zip(dh_next[..n * h].par_chunks_mut(h))
            .enumerate()
            .for_each(|(r, ((dg, dc), dh))| {
                gates_backward_rows(saved, gh, (t, b, h), r, dg, dh, dc, &zeros);
            });
        if t > 0 {
            matmul_into(
                &mut dh_next[..n * h],
                View::row_major(dg, n, g4),
                View::row_major(w, g4, h),
                1.0,
                false,
            )?;
        }
    }
    Ok(d_xp)
}

/// dW_hh `[4H, H]` = Σ_{t≥1} dgates_tᵀ · h_{t-1} over the live rows (`live`, as in
/// [`recurrence`]); the rows past a step's live prefix have zero gradients and states.
///
/// The steps whose rows are all live are one block of `d_xp` and `saved`, read in place. When
/// the later, partly live steps leave many dead rows (the synthetic scenes' batches ~30%; a batch
/// of Flickr8k captions, 5 to 30+ words, an estimated half), their live rows are copied together
/// and multiplied in a second product, so the dead rows cost nothing. With few dead rows one
/// product over every row is cheaper than the copy.
fn recurrent_weight_gradient(
    d_xp: &[f32],
    saved: &[f32],
    (t_len, b, h): (usize, usize, usize),
    live: &[usize],
) -> candle_core::Result<Vec<f32>> {
    let (g4, h6) = (4 * h, 6 * h);
    let mut d_w = vec![0f32; g4 * h];
    if t_len < 2 {
        return Ok(d_w);
    }
    let live_at = |t: usize| live.get(t).copied().unwrap_or(0).min(b);
    let all_rows = (t_len - 1) * b;
    let live_rows: usize = (1..t_len).map(live_at).sum();
    // Steps 1..=full are wholly live (live prefixes never grow with t).
    let full = if (all_rows - live_rows) * DEAD_ROWS_WORTH_A_COPY < all_rows {
        t_len - 1
    } else {
        (1..t_len).take_while(|&t| live_at(t) == b).count()
    };
    if full > 0 {
        let rows = full * b;
        let dg = View::row_major(&d_xp[b * g4..(1 + full) * b * g4], rows, g4).t();
        let h_prev = View {
            data: saved,
            rows,
            cols: h,
            rs: h6,
            cs: 1,
        };
        matmul_into(&mut d_w, dg, h_prev, 1.0, false)?;
    }
    let partial: usize = (1 + full..t_len).map(live_at).sum();
    if partial > 0 {
        let mut dg = Vec::with_capacity(partial * g4);
        let mut h_prev = Vec::with_capacity(partial * h);
        for t in 1 + full..t_len {
            let n = live_at(t);
            dg.extend_from_slice(&d_xp[t * b * g4..(t * b + n) * g4]);
            for r in 0..n {
                let at = ((t - 1) * b + r) * h6;
                h_prev.extend_from_slice(&saved[at..at + h]);
            }
        }
        matmul_into(
            &mut d_w,
            View::row_major(&dg, partial, g4).t(),
            View::row_major(&h_prev, partial, h),
            1.0,
            full > 0,
        )?;
    }
    Ok(d_w)
}

/// [`recurrent_weight_gradient`] copies the partly live steps' rows when at least one row in
/// this many is dead.
const DEAD_ROWS_WORTH_A_COPY: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-step product on the packed panels and through `gemm` give the same gradients, on a
    /// hidden size that fills no whole panel and a batch whose later steps have dead rows.
    #[test]
    fn backward_on_panels_matches_gemm() {
        let (t_len, b, h) = (6, 7, 21);
        let live = vec![7, 7, 6, 4, 4, 1];
        let mut x = 7u32;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x as f32 / u32::MAX as f32) - 0.5
        };
        let xp: Vec<f32> = (0..t_len * b * 4 * h).map(|_| rnd()).collect();
        let w: Vec<f32> = (0..4 * h * h).map(|_| rnd()).collect();
        let bias: Vec<f32> = (0..4 * h).map(|_| rnd()).collect();
        let mut gh: Vec<f32> = (0..t_len * b * h).map(|_| rnd()).collect();
        for (t, &n) in live.iter().enumerate() {
            gh[(t * b + n) * h..(t + 1) * b * h].fill(0.0);
        }
        let dims = (t_len, b, h);
        let saved = recurrence(InputRows::dense(&xp), &w, &bias, dims, &live).unwrap();
        let panels = through_time(&saved, &gh, &w, dims, &live, true).unwrap();
        let gemm = through_time(&saved, &gh, &w, dims, &live, false).unwrap();
        for (name, p, g) in [("d_xp", &panels.0, &gemm.0), ("d_w", &panels.1, &gemm.1)] {
            let scale = g.iter().fold(0f32, |m, x| m.max(x.abs()));
            let gap = p.iter().zip(g).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                scale > 0.1 && gap <= 1e-5 * scale,
                "{name}: {gap} of {scale}"
            );
        }
    }

    /// The runs cover the batch in order, without gaps, and split the live steps about evenly
    /// (rows of a batch sorted longest first have decreasing work).
    #[test]
    fn balanced_runs_split_the_live_steps_evenly() {
        let live = vec![8, 8, 8, 6, 3, 3, 1, 1];
        let runs = balanced_runs(&live, 8, 2);
        assert_eq!(runs, vec![0..3, 3..8]);
        let work = |r: &std::ops::Range<usize>| {
            r.clone()
                .map(|row| live.iter().filter(|&&n| row < n).count())
                .sum::<usize>()
        };
        assert_eq!(runs.iter().map(work).collect::<Vec<_>>(), vec![20, 18]);
        assert_eq!(balanced_runs(&[4; 5], 4, 2), vec![0..2, 2..4]);
        assert_eq!(balanced_runs(&[2, 1], 2, 4), vec![0..1, 1..2]);
        assert_eq!(balanced_runs(&[3; 3], 3, 1), vec![0..3]);
    }
}
