//! The trainable ResNet definition on candle-nn (`Conv2d` + `BatchNorm`), built from a
//! `VarBuilder` whose names are torchvision's. This is candle's stock path: the reference the
//! folded [`super::ResNetTrunk`] is measured against, and the form to fine-tune.

use super::{Arch, ConvSpec};
use candle_core::{Module, ModuleT, Result, Tensor};
use candle_nn::{BatchNorm, Conv2d, Conv2dConfig, VarBuilder};

/// A convolution followed by its BatchNorm.
#[derive(Debug, Clone)]
struct ConvBn {
    conv: Conv2d,
    bn: BatchNorm,
}

impl ConvBn {
    fn new(spec: &ConvSpec, vb: &VarBuilder) -> Result<Self> {
        let cfg = Conv2dConfig {
            padding: spec.pad,
            stride: spec.stride,
            ..Default::default()
        };
        let conv = candle_nn::conv2d_no_bias(spec.cin, spec.cout, spec.k, cfg, vb.pp(&spec.conv))?;
        let bn = candle_nn::batch_norm(spec.cout, 1e-5, vb.pp(&spec.bn))?;
        Ok(Self { conv, bn })
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.bn.forward_t(&self.conv.forward(x)?, train)
    }
}

#[derive(Debug, Clone)]
struct Block {
    convs: Vec<ConvBn>,
    downsample: Option<ConvBn>,
}

/// ResNet up to the global-average pool, plus `fc` when the weights carry it.
#[derive(Debug, Clone)]
pub struct ResNet {
    arch: Arch,
    stem: ConvBn,
    blocks: Vec<Block>,
    fc: Option<candle_nn::Linear>,
}

impl ResNet {
    /// Builds the network from `vb` (torchvision names: `conv1`, `layer1.0.bn2`, ...).
    /// `fc` is loaded when present.
    pub fn new(arch: Arch, vb: VarBuilder) -> Result<Self> {
        let plan = arch.plan();
        let stem = ConvBn::new(&plan.stem, &vb)?;
        let blocks = plan
            .blocks
            .iter()
            .map(|b| {
                Ok(Block {
                    convs: b
                        .convs
                        .iter()
                        .map(|c| ConvBn::new(c, &vb))
                        .collect::<Result<_>>()?,
                    downsample: b
                        .downsample
                        .as_ref()
                        .map(|c| ConvBn::new(c, &vb))
                        .transpose()?,
                })
            })
            .collect::<Result<_>>()?;
        let fc = if vb.contains_tensor("fc.weight") {
            let w = vb.get_unchecked("fc.weight")?;
            let b = vb.get_unchecked("fc.bias")?;
            Some(candle_nn::Linear::new(w, Some(b)))
        } else {
            None
        };
        Ok(Self {
            arch,
            stem,
            blocks,
            fc,
        })
    }

    /// The architecture.
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// Pooled features `[B, D]` of images `[B, 3, H, W]`; `train` selects batch statistics.
    pub fn features_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let x = self.stem.forward_t(x, train)?.relu()?;
        // Zero padding is exact here: after the ReLU every value is >= 0 and each window holds
        // at least one real value, so -inf padding (torchvision's) gives the same maximum.
        let mut x = x.pad_with_zeros(2, 1, 1)?.pad_with_zeros(3, 1, 1)?;
        x = x.max_pool2d_with_stride(3, 2)?;
        for b in &self.blocks {
            let mut y = x.clone();
            let n = b.convs.len();
            for (i, c) in b.convs.iter().enumerate() {
                y = c.forward_t(&y, train)?;
                if i + 1 < n {
                    y = y.relu()?;
                }
            }
            let shortcut = match &b.downsample {
                Some(d) => d.forward_t(&x, train)?,
                None => x,
            };
            x = (y + shortcut)?.relu()?;
        }
        x.mean(3)?.mean(2)
    }

    /// ImageNet logits from `fc`, when the weights had it.
    pub fn logits(&self, features: &Tensor) -> Option<Result<Tensor>> {
        self.fc.as_ref().map(|fc| fc.forward(features))
    }
}
