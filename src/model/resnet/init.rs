//! Random weights initialised the way torchvision initialises a fresh ResNet, under torchvision's
//! names: for tests, the demo, and users who cannot download the pretrained files.
//!
//! torchvision's `ResNet.__init__`: every `Conv2d` gets `kaiming_normal_(mode="fan_out",
//! nonlinearity="relu")` (std = sqrt(2 / (out_channels × k × k))), every BatchNorm weight 1 and
//! bias 0 (running mean 0, var 1 as built), and `fc` keeps `nn.Linear`'s default init
//! (weight and bias uniform in ±1/sqrt(in_features)). The numbers are drawn from a seeded ChaCha8,
//! so they match torchvision in distribution, not value by value.

use super::Arch;
use crate::Result;
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use std::collections::HashMap;

/// A full state_dict for `arch` (f32, CPU), initialised as torchvision does, reproducible from `seed`.
pub fn random_state_dict(arch: Arch, seed: u64) -> Result<HashMap<String, Tensor>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = HashMap::new();
    // param_shapes is in torchvision's order, so the draws do not depend on HashMap order.
    for (name, shape) in arch.param_shapes() {
        let n: usize = shape.iter().product();
        let values: Vec<f32> = if shape.len() == 4 {
            let fan_out = shape[0] * shape[2] * shape[3];
            let std = (2.0 / fan_out as f64).sqrt();
            (0..n)
                .map(|_| {
                    let z: f64 = StandardNormal.sample(&mut rng);
                    (z * std) as f32
                })
                .collect()
        } else if name.starts_with("fc.") {
            let bound = 1.0 / (arch.feature_dim() as f64).sqrt();
            (0..n)
                .map(|_| rng.random_range(-bound..bound) as f32)
                .collect()
        } else if name.ends_with(".weight") || name.ends_with(".running_var") {
            vec![1.0; n]
        } else {
            // BatchNorm bias and running mean.
            vec![0.0; n]
        };
        out.insert(name, Tensor::from_vec(values, shape, &Device::Cpu)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(map: &HashMap<String, Tensor>, name: &str) -> Vec<f32> {
        map[name].flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn follows_torchvision_init_rules() {
        let sd = random_state_dict(Arch::ResNet18, 1).unwrap();
        assert_eq!(sd.len(), Arch::ResNet18.param_shapes().len());
        for (name, shape) in Arch::ResNet18.param_shapes() {
            assert_eq!(sd[&name].dims(), shape.as_slice(), "{name}");
        }
        // layer4.0.conv2: [512, 512, 3, 3], fan_out 4608 -> std sqrt(2/4608) ≈ 0.0208.
        let w = values(&sd, "layer4.0.conv2.weight");
        let mean = w.iter().map(|&v| v as f64).sum::<f64>() / w.len() as f64;
        let var = w.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / w.len() as f64;
        let want = 2.0 / 4608.0;
        assert!(mean.abs() < 1e-3, "mean {mean}");
        assert!((var / want - 1.0).abs() < 0.02, "var {var} want {want}");
        assert!(values(&sd, "bn1.weight").iter().all(|&v| v == 1.0));
        assert!(values(&sd, "layer1.0.bn2.bias").iter().all(|&v| v == 0.0));
        assert!(values(&sd, "layer2.1.bn1.running_mean")
            .iter()
            .all(|&v| v == 0.0));
        assert!(values(&sd, "layer3.0.downsample.1.running_var")
            .iter()
            .all(|&v| v == 1.0));
        let bound = 1.0 / 512f32.sqrt();
        let fc = values(&sd, "fc.weight");
        assert!(fc.iter().all(|v| v.abs() <= bound));
        assert!(fc.iter().any(|v| v.abs() > 0.9 * bound));
    }

    #[test]
    fn seeded() {
        let a = random_state_dict(Arch::ResNet18, 5).unwrap();
        let b = random_state_dict(Arch::ResNet18, 5).unwrap();
        let c = random_state_dict(Arch::ResNet18, 6).unwrap();
        let n = "layer1.0.conv1.weight";
        assert_eq!(values(&a, n), values(&b, n));
        assert_ne!(values(&a, n), values(&c, n));
    }
}
