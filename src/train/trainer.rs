//! The training loop: seeded shuffling, teacher-forced batches, Adam, validation every epoch,
//! best checkpoint, exact resume from `last/`, early stopping, progress and Ctrl-C.

use crate::model::CaptionModel;
use crate::progress::{Level, Progress, Unit};
use crate::run::{DecoderKind, RunDir, TrainConfig};
use crate::train::batches::{epoch_order, make_batch, Caption, TrainData};
use crate::train::checkpoint::{self, RngState, TrainState};
use crate::train::learner::learner;
use crate::train::loss::batch_loss;
use crate::train::metrics_log::{write_metrics, EpochMetrics};
use crate::{Error, Result};
use candle_core::Tensor;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// How the loop starts and stops.
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// Continue from `run_dir/last/` instead of starting fresh.
    pub resume: bool,
    /// Checked after every batch; when set, `last/` is written and `Error::Interrupted` returned.
    /// Each run has its own flag (the binary's Ctrl-C handler sets the one it passed).
    pub stop: Arc<AtomicBool>,
}

/// What a finished run achieved.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// Epochs finished, over all sessions of the run.
    pub epochs_done: usize,
    /// The best validation loss, if an epoch finished.
    pub best_val_loss: Option<f64>,
    /// The epoch of the best validation loss (its weights are `best.safetensors`).
    pub best_epoch: Option<usize>,
    /// Whether early stopping ended the run before its last epoch.
    pub stopped_early: bool,
    /// Every finished epoch's metrics.
    pub history: Vec<EpochMetrics>,
}

/// Mean loss over all real tokens of `captions` (head in eval mode), in batches of `batch_size`.
pub fn evaluate(
    model: &mut CaptionModel,
    features: &Tensor,
    captions: &[Caption],
    batch_size: usize,
) -> Result<f64> {
    let idx: Vec<usize> = (0..captions.len()).collect();
    crate::pool::in_pool(|| {
        let (mut sum, mut tokens) = (0f64, 0usize);
        for chunk in idx.chunks(batch_size.max(1)) {
            let (f, b) = make_batch(features, captions, chunk)?;
            let loss = batch_loss(model, &f, &b, false)?.to_scalar::<f32>()? as f64;
            sum += loss * b.tokens as f64;
            tokens += b.tokens;
        }
        Ok(sum / tokens.max(1) as f64)
    })
}

/// Sets the head's BatchNorm statistics from the features of the images of `captions`, each image
/// counted once per caption (as often as it appears in training batches).
pub fn set_bn_statistics(
    model: &mut CaptionModel,
    features: &Tensor,
    captions: &[Caption],
) -> Result<()> {
    let mut counts: BTreeMap<usize, u32> = BTreeMap::new();
    for c in captions {
        *counts.entry(c.image).or_default() += 1;
    }
    let rows: Vec<u32> = counts.keys().map(|&r| r as u32).collect();
    let counts: Vec<u32> = counts.into_values().collect();
    let rows = Tensor::new(rows.as_slice(), features.device())?;
    let x = features.index_select(&rows, 0)?;
    crate::pool::in_pool(|| model.head.set_statistics(&x, &counts))
}

/// Trains `data` into `run_dir` (best.safetensors, last/, metrics.jsonl, loss.png), reporting a
/// task per epoch and a summary line after each through `progress`.
pub fn train(
    run_dir: &Path,
    cfg: &TrainConfig,
    data: &TrainData,
    opts: &TrainOptions,
    progress: &dyn Progress,
) -> Result<TrainOutcome> {
    let files = RunDir::new(run_dir);
    data.validate(cfg.feature_dim, cfg.vocab_size)?;
    if cfg.batch_size < 2 && cfg.decoder == DecoderKind::Lstm {
        return Err(Error::Invalid(
            "batch size must be at least 2 (BatchNorm)".into(),
        ));
    }
    std::fs::create_dir_all(run_dir).map_err(|e| Error::io(run_dir, e))?;
    let have_last = checkpoint::recover_last(run_dir)?;
    let device = data.features.device().clone();
    let (mut learner, mut st) = if opts.resume {
        if !have_last {
            return Err(Error::Checkpoint {
                path: files.last(),
                msg: "nothing to resume: no complete last/ checkpoint".into(),
            });
        }
        let (weights, opt_state, mut st) = checkpoint::load_last(run_dir, &device)?;
        if !st.config.same_model(cfg) {
            return Err(Error::Checkpoint {
                path: files.last(),
                msg: "the run was started with a different configuration".into(),
            });
        }
        let mut unused = ChaCha8Rng::seed_from_u64(cfg.seed);
        let restore = Some((weights, opt_state, st.adam_step));
        let learner = learner(cfg, data, restore, &mut unused, &device)?;
        st.config = cfg.clone();
        (learner, st)
    } else {
        if have_last {
            return Err(Error::Invalid(format!(
                "{} already holds a training run; resume it or choose another run directory",
                run_dir.display()
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let learner = learner(cfg, data, None, &mut rng, &device)?;
        let rng = RngState::capture(&rng);
        let st = TrainState {
            config: cfg.clone(),
            epochs_done: 0,
            batches_done: 0,
            epoch_rng: rng.clone(),
            rng,
            partial_loss_sum: 0.0,
            partial_tokens: 0,
            partial_seconds: 0.0,
            best_val_loss: None,
            best_epoch: None,
            epochs_without_improvement: 0,
            adam_step: 0,
            history: Vec::new(),
        };
        (learner, st)
    };

    let n_batches = data.train.len().div_ceil(cfg.batch_size);
    let mut stopped_early = cfg.patience > 0 && st.epochs_without_improvement >= cfg.patience;
    while st.epochs_done < cfg.epochs && !stopped_early {
        let epoch = st.epochs_done + 1;
        // A fresh epoch shuffles with the current RNG; a resumed one replays its shuffle.
        let mut rng = if st.batches_done == 0 {
            st.epoch_rng = st.rng.clone();
            st.rng.restore()?
        } else {
            st.epoch_rng.restore()?
        };
        let order = epoch_order(data.train.len(), &mut rng);
        st.rng = RngState::capture(&rng);
        let task = progress.task(
            &format!("epoch {epoch}/{}", cfg.epochs),
            Some(n_batches as u64),
            Unit::Batches,
        );
        task.set_position(st.batches_done as u64);
        let start = Instant::now();
        let seconds_before = st.partial_seconds;
        for (bi, idx) in order
            .chunks(cfg.batch_size)
            .enumerate()
            .skip(st.batches_done)
        {
            // Dropout draws from a generator of this epoch and batch alone, so a resumed run
            // draws what the uninterrupted one would have.
            let mut batch_rng = ChaCha8Rng::seed_from_u64(cfg.seed);
            batch_rng.set_stream(((epoch as u64) << 32) | bi as u64);
            if let Some((l, tokens)) = learner.train_batch(data, idx, &mut batch_rng)? {
                st.partial_loss_sum += l * tokens as f64;
                st.partial_tokens += tokens as u64;
                let secs = seconds_before + start.elapsed().as_secs_f64();
                task.set_message(&format!(
                    "loss {l:.4} {:.0} tok/s",
                    st.partial_tokens as f64 / secs.max(1e-9)
                ));
            }
            st.batches_done = bi + 1;
            task.advance(1);
            if opts.stop.load(Ordering::SeqCst) {
                st.partial_seconds = seconds_before + start.elapsed().as_secs_f64();
                st.adam_step = learner.steps();
                checkpoint::save_last(
                    run_dir,
                    learner.weights()?,
                    learner.optimizer_state()?,
                    &st,
                )?;
                return Err(Error::Interrupted);
            }
        }
        task.finish();
        learner.end_epoch(data)?;
        let train_secs = seconds_before + start.elapsed().as_secs_f64();
        let val_loss = learner.val_loss(data, cfg.batch_size)?;
        let seconds = seconds_before + start.elapsed().as_secs_f64();
        let improved = st.best_val_loss.is_none_or(|b| val_loss < b);
        if improved {
            learner.save(&files.best())?;
            st.best_val_loss = Some(val_loss);
            st.best_epoch = Some(epoch);
            st.epochs_without_improvement = 0;
        } else {
            st.epochs_without_improvement += 1;
        }
        let m = EpochMetrics {
            epoch,
            train_loss: st.partial_loss_sum / st.partial_tokens.max(1) as f64,
            val_loss,
            seconds,
            tokens_per_s: st.partial_tokens as f64 / train_secs.max(1e-9),
            best: improved,
        };
        st.history.push(m.clone());
        st.epochs_done = epoch;
        st.batches_done = 0;
        st.partial_loss_sum = 0.0;
        st.partial_tokens = 0;
        st.partial_seconds = 0.0;
        st.adam_step = learner.steps();
        write_metrics(&files.metrics(), &st.history)?;
        let title = crate::train::plot::run_title(run_dir, cfg.embed, cfg.hidden);
        if let Err(e) = crate::train::plot::draw_loss(&files.plot(), &title, &st.history) {
            progress.log(Level::Warn, &format!("warning: {e}"));
        }
        checkpoint::save_last(run_dir, learner.weights()?, learner.optimizer_state()?, &st)?;
        stopped_early = cfg.patience > 0 && st.epochs_without_improvement >= cfg.patience;
        let line = format!(
            "epoch {epoch}/{}: train loss {:.4}, val loss {:.4}{}, {:.1} s, {:.0} tokens/s{}",
            cfg.epochs,
            m.train_loss,
            m.val_loss,
            if improved { " (best)" } else { "" },
            m.seconds,
            m.tokens_per_s,
            if stopped_early {
                format!("; no improvement for {} epochs, stopping", cfg.patience)
            } else {
                String::new()
            }
        );
        progress.log(Level::Info, &line);
    }
    Ok(TrainOutcome {
        epochs_done: st.epochs_done,
        best_val_loss: st.best_val_loss,
        best_epoch: st.best_epoch,
        stopped_early,
        history: st.history,
    })
}
