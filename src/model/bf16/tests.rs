use super::*;
use crate::model::resnet::cpu_ops::Im2Col;
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn rounded(x: &[f32]) -> Vec<f32> {
    x.iter().map(|&v| from_bf16(to_bf16(v))).collect()
}

/// The kernels this CPU runs; the tests of a missing one say so and pass.
fn kernels() -> Vec<Kernel> {
    let mut ks = Vec::new();
    if matches!(kernel(), Ok(Kernel::Amx)) {
        ks.push(Kernel::Amx);
    }
    if avx512_available() {
        ks.push(Kernel::Avx512);
    }
    if ks.is_empty() {
        eprintln!("no bf16 kernel on this CPU: nothing to check");
    }
    ks
}

#[test]
fn rounding_is_to_nearest_even() {
    assert_eq!(to_bf16(1.0), 0x3f80);
    // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even one (1).
    assert_eq!(to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
    // 1 + 3·2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6: up.
    assert_eq!(to_bf16(1.0 + 3.0 / 256.0), 0x3f82);
    assert_eq!(to_bf16(-2.5), 0xc020);
    assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
    assert_eq!(from_bf16(to_bf16(f32::INFINITY)), f32::INFINITY);
    for &v in &random(1000, 1) {
        let r = from_bf16(to_bf16(v));
        assert!((r - v).abs() <= v.abs() / 256.0, "{v} -> {r}");
    }
}

#[test]
fn the_vector_conversion_equals_the_scalar_one() {
    for len in [0, 1, 15, 16, 17, 100] {
        let src: Vec<f32> = random(len, len as u64).iter().map(|v| v * 1e3).collect();
        let mut dst = vec![7u16; len];
        convert(&src, &mut dst);
        let want: Vec<u16> = src.iter().map(|&v| to_bf16(v)).collect();
        assert_eq!(dst, want, "length {len}");
    }
}

#[test]
fn each_kernel_equals_candles_matmul_of_the_rounded_inputs() {
    // Shapes of the trunk (the stem's 147 inputs, batch-1's 49-row late stages) and ragged ones.
    let shapes = [
        (1, 64, 64),
        (5, 20, 7),
        (37, 147, 64),
        (49, 576, 128),
        (100, 96, 40),
        (200, 64, 256),
    ];
    for kernel in kernels() {
        for (i, &(m, k, n)) in shapes.iter().enumerate() {
            let (x, w) = (random(m * k, 10 + i as u64), random(k * n, 20 + i as u64));
            let a = Activations::from_rows(&x, m, k).unwrap();
            let pw = PackedWeights::pack(&w, k, n).unwrap();
            let got = matmul(kernel, &a, &pw).unwrap();
            let (xr, wr) = (rounded(&x), rounded(&w));
            let dev = Device::Cpu;
            let want = Tensor::from_slice(&xr, (m, k), &dev)
                .unwrap()
                .matmul(&Tensor::from_slice(&wr, (k, n), &dev).unwrap())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            assert_eq!(got.len(), want.len());
            // Products of bf16 values are exact in f32: only the order of the sums differs.
            let tol = 1e-5 * k as f32;
            for (j, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= tol,
                    "{kernel} [{m}, {k}]·[{k}, {n}] at {j}: {g} vs {w}"
                );
            }
        }
    }
}

#[test]
fn the_bf16_im2col_is_the_f32_one_rounded() {
    let dev = Device::Cpu;
    for &(b, h, w, c, k, stride, pad) in &[
        (2, 9, 7, 3, 7, 2, 3),
        (1, 8, 8, 64, 3, 1, 1),
        (1, 8, 8, 32, 3, 2, 1),
        (3, 5, 5, 16, 1, 2, 0),
    ] {
        let x = random(b * h * w * c, (h * c) as u64);
        let t = Tensor::from_slice(&x, (b, h, w, c), &dev).unwrap();
        let f32_cols = t.apply_op1_no_bwd(&Im2Col { k, stride, pad }).unwrap();
        let (rows, cols) = f32_cols.dims2().unwrap();
        let want = f32_cols.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let a = Activations::im2col(&x, (b, h, w, c), k, stride, pad).unwrap();
        assert_eq!((a.m(), a.k()), (rows, cols));
        assert_eq!(a.stride, cols.div_ceil(32) * 32);
        for r in 0..a.data.len() / a.stride {
            for j in 0..a.stride {
                let got = a.data[r * a.stride + j];
                let expect = if r < rows && j < cols {
                    to_bf16(want[r * cols + j])
                } else {
                    0
                };
                assert_eq!(got, expect, "row {r} column {j}");
            }
        }
    }
}

#[test]
fn mismatched_shapes_are_internal_errors() {
    let a = Activations::from_rows(&[0.0; 6], 2, 3).unwrap();
    let w = PackedWeights::pack(&[0.0; 8], 4, 2).unwrap();
    if let Ok(k) = kernel() {
        assert!(matches!(matmul(k, &a, &w), Err(Error::Internal(_))));
    }
    assert!(PackedWeights::pack(&[0.0; 7], 4, 2).is_err());
    assert!(Activations::from_rows(&[0.0; 5], 2, 3).is_err());
}

#[test]
fn the_fused_epilogue_equals_a_separate_pass() {
    let (m, k, n) = (70, 96, 72);
    let (x, w) = (random(m * k, 31), random(k * n, 32));
    let (bias, residual) = (random(n, 33), random(m * n, 34));
    let a = Activations::from_rows(&x, m, k).unwrap();
    let pw = PackedWeights::pack(&w, k, n).unwrap();
    for kernel in kernels() {
        let plain = matmul(kernel, &a, &pw).unwrap();
        for (res, relu) in [(None, false), (None, true), (Some(&residual[..]), true)] {
            let e = Epilogue {
                bias: &bias,
                residual: res,
                relu,
            };
            let fused = matmul_then(kernel, &a, &pw, Some(e)).unwrap();
            for (i, (f, p)) in fused.iter().zip(&plain).enumerate() {
                let mut want = p + bias[i % n] + res.map_or(0.0, |r| r[i]);
                if relu {
                    want = want.max(0.0);
                }
                assert_eq!(*f, want, "{kernel} at {i}");
            }
        }
        let short = Epilogue {
            bias: &bias[1..],
            residual: None,
            relu: false,
        };
        assert!(matmul_then(kernel, &a, &pw, Some(short)).is_err());
    }
}
