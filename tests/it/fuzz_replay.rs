//! The fuzz corpora as ordinary tests, on stable Rust: every file of `fuzz/corpus/<target>/` (the
//! seeds and what the fuzzer kept) and of `fuzz/regressions/<target>/` (each input that once
//! crashed, hung or ran out of memory, kept after its fix) goes through the same harness function
//! the cargo-fuzz target runs (`fuzz/harness.rs`, included here). A panic names the file.
//! `cargo test --test it fuzz_replay` runs them all (`FUZZ_REPLAY_ONLY=name` just the files whose
//! path contains `name`); docs/fuzzing.md says how to fuzz.

#[path = "../../fuzz/harness.rs"]
mod harness;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};

/// The largest single allocation a harness may ask for, as libFuzzer's `-malloc_limit_mb`
/// (= `-rss_limit_mb=2048`, see scripts/fuzz.sh) allows it: an input that makes the library
/// ask for more fails here as it fails under the fuzzer, even where the allocation itself
/// would succeed lazily (a huge zeroed `Vec` costs nothing until it is written).
const MALLOC_LIMIT: usize = 2048 << 20;

thread_local! {
    /// The largest allocation of this thread since it was last reset.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

/// The system allocator, noting the largest allocation of each thread (the harness runs on
/// the test's thread; its allocations on the library's own threads go unnoticed).
struct NotingLargest;

unsafe impl GlobalAlloc for NotingLargest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

#[global_allocator]
static ALLOCATOR: NotingLargest = NotingLargest;

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
    // FUZZ_REPLAY_ONLY=text replays only the files whose path contains it.
    let only = std::env::var("FUZZ_REPLAY_ONLY").unwrap_or_default();
    let regressions = inputs("regressions", target);
    let files = corpus.iter().chain(&regressions);
    for file in files.filter(|f| f.to_string_lossy().contains(&only)) {
        // A fuzzer running on the corpus meanwhile may have replaced the file by a smaller one.
        let Ok(bytes) = std::fs::read(file) else {
            continue;
        };
        LARGEST.with(|l| l.set(0));
        let outcome = std::panic::catch_unwind(|| harness(&bytes));
        let largest = LARGEST.with(Cell::get);
        assert!(
            largest <= MALLOC_LIMIT,
            "{target}: {} makes the library allocate {largest} bytes at once (limit {MALLOC_LIMIT})",
            file.display()
        );
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
