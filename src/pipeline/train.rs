//! A whole training run, as `captioner train` does it: corpus → split → vocabulary → feature cache
//! → head + LSTM decoder, into a run directory (see [`RunDir`]), resumable after Ctrl-C or a kill.

use super::CorpusSpec;
use crate::data::{CaptionCorpus, DatasetSplit, SplitRatios};
use crate::features::{extract, ExtractOptions, ExtractSummary, FeatureCache, CHUNK_IMAGES};
use crate::model::resnet::Arch;
use crate::model::weights::sha256_file;
use crate::model::Precision;
use crate::progress::{Level, Progress};
use crate::run::{
    AttentionConfig, BnStatistics, DecoderKind, RunConfig, RunDir, TrainConfig, RUN_FORMAT,
};
use crate::shard::{Shard, ShardSource};
use crate::text::{VocabSource, Vocabulary};
use crate::train::dataset::build_train_data;
use crate::train::{checkpoint, train, TrainOptions, TrainOutcome};
use crate::vision::preprocess_version;
use crate::{Error, Result};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

/// Recipes with their own defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// The PyTorch tutorial's recipe: min-freq 1, vocabulary from all captions, 80/20 split,
    /// 50 epochs, no early stopping, running-average BatchNorm statistics.
    Tutorial,
}

impl Preset {
    /// The name saved in `config.json`.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Tutorial => "tutorial",
        }
    }
}

/// Default number of epochs: an upper bound that early stopping ends well before. The tutorial's
/// own Flickr8k run peaks at epoch 4 of 50 (val loss 1.5548, 2.83 by epoch 50); on a 100-image
/// synth corpus (resnet18 init-backbone features) the best came at epoch 15, so 30 leaves room for
/// small corpora and costs nothing when the curve turns early.
pub const DEFAULT_EPOCHS: usize = 30;
/// Default early-stopping patience. Measured on that synth run: val loss 1.0460 at epoch 11, then
/// three worse epochs, then 1.0379 at epoch 15, then five worse epochs. Patience 3 would have stopped
/// at epoch 14 with the worse model; 5 found the better one at the price of 5 extra epochs (the
/// tutorial spends 46). Small validation sets are noisy, so we keep 5.
pub const DEFAULT_PATIENCE: usize = 5;

/// Everything a training run is made from. [`TrainRequest::new`] gives the command line's
/// defaults; on resume, what the run saved wins over every field but `epochs` and `patience`.
#[derive(Debug, Clone)]
pub struct TrainRequest {
    /// The corpus and how to split it and build the vocabulary.
    pub corpus: CorpusSpec,
    /// The run directory.
    pub run: PathBuf,
    /// torchvision ResNet weights (`.pth` or `.safetensors`); on resume, `None` takes the run's.
    pub backbone: Option<PathBuf>,
    /// ResNet architecture of the backbone.
    pub arch: Arch,
    /// Feature cache directory (default: `RUN/features`).
    pub cache: Option<PathBuf>,
    /// Most epochs ([`DEFAULT_EPOCHS`]; the tutorial preset: 50).
    pub epochs: Option<usize>,
    /// Captions per batch.
    pub batch_size: usize,
    /// Adam's learning rate (default: the decoder's, 1e-3 for `lstm`, 4e-4 for `attention`).
    pub lr: Option<f64>,
    /// The decoder to train (a new run only; a resumed one keeps its own).
    pub decoder: DecoderKind,
    /// Word embedding size (default: 256 for `lstm`, 512 for `attention`).
    pub embed_dim: Option<usize>,
    /// LSTM hidden size (default 512).
    pub hidden_dim: Option<usize>,
    /// The attention decoder's settings (default: the tutorial's).
    pub attention: AttentionConfig,
    /// Epochs without a better validation loss before stopping, 0 never ([`DEFAULT_PATIENCE`];
    /// the tutorial preset: 0).
    pub patience: Option<usize>,
    /// A recipe with its own defaults.
    pub preset: Option<Preset>,
    /// How the head's BatchNorm statistics are kept (precise; the tutorial preset: running
    /// averages). Cannot change on resume.
    pub bn_statistics: Option<BnStatistics>,
    /// Continue the run in `run` from its `last/` checkpoint.
    pub resume: bool,
    /// Side of the square images are resized to before the backbone.
    pub image_size: usize,
    /// Images per ResNet forward pass during feature extraction.
    pub feature_batch_size: usize,
}

impl TrainRequest {
    /// A new run of `corpus` with `backbone` into `run`, with the command line's defaults.
    pub fn new(corpus: CorpusSpec, backbone: impl Into<PathBuf>, run: impl Into<PathBuf>) -> Self {
        Self {
            corpus,
            run: run.into(),
            backbone: Some(backbone.into()),
            arch: Arch::ResNet50,
            cache: None,
            epochs: None,
            batch_size: 64,
            lr: None,
            decoder: DecoderKind::Lstm,
            embed_dim: None,
            hidden_dim: None,
            attention: AttentionConfig::default(),
            patience: None,
            preset: None,
            bn_statistics: None,
            resume: false,
            image_size: crate::vision::IMAGE_SIZE,
            feature_batch_size: 16,
        }
    }
}

/// What a finished run did.
#[derive(Debug)]
pub struct TrainReport {
    /// The run directory's files.
    pub run: RunDir,
    /// The feature extraction step.
    pub features: ExtractSummary,
    /// The training loop's result.
    pub outcome: TrainOutcome,
    /// Wall time of the training loop, seconds.
    pub train_seconds: f64,
}

/// A run directory made ready to train: its configuration, split and vocabulary saved.
#[derive(Debug)]
pub struct PreparedRun {
    /// The run directory's files.
    pub run: RunDir,
    /// The configuration saved in `config.json`.
    pub config: RunConfig,
    /// The corpus as read.
    pub corpus: CaptionCorpus,
    /// The split by image (saved as `split.json`).
    pub split: DatasetSplit,
    /// The vocabulary (saved as `vocab.json`).
    pub vocab: Vocabulary,
    /// Whether an earlier run's configuration was found (`--resume` of a started run).
    pub resumed: bool,
}

/// Reads the corpus and writes the run's `config.json`, `split.json` and `vocab.json` (or, on
/// resume, reads them back and checks the request against them). Nothing is written when a
/// check fails.
pub fn prepare_run(req: &TrainRequest, progress: &dyn Progress) -> Result<PreparedRun> {
    let mut spec = req.corpus.clone();
    if req.preset == Some(Preset::Tutorial) {
        spec.min_freq = 1;
        spec.vocab_from = VocabSource::All;
        spec.split_ratios = SplitRatios::new(0.8, 0.2, 0.0)?;
    }
    let run = RunDir::new(&req.run);
    if !req.resume && run.config().exists() {
        return Err(Error::Invalid(format!(
            "{} already holds a run: continue it with --resume, or choose another --run",
            run.dir().display()
        )));
    }
    // A run killed before it wrote config.json (while loading the corpus) has nothing to resume:
    // --resume then starts it afresh, so "rerun with --resume" always works after a crash.
    let saved = if req.resume && run.config().is_file() {
        Some(RunConfig::load(run.dir())?)
    } else {
        if req.resume {
            progress.log(
                Level::Info,
                &format!(
                    "nothing to resume in {}: starting a new run",
                    run.dir().display()
                ),
            );
        }
        None
    };

    let corpus = spec.load()?;
    let (split, vocab) = match &saved {
        Some(_) => (
            DatasetSplit::load_for(&run.split(), &corpus)?,
            Vocabulary::load(&run.vocab())?,
        ),
        None => {
            let split = spec.split(&corpus)?;
            let vocab = spec.vocabulary(&corpus, &split);
            (split, vocab)
        }
    };
    let arch = match &saved {
        Some(s) => s.arch.parse::<Arch>()?,
        None => req.arch,
    };
    let backbone = match (&req.backbone, &saved) {
        (Some(b), _) => b.clone(),
        (None, Some(s)) => s.backbone.clone(),
        (None, None) => {
            return Err(Error::Invalid(
                "--backbone FILE is required (torchvision ResNet weights)".into(),
            ))
        }
    };
    let cache_dir = match (&req.cache, &saved) {
        (Some(c), _) => c.clone(),
        (None, Some(s)) => s.feature_cache.clone(),
        (None, None) => run.features(),
    };
    // Checked before extraction so a wrong file never fills the cache.
    let backbone_sha256 = sha256_file(&backbone)?;
    if let Some(s) = &saved {
        if s.backbone_sha256 != backbone_sha256 {
            return Err(Error::Invalid(format!(
                "{} is not the backbone this run was trained with (sha256 differs from config.json)",
                backbone.display()
            )));
        }
    }
    progress.log(
        Level::Info,
        &format!(
            "corpus: {} images, {} captions; split {}/{}/{}; vocabulary {} words",
            corpus.len(),
            corpus.num_captions(),
            split.train.len(),
            split.val.len(),
            split.test.len(),
            vocab.len()
        ),
    );

    let image_size = saved.as_ref().map_or(req.image_size, |s| s.image_size);
    let mut cfg = match &saved {
        Some(s) => s.train.clone(),
        None => {
            let mut c = match req.decoder {
                DecoderKind::Lstm => TrainConfig::new(arch.feature_dim(), vocab.len()),
                DecoderKind::Attention => {
                    let mut c = TrainConfig::attention(arch.feature_dim(), vocab.len());
                    c.attention = Some(req.attention);
                    c
                }
            };
            c.batch_size = req.batch_size;
            if let Some(lr) = req.lr {
                c.lr = lr;
            }
            if let Some(e) = req.embed_dim {
                c.embed = e;
            }
            if let Some(h) = req.hidden_dim {
                c.hidden = h;
            }
            c.seed = spec.seed;
            c.epochs = DEFAULT_EPOCHS;
            c.patience = DEFAULT_PATIENCE;
            if req.preset == Some(Preset::Tutorial) {
                c.epochs = 50;
                c.patience = 0;
                c.bn_statistics = BnStatistics::Ema;
            }
            if let Some(b) = req.bn_statistics {
                c.bn_statistics = b;
            }
            c
        }
    };
    if let Some(e) = req.epochs {
        cfg.epochs = e;
    }
    if let Some(p) = req.patience {
        cfg.patience = p;
    }
    if let (Some(_), Some(asked)) = (&saved, req.bn_statistics) {
        if asked != cfg.bn_statistics {
            return Err(Error::Invalid(format!(
                "{} was started with --bn-stats {}; it cannot change on --resume",
                run.dir().display(),
                cfg.bn_statistics.name()
            )));
        }
    }

    // config.json, vocab.json and split.json go first, so a run killed during feature extraction
    // resumes with the same split and vocabulary.
    for dir in [run.dir(), cache_dir.as_path()] {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let config = RunConfig {
        format: RUN_FORMAT.into(),
        data: spec.data.clone(),
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
            .unwrap_or_else(|| spec.vocab_from.name().into()),
        split_source: saved
            .as_ref()
            .map(|s| s.split_source.clone())
            .unwrap_or_else(|| spec.split_source(&corpus).into()),
        preset: saved
            .as_ref()
            .map(|s| s.preset.clone())
            .unwrap_or_else(|| req.preset.map(|p| p.name().into())),
        train: cfg,
    };
    if saved.is_none() {
        vocab.save(&run.vocab())?;
        split.save(&run.split())?;
    }
    config.save(run.dir())?;
    Ok(PreparedRun {
        run,
        config,
        corpus,
        split,
        vocab,
        resumed: saved.is_some(),
    })
}

/// The feature extraction step of [`train_run`] for one shard of the images, and nothing else:
/// the shard's features go into the run's feature cache as chunks, no run file is written and
/// nothing is trained (training needs every image's feature). Run [`train_run`] afterwards,
/// unsharded, with the same cache: it merges the shards' chunks, computes whatever is still
/// missing, and trains. The backbone, architecture, cache and image size are the request's, or
/// those of `config.json` on `resume`, as for [`train_run`].
pub fn extract_features_shard(
    req: &TrainRequest,
    shard: (Shard, ShardSource),
    progress: &dyn Progress,
) -> Result<ExtractSummary> {
    let run = RunDir::new(&req.run);
    let saved = if req.resume && run.config().is_file() {
        Some(RunConfig::load(run.dir())?)
    } else {
        None
    };
    let arch = match &saved {
        Some(s) => s.arch.parse::<Arch>()?,
        None => req.arch,
    };
    let backbone = match (&req.backbone, &saved) {
        (Some(b), _) => b.clone(),
        (None, Some(s)) => s.backbone.clone(),
        (None, None) => {
            return Err(Error::Invalid(
                "--backbone FILE is required (torchvision ResNet weights)".into(),
            ))
        }
    };
    let cache = match (&req.cache, &saved) {
        (Some(c), _) => c.clone(),
        (None, Some(s)) => s.feature_cache.clone(),
        (None, None) => run.features(),
    };
    let corpus = req.corpus.load()?;
    let opts = ExtractOptions {
        arch,
        batch_size: req.feature_batch_size,
        half: false,
        precision: Precision::F32,
        chunk_images: CHUNK_IMAGES,
        image_size: saved.as_ref().map_or(req.image_size, |s| s.image_size),
        shard: Some(shard),
        spatial: saved.as_ref().map_or(req.decoder, |s| s.train.decoder) == DecoderKind::Attention,
    };
    let device = crate::device::default_device();
    let summary = extract(&corpus, &backbone, &cache, &opts, &device, progress)?;
    for (file, error) in &summary.failed {
        progress.log(
            Level::Warn,
            &format!("unreadable image skipped: {file}: {error}"),
        );
    }
    Ok(summary)
}

/// Prepares the run ([`prepare_run`]), fills the feature cache, then trains until the epochs are
/// done, early stopping ends it, or `stop` is set (then `last/` is written and
/// [`Error::Interrupted`] returned: resume with `resume: true`).
pub fn train_run(
    req: &TrainRequest,
    progress: &dyn Progress,
    stop: Arc<AtomicBool>,
) -> Result<TrainReport> {
    let _lock = lock_run(&req.run)?;
    let prepared = prepare_run(req, progress)?;
    let cfg = &prepared.config;
    let device = crate::device::default_device();
    let extract_opts = ExtractOptions {
        arch: cfg.arch.parse()?,
        batch_size: req.feature_batch_size,
        half: false,
        precision: Precision::F32,
        chunk_images: CHUNK_IMAGES,
        image_size: cfg.image_size,
        shard: None,
        spatial: cfg.train.decoder == DecoderKind::Attention,
    };
    let extract_start = Instant::now();
    let features = extract(
        &prepared.corpus,
        &cfg.backbone,
        &cfg.feature_cache,
        &extract_opts,
        &device,
        progress,
    )?;
    for (file, error) in &features.failed {
        progress.log(
            Level::Warn,
            &format!("unreadable image skipped: {file}: {error}"),
        );
    }
    progress.log(
        Level::Info,
        &format!(
            "features: {} reused, {} computed, {} unreadable, in {:.1} s",
            features.reused,
            features.computed,
            features.failed.len(),
            extract_start.elapsed().as_secs_f64()
        ),
    );
    let cache = FeatureCache::open(&cfg.feature_cache)?;
    let split = &prepared.split;
    let data = build_train_data(
        &prepared.corpus,
        &split.train,
        &split.val,
        &prepared.vocab,
        &cache,
    )?;
    if !data.missing_features.is_empty() {
        progress.log(
            Level::Warn,
            &format!(
                "{} images of the train/val split have no feature and are left out",
                data.missing_features.len()
            ),
        );
    }

    // A kill -9 before the first epoch ended leaves no last/: --resume then starts at epoch 1.
    let resume = req.resume && checkpoint::recover_last(prepared.run.dir())?;
    let opts = TrainOptions { resume, stop };
    let start = Instant::now();
    let outcome = train(prepared.run.dir(), &cfg.train, &data.data, &opts, progress)?;
    Ok(TrainReport {
        run: prepared.run,
        features,
        outcome,
        train_seconds: start.elapsed().as_secs_f64(),
    })
}

/// The file in a run directory that a training holds locked while it runs.
pub const LOCK_FILE: &str = "train.lock";

/// Locks `run` for one training: a second `train` on the same directory at the same time (a
/// retried job whose first attempt still runs, a command typed twice) would interleave its writes
/// with the first one's. The lock is the operating system's, so a killed process never leaves
/// it held.
fn lock_run(run: &std::path::Path) -> Result<std::fs::File> {
    std::fs::create_dir_all(run).map_err(|e| Error::io(run, e))?;
    let path = run.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Checkpoint {
            path: run.to_path_buf(),
            msg: "another training is running in this run directory; wait for it to end or stop it first".into(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
    }
}
