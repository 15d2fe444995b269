//! A one-layer LSTM with PyTorch's parameter names, gate order (i, f, g, o) and default init, whose
//! input projection for a whole sequence is one matrix product and whose cell is one fused op.

mod cell;
mod sequence;

use crate::{Error, Result};
use candle_core::{DType, Device, Tensor, Var};
use cell::lstm_cell;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;

/// The recurrent state `(h, c)`, each `[B, hidden]`.
#[derive(Debug, Clone)]
pub struct LstmState {
    pub h: Tensor,
    pub c: Tensor,
}

/// `torch.nn.LSTM(input, hidden, num_layers=1)`: `weight_ih_l0 [4H, I]`, `weight_hh_l0 [4H, H]`,
/// `bias_ih_l0 [4H]`, `bias_hh_l0 [4H]`.
#[derive(Debug, Clone)]
pub struct Lstm {
    pub weight_ih: Var,
    pub weight_hh: Var,
    pub bias_ih: Var,
    pub bias_hh: Var,
    hidden: usize,
}

/// A tensor of `shape` drawn from U(-bound, bound) with `rng` (seeded, so runs are reproducible).
pub(crate) fn uniform(
    rng: &mut ChaCha8Rng,
    shape: &[usize],
    bound: f32,
    device: &Device,
) -> Result<Var> {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|_| rng.random_range(-bound..bound)).collect();
    Ok(Var::from_tensor(&Tensor::from_vec(data, shape, device)?)?)
}

/// Looks up `name` in `map` and checks its shape, so a wrong checkpoint fails with a clear message.
pub(crate) fn take(map: &HashMap<String, Tensor>, name: &str, shape: &[usize]) -> Result<Var> {
    let t = map
        .get(name)
        .ok_or_else(|| Error::Invalid(format!("missing tensor {name}")))?;
    if t.dims() != shape {
        return Err(Error::Invalid(format!(
            "tensor {name} has shape {:?}, expected {shape:?}",
            t.dims()
        )));
    }
    Ok(Var::from_tensor(&t.to_dtype(DType::F32)?)?)
}

impl Lstm {
    /// PyTorch's default init: every parameter from U(-1/sqrt(hidden), 1/sqrt(hidden)).
    pub fn new(input: usize, hidden: usize, rng: &mut ChaCha8Rng, device: &Device) -> Result<Self> {
        let k = 1.0 / (hidden as f32).sqrt();
        Ok(Self {
            weight_ih: uniform(rng, &[4 * hidden, input], k, device)?,
            weight_hh: uniform(rng, &[4 * hidden, hidden], k, device)?,
            bias_ih: uniform(rng, &[4 * hidden], k, device)?,
            bias_hh: uniform(rng, &[4 * hidden], k, device)?,
            hidden,
        })
    }

    /// Rebuilds the layer from `{prefix}weight_ih_l0` etc.
    pub fn from_tensors(
        map: &HashMap<String, Tensor>,
        prefix: &str,
        input: usize,
        hidden: usize,
    ) -> Result<Self> {
        Ok(Self {
            weight_ih: take(map, &format!("{prefix}weight_ih_l0"), &[4 * hidden, input])?,
            weight_hh: take(map, &format!("{prefix}weight_hh_l0"), &[4 * hidden, hidden])?,
            bias_ih: take(map, &format!("{prefix}bias_ih_l0"), &[4 * hidden])?,
            bias_hh: take(map, &format!("{prefix}bias_hh_l0"), &[4 * hidden])?,
            hidden,
        })
    }

    /// The parameters with their PyTorch names under `prefix`.
    pub fn vars(&self, prefix: &str) -> Vec<(String, Var)> {
        vec![
            (format!("{prefix}weight_ih_l0"), self.weight_ih.clone()),
            (format!("{prefix}weight_hh_l0"), self.weight_hh.clone()),
            (format!("{prefix}bias_ih_l0"), self.bias_ih.clone()),
            (format!("{prefix}bias_hh_l0"), self.bias_hh.clone()),
        ]
    }

    pub fn hidden_size(&self) -> usize {
        self.hidden
    }

    /// `x W_ih^T + b_ih + b_hh` for `x [N, input]`, giving `[N, 4H]`.
    fn project_input(&self, x: &Tensor) -> Result<Tensor> {
        let bias = (self.bias_ih.as_tensor() + self.bias_hh.as_tensor())?;
        Ok(x.matmul(&self.weight_ih.t()?)?.broadcast_add(&bias)?)
    }

    /// Runs the recurrence from a projected input row block `[B, 4H]`.
    fn cell(&self, xp: &Tensor, state: Option<&LstmState>) -> Result<LstmState> {
        let (gates, c_prev) = match state {
            Some(s) => ((xp + s.h.matmul(&self.weight_hh.t()?)?)?, s.c.clone()),
            None => {
                let b = xp.dim(0)?;
                (
                    xp.clone(),
                    Tensor::zeros((b, self.hidden), DType::F32, xp.device())?,
                )
            }
        };
        let (h, c) = lstm_cell(&gates, &c_prev)?;
        Ok(LstmState { h, c })
    }

    /// One time step for `x [B, input]`; a missing state is zeros, as in PyTorch.
    pub fn step(&self, x: &Tensor, state: Option<&LstmState>) -> Result<LstmState> {
        let xp = self.project_input(x)?;
        self.cell(&xp, state)
    }

    /// The whole sequence, time-major `x [T, B, input]` → hidden outputs `[T, B, H]` and the
    /// final state. The input projection of all steps is one matrix product.
    pub fn forward_seq(&self, x: &Tensor) -> Result<(Tensor, LstmState)> {
        let (t_len, b, i) = x.dims3()?;
        let xp = self.project_input(&x.reshape((t_len * b, i))?)?.reshape((
            t_len,
            b,
            4 * self.hidden,
        ))?;
        if xp.device().is_cpu() && t_len > 0 {
            let h = self.hidden;
            let out = xp
                .contiguous()?
                .apply_op2(self.weight_hh.as_tensor(), sequence::LstmSeq)?;
            let last = out.get(t_len - 1)?;
            let state = LstmState {
                h: last.narrow(1, 0, h)?,
                c: last.narrow(1, h, h)?,
            };
            return Ok((out.narrow(2, 0, h)?, state));
        }
        let mut state: Option<LstmState> = None;
        let mut hs = Vec::with_capacity(t_len);
        for t in 0..t_len {
            let s = self.cell(&xp.get(t)?, state.as_ref())?;
            hs.push(s.h.clone());
            state = Some(s);
        }
        let state = state.ok_or_else(|| Error::Invalid("empty sequence".into()))?;
        Ok((Tensor::stack(&hs, 0)?, state))
    }
}
