//! Hand-written CPU kernels for the NHWC inference graph: im2col (so a convolution is one GEMM
//! whose output is already NHWC, with no transposes), 3×3/2 max-pool, and an in-place
//! bias + residual + ReLU epilogue (one pass over the GEMM output instead of three).
//! Hand-written because candle has no NHWC convolution and its elementwise ops each take a pass.

use crate::model::cpu_math::{f32_data, f32_data_mut};
use candle_core::{bail, CpuStorage, InplaceOp1, InplaceOp2, Layout, Result, Shape};
use rayon::prelude::*;

/// Output size of a convolution or pool along one axis.
pub fn out_size(n: usize, k: usize, stride: usize, pad: usize) -> usize {
    (n + 2 * pad - k) / stride + 1
}

/// `[B, H, W, C]` → `[B·Ho·Wo, k·k·C]`, columns ordered (dy, dx, c), zero padding.
pub struct Im2Col {
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl candle_core::CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "im2col-nhwc"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, h, w, c) = l.shape().dims4()?;
        let x = f32_data(s, l, "im2col: input")?;
        let (k, st, p) = (self.k, self.stride, self.pad);
        let (ho, wo) = (out_size(h, k, st, p), out_size(w, k, st, p));
        let row = k * k * c;
        let len = b * ho * wo * row;
        // Every element is written below (the taps that fall in the padding get explicit zeros),
        // so the buffer starts uninitialised: a zero-filled one cost a memset of ~58 MB per
        // batch-1 ResNet-50 image (`bench encoder`, see docs/performance.md).
        let mut out: Vec<f32> = Vec::with_capacity(len);
        // One output image row per task: large enough to amortise, many enough to balance.
        out.spare_capacity_mut()[..len]
            .par_chunks_mut(wo * row)
            .enumerate()
            .for_each(|(bo, chunk)| {
                let (bi, oy) = (bo / ho, bo % ho);
                let img = &x[bi * h * w * c..(bi + 1) * h * w * c];
                for ox in 0..wo {
                    let dst = &mut chunk[ox * row..(ox + 1) * row];
                    // The taps of one kernel row that fall inside the image are adjacent in NHWC
                    // memory (`k · c` values: 21 for the stem's 7 taps of 3 channels), so each
                    // kernel row is one copy and the padding taps on either side are zeros. Taps
                    // one at a time made the batch-1 stem's im2col cost as much as its product.
                    let (x0, dx_lo, dx_hi) = taps_inside(ox, st, p, k, w);
                    for dy in 0..k {
                        let iy = (oy * st + dy) as isize - p as isize;
                        let d = &mut dst[dy * k * c..(dy + 1) * k * c];
                        if iy < 0 || iy >= h as isize || dx_lo >= dx_hi {
                            d.iter_mut().for_each(|o| {
                                o.write(0.0);
                            });
                            continue;
                        }
                        let at = ((iy as usize) * w) as isize + x0;
                        let src = &img[(at + dx_lo as isize) as usize * c
                            ..(at + dx_hi as isize) as usize * c];
                        let (before, rest) = d.split_at_mut(dx_lo * c);
                        let (inside, after) = rest.split_at_mut((dx_hi - dx_lo) * c);
                        before.iter_mut().chain(after.iter_mut()).for_each(|o| {
                            o.write(0.0);
                        });
                        for (o, &v) in inside.iter_mut().zip(src) {
                            o.write(v);
                        }
                    }
                }
            });
        // SAFETY: the chunks of `wo * row` elements cover `0..len` exactly (`len` is
        // `b * ho` of them), and in each chunk every `(ox, dy, dx)` writes all `c` values of its
        // slot, so all `len` elements are initialised.
        unsafe { out.set_len(len) };
        Ok((CpuStorage::F32(out), Shape::from((b * ho * wo, row))))
    }
}

/// For output column `ox` of a `k`-wide kernel at `stride` with `pad` over rows of `w` pixels:
/// the input column of tap 0 (negative in the padding) and the taps `lo..hi` that fall inside the
/// row (`lo >= hi` when none does). Those taps are adjacent in NHWC memory, one copy.
pub(crate) fn taps_inside(
    ox: usize,
    stride: usize,
    pad: usize,
    k: usize,
    w: usize,
) -> (isize, usize, usize) {
    let x0 = (ox * stride) as isize - pad as isize;
    let lo = (-x0).clamp(0, k as isize) as usize;
    let hi = (w as isize - x0).clamp(0, k as isize) as usize;
    (x0, lo, hi)
}

/// Max-pool over NHWC with zero padding (exact after a ReLU, see `ResNet::features_t`).
pub struct MaxPool {
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl candle_core::CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "maxpool-nhwc"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, h, w, c) = l.shape().dims4()?;
        let x = f32_data(s, l, "max-pool: input")?;
        let (k, st, p) = (self.k, self.stride, self.pad);
        let (ho, wo) = (out_size(h, k, st, p), out_size(w, k, st, p));
        let mut out = vec![0f32; b * ho * wo * c];
        out.par_chunks_mut(wo * c)
            .enumerate()
            .for_each(|(bo, chunk)| {
                let (bi, oy) = (bo / ho, bo % ho);
                let img = &x[bi * h * w * c..(bi + 1) * h * w * c];
                for ox in 0..wo {
                    let dst = &mut chunk[ox * c..(ox + 1) * c];
                    // Zero start = zero padding; inputs are post-ReLU.
                    for dy in 0..k {
                        let iy = (oy * st + dy) as isize - p as isize;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        for dx in 0..k {
                            let ix = (ox * st + dx) as isize - p as isize;
                            if ix < 0 || ix >= w as isize {
                                continue;
                            }
                            let src = &img[((iy as usize) * w + ix as usize) * c..][..c];
                            // Not `f32::max`: its NaN rule costs two more instructions per
                            // value, and no NaN gets here (the ReLU before maps NaN to 0).
                            for (d, &v) in dst.iter_mut().zip(src) {
                                let m = *d;
                                *d = if v > m { v } else { m };
                            }
                        }
                    }
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((b, ho, wo, c))))
    }
}

/// `y = relu?(y + bias)` in place over rows of `bias.len()` channels.
pub struct BiasAct<'a> {
    pub bias: &'a [f32],
    pub relu: bool,
}

/// The rows of `c` channels of an in-place op's destination.
fn rows_mut<'a>(s: &'a mut CpuStorage, l: &Layout, c: usize) -> Result<&'a mut [f32]> {
    let y = f32_data_mut(s, l, "bias epilogue: output")?;
    if y.len() % c != 0 {
        bail!("length {} is not a multiple of {c} channels", y.len())
    }
    Ok(y)
}

const ROWS_PER_TASK: usize = 64;

impl InplaceOp1 for BiasAct<'_> {
    fn name(&self) -> &'static str {
        "bias-act"
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> Result<()> {
        let c = self.bias.len();
        let y = rows_mut(s, l, c)?;
        y.par_chunks_mut(c * ROWS_PER_TASK).for_each(|rows| {
            for row in rows.chunks_mut(c) {
                for (v, b) in row.iter_mut().zip(self.bias) {
                    let t = *v + b;
                    *v = if self.relu { t.max(0.0) } else { t };
                }
            }
        });
        Ok(())
    }
}

/// `y = relu(y + bias + residual)` in place: the end of every residual block.
pub struct BiasResidualRelu<'a> {
    pub bias: &'a [f32],
}

impl InplaceOp2 for BiasResidualRelu<'_> {
    fn name(&self) -> &'static str {
        "bias-residual-relu"
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        s: &CpuStorage,
        l: &Layout,
    ) -> Result<()> {
        let c = self.bias.len();
        let r = f32_data(s, l, "bias-residual-relu: residual")?;
        let y = rows_mut(dst, dst_l, c)?;
        if r.len() != y.len() {
            bail!("residual has {} values, output {}", r.len(), y.len())
        }
        y.par_chunks_mut(c * ROWS_PER_TASK)
            .zip(r.par_chunks(c * ROWS_PER_TASK))
            .for_each(|(ys, rs)| {
                for (yrow, rrow) in ys.chunks_mut(c).zip(rs.chunks(c)) {
                    for ((v, b), r) in yrow.iter_mut().zip(self.bias).zip(rrow) {
                        *v = (*v + b + r).max(0.0);
                    }
                }
            });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    /// im2col followed by a product is candle's own `conv2d`, for the stem's shape (3 channels,
    /// 7 taps, stride 2, padding 3) and for maps narrower than the kernel, where a kernel row has
    /// no tap inside the image.
    #[test]
    fn im2col_then_product_is_candles_conv2d() {
        let dev = Device::Cpu;
        for &(b, h, w, c, k, stride, pad, cout) in &[
            (2, 11, 9, 3, 7, 2, 3, 5),
            (1, 3, 2, 3, 7, 2, 3, 4),
            (1, 8, 6, 16, 3, 2, 1, 8),
            (2, 5, 7, 4, 3, 1, 1, 3),
            (1, 4, 4, 8, 1, 2, 0, 6),
        ] {
            let x = Tensor::randn(0f32, 1.0, (b, h, w, c), &dev).unwrap();
            let wt = Tensor::randn(0f32, 1.0, (cout, c, k, k), &dev).unwrap();
            let want = x
                .permute((0, 3, 1, 2))
                .unwrap()
                .conv2d(&wt, pad, stride, 1, 1)
                .unwrap()
                .permute((0, 2, 3, 1))
                .unwrap()
                .flatten_all()
                .unwrap();
            let cols = x.apply_op1_no_bwd(&Im2Col { k, stride, pad }).unwrap();
            // [Cout, Cin, k, k] → [k, k, Cin, Cout] rows, the order of an im2col row.
            let w_rows = wt
                .permute((2, 3, 1, 0))
                .unwrap()
                .reshape((k * k * c, cout))
                .unwrap();
            let got = cols.matmul(&w_rows).unwrap().flatten_all().unwrap();
            assert_eq!(got.dims(), want.dims(), "{h}x{w}x{c} k{k} s{stride}");
            let d = (got - want).unwrap().abs().unwrap().max_all().unwrap();
            let d = d.to_scalar::<f32>().unwrap();
            assert!(d < 1e-4, "{h}x{w}x{c} k{k} s{stride}: {d}");
        }
    }
}
