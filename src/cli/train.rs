//! `captioner train`: flags in, [`captioner::pipeline::train_run`] called, its outcome printed.
//! With `--shard I/N` (or a Slurm array / Kubernetes Indexed Job) only that shard's feature
//! extraction runs ([`captioner::pipeline::extract_features_shard`]); a later unsharded `train`
//! merges the shards and trains.

use super::data_args::DataArgs;
use super::interrupt;
use super::progress::Bars;
use super::shard_args::ShardArgs;
use captioner::model::resnet::Arch;
use captioner::pipeline::{extract_features_shard, train_run, Preset as LibPreset, TrainRequest};
use captioner::run::{AttentionConfig, BnStatistics, DecoderKind};

/// Recipes with their own defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// The PyTorch tutorial's recipe: min-freq 1, vocabulary from all captions, 80/20 split,
    /// 50 epochs, no early stopping.
    Tutorial,
}

/// `--decoder`: see [`DecoderKind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Decoder {
    /// The seed's: the image is the LSTM's first step.
    Lstm,
    /// Soft attention over the trunk's feature map (Show, Attend and Tell).
    Attention,
}

/// `--bn-stats`: see [`BnStatistics`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BnStats {
    /// Recomputed over the training images after every epoch.
    Precise,
    /// PyTorch's running averages (momentum 0.01), as the seed keeps them.
    Ema,
}

/// Flags of `captioner train`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub data: DataArgs,
    /// torchvision ResNet weights (`.pth` or `.safetensors`); taken from config.json on --resume.
    #[arg(long, value_name = "FILE")]
    pub backbone: Option<std::path::PathBuf>,
    /// Run directory.
    #[arg(long, value_name = "DIR")]
    pub run: std::path::PathBuf,
    /// ResNet architecture of the backbone.
    #[arg(long, default_value = "resnet50")]
    pub arch: Arch,
    /// Feature cache directory (default: RUN/features). Share one between runs on the same data.
    #[arg(long, value_name = "DIR")]
    pub cache: Option<std::path::PathBuf>,
    /// Maximum number of epochs (default 30; the tutorial preset: 50).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Captions per batch.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Adam learning rate (default 1e-3; with --decoder attention 4e-4).
    #[arg(long)]
    pub lr: Option<f64>,
    /// The decoder: `lstm` (the seed's: the image is the LSTM's first step) or `attention` (soft
    /// attention over the feature map, Show, Attend and Tell; extracts the maps with the
    /// features). Fixed when a run starts.
    #[arg(long, value_enum, default_value = "lstm")]
    pub decoder: Decoder,
    /// Word embedding size (default 256; with --decoder attention 512).
    #[arg(long, value_parser = size_parser())]
    pub embed_dim: Option<usize>,
    /// LSTM hidden size (default 512).
    #[arg(long, value_parser = size_parser())]
    pub hidden_dim: Option<usize>,
    /// Attention layer size (attention decoder).
    #[arg(long, default_value_t = 512, value_parser = size_parser())]
    pub attention_dim: usize,
    /// Dropout before the output layer (attention decoder), from 0 up to but not including 1.
    #[arg(long, default_value_t = 0.5, value_parser = parse_dropout)]
    pub dropout: f32,
    /// Weight of the "doubly stochastic" attention regulariser (attention decoder), 0 or more.
    #[arg(long, default_value_t = 1.0, value_parser = parse_alpha_c)]
    pub alpha_c: f32,
    /// Clamp every gradient element to [-G, G] before Adam (attention decoder); G > 0.
    #[arg(long, default_value_t = 5.0, value_name = "G", value_parser = parse_grad_clip)]
    pub grad_clip: f32,
    /// Stop after this many epochs without a better validation loss; 0 never stops early
    /// (default 5; the tutorial preset: 0).
    #[arg(long)]
    pub patience: Option<usize>,
    /// A recipe: `tutorial` reproduces the PyTorch tutorial (min-freq 1, vocabulary from all
    /// captions, 80/20 split, 50 epochs, no early stop).
    #[arg(long, value_enum)]
    pub preset: Option<Preset>,
    /// Statistics the head's BatchNorm normalises with outside training: `precise` recomputes them
    /// over the training images after every epoch; `ema` keeps PyTorch's running averages
    /// (momentum 0.01) as the seed does, which trail the moving weights. Default precise; the
    /// tutorial preset: ema. Fixed when a run starts.
    #[arg(long, value_enum, value_name = "precise|ema")]
    pub bn_stats: Option<BnStats>,
    /// Continue from RUN/last/ (same vocabulary, split and configuration).
    #[arg(long)]
    pub resume: bool,
    /// Resize images to this square side before the backbone (the seed: 224). Smaller is faster
    /// and only sensible for a backbone that is not pretrained at 224, like the demo's.
    #[arg(long, default_value_t = captioner::vision::IMAGE_SIZE, value_parser = super::features::image_size_parser())]
    pub image_size: usize,
    /// Images per ResNet forward pass while extracting features.
    #[arg(long, default_value_t = 16)]
    pub feature_batch_size: usize,
    /// No progress bars.
    #[arg(long)]
    pub no_progress: bool,
    /// Sharded feature extraction: with a shard, `train` extracts that shard's features into the
    /// cache and stops (no run files, no training); run `train` without it afterwards to merge
    /// the shards and train.
    #[command(flatten)]
    pub shard: ShardArgs,
}

/// A layer size: 1 to 65536.
fn size_parser() -> impl clap::builder::TypedValueParser<Value = usize> {
    use clap::builder::TypedValueParser;
    clap::value_parser!(u32)
        .range(1..=65536)
        .map(|v| v as usize)
}

/// A finite number within `ok`, or a message naming the flag's rule.
fn parse_f32(raw: &str, ok: impl Fn(f32) -> bool, rule: &str) -> Result<f32, String> {
    let v: f32 = raw
        .parse()
        .map_err(|_| format!("{raw:?} is not a number"))?;
    if v.is_finite() && ok(v) {
        Ok(v)
    } else {
        Err(format!("{raw} is outside {rule}"))
    }
}

fn parse_dropout(raw: &str) -> Result<f32, String> {
    parse_f32(raw, |v| (0.0..1.0).contains(&v), "[0, 1)")
}

fn parse_alpha_c(raw: &str) -> Result<f32, String> {
    parse_f32(raw, |v| v >= 0.0, "[0, ∞)")
}

fn parse_grad_clip(raw: &str) -> Result<f32, String> {
    parse_f32(raw, |v| v > 0.0, "(0, ∞)")
}

impl Args {
    /// The library's request for these flags.
    fn request(&self) -> TrainRequest {
        TrainRequest {
            corpus: self.data.spec(),
            run: self.run.clone(),
            backbone: self.backbone.clone(),
            arch: self.arch,
            cache: self.cache.clone(),
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            decoder: match self.decoder {
                Decoder::Lstm => DecoderKind::Lstm,
                Decoder::Attention => DecoderKind::Attention,
            },
            embed_dim: self.embed_dim,
            hidden_dim: self.hidden_dim,
            attention: AttentionConfig {
                attention_dim: self.attention_dim,
                dropout: self.dropout,
                alpha_c: self.alpha_c,
                grad_clip: self.grad_clip,
            },
            patience: self.patience,
            preset: self.preset.map(|Preset::Tutorial| LibPreset::Tutorial),
            bn_statistics: self.bn_stats.map(|b| match b {
                BnStats::Precise => BnStatistics::Precise,
                BnStats::Ema => BnStatistics::Ema,
            }),
            resume: self.resume,
            image_size: self.image_size,
            feature_batch_size: self.feature_batch_size,
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    args.data.check()?;
    if let Some(backbone) = &args.backbone {
        super::exit::require_path("--backbone", backbone)?;
    }
    let bars = Bars::new(!args.no_progress);
    if let Some(shard) = args.shard.resolve()? {
        let s = extract_features_shard(&args.request(), shard, &bars)?;
        println!(
            "train: shard {}: feature extraction only ({} images: {} reused, {} computed, {} unreadable); \
             nothing trained: run `captioner train` without --shard to merge the shards and train",
            shard.0,
            s.images,
            s.reused,
            s.computed,
            s.failed.len()
        );
        return Ok(0);
    }
    let job = interrupt::job()?;
    let report = train_run(&args.request(), &bars, job.flag())?;
    drop(job);
    let outcome = &report.outcome;
    let best = outcome
        .best_val_loss
        .map(|l| format!("{l:.4} at epoch {}", outcome.best_epoch.unwrap_or(0)))
        .unwrap_or_else(|| "none".into());
    println!(
        "trained {} epochs in {:.1} s{}; best val loss {best}; model: {}",
        outcome.epochs_done,
        report.train_seconds,
        if outcome.stopped_early {
            " (stopped early)"
        } else {
            ""
        },
        report.run.best().display()
    );
    Ok(0)
}
