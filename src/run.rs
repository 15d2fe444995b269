//! A run directory (`train --run DIR`): what it holds and the configuration that lets every later
//! command (resume, export, caption, eval, serve) rebuild the model exactly as it was trained.

use crate::train::TrainConfig;
use crate::{fsutil, Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Hyper-parameters, data and backbone of the run.
pub const CONFIG_FILE: &str = "config.json";
/// The vocabulary the decoder was trained with.
pub const VOCAB_FILE: &str = "vocab.json";
/// The split by image the run used.
pub const SPLIT_FILE: &str = "split.json";
/// Format tag of `config.json`.
pub const RUN_FORMAT: &str = "captioner-run-v1";

/// Everything needed to rebuild a run's model and data preparation (`config.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfig {
    pub format: String,
    /// The corpus directory and its layout.
    pub data: PathBuf,
    pub layout: String,
    /// ResNet architecture (`resnet50`, ...), weights file and its sha256.
    pub arch: String,
    pub backbone: PathBuf,
    pub backbone_sha256: String,
    pub preprocess_version: String,
    /// Side of the square the images are resized to (224 as in the seed; runs written before this
    /// field existed are 224).
    #[serde(default = "default_image_size")]
    pub image_size: usize,
    pub feature_cache: PathBuf,
    /// How the vocabulary and split were made.
    pub min_freq: usize,
    pub vocab_from: String,
    pub split_source: String,
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
