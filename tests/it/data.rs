//! Corpus readers, split, vocabulary and `captioner inspect`, on a generated corpus written in all
//! three layouts (see tests/it/data_corpus.rs) and against the committed Python reference.

use crate::common::{exe, fixture};
use crate::data_corpus::*;
use captioner::data::{CaptionCorpus, DatasetSplit, Layout, LoadOptions, SplitRatios};
use captioner::text::{Vocabulary, UNK};
use serde_json::Value;
use std::path::Path;

const LAYOUTS: [Layout; 3] = [Layout::Kaggle, Layout::Token, Layout::Karpathy];
/// Keys of `inspect --json` that must not depend on the layout for the same images and captions.
const SHARED_KEYS: [&str; 9] = [
    "images",
    "captions",
    "missing_images",
    "bad_rows",
    "images_without_captions",
    "unsplit_images",
    "split",
    "vocab_size",
    "caption_length",
];

fn inspect(dir: &Path, extra: &[&str]) -> (i32, String, String) {
    let out = exe()
        .arg("inspect")
        .arg("--data")
        .arg(dir)
        .args(extra)
        .output()
        .unwrap();
    let code = out.status.code().unwrap_or(-1);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (code, text(&out.stdout), text(&out.stderr))
}

fn inspect_json(dir: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = inspect(dir, &args);
    assert_eq!(code, 0, "{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn unreadable_files(v: &Value) -> Vec<String> {
    let mut files: Vec<String> = v["unreadable_images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["file"].as_str().unwrap().to_owned())
        .collect();
    files.sort();
    files
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

#[test]
fn same_corpus_gives_the_same_inspection_in_all_three_layouts() {
    let tmp = tempfile::tempdir().unwrap();
    let results: Vec<Value> = LAYOUTS
        .iter()
        .map(|&l| {
            let dir = write_corpus(&tmp.path().join(l.name()), l, true);
            inspect_json(&dir, &["--min-freq", "1"])
        })
        .collect();
    for (layout, v) in LAYOUTS.iter().zip(&results) {
        assert_eq!(v["layout"], layout.name());
        assert_eq!(v["images"], GOOD + BROKEN.len(), "{layout}");
        assert_eq!(v["captions"], 5 * (GOOD + BROKEN.len()));
        assert_eq!(v["missing_images"], 1);
        assert_eq!(v["bad_rows"], 1, "{layout}: {}", v["examples"]);
        assert_eq!(v["skipped_lines"], usize::from(*layout == Layout::Token));
        assert_eq!(v["images_without_captions"], 1);
        assert_eq!(v["examples"]["images_without_captions"][0], UNCAPTIONED);
        assert_eq!(v["examples"]["missing_images"][0], MISSING);
        assert_eq!(v["unsplit_images"], 1);
        assert_eq!(v["split_source"], "dataset");
        assert_eq!(unreadable_files(v), sorted(&BROKEN));
        for key in SHARED_KEYS {
            assert_eq!(v[key], results[0][key], "{key} differs for {layout}");
        }
    }
    let split = &results[0]["split"];
    let total: u64 = ["train", "val", "test"]
        .iter()
        .map(|k| split[k].as_u64().unwrap())
        .sum();
    assert_eq!(
        total as usize,
        GOOD + BROKEN.len() - 1,
        "all but the unsplit image"
    );
}

#[test]
fn inspect_matches_the_python_reference() {
    let text = std::fs::read_to_string(fixture("data/corpus_reference.json")).unwrap();
    let fixture: Value = serde_json::from_str(&text).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for l in LAYOUTS {
        write_corpus(&tmp.path().join(l.name()), l, true);
    }
    for case in fixture.as_array().unwrap() {
        let dir = tmp.path().join(case["dir"].as_str().unwrap());
        let args = &case["args"];
        let min_freq = args["min_freq"].to_string();
        let mut flags = vec![
            "--min-freq",
            &min_freq,
            "--vocab-from",
            args["vocab_from"].as_str().unwrap(),
        ];
        let split_file = args["split_file"].as_str().map(|f| dir.join(f));
        if let Some(f) = &split_file {
            flags.extend(["--split-file", f.to_str().unwrap()]);
        }
        let got = inspect_json(&dir, &flags);
        let want = &case["expected"];
        for key in SHARED_KEYS
            .iter()
            .chain(&["layout", "skipped_lines", "min_freq", "vocab_from"])
        {
            if *key == "caption_length" {
                continue;
            }
            assert_eq!(got[key], want[key], "{key} for {case}");
        }
        for k in ["min", "max"] {
            assert_eq!(got["caption_length"][k], want["caption_length"][k]);
        }
        let mean = |v: &Value| v["caption_length"]["mean"].as_f64().unwrap();
        assert!((mean(&got) - mean(want)).abs() < 1e-9);
        assert_eq!(unreadable_files(&got), unreadable_files(want));

        // The words themselves, in order, not just their number.
        let corpus = CaptionCorpus::load(&dir, &LoadOptions::default()).unwrap();
        let split = match &split_file {
            Some(f) => DatasetSplit::load_for(f, &corpus).unwrap(),
            None => DatasetSplit::from_corpus(&corpus, SplitRatios::default(), 42),
        };
        let min_freq = args["min_freq"].as_u64().unwrap() as usize;
        let vocab = match args["vocab_from"].as_str().unwrap() {
            "all" => Vocabulary::build(corpus.captions(), min_freq),
            _ => Vocabulary::build(corpus.captions_of(&split.train), min_freq),
        };
        let want_words: Vec<&str> = want["vocab"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_str().unwrap())
            .collect();
        assert_eq!(vocab.itos(), want_words.as_slice(), "{case}");
    }
}

#[test]
fn each_broken_file_is_named_on_exactly_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_corpus(tmp.path(), Layout::Token, true);
    let (code, stdout, stderr) = inspect(&dir, &[]);
    assert_eq!(code, 0, "inspect finishes with bad images: {stderr}");
    for name in BROKEN.iter().chain(&[MISSING, UNCAPTIONED]) {
        let lines = stdout.lines().filter(|l| l.contains(name)).count();
        assert_eq!(lines, 1, "{name} in:\n{stdout}");
    }
    assert!(
        stdout.contains("skipped lines: 1 (first: line 16:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("bomb.png: image is 10000x10000"),
        "{stdout}"
    );
    let (code, _, _) = inspect(&dir, &["--strict"]);
    assert_eq!(code, 2, "--strict turns problems into a non-zero exit");
}

#[test]
fn strict_refuses_a_flawed_corpus_and_accepts_a_clean_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_corpus(tmp.path(), Layout::Kaggle, false);
    let strict = LoadOptions {
        format: None,
        strict: true,
    };
    let err = CaptionCorpus::load(&dir, &strict).unwrap_err().to_string();
    assert!(
        err.contains("captions.txt") && err.contains(MISSING),
        "{err}"
    );

    let clean = tmp.path().join("clean");
    std::fs::create_dir_all(clean.join("Images")).unwrap();
    image::RgbImage::new(4, 4)
        .save(clean.join("Images/a.png"))
        .unwrap();
    std::fs::write(
        clean.join("captions.txt"),
        "image,caption\na.png,\"A dog, running\"\n",
    )
    .unwrap();
    let corpus = CaptionCorpus::load(&clean, &strict).unwrap();
    assert_eq!(corpus.images[0].captions, ["A dog, running"]);
    let (code, _, stderr) = inspect(&clean, &["--strict", "--json"]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn format_flag_overrides_detection() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_corpus(tmp.path(), Layout::Kaggle, false);
    write_corpus(tmp.path(), Layout::Token, false);
    let (_, stdout, stderr) = inspect(&dir, &["--json"]);
    assert!(
        stderr.contains("also holds a token captions file"),
        "{stderr}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).unwrap()["layout"],
        "kaggle"
    );
    let v = inspect_json(&dir, &["--format", "token"]);
    assert_eq!(v["layout"], "token");
    assert_eq!(v["skipped_lines"], 1);
    let (code, _, stderr) = inspect(&dir, &["--format", "karpathy"]);
    assert_eq!(code, 1, "no Karpathy file: an error, not a panic");
    assert!(stderr.contains("karpathy"), "{stderr}");
}

#[test]
fn random_split_is_by_image_and_seeded() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_corpus(tmp.path(), Layout::Kaggle, false);
    let corpus = CaptionCorpus::load(&dir, &LoadOptions::default()).unwrap();
    assert!(!corpus.has_own_split());
    let ratios = SplitRatios::default();
    let a = DatasetSplit::from_corpus(&corpus, ratios, 42);
    let mut all: Vec<&String> = a.train.iter().chain(&a.val).chain(&a.test).collect();
    assert_eq!(all.len(), corpus.len());
    all.sort();
    all.dedup();
    assert_eq!(all.len(), corpus.len(), "an image in two parts");
    assert_eq!((a.val.len(), a.test.len()), (2, 2), "round(18 * 0.1) each");
    assert_eq!(a, DatasetSplit::from_corpus(&corpus, ratios, 42));
    assert_ne!(a, DatasetSplit::from_corpus(&corpus, ratios, 43));
    let tutorial = DatasetSplit::random(&corpus, "0.8,0.2,0".parse().unwrap(), 42);
    assert!(tutorial.test.is_empty() && tutorial.val.len() == 4);

    // split.json round trip, and through --split-file.
    let path = tmp.path().join("out/split.json");
    a.save(&path).unwrap();
    assert_eq!(DatasetSplit::load_for(&path, &corpus).unwrap(), a);
    let v = inspect_json(&dir, &["--split-file", path.to_str().unwrap()]);
    assert_eq!(v["split"]["train"], a.train.len());
    assert_eq!(v["split_source"], "file");
    let v = inspect_json(&dir, &["--seed", "7", "--split-ratios", "0.5,0.25,0.25"]);
    assert_eq!(v["split"]["val"], 5);
}

#[test]
fn split_file_naming_unknown_images_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_corpus(tmp.path(), Layout::Kaggle, false);
    let corpus = CaptionCorpus::load(&dir, &LoadOptions::default()).unwrap();
    let mut split = fixed_split();
    split.test.push(MISSING.into());
    split.test.push("nowhere.jpg".into());
    let path = tmp.path().join("split.json");
    split.save(&path).unwrap();
    let err = DatasetSplit::load_for(&path, &corpus)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("split.json") && err.contains(MISSING) && err.contains("nowhere.jpg"),
        "{err}"
    );
    split.test.truncate(2);
    split.val.push(split.train[0].clone());
    split.save(&path).unwrap();
    assert!(DatasetSplit::load(&path)
        .unwrap_err()
        .to_string()
        .contains("two parts"));
}

#[test]
fn vocabulary_from_train_leaves_out_words_only_seen_elsewhere() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_corpus(tmp.path(), Layout::Karpathy, true);
    let corpus = CaptionCorpus::load(&dir, &LoadOptions::default()).unwrap();
    let split = DatasetSplit::from_corpus(&corpus, SplitRatios::default(), 42);
    let train = Vocabulary::build(corpus.captions_of(&split.train), 1);
    let all = Vocabulary::build(corpus.captions(), 1);
    // "A {animal} jumps {i} times": the number of a validation image is never seen in training.
    let val_image = corpus
        .images
        .iter()
        .position(|i| Some(&i.file) == split.val.first())
        .unwrap();
    let word = val_image.to_string();
    assert!(train.id(&word).is_none() && all.id(&word).is_some());
    assert_eq!(train.encode(&format!("a {word}"))[1], UNK);
    assert!(train.len() < all.len());
    assert_eq!(
        &all.itos()[4..8],
        ["a", "red", "dog", "runs"],
        "first appearance order"
    );
    let path = tmp.path().join("vocab.json");
    all.save(&path).unwrap();
    assert_eq!(Vocabulary::load(&path).unwrap(), all);
    let v = inspect_json(&dir, &["--vocab-from", "all", "--min-freq", "1"]);
    assert_eq!(v["vocab_size"], all.len());
}

#[test]
fn malformed_input_is_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let garbage: [(&str, &[u8]); 4] = [
        ("captions.txt", b"\xff\xfe\x00garbage\n\"unterminated,\n"),
        ("Flickr8k.token.txt", b"\xff\xfe\x00\t#\n#\t\n\t\t\t\n"),
        (
            "dataset_flickr8k.json",
            b"{\"images\": [1, null, {\"filename\": 3}, {\"sentences\": 5}]}",
        ),
        ("dataset_coco.json", b"\xef\xbb\xbf{\"images\": {}}"),
    ];
    for (name, bytes) in garbage {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
        let (code, _, stderr) = inspect(&dir, &["--json"]);
        assert!(code == 0 || code == 1, "{name}: exit {code}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }
    let (code, _, stderr) = inspect(&tmp.path().join("nowhere"), &[]);
    assert_eq!(code, 1, "{stderr}");
}

/// Writes the test corpus in the three layouts for the Python reference; see
/// scripts/reference/corpus_reference.py.
#[test]
#[ignore]
fn write_reference_corpus() {
    let root = std::env::var("CAPTIONER_REFERENCE_CORPUS").expect("set CAPTIONER_REFERENCE_CORPUS");
    for l in LAYOUTS {
        write_corpus(&Path::new(&root).join(l.name()), l, true);
    }
}
