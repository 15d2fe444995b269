//! The whole LSTM recurrence as one CPU op with hand-written backpropagation through time, whose
//! output is only the hidden states of the rows the loss scores. Per-step graph nodes made
//! candle's backward quadratic in the sequence length; returning every step's state made it
//! slice, select and zero-pad megabytes of gradient per step (docs/performance.md). The op keeps
//! each step's cell and gates itself, for its backward pass.

use crate::model::activation::{sigmoid, tanh};
use crate::model::cpu_math::{column_sums, f32_data, matmul_into, with_data, View};
use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;
use std::sync::Mutex;

/// `CustomOp3(xp [T·B, 4H] = x·W_ihᵀ (time-major), W_hh [4H, H], bias [4H] = b_ih + b_hh)` →
/// the hidden states `[N, H]` of `rows` (indices into the `T·B` steps), from a zero state.
pub(crate) struct LstmRows {
    batch: usize,
    rows: Vec<u32>,
    /// Per step and batch row `h | c | i f g o` (6H) of the last forward pass, for backward.
    saved: Mutex<Option<Vec<f32>>>,
}

impl LstmRows {
    pub fn new(batch: usize, rows: Vec<u32>) -> Self {
        Self {
            batch,
            rows,
            saved: Mutex::new(None),
        }
    }
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

/// Runs the recurrence: `[T, B, 6H]` of `h | c | i f g o`.
fn recurrence(
    xp: &[f32],
    w: &[f32],
    bias: &[f32],
    (t_len, b, h): (usize, usize, usize),
) -> candle_core::Result<Vec<f32>> {
    let (g4, h6) = (4 * h, 6 * h);
    let mut out = vec![0f32; t_len * b * h6];
    let mut rec = vec![0f32; b * g4];
    let zeros = vec![0f32; g4];
    for t in 0..t_len {
        let (before, cur) = out.split_at_mut(t * b * h6);
        let prev = (t > 0).then(|| &before[(t - 1) * b * h6..]);
        if let Some(p) = prev {
            // rec = h_{t-1} · W_hhᵀ, reading h_{t-1} in place from the previous step's rows.
            let h_prev = View {
                data: p,
                rows: b,
                cols: h,
                rs: h6,
                cs: 1,
            };
            let w_t = View::row_major(w, g4, h).t();
            matmul_into(&mut rec, h_prev, w_t, 1.0, false)?;
        }
        cur[..b * h6]
            .par_chunks_mut(h6)
            .enumerate()
            .for_each(|(r, row)| {
                let x = &xp[(t * b + r) * g4..(t * b + r + 1) * g4];
                let (rc, c_prev) = match prev {
                    Some(p) => (&rec[r * g4..(r + 1) * g4], &p[r * h6 + h..r * h6 + 2 * h]),
                    None => (&zeros[..], &zeros[..h]),
                };
                gates_forward(x, bias, rc, c_prev, row, h);
            });
    }
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
        let (t_len, b, h) = dims;
        if let Some(&bad) = self.rows.iter().find(|&&r| r as usize >= t_len * b) {
            candle_core::bail!("lstm sequence: row {bad} outside {t_len} steps of {b}");
        }
        let out = recurrence(
            f32_data(s1, l1, "lstm sequence: input")?,
            f32_data(s2, l2, "lstm sequence: W_hh")?,
            f32_data(s3, l3, "lstm sequence: bias")?,
            dims,
        )?;
        let mut hidden = Vec::with_capacity(self.rows.len() * h);
        for &r in &self.rows {
            let at = r as usize * 6 * h;
            hidden.extend_from_slice(&out[at..at + h]);
        }
        if let Ok(mut slot) = self.saved.lock() {
            *slot = Some(out);
        }
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
        // The gradient of every step's h: the scored rows' gradients, zero elsewhere.
        let grad = grad_res.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let mut gh = vec![0f32; t_len * b * h];
        for (k, &r) in self.rows.iter().enumerate() {
            let dst = &mut gh[r as usize * h..(r as usize + 1) * h];
            for (d, &g) in dst.iter_mut().zip(&grad[k * h..(k + 1) * h]) {
                *d += g;
            }
        }
        let (d_xp, d_w) = with_data(w_hh, |w| {
            let saved = match saved {
                Some(s) => s,
                // Backward run twice over the same graph: run the recurrence again.
                None => with_data(xp, |x| with_data(bias, |bs| recurrence(x, w, bs, dims)))?,
            };
            through_time(&saved, &gh, w, dims)
        })?;
        let d_bias = column_sums(&d_xp, 4 * h, 1.0);
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
fn through_time(
    saved: &[f32],
    gh: &[f32],
    w: &[f32],
    (t_len, b, h): (usize, usize, usize),
) -> candle_core::Result<(Vec<f32>, Vec<f32>)> {
    let (g4, h6) = (4 * h, 6 * h);
    let mut d_xp = vec![0f32; t_len * b * g4];
    let mut dh_next = vec![0f32; b * h];
    let mut dc_next = vec![0f32; b * h];
    let zeros = vec![0f32; h];
    for t in (0..t_len).rev() {
        let dg = &mut d_xp[t * b * g4..(t + 1) * b * g4];
        dg.par_chunks_mut(g4)
            .zip(dc_next.par_chunks_mut(h))
            .enumerate()
            .for_each(|(r, (dg, dcn))| {
                let at = t * b + r;
                let row = &saved[at * h6..(at + 1) * h6];
                let c_prev = if t == 0 {
                    &zeros[..]
                } else {
                    &saved[(at - b) * h6 + h..(at - b) * h6 + 2 * h]
                };
                let dh = &dh_next[r * h..(r + 1) * h];
                gates_backward(row, &gh[at * h..(at + 1) * h], c_prev, dh, dg, dcn, h);
            });
        if t > 0 {
            matmul_into(
                &mut dh_next,
                View::row_major(dg, b, g4),
                View::row_major(w, g4, h),
                1.0,
                false,
            )?;
        }
    }
    // dW_hh = Σ_{t≥1} dgates_tᵀ · h_{t-1}, one product over all steps, h read in place.
    let mut d_w = vec![0f32; g4 * h];
    if t_len > 1 {
        let steps = (t_len - 1) * b;
        let dg = View::row_major(&d_xp[b * g4..], steps, g4).t();
        let h_prev = View {
            data: saved,
            rows: steps,
            cols: h,
            rs: h6,
            cs: 1,
        };
        matmul_into(&mut d_w, dg, h_prev, 1.0, false)?;
    }
    Ok((d_xp, d_w))
}

/// One row of one step forward: projected input `x`, `bias` and recurrent product `rc` (each 4H:
/// i f g o pre-activations), previous cell `c_prev` (H) → `row` (6H: h | c | i f g o). Written
/// over equal-length slices so that the loop vectorises.
fn gates_forward(x: &[f32], bias: &[f32], rc: &[f32], c_prev: &[f32], row: &mut [f32], h: usize) {
    let [x_i, x_f, x_g, x_o] = quarters(x, h);
    let [b_i, b_f, b_g, b_o] = quarters(bias, h);
    let [r_i, r_f, r_g, r_o] = quarters(rc, h);
    let (h_out, rest) = row.split_at_mut(h);
    let (c_out, rest) = rest.split_at_mut(h);
    let (i_out, rest) = rest.split_at_mut(h);
    let (f_out, rest) = rest.split_at_mut(h);
    let (g_out, o_out) = rest.split_at_mut(h);
    let (c_prev, o_out) = (&c_prev[..h], &mut o_out[..h]);
    for j in 0..h {
        let i = sigmoid((x_i[j] + b_i[j]) + r_i[j]);
        let f = sigmoid((x_f[j] + b_f[j]) + r_f[j]);
        let g = tanh((x_g[j] + b_g[j]) + r_g[j]);
        let o = sigmoid((x_o[j] + b_o[j]) + r_o[j]);
        let c = f * c_prev[j] + i * g;
        h_out[j] = o * tanh(c);
        c_out[j] = c;
        i_out[j] = i;
        f_out[j] = f;
        g_out[j] = g;
        o_out[j] = o;
    }
}

/// The four gate blocks (i, f, g, o) of a 4H row, each exactly H long.
fn quarters(s: &[f32], h: usize) -> [&[f32]; 4] {
    [&s[..h], &s[h..2 * h], &s[2 * h..3 * h], &s[3 * h..4 * h]]
}

/// One row of one step backward: the step's `row` (6H), the gradient `gh` of its h from the loss
/// (H), the previous cell, the gradient flowing back into h from the next step → gate gradients
/// `dg` (4H); `dcn` holds the gradient into c from the next step on entry and the one into this
/// step's c_prev on exit.
fn gates_backward(
    row: &[f32],
    gh: &[f32],
    c_prev: &[f32],
    dh_next: &[f32],
    dg: &mut [f32],
    dcn: &mut [f32],
    h: usize,
) {
    let (c_row, acts) = row[h..6 * h].split_at(h);
    let (i_row, acts) = acts.split_at(h);
    let (f_row, acts) = acts.split_at(h);
    let (g_row, o_row) = acts.split_at(h);
    let (d_i, d) = dg.split_at_mut(h);
    let (d_f, d) = d.split_at_mut(h);
    let (d_g, d_o) = d.split_at_mut(h);
    let (gh, c_prev, dh_next) = (&gh[..h], &c_prev[..h], &dh_next[..h]);
    let (dcn, d_o) = (&mut dcn[..h], &mut d_o[..h]);
    for j in 0..h {
        let (c, i, f, g, o) = (c_row[j], i_row[j], f_row[j], g_row[j], o_row[j]);
        let tc = tanh(c);
        let dh = gh[j] + dh_next[j];
        let dc = dcn[j] + dh * o * (1.0 - tc * tc);
        d_i[j] = dc * g * i * (1.0 - i);
        d_f[j] = dc * c_prev[j] * f * (1.0 - f);
        d_g[j] = dc * i * (1.0 - g * g);
        d_o[j] = dh * tc * o * (1.0 - o);
        dcn[j] = dc * f;
    }
}
