//! One row of `metrics.jsonl` per epoch; the whole file is rewritten atomically from the history
//! kept in the training state, so it always agrees with `last/` after a crash or resume.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// What one epoch measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// The epoch, counted from 1.
    pub epoch: usize,
    /// Mean cross-entropy over the epoch's real training tokens (head in training mode).
    pub train_loss: f64,
    /// Mean cross-entropy over all real validation tokens (head in eval mode).
    pub val_loss: f64,
    /// Wall time of the epoch (training and validation).
    pub seconds: f64,
    /// Training tokens scored per second.
    pub tokens_per_s: f64,
    /// Whether this epoch's weights became `best.safetensors`.
    pub best: bool,
}

/// Writes `history` as JSON lines to `path`, atomically.
pub fn write_metrics(path: &Path, history: &[EpochMetrics]) -> Result<()> {
    let mut text = String::new();
    for m in history {
        let line = serde_json::to_string(m)
            .map_err(|e| Error::format(path, format!("cannot serialise metrics: {e}")))?;
        text.push_str(&line);
        text.push('\n');
    }
    crate::fsutil::write_atomic(path, text.as_bytes())
}

/// Reads `metrics.jsonl`.
pub fn read_metrics(path: &Path) -> Result<Vec<EpochMetrics>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| Error::format(path, format!("line {}: {e}", i + 1)))
        })
        .collect()
}
