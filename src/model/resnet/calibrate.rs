//! BatchNorm statistics recomputed on real images, for a randomly initialised ResNet: with
//! torchvision's init (running mean 0, var 1) activations grow block after block and the pooled
//! features of different images point almost the same way, so they say little about the images
//! (nor about the error of a faster arithmetic). After [`recalibrate_batchnorm`] every BatchNorm
//! normalises its convolution's output over the given images, as a trained network's do.

use super::{Arch, ConvSpec};
use crate::{Error, Result};
use candle_core::{DType, Tensor, D};
use std::collections::HashMap;

const BN_EPS: f64 = 1e-5;

/// Sets every BatchNorm's `running_mean` and `running_var` in `sd` to the per-channel mean and
/// (biased) variance of its convolution's output over `images` (`[B, 3, H, W]`, normalised),
/// layer after layer, each measured with the layers before it already recalibrated: one forward
/// pass in "train mode" whose batch statistics become the running ones. The weights, BatchNorm
/// scales and shifts are left as they are.
pub fn recalibrate_batchnorm(
    arch: Arch,
    sd: &mut HashMap<String, Tensor>,
    images: &Tensor,
) -> Result<()> {
    let (b, c, _, _) = images.dims4()?;
    if b < 2 || c != 3 {
        return Err(Error::Invalid(format!(
            "BatchNorm statistics need at least 2 RGB images, got {:?}",
            images.dims()
        )));
    }
    let plan = arch.plan();
    let x = images.to_dtype(DType::F32)?;
    let x = conv_bn(&plan.stem, sd, &x)?.relu()?;
    let mut x = x
        .pad_with_zeros(2, 1, 1)?
        .pad_with_zeros(3, 1, 1)?
        .max_pool2d_with_stride(3, 2)?;
    for block in &plan.blocks {
        let shortcut = match &block.downsample {
            Some(d) => conv_bn(d, sd, &x)?,
            None => x.clone(),
        };
        let mut y = x;
        let n = block.convs.len();
        for (i, spec) in block.convs.iter().enumerate() {
            y = conv_bn(spec, sd, &y)?;
            if i + 1 < n {
                y = y.relu()?;
            }
        }
        x = (y + shortcut)?.relu()?;
    }
    Ok(())
}

/// The convolution, then its BatchNorm with the batch's statistics, which are written into `sd`.
fn conv_bn(spec: &ConvSpec, sd: &mut HashMap<String, Tensor>, x: &Tensor) -> Result<Tensor> {
    let get = |sd: &HashMap<String, Tensor>, n: String| -> Result<Tensor> {
        sd.get(&n)
            .cloned()
            .ok_or_else(|| Error::Invalid(format!("state_dict has no tensor {n}")))
    };
    let w = get(sd, format!("{}.weight", spec.conv))?.to_dtype(DType::F32)?;
    let y = x.conv2d(&w, spec.pad, spec.stride, 1, 1)?;
    let cout = spec.cout;
    let per_channel = y.transpose(0, 1)?.flatten_from(1)?; // [C, B·H·W]
    let mean = per_channel.mean(D::Minus1)?;
    let centred = per_channel.broadcast_sub(&mean.unsqueeze(1)?)?;
    let var = centred.sqr()?.mean(D::Minus1)?;
    let gamma = get(sd, format!("{}.weight", spec.bn))?.to_dtype(DType::F32)?;
    let beta = get(sd, format!("{}.bias", spec.bn))?.to_dtype(DType::F32)?;
    let scale = gamma.div(&(var.clone() + BN_EPS)?.sqrt()?)?;
    let shift = (beta - mean.mul(&scale)?)?;
    let out = y
        .broadcast_mul(&scale.reshape((1, cout, 1, 1))?)?
        .broadcast_add(&shift.reshape((1, cout, 1, 1))?)?;
    let dtype = sd[&format!("{}.running_mean", spec.bn)].dtype();
    sd.insert(format!("{}.running_mean", spec.bn), mean.to_dtype(dtype)?);
    sd.insert(format!("{}.running_var", spec.bn), var.to_dtype(dtype)?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::resnet::init::random_state_dict;
    use crate::model::resnet::ResNetTrunk;
    use candle_core::Device;

    /// Mean cosine between the features of different images.
    fn mean_pairwise_cosine(f: &Tensor) -> f32 {
        let rows: Vec<Vec<f32>> = f.to_vec2().unwrap();
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        let (mut sum, mut n) = (0.0, 0);
        for i in 0..rows.len() {
            for j in i + 1..rows.len() {
                let dot: f32 = rows[i].iter().zip(&rows[j]).map(|(a, b)| a * b).sum();
                sum += dot / (norm(&rows[i]) * norm(&rows[j]));
                n += 1;
            }
        }
        sum / n as f32
    }

    #[test]
    fn recalibrated_layers_normalise_and_features_tell_images_apart() {
        let dev = Device::Cpu;
        let images = Tensor::randn(0f32, 1.0, (6, 3, 64, 64), &dev).unwrap();
        let mut sd = random_state_dict(Arch::ResNet18, 3).unwrap();
        let before = ResNetTrunk::from_state_dict(Arch::ResNet18, &sd, &dev)
            .unwrap()
            .forward(&images)
            .unwrap();
        recalibrate_batchnorm(Arch::ResNet18, &mut sd, &images).unwrap();
        let var: Vec<f32> = sd["layer4.1.bn2.running_var"].to_vec1().unwrap();
        assert!(var.iter().all(|v| v.is_finite() && *v > 0.0));
        // Not the init's identity any more.
        assert!(var.iter().any(|v| (v - 1.0).abs() > 0.05));
        let after = ResNetTrunk::from_state_dict(Arch::ResNet18, &sd, &dev)
            .unwrap()
            .forward(&images)
            .unwrap();
        let (cb, ca) = (mean_pairwise_cosine(&before), mean_pairwise_cosine(&after));
        assert!(ca < cb, "images are told apart better: {ca} vs {cb}");
        assert!(after
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .all(|v| v.is_finite()));
    }

    #[test]
    fn one_image_is_refused() {
        let mut sd = random_state_dict(Arch::ResNet18, 3).unwrap();
        let one = Tensor::zeros((1, 3, 32, 32), DType::F32, &Device::Cpu).unwrap();
        assert!(recalibrate_batchnorm(Arch::ResNet18, &mut sd, &one).is_err());
    }
}
