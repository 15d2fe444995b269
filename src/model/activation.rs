//! `exp`, `sigmoid` and `tanh` for the LSTM gates and the loss, in plain arithmetic the compiler
//! vectorises.
//! libm's `expf`/`tanhf` are opaque calls, one element at a time: in `perf` they were 15% of a
//! training step (5 per gate element forward, 1 backward). These agree with libm to a few ulp
//! (tested below); the decoder's PyTorch parity tests run through them.

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in a part exact in f32 and the remainder (Cody–Waite reduction).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5 · 2^23: adding it rounds an f32 of magnitude < 2^22 to an integer, and the integer can be
/// read back from the low mantissa bits.
const ROUND: f32 = 12_582_912.0;

/// e^x (x clamped to [-87, 88], so the result is a normal f32).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    // Cephes expf polynomial on [-ln2/2, ln2/2].
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    let ni = (t.to_bits() as i32).wrapping_sub(0x4B40_0000);
    y * f32::from_bits(((ni + 127) << 23) as u32)
}

/// 1 / (1 + e^-x).
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// tanh x = 1 − 2 / (1 + e^2x); absolute error below 1e-7 near 0, where libm is relative.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / (1.0 + exp(2.0 * x))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> impl Iterator<Item = f32> {
        (-200_000..=200_000).map(|i| i as f32 * 1e-4)
    }

    #[test]
    fn exp_is_within_a_few_ulp_of_libm() {
        for x in grid().chain([-87.0, -50.0, 30.0, 88.0]) {
            let (a, b) = (exp(x), x.exp());
            assert!(
                (a - b).abs() <= 3.0 * f32::EPSILON * b,
                "exp({x}) = {a}, libm {b}"
            );
        }
    }

    #[test]
    fn sigmoid_and_tanh_match_libm_and_saturate() {
        for x in grid() {
            let s = 1.0 / (1.0 + (-x).exp());
            assert!((sigmoid(x) - s).abs() <= 2e-7, "sigmoid({x})");
            assert!((tanh(x) - x.tanh()).abs() <= 2e-7, "tanh({x})");
        }
        for x in [100.0f32, 1e6, f32::MAX] {
            assert_eq!(sigmoid(x), 1.0);
            assert!(sigmoid(-x) < 1e-37);
            assert_eq!(tanh(x), 1.0);
            assert_eq!(tanh(-x), -1.0);
        }
    }
}
