//! `captioner features` end to end on a synth corpus with a random ResNet-18: the files and their
//! order, reuse on a second run, invalidation by a new backbone, `--half`, unreadable images, and
//! resuming after a kill -9 to the same cache a clean run makes.

use crate::common::{self, features_cmd, init_resnet18, max_abs, max_abs_diff, ok};
use candle_core::{DType, Device, Tensor};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

fn synth(dir: &Path, images: usize) -> PathBuf {
    let data = dir.join("data");
    common::synth(&data, images);
    data
}

fn backbone(dir: &Path, seed: u64) -> PathBuf {
    let path = dir.join(format!("resnet18-seed{seed}.safetensors"));
    init_resnet18(&path, Some(seed));
    path
}

fn features(data: &Path, backbone: &Path, cache: &Path, extra: &[&str]) -> String {
    ok(features_cmd(data, backbone, cache, extra).output().unwrap())
}

/// "N reused, M computed" from the command's summary line.
fn counts(stdout: &str) -> (usize, usize) {
    let num = |word: &str| -> usize {
        let before = stdout
            .split(&format!(" {word}"))
            .next()
            .unwrap_or_else(|| panic!("no `{word}` in {stdout}"));
        let digits: String = before
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        digits.chars().rev().collect::<String>().parse().unwrap()
    };
    (num("reused"), num("computed"))
}

fn load(cache: &Path) -> (Tensor, Vec<String>) {
    let t = candle_core::safetensors::load(cache.join("features.safetensors"), &Device::Cpu)
        .unwrap()
        .remove("features")
        .unwrap();
    let names: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(cache.join("images.json")).unwrap()).unwrap();
    (t, names)
}

/// Image names in captions.txt order (first appearance), as the corpus lists them.
fn corpus_order(data: &Path) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let text = std::fs::read_to_string(data.join("captions.txt")).unwrap();
    let mut rd = csv::Reader::from_reader(text.as_bytes());
    for row in rd.records() {
        let name = row.unwrap()[0].to_string();
        if names.last() != Some(&name) && !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

#[test]
fn cache_files_reuse_invalidation_half_and_unreadable_images() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth(dir.path(), 10);
    let bb = backbone(dir.path(), 1);
    let cache = dir.path().join("cache");

    let first = features(&data, &bb, &cache, &["--batch-size", "4"]);
    assert_eq!(counts(&first), (0, 10), "{first}");
    for f in ["features.safetensors", "images.json", "cache.json"] {
        assert!(cache.join(f).is_file(), "{f} missing");
    }
    assert!(!cache.join("chunks").exists(), "chunks left behind");
    let (feats, names) = load(&cache);
    assert_eq!(feats.dims(), &[10, 512]);
    assert_eq!(feats.dtype(), DType::F32);
    assert_eq!(names, corpus_order(&data));
    assert!(max_abs(&feats) > 0.0);
    // Rows differ between images (the feature depends on the image).
    let r0 = feats.get(0).unwrap();
    let r1 = feats.get(1).unwrap();
    assert!(max_abs_diff(&r0, &r1) > 1e-4);

    // Second run: everything reused, no network, quick, identical bytes.
    let before = std::fs::read(cache.join("features.safetensors")).unwrap();
    let t = Instant::now();
    let second = features(&data, &bb, &cache, &[]);
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(counts(&second), (10, 0), "{second}");
    assert!(second.contains("0 computed"), "{second}");
    assert!(secs < 10.0, "cached run took {secs:.1} s");
    assert_eq!(
        before,
        std::fs::read(cache.join("features.safetensors")).unwrap()
    );

    // Another backbone (another seed): every entry is stale and recomputed.
    let bb2 = backbone(dir.path(), 2);
    let third = features(&data, &bb2, &cache, &[]);
    assert_eq!(counts(&third), (0, 10), "{third}");
    let (feats2, names2) = load(&cache);
    assert_eq!(names2, names);
    assert!(max_abs_diff(&feats, &feats2) > 1e-3, "stale features kept");

    // --half stores f16 rows equal to the f32 ones rounded.
    let half_cache = dir.path().join("half");
    features(&data, &bb2, &half_cache, &["--half"]);
    let (h, hn) = load(&half_cache);
    assert_eq!(h.dtype(), DType::F16);
    assert_eq!(h.dims(), &[10, 512]);
    assert_eq!(hn, names);
    let tol = 1e-3 * max_abs(&feats2);
    assert!(max_abs_diff(&h, &feats2) <= tol);

    // Unreadable images (empty and truncated JPEG) are listed by name and skipped.
    let images = data.join("Images");
    std::fs::write(images.join("empty.jpg"), b"").unwrap();
    let whole = std::fs::read(images.join(&names[0])).unwrap();
    std::fs::write(images.join("cut.jpg"), &whole[..whole.len() / 2]).unwrap();
    let mut captions = std::fs::read_to_string(data.join("captions.txt")).unwrap();
    captions.push_str("empty.jpg,a picture that is not there .\n");
    captions.push_str("cut.jpg,half of a picture .\n");
    std::fs::write(data.join("captions.txt"), captions).unwrap();
    let out = features_cmd(&data, &bb2, &cache, &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = ok(out);
    assert!(stderr.contains("empty.jpg"), "{stderr}");
    assert!(stderr.contains("cut.jpg"), "{stderr}");
    assert!(stdout.contains("2 unreadable"), "{stdout}");
    assert_eq!(counts(&stdout), (10, 0), "{stdout}");
    let (f3, n3) = load(&cache);
    assert_eq!(f3.dims(), &[10, 512]);
    assert_eq!(n3, names);
    // A rerun reports them again without recomputing anything.
    let out = features_cmd(&data, &bb2, &cache, &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = ok(out);
    assert!(stderr.contains("empty.jpg") && stderr.contains("cut.jpg"));
    assert_eq!(counts(&stdout), (10, 0), "{stdout}");
}

#[test]
fn killed_extraction_resumes_to_the_clean_result() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth(dir.path(), 300);
    let bb = backbone(dir.path(), 3);
    let small = ["--batch-size", "4", "--chunk-images", "16"];

    let clean = dir.path().join("clean");
    features(&data, &bb, &clean, &small);

    let cache = dir.path().join("killed");
    let mut child = features_cmd(&data, &bb, &cache, &small)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let chunks_dir = cache.join("chunks");
    let deadline = Instant::now() + Duration::from_secs(120);
    let chunks = |p: &Path| -> usize {
        std::fs::read_dir(p)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                    .count()
            })
            .unwrap_or(0)
    };
    while chunks(&chunks_dir) < 2 {
        assert!(Instant::now() < deadline, "no chunk written in time");
        assert!(child.try_wait().unwrap().is_none(), "finished before kill");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !cache.join("images.json").exists(),
        "the run finished before it was killed; nothing to resume"
    );

    let resumed = features(&data, &bb, &cache, &small);
    let (reused, computed) = counts(&resumed);
    assert!(reused >= 32, "{resumed}");
    assert_eq!(reused + computed, 300, "{resumed}");
    assert!(computed > 0, "{resumed}");

    let (a, an) = load(&clean);
    let (_, bn) = load(&cache);
    assert_eq!(an, bn);
    assert_eq!(a.dims(), &[300, 512]);
    // Bit-identical: a row does not depend on the batch it was computed in.
    for f in ["features.safetensors", "images.json", "cache.json"] {
        assert!(
            std::fs::read(clean.join(f)).unwrap() == std::fs::read(cache.join(f)).unwrap(),
            "resumed {f} differs from a clean run's"
        );
    }
    assert!(!chunks_dir.exists());
}
