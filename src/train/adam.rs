//! Adam exactly as `torch.optim.Adam` (single-tensor path, no weight decay, no amsgrad), updating
//! parameters in place: candle_nn's AdamW allocates ~10 temporaries per parameter per step.

use crate::model::cpu_math::{f32_data, f32_data_mut};
use crate::{Error, Result};
use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, InplaceOp2, Layout, Tensor, Var};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;

/// Adam's hyper-parameters (the seed's: lr 1e-3, betas 0.9/0.999, eps 1e-8).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to the second moment's square root.
    pub eps: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

struct Slot {
    name: String,
    var: Var,
    m: Vec<f32>,
    v: Vec<f32>,
}

/// The optimiser: named parameters with their first and second moments and the step count.
pub struct Adam {
    cfg: AdamConfig,
    slots: Vec<Slot>,
    step: u64,
}

/// One in-place update of a parameter from its gradient (scalars computed in f64 as Python does).
struct Update<'a> {
    m: Mutex<&'a mut [f32]>,
    v: Mutex<&'a mut [f32]>,
    beta1: f32,
    beta2: f32,
    step_size: f32,
    bc2_sqrt: f32,
    eps: f32,
}

const CHUNK: usize = 1 << 14;

impl InplaceOp2 for Update<'_> {
    fn name(&self) -> &'static str {
        "adam-update"
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<()> {
        let p = f32_data_mut(dst, dst_l, "adam: parameter")?;
        let g = f32_data(gs, gl, "adam: gradient")?;
        let mut m = self
            .m
            .lock()
            .map_err(|_| candle_core::Error::msg("poisoned"))?;
        let mut v = self
            .v
            .lock()
            .map_err(|_| candle_core::Error::msg("poisoned"))?;
        if g.len() != p.len() || m.len() != p.len() || v.len() != p.len() {
            candle_core::bail!("adam: size mismatch");
        }
        let (b1, b2, ss, bc2, eps) = (
            self.beta1,
            self.beta2,
            self.step_size,
            self.bc2_sqrt,
            self.eps,
        );
        update(p, g, &mut m, &mut v, (b1, b2, ss, bc2, eps));
        Ok(())
    }
}

/// The update of one parameter, `(beta1, beta2, step size, √(bias correction 2), eps)`.
fn update(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], k: (f32, f32, f32, f32, f32)) {
    let (b1, b2, ss, bc2, eps) = k;
    p.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .for_each(|(((p, g), m), v)| {
            for i in 0..p.len() {
                let gi = g[i];
                // torch: exp_avg.lerp_(grad, 1 - beta1); exp_avg_sq.mul_(beta2).addcmul_(...)
                m[i] += (gi - m[i]) * (1.0 - b1);
                v[i] = v[i] * b2 + (1.0 - b2) * gi * gi;
                let denom = v[i].sqrt() / bc2 + eps;
                p[i] -= ss * (m[i] / denom);
            }
        });
}

/// Adam over plain buffers (the attention decoder's parameters, whose gradients come from its
/// hand-written backward pass rather than from candle's graph), with the same arithmetic as
/// [`Adam`].
pub struct BufferAdam {
    cfg: AdamConfig,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    step: u64,
}

impl BufferAdam {
    /// An optimiser for parameters of the given lengths.
    pub fn new(lengths: impl IntoIterator<Item = usize>, cfg: AdamConfig) -> Self {
        let m: Vec<Vec<f32>> = lengths.into_iter().map(|n| vec![0.0; n]).collect();
        Self {
            cfg,
            v: m.clone(),
            m,
            step: 0,
        }
    }

    /// Steps taken so far.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// The moments as tensors `m.<name>` and `v.<name>` (`names` in the parameters' order).
    pub fn state_tensors(&self, names: &[&str]) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::with_capacity(2 * self.m.len());
        for ((name, m), v) in names.iter().zip(&self.m).zip(&self.v) {
            let dev = &candle_core::Device::Cpu;
            out.push((format!("m.{name}"), Tensor::from_slice(m, m.len(), dev)?));
            out.push((format!("v.{name}"), Tensor::from_slice(v, v.len(), dev)?));
        }
        Ok(out)
    }

    /// Restores the moments and step count saved by [`BufferAdam::state_tensors`].
    pub fn load_state(
        &mut self,
        names: &[&str],
        map: &HashMap<String, Tensor>,
        step: u64,
    ) -> Result<()> {
        for ((name, m), v) in names.iter().zip(&mut self.m).zip(&mut self.v) {
            for (key, dst) in [("m", &mut *m), ("v", &mut *v)] {
                let full = format!("{key}.{name}");
                let t = map
                    .get(&full)
                    .ok_or_else(|| Error::Invalid(format!("optimizer state lacks {full}")))?;
                let data = t.flatten_all()?.to_vec1::<f32>()?;
                if data.len() != dst.len() {
                    return Err(Error::Invalid(format!(
                        "optimizer state {full}: wrong size"
                    )));
                }
                *dst = data;
            }
        }
        self.step = step;
        Ok(())
    }

    /// Applies one update of `params` from `grads` (one buffer each, in the same order).
    pub fn step(&mut self, params: &mut [Vec<f32>], grads: &[Vec<f32>]) -> Result<()> {
        if params.len() != self.m.len()
            || grads.len() != self.m.len()
            || params
                .iter()
                .zip(grads)
                .zip(&self.m)
                .any(|((p, g), m)| p.len() != m.len() || g.len() != m.len())
        {
            return Err(Error::Internal(
                "adam: parameters and gradients do not fit".into(),
            ));
        }
        self.step += 1;
        let t = self.step as f64;
        let c = self.cfg;
        let k = (
            c.beta1 as f32,
            c.beta2 as f32,
            (c.lr / (1.0 - c.beta1.powf(t))) as f32,
            (1.0 - c.beta2.powf(t)).sqrt() as f32,
            c.eps as f32,
        );
        for (((p, g), m), v) in params
            .iter_mut()
            .zip(grads)
            .zip(&mut self.m)
            .zip(&mut self.v)
        {
            update(p, g, m, v, k);
        }
        Ok(())
    }
}

impl Adam {
    /// An optimiser over `vars` (names are used to save and restore the moments).
    pub fn new(vars: Vec<(String, Var)>, cfg: AdamConfig) -> Result<Self> {
        let slots = vars
            .into_iter()
            .map(|(name, var)| {
                let n = var.elem_count();
                Slot {
                    name,
                    var,
                    m: vec![0.0; n],
                    v: vec![0.0; n],
                }
            })
            .collect();
        Ok(Self {
            cfg,
            slots,
            step: 0,
        })
    }

    /// Steps taken so far.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// The hyper-parameters.
    pub fn config(&self) -> AdamConfig {
        self.cfg
    }

    /// Applies one update from `grads`; a parameter without a gradient is left alone.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step += 1;
        let t = self.step as f64;
        let c = self.cfg;
        let bc1 = 1.0 - c.beta1.powf(t);
        let bc2 = 1.0 - c.beta2.powf(t);
        for slot in &mut self.slots {
            let Some(g) = grads.get(slot.var.as_tensor()) else {
                continue;
            };
            let g = g.contiguous()?;
            let op = Update {
                m: Mutex::new(&mut slot.m),
                v: Mutex::new(&mut slot.v),
                beta1: c.beta1 as f32,
                beta2: c.beta2 as f32,
                step_size: (c.lr / bc1) as f32,
                bc2_sqrt: bc2.sqrt() as f32,
                eps: c.eps as f32,
            };
            if slot.var.device().is_cpu() {
                slot.var.as_tensor().inplace_op2(&g, &op)?;
            } else {
                // Other devices: the same update on host copies (the moments live on the host).
                let cpu = candle_core::Device::Cpu;
                let p = slot.var.as_tensor().to_device(&cpu)?.copy()?;
                p.inplace_op2(&g.to_device(&cpu)?, &op)?;
                slot.var.set(&p.to_device(slot.var.device())?)?;
            }
        }
        Ok(())
    }

    /// The moments as tensors named `m.<param>` and `v.<param>`, for a checkpoint.
    pub fn state_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::with_capacity(2 * self.slots.len());
        for s in &self.slots {
            let shape = s.var.dims();
            let dev = s.var.device();
            out.push((
                format!("m.{}", s.name),
                Tensor::from_slice(&s.m, shape, dev)?,
            ));
            out.push((
                format!("v.{}", s.name),
                Tensor::from_slice(&s.v, shape, dev)?,
            ));
        }
        Ok(out)
    }

    /// Restores the moments and step count saved by [`Adam::state_tensors`].
    pub fn load_state(&mut self, map: &HashMap<String, Tensor>, step: u64) -> Result<()> {
        for s in &mut self.slots {
            for (key, dst) in [("m", &mut s.m), ("v", &mut s.v)] {
                let name = format!("{key}.{}", s.name);
                let t = map
                    .get(&name)
                    .ok_or_else(|| Error::Invalid(format!("optimizer state lacks {name}")))?;
                let data = t.flatten_all()?.to_vec1::<f32>()?;
                if data.len() != dst.len() {
                    return Err(Error::Invalid(format!(
                        "optimizer state {name}: wrong size"
                    )));
                }
                *dst = data;
            }
        }
        self.step = step;
        Ok(())
    }
}
