//! The whole LSTM recurrence as one op with hand-written backpropagation through time. Per-step
//! graph nodes made candle's backward quadratic in the sequence length (each step's narrow of the
//! projected input is back-propagated as a zero-padded copy of the whole sequence).

use crate::model::activation::{sigmoid, tanh};
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Device, Layout, Shape, Tensor};
use rayon::prelude::*;

fn f32s<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(d), Some((a, b))) => Ok(&d[a..b]),
        _ => candle_core::bail!("lstm sequence: {what} must be contiguous f32"),
    }
}

/// `a [m, k] · w^T` for a row-major `w [n, k]` (or `a · w` when `transpose` is false, w `[k, n]`).
fn matmul(a: &[f32], m: usize, w: &Tensor, transpose: bool) -> candle_core::Result<Vec<f32>> {
    let k = if transpose { w.dim(1)? } else { w.dim(0)? };
    let a = Tensor::from_slice(a, (m, k), &Device::Cpu)?;
    let r = if transpose {
        a.matmul(&w.t()?)?
    } else {
        a.matmul(w)?
    };
    r.flatten_all()?.to_vec1::<f32>()
}

/// Forward: projected inputs `xp [T, B, 4H]` (x·W_ih^T + biases) and `W_hh [4H, H]`, zero
/// initial state → `[T, B, 6H]` holding per step `h | c | i f g o` (activated gates, kept for
/// the backward pass). Only the `h` and `c` parts may be used by the graph.
pub(crate) struct LstmSeq;

impl CustomOp2 for LstmSeq {
    fn name(&self) -> &'static str {
        "lstm-sequence"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (t_len, b, g4) = l1.shape().dims3()?;
        let h = g4 / 4;
        let xp = f32s(s1, l1, "projected input")?;
        let w = Tensor::from_slice(f32s(s2, l2, "W_hh")?, (g4, h), &Device::Cpu)?;
        let mut out = vec![0f32; t_len * b * 6 * h];
        let mut h_prev = vec![0f32; b * h];
        for t in 0..t_len {
            let rec = if t == 0 {
                vec![0f32; b * g4]
            } else {
                matmul(&h_prev, b, &w, true)?
            };
            let (before, cur) = out.split_at_mut(t * b * 6 * h);
            let prev = if t == 0 {
                None
            } else {
                Some(&before[(t - 1) * b * 6 * h..])
            };
            let zeros = vec![0f32; h];
            cur[..b * 6 * h]
                .par_chunks_mut(6 * h)
                .enumerate()
                .for_each(|(r, row)| {
                    let x = &xp[(t * b + r) * g4..(t * b + r + 1) * g4];
                    let rc = &rec[r * g4..(r + 1) * g4];
                    let c_prev = prev.map_or(&zeros[..], |p| &p[r * 6 * h + h..r * 6 * h + 2 * h]);
                    gates_forward(x, rc, c_prev, row, h);
                });
            for r in 0..b {
                let src = &out[(t * b + r) * 6 * h..(t * b + r) * 6 * h + h];
                h_prev[r * h..(r + 1) * h].copy_from_slice(src);
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((t_len, b, 6 * h))))
    }

    fn bwd(
        &self,
        _xp: &Tensor,
        w_hh: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (t_len, b, h6) = res.dims3()?;
        let h = h6 / 6;
        let grad_res = grad_res.contiguous()?;
        let d_xp = res.apply_op3_no_bwd(&grad_res, &w_hh.detach(), &LstmSeqBwd)?;
        // dW_hh = Σ_t dgates_t^T · h_{t-1}, as one product over all steps t >= 1.
        let d_w = if t_len > 1 {
            let dg = d_xp
                .narrow(0, 1, t_len - 1)?
                .reshape(((t_len - 1) * b, 4 * h))?;
            let hp = res
                .narrow(0, 0, t_len - 1)?
                .narrow(2, 0, h)?
                .reshape(((t_len - 1) * b, h))?;
            dg.t()?.matmul(&hp)?
        } else {
            w_hh.zeros_like()?
        };
        Ok((Some(d_xp), Some(d_w)))
    }
}

/// One row of one step forward: projected input `x` and recurrent product `rc` (each 4H: i f g o
/// pre-activations), previous cell `c_prev` (H) → `row` (6H: h | c | i f g o). Written over
/// equal-length slices so that the loop vectorises.
fn gates_forward(x: &[f32], rc: &[f32], c_prev: &[f32], row: &mut [f32], h: usize) {
    let (x_i, x) = x.split_at(h);
    let (x_f, x) = x.split_at(h);
    let (x_g, x_o) = x.split_at(h);
    let (r_i, rc) = rc.split_at(h);
    let (r_f, rc) = rc.split_at(h);
    let (r_g, r_o) = rc.split_at(h);
    let (h_out, row) = row.split_at_mut(h);
    let (c_out, row) = row.split_at_mut(h);
    let (i_out, row) = row.split_at_mut(h);
    let (f_out, row) = row.split_at_mut(h);
    let (g_out, o_out) = row.split_at_mut(h);
    let c_prev = &c_prev[..h];
    let x_o = &x_o[..h];
    let r_o = &r_o[..h];
    let o_out = &mut o_out[..h];
    for j in 0..h {
        let i = sigmoid(x_i[j] + r_i[j]);
        let f = sigmoid(x_f[j] + r_f[j]);
        let g = tanh(x_g[j] + r_g[j]);
        let o = sigmoid(x_o[j] + r_o[j]);
        let c = f * c_prev[j] + i * g;
        h_out[j] = o * tanh(c);
        c_out[j] = c;
        i_out[j] = i;
        f_out[j] = f;
        g_out[j] = g;
        o_out[j] = o;
    }
}

/// One row of one step backward: the step's `row` (6H), the gradient of its h and c (`gr`, 6H,
/// first 2H used), the previous cell, the gradient flowing back into h from the next step →
/// gate gradients `dg` (4H); `dcn` holds the gradient into c from the next step on entry and the
/// one into this step's c_prev on exit.
fn gates_backward(
    row: &[f32],
    gr: &[f32],
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
    let (gh, gc) = gr[..2 * h].split_at(h);
    let (d_i, d) = dg.split_at_mut(h);
    let (d_f, d) = d.split_at_mut(h);
    let (d_g, d_o) = d.split_at_mut(h);
    let (c_prev, dh_next, dcn, d_o) = (&c_prev[..h], &dh_next[..h], &mut dcn[..h], &mut d_o[..h]);
    for j in 0..h {
        let (c, i, f, g, o) = (c_row[j], i_row[j], f_row[j], g_row[j], o_row[j]);
        let tc = tanh(c);
        let dh = gh[j] + dh_next[j];
        let dc = gc[j] + dcn[j] + dh * o * (1.0 - tc * tc);
        d_i[j] = dc * g * i * (1.0 - i);
        d_f[j] = dc * c_prev[j] * f * (1.0 - f);
        d_g[j] = dc * i * (1.0 - g * g);
        d_o[j] = dh * tc * o * (1.0 - o);
        dcn[j] = dc * f;
    }
}

/// Backward through time: (res `[T,B,6H]`, grad of res, `W_hh`) → d xp `[T, B, 4H]`.
struct LstmSeqBwd;

impl CustomOp3 for LstmSeqBwd {
    fn name(&self) -> &'static str {
        "lstm-sequence-bwd"
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
        let (t_len, b, h6) = l1.shape().dims3()?;
        let h = h6 / 6;
        let res = f32s(s1, l1, "result")?;
        let grad = f32s(s2, l2, "gradient")?;
        let w = Tensor::from_slice(f32s(s3, l3, "W_hh")?, (4 * h, h), &Device::Cpu)?;
        let mut d_xp = vec![0f32; t_len * b * 4 * h];
        let mut dh_next = vec![0f32; b * h];
        let mut dc_next = vec![0f32; b * h];
        for t in (0..t_len).rev() {
            let dg = &mut d_xp[t * b * 4 * h..(t + 1) * b * 4 * h];
            let zeros = vec![0f32; h];
            dg.par_chunks_mut(4 * h)
                .zip(dc_next.par_chunks_mut(h))
                .enumerate()
                .for_each(|(r, (dg, dcn))| {
                    let row = &res[(t * b + r) * h6..(t * b + r + 1) * h6];
                    let gr = &grad[(t * b + r) * h6..(t * b + r + 1) * h6];
                    let c_prev = if t == 0 {
                        &zeros[..]
                    } else {
                        let at = ((t - 1) * b + r) * h6 + h;
                        &res[at..at + h]
                    };
                    let dh_next = &dh_next[r * h..(r + 1) * h];
                    gates_backward(row, gr, c_prev, dh_next, dg, dcn, h);
                });
            if t > 0 {
                dh_next = matmul(dg, b, &w, false)?;
            }
        }
        Ok((CpuStorage::F32(d_xp), Shape::from((t_len, b, 4 * h))))
    }
}
