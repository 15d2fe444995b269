//! Which device the tensors live on: the CPU, or the first CUDA GPU when the crate is built with the
//! `cuda` feature and one is present.

use candle_core::Device;

/// The device every command computes on.
pub fn default_device() -> Device {
    #[cfg(feature = "cuda")]
    {
        if let Ok(d) = Device::new_cuda(0) {
            return d;
        }
    }
    Device::Cpu
}
