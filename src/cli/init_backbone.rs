//! `captioner init-backbone`: writes a ResNet with torchvision's default random initialisation as
//! `.safetensors`, for tests, the demo, and anyone without the pretrained download.

use anyhow::Context;
use captioner::model::resnet::init::random_state_dict;
use captioner::model::resnet::Arch;
use captioner::model::weights::{save_safetensors, sha256_file};
use std::path::PathBuf;

/// Flags of `captioner init-backbone`.
///
/// The weights are random (kaiming-normal convolutions, identity BatchNorm, default Linear `fc`),
/// so captions trained on them describe colours and layout poorly; use torchvision's pretrained
/// files (`captioner fetch`) for real work.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// ResNet architecture.
    #[arg(long, default_value = "resnet50")]
    pub arch: Arch,
    /// Output file (`.safetensors`, torchvision parameter names).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Seed: the same seed and architecture give a byte-identical file.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let state = random_state_dict(args.arch, args.seed)?;
    save_safetensors(&args.out, &state)?;
    let params: usize = state.values().map(|t| t.elem_count()).sum();
    println!(
        "wrote {} ({} tensors, {:.1} M values, seed {}) to {} (sha256 {})",
        args.arch,
        state.len(),
        params as f64 / 1e6,
        args.seed,
        args.out.display(),
        sha256_file(&args.out)?
    );
    Ok(0)
}
