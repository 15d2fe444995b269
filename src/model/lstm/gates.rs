//! The LSTM gate arithmetic of one batch row, forward and backward: the one kernel that both the
//! decoding cell op and the training sequence op run. Written over equal-length slices so that
//! the loops vectorise (no bounds checks, the activations inlined).

use crate::model::activation::{sigmoid, tanh};

/// The four gate blocks (i, f, g, o) of a 4H row, each exactly `h` long.
#[inline(always)]
fn quarters(s: &[f32], h: usize) -> [&[f32]; 4] {
    [&s[..h], &s[h..2 * h], &s[2 * h..3 * h], &s[3 * h..4 * h]]
}

/// [`quarters`] of a mutable 4H row.
#[inline(always)]
fn quarters_mut(s: &mut [f32], h: usize) -> [&mut [f32]; 4] {
    let (a, rest) = s[..4 * h].split_at_mut(h);
    let (b, rest) = rest.split_at_mut(h);
    let (c, d) = rest.split_at_mut(h);
    [a, b, c, d]
}

/// Forward of one row: the gates' pre-activations `pre` (4H: i f g o) and the previous cell
/// `c_prev` → `h_out = o ⊙ tanh(c)`, `c_out = c = f ⊙ c_prev + i ⊙ g` (H each) and the
/// activations `acts` (4H: i = σ, f = σ, g = tanh, o = σ), which [`backward`] takes.
#[inline(always)]
pub(super) fn forward(
    pre: &[f32],
    c_prev: &[f32],
    h_out: &mut [f32],
    c_out: &mut [f32],
    acts: &mut [f32],
) {
    let h = h_out.len();
    let [p_i, p_f, p_g, p_o] = quarters(pre, h);
    let [a_i, a_f, a_g, a_o] = quarters_mut(acts, h);
    let (c_prev, c_out) = (&c_prev[..h], &mut c_out[..h]);
    for j in 0..h {
        let i = sigmoid(p_i[j]);
        let f = sigmoid(p_f[j]);
        let g = tanh(p_g[j]);
        let o = sigmoid(p_o[j]);
        let c = f * c_prev[j] + i * g;
        h_out[j] = o * tanh(c);
        c_out[j] = c;
        a_i[j] = i;
        a_f[j] = f;
        a_g[j] = g;
        a_o[j] = o;
    }
}

/// Backward of one row, from what [`forward`] gave (`acts` 4H, the cell `c` H) and its
/// `c_prev`: the gradient `dh` of the row's h → the gradient of the pre-activations `d_pre`
/// (4H). `dc` holds the gradient of c on entry (from later steps) and that of `c_prev` on exit.
/// Activations are saved rather than recomputed; only tanh(c) is recomputed.
#[inline(always)]
pub(super) fn backward(
    acts: &[f32],
    c: &[f32],
    c_prev: &[f32],
    dh: &[f32],
    dc: &mut [f32],
    d_pre: &mut [f32],
) {
    let h = dc.len();
    let [a_i, a_f, a_g, a_o] = quarters(acts, h);
    let [d_i, d_f, d_g, d_o] = quarters_mut(d_pre, h);
    let (c, c_prev, dh) = (&c[..h], &c_prev[..h], &dh[..h]);
    for j in 0..h {
        let (i, f, g, o) = (a_i[j], a_f[j], a_g[j], a_o[j]);
        let tc = tanh(c[j]);
        let dh = dh[j];
        let dcj = dc[j] + dh * o * (1.0 - tc * tc);
        d_i[j] = dcj * g * i * (1.0 - i);
        d_f[j] = dcj * c_prev[j] * f * (1.0 - f);
        d_g[j] = dcj * i * (1.0 - g * g);
        d_o[j] = dh * tc * o * (1.0 - o);
        dc[j] = dcj * f;
    }
}
