//! The training loop at library level on small random data: exact resume (also from a mid-epoch
//! interrupt), recovery from leftover temp folders, early stopping, the run directory's files.

use crate::common::{max_diff, model_tensors};
use candle_core::{Device, Tensor};
use captioner::model::CaptionModel;
use captioner::progress::Silent;
use captioner::run::{BnStatistics, TrainConfig, LAST_DIR, STATE_FILE, WEIGHTS_FILE};
use captioner::train::metrics_log::read_metrics;
use captioner::train::TrainOutcome;
use captioner::train::{evaluate, set_bn_statistics, Caption, TrainData, TrainOptions};
use captioner::Error;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const VOCAB: usize = 20;

fn data() -> TrainData {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let n_images = 12;
    let feats: Vec<f32> = (0..n_images * 16)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let mut caps = |images: std::ops::Range<usize>| {
        let mut v = Vec::new();
        for image in images {
            for _ in 0..3 {
                let len = rng.random_range(1..7);
                let tokens = (0..len)
                    .map(|_| rng.random_range(4..VOCAB as u32))
                    .collect();
                v.push(Caption { image, tokens });
            }
        }
        v
    };
    let train = caps(0..10);
    let val = caps(10..12);
    TrainData {
        spatial: None,
        features: Tensor::from_vec(feats, (n_images, 16), &Device::Cpu).unwrap(),
        train,
        val,
    }
}

fn config(epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 8,
        patience: 0,
        embed: 8,
        hidden: 16,
        seed: 3,
        ..TrainConfig::new(16, VOCAB)
    }
}

fn quiet(resume: bool) -> TrainOptions {
    TrainOptions {
        resume,
        stop: Arc::new(AtomicBool::new(false)),
    }
}

/// The library's training loop, reporting nothing.
fn train(
    dir: &Path,
    cfg: &TrainConfig,
    data: &TrainData,
    opts: &TrainOptions,
) -> captioner::Result<TrainOutcome> {
    captioner::train::train(dir, cfg, data, opts, &Silent)
}

fn weights(run: &Path) -> Vec<(String, Vec<f32>)> {
    model_tensors(&run.join(LAST_DIR).join(WEIGHTS_FILE))
}

fn straight_run(dir: &Path, epochs: usize) -> Vec<(String, Vec<f32>)> {
    let out = train(dir, &config(epochs), &data(), &quiet(false)).unwrap();
    assert_eq!(out.epochs_done, epochs);
    weights(dir)
}

#[test]
fn four_epochs_equal_two_plus_resume_two() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let wa = straight_run(a.path(), 4);
    train(b.path(), &config(2), &data(), &quiet(false)).unwrap();
    let out = train(b.path(), &config(4), &data(), &quiet(true)).unwrap();
    assert_eq!(out.epochs_done, 4);
    let d = max_diff(&wa, &weights(b.path()));
    assert!(d <= 1e-6, "weights differ by {d}");
    let ma = read_metrics(&a.path().join("metrics.jsonl")).unwrap();
    let mb = read_metrics(&b.path().join("metrics.jsonl")).unwrap();
    assert_eq!(ma.len(), 4);
    for (x, y) in ma.iter().zip(&mb) {
        assert_eq!(
            (x.epoch, x.train_loss, x.val_loss),
            (y.epoch, y.train_loss, y.val_loss)
        );
    }
    // The losses must actually move: a loop that never updated would also "resume exactly".
    assert!(
        ma[3].train_loss < ma[0].train_loss,
        "training did not lower the loss: {ma:?}"
    );
}

#[test]
fn interrupt_mid_epoch_writes_last_and_resume_is_exact() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let wa = straight_run(a.path(), 3);
    let opts = quiet(false);
    opts.stop.store(true, Ordering::SeqCst);
    let err = train(b.path(), &config(3), &data(), &opts).unwrap_err();
    assert!(matches!(err, Error::Interrupted), "{err}");
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(b.path().join("last").join(STATE_FILE)).unwrap(),
    )
    .unwrap();
    assert_eq!(state["epochs_done"], 0);
    assert_eq!(
        state["batches_done"], 1,
        "the interrupted batch was not finished and saved"
    );
    // A second interrupt, after the next batch, then a clean finish.
    train(
        b.path(),
        &config(3),
        &data(),
        &TrainOptions {
            resume: true,
            ..opts.clone()
        },
    )
    .unwrap_err();
    let out = train(b.path(), &config(3), &data(), &quiet(true)).unwrap();
    assert_eq!(out.epochs_done, 3);
    let d = max_diff(&wa, &weights(b.path()));
    assert!(d <= 1e-6, "weights differ by {d}");
}

#[test]
fn leftover_temp_folders_do_not_break_resume() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let wa = straight_run(a.path(), 3);
    train(b.path(), &config(2), &data(), &quiet(false)).unwrap();
    // A half-written new folder (no state.json) from a process killed while saving.
    let tmp = b.path().join("last.tmp-999999");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(tmp.join(WEIGHTS_FILE), b"truncated").unwrap();
    // And the temp file of an atomic write killed midway (config.json, metrics.jsonl, ...).
    let half = b.path().join(".metrics.jsonl.tmp-AbC123");
    std::fs::write(&half, b"{\"epoch\": 1, \"train_lo").unwrap();
    let out = train(b.path(), &config(3), &data(), &quiet(true)).unwrap();
    assert_eq!(out.epochs_done, 3);
    assert!(!tmp.exists(), "leftover temp folder not cleaned up");
    assert!(!half.exists(), "leftover temp file not cleaned up");
    assert!(max_diff(&wa, &weights(b.path())) <= 1e-6);

    // Killed between the two renames: only last.old-<pid> (complete) and a complete tmp exist.
    let c = tempfile::tempdir().unwrap();
    train(c.path(), &config(2), &data(), &quiet(false)).unwrap();
    std::fs::rename(c.path().join("last"), c.path().join("last.old-424242")).unwrap();
    let tmp = c.path().join("last.tmp-424242");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(tmp.join(STATE_FILE), b"{not json").unwrap();
    let out = train(c.path(), &config(3), &data(), &quiet(true)).unwrap();
    assert_eq!(out.epochs_done, 3);
    assert!(max_diff(&wa, &weights(c.path())) <= 1e-6);
}

#[test]
fn early_stopping_keeps_the_best_weights() {
    let dir = tempfile::tempdir().unwrap();
    // A large learning rate on tiny data overfits within a few epochs.
    let cfg = TrainConfig {
        lr: 0.03,
        patience: 2,
        ..config(40)
    };
    let out = train(dir.path(), &cfg, &data(), &quiet(false)).unwrap();
    let hist = read_metrics(&dir.path().join("metrics.jsonl")).unwrap();
    assert_eq!(hist.len(), out.epochs_done);
    assert!(out.stopped_early, "never stopped: {hist:?}");
    let tail = &hist[hist.len() - 2..];
    assert!(
        tail.iter().all(|m| !m.best),
        "stopped while still improving"
    );
    let best = out.best_val_loss.unwrap();
    let min = hist
        .iter()
        .map(|m| m.val_loss)
        .fold(f64::INFINITY, f64::min);
    assert_eq!(best, min);
    let mut m = CaptionModel::load(&dir.path().join("best.safetensors"), &Device::Cpu).unwrap();
    let d = data();
    let again = evaluate(&mut m, &d.features, &d.val, 8).unwrap();
    assert!(
        (again - best).abs() < 1e-6,
        "best.safetensors gives {again}, best was {best}"
    );
    let png = image::open(dir.path().join("loss.png")).unwrap();
    assert_eq!((png.width(), png.height()), (640, 400));
}

#[test]
fn fresh_run_refuses_a_directory_with_a_run_in_it() {
    let dir = tempfile::tempdir().unwrap();
    train(dir.path(), &config(1), &data(), &quiet(false)).unwrap();
    let err = train(dir.path(), &config(1), &data(), &quiet(false)).unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err}");
}

/// Mean and unbiased variance per column of `Linear(features[c.image])` over every caption `c`, in f64.
fn bn_statistics_by_hand(model: &CaptionModel, d: &TrainData) -> (Vec<f64>, Vec<f64>) {
    let w: Vec<Vec<f32>> = model.head.linear_weight.as_tensor().to_vec2().unwrap();
    let b: Vec<f32> = model.head.linear_bias.as_tensor().to_vec1().unwrap();
    let f: Vec<Vec<f32>> = d.features.to_vec2().unwrap();
    let ys: Vec<Vec<f64>> = d
        .train
        .iter()
        .map(|c| {
            w.iter()
                .zip(&b)
                .map(|(row, &bias)| {
                    bias as f64
                        + row
                            .iter()
                            .zip(&f[c.image])
                            .map(|(&a, &x)| a as f64 * x as f64)
                            .sum::<f64>()
                })
                .collect()
        })
        .collect();
    let n = ys.len() as f64;
    let mean: Vec<f64> = (0..b.len())
        .map(|j| ys.iter().map(|y| y[j]).sum::<f64>() / n)
        .collect();
    let var = (0..b.len())
        .map(|j| ys.iter().map(|y| (y[j] - mean[j]).powi(2)).sum::<f64>() / (n - 1.0))
        .collect();
    (mean, var)
}

fn close(got: &Tensor, want: &[f64], what: &str) {
    let got: Vec<f32> = got.to_vec1().unwrap();
    assert_eq!(got.len(), want.len());
    for (j, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()),
            "{what}[{j}]: {g} vs {w}"
        );
    }
}

#[test]
fn precise_bn_statistics_are_the_training_features_own_and_leave_training_unchanged() {
    // Uneven caption counts per image, so the per-caption weighting matters.
    let mut d = data();
    d.train
        .retain(|c| c.image % 3 != 0 || c.tokens.len() % 2 == 0);
    let precise_dir = tempfile::tempdir().unwrap();
    let ema_dir = tempfile::tempdir().unwrap();
    let precise = config(3);
    assert_eq!(precise.bn_statistics, BnStatistics::Precise, "the default");
    let ema = TrainConfig {
        bn_statistics: BnStatistics::Ema,
        ..config(3)
    };
    train(precise_dir.path(), &precise, &d, &quiet(false)).unwrap();
    train(ema_dir.path(), &ema, &d, &quiet(false)).unwrap();

    // The checkpoints' statistics are those of their own weights over the training captions.
    for file in ["best.safetensors", "last/weights.safetensors"] {
        let m = CaptionModel::load(&precise_dir.path().join(file), &Device::Cpu).unwrap();
        let (mean, var) = bn_statistics_by_hand(&m, &d);
        close(&m.head.running_mean, &mean, &format!("{file} running_mean"));
        close(&m.head.running_var, &var, &format!("{file} running_var"));
    }
    // The running averages are not (they trail the weights).
    let m = CaptionModel::load(
        &ema_dir.path().join("last/weights.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let (mean, _) = bn_statistics_by_hand(&m, &d);
    let got: Vec<f32> = m.head.running_mean.to_vec1().unwrap();
    let off = got
        .iter()
        .zip(&mean)
        .map(|(&g, &w)| (g as f64 - w).abs())
        .fold(0.0, f64::max);
    assert!(off > 1e-2, "EMA statistics equal the precise ones ({off})");

    // Training is the same: every parameter is bit-equal, only the statistics differ.
    let (p, e) = (weights(precise_dir.path()), weights(ema_dir.path()));
    for ((name, a), (_, b)) in p.iter().zip(&e) {
        if name.contains("running_") {
            assert_ne!(a, b, "{name}");
        } else {
            assert_eq!(a, b, "{name}");
        }
    }
}

#[test]
fn set_bn_statistics_counts_each_image_once_per_caption() {
    let d = data();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut m = CaptionModel::new(16, VOCAB, 8, 16, &mut rng, &Device::Cpu).unwrap();
    // Image 0 five more times: the statistics move towards its projection.
    let mut weighted = d.clone();
    for _ in 0..5 {
        weighted.train.push(weighted.train[0].clone());
    }
    set_bn_statistics(&mut m, &weighted.features, &weighted.train).unwrap();
    let (mean, var) = bn_statistics_by_hand(&m, &weighted);
    close(&m.head.running_mean, &mean, "running_mean");
    close(&m.head.running_var, &var, "running_var");
    let (plain_mean, _) = bn_statistics_by_hand(&m, &d);
    assert!(mean
        .iter()
        .zip(&plain_mean)
        .any(|(a, b)| (a - b).abs() > 1e-3));
    // One caption is not enough for an unbiased variance.
    let one = &d.train[..1];
    let err = set_bn_statistics(&mut m, &d.features, one).unwrap_err();
    assert!(err.to_string().contains("at least 2"), "{err}");
}
