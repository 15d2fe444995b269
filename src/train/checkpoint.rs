//! `last/`: everything needed to resume a run exactly (weights with BatchNorm statistics, Adam's
//! moments and step, epoch and batch position, RNG state, best loss, metrics history).
//!
//! The folder is written as `last.tmp-<pid>/`, then swapped in by two renames
//! (`last/` → `last.old-<pid>/`, `last.tmp-<pid>/` → `last/`). `state.json` is written last, so
//! a folder without it is incomplete. After a kill -9 at any point, [`recover_last`] finds either
//! the old or the new complete folder and removes the leftovers.

use crate::run::{TrainConfig, LAST_DIR, OPTIMIZER_FILE, STATE_FILE, WEIGHTS_FILE};
use crate::train::metrics_log::EpochMetrics;
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A ChaCha8 generator's exact position (seed, stream, word position).
///
/// Written as `rand_chacha`'s own serde form, `{"seed": [32 bytes], "stream": n, "word_pos": n}`.
/// Runs saved before that wrote `{"seed": "<hex>", "stream": n, "word_pos": "<decimal>"}`; both
/// are read, so such a run still resumes exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct RngState(ChaCha8Rng);

impl RngState {
    /// The generator's current position (drawing from `rng` afterwards does not change it).
    pub fn capture(rng: &ChaCha8Rng) -> Self {
        Self(rng.clone())
    }

    /// A generator at the captured position.
    pub fn restore(&self) -> Result<ChaCha8Rng> {
        Ok(self.0.clone())
    }
}

impl Serialize for RngState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for RngState {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        // Buffered as a JSON value to tell the two forms apart by the seed (bytes or a hex
        // string). Not `#[serde(untagged)]`: serde's own buffer has no u128, the type of
        // `word_pos`. A JSON value holds it up to u64::MAX words, far beyond any run.
        let v = serde_json::Value::deserialize(d)?;
        let rng = if v.get("seed").is_some_and(serde_json::Value::is_string) {
            let old: LegacyRngState = serde_json::from_value(v).map_err(D::Error::custom)?;
            old.restore().map_err(D::Error::custom)?
        } else {
            serde_json::from_value(v).map_err(D::Error::custom)?
        };
        Ok(Self(rng))
    }
}

/// The hand-written form of runs saved before `rand_chacha`'s serde support was used.
#[derive(Deserialize)]
struct LegacyRngState {
    seed: String,
    stream: u64,
    /// The word position (a u128, as a decimal string).
    word_pos: String,
}

impl LegacyRngState {
    fn restore(&self) -> std::result::Result<ChaCha8Rng, String> {
        use rand::SeedableRng;
        let bad = |m: &str| format!("bad RNG state: {m}");
        let bytes = hex::decode(&self.seed).map_err(|_| bad("seed"))?;
        let seed: [u8; 32] = bytes.try_into().map_err(|_| bad("seed length"))?;
        let pos: u128 = self.word_pos.parse().map_err(|_| bad("word_pos"))?;
        let mut rng = ChaCha8Rng::from_seed(seed);
        rng.set_stream(self.stream);
        rng.set_word_pos(pos);
        Ok(rng)
    }
}

/// Progress of a run, saved as `last/state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainState {
    /// The run's hyper-parameters.
    pub config: TrainConfig,
    /// Epochs fully finished (validated, logged).
    pub epochs_done: usize,
    /// Batches of epoch `epochs_done + 1` already trained (non-zero after an interrupt).
    pub batches_done: usize,
    /// The RNG before this epoch's shuffle (restored to replay the same order mid-epoch).
    pub epoch_rng: RngState,
    /// The RNG now (the next epoch shuffles with it).
    pub rng: RngState,
    /// The epoch in progress so far: the sum of loss × tokens,
    pub partial_loss_sum: f64,
    /// its tokens,
    pub partial_tokens: u64,
    /// and its seconds.
    pub partial_seconds: f64,
    /// The best validation loss so far.
    pub best_val_loss: Option<f64>,
    /// The epoch it came from.
    pub best_epoch: Option<usize>,
    /// Epochs since it last improved (early stopping counts these).
    pub epochs_without_improvement: usize,
    /// Adam's step count (its bias correction depends on it).
    pub adam_step: u64,
    /// Every finished epoch's metrics (`metrics.jsonl` is rewritten from them).
    pub history: Vec<EpochMetrics>,
}

fn ckpt_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        msg: e.to_string(),
    }
}

/// Through `write_atomic_with` although the folder is new: it syncs the file (state.json, written
/// last, must not reach the disk before the tensors do) and gives it the usual permissions rather
/// than the 0600 of safetensors' own temp file.
fn save_tensors(path: &Path, tensors: Vec<(String, Tensor)>) -> Result<()> {
    let map: HashMap<String, Tensor> = tensors.into_iter().collect();
    crate::fsutil::write_atomic_with(path, |tmp| {
        candle_core::safetensors::save(&map, tmp).map_err(|e| ckpt_err(path, e))
    })
}

/// Writes `last/` for `run_dir` (see the module doc for why it survives a kill -9).
///
/// The folder swap stays hand-written rather than a `tempfile::TempDir`: `persist` exists only for
/// files (a folder cannot be renamed over a non-empty `last/`), so the two renames would remain,
/// and [`recover_last`] must recognise a kill -9's leftovers by the `last.tmp-`/`last.old-` names
/// either way. A `TempDir` would only add its removal on error, which `recover_last` already does.
pub fn save_last(
    run_dir: &Path,
    weights: Vec<(String, Tensor)>,
    optimizer: Vec<(String, Tensor)>,
    state: &TrainState,
) -> Result<()> {
    let pid = std::process::id();
    let tmp = run_dir.join(format!("{LAST_DIR}.tmp-{pid}"));
    let old = run_dir.join(format!("{LAST_DIR}.old-{pid}"));
    let last = run_dir.join(LAST_DIR);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    save_tensors(&tmp.join(WEIGHTS_FILE), weights)?;
    save_tensors(&tmp.join(OPTIMIZER_FILE), optimizer)?;
    crate::fsutil::write_json_atomic(&tmp.join(STATE_FILE), state)?;
    if last.exists() {
        std::fs::rename(&last, &old).map_err(|e| Error::io(&last, e))?;
    }
    std::fs::rename(&tmp, &last).map_err(|e| Error::io(&last, e))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    }
    Ok(())
}

fn is_complete(dir: &Path) -> bool {
    [WEIGHTS_FILE, OPTIMIZER_FILE, STATE_FILE]
        .iter()
        .all(|f| dir.join(f).is_file())
        && crate::fsutil::read_json::<TrainState>(&dir.join(STATE_FILE)).is_ok()
}

fn leftovers(run_dir: &Path) -> Result<Vec<PathBuf>> {
    let Ok(rd) = std::fs::read_dir(run_dir) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| Error::io(run_dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // `last.tmp-*`/`last.old-*` folders of an interrupted swap, and the temp files of atomic
        // writes (config.json, vocab.json, ...) killed mid-write.
        if name.starts_with(&format!("{LAST_DIR}.tmp-"))
            || name.starts_with(&format!("{LAST_DIR}.old-"))
            || crate::fsutil::is_temp_file_name(&name)
        {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Repairs `run_dir` after a crash: if `last/` is missing but a complete `last.old-*` exists
/// (killed between the two renames), it becomes `last/` again; every other leftover temp folder
/// or temp file is removed. Returns whether a complete `last/` exists afterwards.
pub fn recover_last(run_dir: &Path) -> Result<bool> {
    let last = run_dir.join(LAST_DIR);
    let mut found = is_complete(&last);
    for dir in leftovers(run_dir)? {
        let is_old = dir
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{LAST_DIR}.old-")));
        if dir.is_file() {
            std::fs::remove_file(&dir).map_err(|e| Error::io(&dir, e))?;
        } else if !found && !last.exists() && is_old && is_complete(&dir) {
            std::fs::rename(&dir, &last).map_err(|e| Error::io(&dir, e))?;
            found = true;
        } else {
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
    }
    Ok(found)
}

/// A saved model's tensors and the file they came from (for errors).
pub struct SavedTensors {
    /// The file.
    pub path: PathBuf,
    /// Its tensors by name.
    pub tensors: HashMap<String, Tensor>,
}

/// Reads `last/`: the model's tensors, the optimiser state (applied to a fresh optimiser by the
/// caller) and the training state.
pub fn load_last(
    run_dir: &Path,
    device: &Device,
) -> Result<(SavedTensors, HashMap<String, Tensor>, TrainState)> {
    let last = run_dir.join(LAST_DIR);
    let state: TrainState = crate::fsutil::read_json(&last.join(STATE_FILE))?;
    let path = last.join(WEIGHTS_FILE);
    let tensors = candle_core::safetensors::load(&path, device).map_err(|e| ckpt_err(&path, e))?;
    let model = SavedTensors { path, tensors };
    let opt_path = last.join(OPTIMIZER_FILE);
    let opt =
        candle_core::safetensors::load(&opt_path, device).map_err(|e| ckpt_err(&opt_path, e))?;
    Ok((model, opt, state))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn draws(rng: &mut ChaCha8Rng) -> Vec<u64> {
        (0..50).map(|_| rng.random()).collect()
    }

    /// A generator part-way through a stream other than 0, as a run's would be.
    fn advanced() -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        rng.set_stream(7);
        for _ in 0..1001 {
            let _: u32 = rng.random();
        }
        rng
    }

    #[test]
    fn round_trip_continues_the_exact_stream() {
        let mut rng = advanced();
        let json = serde_json::to_string(&RngState::capture(&rng)).unwrap();
        let back: RngState = serde_json::from_str(&json).unwrap();
        let mut restored = back.restore().unwrap();
        assert_eq!(draws(&mut restored), draws(&mut rng));
        // Written as rand_chacha's serde form.
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert!(v["seed"].is_array(), "{json}");
    }

    /// `state.json` of a run saved by the hand-written form resumes at the same position.
    #[test]
    fn legacy_state_resumes_at_the_same_position() {
        let mut rng = advanced();
        let legacy = serde_json::json!({
            "seed": hex::encode(rng.get_seed()),
            "stream": rng.get_stream(),
            "word_pos": rng.get_word_pos().to_string(),
        });
        let back: RngState = serde_json::from_value(legacy).unwrap();
        assert_eq!(back, RngState::capture(&rng));
        assert_eq!(draws(&mut back.restore().unwrap()), draws(&mut rng));
    }

    /// `word_pos` is a u128; the JSON buffer must not lose it near u64::MAX.
    #[test]
    fn large_word_position_survives() {
        let mut rng = advanced();
        rng.set_word_pos(u128::from(u64::MAX) - 3);
        let json = serde_json::to_string(&RngState::capture(&rng)).unwrap();
        let back: RngState = serde_json::from_str(&json).unwrap();
        assert_eq!(back.restore().unwrap().get_word_pos(), rng.get_word_pos());
        assert_eq!(draws(&mut back.restore().unwrap()), draws(&mut rng));
    }

    #[test]
    fn bad_legacy_state_is_an_error() {
        let bad = serde_json::json!({"seed": "abcd", "stream": 0, "word_pos": "0"});
        let err = serde_json::from_value::<RngState>(bad).unwrap_err();
        assert!(err.to_string().contains("seed length"), "{err}");
    }
}
