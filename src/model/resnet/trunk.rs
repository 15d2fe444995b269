//! The folded inference graph: eval BatchNorm folded into each convolution's weights and bias at
//! load, NHWC activations on the CPU so every convolution is one GEMM (1×1 stride-1 ones need no
//! im2col at all; 3×3 stride-1 ones by Winograd's algorithm, [`super::winograd`]), and a fused
//! bias + residual + ReLU epilogue. On other devices, or when asked,
//! the same folded weights run in NCHW through candle's `conv2d`. With [`Precision::Bf16`] the
//! NHWC convolutions multiply bf16 weights and activations with f32 accumulation
//! ([`crate::model::bf16`]); activations between layers, the epilogues and the pool stay f32.

use super::cpu_ops::{BiasAct, BiasResidualRelu, Im2Col, MaxPool};
use super::winograd::{self, After, LazyWinograd};
use super::{check_state_dict, Arch, ConvSpec};
use crate::model::bf16::{self, Activations, Kernel, PackedWeights};
use crate::model::cpu_math::with_data;
use crate::model::f32_panels::{self, product, F32Panels, Finish, Rows};
use crate::model::precision::Precision;
use crate::model::state_dict::TensorSource;
use crate::model::weights::open_state_dict;
use crate::Result;
use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;
use std::path::Path;

const BN_EPS: f64 = 1e-5;

/// Leading stages (the stem, then `layer1`) a bf16 trunk keeps in f32. A ResNet's early
/// rounding errors grow layer after layer: on a random ResNet-50 with recalibrated BatchNorm
/// statistics, bf16 everywhere gave per-image cosines down to 0.993 against f32 (PyTorch's bf16
/// autocast 0.994), the stem and `layer1` in f32 0.9996, at 1.9× f32's speed instead of 2.4×
/// (`bench precision`, docs/performance.md).
pub const F32_STAGES_IN_BF16: usize = 2;

/// Activation memory layout of the inference graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrunkLayout {
    /// Channels last, custom CPU kernels (the fastest on the CPU, measured by `bench encoder`).
    Nhwc,
    /// Channels first through candle's `conv2d` (any device).
    Nchw,
}

/// One convolution with its BatchNorm folded in.
#[derive(Debug, Clone)]
struct FoldedConv {
    /// 0 for the stem, 1 to 4 for `layer1` to `layer4`.
    stage: usize,
    k: usize,
    stride: usize,
    pad: usize,
    weight: ConvWeight,
    bias: Tensor,
    bias_host: Vec<f32>,
    /// The NHWC weight in bf16, packed, when the trunk runs in [`Precision::Bf16`].
    packed: Option<PackedWeights>,
    /// For a 3×3 stride-1 NHWC convolution: its weights in the Winograd domain, for the f32
    /// products.
    winograd: Option<LazyWinograd>,
}

/// A convolution's folded weight, in one copy.
#[derive(Debug, Clone)]
enum ConvWeight {
    /// NHWC: `[k·k·Cin, Cout]`, rows ordered (dy, dx, cin). NCHW: `[Cout, Cin, k, k]`.
    Tensor(Tensor),
    /// The NHWC `[k·k·Cin, Cout]` packed for [`f32_panels`], where products run there (AVX-512,
    /// `Cout` a multiple of 64): packed at load, so neither a second copy (+100 MB for
    /// ResNet-50) nor the packing is paid by the first image.
    Panels(F32Panels),
}

impl ConvWeight {
    /// The NHWC weight as a row-major host `[k·k·Cin, Cout]`, for the one-time conversions
    /// (bf16 packing, Winograd transform).
    fn nhwc_rows(&self) -> Result<Vec<f32>> {
        Ok(match self {
            Self::Tensor(t) => t.flatten_all()?.to_vec1::<f32>()?,
            Self::Panels(p) => p.unpack(),
        })
    }

    /// `(k·k·Cin, Cout)` of the NHWC weight.
    fn nhwc_dims(&self) -> Result<(usize, usize)> {
        Ok(match self {
            Self::Tensor(t) => t.dims2()?,
            Self::Panels(p) => (p.k(), p.n()),
        })
    }

    /// The tensor, for the products that take one (`gemm`, candle's `conv2d`).
    fn tensor(&self) -> Result<&Tensor> {
        match self {
            Self::Tensor(t) => Ok(t),
            Self::Panels(_) => Err(crate::Error::Internal(
                "a convolution packed for the f32 panel products has no tensor".into(),
            )),
        }
    }
}

/// What follows a convolution's bias.
enum Epilogue<'a> {
    Linear,
    Relu,
    ResidualRelu(&'a Tensor),
}

/// `w [Cout, Cin, k, k]` times `scale[co]` in f64, rounded once to f32, laid out for `layout`:
/// NHWC `[k·k·Cin, Cout]` (rows ordered dy, dx, ci) or NCHW as it was.
fn fold_weights<T: Copy + Into<f64> + Sync>(
    w: &[T],
    scale: &[f64],
    (cout, cin, k): (usize, usize, usize),
    layout: TrunkLayout,
) -> Vec<f32> {
    let kk = k * k;
    let mut folded = vec![0f32; cout * cin * kk];
    match layout {
        TrunkLayout::Nhwc => folded
            .par_chunks_mut(cout)
            .enumerate()
            .for_each(|(row, out)| {
                let (tap, ci) = (row / cin, row % cin);
                for (co, o) in out.iter_mut().enumerate() {
                    *o = (w[(co * cin + ci) * kk + tap].into() * scale[co]) as f32;
                }
            }),
        TrunkLayout::Nchw => folded
            .par_chunks_mut(cin * kk)
            .enumerate()
            .for_each(|(co, out)| {
                for (o, &x) in out.iter_mut().zip(&w[co * cin * kk..]) {
                    *o = (x.into() * scale[co]) as f32;
                }
            }),
    }
    folded
}

impl FoldedConv {
    fn fold(
        spec: &ConvSpec,
        sd: &dyn TensorSource,
        layout: TrunkLayout,
        dev: &Device,
    ) -> Result<Self> {
        // Each tensor is read when needed and dropped after folding (a mapped file's are
        // copied out one at a time).
        let get = |n: String| -> Result<Tensor> {
            sd.tensor(&n)?
                .ok_or_else(|| crate::Error::Invalid(format!("state_dict has no tensor {n}")))
        };
        let vec64 = |n: String| -> Result<Vec<f64>> {
            Ok(get(n)?
                .to_dtype(DType::F64)?
                .flatten_all()?
                .to_vec1::<f64>()?)
        };
        let w = get(format!("{}.weight", spec.conv))?;
        let gamma = vec64(format!("{}.weight", spec.bn))?;
        let beta = vec64(format!("{}.bias", spec.bn))?;
        let mean = vec64(format!("{}.running_mean", spec.bn))?;
        let var = vec64(format!("{}.running_var", spec.bn))?;
        let (cout, cin, k) = (spec.cout, spec.cin, spec.k);
        if [gamma.len(), beta.len(), mean.len(), var.len()] != [cout; 4]
            || w.dims() != [cout, cin, k, k]
        {
            return Err(crate::Error::Invalid(format!(
                "{}: weight {:?} and BatchNorm {} do not fit a {k}x{k} convolution {cin} -> {cout}",
                spec.conv,
                w.dims(),
                gamma.len()
            )));
        }
        // Folded in f64 so the only rounding is the final cast to f32: the same arithmetic as
        // scaling an f64 copy of the tensor, written in one pass straight into the layout the
        // trunk wants. (The tensor version allocated six times the weights' size, ~600 MB for
        // ResNet-50, all fresh pages: after a few idle seconds the VM faulted them in at 0.8 s
        // of system time per `caption`.)
        let scale: Vec<f64> = gamma
            .iter()
            .zip(&var)
            .map(|(g, v)| g / (v + BN_EPS).sqrt())
            .collect();
        let bias: Vec<f32> = beta
            .iter()
            .zip(&mean)
            .zip(&scale)
            .map(|((b, m), s)| (b - m * s) as f32)
            .collect();
        // f16/bf16/f32 weights widen to f32 exactly and are read in place; f64 ones as f64.
        let folded = if w.dtype() == DType::F64 {
            let v = w.flatten_all()?.to_vec1::<f64>()?; // copies to the host
            fold_weights(&v, &scale, (cout, cin, k), layout)
        } else {
            let w32 = w.to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
            crate::model::cpu_math::with_data(&w32, |d| {
                Ok(fold_weights(d, &scale, (cout, cin, k), layout))
            })?
        };
        let kk = k * k;
        let panels = (layout == TrunkLayout::Nhwc && dev.is_cpu() && f32_panels::pays())
            .then(|| F32Panels::pack(&folded, kk * cin, cout))
            .flatten();
        let weight = match (panels, layout) {
            (Some(p), _) => ConvWeight::Panels(p),
            (None, TrunkLayout::Nhwc) => ConvWeight::Tensor(
                Tensor::from_vec(folded, (kk * cin, cout), &Device::Cpu)?.to_device(dev)?,
            ),
            (None, TrunkLayout::Nchw) => ConvWeight::Tensor(
                Tensor::from_vec(folded, (cout, cin, k, k), &Device::Cpu)?.to_device(dev)?,
            ),
        };
        let bias = Tensor::from_vec(bias, cout, &Device::Cpu)?;
        let winograd = (layout == TrunkLayout::Nhwc && k == 3 && spec.stride == 1 && spec.pad == 1)
            .then(LazyWinograd::default);
        Ok(Self {
            stage: spec
                .conv
                .strip_prefix("layer")
                .and_then(|r| r.split('.').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
            k: spec.k,
            stride: spec.stride,
            pad: spec.pad,
            weight,
            bias_host: bias.to_vec1::<f32>()?,
            bias: bias.to_device(dev)?,
            packed: None,
            winograd,
        })
    }

    /// Packs the NHWC weight for `bf16` products (or drops the packed copy for f32).
    fn set_precision(&mut self, precision: Precision) -> Result<()> {
        self.packed = match precision {
            Precision::F32 => None,
            Precision::Bf16 => {
                let (k, n) = self.weight.nhwc_dims()?;
                Some(PackedWeights::pack(&self.weight.nhwc_rows()?, k, n)?)
            }
        };
        Ok(())
    }

    /// `[B, H, W, Cin]` → `[B, Ho, Wo, Cout]`, CPU only; in bf16 with `kernel` when the weight
    /// is packed.
    fn forward_nhwc(&self, x: &Tensor, epi: Epilogue, kernel: Option<Kernel>) -> Result<Tensor> {
        let (b, h, w, cin) = x.dims4()?;
        let ho = super::cpu_ops::out_size(h, self.k, self.stride, self.pad);
        let wo = super::cpu_ops::out_size(w, self.k, self.stride, self.pad);
        if let (Some(packed), Some(kernel)) = (&self.packed, kernel) {
            let y = self.product_bf16(x, packed, kernel, &epi)?;
            return Ok(y.reshape((b, ho, wo, packed.n()))?);
        }
        if let (Some(lazy), Some(tile)) = (&self.winograd, winograd::tile_for(h, w)) {
            let y = self.winograd_f32(x, lazy, tile, &epi)?;
            return Ok(Tensor::from_vec(
                y,
                (b, ho, wo, self.bias_host.len()),
                x.device(),
            )?);
        }
        let a = if self.k == 1 && self.stride == 1 {
            x.reshape((b * h * w, cin))?
        } else {
            x.apply_op1_no_bwd(&Im2Col {
                k: self.k,
                stride: self.stride,
                pad: self.pad,
            })?
        };
        if let ConvWeight::Panels(panels) = &self.weight {
            let y = self.product_on_panels(&a, panels, &epi)?;
            return Ok(Tensor::from_vec(y, (b, ho, wo, panels.n()), x.device())?);
        }
        let y = crate::model::cpu_math::matmul_fresh(&a, self.weight.tensor()?)?;
        let bias = &self.bias_host;
        match epi {
            Epilogue::Linear => y.inplace_op1(&BiasAct { bias, relu: false })?,
            Epilogue::Relu => y.inplace_op1(&BiasAct { bias, relu: true })?,
            Epilogue::ResidualRelu(r) => y.inplace_op2(r, &BiasResidualRelu { bias })?,
        }
        Ok(y.reshape((b, ho, wo, bias.len()))?)
    }

    /// `relu?(a · weight + bias + residual?)` on [`f32_panels`], `a` the im2col rows (or the
    /// input itself for a 1×1 stride-1 convolution), the epilogue applied as each block is stored.
    fn product_on_panels(
        &self,
        a: &Tensor,
        panels: &F32Panels,
        epi: &Epilogue,
    ) -> Result<Vec<f32>> {
        let (m, k) = a.dims2()?;
        Ok(with_data(a, |data| {
            let rows = Rows { data, m, k, rs: k };
            let (bias, relu) = (&self.bias_host[..], !matches!(epi, Epilogue::Linear));
            let run = |residual: Option<&[f32]>| {
                product(
                    rows,
                    panels,
                    Some(Finish {
                        bias,
                        residual,
                        relu,
                    }),
                )
            };
            match epi {
                Epilogue::ResidualRelu(r) => with_data(r, |res| Ok(run(Some(res)))),
                _ => Ok(run(None)),
            }
        })?)
    }

    /// The 3×3 stride-1 convolution by Winograd's algorithm with `tile`, as NHWC values.
    fn winograd_f32(
        &self,
        x: &Tensor,
        lazy: &LazyWinograd,
        tile: winograd::Tile,
        epi: &Epilogue,
    ) -> Result<Vec<f32>> {
        let dims = x.dims4()?;
        let bias = &self.bias_host;
        let cout = bias.len();
        let wg = lazy.get(tile, dims.3, cout, || self.weight.nhwc_rows())?;
        Ok(with_data(x, |xs| match epi {
            Epilogue::Linear => Ok(winograd::conv3x3(xs, dims, wg, bias, After::Linear)),
            Epilogue::Relu => Ok(winograd::conv3x3(xs, dims, wg, bias, After::Relu)),
            Epilogue::ResidualRelu(r) => with_data(r, |rs| {
                Ok(winograd::conv3x3(
                    xs,
                    dims,
                    wg,
                    bias,
                    After::ResidualRelu(rs),
                ))
            }),
        })?)
    }

    /// The convolution `[B·Ho·Wo, Cout]` in bf16: im2col (or, for 1×1 stride-1, the input
    /// itself) rounded to bf16, times the packed weight, accumulated in f32, with the bias,
    /// residual and ReLU applied to each block as it is computed.
    fn product_bf16(
        &self,
        x: &Tensor,
        packed: &PackedWeights,
        kernel: Kernel,
        epi: &Epilogue,
    ) -> Result<Tensor> {
        let dims = x.dims4()?;
        let (b, h, w, cin) = dims;
        let a = crate::model::cpu_math::with_data(x, |xs| {
            Ok(if self.k == 1 && self.stride == 1 {
                Activations::from_rows(xs, b * h * w, cin)
            } else {
                Activations::im2col(xs, dims, self.k, self.stride, self.pad)
            })
        })??;
        let relu = !matches!(epi, Epilogue::Linear);
        let product = |residual: Option<&[f32]>| {
            let e = bf16::Epilogue {
                bias: &self.bias_host,
                residual,
                relu,
            };
            bf16::matmul_then(kernel, &a, packed, Some(e))
        };
        let y = match epi {
            Epilogue::ResidualRelu(r) => {
                crate::model::cpu_math::with_data(r, |res| Ok(product(Some(res))))??
            }
            _ => product(None)?,
        };
        Ok(Tensor::from_vec(y, (a.m(), packed.n()), x.device())?)
    }

    /// `[B, Cin, H, W]` → `[B, Cout, Ho, Wo]`, any device.
    fn forward_nchw(&self, x: &Tensor, epi: Epilogue) -> Result<Tensor> {
        let (b, cin, h, w) = x.dims4()?;
        let cout = self.bias_host.len();
        let y = if self.k == 1 && self.stride == 1 {
            let w2 = self.weight.tensor()?.reshape((cout, cin))?;
            w2.broadcast_matmul(&x.reshape((b, cin, h * w))?)?
                .reshape((b, cout, h, w))?
        } else {
            x.conv2d(self.weight.tensor()?, self.pad, self.stride, 1, 1)?
        };
        let y = y.broadcast_add(&self.bias.reshape((1, cout, 1, 1))?)?;
        Ok(match epi {
            Epilogue::Linear => y,
            Epilogue::Relu => y.relu()?,
            Epilogue::ResidualRelu(r) => (y + r)?.relu()?,
        })
    }
}

#[derive(Debug, Clone)]
struct FoldedBlock {
    convs: Vec<FoldedConv>,
    downsample: Option<FoldedConv>,
}

/// A frozen ResNet up to the global pool, BatchNorm folded, ready for fast batched inference.
#[derive(Debug, Clone)]
pub struct ResNetTrunk {
    arch: Arch,
    layout: TrunkLayout,
    precision: Precision,
    /// The bf16 kernel, chosen when the precision is set to bf16.
    kernel: Option<Kernel>,
    stem: FoldedConv,
    blocks: Vec<FoldedBlock>,
    device: Device,
}

impl ResNetTrunk {
    /// Loads a `.pth` or `.safetensors` file, checks it is `arch`, and folds it.
    /// A `.safetensors` file is mapped, not read whole, and its tensors are copied out one at a
    /// time as they are folded (see [`crate::model::state_dict`]).
    pub fn load(path: &Path, arch: Arch, device: &Device) -> Result<Self> {
        let file = open_state_dict(path)?;
        check_state_dict(path, arch, file.source())?;
        Self::from_state_dict(arch, file.source(), device)
    }

    /// Folds an in-memory state_dict (torchvision names) in the best layout for `device`.
    pub fn from_state_dict(arch: Arch, sd: &dyn TensorSource, device: &Device) -> Result<Self> {
        let layout = if device.is_cpu() {
            TrunkLayout::Nhwc
        } else {
            TrunkLayout::Nchw
        };
        Self::with_layout(arch, sd, device, layout)
    }

    /// Like [`Self::from_state_dict`] with an explicit layout (NHWC needs the CPU).
    pub fn with_layout(
        arch: Arch,
        sd: &dyn TensorSource,
        device: &Device,
        layout: TrunkLayout,
    ) -> Result<Self> {
        if layout == TrunkLayout::Nhwc && !device.is_cpu() {
            return Err(crate::Error::Internal(
                "the NHWC trunk runs on the CPU only".into(),
            ));
        }
        let plan = arch.plan();
        let fold = |s: &ConvSpec| FoldedConv::fold(s, sd, layout, device);
        let blocks = plan
            .blocks
            .iter()
            .map(|b| {
                Ok(FoldedBlock {
                    convs: b.convs.iter().map(fold).collect::<Result<_>>()?,
                    downsample: b.downsample.as_ref().map(fold).transpose()?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            arch,
            layout,
            precision: Precision::F32,
            kernel: None,
            stem: fold(&plan.stem)?,
            blocks,
            device: device.clone(),
        })
    }

    /// The architecture.
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// The activation layout it runs in.
    pub fn layout(&self) -> TrunkLayout {
        self.layout
    }

    /// The arithmetic of its convolutions ([`Precision::F32`] unless [`Self::with_precision`]).
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The bf16 kernel in use (`None` in f32).
    pub fn bf16_kernel(&self) -> Option<Kernel> {
        self.kernel
    }

    /// The same trunk computing in `precision`. bf16 needs the NHWC (CPU) layout and a CPU with
    /// AMX-BF16 or AVX512-BF16; otherwise an [`crate::Error::Invalid`] says why. In bf16 the stem
    /// and `layer1` stay f32 ([`F32_STAGES_IN_BF16`]).
    pub fn with_precision(self, precision: Precision) -> Result<Self> {
        self.with_precision_from(precision, F32_STAGES_IN_BF16)
    }

    /// [`Self::with_precision`] with the first `f32_stages` stages (0: none; 1: the stem; 2: the
    /// stem and `layer1`; ...) kept in f32 when `precision` is bf16.
    pub fn with_precision_from(mut self, precision: Precision, f32_stages: usize) -> Result<Self> {
        self.kernel = match precision {
            Precision::F32 => None,
            Precision::Bf16 if self.layout != TrunkLayout::Nhwc => {
                return Err(crate::Error::Invalid(
                    "precision bf16 runs on the CPU only (the device here is not the CPU)".into(),
                ))
            }
            Precision::Bf16 => Some(bf16::kernel()?),
        };
        for c in self.convs_mut() {
            let p = if c.stage < f32_stages {
                Precision::F32
            } else {
                precision
            };
            c.set_precision(p)?;
        }
        self.precision = precision;
        Ok(self)
    }

    fn convs_mut(&mut self) -> impl Iterator<Item = &mut FoldedConv> {
        std::iter::once(&mut self.stem).chain(
            self.blocks
                .iter_mut()
                .flat_map(|b| b.convs.iter_mut().chain(b.downsample.iter_mut())),
        )
    }

    /// The device its weights are on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Length of the feature [`Self::forward`] returns (512 or 2048).
    pub fn feature_dim(&self) -> usize {
        self.arch.feature_dim()
    }

    /// Pooled features `[B, D]` of normalised images `[B, 3, H, W]` (f32): the mean of
    /// [`Self::forward_map`] over its cells.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let map = self.forward_map(x)?;
        let (b, h, w, d) = map.dims4()?;
        Ok(map.reshape((b, h * w, d))?.mean(1)?)
    }

    /// The last feature map before the pool, `[B, h, w, D]` (7×7 cells for a 224×224 image),
    /// for the attention decoder.
    pub fn forward_map(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.to_dtype(DType::F32)?.to_device(&self.device)?;
        match self.layout {
            TrunkLayout::Nhwc => crate::pool::in_pool(|| self.forward_nhwc(&x)),
            TrunkLayout::Nchw => self.forward_nchw(&x),
        }
    }

    fn forward_nhwc(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.permute((0, 2, 3, 1))?.contiguous()?;
        let kernel = self.kernel;
        let x = self.stem.forward_nhwc(&x, Epilogue::Relu, kernel)?;
        let mut x = x.apply_op1_no_bwd(&MaxPool {
            k: 3,
            stride: 2,
            pad: 1,
        })?;
        for b in &self.blocks {
            let shortcut = match &b.downsample {
                Some(d) => d.forward_nhwc(&x, Epilogue::Linear, kernel)?,
                None => x.clone(),
            };
            let mut y = x;
            let n = b.convs.len();
            for c in &b.convs[..n - 1] {
                y = c.forward_nhwc(&y, Epilogue::Relu, kernel)?;
            }
            x = b.convs[n - 1].forward_nhwc(&y, Epilogue::ResidualRelu(&shortcut), kernel)?;
        }
        Ok(x)
    }

    fn forward_nchw(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.stem.forward_nchw(x, Epilogue::Relu)?;
        // Zero padding is exact after the ReLU (see `ResNet::features_t`).
        let mut x = x
            .pad_with_zeros(2, 1, 1)?
            .pad_with_zeros(3, 1, 1)?
            .max_pool2d_with_stride(3, 2)?;
        for b in &self.blocks {
            let shortcut = match &b.downsample {
                Some(d) => d.forward_nchw(&x, Epilogue::Linear)?,
                None => x.clone(),
            };
            let mut y = x;
            let n = b.convs.len();
            for c in &b.convs[..n - 1] {
                y = c.forward_nchw(&y, Epilogue::Relu)?;
            }
            x = b.convs[n - 1].forward_nchw(&y, Epilogue::ResidualRelu(&shortcut))?;
        }
        Ok(x.permute((0, 2, 3, 1))?.contiguous()?)
    }
}
