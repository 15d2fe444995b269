//! `captioner train --decoder attention` (issue #14, item 2) end to end on a synth corpus with a
//! random ResNet-18 at 64×64 (a 2×2 feature map): the maps are extracted with the features, the
//! run records its decoder and sizes, the model file holds the tutorial's parameter names, the
//! validation loss falls, and a run interrupted mid-epoch by Ctrl-C resumes to exactly the
//! weights of an uninterrupted one (dropout included).

use crate::common::{exe, file_tensors, init_resnet18, max_diff, ok, synth};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Corpus {
    _dir: tempfile::TempDir,
    data: PathBuf,
    backbone: PathBuf,
}

fn corpus() -> Corpus {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synth(&data, 60);
    let backbone = dir.path().join("r18.safetensors");
    init_resnet18(&backbone, Some(2));
    Corpus {
        _dir: dir,
        data,
        backbone,
    }
}

fn train_cmd(c: &Corpus, run: &Path, cache: &Path, extra: &[&str]) -> Command {
    let mut cmd = exe();
    cmd.arg("train")
        .arg("--data")
        .arg(&c.data)
        .arg("--backbone")
        .arg(&c.backbone)
        .arg("--run")
        .arg(run)
        .arg("--cache")
        .arg(cache)
        .args([
            "--arch",
            "resnet18",
            "--image-size",
            "64",
            "--decoder",
            "attention",
            "--embed-dim",
            "32",
            "--hidden-dim",
            "48",
            "--attention-dim",
            "24",
            "--batch-size",
            "8",
            "--lr",
            "2e-3",
            "--patience",
            "0",
            "--no-progress",
        ])
        .args(extra);
    cmd
}

fn metrics(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Starts a long attention training into `run` (stderr to `stderr`) and returns `ms` after its
/// first epoch ended: mid-way through the second.
fn train_past_first_epoch(
    c: &Corpus,
    run: &Path,
    cache: &Path,
    stderr: Stdio,
    ms: u64,
) -> std::process::Child {
    let child = train_cmd(c, run, cache, &["--epochs", "1000"])
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while metrics(run).is_empty() {
        assert!(Instant::now() < deadline, "no epoch finished in time");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(ms));
    child
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn attention_runs_record_their_decoder_learn_and_resume_exactly_after_ctrl_c() {
    let c = corpus();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");

    // Interrupted mid-epoch, once an epoch has finished.
    let run = dir.path().join("interrupted");
    let child = train_past_first_epoch(&c, &run, &cache, Stdio::piped(), 60);
    assert!(Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let state = json(&run.join("last/state.json"));
    let done = state["epochs_done"].as_u64().unwrap();
    let target = (done + 2).to_string();
    ok(
        train_cmd(&c, &run, &cache, &["--resume", "--epochs", &target])
            .output()
            .unwrap(),
    );

    // The same run without the interruption.
    let whole = dir.path().join("whole");
    ok(train_cmd(&c, &whole, &cache, &["--epochs", &target])
        .output()
        .unwrap());
    for f in ["best.safetensors", "last/weights.safetensors"] {
        let d = max_diff(&file_tensors(&whole.join(f)), &file_tensors(&run.join(f)));
        assert!(d <= 1e-6, "{f} differs by {d}");
    }
    let (a, b) = (metrics(&whole), metrics(&run));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        let d = (x["val_loss"].as_f64().unwrap() - y["val_loss"].as_f64().unwrap()).abs();
        assert!(d <= 1e-6, "val loss {x} vs {y}");
    }
    // It learns: the validation loss falls from the first epoch.
    let first = a[0]["val_loss"].as_f64().unwrap();
    let best = a
        .iter()
        .map(|m| m["val_loss"].as_f64().unwrap())
        .fold(f64::MAX, f64::min);
    assert!(best < first, "{a:?}");

    // It captions, greedy and with a beam, from the run; the pooled feature is refused.
    let image = c.data.join("Images").join("scene_000003.jpg");
    let caption = |extra: &[&str]| -> String {
        let out = ok(exe()
            .arg("caption")
            .arg("--model")
            .arg(&whole)
            .args(extra)
            .arg(&image)
            .output()
            .unwrap());
        out.trim().rsplit('\t').next().unwrap().to_string()
    };
    let greedy = caption(&[]);
    assert!(!greedy.is_empty());
    assert_eq!(caption(&["--beam", "1"]), greedy);
    assert!(!caption(&["--beam", "3"]).is_empty());
    let model = captioner::Captioner::load(&whole, &candle_core::Device::Cpu).unwrap();
    assert_eq!(model.grid(), Some([2, 2]));
    assert_eq!(model.info().decoder, captioner::run::DecoderKind::Attention);
    let pooled =
        candle_core::Tensor::zeros((1, 512), candle_core::DType::F32, &candle_core::Device::Cpu)
            .unwrap();
    let err = model
        .caption_features(&pooled, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("2×2 feature maps"), "{err}");

    // Batched as `serve --max-batch` and `caption --batch-size` batch them, every image gets the
    // feature map it gets alone (to the bit), the same caption, greedy and with a beam, and the
    // same attention weights up to rounding: the decoder's products over 1 row and over many
    // round differently in the last bits.
    let mut paths: Vec<_> = std::fs::read_dir(c.data.join("Images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    let images: Vec<image::RgbImage> = paths
        .iter()
        .take(9)
        .map(|p| image::open(p).unwrap().to_rgb8())
        .collect();
    let planes: Vec<Vec<f32>> = images
        .iter()
        .map(|i| captioner::vision::preprocess::preprocess_sized(i, model.image_size()))
        .collect();
    let maps = |pixels: Vec<f32>, n: usize| -> Vec<Vec<u32>> {
        let t = model.encode(pixels, n).unwrap().to_vec2::<f32>().unwrap();
        t.iter()
            .map(|r| r.iter().map(|v| v.to_bits()).collect())
            .collect()
    };
    let together = maps(planes.concat(), images.len());
    for (k, p) in planes.iter().enumerate() {
        assert_eq!(maps(p.clone(), 1)[0], together[k], "image {k}: feature map");
    }
    let mut largest = 0f32;
    for beam in [1, 3] {
        let opts = captioner::CaptionOptions {
            beam,
            ..Default::default()
        };
        let together = model.caption_images_attended(&images, &opts).unwrap();
        assert_eq!(together.len(), images.len());
        for (k, (img, b)) in images.iter().zip(&together).enumerate() {
            let alone = model
                .caption_images_attended(std::slice::from_ref(img), &opts)
                .unwrap();
            let a = &alone[0];
            assert_eq!(a.caption, b.caption, "image {k}, beam {beam}");
            let (wa, wb) = (
                &a.attention.as_ref().unwrap().weights,
                &b.attention.as_ref().unwrap().weights,
            );
            assert_eq!(wa.len(), wb.len());
            for (ra, rb) in wa.iter().zip(wb) {
                for (x, y) in ra.iter().zip(rb) {
                    largest = largest.max((x - y).abs());
                }
            }
        }
    }
    assert!(largest < 1e-5, "attention weights differ by {largest}");

    // Where each word looked: JSONL rows of 2×2 weights, one per word, and the picture.
    let pictures = dir.path().join("attention");
    let line = ok(exe()
        .arg("caption")
        .arg("--model")
        .arg(&whole)
        .args(["--format", "jsonl", "--attention-out"])
        .arg(&pictures)
        .arg(&image)
        .output()
        .unwrap());
    let v: Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(v["caption"], greedy.as_str());
    assert_eq!(v["grid"], serde_json::json!([2, 2]));
    let rows = v["attention"].as_array().unwrap();
    assert_eq!(rows.len(), greedy.split(' ').count());
    for row in rows {
        let w: Vec<f64> = row
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(w.len(), 4);
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-4, "{w:?}");
    }
    let png = image::open(pictures.join("scene_000003.png")).unwrap();
    assert!(
        png.width() > 2 * png.height(),
        "one panel per word and the image"
    );

    // The server: ?attention=1 returns the words, the grid and a row of weights per word, with
    // the caption the command line gives; without it, the caption alone.
    let server = captioner::serve::start(
        std::sync::Arc::new(model),
        captioner::serve::ServeConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        },
    )
    .unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let bytes = std::fs::read(&image).unwrap();
    let post = |query: &str| -> Value {
        agent
            .post(&format!("http://{}/api/caption{query}", server.addr()))
            .header("Content-Type", "image/jpeg")
            .send(&bytes[..])
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap()
    };
    let v = post("?attention=1");
    assert_eq!(v["caption"], greedy.as_str(), "{v}");
    assert_eq!(v["grid"], serde_json::json!([2, 2]));
    let words = v["words"].as_array().unwrap();
    assert_eq!(words.len(), greedy.split(' ').count());
    assert_eq!(v["attention"].as_array().unwrap().len(), words.len());
    let plain = post("?beam=1");
    assert_eq!(plain["caption"], greedy.as_str());
    assert!(plain.get("attention").is_none() && plain.get("words").is_none());
    let info: Value = agent
        .get(&format!("http://{}/api/info", server.addr()))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    assert_eq!(info["engine"]["decoder"], "attention");
    server.shutdown().unwrap();

    // The run says what it trained; the cache holds the maps; the model file the tutorial's names.
    let cfg = json(&whole.join("config.json"));
    assert_eq!(cfg["train"]["decoder"], "attention");
    assert_eq!(cfg["train"]["embed"], 32);
    assert_eq!(cfg["train"]["hidden"], 48);
    assert_eq!(cfg["train"]["attention"]["attention_dim"], 24);
    assert_eq!(cfg["train"]["attention"]["dropout"], 0.5);
    assert_eq!(cfg["train"]["lr"], 2e-3);
    assert!(cache.join("spatial.safetensors").is_file());
    let names: Vec<String> = file_tensors(&whole.join("best.safetensors"))
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    for n in [
        "decoder.attention.encoder_att.weight",
        "decoder.attention.full_att.bias",
        "decoder.decode_step.weight_ih",
        "decoder.init_c.weight",
        "decoder.f_beta.bias",
        "decoder.fc.weight",
    ] {
        assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
    }
}

#[test]
fn out_of_range_attention_settings_are_usage_errors_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, value, rule) in [
        ("--dropout", "1.5", "[0, 1)"),
        ("--dropout", "-0.1", "[0, 1)"),
        ("--grad-clip", "0", "(0, ∞)"),
        ("--alpha-c", "nan", "[0, ∞)"),
        ("--attention-dim", "0", "1..=65536"),
    ] {
        let run = dir.path().join("run");
        let out = exe()
            .args(["train", "--data"])
            .arg(dir.path().join("no-data"))
            .args(["--backbone", "x", "--run"])
            .arg(&run)
            .args(["--decoder", "attention", &format!("{flag}={value}")])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {err}");
        assert!(
            err.contains(flag) && err.contains(rule),
            "{flag} {value}: {err}"
        );
        assert!(!run.exists(), "{flag} {value} created the run directory");
    }
}

#[test]
fn kill_9_mid_epoch_then_resume_finishes_the_attention_run() {
    let c = corpus();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let run = dir.path().join("run");
    let mut child = train_past_first_epoch(&c, &run, &cache, Stdio::null(), 80);
    child.kill().unwrap(); // SIGKILL: no chance to write anything
    child.wait().unwrap();
    let done = metrics(&run).len();
    let target = (done + 1).to_string();
    ok(
        train_cmd(&c, &run, &cache, &["--resume", "--epochs", &target])
            .output()
            .unwrap(),
    );
    let epochs: Vec<u64> = metrics(&run)
        .iter()
        .map(|m| m["epoch"].as_u64().unwrap())
        .collect();
    assert_eq!(epochs, (1..=done as u64 + 1).collect::<Vec<_>>());
    assert!(run.join("best.safetensors").is_file());
    assert_eq!(
        json(&run.join("last/state.json"))["epochs_done"].as_u64(),
        Some(done as u64 + 1)
    );
}
