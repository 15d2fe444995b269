//! The LSTM gate arithmetic of one batch row, forward and backward: the one kernel that both the
//! decoding cell op and the training sequence op run. Written over equal-length slices so that
//! the loops vectorise (no bounds checks, the activations inlined), and compiled again for the
//! widest vectors the CPU has ([`crate::model::wide`]): the same arithmetic element by element,
//! so every copy gives the same bits.

use crate::model::activation::{sigmoid, tanh};
use crate::model::wide::wide_copies;

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

wide_copies! {
    /// Forward of one row: the gates' pre-activations `pre` (4H: i f g o) and the previous cell
    /// `c_prev` → `h_out = o ⊙ tanh(c)`, `c_out = c = f ⊙ c_prev + i ⊙ g` (H each) and the
    /// activations `acts` (4H: i = σ, f = σ, g = tanh, o = σ), which [`backward`] takes.
    pub(super) fn forward, forward_avx512, forward_avx2 = forward_portable(
        pre: &[f32],
        c_prev: &[f32],
        h_out: &mut [f32],
        c_out: &mut [f32],
        acts: &mut [f32],
    );
}

/// The arithmetic of [`forward`], for whatever instruction set the caller is compiled for.
#[inline(always)]
fn forward_portable(
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

wide_copies! {
    /// Backward of one row, from what [`forward`] gave (`acts` 4H, the cell `c` H) and its
    /// `c_prev`: the gradient `dh` of the row's h → the gradient of the pre-activations `d_pre`
    /// (4H). `dc` holds the gradient of c on entry (from later steps) and that of `c_prev` on exit.
    /// Activations are saved rather than recomputed; only tanh(c) is recomputed.
    pub(super) fn backward, backward_avx512, backward_avx2 = backward_portable(
        acts: &[f32],
        c: &[f32],
        c_prev: &[f32],
        dh: &[f32],
        dc: &mut [f32],
        d_pre: &mut [f32],
    );
}

/// The arithmetic of [`backward`], for whatever instruction set the caller is compiled for.
#[inline(always)]
fn backward_portable(
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    type Forward = unsafe fn(&[f32], &[f32], &mut [f32], &mut [f32], &mut [f32]);
    type Backward = unsafe fn(&[f32], &[f32], &[f32], &[f32], &mut [f32], &mut [f32]);

    /// Every compiled copy this CPU can run gives the baseline copy's bits, forward and backward,
    /// for a width that is not a multiple of any vector length; so does the dispatching entry.
    #[test]
    fn wide_copies_give_the_baseline_bits() {
        let h = 37;
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut random = |n: usize, scale: f32| -> Vec<f32> {
            (0..n).map(|_| rng.random_range(-scale..scale)).collect()
        };
        let (pre, c_prev, dh, dc0) = (
            random(4 * h, 8.0),
            random(h, 2.0),
            random(h, 1.0),
            random(h, 1.0),
        );
        let mut copies: Vec<(&str, Forward, Backward)> = vec![
            ("baseline", forward_portable, backward_portable),
            ("dispatch", forward, backward),
        ];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                copies.push(("avx512", forward_avx512, backward_avx512));
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                copies.push(("avx2", forward_avx2, backward_avx2));
            }
        }
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let mut first: Option<Vec<Vec<u32>>> = None;
        for (name, fwd, bwd) in copies {
            let (mut h_out, mut c_out, mut acts) = (vec![0.0; h], vec![0.0; h], vec![0.0; 4 * h]);
            let (mut dc, mut d_pre) = (dc0.clone(), vec![0.0; 4 * h]);
            // SAFETY: only the copies whose features the CPU has were listed.
            unsafe {
                fwd(&pre, &c_prev, &mut h_out, &mut c_out, &mut acts);
                bwd(&acts, &c_out, &c_prev, &dh, &mut dc, &mut d_pre);
            }
            let got = vec![
                bits(&h_out),
                bits(&c_out),
                bits(&acts),
                bits(&dc),
                bits(&d_pre),
            ];
            match &first {
                None => first = Some(got),
                Some(want) => assert_eq!(&got, want, "{name} differs from the baseline"),
            }
        }
    }
}
