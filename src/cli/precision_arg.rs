//! `--precision f32|bf16` of `features`, `caption`, `eval` and `serve`, checked before any work
//! starts: bf16 on a CPU without AMX-BF16 or AVX512-BF16 is a usage error (exit 2).

use captioner::model::{bf16, Precision};

/// The flag.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct PrecisionArg {
    /// Arithmetic of the ResNet's convolutions: f32 (the default) or bf16 (from layer2 on bf16
    /// weights and activations, f32 accumulation; needs AMX-BF16 or AVX512-BF16: with AMX ~1.9×
    /// f32's speed, features within cosine 0.9995 of f32; see docs/performance.md).
    #[arg(long, value_name = "P", default_value = "f32")]
    pub precision: Precision,
}

impl PrecisionArg {
    /// The precision, once this CPU is known to run it.
    pub fn checked(&self) -> captioner::Result<Precision> {
        if self.precision == Precision::Bf16 {
            bf16::kernel()?;
        }
        Ok(self.precision)
    }
}
