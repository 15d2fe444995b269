//! `captioner demo` end to end on a tiny corpus (the real demo takes minutes): every step runs, the
//! report has five examples with their references, metrics.json has `eval --json`'s keys, the demo
//! model captions an image through the trunk at its low resolution exactly as eval did from the
//! feature cache, and a second run replaces the first and reuses its features.

use crate::common::{exe, run_ok};
use serde_json::Value;
use std::path::Path;
use std::process::Output;

fn demo(out: &Path) -> Output {
    run_ok(
        exe()
            .args([
                "demo",
                "--no-progress",
                "--images",
                "60",
                "--epochs",
                "2",
                "--out",
            ])
            .arg(out),
    )
}

#[test]
fn demo_trains_evaluates_reports_and_reruns() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("demo");
    let o = demo(&out);
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();

    // Five examples, each a caption followed by its five references.
    let lines: Vec<&str> = stdout.lines().map(str::trim).collect();
    let shown: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with("captioner: "))
        .collect();
    assert_eq!(shown.len(), 5, "{stdout}");
    for &i in &shown {
        assert!(lines[i - 1].ends_with(".jpg"), "{stdout}");
        for k in 1..=5 {
            assert!(lines[i + k].starts_with("reference: "), "{stdout}");
        }
    }
    for metric in ["BLEU-1", "BLEU-4", "ROUGE-L", "CIDEr-D"] {
        assert!(stdout.contains(metric), "{metric} missing:\n{stdout}");
    }

    let metrics: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    for key in ["bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "cider"] {
        let v = metrics[key].as_f64().unwrap_or(-1.0);
        assert!((0.0..=10.0).contains(&v), "{key} = {v}");
    }
    assert_eq!(metrics["images"], 6, "10% of 60 scenes are held out");
    let captions: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("captions.json")).unwrap()).unwrap();
    let captions = captions.as_object().unwrap();
    assert_eq!(captions.len(), 6);

    // The demo model works at 112×112: captioning a test image through the trunk gives what eval
    // got from the features cached during training.
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run/config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["image_size"], 112);
    let (name, expected) = captions.iter().next().unwrap();
    let c = exe()
        .args(["caption", "--format", "jsonl", "--model"])
        .arg(out.join("run"))
        .arg(out.join("scenes/Images").join(name))
        .output()
        .unwrap();
    assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
    let row: Value = serde_json::from_str(String::from_utf8_lossy(&c.stdout).trim()).unwrap();
    assert_eq!(&row["caption"], expected);

    // A second demo in the same folder replaces the run and reuses every feature.
    let o = demo(&out);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(all.contains("replacing the previous demo run"), "{all}");
    assert!(all.contains("60 reused, 0 computed"), "{all}");
}

/// `demo --decoder attention` trains the attention decoder on the same tiny corpus and scores it
/// like the default demo.
#[test]
fn demo_with_the_attention_decoder_trains_and_scores_it() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("demo");
    let o = run_ok(
        exe()
            .args([
                "demo",
                "--no-progress",
                "--images",
                "40",
                "--epochs",
                "1",
                "--decoder",
                "attention",
                "--out",
            ])
            .arg(&out),
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("BLEU-4"), "{stdout}");
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run/config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["train"]["decoder"], "attention");
    let metrics: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    for key in ["bleu4", "cider"] {
        let v = metrics[key].as_f64().unwrap_or(-1.0);
        assert!((0.0..=10.0).contains(&v), "{key} = {v}");
    }
    assert_eq!(metrics["images"], 4, "10% of 40 scenes are held out");
    assert!(out.join("features/spatial.safetensors").is_file());
}
