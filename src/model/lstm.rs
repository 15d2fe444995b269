//! A one-layer LSTM with PyTorch's parameter names, gate order (i, f, g, o) and default init, whose
//! input projection for a whole sequence is one matrix product and whose cell is one fused op.

mod cell;
mod gates;
mod recurrent;
pub(crate) mod sequence;

use crate::{Error, Result};
use candle_core::{DType, Device, Tensor, Var};
use cell::{lstm_cell, lstm_cell_ops};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;

/// The recurrent state `(h, c)`, each `[B, hidden]`.
#[derive(Debug, Clone)]
pub struct LstmState {
    /// The hidden state, the step's output.
    pub h: Tensor,
    /// The cell state.
    pub c: Tensor,
}

/// `torch.nn.LSTM(input, hidden, num_layers=1)`: `weight_ih_l0 [4H, I]`, `weight_hh_l0 [4H, H]`,
/// `bias_ih_l0 [4H]`, `bias_hh_l0 [4H]`.
#[derive(Debug, Clone)]
pub struct Lstm {
    /// `weight_ih_l0 [4H, I]`.
    pub weight_ih: Var,
    /// `weight_hh_l0 [4H, H]`.
    pub weight_hh: Var,
    /// `bias_ih_l0 [4H]`.
    pub bias_ih: Var,
    /// `bias_hh_l0 [4H]`.
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

/// `x · wᵀ`. `decoding` takes the few-row kernel of `cpu_math` where it applies (1 to 8 rows on
/// the CPU; no autograd), else, and always for training, candle's matmul.
pub(crate) fn times_wt(x: &Tensor, w: &Tensor, decoding: bool) -> Result<Tensor> {
    if decoding {
        if let Some(y) = crate::model::cpu_math::few_rows_times_wt(x, w)? {
            return Ok(y);
        }
    }
    Ok(x.matmul(&w.t()?)?)
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

    /// The hidden size H.
    pub fn hidden_size(&self) -> usize {
        self.hidden
    }

    /// `b_ih + b_hh`, the bias of every gate pre-activation `[4H]`.
    fn bias(&self) -> Result<Tensor> {
        Ok((self.bias_ih.as_tensor() + self.bias_hh.as_tensor())?)
    }

    /// `x W_ih^T + b_ih + b_hh` for `x [N, input]`, giving `[N, 4H]`; `decoding` as in
    /// [`times_wt`].
    fn project_input(&self, x: &Tensor, decoding: bool) -> Result<Tensor> {
        Ok(times_wt(x, &self.weight_ih, decoding)?.broadcast_add(&self.bias()?)?)
    }

    /// Runs the recurrence from a projected input row block `[B, 4H]`; `decoding` as in
    /// [`times_wt`], and it also takes the fused cell op on the CPU, which does not backpropagate.
    fn cell(&self, xp: &Tensor, state: Option<&LstmState>, decoding: bool) -> Result<LstmState> {
        let (gates, c_prev) = match state {
            Some(s) => {
                let rec = times_wt(&s.h, &self.weight_hh, decoding)?;
                ((xp + rec)?, s.c.clone())
            }
            None => {
                let b = xp.dim(0)?;
                (
                    xp.clone(),
                    Tensor::zeros((b, self.hidden), DType::F32, xp.device())?,
                )
            }
        };
        let (h, c) = if decoding {
            lstm_cell(&gates, &c_prev)?
        } else {
            lstm_cell_ops(&gates, &c_prev)?
        };
        Ok(LstmState { h, c })
    }

    /// One decoding step for `x [B, input]`; a missing state is zeros, as in PyTorch. Not for
    /// training: with 1 to 8 rows on the CPU its products do not backpropagate.
    pub fn step(&self, x: &Tensor, state: Option<&LstmState>) -> Result<LstmState> {
        self.cell(&self.project_input(x, true)?, state, true)
    }

    /// The hidden outputs `[N, H]` of the steps `rows` (indices into the `T·B` time-major steps)
    /// of the sequence `x [T, B, input]`, from a zero state: what teacher forcing scores. The
    /// input projection of all steps is one matrix product; on the CPU the recurrence and its
    /// backward pass are one op (`LstmRows`, private to this module).
    pub fn forward_rows(&self, x: &Tensor, rows: &[u32]) -> Result<Tensor> {
        let (t_len, b, i) = x.dims3()?;
        if t_len == 0 {
            return Err(Error::Internal("empty sequence".into()));
        }
        let x = x.reshape((t_len * b, i))?;
        if x.device().is_cpu() {
            let xp = x.matmul(&self.weight_ih.t()?)?;
            return self.rows_from_projection(&xp, b, rows);
        }
        self.forward_rows_stepwise(&x.reshape((t_len, b, i))?, rows)
    }

    /// [`Lstm::forward_rows`] from the input projection `xp = x · W_ihᵀ [T·B, 4H]` (time-major, no
    /// bias), on the CPU: the recurrence and its backward pass are one op.
    pub(crate) fn rows_from_projection(
        &self,
        xp: &Tensor,
        batch: usize,
        rows: &[u32],
    ) -> Result<Tensor> {
        let op = sequence::LstmRows::new(batch, rows.to_vec());
        Ok(xp.apply_op3(self.weight_hh.as_tensor(), &self.bias()?, op)?)
    }

    /// [`Lstm::forward_rows`] as one cell per step of candle's own ops, with candle's backward:
    /// the path of other devices and the reference of the fused op's tests.
    fn forward_rows_stepwise(&self, x: &Tensor, rows: &[u32]) -> Result<Tensor> {
        let (t_len, b, i) = x.dims3()?;
        let xp = self
            .project_input(&x.reshape((t_len * b, i))?, false)?
            .reshape((t_len, b, 4 * self.hidden))?;
        let mut state: Option<LstmState> = None;
        let mut hs = Vec::with_capacity(t_len);
        for t in 0..t_len {
            let s = self.cell(&xp.get(t)?, state.as_ref(), false)?;
            hs.push(s.h.clone());
            state = Some(s);
        }
        let hs = Tensor::stack(&hs, 0)?.reshape((t_len * b, self.hidden))?;
        let rows = Tensor::from_slice(rows, rows.len(), hs.device())?;
        Ok(hs.index_select(&rows, 0)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// The fused op's outputs for `rows` of `x [T, B, I]`, and its gradients of `x` and every
    /// parameter over two backward passes of the same graph (the second reruns the recurrence),
    /// against the step-by-step cells.
    fn assert_fused_matches_stepwise(lstm: &Lstm, x: &Var, rows: &[u32]) {
        let dev = Device::Cpu;
        let h = lstm.hidden_size();
        let weights = Tensor::randn(0f32, 1.0, (rows.len(), h), &dev).unwrap();
        let want = lstm.forward_rows_stepwise(x, rows).unwrap();
        let want_grads = (&want * &weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let got = lstm.forward_rows(x, rows).unwrap();
        let d = (&got - &want).unwrap().abs().unwrap().max_all().unwrap();
        assert!(d.to_scalar::<f32>().unwrap() < 1e-6);
        let loss = (&got * &weights).unwrap().sum_all().unwrap();
        let mut vars = vec![("x".to_string(), x.clone())];
        vars.extend(lstm.vars(""));
        for _pass in 0..2 {
            let grads = loss.backward().unwrap();
            for (name, var) in &vars {
                let (g, e) = (grads.get(var).unwrap(), want_grads.get(var).unwrap());
                let d = (g - e).unwrap().abs().unwrap().max_all().unwrap();
                let d = d.to_scalar::<f32>().unwrap();
                assert!(d < 1e-5, "grad of {name} differs by {d}");
            }
        }
    }

    /// The time-major rows of `steps` scored for columns whose last scored step is `last[c]`.
    fn scored_rows(steps: std::ops::Range<usize>, last: &[usize]) -> Vec<u32> {
        let b = last.len();
        steps
            .flat_map(|t| {
                (0..b)
                    .filter(move |&c| t <= last[c])
                    .map(move |c| (t * b + c) as u32)
            })
            .collect()
    }

    /// Scored rows that end early (captions of mixed lengths, longest first, and one column
    /// out of order) shrink the recurrence to a live prefix per step; the outputs and every
    /// gradient are still those of the full step-by-step recurrence.
    #[test]
    fn live_prefix_recurrence_matches_the_full_one() {
        let dev = Device::Cpu;
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let lstm = Lstm::new(5, 6, &mut rng, &dev).unwrap();
        let (t_len, b) = (6, 4);
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (t_len, b, 5), &dev).unwrap()).unwrap();
        // Column lengths (last scored step): 5, 3, 1, 4 (the last one out of order).
        let rows = scored_rows(1..t_len, &[5, 3, 1, 4]);
        assert_eq!(
            sequence::live_prefixes(b, &rows),
            vec![4, 4, 4, 4, 4, 1],
            "step 5 runs column 0 only; steps 2..4 keep column 3, so all four"
        );
        assert_eq!(sequence::live_prefixes(3, &[0, 2, 4]), vec![3, 2]);
        assert_fused_matches_stepwise(&lstm, &x, &rows);

        // No step after the first is wholly live (column 3 is scored at step 0 only), so the
        // recurrent weight's gradient comes from the copied live rows alone.
        let rows = scored_rows(0..t_len, &[5, 2, 3, 0]);
        assert_eq!(sequence::live_prefixes(b, &rows), vec![4, 3, 3, 3, 1, 1]);
        assert_fused_matches_stepwise(&lstm, &x, &rows);
    }

    /// Batch rows and gate columns that do not fill the recurrent kernel's tiles and panels
    /// (13 rows, 4H = 84 columns: a partial last panel), through the same comparison.
    #[test]
    fn fused_rows_match_the_stepwise_cells_past_whole_tiles() {
        let dev = Device::Cpu;
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let lstm = Lstm::new(5, 21, &mut rng, &dev).unwrap();
        let (t_len, b) = (4, 13);
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (t_len, b, 5), &dev).unwrap()).unwrap();
        let rows: Vec<u32> = (b as u32..(t_len * b) as u32).collect();
        assert_fused_matches_stepwise(&lstm, &x, &rows);
    }

    /// The fused sequence op gives the outputs and gradients of the step-by-step cells, also when
    /// backward runs twice (the second time reruns the recurrence) and for rows in any order.
    #[test]
    fn fused_rows_match_the_stepwise_cells() {
        let dev = Device::Cpu;
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let lstm = Lstm::new(5, 7, &mut rng, &dev).unwrap();
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (4, 3, 5), &dev).unwrap()).unwrap();
        assert_fused_matches_stepwise(&lstm, &x, &[11, 0, 4, 5, 9, 2, 7]);
    }
}
