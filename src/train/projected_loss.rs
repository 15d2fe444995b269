//! The output layer and the loss as one CPU op: `logits = hidden · Wᵀ + b` for the real tokens,
//! their mean cross-entropy, and in backward the three gradients straight from
//! `G = (softmax(logits) − onehot(targets)) / N`, which the forward pass leaves behind in place of
//! the logits. As separate candle ops the `[N, V]` logits (46 MB at vocab 9000) went through a bias
//! add, the loss, its gradient, a scale, the matmul's backward against a transposed weight and a
//! zero-filled accumulator per node; see docs/performance.md for what this bought.

use crate::model::activation::exp;
use crate::model::cpu_math::{f32_data, matmul_into, with_data, View};
use crate::model::wide::wide_copies;
use crate::model::Scratch;
use crate::Result;
use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;
use std::sync::Mutex;

/// Lanes of the row loops: 16 independent sums let the compiler vectorise them.
const LANES: usize = 16;
/// Rows per block of the forward pass; blocks are fixed, so the bias gradient's sum order does
/// not depend on the thread count.
const BLOCK_ROWS: usize = 32;

/// Adds `bias` to a row of logits and returns the largest element.
#[inline(always)]
fn add_bias_and_max(row: &mut [f32], bias: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let mut rows = row.chunks_exact_mut(LANES);
    let mut biases = bias.chunks_exact(LANES);
    for (c, b) in (&mut rows).zip(&mut biases) {
        for ((m, x), &b) in lanes.iter_mut().zip(c).zip(b) {
            *x += b;
            *m = m.max(*x);
        }
    }
    let mut m = lanes.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for (x, &b) in rows.into_remainder().iter_mut().zip(biases.remainder()) {
        *x += b;
        m = m.max(*x);
    }
    m
}

/// Replaces a row by `exp(x − m)` and returns the sum.
#[inline(always)]
fn exp_in_place(row: &mut [f32], m: f32) -> f32 {
    let mut sums = [0f32; LANES];
    let mut rows = row.chunks_exact_mut(LANES);
    for c in &mut rows {
        for (s, x) in sums.iter_mut().zip(c) {
            *x = exp(*x - m);
            *s += *x;
        }
    }
    let mut s = sums.iter().sum::<f32>();
    for x in rows.into_remainder() {
        *x = exp(*x - m);
        s += *x;
    }
    s
}

/// What the forward pass leaves for the backward pass.
pub(crate) struct Saved {
    /// `G [N, V]`.
    g: Vec<f32>,
    /// Column sums of `G`, the bias gradient for a loss gradient of 1.
    g_sums: Vec<f32>,
}

/// The forward computation: per-row losses, `G` and its column sums.
fn loss_and_grad(
    hidden: &[f32],
    w: &[f32],
    bias: &[f32],
    targets: &[u32],
    h: usize,
    scratch: &Scratch,
) -> candle_core::Result<(Vec<f32>, Saved)> {
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
    // gemm overwrites every element, so the kept buffer's stale values are fine.
    let mut g = scratch.take(n * v);
    matmul_into(
        &mut g,
        View::row_major(hidden, n, h),
        View::row_major(w, v, h).t(),
        1.0,
        false,
    )?;
    let scale = 1.0 / n.max(1) as f32;
    let blocks: Vec<(Vec<f32>, Vec<f32>)> = g
        .par_chunks_mut((BLOCK_ROWS * v).max(1))
        .zip(targets.par_chunks(BLOCK_ROWS))
        .map(|(block, ts)| softmax_rows(block, ts, bias, scale))
        .collect();
    let mut losses = Vec::with_capacity(n);
    let mut g_sums = vec![0f32; v];
    for (l, s) in blocks {
        losses.extend(l);
        for (a, b) in g_sums.iter_mut().zip(s) {
            *a += b;
        }
    }
    Ok((losses, Saved { g, g_sums }))
}

/// The mean loss (summed in a fixed order, so it does not depend on the thread count) and what
/// [`gradients`] needs.
pub(crate) fn mean_loss(
    hidden: &[f32],
    w: &[f32],
    bias: &[f32],
    targets: &[u32],
    h: usize,
    scratch: &Scratch,
) -> candle_core::Result<(f32, Saved)> {
    let (losses, saved) = loss_and_grad(hidden, w, bias, targets, h, scratch)?;
    let total: f64 = losses.iter().map(|&x| x as f64).sum();
    Ok(((total / losses.len().max(1) as f64) as f32, saved))
}

/// `(d hidden [N, H], d W [V, H], d bias [V])` for a loss gradient of `scale`; gives `G`'s
/// buffer back to `scratch`.
pub(crate) fn gradients(
    saved: Saved,
    hidden: &[f32],
    w: &[f32],
    (n, h, v): (usize, usize, usize),
    scale: f32,
    scratch: &Scratch,
) -> candle_core::Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
    let Saved { g, g_sums } = saved;
    if g.len() < n * v || hidden.len() != n * h || w.len() != v * h {
        candle_core::bail!("projected loss: gradient operands do not fit {n} × {h} × {v}");
    }
    let gv = View::row_major(&g, n, v);
    // dHidden = G · W
    let mut d_hidden = vec![0f32; n * h];
    matmul_into(&mut d_hidden, gv, View::row_major(w, v, h), scale, false)?;
    // dW = Gᵀ · hidden
    let mut d_w = vec![0f32; v * h];
    matmul_into(
        &mut d_w,
        gv.t(),
        View::row_major(hidden, n, h),
        scale,
        false,
    )?;
    let d_b: Vec<f32> = g_sums.iter().map(|&x| x * scale).collect();
    scratch.give(g);
    Ok((d_hidden, d_w, d_b))
}

wide_copies! {
    /// Rows of logits `block [rows, V]` (bias not yet added) with their targets → each row's loss,
    /// and in place `scale · (softmax − one-hot)`, with the block's column sums of it. Run by the copy
    /// compiled for the CPU's widest vectors ([`crate::model::wide`]): every reduction here is over a
    /// fixed number of lanes, so each copy gives the same bits (tested below).
    fn softmax_rows, softmax_rows_avx512, softmax_rows_avx2 = softmax_rows_portable(
        block: &mut [f32],
        ts: &[u32],
        bias: &[f32],
        scale: f32,
    ) -> (Vec<f32>, Vec<f32>);
}

/// The arithmetic of [`softmax_rows`].
#[inline(always)]
fn softmax_rows_portable(
    block: &mut [f32],
    ts: &[u32],
    bias: &[f32],
    scale: f32,
) -> (Vec<f32>, Vec<f32>) {
    let v = bias.len();
    let mut losses = Vec::with_capacity(ts.len());
    let mut sums = vec![0f32; v];
    for (row, &t) in block.chunks_exact_mut(v.max(1)).zip(ts) {
        let m = add_bias_and_max(row, bias);
        let x_t = row[t as usize];
        let s = exp_in_place(row, m);
        losses.push(m + s.ln() - x_t);
        let k = scale / s;
        for (x, sum) in row.iter_mut().zip(sums.iter_mut()) {
            *x *= k;
            *sum += *x;
        }
        row[t as usize] -= scale;
        sums[t as usize] -= scale;
    }
    (losses, sums)
}

/// `CustomOp3(hidden [N, H], weight [V, H], bias [V]) → mean loss []`, holding the targets.
struct ProjectedCrossEntropy {
    targets: Vec<u32>,
    /// The model's buffers: `G` is taken from them and given back.
    scratch: Scratch,
    /// Left by the forward pass, taken (once) by the backward pass.
    saved: Mutex<Option<Saved>>,
}

impl Drop for ProjectedCrossEntropy {
    fn drop(&mut self) {
        if let Some(s) = self.saved.get_mut().ok().and_then(|s| s.take()) {
            self.scratch.give(s.g);
        }
    }
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
        let (mean, saved) = mean_loss(
            f32_data(s1, l1, "projected loss: hidden")?,
            f32_data(s2, l2, "projected loss: weight")?,
            f32_data(s3, l3, "projected loss: bias")?,
            &self.targets,
            h,
            &self.scratch,
        )?;
        if let Ok(mut slot) = self.saved.lock() {
            *slot = Some(saved);
        }
        Ok((CpuStorage::F32(vec![mean]), Shape::from(())))
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
        let stored = self.saved.lock().ok().and_then(|mut s| s.take());
        let saved = match stored {
            Some(s) => s,
            // Backward run twice over the same graph: compute G again.
            None => {
                with_data(hidden, |hd| {
                    with_data(w, |wd| {
                        with_data(bias, |bd| {
                            loss_and_grad(hd, wd, bd, &self.targets, h, &self.scratch)
                        })
                    })
                })?
                .1
            }
        };
        let (d_hidden, d_w, d_b) = with_data(hidden, |hd| {
            with_data(w, |wd| {
                gradients(saved, hd, wd, (n, h, v), scale, &self.scratch)
            })
        })?;
        let dev = hidden.device();
        Ok((
            Some(Tensor::from_vec(d_hidden, (n, h), dev)?),
            Some(Tensor::from_vec(d_w, (v, h), dev)?),
            Some(Tensor::from_vec(d_b, v, dev)?),
        ))
    }
}

/// Mean cross-entropy of `hidden [N, H] · weightᵀ + bias` against `targets [N]` (u32), as one op
/// on the CPU that backpropagates into all three, its `[N, V]` buffer kept in `scratch` between
/// steps; elsewhere the plain linear layer and
/// [`crate::train::loss::cross_entropy`].
pub fn projected_cross_entropy(
    hidden: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    targets: &Tensor,
    scratch: &Scratch,
) -> Result<Tensor> {
    if !hidden.device().is_cpu() {
        let logits = hidden.matmul(&weight.t()?)?.broadcast_add(bias)?;
        return crate::train::loss::cross_entropy(&logits, targets);
    }
    let op = ProjectedCrossEntropy {
        targets: targets.flatten_all()?.to_vec1::<u32>()?,
        scratch: scratch.share(),
        saved: Mutex::new(None),
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

    type SoftmaxRows = unsafe fn(&mut [f32], &[u32], &[f32], f32) -> (Vec<f32>, Vec<f32>);

    /// Every compiled copy of the row loop this CPU can run gives the baseline copy's bits: the
    /// losses, the rows and their column sums, for a vocabulary that fills no vector.
    #[test]
    fn wide_softmax_rows_give_the_baseline_bits() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(12);
        let (rows, v) = (5, 53);
        let logits: Vec<f32> = (0..rows * v).map(|_| rng.random_range(-6.0..6.0)).collect();
        let bias: Vec<f32> = (0..v).map(|_| rng.random_range(-1.0..1.0)).collect();
        let targets: Vec<u32> = (0..rows).map(|_| rng.random_range(0..v as u32)).collect();
        let mut copies: Vec<(&str, SoftmaxRows)> = vec![
            ("baseline", softmax_rows_portable),
            ("dispatch", softmax_rows),
        ];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                copies.push(("avx512", softmax_rows_avx512));
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                copies.push(("avx2", softmax_rows_avx2));
            }
        }
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let mut want = None;
        for (name, f) in copies {
            let mut block = logits.clone();
            // SAFETY: only the copies whose features the CPU has were listed.
            let (losses, sums) = unsafe { f(&mut block, &targets, &bias, 0.2) };
            let got = (bits(&losses), bits(&sums), bits(&block));
            match &want {
                None => want = Some(got),
                Some(w) => assert_eq!(&got, w, "{name} differs from the baseline"),
            }
        }
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        let d = (a - b).unwrap().abs().unwrap().max_all().unwrap();
        d.to_scalar::<f32>().unwrap()
    }

    /// The fused op gives the loss and the gradients of the unfused linear layer + loss, also
    /// when backward runs twice (the second time recomputes `G`), for a vocabulary that is not a
    /// multiple of the 16 lanes and a row count that is not a multiple of the 32-row blocks.
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

        let got = projected_cross_entropy(&hidden, &w, &b, &targets, &Scratch::default()).unwrap();
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
        let err = projected_cross_entropy(&hidden, &w, &b, &t, &Scratch::default()).unwrap_err();
        assert!(
            err.to_string().contains("target 4 outside vocabulary of 4"),
            "{err}"
        );
    }
}
