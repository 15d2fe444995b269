//! Sharded work end to end: `features --shard I/N` (from the flag, a Slurm array's and a
//! Kubernetes Indexed Job's environment) into one cache, a retried shard, two attempts of a shard
//! at once, a shard with other settings refused, then the merge, bit-identical to one process;
//! `caption --shard` whose JSONL outputs concatenate to the unsharded one; `train --shard`, which
//! extracts only, then `train` that merges and trains.

use crate::caption::trained;
use crate::common::{self, exe, features_cmd, init_resnet18, ok, run_ok};
use std::path::{Path, PathBuf};
use std::process::Output;

const SMALL: [&str; 6] = [
    "--batch-size",
    "4",
    "--chunk-images",
    "4",
    "--image-size",
    "64",
];

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// "M computed" of a features summary line.
fn computed(stdout: &str) -> usize {
    let before = stdout
        .split(" computed")
        .next()
        .unwrap_or_else(|| panic!("no count in {stdout}"));
    let digits: String = before
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.chars().rev().collect::<String>().parse().unwrap()
}

fn same_files(a: &Path, b: &Path) {
    for f in ["features.safetensors", "images.json", "cache.json"] {
        let (x, y) = (std::fs::read(a.join(f)), std::fs::read(b.join(f)));
        assert!(
            x.unwrap() == y.unwrap(),
            "{f} of {} differs from {}",
            b.display(),
            a.display()
        );
    }
}

fn chunk_names(cache: &Path) -> Vec<String> {
    std::fs::read_dir(cache.join("chunks"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn feature_shards_merge_to_the_bytes_of_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    common::synth(&data, 48);
    let bb = dir.path().join("r18.safetensors");
    init_resnet18(&bb, Some(5));
    let clean = dir.path().join("clean");
    ok(features_cmd(&data, &bb, &clean, &SMALL).output().unwrap());

    let shared = dir.path().join("shared");
    let shard = |extra: &[&str], env: &[(&str, &str)]| -> Output {
        let mut cmd = features_cmd(&data, &bb, &shared, &SMALL);
        cmd.args(extra);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let mut total = 0;
    let runs = [
        (shard(&["--shard", "0/4"], &[]), "0/4 (from --shard)"),
        (shard(&["--shard", "1/4"], &[]), "1/4 (from --shard)"),
        (
            shard(
                &[],
                &[
                    ("SLURM_ARRAY_TASK_ID", "2"),
                    ("SLURM_ARRAY_TASK_COUNT", "4"),
                ],
            ),
            "2/4 (from Slurm job array",
        ),
        (
            shard(&["--shards", "4"], &[("JOB_COMPLETION_INDEX", "3")]),
            "3/4 (from Kubernetes Indexed Job",
        ),
    ];
    for (out, source) in runs {
        let log = stderr(&out);
        let stdout = ok(out);
        assert!(log.contains(&format!("shard {source}")), "{log}");
        let n = computed(&stdout);
        assert!(n > 0, "{stdout}");
        total += n;
    }
    assert_eq!(total, 48, "the shards partition the corpus");
    assert!(
        !shared.join("features.safetensors").exists(),
        "a shard merged"
    );
    let names = chunk_names(&shared);
    for i in 0..4 {
        let tag = format!("s{i:04}of0004-");
        assert!(
            names.iter().any(|n| n.starts_with(&tag)),
            "{tag}: {names:?}"
        );
    }

    // A retried shard that had finished finds its work done.
    let again = ok(shard(&["--shard", "1/4"], &[]));
    assert_eq!(computed(&again), 0, "{again}");
    assert_eq!(chunk_names(&shared), names, "a retry wrote chunks");

    // A shard with another image size (another preprocessing) is refused, naming the difference.
    let other = features_cmd(
        &data,
        &bb,
        &shared,
        &["--image-size", "32", "--shard", "0/4"],
    )
    .output()
    .unwrap();
    assert!(!other.status.success());
    let err = stderr(&other);
    assert!(
        err.contains("preprocessing or image size") && err.contains("chunks"),
        "{err}"
    );

    // The merge: nothing computed, every chunk folded in and removed, the one-process bytes.
    let merged = ok(features_cmd(&data, &bb, &shared, &SMALL).output().unwrap());
    assert!(merged.contains("48 reused, 0 computed"), "{merged}");
    same_files(&clean, &shared);
    assert!(!shared.join("chunks").exists());

    // Two attempts of each shard at once (a scheduler retrying a shard it thinks is lost).
    let racing = dir.path().join("racing");
    let mut children: Vec<_> = ["0/2", "0/2", "1/2", "1/2"]
        .iter()
        .map(|s| {
            features_cmd(&data, &bb, &racing, &SMALL)
                .args(["--shard", s])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children.drain(..) {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    ok(features_cmd(&data, &bb, &racing, &SMALL).output().unwrap());
    same_files(&clean, &racing);
}

#[test]
fn caption_shards_concatenate_to_the_unsharded_jsonl() {
    let t = trained();
    let images: PathBuf = t.data.join("Images");
    let caption = |shard: Option<&str>| -> Output {
        let mut cmd = exe();
        cmd.args(["caption", "--format", "jsonl", "--no-progress", "--model"])
            .arg(&t.run);
        if let Some(s) = shard {
            cmd.args(["--shard", s]);
        }
        run_ok(cmd.arg(&images))
    };
    let lines = |out: &Output| -> Vec<String> {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect()
    };
    let mut whole = lines(&caption(None));
    assert_eq!(whole.len(), 40);
    let mut joined = Vec::new();
    for i in 0..3 {
        let out = caption(Some(&format!("{i}/3")));
        let log = stderr(&out);
        assert!(
            log.contains(&format!("shard {i}/3 (from --shard)")),
            "{log}"
        );
        let part = lines(&out);
        assert!(!part.is_empty() && part.len() < 40);
        joined.extend(part);
    }
    whole.sort();
    joined.sort();
    assert_eq!(joined, whole);
}

#[test]
fn train_shards_extract_only_then_train_merges_and_trains() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    common::synth(&data, 30);
    let bb = dir.path().join("r18.safetensors");
    init_resnet18(&bb, Some(6));
    let run = dir.path().join("run");
    let train = |extra: &[&str]| {
        let mut cmd = exe();
        cmd.arg("train")
            .arg("--data")
            .arg(&data)
            .arg("--backbone")
            .arg(&bb)
            .arg("--run")
            .arg(&run)
            .args(["--arch", "resnet18", "--image-size", "32", "--no-progress"])
            .args(extra);
        run_ok(&mut cmd)
    };
    for s in ["0/2", "1/2"] {
        let out = train(&["--shard", s]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("feature extraction only") && stdout.contains("nothing trained"),
            "{stdout}"
        );
    }
    assert!(!run.join("config.json").exists(), "a shard wrote the run");
    assert!(!chunk_names(&run.join("features")).is_empty());
    let out = train(&["--epochs", "1"]);
    let log = stderr(&out);
    assert!(log.contains("30 reused, 0 computed"), "{log}");
    assert!(run.join("best.safetensors").is_file());
    assert!(!run.join("features").join("chunks").exists());
}
