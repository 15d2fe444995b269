//! The LSTM cell of one decoding step as one fused CPU op: candle's stock path builds ~12 graph
//! nodes per step (narrows, sigmoids, products). Decoding only, so it has no backward; training
//! runs the whole sequence as one op (`sequence.rs`), and both run the kernel of `gates.rs`.

use super::gates;
use crate::model::cpu_math::View;
use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

/// Forward: gates `[B, 4H]` (i, f, g, o pre-activations), c_prev `[B, H]` → `[B, 2H]` = (h | c).
struct Cell;

impl CustomOp2 for Cell {
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
        let (mut gates_buf, mut c_buf) = (Vec::new(), Vec::new());
        let gates = View::of(s1, l1, "lstm cell: gates")?.unit_cols(&mut gates_buf);
        let c_prev = View::of(s2, l2, "lstm cell: c_prev")?.unit_cols(&mut c_buf);
        let (b, h) = (c_prev.rows, c_prev.cols);
        if h == 0 || gates.rows != b || gates.cols != 4 * h {
            candle_core::bail!(
                "lstm cell: gates {:?} and c_prev {:?} do not fit",
                l1.dims(),
                l2.dims()
            );
        }
        let mut out = vec![0f32; b * 2 * h];
        out.par_chunks_mut(2 * h).enumerate().for_each_init(
            || vec![0f32; 4 * h],
            |acts, (r, row)| {
                let (h_out, c_out) = row.split_at_mut(h);
                gates::forward(gates.row(r), c_prev.row(r), h_out, c_out, acts);
            },
        );
        Ok((CpuStorage::F32(out), Shape::from((b, 2 * h))))
    }
}

/// Applies the cell for decoding: returns `(h, c)`, each `[B, H]`. The fused op on the CPU (which
/// does not backpropagate), candle's own ops (which every device has) elsewhere.
pub(crate) fn lstm_cell(gates: &Tensor, c_prev: &Tensor) -> crate::Result<(Tensor, Tensor)> {
    if !gates.device().is_cpu() {
        return lstm_cell_ops(gates, c_prev);
    }
    let h = c_prev.dim(1)?;
    let out = gates.apply_op2(c_prev, Cell)?;
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

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        let d = (a - b).unwrap().abs().unwrap().max_all().unwrap();
        d.to_scalar::<f32>().unwrap()
    }

    /// The fused cell (CPU) and the plain-ops cell (other devices) agree forward, also for a
    /// `c_prev` with strided rows (the state the op itself returns) or strided columns; the gate
    /// kernel's backward, which the fused cell op does not use, is checked here on the cell's
    /// rows against candle's backward of the plain ops.
    #[test]
    fn fused_cell_matches_plain_ops() {
        let dev = Device::Cpu;
        let (b, h) = (3, 5);
        let gates = Var::from_tensor(&Tensor::randn(0f32, 2.0, (b, 4 * h), &dev).unwrap()).unwrap();
        let c_prev = Var::from_tensor(&Tensor::randn(0f32, 1.0, (b, h), &dev).unwrap()).unwrap();
        let w = Tensor::randn(0f32, 1.0, (b, 2 * h), &dev).unwrap();

        let (hp, cp) = lstm_cell_ops(&gates, &c_prev).unwrap();
        let want = Tensor::cat(&[&hp, &cp], 1).unwrap();
        let grads = (&want * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let want_dg = grads.get(&gates).unwrap();
        let want_dc = grads.get(&c_prev).unwrap();

        let (hf, cf) = lstm_cell(&gates, &c_prev).unwrap();
        let got = Tensor::cat(&[&hf, &cf], 1).unwrap();
        let (dg, dc) = kernel_backward(&gates, &c_prev, &w, h);
        for (x, y) in [(&got, &want), (&dg, want_dg), (&dc, want_dc)] {
            assert!(max_diff(x, y) < 1e-5);
        }

        // c_prev as a column of the op's own (h | c) output, and with strided columns.
        let (_, c_rows) = lstm_cell(&gates, &got.narrow(1, 0, h).unwrap()).unwrap();
        let c_cols = c_prev.t().unwrap().contiguous().unwrap().t().unwrap();
        let (_, c_cols) = lstm_cell(&gates, &c_cols).unwrap();
        assert_eq!(
            c_cols.to_vec2::<f32>().unwrap(),
            cf.to_vec2::<f32>().unwrap()
        );
        let (_, want_rows) = lstm_cell_ops(&gates, &hf).unwrap();
        assert!(max_diff(&c_rows, &want_rows) < 1e-5);
        // Training through the decoding cell fails loudly rather than losing the gradient.
        assert!(got.sum_all().unwrap().backward().is_err());
    }

    /// The gate kernel's gradients of `sum(w ⊙ (h | c))` with respect to the gates and c_prev.
    fn kernel_backward(gates: &Tensor, c_prev: &Tensor, w: &Tensor, h: usize) -> (Tensor, Tensor) {
        let g = gates.to_vec2::<f32>().unwrap();
        let cp = c_prev.to_vec2::<f32>().unwrap();
        let w = w.to_vec2::<f32>().unwrap();
        let (mut dg, mut dc) = (Vec::new(), Vec::new());
        for r in 0..g.len() {
            let (mut hr, mut cr, mut acts) = (vec![0.0; h], vec![0.0; h], vec![0.0; 4 * h]);
            gates::forward(&g[r], &cp[r], &mut hr, &mut cr, &mut acts);
            let mut d_pre = vec![0.0; 4 * h];
            let mut d_c = w[r][h..].to_vec();
            gates::backward(&acts, &cr, &cp[r], &w[r][..h], &mut d_c, &mut d_pre);
            dg.extend(d_pre);
            dc.extend(d_c);
        }
        let dev = gates.device();
        (
            Tensor::from_vec(dg, gates.dims(), dev).unwrap(),
            Tensor::from_vec(dc, c_prev.dims(), dev).unwrap(),
        )
    }
}
