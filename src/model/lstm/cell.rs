//! The LSTM cell as one fused op with its analytic gradient: candle's stock path builds ~12 graph
//! nodes per step (narrows, sigmoids, products) and its backward dominated the training step.

use crate::model::activation::{sigmoid, tanh};
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

/// A 2-D strided view of f32 storage (candle hands custom ops arbitrary layouts).
struct View<'a> {
    data: &'a [f32],
    offset: usize,
    rs: usize,
    cs: usize,
}

impl<'a> View<'a> {
    fn new(s: &'a CpuStorage, l: &Layout, rows: usize, cols: usize) -> candle_core::Result<Self> {
        let data = match s {
            CpuStorage::F32(d) => d.as_slice(),
            _ => candle_core::bail!("lstm cell: only f32 is supported"),
        };
        if l.dims() != [rows, cols] {
            candle_core::bail!("lstm cell: shape {:?}, expected [{rows}, {cols}]", l.dims());
        }
        let st = l.stride();
        Ok(Self {
            data,
            offset: l.start_offset(),
            rs: st[0],
            cs: st[1],
        })
    }
    #[inline]
    fn at(&self, r: usize, c: usize) -> f32 {
        self.data[self.offset + r * self.rs + c * self.cs]
    }
}

fn dims(l1: &Layout) -> candle_core::Result<(usize, usize)> {
    let (b, g) = l1.shape().dims2()?;
    if g % 4 != 0 {
        candle_core::bail!("lstm cell: gate width {g} is not a multiple of 4");
    }
    Ok((b, g / 4))
}

/// Activations of one row: (i, f, g, o) from the pre-activation gates.
#[inline]
fn acts(gates: &View, r: usize, j: usize, h: usize) -> (f32, f32, f32, f32) {
    (
        sigmoid(gates.at(r, j)),
        sigmoid(gates.at(r, h + j)),
        tanh(gates.at(r, 2 * h + j)),
        sigmoid(gates.at(r, 3 * h + j)),
    )
}

/// Forward: gates `[B, 4H]` (i, f, g, o), c_prev `[B, H]` → `[B, 2H]` = (h | c).
struct CellFwd;

impl CustomOp2 for CellFwd {
    fn name(&self) -> &'static str {
        "lstm-cell"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, h) = dims(l1)?;
        let gates = View::new(s1, l1, b, 4 * h)?;
        let cp = View::new(s2, l2, b, h)?;
        let mut out = vec![0f32; b * 2 * h];
        out.par_chunks_mut(2 * h).enumerate().for_each(|(r, row)| {
            for j in 0..h {
                let (i, f, g, o) = acts(&gates, r, j, h);
                let c = f * cp.at(r, j) + i * g;
                row[j] = o * tanh(c);
                row[h + j] = c;
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((b, 2 * h))))
    }

    fn bwd(
        &self,
        gates: &Tensor,
        c_prev: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let d_gates = gates.apply_op3_no_bwd(c_prev, grad_res, &CellBwd { gates: true })?;
        let d_c_prev = gates.apply_op3_no_bwd(c_prev, grad_res, &CellBwd { gates: false })?;
        Ok((Some(d_gates), Some(d_c_prev)))
    }
}

/// Backward from (gates `[B,4H]`, c_prev `[B,H]`, grad of (h | c) `[B,2H]`): the gradient of the
/// gates `[B,4H]` when `gates` is set, else of c_prev `[B,H]`. Activations are recomputed (cheap
/// next to the matrix products) rather than stored.
struct CellBwd {
    gates: bool,
}

impl CustomOp3 for CellBwd {
    fn name(&self) -> &'static str {
        "lstm-cell-bwd"
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
        let (b, h) = dims(l1)?;
        let gates = View::new(s1, l1, b, 4 * h)?;
        let cp = View::new(s2, l2, b, h)?;
        let grad = View::new(s3, l3, b, 2 * h)?;
        let width = if self.gates { 4 * h } else { h };
        let mut out = vec![0f32; b * width];
        out.par_chunks_mut(width).enumerate().for_each(|(r, row)| {
            for j in 0..h {
                let (i, f, g, o) = acts(&gates, r, j, h);
                let c_prev = cp.at(r, j);
                let c = f * c_prev + i * g;
                let tc = tanh(c);
                let dh = grad.at(r, j);
                let dc = grad.at(r, h + j) + dh * o * (1.0 - tc * tc);
                if self.gates {
                    row[j] = dc * g * i * (1.0 - i);
                    row[h + j] = dc * c_prev * f * (1.0 - f);
                    row[2 * h + j] = dc * i * (1.0 - g * g);
                    row[3 * h + j] = dh * tc * o * (1.0 - o);
                } else {
                    row[j] = dc * f;
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((b, width))))
    }
}

/// Applies the cell: returns `(h, c)`, each `[B, H]`. The fused op on the CPU, candle's own ops
/// (which every device has) elsewhere.
pub(crate) fn lstm_cell(gates: &Tensor, c_prev: &Tensor) -> crate::Result<(Tensor, Tensor)> {
    if !gates.device().is_cpu() {
        return lstm_cell_ops(gates, c_prev);
    }
    let h = c_prev.dim(1)?;
    let out = gates.apply_op2(c_prev, CellFwd)?;
    Ok((out.narrow(1, 0, h)?, out.narrow(1, h, h)?))
}

/// The cell as plain candle ops, with candle's backward: `c = σ(f)·c_prev + σ(i)·tanh(g)`,
/// `h = σ(o)·tanh(c)`. The reference the fused kernels are tested against.
pub(super) fn lstm_cell_ops(gates: &Tensor, c_prev: &Tensor) -> crate::Result<(Tensor, Tensor)> {
    let h = c_prev.dim(1)?;
    let gate = |k: usize| gates.narrow(1, k * h, h);
    let i = candle_nn::ops::sigmoid(&gate(0)?)?;
    let f = candle_nn::ops::sigmoid(&gate(1)?)?;
    let g = gate(2)?.tanh()?;
    let o = candle_nn::ops::sigmoid(&gate(3)?)?;
    let c = ((f * c_prev)? + (i * g)?)?;
    let h = (o * c.tanh()?)?;
    Ok((h, c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// The fused cell (CPU) and the plain-ops cell (other devices) agree, forward and backward.
    #[test]
    fn fused_cell_matches_plain_ops() {
        let dev = Device::Cpu;
        let gates = Var::from_tensor(&Tensor::randn(0f32, 2.0, (3, 20), &dev).unwrap()).unwrap();
        let c_prev = Var::from_tensor(&Tensor::randn(0f32, 1.0, (3, 5), &dev).unwrap()).unwrap();
        let w = Tensor::randn(0f32, 1.0, (3, 10), &dev).unwrap();
        let run = |fused: bool| {
            let (h, c) = if fused {
                lstm_cell(&gates, &c_prev).unwrap()
            } else {
                lstm_cell_ops(&gates, &c_prev).unwrap()
            };
            let hc = Tensor::cat(&[&h, &c], 1).unwrap();
            let grads = (&hc * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let dg = grads.get(&gates).unwrap().clone();
            let dc = grads.get(&c_prev).unwrap().clone();
            (hc, dg, dc)
        };
        let (a, b) = (run(true), run(false));
        for (x, y) in [(&a.0, &b.0), (&a.1, &b.1), (&a.2, &b.2)] {
            let d = (x - y).unwrap().abs().unwrap().max_all().unwrap();
            assert!(d.to_scalar::<f32>().unwrap() < 1e-5);
        }
    }
}
