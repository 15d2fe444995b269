//! A teacher-forced batch through the attention decoder, forward and backward by hand.
//!
//! Captions are sorted by length, longest first (as the tutorial does), so the rows still running
//! at step `t` are always the first `n_t`: each step is one product over a contiguous block, and a
//! caption runs exactly its own `len + 1` steps. Every step's rows are kept ("time-major": the
//! `n_0` rows of step 0, then the `n_1` of step 1, ...) for the backward pass, which runs the
//! recurrence in reverse and leaves every weight gradient to a few large products at the end.

use super::step::{
    initial_state, input_weight, linear, project_cells, step, word_gates, wt, StepOut,
};
use super::{AttentionDecoder, Param, ParamBuffers};
use crate::model::cpu_math::{column_sums, matmul_into, View};
use crate::{Error, Result};
use rand::Rng;
use rayon::prelude::*;

/// A batch of captions over their images' feature maps.
pub struct TeacherBatch<'a> {
    /// Feature maps `[B, P, C]`, in caption order.
    pub maps: &'a [f32],
    /// Cells P per map.
    pub cells: usize,
    /// The captions' words (without start and end), one per map.
    pub captions: &'a [&'a [u32]],
    /// Id of `startofseq`, fed at the first step.
    pub start: u32,
    /// Id of `endofseq`, the last target.
    pub end: u32,
}

/// Training-time settings of a pass.
#[derive(Debug, Clone, Copy)]
pub struct PassOptions {
    /// Dropout probability before `fc` (0 in evaluation).
    pub dropout: f32,
    /// Weight α_c of the attention regulariser `Σ_i (1 − Σ_t α_ti)²`.
    pub alpha_c: f32,
}

/// The loss of a pass.
#[derive(Debug, Clone, Copy)]
pub struct Loss {
    /// Mean cross-entropy over the real target tokens.
    pub ce: f64,
    /// `α_c` · mean over the batch of `Σ_i (1 − Σ_t α_ti)²`.
    pub attention: f64,
    /// Target tokens scored.
    pub tokens: usize,
}

impl Loss {
    /// What training minimises: `ce + attention`.
    pub fn total(&self) -> f64 {
        self.ce + self.attention
    }
}

/// A forward pass and everything its backward pass needs.
pub struct Pass {
    /// Batch size B.
    batch: usize,
    cells: usize,
    /// Original caption index of each sorted row.
    order: Vec<usize>,
    /// Rows running at each step.
    running: Vec<usize>,
    /// First time-major row of each step.
    offset: Vec<usize>,
    /// Sorted feature maps `[B, P, C]` and their projection `[B·P, A]`.
    maps: Vec<f32>,
    att1: Vec<f32>,
    /// Mean of each map over its cells, `[B, C]`.
    mean: Vec<f32>,
    /// Input and target word of every time-major row.
    inputs: Vec<u32>,
    targets: Vec<u32>,
    /// Per time-major row: the state before the step, and what the step computed.
    h_prev: Vec<f32>,
    c_prev: Vec<f32>,
    att2: Vec<f32>,
    alpha: Vec<f32>,
    context: Vec<f32>,
    gate: Vec<f32>,
    z: Vec<f32>,
    gates: Vec<f32>,
    c: Vec<f32>,
    /// `dropout(h)`, and the dropout's factor per element (empty without dropout).
    h_dropped: Vec<f32>,
    keep: Vec<f32>,
    /// The logits `[R, V]`.
    logits: Vec<f32>,
    alpha_c: f32,
    /// The loss.
    pub loss: Loss,
}

impl Pass {
    /// Rows R = target tokens.
    pub fn rows(&self) -> usize {
        self.targets.len()
    }

    /// Time-major row indices in the order "step by step, captions in batch order" (the order a
    /// reference that does not sort lays them out in).
    pub fn batch_order(&self) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.rows());
        for (&n, &off) in self.running.iter().zip(&self.offset) {
            let mut rows: Vec<(usize, usize)> = (0..n).map(|s| (self.order[s], off + s)).collect();
            rows.sort_unstable();
            out.extend(rows.into_iter().map(|(_, r)| r));
        }
        out
    }

    /// The logits `[R, V]`, time-major.
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }

    /// The attention weights `[R, P]`, time-major.
    pub fn alphas(&self) -> &[f32] {
        &self.alpha
    }
}

/// Runs the batch forward, computing the loss. `rng` draws the dropout mask.
pub fn forward(
    dec: &AttentionDecoder,
    batch: &TeacherBatch<'_>,
    opts: PassOptions,
    rng: &mut impl Rng,
) -> Result<Pass> {
    let d = dec.dims;
    let (cells, c, h, v) = (batch.cells, d.channels, d.hidden, d.vocab);
    let b = batch.captions.len();
    if b == 0 || cells == 0 || batch.maps.len() != b * cells * c {
        return Err(Error::Internal(format!(
            "attention batch: {} map values for {b} captions of {cells} cells × {c} channels",
            batch.maps.len()
        )));
    }
    if let Some(w) = batch
        .captions
        .iter()
        .flat_map(|c| c.iter())
        .chain([&batch.start, &batch.end])
        .find(|&&w| w as usize >= v)
    {
        return Err(Error::Internal(format!(
            "word id {w} outside the vocabulary of {v}"
        )));
    }
    let mut order: Vec<usize> = (0..b).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(batch.captions[i].len()));
    let steps = batch.captions[order[0]].len() + 1;
    let running: Vec<usize> = (0..steps)
        .map(|t| {
            order
                .iter()
                .take_while(|&&i| batch.captions[i].len() + 1 > t)
                .count()
        })
        .collect();
    let offset: Vec<usize> = running
        .iter()
        .scan(0, |acc, &n| {
            let o = *acc;
            *acc += n;
            Some(o)
        })
        .collect();
    let rows: usize = running.iter().sum();
    let mut inputs = Vec::with_capacity(rows);
    let mut targets = Vec::with_capacity(rows);
    for (t, &n) in running.iter().enumerate() {
        for &i in &order[..n] {
            let cap = batch.captions[i];
            inputs.push(if t == 0 { batch.start } else { cap[t - 1] });
            targets.push(if t < cap.len() { cap[t] } else { batch.end });
        }
    }
    let mut maps = Vec::with_capacity(batch.maps.len());
    for &i in &order {
        maps.extend_from_slice(&batch.maps[i * cells * c..(i + 1) * cells * c]);
    }
    let att1 = project_cells(dec, &maps, b, cells)?;
    let (h0, c0, mean) = initial_state(dec, &maps, b, cells)?;
    let xw = word_gates(dec, &inputs)?;

    let mut pass = Pass {
        batch: b,
        cells,
        order,
        running,
        offset,
        maps,
        att1,
        mean,
        inputs,
        targets,
        h_prev: vec![0.0; rows * h],
        c_prev: vec![0.0; rows * h],
        att2: vec![0.0; rows * d.attention],
        alpha: vec![0.0; rows * cells],
        context: vec![0.0; rows * c],
        gate: vec![0.0; rows * c],
        z: vec![0.0; rows * c],
        gates: vec![0.0; rows * 4 * h],
        c: vec![0.0; rows * h],
        h_dropped: vec![0.0; rows * h],
        keep: Vec::new(),
        logits: vec![0.0; rows * v],
        alpha_c: opts.alpha_c,
        loss: Loss {
            ce: 0.0,
            attention: 0.0,
            tokens: rows,
        },
    };
    // `h_dropped` holds h until dropout is applied below.
    let mut h_all = std::mem::take(&mut pass.h_dropped);
    for t in 0..steps {
        let (n, off) = (pass.running[t], pass.offset[t]);
        let r = off..off + n;
        if t == 0 {
            pass.h_prev[..n * h].copy_from_slice(&h0[..n * h]);
            pass.c_prev[..n * h].copy_from_slice(&c0[..n * h]);
        } else {
            let prev = pass.offset[t - 1];
            let (done, _) = h_all.split_at(off * h);
            pass.h_prev[off * h..(off + n) * h].copy_from_slice(&done[prev * h..(prev + n) * h]);
            let (done_c, _) = pass.c.split_at(off * h);
            pass.c_prev[off * h..(off + n) * h].copy_from_slice(&done_c[prev * h..(prev + n) * h]);
        }
        let (c_before, c_now) = (
            &pass.c_prev[r.start * h..r.end * h],
            &mut pass.c[r.start * h..r.end * h],
        );
        step(
            dec,
            n,
            cells,
            &pass.maps,
            &pass.att1,
            &pass.h_prev[r.start * h..r.end * h],
            c_before,
            &xw[r.start * 4 * h..r.end * 4 * h],
            StepOut {
                att2: &mut pass.att2[r.start * d.attention..r.end * d.attention],
                alpha: &mut pass.alpha[r.start * cells..r.end * cells],
                context: &mut pass.context[r.start * c..r.end * c],
                gate: &mut pass.gate[r.start * c..r.end * c],
                z: &mut pass.z[r.start * c..r.end * c],
                gates: &mut pass.gates[r.start * 4 * h..r.end * 4 * h],
                c: c_now,
                h: &mut h_all[r.start * h..r.end * h],
            },
        )?;
    }
    if opts.dropout > 0.0 {
        let p = opts.dropout;
        let scale = 1.0 / (1.0 - p);
        pass.keep = (0..rows * h)
            .map(|_| if rng.random::<f32>() < p { 0.0 } else { scale })
            .collect();
        for (x, k) in h_all.iter_mut().zip(&pass.keep) {
            *x *= k;
        }
    }
    pass.h_dropped = h_all;
    linear(
        &mut pass.logits,
        View::row_major(&pass.h_dropped, rows, h),
        wt(dec.param(Param::FcW), v, h),
        Some(dec.param(Param::FcB)),
        false,
    )?;
    // Cross-entropy per row (log-sum-exp in f64 for the sum).
    let ce: f64 = pass
        .logits
        .par_chunks(v)
        .zip(pass.targets.par_iter())
        .map(|(row, &y)| {
            let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
            let sum: f64 = row.iter().map(|&x| ((x - max) as f64).exp()).sum();
            sum.ln() + (max - row[y as usize]) as f64
        })
        .sum();
    pass.loss.ce = ce / rows as f64;
    pass.loss.attention = opts.alpha_c as f64
        * attention_sums(&pass)
            .iter()
            .map(|s| (1.0 - *s as f64).powi(2))
            .sum::<f64>()
        / b as f64;
    Ok(pass)
}

/// `Σ_t α_ti` of every sorted caption and cell, `[B, P]`.
fn attention_sums(pass: &Pass) -> Vec<f32> {
    let p = pass.cells;
    let mut sums = vec![0.0; pass.batch * p];
    for (&n, &off) in pass.running.iter().zip(&pass.offset) {
        for (s, a) in sums[..n * p]
            .iter_mut()
            .zip(&pass.alpha[off * p..(off + n) * p])
        {
            *s += a;
        }
    }
    sums
}

/// The gradient of the pass's total loss with respect to every parameter (the feature maps are
/// frozen: no gradient flows into them).
pub fn backward(dec: &AttentionDecoder, pass: &Pass) -> Result<ParamBuffers> {
    let d = dec.dims;
    let (cells, c, h, v, aa, e) = (
        pass.cells,
        d.channels,
        d.hidden,
        d.vocab,
        d.attention,
        d.embed,
    );
    let (rows, b) = (pass.rows(), pass.batch);
    let mut g = dec.zeros_like();

    // Output layer and cross-entropy: d logits = (softmax − onehot) / R.
    let mut dlogits = pass.logits.clone();
    dlogits
        .par_chunks_mut(v)
        .zip(pass.targets.par_iter())
        .for_each(|(row, &y)| {
            let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
            let mut sum = 0.0f64;
            for x in row.iter_mut() {
                *x = ((*x - max) as f64).exp() as f32;
                sum += *x as f64;
            }
            let inv = (1.0 / sum) as f32;
            for x in row.iter_mut() {
                *x *= inv;
            }
            row[y as usize] -= 1.0;
            for x in row.iter_mut() {
                *x /= rows as f32;
            }
        });
    let dl = View::row_major(&dlogits, rows, v);
    matmul_into(
        &mut g[Param::FcW as usize],
        dl.t(),
        View::row_major(&pass.h_dropped, rows, h),
        1.0,
        false,
    )?;
    g[Param::FcB as usize] = column_sums(&dlogits, v, 1.0);
    let mut dh_out = vec![0.0; rows * h];
    matmul_into(
        &mut dh_out,
        dl,
        View::row_major(dec.param(Param::FcW), v, h),
        1.0,
        false,
    )?;
    if !pass.keep.is_empty() {
        for (x, k) in dh_out.iter_mut().zip(&pass.keep) {
            *x *= k;
        }
    }

    // The regulariser's gradient on each α: 2 α_c (Σ_t α − 1) / B.
    let sums = attention_sums(pass);
    let reg_scale = 2.0 * pass.alpha_c / b as f32;

    // Per time-major row: d(pre-activation gates), d(f_beta's pre-activation), d(att2).
    let mut dgates = vec![0.0; rows * 4 * h];
    let mut dgate_pre = vec![0.0; rows * c];
    let mut datt2 = vec![0.0; rows * aa];
    // d(att1) summed over the steps, `[B·P, A]`.
    let mut datt1 = vec![0.0; b * cells * aa];
    let mut dh_carry = vec![0.0; b * h];
    let mut dc_carry = vec![0.0; b * h];
    let mut dz = vec![0.0; b * c];
    let (fw, w_ih_z, w_hh, w_fb, w_dec) = (
        dec.param(Param::FullW),
        input_weight(dec, e, c),
        dec.param(Param::WHh),
        dec.param(Param::FbW),
        dec.param(Param::DecW),
    );
    for t in (0..pass.running.len()).rev() {
        let (n, off) = (pass.running[t], pass.offset[t]);
        let rg = |w: usize| off * w..(off + n) * w;
        // The cell: from dh (this step's output + what later steps sent back) to d gates.
        {
            let dgt = &mut dgates[rg(4 * h)];
            dgt.par_chunks_mut(4 * h)
                .zip(dh_carry[..n * h].par_chunks_mut(h))
                .zip(dc_carry[..n * h].par_chunks_mut(h))
                .enumerate()
                .for_each(|(s, ((dg, dhc), dcc))| {
                    let r = off + s;
                    let act = &pass.gates[r * 4 * h..(r + 1) * 4 * h];
                    let cc = &pass.c[r * h..(r + 1) * h];
                    let cp = &pass.c_prev[r * h..(r + 1) * h];
                    let dho = &dh_out[r * h..(r + 1) * h];
                    for j in 0..h {
                        let (i, f, gg, o) = (act[j], act[h + j], act[2 * h + j], act[3 * h + j]);
                        let dh = dho[j] + dhc[j];
                        let tc = crate::model::activation::tanh(cc[j]);
                        let dc = dcc[j] + dh * o * (1.0 - tc * tc);
                        dg[j] = dc * gg * i * (1.0 - i);
                        dg[h + j] = dc * cp[j] * f * (1.0 - f);
                        dg[2 * h + j] = dc * i * (1.0 - gg * gg);
                        dg[3 * h + j] = dh * tc * o * (1.0 - o);
                        dcc[j] = dc * f;
                    }
                });
        }
        let dg_view = View::row_major(&dgates[rg(4 * h)], n, 4 * h);
        // d h_prev = dgates · W_hh (then + f_beta's and decoder_att's parts below).
        matmul_into(
            &mut dh_carry[..n * h],
            dg_view,
            View::row_major(w_hh, 4 * h, h),
            1.0,
            false,
        )?;
        // d z = dgates · W_ih[:, E:].
        matmul_into(&mut dz[..n * c], dg_view, w_ih_z.t(), 1.0, false)?;
        // z = gate ⊙ context: to d(f_beta pre-activation) and d α (through the context).
        let mut dalpha = vec![0.0; n * cells];
        dgate_pre[rg(c)]
            .par_chunks_mut(c)
            .zip(dalpha.par_chunks_mut(cells))
            .enumerate()
            .for_each(|(s, (dgp, da))| {
                let r = off + s;
                let gate = &pass.gate[r * c..(r + 1) * c];
                let ctx = &pass.context[r * c..(r + 1) * c];
                let dzr = &dz[s * c..(s + 1) * c];
                for j in 0..c {
                    dgp[j] = dzr[j] * ctx[j] * gate[j] * (1.0 - gate[j]);
                }
                // d α_p = Σ_c d context_c · a_pc (+ the regulariser's part), d context = dz ⊙ gate.
                let alpha = &pass.alpha[r * cells..(r + 1) * cells];
                let sums_b = &sums[s * cells..(s + 1) * cells];
                let map = &pass.maps[s * cells * c..(s + 1) * cells * c];
                let mut dot = 0.0;
                for p in 0..cells {
                    let cell = &map[p * c..(p + 1) * c];
                    let mut acc = 0.0;
                    for j in 0..c {
                        acc += dzr[j] * gate[j] * cell[j];
                    }
                    da[p] = acc + reg_scale * (sums_b[p] - 1.0);
                    dot += alpha[p] * da[p];
                }
                // Softmax: d e_p = α_p (d α_p − Σ α d α).
                for p in 0..cells {
                    da[p] = alpha[p] * (da[p] - dot);
                }
            });
        // d e → d full_att, d(att1 + att2) (where the relu passed), d att2 = Σ_p of that.
        let att2 = &pass.att2[rg(aa)];
        let mut dfull = vec![0.0f32; aa + 1];
        {
            let parts: Vec<Vec<f32>> = datt1[..n * cells * aa]
                .par_chunks_mut(cells * aa)
                .zip(datt2[rg(aa)].par_chunks_mut(aa))
                .enumerate()
                .map(|(s, (dk, dq))| {
                    let mut dfw = vec![0.0f32; aa + 1];
                    let q = &att2[s * aa..(s + 1) * aa];
                    for p in 0..cells {
                        let de = dalpha[s * cells + p];
                        let k = &pass.att1[(s * cells + p) * aa..(s * cells + p + 1) * aa];
                        let dkp = &mut dk[p * aa..(p + 1) * aa];
                        for j in 0..aa {
                            let pre = k[j] + q[j];
                            if pre > 0.0 {
                                dfw[j] += de * pre;
                                let dpre = de * fw[j];
                                dkp[j] += dpre;
                                dq[j] += dpre;
                            }
                        }
                        dfw[aa] += de;
                    }
                    dfw
                })
                .collect();
            for p in parts {
                for (a, b) in dfull.iter_mut().zip(p) {
                    *a += b;
                }
            }
        }
        for (a, b) in g[Param::FullW as usize].iter_mut().zip(&dfull[..aa]) {
            *a += b;
        }
        g[Param::FullB as usize][0] += dfull[aa];
        // d h_prev += d(f_beta pre) · W_fb + d att2 · W_dec.
        let dgp_view = View::row_major(&dgate_pre[rg(c)], n, c);
        matmul_into(
            &mut dh_carry[..n * h],
            dgp_view,
            View::row_major(w_fb, c, h),
            1.0,
            true,
        )?;
        let dq_view = View::row_major(&datt2[rg(aa)], n, aa);
        matmul_into(
            &mut dh_carry[..n * h],
            dq_view,
            View::row_major(w_dec, aa, h),
            1.0,
            true,
        )?;
    }

    // The weights, each from one product over every time-major row.
    let dg_all = View::row_major(&dgates, rows, 4 * h);
    let hp = View::row_major(&pass.h_prev, rows, h);
    matmul_into(&mut g[Param::WHh as usize], dg_all.t(), hp, 1.0, false)?;
    let bias = column_sums(&dgates, 4 * h, 1.0);
    g[Param::BIh as usize] = bias.clone();
    g[Param::BHh as usize] = bias;
    // W_ih = [W_e | W_z]: its two column blocks, written into the [4H, E+C] gradient.
    let mut dw_e = vec![0.0; 4 * h * e];
    let mut emb_rows = Vec::with_capacity(rows * e);
    let emb = dec.param(Param::Emb);
    for &w in &pass.inputs {
        emb_rows.extend_from_slice(&emb[w as usize * e..(w as usize + 1) * e]);
    }
    matmul_into(
        &mut dw_e,
        dg_all.t(),
        View::row_major(&emb_rows, rows, e),
        1.0,
        false,
    )?;
    let mut dw_z = vec![0.0; 4 * h * c];
    matmul_into(
        &mut dw_z,
        dg_all.t(),
        View::row_major(&pass.z, rows, c),
        1.0,
        false,
    )?;
    for (row, (we, wz)) in g[Param::WIh as usize]
        .chunks_mut(e + c)
        .zip(dw_e.chunks(e).zip(dw_z.chunks(c)))
    {
        row[..e].copy_from_slice(we);
        row[e..].copy_from_slice(wz);
    }
    // The embedding: each row's d input, summed into the rows of the words used.
    let mut demb_rows = vec![0.0; rows * e];
    matmul_into(
        &mut demb_rows,
        dg_all,
        input_weight(dec, 0, e).t(),
        1.0,
        false,
    )?;
    for (&w, d) in pass.inputs.iter().zip(demb_rows.chunks(e)) {
        for (a, b) in g[Param::Emb as usize][w as usize * e..(w as usize + 1) * e]
            .iter_mut()
            .zip(d)
        {
            *a += b;
        }
    }
    let dgp_all = View::row_major(&dgate_pre, rows, c);
    matmul_into(&mut g[Param::FbW as usize], dgp_all.t(), hp, 1.0, false)?;
    g[Param::FbB as usize] = column_sums(&dgate_pre, c, 1.0);
    let dq_all = View::row_major(&datt2, rows, aa);
    matmul_into(&mut g[Param::DecW as usize], dq_all.t(), hp, 1.0, false)?;
    g[Param::DecB as usize] = column_sums(&datt2, aa, 1.0);
    let dk_all = View::row_major(&datt1, b * cells, aa);
    matmul_into(
        &mut g[Param::EncW as usize],
        dk_all.t(),
        View::row_major(&pass.maps, b * cells, c),
        1.0,
        false,
    )?;
    g[Param::EncB as usize] = column_sums(&datt1, aa, 1.0);
    // The first state: h0 = init_h(mean), c0 = init_c(mean).
    let mean = View::row_major(&pass.mean, b, c);
    matmul_into(
        &mut g[Param::InitHW as usize],
        View::row_major(&dh_carry, b, h).t(),
        mean,
        1.0,
        false,
    )?;
    g[Param::InitHB as usize] = column_sums(&dh_carry, h, 1.0);
    matmul_into(
        &mut g[Param::InitCW as usize],
        View::row_major(&dc_carry, b, h).t(),
        mean,
        1.0,
        false,
    )?;
    g[Param::InitCB as usize] = column_sums(&dc_carry, h, 1.0);
    Ok(g)
}
