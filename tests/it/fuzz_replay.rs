//! The fuzz corpora as ordinary tests, on stable Rust: every file of `fuzz/corpus/<target>/` (the
//! seeds and what the fuzzer kept) and of `fuzz/regressions/<target>/` (each input that once
//! crashed, hung or ran out of memory, kept after its fix) goes through the same harness function
//! the cargo-fuzz target runs (`fuzz/harness.rs`, included here). A panic names the file.
//! `cargo test --test it fuzz_replay` runs them all; docs/fuzzing.md says how to fuzz.

#[path = "../../fuzz/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};

/// The files of `fuzz/<kind>/<target>/`, sorted (none when the folder does not exist).
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Replays the corpus and the regressions of `target` through `harness`.
fn replay(target: &str, harness: fn(&[u8])) {
    let corpus = inputs("corpus", target);
    assert!(!corpus.is_empty(), "fuzz/corpus/{target}/ has no seeds");
    for file in corpus.iter().chain(&inputs("regressions", target)) {
        // A fuzzer running on the corpus meanwhile may have replaced the file by a smaller one.
        let Ok(bytes) = std::fs::read(file) else {
            continue;
        };
        let outcome = std::panic::catch_unwind(|| harness(&bytes));
        if let Err(panic) = outcome {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{target}: {} fails: {msg}", file.display());
        }
    }
}

#[test]
fn image() {
    replay("image", harness::image);
}

#[test]
fn pth() {
    replay("pth", harness::pth);
}

#[test]
fn safetensors() {
    replay("safetensors", harness::safetensors);
}

#[test]
fn kaggle_csv() {
    replay("kaggle_csv", harness::kaggle_csv);
}

#[test]
fn token_file() {
    replay("token_file", harness::token_file);
}

#[test]
fn karpathy_json() {
    replay("karpathy_json", harness::karpathy_json);
}

#[test]
fn vocab_json() {
    replay("vocab_json", harness::vocab_json);
}

#[test]
fn zip_extract() {
    replay("zip_extract", harness::zip_extract);
}

#[test]
fn http_upload() {
    replay("http_upload", harness::http_upload);
}
