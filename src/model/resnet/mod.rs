//! The torchvision ResNet family (18/34/50/101/152): one layer plan shared by the trainable
//! definition ([`ResNet`], torchvision parameter names) and the folded inference graph
//! ([`ResNetTrunk`]), so both read the same files.

pub mod calibrate;
mod check;
pub(crate) mod cpu_ops;
pub mod formula;
pub mod init;
mod net;
mod trunk;
mod winograd;

pub use check::check_state_dict;
pub use net::ResNet;
pub use trunk::{ResNetTrunk, TrunkLayout, F32_STAGES_IN_BF16};

use crate::{Error, Result};

/// A ResNet depth, named as torchvision names it (`resnet50`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    /// `resnet18`: basic blocks, 512-d features.
    ResNet18,
    /// `resnet34`: basic blocks, 512-d features.
    ResNet34,
    /// `resnet50`: bottleneck blocks, 2048-d features.
    ResNet50,
    /// `resnet101`: bottleneck blocks, 2048-d features.
    ResNet101,
    /// `resnet152`: bottleneck blocks, 2048-d features.
    ResNet152,
}

impl Arch {
    /// Every architecture, smallest first.
    pub const ALL: [Arch; 5] = [
        Arch::ResNet18,
        Arch::ResNet34,
        Arch::ResNet50,
        Arch::ResNet101,
        Arch::ResNet152,
    ];

    /// Blocks in layer1..layer4.
    fn blocks(self) -> [usize; 4] {
        match self {
            Arch::ResNet18 => [2, 2, 2, 2],
            Arch::ResNet34 | Arch::ResNet50 => [3, 4, 6, 3],
            Arch::ResNet101 => [3, 4, 23, 3],
            Arch::ResNet152 => [3, 8, 36, 3],
        }
    }

    /// Whether blocks are bottlenecks (1×1, 3×3, 1×1 with 4× expansion).
    pub fn bottleneck(self) -> bool {
        !matches!(self, Arch::ResNet18 | Arch::ResNet34)
    }

    /// Length of the pooled feature (the input size of `fc`).
    pub fn feature_dim(self) -> usize {
        if self.bottleneck() {
            2048
        } else {
            512
        }
    }

    /// The layer plan: stem convolution, then every residual block in order.
    pub fn plan(self) -> Plan {
        let stem = ConvSpec::new("conv1", "bn1", 3, 64, 7, 2, 3);
        let expansion = if self.bottleneck() { 4 } else { 1 };
        let mut inplanes = 64;
        let mut blocks = Vec::new();
        for (li, &n) in self.blocks().iter().enumerate() {
            let planes = 64 << li;
            for bi in 0..n {
                let stride = if li > 0 && bi == 0 { 2 } else { 1 };
                let p = format!("layer{}.{bi}", li + 1);
                let c = |i: usize| (format!("{p}.conv{i}"), format!("{p}.bn{i}"));
                let convs = if self.bottleneck() {
                    // torchvision (v1.5) strides in the 3×3, not the first 1×1.
                    vec![
                        ConvSpec::new(&c(1).0, &c(1).1, inplanes, planes, 1, 1, 0),
                        ConvSpec::new(&c(2).0, &c(2).1, planes, planes, 3, stride, 1),
                        ConvSpec::new(&c(3).0, &c(3).1, planes, planes * 4, 1, 1, 0),
                    ]
                } else {
                    vec![
                        ConvSpec::new(&c(1).0, &c(1).1, inplanes, planes, 3, stride, 1),
                        ConvSpec::new(&c(2).0, &c(2).1, planes, planes, 3, 1, 1),
                    ]
                };
                let out = planes * expansion;
                let downsample = (stride != 1 || inplanes != out).then(|| {
                    ConvSpec::new(
                        &format!("{p}.downsample.0"),
                        &format!("{p}.downsample.1"),
                        inplanes,
                        out,
                        1,
                        stride,
                        0,
                    )
                });
                blocks.push(BlockPlan { convs, downsample });
                inplanes = out;
            }
        }
        Plan { stem, blocks }
    }

    /// Every parameter and buffer torchvision saves (except `num_batches_tracked`), with shapes.
    pub fn param_shapes(self) -> Vec<(String, Vec<usize>)> {
        let plan = self.plan();
        let mut out = Vec::new();
        for c in plan.convs() {
            out.push((format!("{}.weight", c.conv), vec![c.cout, c.cin, c.k, c.k]));
            for p in ["weight", "bias", "running_mean", "running_var"] {
                out.push((format!("{}.{p}", c.bn), vec![c.cout]));
            }
        }
        let d = self.feature_dim();
        out.push(("fc.weight".into(), vec![1000, d]));
        out.push(("fc.bias".into(), vec![1000]));
        out
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = match self {
            Arch::ResNet18 => 18,
            Arch::ResNet34 => 34,
            Arch::ResNet50 => 50,
            Arch::ResNet101 => 101,
            Arch::ResNet152 => 152,
        };
        write!(f, "resnet{n}")
    }
}

impl std::str::FromStr for Arch {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim().to_ascii_lowercase();
        Arch::ALL
            .into_iter()
            .find(|a| a.to_string() == s)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "unknown architecture {s:?} (expected resnet18, resnet34, resnet50, resnet101 or resnet152)"
                ))
            })
    }
}

/// One convolution and the BatchNorm after it, by their torchvision names.
#[derive(Debug, Clone)]
pub struct ConvSpec {
    /// The convolution's name (`layer1.0.conv1`).
    pub conv: String,
    /// The BatchNorm's name (`layer1.0.bn1`).
    pub bn: String,
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Kernel size (square).
    pub k: usize,
    /// Stride, pixels.
    pub stride: usize,
    /// Zero padding on each side, pixels.
    pub pad: usize,
}

impl ConvSpec {
    fn new(conv: &str, bn: &str, cin: usize, cout: usize, k: usize, s: usize, p: usize) -> Self {
        Self {
            conv: conv.into(),
            bn: bn.into(),
            cin,
            cout,
            k,
            stride: s,
            pad: p,
        }
    }
}

/// A residual block: its main-path convolutions and the optional projection shortcut.
#[derive(Debug, Clone)]
pub struct BlockPlan {
    /// The main path, in order (two for a basic block, three for a bottleneck).
    pub convs: Vec<ConvSpec>,
    /// The 1×1 projection shortcut (`downsample.0` / `downsample.1`), when the shape changes.
    pub downsample: Option<ConvSpec>,
}

/// The whole network up to the global pool.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The 7×7 stride-2 `conv1` / `bn1`.
    pub stem: ConvSpec,
    /// The residual blocks of `layer1` to `layer4`, in order.
    pub blocks: Vec<BlockPlan>,
}

impl Plan {
    /// Every convolution, in torchvision's parameter order.
    pub fn convs(&self) -> impl Iterator<Item = &ConvSpec> {
        std::iter::once(&self.stem).chain(
            self.blocks
                .iter()
                .flat_map(|b| b.convs.iter().chain(b.downsample.iter())),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_counts_match_torchvision() {
        // torchvision state_dict sizes without num_batches_tracked: 102 (18), 267 (50).
        assert_eq!(Arch::ResNet18.param_shapes().len(), 102);
        assert_eq!(Arch::ResNet50.param_shapes().len(), 267);
        let total: usize = Arch::ResNet50
            .param_shapes()
            .iter()
            .filter(|(n, _)| !n.contains("running"))
            .map(|(_, s)| s.iter().product::<usize>())
            .sum();
        assert_eq!(total, 25_557_032); // torchvision resnet50 parameter count
        let names: Vec<_> = Arch::ResNet50
            .param_shapes()
            .into_iter()
            .map(|p| p.0)
            .collect();
        assert!(names.contains(&"layer1.0.downsample.0.weight".to_string()));
        assert!(names.contains(&"layer4.2.bn3.running_var".to_string()));
    }

    #[test]
    fn arch_round_trips_through_strings() {
        for a in Arch::ALL {
            assert_eq!(a.to_string().parse::<Arch>().unwrap(), a);
        }
        assert!("resnet51".parse::<Arch>().is_err());
        assert_eq!(Arch::ResNet34.feature_dim(), 512);
        assert_eq!(Arch::ResNet101.feature_dim(), 2048);
    }
}
