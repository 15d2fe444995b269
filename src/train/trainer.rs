//! The training loop: seeded shuffling, teacher-forced batches, Adam, validation every epoch,
//! best checkpoint, exact resume from `last/`, early stopping, progress and Ctrl-C.

use crate::train::adam::{Adam, AdamConfig};
use crate::train::batches::{epoch_order, make_batch, Caption, TrainData};
use crate::train::checkpoint::{self, RngState, TrainState};
use crate::train::metrics_log::{write_metrics, EpochMetrics};
use crate::train::CaptionModel;
use crate::{Error, Result};
use candle_core::Tensor;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

pub const BEST_FILE: &str = "best.safetensors";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const PLOT_FILE: &str = "loss.png";

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

/// Hyper-parameters of a run (saved in `last/state.json`; the CLI also writes it as config.json).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub seed: u64,
    /// Stop after this many epochs without a better validation loss; 0 turns it off.
    pub patience: usize,
    pub embed: usize,
    pub hidden: usize,
    pub feature_dim: usize,
    pub vocab_size: usize,
    /// How the head's BatchNorm statistics are kept (`precise` for new runs).
    #[serde(default)]
    pub bn_statistics: BnStatistics,
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
        }
    }

    /// Fields that must agree between a run and its resumption (epochs and patience may change).
    fn same_model(&self, o: &TrainConfig) -> bool {
        (
            self.batch_size,
            self.seed,
            self.embed,
            self.hidden,
            self.feature_dim,
            self.vocab_size,
            self.bn_statistics,
        ) == (
            o.batch_size,
            o.seed,
            o.embed,
            o.hidden,
            o.feature_dim,
            o.vocab_size,
            o.bn_statistics,
        ) && self.lr == o.lr
    }
}

/// How the loop reports and stops.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Continue from `run_dir/last/` instead of starting fresh.
    pub resume: bool,
    /// Show a progress bar per epoch.
    pub progress: bool,
    /// Print one summary line per epoch on stderr.
    pub summary: bool,
    /// Checked after every batch; when set, `last/` is written and `Error::Interrupted` returned.
    pub stop: Arc<AtomicBool>,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            resume: false,
            progress: true,
            summary: true,
            stop: crate::train::interrupt::global(),
        }
    }
}

/// What a finished run achieved.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    pub epochs_done: usize,
    pub best_val_loss: Option<f64>,
    pub best_epoch: Option<usize>,
    pub stopped_early: bool,
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
            let loss = model.loss(&f, &b, false)?.to_scalar::<f32>()? as f64;
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

fn progress_bar(n: usize, epoch: usize, epochs: usize, show: bool) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(
        Some(n as u64),
        if show {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    if let Ok(style) =
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_prefix(format!("epoch {epoch}/{epochs}"));
    pb
}

/// Trains `data` into `run_dir` (best.safetensors, last/, metrics.jsonl, loss.png).
pub fn train(
    run_dir: &Path,
    cfg: &TrainConfig,
    data: &TrainData,
    opts: &TrainOptions,
) -> Result<TrainOutcome> {
    data.validate(cfg.feature_dim, cfg.vocab_size)?;
    if cfg.batch_size < 2 {
        return Err(Error::Invalid(
            "batch size must be at least 2 (BatchNorm)".into(),
        ));
    }
    std::fs::create_dir_all(run_dir).map_err(|e| Error::io(run_dir, e))?;
    let have_last = checkpoint::recover_last(run_dir)?;
    let device = data.features.device().clone();
    let adam_cfg = AdamConfig {
        lr: cfg.lr,
        ..AdamConfig::default()
    };
    let (mut model, mut opt, mut st) = if opts.resume {
        if !have_last {
            return Err(Error::Checkpoint {
                path: run_dir.join(checkpoint::LAST_DIR),
                msg: "nothing to resume: no complete last/ checkpoint".into(),
            });
        }
        let (model, opt_state, mut st) = checkpoint::load_last(run_dir, &device)?;
        if !st.config.same_model(cfg) {
            return Err(Error::Checkpoint {
                path: run_dir.join(checkpoint::LAST_DIR),
                msg: "the run was started with a different configuration".into(),
            });
        }
        let mut opt = Adam::new(model.vars(), adam_cfg)?;
        opt.load_state(&opt_state, st.adam_step)?;
        st.config = cfg.clone();
        (model, opt, st)
    } else {
        if have_last {
            return Err(Error::Invalid(format!(
                "{} already holds a training run; resume it or choose another run directory",
                run_dir.display()
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let model = CaptionModel::new(
            cfg.feature_dim,
            cfg.vocab_size,
            cfg.embed,
            cfg.hidden,
            &mut rng,
            &device,
        )?;
        let opt = Adam::new(model.vars(), adam_cfg)?;
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
        (model, opt, st)
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
        let pb = progress_bar(n_batches, epoch, cfg.epochs, opts.progress);
        pb.set_position(st.batches_done as u64);
        let start = Instant::now();
        let seconds_before = st.partial_seconds;
        for (bi, idx) in order
            .chunks(cfg.batch_size)
            .enumerate()
            .skip(st.batches_done)
        {
            // BatchNorm cannot train on one row; PyTorch would fail, we skip that last caption.
            if idx.len() >= 2 {
                let (f, b) = make_batch(&data.features, &data.train, idx)?;
                let l = crate::pool::in_pool(|| -> Result<f64> {
                    let loss = model.loss(&f, &b, true)?;
                    let grads = loss.backward()?;
                    opt.step(&grads)?;
                    Ok(loss.to_scalar::<f32>()? as f64)
                })?;
                st.partial_loss_sum += l * b.tokens as f64;
                st.partial_tokens += b.tokens as u64;
                let secs = seconds_before + start.elapsed().as_secs_f64();
                pb.set_message(format!(
                    "loss {l:.4} {:.0} tok/s",
                    st.partial_tokens as f64 / secs.max(1e-9)
                ));
            }
            st.batches_done = bi + 1;
            pb.inc(1);
            if opts.stop.load(Ordering::SeqCst) {
                pb.abandon();
                st.partial_seconds = seconds_before + start.elapsed().as_secs_f64();
                st.adam_step = opt.step_count();
                checkpoint::save_last(run_dir, &model, &opt, &st)?;
                return Err(Error::Interrupted);
            }
        }
        pb.finish_and_clear();
        if cfg.bn_statistics == BnStatistics::Precise {
            set_bn_statistics(&mut model, &data.features, &data.train)?;
        }
        let train_secs = seconds_before + start.elapsed().as_secs_f64();
        let val_loss = evaluate(&mut model, &data.features, &data.val, cfg.batch_size)?;
        let seconds = seconds_before + start.elapsed().as_secs_f64();
        let improved = st.best_val_loss.is_none_or(|b| val_loss < b);
        if improved {
            model.save(&run_dir.join(BEST_FILE))?;
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
        st.adam_step = opt.step_count();
        write_metrics(&run_dir.join(METRICS_FILE), &st.history)?;
        let title = crate::train::plot::run_title(run_dir, cfg.embed, cfg.hidden);
        if let Err(e) = crate::train::plot::draw_loss(&run_dir.join(PLOT_FILE), &title, &st.history)
        {
            eprintln!("warning: {e}");
        }
        checkpoint::save_last(run_dir, &model, &opt, &st)?;
        stopped_early = cfg.patience > 0 && st.epochs_without_improvement >= cfg.patience;
        if opts.summary {
            eprintln!(
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
        }
    }
    Ok(TrainOutcome {
        epochs_done: st.epochs_done,
        best_val_loss: st.best_val_loss,
        best_epoch: st.best_epoch,
        stopped_early,
        history: st.history,
    })
}
