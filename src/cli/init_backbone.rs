//! `captioner init-backbone`: writes a ResNet with torchvision's default random initialisation as
//! `.safetensors`, for tests, the demo, and anyone without the pretrained download.

use anyhow::Context;
use captioner::model::resnet::calibrate::recalibrate_batchnorm;
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
    /// Recompute every BatchNorm's running statistics on the images of this folder (its first
    /// `--calibrate-images` by name, at 224×224), so the random network's features tell images
    /// apart (with the init's identity statistics they barely do).
    #[arg(long, value_name = "DIR")]
    pub calibrate: Option<PathBuf>,
    /// Images of `--calibrate` used.
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u64).range(2..=1024))]
    pub calibrate_images: u64,
}

/// The first `n` images (by file name, recursively) of `dir`, preprocessed as `[n, 3, 224, 224]`.
fn calibration_images(dir: &std::path::Path, n: usize) -> anyhow::Result<candle_core::Tensor> {
    let files = super::data_args::first_images("--calibrate", dir, n, 2)?;
    super::data_args::image_batch(&files)
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut state = random_state_dict(args.arch, args.seed)?;
    if let Some(dir) = &args.calibrate {
        let images = calibration_images(dir, args.calibrate_images as usize)?;
        recalibrate_batchnorm(args.arch, &mut state, &images)?;
        eprintln!(
            "BatchNorm statistics recomputed on {} images of {}",
            images.dim(0)?,
            dir.display()
        );
    }
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
