//! Deterministic "formula" weights and inputs that `scripts/reference/resnet_fixtures.py`
//! computes bit for bit the same way, so parity with torchvision needs no 100 MB fixture.
//! Value k of tensor `name` comes from splitmix64 over (fnv1a64(name), k), scaled like the
//! initialisation torchvision would use.

use super::Arch;
use crate::Result;
use candle_core::{Device, Tensor};
use std::collections::HashMap;

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

fn fnv1a64(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Uniform in [0, 1) from (seed, k): one splitmix64 step.
fn uniform(seed: u64, k: u64) -> f64 {
    let mut z = seed.wrapping_add(k.wrapping_add(1).wrapping_mul(GOLDEN));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// `n` values `lo + (hi - lo) * u` for tensor `name`, computed in f64 and rounded to f32.
pub fn values(name: &str, n: usize, lo: f64, hi: f64) -> Vec<f32> {
    let seed = fnv1a64(name);
    (0..n as u64)
        .map(|k| (lo + (hi - lo) * uniform(seed, k)) as f32)
        .collect()
}

/// The value range of a parameter, from its name and shape (kaiming-like for convolutions).
fn range(name: &str, shape: &[usize]) -> (f64, f64) {
    let fan_in: usize = shape[1..].iter().product();
    if name.ends_with("running_var") {
        (0.5, 1.5)
    } else if name.ends_with("running_mean") {
        (-0.2, 0.2)
    } else if name == "fc.weight" {
        let b = 1.0 / (fan_in as f64).sqrt();
        (-b, b)
    } else if name == "fc.bias" {
        (-0.01, 0.01)
    } else if shape.len() == 4 {
        let b = (6.0 / fan_in as f64).sqrt();
        (-b, b)
    } else if name.ends_with("weight") {
        (0.5, 1.0)
    } else {
        (-0.2, 0.2)
    }
}

/// A full state_dict of formula weights for `arch` (torchvision names and shapes, f32, CPU).
pub fn state_dict(arch: Arch) -> Result<HashMap<String, Tensor>> {
    arch.param_shapes()
        .into_iter()
        .map(|(name, shape)| {
            let (lo, hi) = range(&name, &shape);
            let v = values(&name, shape.iter().product(), lo, hi);
            let t = Tensor::from_vec(v, shape, &Device::Cpu)?;
            Ok((name, t))
        })
        .collect()
}

/// A formula input batch `[b, 3, size, size]` with values in [-2, 2), named `name`.
pub fn input(name: &str, b: usize, size: usize) -> Result<Tensor> {
    let v = values(name, b * 3 * size * size, -2.0, 2.0);
    Ok(Tensor::from_vec(v, (b, 3, size, size), &Device::Cpu)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_deterministic_and_in_range() {
        let a = values("layer1.0.conv1.weight", 1000, -0.5, 0.5);
        assert_eq!(a, values("layer1.0.conv1.weight", 1000, -0.5, 0.5));
        assert_ne!(a, values("layer1.0.conv2.weight", 1000, -0.5, 0.5));
        assert!(a.iter().all(|v| (-0.5..0.5).contains(v)));
        let mean = a.iter().sum::<f32>() / 1000.0;
        assert!(mean.abs() < 0.05, "mean {mean}");
    }
}
