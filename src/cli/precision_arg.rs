//! `--precision f32|bf16` of `features`, `caption`, `eval` and `serve`, checked before any work
//! starts: bf16 on a CPU without AMX-BF16 or AVX512-BF16 is a usage error (exit 2).

use captioner::model::{bf16, Precision};

/// The flag.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct PrecisionArg {
    /// Arithmetic of the ResNet's convolutions: f32 (the default) or bf16 (bf16 weights and
    /// activations, f32 accumulation: ~2× faster where the CPU has AMX-BF16 or AVX512-BF16;
    /// features within cosine 0.999 of f32, see docs/performance.md).
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
