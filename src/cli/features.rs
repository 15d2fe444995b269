//! `captioner features`: the ResNet feature of every image of a corpus, computed once into a cache
//! (resumable: rerun after a kill and it continues).

use super::data_args::parse_layout;
use super::progress::Bars;
use anyhow::Context;
use captioner::data::{CaptionCorpus, Layout, LoadOptions};
use captioner::features::{extract, ExtractOptions, FeatureCache, SHARD_IMAGES};
use captioner::model::resnet::Arch;
use std::path::PathBuf;

/// Flags of `captioner features`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Corpus directory (any layout `inspect` reads).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Layout to read instead of detecting it.
    #[arg(long, value_name = "kaggle|token|karpathy", value_parser = parse_layout)]
    pub format: Option<Layout>,
    /// torchvision ResNet weights (`.pth` or `.safetensors`).
    #[arg(long, value_name = "FILE")]
    pub backbone: PathBuf,
    /// Cache directory (features.safetensors + images.json + cache.json).
    #[arg(long, value_name = "DIR")]
    pub cache: PathBuf,
    /// ResNet architecture of the backbone.
    #[arg(long, default_value = "resnet50")]
    pub arch: Arch,
    /// Images per forward pass.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Store the features as f16 (half the disk and memory).
    #[arg(long)]
    pub half: bool,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Images per resumable shard (tests make it small to kill a run between shards).
    #[arg(long, hide = true, default_value_t = SHARD_IMAGES)]
    pub shard_images: usize,
    /// Resize images to this square side (the seed and every pretrained recipe: 224).
    #[arg(long, default_value_t = captioner::vision::IMAGE_SIZE, value_parser = parse_image_size)]
    pub image_size: usize,
}

/// `--image-size` of `features` and `train`: a side from 32 to 1024 pixels.
pub fn parse_image_size(s: &str) -> Result<usize, String> {
    let side: usize = s
        .parse()
        .map_err(|_| format!("{s:?} is not a whole number of pixels"))?;
    if (32..=1024).contains(&side) {
        Ok(side)
    } else {
        Err(format!("must be between 32 and 1024, not {side}"))
    }
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let corpus = CaptionCorpus::load(
        &args.data,
        &LoadOptions {
            format: args.format,
            strict: false,
        },
    )
    .with_context(|| format!("cannot load the corpus in {}", args.data.display()))?;
    let opts = ExtractOptions {
        arch: args.arch,
        batch_size: args.batch_size,
        half: args.half,
        shard_images: args.shard_images,
        image_size: args.image_size,
    };
    let device = captioner::device::default_device();
    let start = std::time::Instant::now();
    let bars = Bars::new(!args.no_progress);
    let summary = extract(&corpus, &args.backbone, &args.cache, &opts, &device, &bars)?;
    for (file, error) in &summary.failed {
        eprintln!("unreadable image skipped: {file}: {error}");
    }
    let cache = FeatureCache::open(&args.cache)?;
    println!(
        "features: {} images ({} reused, {} computed, {} unreadable), {}-d, in {:.1} s -> {}",
        summary.images,
        summary.reused,
        summary.computed,
        summary.failed.len(),
        cache.dim(),
        start.elapsed().as_secs_f64(),
        args.cache.display()
    );
    Ok(0)
}
