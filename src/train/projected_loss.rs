//! The output layer and the loss as one CPU op: `logits = hidden · Wᵀ + b` for the real tokens,
//! their mean cross-entropy, and in backward the three gradients straight from
//! `G = (softmax(logits) − onehot(targets)) / N`, which the forward pass leaves behind in place of
//! the logits. As separate candle ops the `[N, V]` logits (46 MB at vocab 9000) went through a bias
//! add, the loss, its gradient, a scale, the matmul's backward against a transposed weight and a
//! zero-filled accumulator per node; see docs/performance.md for what this bought.

use crate::model::activation::exp;
use crate::model::cpu_math::{column_sums, f32_data, matmul_into, View};
use crate::Result;
use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Storage, Tensor};
use rayon::prelude::*;
use std::sync::Mutex;

/// A copy of a tensor's f32 data (only on the rare path that recomputes `G`).
fn vec_of(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.flatten_all()?
        .to_dtype(candle_core::DType::F32)?
        .to_vec1::<f32>()
}

/// Runs `f` on the contiguous f32 data of a CPU tensor.
fn with_data<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(s) => Ok(f(f32_data(s, layout, "projected loss: tensor")?)),
        _ => candle_core::bail!("projected loss: CPU tensors only"),
    }
}

/// Largest element and `Σ exp(x − max)` of a row, in 16 lanes so that both loops vectorise.
fn max_and_sum_exp(row: &[f32]) -> (f32, f32) {
    const L: usize = 16;
    let chunks = row.chunks_exact(L);
    let tail = chunks.remainder();
    let mut lanes = [f32::NEG_INFINITY; L];
    for c in chunks.clone() {
        for (m, &x) in lanes.iter_mut().zip(c) {
            *m = m.max(x);
        }
    }
    let m = tail
        .iter()
        .chain(&lanes)
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    let mut sums = [0f32; L];
    for c in chunks {
        for (s, &x) in sums.iter_mut().zip(c) {
            *s += exp(x - m);
        }
    }
    let s = sums.iter().sum::<f32>() + tail.iter().map(|&x| exp(x - m)).sum::<f32>();
    (m, s)
}

/// The forward computation: per-row losses and `G [N, V]`.
fn loss_and_grad(
    hidden: &[f32],
    w: &[f32],
    bias: &[f32],
    targets: &[u32],
    h: usize,
) -> candle_core::Result<(Vec<f32>, Vec<f32>)> {
    let (n, v) = (targets.len(), bias.len());
    if hidden.len() != n * h || w.len() != v * h {
        candle_core::bail!(
            "projected loss: hidden {} / weight {} elements for {n} rows, hidden {h}, vocab {v}",
            hidden.len(),
            w.len()
        );
    }
    if let Some(&bad) = targets.iter().find(|&&t| t as usize >= v) {
        candle_core::bail!("projected loss: target {bad} outside vocabulary of {v}");
    }
    let mut g = vec![0f32; n * v];
    g.par_chunks_mut(v.max(1))
        .for_each(|row| row.copy_from_slice(bias));
    matmul_into(
        &mut g,
        View::row_major(hidden, n, h),
        View::row_major(w, v, h).t(),
        1.0,
        true,
    )?;
    let scale = 1.0 / n.max(1) as f32;
    let losses = g
        .par_chunks_mut(v.max(1))
        .zip(targets.par_iter())
        .map(|(row, &t)| {
            let (m, s) = max_and_sum_exp(row);
            let lse = m + s.ln();
            let loss = lse - row[t as usize];
            for x in row.iter_mut() {
                *x = exp(*x - lse) * scale;
            }
            row[t as usize] -= scale;
            loss
        })
        .collect();
    Ok((losses, g))
}

/// `CustomOp3(hidden [N, H], weight [V, H], bias [V]) → mean loss []`, holding the targets.
struct ProjectedCrossEntropy {
    targets: Vec<u32>,
    /// `G` of the forward pass, taken (once) by the backward pass.
    grad: Mutex<Option<Vec<f32>>>,
}

impl CustomOp3 for ProjectedCrossEntropy {
    fn name(&self) -> &'static str {
        "projected-cross-entropy"
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
        let (_, h) = l1.shape().dims2()?;
        let (losses, g) = loss_and_grad(
            f32_data(s1, l1, "projected loss: hidden")?,
            f32_data(s2, l2, "projected loss: weight")?,
            f32_data(s3, l3, "projected loss: bias")?,
            &self.targets,
            h,
        )?;
        // Summed in a fixed order so the loss does not depend on the thread count.
        let total: f64 = losses.iter().map(|&x| x as f64).sum();
        let mean = total / losses.len().max(1) as f64;
        if let Ok(mut slot) = self.grad.lock() {
            *slot = Some(g);
        }
        Ok((CpuStorage::F32(vec![mean as f32]), Shape::from(())))
    }

    fn bwd(
        &self,
        hidden: &Tensor,
        w: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let scale = grad_res
            .to_dtype(candle_core::DType::F32)?
            .to_scalar::<f32>()?;
        let (n, h) = hidden.dims2()?;
        let v = bias.dim(0)?;
        let stored = self.grad.lock().ok().and_then(|mut s| s.take());
        let g = match stored {
            Some(g) => g,
            // Backward run twice over the same graph: compute G again.
            None => {
                let (hd, wd, bd) = (vec_of(hidden)?, vec_of(w)?, vec_of(bias)?);
                loss_and_grad(&hd, &wd, &bd, &self.targets, h)?.1
            }
        };
        let gv = View::row_major(&g, n, v);
        // dHidden = G · W
        let mut d_hidden = vec![0f32; n * h];
        with_data(w, |wd| {
            matmul_into(&mut d_hidden, gv, View::row_major(wd, v, h), scale, false)
        })??;
        // dW = Gᵀ · hidden
        let mut d_w = vec![0f32; v * h];
        with_data(hidden, |hd| {
            matmul_into(&mut d_w, gv.t(), View::row_major(hd, n, h), scale, false)
        })??;
        // db = column sums of G.
        let d_b = column_sums(&g, v, scale);
        let dev = hidden.device();
        Ok((
            Some(Tensor::from_vec(d_hidden, (n, h), dev)?),
            Some(Tensor::from_vec(d_w, (v, h), dev)?),
            Some(Tensor::from_vec(d_b, v, dev)?),
        ))
    }
}

/// Mean cross-entropy of `hidden [N, H] · weightᵀ + bias` against `targets [N]` (u32), as one op
/// on the CPU that backpropagates into all three; elsewhere the plain linear layer and
/// [`crate::train::loss::cross_entropy`].
pub fn projected_cross_entropy(
    hidden: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    targets: &Tensor,
) -> Result<Tensor> {
    if !hidden.device().is_cpu() {
        let logits = hidden.matmul(&weight.t()?)?.broadcast_add(bias)?;
        return crate::train::loss::cross_entropy(&logits, targets);
    }
    let op = ProjectedCrossEntropy {
        targets: targets.flatten_all()?.to_vec1::<u32>()?,
        grad: Mutex::new(None),
    };
    Ok(hidden
        .contiguous()?
        .apply_op3(&weight.contiguous()?, &bias.contiguous()?, op)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::loss::cross_entropy;
    use candle_core::{Device, Var};

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    /// The fused op gives the loss and the gradients of the unfused linear layer + loss, also
    /// when backward runs twice (the second time recomputes `G`) and for a vocabulary that is not
    /// a multiple of the 16 lanes or the 256-column blocks.
    #[test]
    fn matches_linear_layer_then_cross_entropy() {
        let dev = Device::Cpu;
        let (n, h, v) = (37, 19, 301);
        let hidden = Var::from_tensor(&Tensor::randn(0f32, 1.0, (n, h), &dev).unwrap()).unwrap();
        let w = Var::from_tensor(&Tensor::randn(0f32, 0.5, (v, h), &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 0.5, v, &dev).unwrap()).unwrap();
        let targets: Vec<u32> = (0..n as u32).map(|i| (i * 97 + 5) % v as u32).collect();
        let targets = Tensor::from_vec(targets, n, &dev).unwrap();

        let logits = hidden
            .matmul(&w.t().unwrap())
            .unwrap()
            .broadcast_add(&b)
            .unwrap();
        let want = (cross_entropy(&logits, &targets).unwrap() * 3.0).unwrap();
        let want_grads = want.backward().unwrap();

        let got = projected_cross_entropy(&hidden, &w, &b, &targets).unwrap();
        let got = (got * 3.0).unwrap();
        let d = (got.to_scalar::<f32>().unwrap() - want.to_scalar::<f32>().unwrap()).abs();
        assert!(d < 1e-5, "loss differs by {d}");
        for _pass in 0..2 {
            let grads = got.backward().unwrap();
            for (name, var) in [("hidden", &hidden), ("weight", &w), ("bias", &b)] {
                let (g, e) = (grads.get(var).unwrap(), want_grads.get(var).unwrap());
                assert_eq!(g.dims(), e.dims(), "{name}");
                let d = max_diff(g, e);
                assert!(d < 1e-6, "grad of {name} differs by {d}");
            }
        }
    }

    #[test]
    fn rejects_targets_outside_the_vocabulary() {
        let dev = Device::Cpu;
        let hidden = Tensor::zeros((2, 3), candle_core::DType::F32, &dev).unwrap();
        let w = Tensor::zeros((4, 3), candle_core::DType::F32, &dev).unwrap();
        let b = Tensor::zeros(4, candle_core::DType::F32, &dev).unwrap();
        let t = Tensor::new(&[1u32, 4], &dev).unwrap();
        let err = projected_cross_entropy(&hidden, &w, &b, &t).unwrap_err();
        assert!(
            err.to_string().contains("target 4 outside vocabulary of 4"),
            "{err}"
        );
    }
}
