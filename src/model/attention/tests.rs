//! The hand-written backward pass against finite differences of the forward pass, with dropout
//! (the same mask each time: the same seed) and the attention regulariser on, and captions of
//! unequal lengths, one of them empty. (PyTorch parity: tests/it/attention.rs.)

use super::teacher::{backward, forward, PassOptions, TeacherBatch};
use super::{AttentionDecoder, AttentionDims, PARAMS};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[test]
fn backward_matches_finite_differences() {
    let dims = AttentionDims {
        vocab: 7,
        channels: 5,
        embed: 3,
        attention: 4,
        hidden: 6,
    };
    let mut dec = AttentionDecoder::new(dims, &mut ChaCha8Rng::seed_from_u64(1));
    // Larger weights than the initialisation, so every path carries a visible gradient.
    for p in dec.params_mut() {
        for x in p.iter_mut() {
            *x *= 3.0;
        }
    }
    let cells = 3;
    let maps: Vec<f32> = (0..3 * cells * dims.channels)
        .map(|i| ((i as f32) * 0.37).sin())
        .collect();
    let caps: [&[u32]; 3] = [&[3, 4], &[], &[5, 6, 3]];
    let batch = TeacherBatch {
        maps: &maps,
        cells,
        captions: &caps,
        start: 1,
        end: 2,
    };
    let opts = PassOptions {
        dropout: 0.3,
        alpha_c: 0.7,
    };
    let loss = |dec: &AttentionDecoder| -> f64 {
        forward(dec, &batch, opts, &mut ChaCha8Rng::seed_from_u64(9))
            .unwrap()
            .loss
            .total()
    };
    let pass = forward(&dec, &batch, opts, &mut ChaCha8Rng::seed_from_u64(9)).unwrap();
    assert_eq!(pass.rows(), 3 + 1 + 4);
    let grads = backward(&dec, &pass).unwrap();
    let eps = 1e-2f32;
    for (k, (_, name)) in PARAMS.iter().enumerate() {
        let n = grads[k].len();
        // A few elements of each parameter, spread over it.
        for i in (0..n).step_by((n / 4).max(1)) {
            let orig = dec.params[k][i];
            dec.params[k][i] = orig + eps;
            let up = loss(&dec);
            dec.params[k][i] = orig - eps;
            let down = loss(&dec);
            dec.params[k][i] = orig;
            let numeric = (up - down) / (2.0 * eps as f64);
            let analytic = grads[k][i] as f64;
            assert!(
                (numeric - analytic).abs() <= 2e-3 + 2e-2 * numeric.abs(),
                "{name}[{i}]: backward {analytic:e}, finite differences {numeric:e}"
            );
        }
    }
}
