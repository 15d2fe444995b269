//! Our caption metrics against pycocoevalcap 1.2 on the fixtures written by
//! `scripts/reference/metrics_fixtures.py` (expected scores, and the real PTBTokenizer's output).

use crate::common::fixture;
use captioner::metrics::{self, tokenize::ptb_tokenize, Scores, TokenizedHyps, TokenizedRefs};
use serde::Deserialize;
use std::collections::BTreeMap;

const TOLERANCE: f64 = 1e-4;
const FIXTURES: [&str; 5] = [
    "pretokenized_200",
    "pretokenized_1",
    "raw_200",
    "raw_1",
    "raw_edge_cases",
];

#[derive(Deserialize)]
struct ImageExpected {
    bleu: [f64; 4],
    rouge_l: f64,
    cider: f64,
}

#[derive(Deserialize)]
struct Expected {
    bleu: [f64; 4],
    rouge_l: f64,
    cider: f64,
    per_image: BTreeMap<String, ImageExpected>,
}

#[derive(Deserialize)]
struct Fixture {
    raw: bool,
    refs: Option<BTreeMap<String, Vec<String>>>,
    hyps: Option<BTreeMap<String, String>>,
    tokenized_refs: BTreeMap<String, Vec<String>>,
    tokenized_hyps: BTreeMap<String, String>,
    expected: Expected,
}

fn load(name: &str) -> Fixture {
    let path = fixture(&format!("metrics/{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// pycocoevalcap's scorers split the tokenizer's space-joined output on whitespace.
fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

fn tokenized(f: &Fixture) -> (TokenizedRefs, TokenizedHyps) {
    let refs = f
        .tokenized_refs
        .iter()
        .map(|(k, v)| (k.clone(), v.iter().map(|c| words(c)).collect()))
        .collect();
    let hyps = f
        .tokenized_hyps
        .iter()
        .map(|(k, v)| (k.clone(), words(v)))
        .collect();
    (refs, hyps)
}

/// Largest |ours - expected| seen per metric, printed with `--nocapture`.
#[derive(Default, Debug)]
struct MaxDiff {
    bleu: [f64; 4],
    rouge_l: f64,
    cider: f64,
}

fn check4(what: &str, ours: &[f64; 4], expected: &[f64; 4], max: &mut [f64; 4]) {
    for (n, ((o, e), m)) in ours.iter().zip(expected).zip(max).enumerate() {
        check(&format!("{what} BLEU-{}", n + 1), *o, *e, m);
    }
}

fn check(what: &str, ours: f64, expected: f64, max: &mut f64) {
    let d = (ours - expected).abs();
    *max = max.max(d);
    assert!(
        d <= TOLERANCE,
        "{what}: ours {ours} vs pycocoevalcap {expected}"
    );
}

#[test]
fn scores_on_tokenized_captions_equal_pycocoevalcap() {
    let mut corpus = MaxDiff::default();
    let mut per_image = MaxDiff::default();
    for name in FIXTURES {
        let f = load(name);
        let (refs, hyps) = tokenized(&f);
        let e = &f.expected;
        let bleu = metrics::bleu(&refs, &hyps).unwrap();
        check4(name, &bleu, &e.bleu, &mut corpus.bleu);
        check(
            &format!("{name} ROUGE-L"),
            metrics::rouge_l(&refs, &hyps).unwrap(),
            e.rouge_l,
            &mut corpus.rouge_l,
        );
        check(
            &format!("{name} CIDEr-D"),
            metrics::cider_d(&refs, &hyps).unwrap(),
            e.cider,
            &mut corpus.cider,
        );

        let bleu = metrics::bleu_per_image(&refs, &hyps).unwrap();
        let rouge = metrics::rouge_l_per_image(&refs, &hyps).unwrap();
        let cider = metrics::cider_d_per_image(&refs, &hyps).unwrap();
        assert_eq!(bleu.len(), e.per_image.len());
        for (image, ie) in &e.per_image {
            check4(
                &format!("{name} {image}"),
                &bleu[image],
                &ie.bleu,
                &mut per_image.bleu,
            );
            check(
                &format!("{name} {image} ROUGE-L"),
                rouge[image],
                ie.rouge_l,
                &mut per_image.rouge_l,
            );
            check(
                &format!("{name} {image} CIDEr-D"),
                cider[image],
                ie.cider,
                &mut per_image.cider,
            );
        }
    }
    println!("max |diff| corpus:    {corpus:?}");
    println!("max |diff| per image: {per_image:?}");
}

/// Captions on which our emulation is known to differ from CoreNLP (documented in tokenize.rs).
const KNOWN_DIFFERENCES: [&str; 4] = [
    "http://x.com and email@x.com",
    "y'all like rock'n'roll",
    "Dr.Smith and Mr.Jones at No.5",
    "A smiley :) face and a sad :( face",
];

#[test]
fn ptb_tokenize_equals_the_real_ptb_tokenizer() {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for name in FIXTURES {
        let f = load(name);
        if let (Some(refs), Some(hyps)) = (&f.refs, &f.hyps) {
            for (image, captions) in refs {
                for (raw, tok) in captions.iter().zip(&f.tokenized_refs[image]) {
                    pairs.push((raw.clone(), tok.clone()));
                }
                pairs.push((hyps[image].clone(), f.tokenized_hyps[image].clone()));
            }
        }
    }
    let path = fixture("metrics/ptb_cases.json");
    let cases: Vec<(String, String)> =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    pairs.extend(cases);

    let mut unexpected = Vec::new();
    let mut known = 0;
    for (raw, expected) in &pairs {
        let ours = ptb_tokenize(raw).join(" ");
        let is_known = KNOWN_DIFFERENCES.contains(&raw.as_str());
        if is_known {
            assert_ne!(
                &ours, expected,
                "{raw:?} now matches: remove it from KNOWN_DIFFERENCES"
            );
            known += 1;
        } else if &ours != expected {
            unexpected.push(format!("{raw:?}\n  ours: {ours:?}\n  ptb:  {expected:?}"));
        }
    }
    println!(
        "{} captions, {} differ ({known} known)",
        pairs.len(),
        unexpected.len() + known
    );
    assert!(unexpected.is_empty(), "{}", unexpected.join("\n"));
}

#[test]
fn evaluate_on_raw_captions_equals_the_python_pipeline() {
    let mut max = MaxDiff::default();
    for name in FIXTURES {
        let f = load(name);
        if !f.raw {
            continue;
        }
        let (refs, hyps) = (f.refs.as_ref().unwrap(), f.hyps.as_ref().unwrap());
        let s = metrics::evaluate(refs, hyps).unwrap();
        let e = &f.expected;
        let ours = [s.bleu1, s.bleu2, s.bleu3, s.bleu4];
        check4(name, &ours, &e.bleu, &mut max.bleu);
        check(
            &format!("{name} ROUGE-L"),
            s.rouge_l,
            e.rouge_l,
            &mut max.rouge_l,
        );
        check(&format!("{name} CIDEr-D"), s.cider, e.cider, &mut max.cider);
        assert_eq!(s.images, hyps.len());
    }
    println!("max |diff| evaluate(raw): {max:?}");
}

#[test]
fn scores_serialize_with_the_eval_json_keys() {
    let s = Scores {
        bleu1: 0.5,
        bleu2: 0.4,
        bleu3: 0.3,
        bleu4: 0.2,
        rouge_l: 0.45,
        cider: 0.9,
        images: 7,
    };
    let v = serde_json::to_value(s).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let mut expected = vec![
        "bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "cider", "images",
    ];
    expected.sort();
    let mut keys = keys;
    keys.sort();
    assert_eq!(keys, expected);
    assert_eq!(v["images"], 7);
}
