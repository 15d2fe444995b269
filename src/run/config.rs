//! `config.json` of a run directory ([`RunConfig`]) and the trainer's hyper-parameters
//! ([`TrainConfig`]): what lets every later command (resume, export, caption, eval, serve) rebuild
//! the model exactly as it was trained.

use super::dir::CONFIG_FILE;
use crate::{fsutil, Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Format tag of `config.json`.
pub const RUN_FORMAT: &str = "captioner-run-v1";

/// Everything needed to rebuild a run's model and data preparation (`config.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfig {
    /// [`RUN_FORMAT`].
    pub format: String,
    /// The corpus directory.
    pub data: PathBuf,
    /// The corpus layout it was read as (`kaggle`, `token`, `karpathy`).
    pub layout: String,
    /// ResNet architecture (`resnet50`, ...).
    pub arch: String,
    /// The backbone weights file.
    pub backbone: PathBuf,
    /// sha256 of the backbone weights file, hex.
    pub backbone_sha256: String,
    /// Version tag of the image preprocessing (includes the image size).
    pub preprocess_version: String,
    /// Side of the square the images are resized to (224 as in the seed; runs written before this
    /// field existed are 224).
    #[serde(default = "default_image_size")]
    pub image_size: usize,
    /// The feature cache directory.
    pub feature_cache: PathBuf,
    /// Words kept in the vocabulary occur at least this often.
    pub min_freq: usize,
    /// Which captions the vocabulary was counted in (`train` or `all`).
    pub vocab_from: String,
    /// Where the split came from (`file`, `dataset` or `random`).
    pub split_source: String,
    /// The recipe, if one was asked for (`tutorial`).
    pub preset: Option<String>,
    /// The trainer's configuration (epochs, batch size, lr, seed, patience, sizes).
    pub train: TrainConfig,
}

fn default_image_size() -> usize {
    crate::vision::IMAGE_SIZE
}

impl RunConfig {
    /// Reads `DIR/config.json`.
    pub fn load(run_dir: &Path) -> Result<RunConfig> {
        let path = run_dir.join(CONFIG_FILE);
        let cfg: RunConfig = fsutil::read_json(&path)?;
        if cfg.format != RUN_FORMAT {
            return Err(Error::Checkpoint {
                path,
                msg: format!(
                    "unknown run format {:?} (expected {RUN_FORMAT})",
                    cfg.format
                ),
            });
        }
        Ok(cfg)
    }

    /// Writes `DIR/config.json` atomically.
    pub fn save(&self, run_dir: &Path) -> Result<()> {
        fsutil::write_json_atomic(&run_dir.join(CONFIG_FILE), self)
    }
}

/// Where the head's BatchNorm gets the statistics it normalises with in eval mode (validation,
/// checkpoints, captioning).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BnStatistics {
    /// Recomputed over every training caption's image feature after each epoch, before validation
    /// ([`crate::model::head::Head::set_statistics`]). Training itself is unchanged: train mode
    /// normalises with the batch's own statistics either way.
    Precise,
    /// PyTorch's running averages (momentum 0.01), as the seed keeps them. The default of runs saved
    /// before this field existed.
    #[default]
    Ema,
}

impl BnStatistics {
    /// The name used on the command line and in `config.json`.
    pub fn name(self) -> &'static str {
        match self {
            BnStatistics::Precise => "precise",
            BnStatistics::Ema => "ema",
        }
    }
}

/// Which decoder a run trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DecoderKind {
    /// The seed's: the image as the LSTM's first step ([`crate::model::CaptionModel`]).
    #[default]
    Lstm,
    /// Soft attention over the feature map ([`crate::model::attention::AttentionDecoder`]).
    Attention,
}

impl DecoderKind {
    /// The name used on the command line and in `config.json`.
    pub fn name(self) -> &'static str {
        match self {
            DecoderKind::Lstm => "lstm",
            DecoderKind::Attention => "attention",
        }
    }
}

/// The attention decoder's own hyper-parameters (the tutorial's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AttentionConfig {
    /// Size A of the attention layer.
    pub attention_dim: usize,
    /// Dropout before the output layer.
    pub dropout: f32,
    /// Weight of the attention regulariser `Σ_i (1 − Σ_t α_ti)²`.
    pub alpha_c: f32,
    /// Every gradient element is clamped to `[−grad_clip, grad_clip]` before Adam.
    pub grad_clip: f32,
}

impl Default for AttentionConfig {
    fn default() -> Self {
        Self {
            attention_dim: 512,
            dropout: 0.5,
            alpha_c: 1.0,
            grad_clip: 5.0,
        }
    }
}

/// Hyper-parameters of a run (saved in `last/state.json` and in `config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Most epochs.
    pub epochs: usize,
    /// Captions per batch.
    pub batch_size: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// Seed of the initialisation and the shuffles.
    pub seed: u64,
    /// Stop after this many epochs without a better validation loss; 0 turns it off.
    pub patience: usize,
    /// Word (and image) embedding size.
    pub embed: usize,
    /// LSTM hidden size.
    pub hidden: usize,
    /// Size of the trunk's pooled feature.
    pub feature_dim: usize,
    /// Words in the vocabulary, special tokens included.
    pub vocab_size: usize,
    /// How the head's BatchNorm statistics are kept (`precise` for new runs).
    #[serde(default)]
    pub bn_statistics: BnStatistics,
    /// The decoder (runs saved before there was a choice are `lstm`).
    #[serde(default)]
    pub decoder: DecoderKind,
    /// The attention decoder's settings (attention runs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention: Option<AttentionConfig>,
}

impl TrainConfig {
    /// The defaults (batch 64, lr 1e-3, patience 5, embed 256, hidden 512, precise BatchNorm
    /// statistics) for the given sizes.
    pub fn new(feature_dim: usize, vocab_size: usize) -> Self {
        Self {
            epochs: 20,
            batch_size: 64,
            lr: 1e-3,
            seed: 0,
            patience: 5,
            embed: 256,
            hidden: 512,
            feature_dim,
            vocab_size,
            bn_statistics: BnStatistics::Precise,
            decoder: DecoderKind::Lstm,
            attention: None,
        }
    }

    /// The attention decoder's defaults (embedding, attention and hidden 512, lr 4e-4, dropout
    /// 0.5, α_c 1, gradients clamped to ±5: the tutorial's) for the given sizes.
    pub fn attention(feature_dim: usize, vocab_size: usize) -> Self {
        Self {
            lr: 4e-4,
            embed: 512,
            hidden: 512,
            decoder: DecoderKind::Attention,
            attention: Some(AttentionConfig::default()),
            ..Self::new(feature_dim, vocab_size)
        }
    }

    /// Whether `other` may continue a run started with `self`: everything but the number of
    /// epochs and the patience must agree.
    pub fn same_model(&self, other: &TrainConfig) -> bool {
        (
            self.batch_size,
            self.seed,
            self.embed,
            self.hidden,
            self.feature_dim,
            self.vocab_size,
            self.bn_statistics,
            self.decoder,
        ) == (
            other.batch_size,
            other.seed,
            other.embed,
            other.hidden,
            other.feature_dim,
            other.vocab_size,
            other.bn_statistics,
            other.decoder,
        ) && self.lr == other.lr
            && self.attention == other.attention
    }
}
