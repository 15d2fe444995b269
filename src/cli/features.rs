//! `captioner features`: the ResNet feature of every image of a corpus, computed once into a cache
//! (resumable: rerun after a kill and it continues). `--shard I/N` (or a Slurm array / Kubernetes
//! Indexed Job) computes one part into the shared cache; a run without it merges.

use super::data_args::parse_layout;
use super::progress::Bars;
use super::shard_args::ShardArgs;
use anyhow::Context;
use captioner::data::{CaptionCorpus, Layout, LoadOptions};
use captioner::features::{extract, ExtractOptions, FeatureCache, CHUNK_IMAGES};
use captioner::model::resnet::Arch;
use clap::builder::TypedValueParser;
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
    /// Cache directory (features.safetensors + images.json + cache.json, and spatial.safetensors
    /// with --spatial).
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
    /// Also keep each image's last feature map before the pool (7×7×2048 for ResNet-50 at 224),
    /// as f16 in spatial.safetensors, for `train --decoder attention`.
    #[arg(long)]
    pub spatial: bool,
    #[command(flatten)]
    pub precision: super::precision_arg::PrecisionArg,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Images per resumable chunk (tests make it small to kill a run between chunks).
    #[arg(long, hide = true, default_value_t = CHUNK_IMAGES)]
    pub chunk_images: usize,
    #[command(flatten)]
    pub shard: ShardArgs,
    /// Resize images to this square side (the seed and every pretrained recipe: 224).
    #[arg(long, default_value_t = captioner::vision::IMAGE_SIZE, value_parser = image_size_parser())]
    pub image_size: usize,
}

/// `--image-size` of `features` and `train`: a side from 32 to 1024 pixels, by clap's range
/// parser (`10` is refused with "10 is not in 32..=1024").
pub fn image_size_parser() -> impl TypedValueParser<Value = usize> {
    clap::value_parser!(u16).range(32..=1024).map(usize::from)
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    super::data_args::check_data(&args.data, args.format)?;
    super::exit::require_path("--backbone", &args.backbone)?;
    let precision = args.precision.checked()?;
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
        precision,
        chunk_images: args.chunk_images,
        image_size: args.image_size,
        shard: args.shard.resolve()?,
        spatial: args.spatial,
    };
    let device = captioner::device::default_device();
    let start = std::time::Instant::now();
    let bars = Bars::new(!args.no_progress);
    let summary = extract(&corpus, &args.backbone, &args.cache, &opts, &device, &bars)?;
    for (file, error) in &summary.failed {
        eprintln!("unreadable image skipped: {file}: {error}");
    }
    if let Some(shard) = summary.shard {
        println!(
            "features: shard {shard}: {} images ({} reused, {} computed, {} unreadable) in {:.1} s -> chunks in {}; \
             run `captioner features` without --shard over the same cache to merge",
            summary.images,
            summary.reused,
            summary.computed,
            summary.failed.len(),
            start.elapsed().as_secs_f64(),
            args.cache.display()
        );
        return Ok(0);
    }
    let cache = FeatureCache::open(&args.cache)?;
    let spatial = match cache.grid {
        Some([h, w]) => format!(" + {h}×{w} maps"),
        None => String::new(),
    };
    println!(
        "features: {} images ({} reused, {} computed, {} unreadable), {}-d{spatial}, in {:.1} s{} -> {}",
        summary.images,
        summary.reused,
        summary.computed,
        summary.failed.len(),
        cache.dim(),
        start.elapsed().as_secs_f64(),
        compute_rate(&summary),
        args.cache.display()
    );
    Ok(0)
}

/// How long computing took and its rate, after the backbone was loaded (empty when nothing was
/// computed).
fn compute_rate(summary: &captioner::features::ExtractSummary) -> String {
    if summary.computed == 0 || summary.compute_seconds <= 0.0 {
        return String::new();
    }
    format!(
        " (computing {:.2} s, {:.1} images/s)",
        summary.compute_seconds,
        summary.computed as f64 / summary.compute_seconds
    )
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: super::Args,
    }

    fn parse(side: &str) -> Result<usize, String> {
        Cli::try_parse_from([
            "features",
            "--data",
            "d",
            "--backbone",
            "b",
            "--cache",
            "c",
            "--image-size",
            side,
        ])
        .map(|c| c.args.image_size)
        .map_err(|e| e.to_string())
    }

    #[test]
    fn image_size_is_a_side_from_32_to_1024() {
        assert_eq!(parse("32"), Ok(32));
        assert_eq!(parse("1024"), Ok(1024));
        for bad in ["10", "1025", "70000"] {
            let err = parse(bad).unwrap_err();
            assert!(
                err.contains("--image-size") && err.contains("32..=1024"),
                "{bad}: {err}"
            );
        }
        let err = parse("big").unwrap_err();
        assert!(
            err.contains("--image-size") && err.contains("'big'"),
            "{err}"
        );
    }
}
