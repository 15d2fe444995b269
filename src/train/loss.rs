//! Cross-entropy over the real tokens, as one fused op (log-softmax + NLL + mean) with its
//! analytic gradient `(softmax - onehot) / N`: candle's stock log-softmax, gather and their
//! backward were ~70 + ~100 ms of the seed's 297 ms PyTorch-equivalent step.

use crate::Result;
use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

fn rows<'a>(
    s: &'a CpuStorage,
    l: &Layout,
    t: &'a CpuStorage,
    tl: &Layout,
) -> candle_core::Result<(&'a [f32], &'a [u32], usize, usize)> {
    let (n, v) = l.shape().dims2()?;
    let logits = match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(d), Some((a, b))) => &d[a..b],
        _ => candle_core::bail!("cross-entropy: logits must be contiguous f32"),
    };
    let targets = match (t, tl.contiguous_offsets()) {
        (CpuStorage::U32(d), Some((a, b))) => &d[a..b],
        _ => candle_core::bail!("cross-entropy: targets must be contiguous u32"),
    };
    if targets.len() != n {
        candle_core::bail!("cross-entropy: {} targets for {n} rows", targets.len());
    }
    if let Some(&bad) = targets.iter().find(|&&t| t as usize >= v) {
        candle_core::bail!("cross-entropy: target {bad} outside vocabulary of {v}");
    }
    Ok((logits, targets, n, v))
}

/// log-sum-exp of a row, max-shifted as PyTorch does.
fn lse(row: &[f32]) -> f32 {
    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let s: f32 = row.iter().map(|&x| (x - m).exp()).sum();
    m + s.ln()
}

struct CrossEntropy;

impl CustomOp2 for CrossEntropy {
    fn name(&self) -> &'static str {
        "cross-entropy"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (logits, targets, n, v) = rows(s1, l1, s2, l2)?;
        let per_row: Vec<f32> = logits
            .par_chunks(v)
            .zip(targets.par_iter())
            .map(|(row, &t)| lse(row) - row[t as usize])
            .collect();
        // Summed in a fixed order so the loss does not depend on the thread count.
        let total: f64 = per_row.iter().map(|&x| x as f64).sum();
        let mean = if n == 0 { 0.0 } else { total / n as f64 };
        Ok((CpuStorage::F32(vec![mean as f32]), Shape::from(())))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let g = logits.apply_op2_no_bwd(targets, &CrossEntropyGrad)?;
        Ok((Some(g.broadcast_mul(grad_res)?), None))
    }
}

/// `(softmax(logits) - onehot(targets)) / N`, the gradient of the mean loss.
struct CrossEntropyGrad;

impl CustomOp2 for CrossEntropyGrad {
    fn name(&self) -> &'static str {
        "cross-entropy-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (logits, targets, n, v) = rows(s1, l1, s2, l2)?;
        let scale = 1.0 / n.max(1) as f32;
        let mut out = vec![0f32; n * v];
        out.par_chunks_mut(v)
            .zip(logits.par_chunks(v))
            .zip(targets.par_iter())
            .for_each(|((o, row), &t)| {
                let l = lse(row);
                for (o, &x) in o.iter_mut().zip(row) {
                    *o = (x - l).exp() * scale;
                }
                o[t as usize] -= scale;
            });
        Ok((CpuStorage::F32(out), Shape::from((n, v))))
    }
}

/// Mean cross-entropy of `logits [N, V]` (f32) against `targets [N]` (u32): PyTorch's
/// `CrossEntropyLoss(ignore_index=pad)` once pad positions have been dropped. A scalar tensor
/// that backpropagates into `logits`.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let logits = logits.contiguous()?;
    let targets = targets.contiguous()?;
    if logits.device().is_cpu() {
        Ok(logits.apply_op2(&targets, CrossEntropy)?)
    } else {
        Ok(candle_nn::loss::cross_entropy(&logits, &targets)?)
    }
}
