//! `captioner train` end to end on a small synth corpus with a random ResNet-18: the run directory,
//! exact resume through the CLI, Ctrl-C (exit 130, complete `last/`), kill -9 at random moments,
//! and the tutorial preset.

use crate::common::{exe, features_cmd, init_resnet18, max_diff, model_tensors, ok, run_ok, synth};
use rand::{Rng, SeedableRng};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A 60-image corpus, a ResNet-18 backbone and its warm feature cache, shared by every test.
struct Fixture {
    _dir: tempfile::TempDir,
    data: PathBuf,
    backbone: PathBuf,
    cache: PathBuf,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        synth(&data, 60);
        let backbone = dir.path().join("resnet18.safetensors");
        init_resnet18(&backbone, None);
        let cache = dir.path().join("cache");
        run_ok(&mut features_cmd(&data, &backbone, &cache, &[]));
        Fixture {
            _dir: dir,
            data,
            backbone,
            cache,
        }
    })
}

/// `captioner train` on the fixture into `run`, with `extra` flags.
fn train_cmd(run: &Path, extra: &[&str]) -> Command {
    train_cmd_with_cache(run, &fixture().cache, extra)
}

/// [`train_cmd`] with another feature cache.
fn train_cmd_with_cache(run: &Path, cache: &Path, extra: &[&str]) -> Command {
    let f = fixture();
    let mut c = exe();
    c.arg("train")
        .arg("--data")
        .arg(&f.data)
        .arg("--backbone")
        .arg(&f.backbone)
        .arg("--cache")
        .arg(cache)
        .arg("--run")
        .arg(run)
        .args(["--arch", "resnet18", "--batch-size", "16", "--no-progress"])
        .args(extra);
    c
}

/// Starts a long training into `run` (stderr to `stderr`) and returns once its first epoch ended.
fn train_until_first_epoch(run: &Path, stderr: Stdio) -> std::process::Child {
    let mut child = train_cmd(run, &["--epochs", "1000", "--patience", "0"])
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while metrics(run).is_empty() {
        assert!(Instant::now() < deadline, "no epoch finished in time");
        assert!(child.try_wait().unwrap().is_none(), "train ended early");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn metrics(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn last_complete(run: &Path) -> bool {
    ["weights.safetensors", "optimizer.safetensors", "state.json"]
        .iter()
        .all(|f| run.join("last").join(f).is_file())
}

#[test]
fn run_directory_holds_config_vocab_split_checkpoints_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let out = ok(train_cmd(&run, &["--epochs", "2"]).output().unwrap());
    assert!(out.contains("best val loss"), "{out}");
    for f in [
        "config.json",
        "vocab.json",
        "split.json",
        "best.safetensors",
        "metrics.jsonl",
        "loss.png",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    assert!(last_complete(&run));
    let rows = metrics(&run);
    assert_eq!(rows.len(), 2);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r["epoch"].as_u64(), Some(i as u64 + 1));
        for k in ["train_loss", "val_loss", "seconds", "tokens_per_s"] {
            let v = r[k].as_f64().unwrap_or_else(|| panic!("{k} missing: {r}"));
            assert!(v.is_finite() && v > 0.0, "{k} = {v}");
        }
    }
    // Training lowers the loss.
    assert!(rows[1]["train_loss"].as_f64() < rows[0]["train_loss"].as_f64());

    let cfg = json(&run.join("config.json"));
    let f = fixture();
    assert_eq!(cfg["arch"], "resnet18");
    assert_eq!(cfg["train"]["batch_size"], 16);
    assert_eq!(cfg["train"]["epochs"], 2);
    assert_eq!(cfg["train"]["patience"], 5);
    assert_eq!(cfg["train"]["feature_dim"], 512);
    assert_eq!(cfg["train"]["bn_statistics"], "precise");
    assert_eq!(cfg["min_freq"], 5);
    assert_eq!(cfg["vocab_from"], "train");
    let sha = captioner::model::weights::sha256_file(&f.backbone).unwrap();
    assert_eq!(cfg["backbone_sha256"], sha.as_str());
    assert!(Path::new(cfg["feature_cache"].as_str().unwrap()).is_absolute());

    let split = json(&run.join("split.json"));
    let n = |k: &str| split[k].as_array().map(|a| a.len()).unwrap_or(0);
    assert_eq!(n("train") + n("val") + n("test"), 60, "{split}");
    assert_eq!((n("train"), n("val"), n("test")), (48, 6, 6));

    let vocab = json(&run.join("vocab.json"));
    let itos = vocab["itos"].as_array().unwrap();
    assert_eq!(cfg["train"]["vocab_size"].as_u64(), Some(itos.len() as u64));
    assert!(itos.len() > 10);

    // best.safetensors holds the best epoch's model.
    let best_epoch = rows
        .iter()
        .min_by(|a, b| {
            a["val_loss"]
                .as_f64()
                .partial_cmp(&b["val_loss"].as_f64())
                .unwrap()
        })
        .unwrap()["epoch"]
        .as_u64()
        .unwrap();
    let best = model_tensors(&run.join("best.safetensors"));
    if best_epoch == 2 {
        assert_eq!(
            max_diff(&best, &model_tensors(&run.join("last/weights.safetensors"))),
            0.0
        );
    }

    // A second fresh run into the same directory is refused and changes nothing.
    let before = std::fs::read(run.join("config.json")).unwrap();
    let again = train_cmd(&run, &["--epochs", "3"]).output().unwrap();
    assert_eq!(
        again.status.code(),
        Some(2),
        "--resume is needed: a usage error"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("--resume"));
    assert_eq!(before, std::fs::read(run.join("config.json")).unwrap());
    assert_eq!(metrics(&run).len(), 2);
    let _ = best;
}

#[test]
fn four_epochs_equal_two_then_resume_to_four() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    ok(train_cmd(&whole, &["--epochs", "4"]).output().unwrap());
    let split = dir.path().join("split");
    ok(train_cmd(&split, &["--epochs", "2"]).output().unwrap());
    assert_eq!(metrics(&split).len(), 2);
    ok(train_cmd(&split, &["--resume", "--epochs", "4"])
        .output()
        .unwrap());
    assert_eq!(metrics(&split).len(), 4);
    for f in ["best.safetensors", "last/weights.safetensors"] {
        let d = max_diff(
            &model_tensors(&whole.join(f)),
            &model_tensors(&split.join(f)),
        );
        assert!(d <= 1e-6, "{f} differs by {d}");
    }
    let (a, b) = (metrics(&whole), metrics(&split));
    for (x, y) in a.iter().zip(&b) {
        let d = (x["val_loss"].as_f64().unwrap() - y["val_loss"].as_f64().unwrap()).abs();
        assert!(d <= 1e-6, "val loss {x} vs {y}");
    }
}

#[test]
fn ctrl_c_writes_last_and_exits_130_then_resume_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let child = train_until_first_epoch(&run, Stdio::piped());
    // A little more, so the signal lands mid-epoch.
    std::thread::sleep(Duration::from_millis(150));
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(last_complete(&run));
    let state = json(&run.join("last/state.json"));
    let done = state["epochs_done"].as_u64().unwrap();
    assert!(done >= 1);
    model_tensors(&run.join("last/weights.safetensors"));

    let target = (done + 1).to_string();
    ok(train_cmd(&run, &["--resume", "--epochs", &target])
        .output()
        .unwrap());
    let rows = metrics(&run);
    assert_eq!(rows.len() as u64, done + 1);
    let epochs: Vec<u64> = rows.iter().map(|r| r["epoch"].as_u64().unwrap()).collect();
    assert_eq!(epochs, (1..=done + 1).collect::<Vec<_>>());
    model_tensors(&run.join("best.safetensors"));
}

#[test]
fn kill_9_at_random_moments_then_resume_always_works() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2024);
    for i in 0..4usize {
        let run = dir.path().join(format!("run{i}"));
        // The first kill lands while a fresh cache is being filled; the others during training.
        let cache = if i == 0 {
            dir.path().join("cache0")
        } else {
            f.cache.clone()
        };
        let delay = Duration::from_millis(rng.random_range(0..1500));
        let mut child = train_cmd_with_cache(&run, &cache, &["--epochs", "1000"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill i waits for epoch i - 1 to be logged first, so the kills spread over extraction,
        // the first epoch and later epochs (checkpoint writes included), then a random delay.
        let deadline = Instant::now() + Duration::from_secs(300);
        while metrics(&run).len() < i.saturating_sub(1) {
            assert!(
                Instant::now() < deadline,
                "epoch {} not logged in time",
                i - 1
            );
            assert!(child.try_wait().unwrap().is_none(), "train ended early");
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(delay);
        child.kill().unwrap();
        child.wait().unwrap();
        // Whatever was written is whole.
        if run.join("best.safetensors").exists() {
            model_tensors(&run.join("best.safetensors"));
        }
        let done = std::fs::read_to_string(run.join("last/state.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| v["epochs_done"].as_u64())
            .unwrap_or(0);
        eprintln!(
            "kill {i} after {delay:?}: config.json {}, {done} epochs in last/",
            run.join("config.json").exists()
        );
        let target = (done + 1).to_string();
        let out = train_cmd_with_cache(&run, &cache, &["--resume", "--epochs", &target])
            .output()
            .unwrap();
        ok(out);
        assert_eq!(
            metrics(&run).len() as u64,
            done + 1,
            "kill {i} after {delay:?}"
        );
        assert!(last_complete(&run));
        model_tensors(&run.join("best.safetensors"));
        let leftovers: Vec<_> = std::fs::read_dir(&run)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp") || n.contains(".old-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}

#[test]
fn bn_stats_is_recorded_and_cannot_change_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    ok(train_cmd(&run, &["--epochs", "1", "--bn-stats", "ema"])
        .output()
        .unwrap());
    assert_eq!(
        json(&run.join("config.json"))["train"]["bn_statistics"],
        "ema"
    );
    let before = model_tensors(&run.join("last/weights.safetensors"));
    let out = train_cmd(
        &run,
        &["--resume", "--epochs", "2", "--bn-stats", "precise"],
    )
    .output()
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "a flag that contradicts the run"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--bn-stats ema"), "{err}");
    assert_eq!(
        max_diff(
            &before,
            &model_tensors(&run.join("last/weights.safetensors"))
        ),
        0.0
    );
    assert_eq!(metrics(&run).len(), 1);
    // Resuming without the flag keeps the run's own setting.
    ok(train_cmd(&run, &["--resume", "--epochs", "2"])
        .output()
        .unwrap());
    assert_eq!(metrics(&run).len(), 2);
    assert_eq!(
        json(&run.join("config.json"))["train"]["bn_statistics"],
        "ema"
    );
}

#[test]
fn tutorial_preset_uses_the_seed_recipe() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    // --epochs 1 keeps the test short; without it the preset runs 50.
    ok(train_cmd(&run, &["--preset", "tutorial", "--epochs", "1"])
        .output()
        .unwrap());
    let cfg = json(&run.join("config.json"));
    assert_eq!(cfg["min_freq"], 1);
    assert_eq!(cfg["vocab_from"], "all");
    assert_eq!(cfg["preset"], "tutorial");
    assert_eq!(cfg["train"]["patience"], 0);
    assert_eq!(cfg["train"]["epochs"], 1);
    assert_eq!(cfg["train"]["bn_statistics"], "ema");
    let split = json(&run.join("split.json"));
    let n = |k: &str| split[k].as_array().map(|a| a.len()).unwrap_or(0);
    assert_eq!((n("train"), n("val"), n("test")), (48, 12, 0), "{split}");
    // Vocabulary from all captions with min-freq 1: every word of captions.txt is in it.
    let vocab = json(&run.join("vocab.json"));
    let itos: Vec<String> = vocab["itos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let text = std::fs::read_to_string(fixture().data.join("captions.txt")).unwrap();
    let mut rd = csv::Reader::from_reader(text.as_bytes());
    for row in rd.records() {
        let row = row.unwrap();
        for w in captioner::text::tokenize(&row[1]) {
            assert!(itos.contains(&w), "{w} missing from the vocabulary");
        }
    }

    // Without --epochs the preset's 50 epochs and no early stop are what config.json records.
    let run50 = dir.path().join("run50");
    let mut child = train_cmd(&run50, &["--preset", "tutorial"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !run50.join("config.json").exists() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let cfg = json(&run50.join("config.json"));
    assert_eq!(cfg["train"]["epochs"], 50);
    assert_eq!(cfg["train"]["patience"], 0);
}

#[test]
fn a_second_training_on_a_running_run_directory_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut first = train_until_first_epoch(&run, Stdio::null());
    // A retried job, or the same command typed twice, while the first still trains.
    let second = train_cmd(&run, &["--resume", "--epochs", "1000", "--patience", "0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("another training is running") && stderr.contains("run"),
        "{stderr}"
    );
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first one still runs"
    );
    first.kill().unwrap();
    first.wait().unwrap();
    // The lock died with the process: resuming works (last/ may be an epoch behind metrics.jsonl
    // when the kill landed between the two writes; resume replays that epoch).
    let done = metrics(&run).len() as u64;
    let target = (done + 1).to_string();
    ok(train_cmd(&run, &["--resume", "--epochs", &target])
        .output()
        .unwrap());
    assert_eq!(metrics(&run).len() as u64, done + 1);
}
