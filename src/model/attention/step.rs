//! One step of the attention decoder for `n` rows, shared by training ([`super::teacher`]) and
//! decoding: attention over the cells, the gated context, and the LSTM cell.

use super::{AttentionDecoder, Param};
use crate::model::activation::{exp, sigmoid, tanh};
use crate::model::cpu_math::{matmul_into, View};
use crate::Result;
use rayon::prelude::*;

/// `W [out, in]` (row-major) as the right operand of `x · Wᵀ`.
pub(crate) fn wt(w: &[f32], out: usize, inp: usize) -> View<'_> {
    View::row_major(w, out, inp).t()
}

/// `dst [rows, out] = x [rows, in] · Wᵀ + b` (or `+=` without the bias when `accumulate`).
pub(crate) fn linear(
    dst: &mut [f32],
    x: View<'_>,
    w: View<'_>,
    bias: Option<&[f32]>,
    accumulate: bool,
) -> Result<()> {
    matmul_into(dst, x, w, 1.0, accumulate)?;
    if let Some(b) = bias {
        let n = b.len();
        dst.par_chunks_mut(n.max(1) * 64).for_each(|rows| {
            for row in rows.chunks_mut(n) {
                for (v, b) in row.iter_mut().zip(b) {
                    *v += b;
                }
            }
        });
    }
    Ok(())
}

/// The feature map's projection `encoder_att(a)`, `[rows·P, A]`: the same at every step.
pub fn project_cells(
    dec: &AttentionDecoder,
    a: &[f32],
    rows: usize,
    cells: usize,
) -> Result<Vec<f32>> {
    let d = dec.dims;
    let mut att1 = vec![0.0; rows * cells * d.attention];
    linear(
        &mut att1,
        View::row_major(a, rows * cells, d.channels),
        wt(dec.param(Param::EncW), d.attention, d.channels),
        Some(dec.param(Param::EncB)),
        false,
    )?;
    Ok(att1)
}

/// The first state `(h0, c0)` `[rows, H]` each, from the mean over the cells of `a`.
pub fn initial_state(
    dec: &AttentionDecoder,
    a: &[f32],
    rows: usize,
    cells: usize,
) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
    let d = dec.dims;
    let c = d.channels;
    let mut mean = vec![0.0; rows * c];
    mean.par_chunks_mut(c.max(1))
        .zip(a.par_chunks(cells * c))
        .for_each(|(m, cells_of_row)| {
            for cell in cells_of_row.chunks(c) {
                for (m, v) in m.iter_mut().zip(cell) {
                    *m += v;
                }
            }
            for m in m.iter_mut() {
                *m /= cells as f32;
            }
        });
    let mut h = vec![0.0; rows * d.hidden];
    let mut cs = vec![0.0; rows * d.hidden];
    let x = View::row_major(&mean, rows, c);
    linear(
        &mut h,
        x,
        wt(dec.param(Param::InitHW), d.hidden, c),
        Some(dec.param(Param::InitHB)),
        false,
    )?;
    linear(
        &mut cs,
        x,
        wt(dec.param(Param::InitCW), d.hidden, c),
        Some(dec.param(Param::InitCB)),
        false,
    )?;
    Ok((h, cs, mean))
}

/// The word part of the cell's gates for `words`: `embedding(w) · W_ih[:, :E]ᵀ + b_ih + b_hh`,
/// `[words, 4H]`.
pub fn word_gates(dec: &AttentionDecoder, words: &[u32]) -> Result<Vec<f32>> {
    let d = dec.dims;
    let (e, g4) = (d.embed, 4 * d.hidden);
    let emb = dec.param(Param::Emb);
    let mut x = Vec::with_capacity(words.len() * e);
    for &w in words {
        let w = (w as usize).min(d.vocab.saturating_sub(1));
        x.extend_from_slice(&emb[w * e..(w + 1) * e]);
    }
    let bias: Vec<f32> = dec
        .param(Param::BIh)
        .iter()
        .zip(dec.param(Param::BHh))
        .map(|(a, b)| a + b)
        .collect();
    let mut out = vec![0.0; words.len() * g4];
    linear(
        &mut out,
        View::row_major(&x, words.len(), e),
        input_weight(dec, 0, e),
        Some(&bias),
        false,
    )?;
    Ok(out)
}

/// Columns `from..from+len` of `W_ih [4H, E+C]`, as the right operand of `x · W_ih[:, cols]ᵀ`.
pub(crate) fn input_weight(dec: &AttentionDecoder, from: usize, len: usize) -> View<'_> {
    let d = dec.dims;
    let w = dec.param(Param::WIh);
    View {
        data: &w[from..],
        rows: 4 * d.hidden,
        cols: len,
        rs: d.embed + d.channels,
        cs: 1,
    }
    .t()
}

/// What a step computes for its `n` rows, each `[n, ·]` row-major.
pub struct StepOut<'a> {
    /// `decoder_att(h_{t-1})`, `[n, A]`.
    pub att2: &'a mut [f32],
    /// α, `[n, P]`.
    pub alpha: &'a mut [f32],
    /// `Σ_i α_i a_i`, `[n, C]`.
    pub context: &'a mut [f32],
    /// `sigmoid(f_beta(h_{t-1}))`, `[n, C]`.
    pub gate: &'a mut [f32],
    /// `gate ⊙ context`, `[n, C]`.
    pub z: &'a mut [f32],
    /// The cell's gates after their activations, `i f g o`, `[n, 4H]`.
    pub gates: &'a mut [f32],
    /// `c_t`, `[n, H]`.
    pub c: &'a mut [f32],
    /// `h_t`, `[n, H]`.
    pub h: &'a mut [f32],
}

/// One step for `n` rows: `a [n, P, C]`, `att1 [n·P, A]` ([`project_cells`]), the state
/// `h_prev`, `c_prev [n, H]` and the word gates `xw [n, 4H]` ([`word_gates`]).
#[allow(clippy::too_many_arguments)]
pub fn step(
    dec: &AttentionDecoder,
    n: usize,
    cells: usize,
    a: &[f32],
    att1: &[f32],
    h_prev: &[f32],
    c_prev: &[f32],
    xw: &[f32],
    out: StepOut<'_>,
) -> Result<()> {
    let d = dec.dims;
    let (aa, c, h) = (d.attention, d.channels, d.hidden);
    let hp = View::row_major(&h_prev[..n * h], n, h);
    linear(
        &mut *out.att2,
        hp,
        wt(dec.param(Param::DecW), aa, h),
        Some(dec.param(Param::DecB)),
        false,
    )?;
    linear(
        &mut *out.gate,
        hp,
        wt(dec.param(Param::FbW), c, h),
        Some(dec.param(Param::FbB)),
        false,
    )?;
    let (fw, fb) = (dec.param(Param::FullW), dec.param(Param::FullB)[0]);
    let att2: &[f32] = &*out.att2;
    out.alpha
        .par_chunks_mut(cells)
        .zip(out.context.par_chunks_mut(c))
        .zip(out.gate.par_chunks_mut(c))
        .zip(out.z.par_chunks_mut(c))
        .enumerate()
        .for_each(|(b, (((alpha, ctx), gate), z))| {
            let q = &att2[b * aa..(b + 1) * aa];
            let mut max = f32::NEG_INFINITY;
            for (p, e) in alpha.iter_mut().enumerate() {
                let k = &att1[(b * cells + p) * aa..(b * cells + p + 1) * aa];
                let mut s = fb;
                for j in 0..aa {
                    s += fw[j] * (k[j] + q[j]).max(0.0);
                }
                *e = s;
                max = max.max(s);
            }
            let mut sum = 0.0;
            for e in alpha.iter_mut() {
                *e = exp(*e - max);
                sum += *e;
            }
            ctx.fill(0.0);
            let rows = &a[b * cells * c..(b + 1) * cells * c];
            for (e, cell) in alpha.iter_mut().zip(rows.chunks(c)) {
                *e /= sum;
                for (x, v) in ctx.iter_mut().zip(cell) {
                    *x += *e * v;
                }
            }
            for ((g, z), x) in gate.iter_mut().zip(z.iter_mut()).zip(ctx.iter()) {
                *g = sigmoid(*g);
                *z = *g * x;
            }
        });
    out.gates.copy_from_slice(&xw[..n * 4 * h]);
    linear(
        &mut *out.gates,
        View::row_major(&*out.z, n, c),
        input_weight(dec, d.embed, c),
        None,
        true,
    )?;
    linear(
        &mut *out.gates,
        hp,
        wt(dec.param(Param::WHh), 4 * h, h),
        None,
        true,
    )?;
    out.gates
        .par_chunks_mut(4 * h)
        .zip(out.c.par_chunks_mut(h))
        .zip(out.h.par_chunks_mut(h))
        .zip(c_prev.par_chunks(h))
        .for_each(|(((g, c), hh), cp)| {
            for j in 0..h {
                let i = sigmoid(g[j]);
                let f = sigmoid(g[h + j]);
                let gg = tanh(g[2 * h + j]);
                let o = sigmoid(g[3 * h + j]);
                g[j] = i;
                g[h + j] = f;
                g[2 * h + j] = gg;
                g[3 * h + j] = o;
                c[j] = f * cp[j] + i * gg;
                hh[j] = o * tanh(c[j]);
            }
        });
    Ok(())
}
