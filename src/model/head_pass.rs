//! The head's training-mode forward and backward as explicit code over host buffers, for the
//! CPU training step (the train layer's teacher step): `Linear(F → E)` then `BatchNorm1d(E)` on
//! the batch's statistics, the arithmetic of [`Head::forward_train`] and of candle's backward
//! through it (the teacher step's test compares them), without a graph of a dozen small candle
//! ops and their zero-filled gradients.

use crate::model::cpu_math::{matmul_into, View};
use crate::model::head::{Head, BN_EPS, BN_MOMENTUM};
use crate::Result;
use candle_core::Tensor;

/// What the forward pass keeps for the backward pass.
pub(crate) struct HeadPass {
    rows: usize,
    /// The normalised rows `(y − mean) / √(var + eps)`, `[B, E]`.
    normalised: Vec<f32>,
    /// `1 / √(var + eps)` per column, `[E]`.
    inv_std: Vec<f32>,
}

/// The head's gradients, in its parameters' order.
pub(crate) struct HeadGradients {
    /// `linear.weight`, `[E, F]`.
    pub linear_weight: Vec<f32>,
    /// `linear.bias`, `[E]`.
    pub linear_bias: Vec<f32>,
    /// `bn.weight`, `[E]`.
    pub bn_weight: Vec<f32>,
    /// `bn.bias`, `[E]`.
    pub bn_bias: Vec<f32>,
}

/// `Σ_i m[i][j]` over the rows of `m [rows, cols]`, in row order.
fn column_sum(m: &[f32], cols: usize) -> Vec<f32> {
    let mut sums = vec![0f32; cols];
    for row in m.chunks_exact(cols.max(1)) {
        for (s, &x) in sums.iter_mut().zip(row) {
            *s += x;
        }
    }
    sums
}

/// The image embeddings `[B, E]` of `features [B, F]` in training mode, updating the running
/// statistics as PyTorch does (momentum [`BN_MOMENTUM`], the unbiased variance).
pub(crate) fn forward_train(
    head: &mut Head,
    features: &[f32],
    rows: usize,
) -> Result<(Vec<f32>, HeadPass)> {
    let (e, f) = (head.embed_size(), head.feature_dim());
    if rows < 2 || features.len() != rows * f {
        return Err(crate::Error::Invalid(
            "BatchNorm in training mode needs at least 2 rows per batch".into(),
        ));
    }
    let mut y = vec![0f32; rows * e];
    {
        let w = crate::model::cpu_math::host_data(head.linear_weight.as_tensor(), "head weight")?;
        let bias = crate::model::cpu_math::host_data(head.linear_bias.as_tensor(), "head bias")?;
        matmul_into(
            &mut y,
            View::row_major(features, rows, f),
            View::row_major(&w, e, f).t(),
            1.0,
            false,
        )?;
        for row in y.chunks_exact_mut(e) {
            for (x, &b) in row.iter_mut().zip(bias.iter()) {
                *x += b;
            }
        }
    }
    let n = rows as f32;
    let mean: Vec<f32> = column_sum(&y, e).iter().map(|&s| s / n).collect();
    for row in y.chunks_exact_mut(e) {
        for (x, &m) in row.iter_mut().zip(&mean) {
            *x -= m;
        }
    }
    let squares: Vec<f32> = y.iter().map(|&x| x * x).collect();
    let var: Vec<f32> = column_sum(&squares, e).iter().map(|&s| s / n).collect();
    let inv_std: Vec<f32> = var
        .iter()
        .map(|&v| 1.0 / (v + BN_EPS as f32).sqrt())
        .collect();
    for row in y.chunks_exact_mut(e) {
        for (x, &k) in row.iter_mut().zip(&inv_std) {
            *x *= k;
        }
    }
    let mut out = y.clone();
    {
        let gamma = crate::model::cpu_math::host_data(head.bn_weight.as_tensor(), "bn weight")?;
        let beta = crate::model::cpu_math::host_data(head.bn_bias.as_tensor(), "bn bias")?;
        for row in out.chunks_exact_mut(e) {
            for ((x, &g), &b) in row.iter_mut().zip(gamma.iter()).zip(beta.iter()) {
                *x = *x * g + b;
            }
        }
    }
    let m = BN_MOMENTUM as f32;
    let unbiased = n / (n - 1.0);
    let dev = head.running_mean.device().clone();
    let rm = head.running_mean.to_vec1::<f32>()?;
    let rv = head.running_var.to_vec1::<f32>()?;
    let rm: Vec<f32> = rm
        .iter()
        .zip(&mean)
        .map(|(&r, &x)| r * (1.0 - m) + x * m)
        .collect();
    let rv: Vec<f32> = rv
        .iter()
        .zip(&var)
        .map(|(&r, &v)| r * (1.0 - m) + (v * unbiased) * m)
        .collect();
    head.running_mean = Tensor::from_vec(rm, e, &dev)?;
    head.running_var = Tensor::from_vec(rv, e, &dev)?;
    Ok((
        out,
        HeadPass {
            rows,
            normalised: y,
            inv_std,
        },
    ))
}

/// The head's gradients from `d_out [B, E]`, the gradient of [`forward_train`]'s output.
pub(crate) fn backward(
    head: &Head,
    pass: &HeadPass,
    features: &[f32],
    d_out: &[f32],
) -> Result<HeadGradients> {
    let (e, f, rows) = (head.embed_size(), head.feature_dim(), pass.rows);
    if d_out.len() != rows * e || features.len() != rows * f {
        return Err(crate::Error::Internal(
            "head backward: the gradient does not fit the batch".into(),
        ));
    }
    let bn_bias = column_sum(d_out, e);
    let products: Vec<f32> = d_out
        .iter()
        .zip(&pass.normalised)
        .map(|(&d, &x)| d * x)
        .collect();
    let bn_weight = column_sum(&products, e);
    // dy = inv_std / B · (B · dx̂ − Σ dx̂ − x̂ · Σ dx̂ · x̂), dx̂ = d_out · γ: the sums over the batch
    // are γ · dβ and γ · dγ.
    let gamma = crate::model::cpu_math::host_data(head.bn_weight.as_tensor(), "bn weight")?;
    let n = rows as f32;
    let mut dy = vec![0f32; rows * e];
    for ((dy, d), x) in dy
        .chunks_exact_mut(e)
        .zip(d_out.chunks_exact(e))
        .zip(pass.normalised.chunks_exact(e))
    {
        for j in 0..e {
            let g = gamma[j];
            let (sum, dot) = (g * bn_bias[j], g * bn_weight[j]);
            dy[j] = pass.inv_std[j] / n * (n * d[j] * g - sum - x[j] * dot);
        }
    }
    drop(gamma);
    let linear_bias = column_sum(&dy, e);
    let mut linear_weight = vec![0f32; e * f];
    matmul_into(
        &mut linear_weight,
        View::row_major(&dy, rows, e).t(),
        View::row_major(features, rows, f),
        1.0,
        false,
    )?;
    Ok(HeadGradients {
        linear_weight,
        linear_bias,
        bn_weight,
        bn_bias,
    })
}
