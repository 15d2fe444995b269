//! The arithmetic the trunk's convolutions run in: f32 (the default, everywhere) or bf16 weights
//! and activations with f32 accumulation, opt-in where the CPU multiplies bf16 natively.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Number format of the trunk's matrix products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 weights, activations and accumulation (any device).
    #[default]
    F32,
    /// bf16 weights and activations, f32 accumulation, on a CPU with AMX-BF16 or AVX512-BF16
    /// ([`crate::model::bf16::kernel`]).
    Bf16,
}

impl Precision {
    /// Whether this is [`Precision::F32`] (serde skips the default in cache keys).
    pub fn is_f32(&self) -> bool {
        *self == Precision::F32
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        })
    }
}

impl FromStr for Precision {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "fp32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            _ => Err(Error::Invalid(format!(
                "unknown precision {s:?}: f32 or bf16"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_both_precisions() {
        assert_eq!("bf16".parse::<Precision>().unwrap(), Precision::Bf16);
        assert_eq!("FP32".parse::<Precision>().unwrap(), Precision::F32);
        assert_eq!(Precision::Bf16.to_string(), "bf16");
        assert!("f16".parse::<Precision>().is_err());
        assert_eq!(serde_json::to_string(&Precision::Bf16).unwrap(), "\"bf16\"");
    }
}
