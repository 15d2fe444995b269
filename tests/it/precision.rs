//! `--precision bf16`: features through the bf16 trunk stay close to f32 ones and are cached
//! under their own key; `caption` and `eval` take the flag; a CPU without bf16 refuses it with
//! exit 2 before any work. What a bf16 run costs and buys is measured by `bench precision`.

use super::caption::trained;
use super::common::{exe, features_cmd, run_ok, synth};
use captioner::features::FeatureCache;
use captioner::model::bf16;
use std::path::{Path, PathBuf};

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let n = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (n(a) * n(b))
}

/// `synth` scenes in `dir/data` and a random ResNet-18 in `dir/r18.safetensors` whose BatchNorm
/// statistics come from `calibrate` of those scenes: its features tell the images apart, so a
/// close cosine means something.
fn scenes_and_calibrated_resnet18(
    dir: &Path,
    images: usize,
    calibrate: usize,
) -> (PathBuf, PathBuf) {
    let data = dir.join("data");
    synth(&data, images);
    let backbone = dir.join("r18.safetensors");
    let out = run_ok(
        exe()
            .args(["init-backbone", "--arch", "resnet18", "--calibrate"])
            .arg(data.join("Images"))
            .args(["--calibrate-images", &calibrate.to_string(), "--out"])
            .arg(&backbone),
    );
    let said = format!("recomputed on {calibrate} images");
    assert!(String::from_utf8_lossy(&out.stderr).contains(&said));
    (data, backbone)
}

#[test]
fn bf16_features_follow_f32_ones_and_are_cached_under_their_own_key() {
    let dir = tempfile::tempdir().unwrap();
    let (data, backbone) = scenes_and_calibrated_resnet18(dir.path(), 12, 8);
    let (c32, c16) = (dir.path().join("f32"), dir.path().join("bf16"));
    run_ok(&mut features_cmd(
        &data,
        &backbone,
        &c32,
        &["--image-size", "64"],
    ));
    let bf16_run = features_cmd(
        &data,
        &backbone,
        &c16,
        &["--image-size", "64", "--precision", "bf16"],
    )
    .output()
    .unwrap();
    if bf16::kernel().is_err() {
        assert_eq!(bf16_run.status.code(), Some(2));
        let err = String::from_utf8_lossy(&bf16_run.stderr);
        assert!(err.contains("AMX-BF16 or AVX512-BF16"), "{err}");
        assert!(!c16.join("features.safetensors").exists());
        return;
    }
    assert!(bf16_run.status.success(), "{bf16_run:?}");
    let (f32c, bf16c) = (
        FeatureCache::open(&c32).unwrap(),
        FeatureCache::open(&c16).unwrap(),
    );
    assert_eq!(f32c.names, bf16c.names);
    assert_eq!(bf16c.key.precision.to_string(), "bf16");
    let key = std::fs::read_to_string(c32.join("cache.json")).unwrap();
    assert!(
        !key.contains("precision"),
        "an f32 key is written as before bf16 existed"
    );
    let (a, b): (Vec<Vec<f32>>, Vec<Vec<f32>>) = (
        f32c.features.to_vec2().unwrap(),
        bf16c.features.to_vec2().unwrap(),
    );
    assert_ne!(a, b, "the bf16 trunk ran");
    let between = cosine(&a[0], &a[1]);
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let c = cosine(x, y);
        assert!(c > 0.995, "image {i}: cosine {c}");
        assert!(
            c > between,
            "closer to its f32 feature than images are to each other"
        );
    }
    // The f32 cache is reused by an f32 rerun, never by a bf16 one.
    let again = run_ok(&mut features_cmd(
        &data,
        &backbone,
        &c32,
        &["--image-size", "64"],
    ));
    assert!(String::from_utf8_lossy(&again.stdout).contains("12 reused"));
}

#[test]
fn caption_and_eval_take_the_flag() {
    let t = trained();
    let image = t.data.join("Images").join("scene_000003.jpg");
    let out = exe()
        .arg("caption")
        .arg("--model")
        .arg(&t.run)
        .args(["--precision", "bf16"])
        .arg(&image)
        .output()
        .unwrap();
    if bf16::kernel().is_err() {
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        return;
    }
    assert!(out.status.success(), "{out:?}");
    let caption = String::from_utf8_lossy(&out.stdout);
    assert!(caption.split_whitespace().count() >= 2, "{caption}");
    let eval = exe()
        .arg("eval")
        .arg("--model")
        .arg(&t.run)
        .arg("--data")
        .arg(&t.data)
        .args(["--precision", "bf16", "--no-progress"])
        .output()
        .unwrap();
    assert!(eval.status.success(), "{eval:?}");
    let text = String::from_utf8_lossy(&eval.stdout);
    assert!(
        text.contains("(0 from the feature cache)"),
        "the run's f32 cache is not used for bf16: {text}"
    );
}

#[test]
fn an_unknown_precision_is_a_usage_error() {
    let t = trained();
    let out = exe()
        .arg("caption")
        .arg("--model")
        .arg(&t.run)
        .args(["--precision", "f16"])
        .arg(t.data.join("Images").join("scene_000003.jpg"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("f32 or bf16"));
}

#[test]
fn a_bf16_model_serves_its_own_captions_and_says_so() {
    use captioner::model::Precision;
    use captioner::serve::{self, ServeConfig};
    use captioner::{CaptionOptions, Captioner, Error};
    use std::sync::Arc;

    let t = trained();
    let loaded = Captioner::load(&t.run, &candle_core::Device::Cpu).unwrap();
    let c = match loaded.with_precision(Precision::Bf16) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            assert!(bf16::kernel().is_err());
            assert!(matches!(e, Error::Invalid(_)), "{e}");
            return;
        }
    };
    assert_eq!(c.trunk().precision(), Precision::Bf16);
    let image = t.data.join("Images").join("scene_000005.jpg");
    let bytes = std::fs::read(&image).unwrap();
    let want = c.caption_bytes(&bytes, &CaptionOptions::default()).unwrap();
    let server = serve::start(
        c.clone(),
        ServeConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            ..ServeConfig::default()
        },
    )
    .unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut res = agent
        .post(&format!("http://{}/api/caption", server.addr()))
        .header("Content-Type", "image/jpeg")
        .send(&bytes[..])
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let body: serde_json::Value = res.body_mut().read_json().unwrap();
    assert_eq!(body["caption"].as_str().unwrap(), want);
    let mut res = agent
        .get(&format!("http://{}/api/info", server.addr()))
        .call()
        .unwrap();
    let info: serde_json::Value = res.body_mut().read_json().unwrap();
    assert_eq!(info["engine"]["precision"], "bf16", "{info}");
}

#[test]
fn bench_precision_reports_the_cosines_and_both_speeds() {
    let dir = tempfile::tempdir().unwrap();
    let (data, backbone) = scenes_and_calibrated_resnet18(dir.path(), 6, 4);
    let out = exe()
        .args(["bench", "precision", "--arch", "resnet18", "--backbone"])
        .arg(&backbone)
        .arg("--images-dir")
        .arg(data.join("Images"))
        .args(["--images", "4", "--batch-size", "2"])
        .output()
        .unwrap();
    if bf16::kernel().is_err() {
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        return;
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{out:?}");
    let min: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("per-image cosine: min "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no cosine line in {text}"));
    assert!(min > 0.99 && min <= 1.0 + 1e-9, "{text}");
    assert!(text.contains("4 images of"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("images/s: f32 ")),
        "{text}"
    );
}
