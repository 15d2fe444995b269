//! `captioner train`: corpus → split → vocabulary → feature cache → head + LSTM decoder, into a run
//! directory (config.json, vocab.json, split.json, best.safetensors, last/, metrics.jsonl, loss.png).

use super::data_args::DataArgs;
use anyhow::Context;
use captioner::data::{DatasetSplit, SplitRatios};
use captioner::features::{extract, ExtractOptions, FeatureCache, SHARD_IMAGES};
use captioner::model::resnet::Arch;
use captioner::model::weights::sha256_file;
use captioner::run::{RunConfig, CONFIG_FILE, RUN_FORMAT, SPLIT_FILE, VOCAB_FILE};
use captioner::text::{VocabSource, Vocabulary};
use captioner::train::dataset::build_train_data;
use captioner::train::{checkpoint, interrupt, train, BnStatistics, TrainConfig, TrainOptions};
use captioner::vision::preprocess_version;
use std::path::PathBuf;

/// Recipes with their own defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// The PyTorch tutorial's recipe: min-freq 1, vocabulary from all captions, 80/20 split,
    /// 50 epochs, no early stopping.
    Tutorial,
}

/// `--bn-stats`: see [`BnStatistics`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BnStats {
    Precise,
    Ema,
}

impl From<BnStats> for BnStatistics {
    fn from(b: BnStats) -> Self {
        match b {
            BnStats::Precise => BnStatistics::Precise,
            BnStats::Ema => BnStatistics::Ema,
        }
    }
}

/// Flags of `captioner train`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub data: DataArgs,
    /// torchvision ResNet weights (`.pth` or `.safetensors`); taken from config.json on --resume.
    #[arg(long, value_name = "FILE")]
    pub backbone: Option<PathBuf>,
    /// Run directory.
    #[arg(long, value_name = "DIR")]
    pub run: PathBuf,
    /// ResNet architecture of the backbone.
    #[arg(long, default_value = "resnet50")]
    pub arch: Arch,
    /// Feature cache directory (default: RUN/features). Share one between runs on the same data.
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Maximum number of epochs (default 30; the tutorial preset: 50).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Captions per batch.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
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
    #[arg(long, default_value_t = captioner::vision::IMAGE_SIZE, value_parser = super::features::parse_image_size)]
    pub image_size: usize,
    /// Images per ResNet forward pass while extracting features.
    #[arg(long, default_value_t = 16)]
    pub feature_batch_size: usize,
    /// No progress bars.
    #[arg(long)]
    pub no_progress: bool,
}

/// Default number of epochs: an upper bound that early stopping ends well before. The tutorial's
/// own Flickr8k run peaks at epoch 4 of 50 (val loss 1.5548, 2.83 by epoch 50); on a 100-image
/// synth corpus (resnet18 init-backbone features) the best came at epoch 15, so 30 leaves room for
/// small corpora and costs nothing when the curve turns early.
const DEFAULT_EPOCHS: usize = 30;
/// Default early-stopping patience. Measured on that synth run: val loss 1.0460 at epoch 11, then
/// three worse epochs, then 1.0379 at epoch 15, then five worse epochs. Patience 3 would have stopped
/// at epoch 14 with the worse model; 5 found the better one at the price of 5 extra epochs (the
/// tutorial spends 46). Small validation sets are noisy, so we keep 5. On `synth --images 2000`
/// with resnet50 init-backbone features the best is epoch 1 (val 1.0416) and the run stops after
/// epoch 6: 6 epochs instead of the tutorial's 50.
const DEFAULT_PATIENCE: usize = 5;

pub fn run(mut args: Args) -> anyhow::Result<i32> {
    if args.preset == Some(Preset::Tutorial) {
        args.data.min_freq = 1;
        args.data.vocab_from = VocabSource::All;
        args.data.split_ratios = SplitRatios::new(0.8, 0.2, 0.0)?;
    }
    let run_dir = args.run.clone();
    if !args.resume && run_dir.join(CONFIG_FILE).exists() {
        anyhow::bail!(
            "{} already holds a run: continue it with --resume, or choose another --run",
            run_dir.display()
        );
    }
    // A run killed before it wrote config.json (while loading the corpus) has nothing to resume:
    // --resume then starts it afresh, so "rerun with --resume" always works after a crash.
    let saved = if args.resume && run_dir.join(CONFIG_FILE).is_file() {
        Some(RunConfig::load(&run_dir).context("cannot resume")?)
    } else {
        if args.resume {
            eprintln!(
                "nothing to resume in {}: starting a new run",
                run_dir.display()
            );
        }
        None
    };

    let corpus = args.data.load_corpus()?;
    let (split, vocab) = match &saved {
        Some(_) => (
            DatasetSplit::load_for(&run_dir.join(SPLIT_FILE), &corpus)?,
            Vocabulary::load(&run_dir.join(VOCAB_FILE))?,
        ),
        None => {
            let split = args.data.split(&corpus)?;
            let vocab = args.data.vocabulary(&corpus, &split);
            (split, vocab)
        }
    };
    let arch = match &saved {
        Some(s) => s.arch.parse::<Arch>()?,
        None => args.arch,
    };
    let backbone = match (&args.backbone, &saved) {
        (Some(b), _) => b.clone(),
        (None, Some(s)) => s.backbone.clone(),
        (None, None) => anyhow::bail!("--backbone FILE is required (torchvision ResNet weights)"),
    };
    let cache_dir = match (&args.cache, &saved) {
        (Some(c), _) => c.clone(),
        (None, Some(s)) => s.feature_cache.clone(),
        (None, None) => run_dir.join("features"),
    };
    // Checked before extraction so a wrong file never fills the cache.
    let backbone_sha256 = sha256_file(&backbone)?;
    if let Some(s) = &saved {
        if s.backbone_sha256 != backbone_sha256 {
            anyhow::bail!(
                "{} is not the backbone this run was trained with (sha256 differs from config.json)",
                backbone.display()
            );
        }
    }

    eprintln!(
        "corpus: {} images, {} captions; split {}/{}/{}; vocabulary {} words",
        corpus.len(),
        corpus.num_captions(),
        split.train.len(),
        split.val.len(),
        split.test.len(),
        vocab.len()
    );

    let image_size = saved.as_ref().map_or(args.image_size, |s| s.image_size);
    let mut cfg = match &saved {
        Some(s) => s.train.clone(),
        None => {
            let mut c = TrainConfig::new(arch.feature_dim(), vocab.len());
            c.batch_size = args.batch_size;
            c.lr = args.lr;
            c.seed = args.data.seed;
            c.epochs = DEFAULT_EPOCHS;
            c.patience = DEFAULT_PATIENCE;
            if args.preset == Some(Preset::Tutorial) {
                c.epochs = 50;
                c.patience = 0;
                c.bn_statistics = BnStatistics::Ema;
            }
            if let Some(b) = args.bn_stats {
                c.bn_statistics = b.into();
            }
            c
        }
    };
    if let Some(e) = args.epochs {
        cfg.epochs = e;
    }
    if let Some(p) = args.patience {
        cfg.patience = p;
    }
    if let (Some(_), Some(flag)) = (&saved, args.bn_stats) {
        if BnStatistics::from(flag) != cfg.bn_statistics {
            anyhow::bail!(
                "{} was started with --bn-stats {}; it cannot change on --resume",
                run_dir.display(),
                if cfg.bn_statistics == BnStatistics::Precise {
                    "precise"
                } else {
                    "ema"
                }
            );
        }
    }

    // config.json, vocab.json and split.json go first, so a run killed during feature extraction
    // resumes with the same split and vocabulary.
    std::fs::create_dir_all(&run_dir)
        .with_context(|| format!("cannot create {}", run_dir.display()))?;
    std::fs::create_dir_all(&cache_dir)
        .with_context(|| format!("cannot create {}", cache_dir.display()))?;
    let run_config = RunConfig {
        format: RUN_FORMAT.into(),
        data: args.data.data.clone(),
        layout: corpus.report.layout.to_string(),
        arch: arch.to_string(),
        backbone: std::fs::canonicalize(&backbone).unwrap_or(backbone.clone()),
        backbone_sha256,
        preprocess_version: preprocess_version(image_size),
        image_size,
        feature_cache: std::fs::canonicalize(&cache_dir).unwrap_or(cache_dir.clone()),
        min_freq: vocab.min_freq(),
        vocab_from: saved
            .as_ref()
            .map(|s| s.vocab_from.clone())
            .unwrap_or_else(|| args.data.vocab_from.name().into()),
        split_source: saved
            .as_ref()
            .map(|s| s.split_source.clone())
            .unwrap_or_else(|| args.data.split_source(&corpus).into()),
        preset: saved
            .as_ref()
            .map(|s| s.preset.clone())
            .unwrap_or_else(|| args.preset.map(|_| "tutorial".into())),
        train: cfg.clone(),
    };
    if saved.is_none() {
        vocab.save(&run_dir.join(VOCAB_FILE))?;
        split.save(&run_dir.join(SPLIT_FILE))?;
    }
    run_config.save(&run_dir)?;

    let device = captioner::device::default_device();
    let extract_opts = ExtractOptions {
        arch,
        batch_size: args.feature_batch_size,
        half: false,
        progress: !args.no_progress,
        shard_images: SHARD_IMAGES,
        image_size,
    };
    let extract_start = std::time::Instant::now();
    let summary = extract(&corpus, &backbone, &cache_dir, &extract_opts, &device)?;
    for (file, error) in &summary.failed {
        eprintln!("unreadable image skipped: {file}: {error}");
    }
    eprintln!(
        "features: {} reused, {} computed, {} unreadable, in {:.1} s",
        summary.reused,
        summary.computed,
        summary.failed.len(),
        extract_start.elapsed().as_secs_f64()
    );
    let cache = FeatureCache::open(&cache_dir)?;
    let prepared = build_train_data(&corpus, &split.train, &split.val, &vocab, &cache)?;
    if !prepared.missing_features.is_empty() {
        eprintln!(
            "{} images of the train/val split have no feature and are left out",
            prepared.missing_features.len()
        );
    }

    // A kill -9 before the first epoch ended leaves no last/: --resume then starts at epoch 1.
    let resume = args.resume && checkpoint::recover_last(&run_dir)?;
    interrupt::install_handler()?;
    let opts = TrainOptions {
        resume,
        progress: !args.no_progress,
        summary: true,
        stop: interrupt::global(),
    };
    let start = std::time::Instant::now();
    let outcome = train(&run_dir, &cfg, &prepared.data, &opts)?;
    let best = outcome
        .best_val_loss
        .map(|l| format!("{l:.4} at epoch {}", outcome.best_epoch.unwrap_or(0)))
        .unwrap_or_else(|| "none".into());
    println!(
        "trained {} epochs in {:.1} s{}; best val loss {best}; model: {}",
        outcome.epochs_done,
        start.elapsed().as_secs_f64(),
        if outcome.stopped_early {
            " (stopped early)"
        } else {
            ""
        },
        run_dir.join(captioner::train::trainer::BEST_FILE).display()
    );
    Ok(0)
}
