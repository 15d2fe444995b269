//! [`RunDir`]: the name of every file a run directory holds, in one place.

use std::path::{Path, PathBuf};

/// Hyper-parameters, data and backbone of the run.
pub const CONFIG_FILE: &str = "config.json";
/// The vocabulary the decoder was trained with.
pub const VOCAB_FILE: &str = "vocab.json";
/// The split by image the run used.
pub const SPLIT_FILE: &str = "split.json";
/// Weights of the epoch with the best validation loss: what `caption`, `eval` and `serve` load.
pub const BEST_FILE: &str = "best.safetensors";
/// One JSON object per finished epoch.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// Train and validation loss per epoch, drawn after every epoch.
pub const PLOT_FILE: &str = "loss.png";
/// The same plot as SVG, beside it.
pub const PLOT_SVG_FILE: &str = "loss.svg";
/// The feature cache, unless the run was given another.
pub const FEATURES_DIR: &str = "features";
/// Everything needed to resume exactly (see `train::checkpoint`).
pub const LAST_DIR: &str = "last";
/// `last/`: weights with the BatchNorm statistics.
pub const WEIGHTS_FILE: &str = "weights.safetensors";
/// `last/`: Adam's moments.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// `last/`: epoch and batch position, RNG state, best loss, history. Written last.
pub const STATE_FILE: &str = "state.json";

/// A run directory (`train --run DIR`) and the paths of its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    dir: PathBuf,
}

impl RunDir {
    /// The run directory at `dir` (nothing is read or created).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `config.json`.
    pub fn config(&self) -> PathBuf {
        self.dir.join(CONFIG_FILE)
    }

    /// `vocab.json`.
    pub fn vocab(&self) -> PathBuf {
        self.dir.join(VOCAB_FILE)
    }

    /// `split.json`.
    pub fn split(&self) -> PathBuf {
        self.dir.join(SPLIT_FILE)
    }

    /// `best.safetensors`.
    pub fn best(&self) -> PathBuf {
        self.dir.join(BEST_FILE)
    }

    /// `metrics.jsonl`.
    pub fn metrics(&self) -> PathBuf {
        self.dir.join(METRICS_FILE)
    }

    /// `loss.png`.
    pub fn plot(&self) -> PathBuf {
        self.dir.join(PLOT_FILE)
    }

    /// `loss.svg`.
    pub fn plot_svg(&self) -> PathBuf {
        self.dir.join(PLOT_SVG_FILE)
    }

    /// `features/`, the default feature cache.
    pub fn features(&self) -> PathBuf {
        self.dir.join(FEATURES_DIR)
    }

    /// `last/`.
    pub fn last(&self) -> PathBuf {
        self.dir.join(LAST_DIR)
    }
}
