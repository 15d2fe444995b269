//! Captioning end to end on a tiny trained model: greedy parity with torch on a fixture, beam 1 = greedy,
//! `caption` (formats, a corrupt file among good ones, exit status), `export` (the file captions exactly
//! as the run directory), `eval` (JSON keys and ranges, output files, cache = trunk), and the server
//! with the real engine.
//!
//! The model is trained once per test binary: `synth` 40 images, a formula ResNet-18 backbone,
//! `train --epochs 2`.

use crate::common::{exe, fixture, run_ok, synth};
use candle_core::{Device, Tensor};
use captioner::decode::{beam_search, greedy, BeamOptions, LstmSteps, MAX_WORDS};
use captioner::model::resnet::{formula, Arch};
use captioner::model::weights::save_safetensors;
use captioner::model::CaptionModel;
use captioner::serve::{self, ServeConfig};
use captioner::text::Vocabulary;
use captioner::{CaptionOptions, Captioner};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The shared tiny model: corpus, backbone and run directory.
pub(crate) struct Trained {
    pub(crate) data: PathBuf,
    pub(crate) run: PathBuf,
}

pub(crate) fn trained() -> &'static Trained {
    static T: OnceLock<Trained> = OnceLock::new();
    T.get_or_init(|| {
        // Under the target's scratch folder (not /tmp), rebuilt by each run of this test binary.
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("caption-tiny-model");
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let data = root.join("data");
        let backbone = root.join("resnet18-formula.safetensors");
        let run = root.join("run");
        synth(&data, 40);
        save_safetensors(&backbone, &formula::state_dict(Arch::ResNet18).unwrap()).unwrap();
        run_ok(
            exe()
                .arg("train")
                .arg("--data")
                .arg(&data)
                .arg("--backbone")
                .arg(&backbone)
                .args([
                    "--arch",
                    "resnet18",
                    "--epochs",
                    "2",
                    "--no-progress",
                    "--run",
                ])
                .arg(&run),
        );
        Trained { data, run }
    })
}

/// The corpus's images, sorted.
fn images(t: &Trained) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(t.data.join("Images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// A folder with `n` good images (two in a subfolder), a corrupt JPEG and a text file.
fn folder_with_a_corrupt_file(t: &Trained, n: usize) -> (tempfile::TempDir, Vec<PathBuf>, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let mut good = Vec::new();
    for (i, src) in images(t).iter().take(n).enumerate() {
        let dst = if i < 2 {
            dir.path().join("sub").join(format!("img{i:02}.jpg"))
        } else {
            dir.path().join(format!("img{i:02}.jpg"))
        };
        std::fs::copy(src, &dst).unwrap();
        good.push(dst);
    }
    let corrupt = dir.path().join("corrupt.jpg");
    let mut bytes = std::fs::read(&good[0]).unwrap();
    bytes.truncate(bytes.len() / 3);
    std::fs::write(&corrupt, bytes).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not an image").unwrap();
    (dir, good, corrupt)
}

fn vocab_words(t: &Trained) -> HashSet<String> {
    let v = Vocabulary::load(&t.run.join("vocab.json")).unwrap();
    v.itos().iter().cloned().collect()
}

fn jsonl(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

#[test]
fn greedy_tokens_equal_torch_on_the_fixture() {
    let path = fixture("decode/greedy.safetensors");
    let map = candle_core::safetensors::load(path, &Device::Cpu).unwrap();
    let model = CaptionModel::from_tensors(&map).unwrap();
    let features = &map["features"];
    let expected: Vec<Vec<i64>> = map["tokens"].to_vec2().unwrap();
    let gap = map["min_logit_gap"].to_vec1::<f32>().unwrap()[0];
    assert!(gap > 1e-3, "fixture has a near-tie ({gap})");
    let steps = LstmSteps::new(&model, features).unwrap();
    let got = greedy(&steps, expected.len()).unwrap();
    let beam1 = beam_search(
        &steps,
        expected.len(),
        BeamOptions {
            beam: 1,
            length_alpha: 0.0,
        },
    )
    .unwrap();
    let mut lengths = HashSet::new();
    for (i, (want, d)) in expected.iter().zip(&got).enumerate() {
        let want: Vec<u32> = want
            .iter()
            .take_while(|&&t| t >= 0)
            .map(|&t| t as u32)
            .collect();
        assert_eq!(d.tokens, want, "image {i}");
        assert_eq!(d.ended, want.len() < MAX_WORDS, "image {i}");
        assert_eq!(beam1[i].tokens, want, "beam 1, image {i}");
        lengths.insert(want.len());
    }
    // The fixture must exercise both ways of stopping and several lengths.
    assert!(
        lengths.contains(&MAX_WORDS) && lengths.len() >= 4,
        "{lengths:?}"
    );
}

#[test]
fn beam_one_equals_greedy_and_wider_beams_score_no_worse_on_the_real_model() {
    let t = trained();
    let c = Captioner::load(&t.run, &Device::Cpu).unwrap();
    let paths = images(t);
    let pixels: Vec<f32> = paths[..12]
        .iter()
        .flat_map(|p| captioner::vision::preprocess::preprocess_file(p).unwrap())
        .collect();
    let features = c.encode(pixels, 12).unwrap();
    let captioner::DecoderModel::Lstm(model) = c.model() else {
        panic!("the fixture's run has the LSTM decoder");
    };
    let steps = LstmSteps::new(model, &features).unwrap();
    let g = greedy(&steps, 12).unwrap();
    let opts = |beam| BeamOptions {
        beam,
        length_alpha: 0.0,
    };
    let b1 = beam_search(&steps, 12, opts(1)).unwrap();
    let b3 = beam_search(&steps, 12, opts(3)).unwrap();
    for i in 0..12 {
        assert_eq!(g[i].tokens, b1[i].tokens, "image {i}");
        assert!((g[i].log_prob - b1[i].log_prob).abs() < 1e-4);
        if g[i].ended && b3[i].ended {
            assert!(b3[i].log_prob >= g[i].log_prob - 1e-4, "image {i}");
        }
    }
    // The same captions through the Captioner's own paths.
    let by_features = c
        .caption_features(&features, &CaptionOptions::default())
        .unwrap();
    let want: Vec<String> = g.iter().map(|d| c.vocab().decode(&d.tokens)).collect();
    assert_eq!(by_features, want);
    let by_paths: Vec<String> = c
        .caption_paths(
            &paths[..12],
            &CaptionOptions {
                batch_size: 5,
                ..Default::default()
            },
        )
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(by_paths, want);
}

#[test]
fn caption_a_folder_with_a_corrupt_file_in_every_format() {
    let t = trained();
    let (dir, good, corrupt) = folder_with_a_corrupt_file(t, 6);
    let words = vocab_words(t);
    let caption = |format: &str| {
        exe()
            .args([
                "caption",
                "--format",
                format,
                "--batch-size",
                "4",
                "--model",
            ])
            .arg(&t.run)
            .arg(dir.path())
            .output()
            .unwrap()
    };

    let out = caption("jsonl");
    assert_eq!(out.status.code(), Some(1), "one file failed");
    let rows = jsonl(&out);
    assert_eq!(rows.len(), good.len() + 1);
    let errors: Vec<&Value> = rows.iter().filter(|r| r.get("error").is_some()).collect();
    assert_eq!(errors.len(), 1, "{rows:?}");
    assert_eq!(errors[0]["image"], corrupt.display().to_string());
    assert!(errors[0]["error"].as_str().unwrap().contains("corrupt.jpg"));
    let mut captioned: Vec<String> = Vec::new();
    let mut any_words = false;
    for r in rows.iter().filter(|r| r.get("caption").is_some()) {
        captioned.push(r["image"].as_str().unwrap().to_string());
        let c = r["caption"].as_str().unwrap();
        any_words |= !c.is_empty();
        for w in c.split(' ').filter(|w| !w.is_empty()) {
            assert!(words.contains(w), "{w:?} is not in the vocabulary");
        }
    }
    assert!(any_words, "the model said nothing at all: {rows:?}");
    captioned.sort();
    let mut want: Vec<String> = good.iter().map(|p| p.display().to_string()).collect();
    want.sort();
    assert_eq!(
        captioned, want,
        "every good image (subfolder included) is captioned"
    );

    let out = caption("csv");
    assert_eq!(out.status.code(), Some(1));
    let mut r = csv::Reader::from_reader(out.stdout.as_slice());
    assert_eq!(r.headers().unwrap(), vec!["image", "caption"]);
    let csv_rows: BTreeMap<String, String> = r
        .records()
        .map(|rec| {
            let rec = rec.unwrap();
            (rec[0].to_string(), rec[1].to_string())
        })
        .collect();
    assert_eq!(csv_rows.len(), good.len());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("corrupt.jpg"), "{stderr}");

    let out = caption("text");
    assert_eq!(out.status.code(), Some(1));
    let text: BTreeMap<String, String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let (p, c) = l.split_once('\t').expect("PATH<TAB>caption");
            (p.to_string(), c.to_string())
        })
        .collect();
    assert_eq!(text, csv_rows, "text and csv say the same");
    for r in rows.iter().filter(|r| r.get("caption").is_some()) {
        assert_eq!(
            text[r["image"].as_str().unwrap()],
            r["caption"].as_str().unwrap()
        );
    }

    // One good file: just the caption, exit 0.
    let out = exe()
        .args(["caption", "--model"])
        .arg(&t.run)
        .arg(&good[0])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end(),
        text[&good[0].display().to_string()]
    );
}

#[test]
fn an_exported_model_captions_exactly_as_its_run_directory() {
    let t = trained();
    let out_dir = tempfile::tempdir().unwrap();
    let model = out_dir.path().join("model.safetensors");
    run_ok(
        exe()
            .args(["export", "--run"])
            .arg(&t.run)
            .arg("--out")
            .arg(&model),
    );
    let leftovers: Vec<_> = std::fs::read_dir(out_dir.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    let folder = t.data.join("Images");
    for beam in ["1", "3"] {
        let caption = |m: &Path| {
            run_ok(
                exe()
                    .args([
                        "caption",
                        "--format",
                        "jsonl",
                        "--no-progress",
                        "--beam",
                        beam,
                        "--model",
                    ])
                    .arg(m)
                    .arg(&folder),
            )
            .stdout
        };
        let from_run = caption(&t.run);
        let rows = String::from_utf8_lossy(&from_run).lines().count();
        assert_eq!(rows, 40, "every image of the corpus is captioned");
        assert_eq!(caption(&model), from_run, "beam {beam}");
    }
    let c = Captioner::load(&model, &Device::Cpu).unwrap();
    assert_eq!(c.info().source, "export");
    assert_eq!(c.info().arch, "resnet18");
    assert_eq!(c.info().vocab_size, vocab_words(t).len());
    let run_split = captioner::data::DatasetSplit::load(&t.run.join("split.json")).unwrap();
    assert_eq!(
        c.split(),
        Some(&run_split),
        "the export carries the run's split"
    );
    // A file that is not an export is refused with its name.
    let other = out_dir.path().join("plain.safetensors");
    save_safetensors(
        &other,
        &[(
            "x".to_string(),
            Tensor::zeros(2, candle_core::DType::F32, &Device::Cpu).unwrap(),
        )]
        .into_iter()
        .collect(),
    )
    .unwrap();
    let err = Captioner::load(&other, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("plain.safetensors") && err.contains("export"),
        "{err}"
    );
}

#[test]
fn eval_prints_scores_and_writes_hypotheses_and_coco_files() {
    let t = trained();
    let out_dir = tempfile::tempdir().unwrap();
    let hyps = out_dir.path().join("hyps.json");
    let coco = out_dir.path().join("coco");
    let eval = |extra: &[&str], hyps: &Path| {
        let out = run_ok(
            exe()
                .args(["eval", "--json", "--no-progress", "--model"])
                .arg(&t.run)
                .arg("--data")
                .arg(&t.data)
                .arg("--hyps-out")
                .arg(hyps)
                .args(extra),
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
        v
    };
    let scores = eval(&["--coco-out", coco.to_str().unwrap()], &hyps);
    let split: Value =
        serde_json::from_str(&std::fs::read_to_string(t.run.join("split.json")).unwrap()).unwrap();
    let test: Vec<&str> = split["test"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(scores["images"].as_u64().unwrap() as usize, test.len());
    for key in ["bleu1", "bleu2", "bleu3", "bleu4", "rouge_l"] {
        let v = scores[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} missing: {scores}"));
        assert!((0.0..=1.0).contains(&v), "{key} = {v}");
    }
    let cider = scores["cider"].as_f64().unwrap();
    assert!((0.0..=10.0).contains(&cider), "cider = {cider}");
    assert!(scores["bleu1"].as_f64().unwrap() >= scores["bleu4"].as_f64().unwrap());

    let h: BTreeMap<String, String> =
        serde_json::from_str(&std::fs::read_to_string(&hyps).unwrap()).unwrap();
    let mut keys: Vec<&str> = h.keys().map(String::as_str).collect();
    let mut want = test.clone();
    keys.sort();
    want.sort();
    assert_eq!(keys, want);
    for f in [
        captioner::metrics::coco::ANNOTATIONS_FILE,
        captioner::metrics::coco::RESULTS_FILE,
        captioner::metrics::coco::IMAGE_IDS_FILE,
    ] {
        let v: Value =
            serde_json::from_str(&std::fs::read_to_string(coco.join(f)).unwrap()).unwrap();
        assert!(!v.is_null(), "{f}");
    }

    // Features from the run's cache and through the trunk give the same captions and scores.
    let hyps2 = out_dir.path().join("hyps-trunk.json");
    let scores2 = eval(&["--no-cache"], &hyps2);
    assert_eq!(
        std::fs::read_to_string(&hyps).unwrap(),
        std::fs::read_to_string(&hyps2).unwrap()
    );
    assert_eq!(scores, scores2);

    // The val part and beam 3 run too.
    let beam = eval(
        &["--split", "val", "--beam", "3"],
        &out_dir.path().join("h3.json"),
    );
    assert_eq!(
        beam["images"].as_u64().unwrap() as usize,
        split["val"].as_array().unwrap().len()
    );
}

#[test]
fn the_server_captions_with_the_real_model() {
    let t = trained();
    let c = Arc::new(Captioner::load(&t.run, &Device::Cpu).unwrap());
    let image = &images(t)[3];
    let bytes = std::fs::read(image).unwrap();
    let rgb = captioner::vision::decode::load_rgb(image).unwrap();
    let want = |beam| {
        c.caption_images(
            std::slice::from_ref(&rgb),
            &CaptionOptions {
                beam,
                ..Default::default()
            },
        )
        .unwrap()
        .remove(0)
    };
    let (greedy_want, beam_want) = (want(1), want(3));
    let server = serve::start(
        c.clone(),
        ServeConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            timeout: Duration::from_secs(60),
            ..ServeConfig::default()
        },
    )
    .unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    for (query, want) in [("", &greedy_want), ("?beam=3", &beam_want)] {
        let url = format!("http://{}/api/caption{query}", server.addr());
        let mut res = agent
            .post(&url)
            .header("Content-Type", "image/jpeg")
            .send(&bytes[..])
            .unwrap();
        assert_eq!(res.status().as_u16(), 200);
        let body: Value = res.body_mut().read_json().unwrap();
        assert_eq!(body["caption"].as_str().unwrap(), want.as_str(), "{query}");
    }
    let mut res = agent
        .get(&format!("http://{}/api/info", server.addr()))
        .call()
        .unwrap();
    let info: Value = res.body_mut().read_json().unwrap();
    assert_eq!(
        info["engine"]["vocab_size"].as_u64().unwrap() as usize,
        c.vocab().len()
    );
    assert_eq!(info["engine"]["arch"], "resnet18");
    // Visitors see the model's file name, never where it lives on the server.
    let file = info["engine"]["model_file"].as_str().unwrap();
    assert!(!file.is_empty() && !file.contains('/'), "{file}");
    assert!(
        !info.to_string().contains(&*t.run.to_string_lossy()),
        "{info}"
    );
    let mut res = agent
        .post(&format!("http://{}/api/caption", server.addr()))
        .header("Content-Type", "image/jpeg")
        .send(&bytes[..bytes.len() / 3])
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let body: Value = res.body_mut().read_json().unwrap();
    assert!(body["error"].is_string());
    server.shutdown().unwrap();
}

#[test]
fn attention_output_needs_an_attention_model() {
    let t = trained();
    let image = images(t).remove(0);
    let dir = tempfile::tempdir().unwrap();
    let out = exe()
        .args(["caption", "--attention-out"])
        .arg(dir.path().join("maps"))
        .arg("--model")
        .arg(&t.run)
        .arg(&image)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("needs an attention model") && err.contains("lstm"),
        "{err}"
    );
    // The LSTM decoder's JSONL has no attention fields.
    let out = exe()
        .args(["caption", "--format", "jsonl", "--model"])
        .arg(&t.run)
        .arg(&image)
        .output()
        .unwrap();
    let rows = jsonl(&out);
    assert_eq!(rows.len(), 1);
    assert!(rows[0].get("attention").is_none() && rows[0].get("grid").is_none());
    assert!(rows[0]["caption"].is_string());
}
