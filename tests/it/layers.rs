//! The library's modules form layers, each using only those below it (see the crate docs):
//! this test reads every source file under src/ and fails when a module names one above it
//! (`crate::x` or `captioner::x` paths), or when the CLI is imported by the library.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Top-level modules by layer, lowest first. A module may use its own layer's others and any below.
const LAYERS: &[&[&str]] = &[
    &["error", "fsutil", "device", "pool", "progress", "shard"],
    &["data", "text", "vision", "metrics", "fetch"],
    &["model", "run"],
    &["features", "train", "decode", "export"],
    &["captioner"],
    &["pipeline", "report", "serve", "library"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a file names through `crate::` paths, with `use crate::{a, b::c}` groups.
fn used_modules(text: &str) -> Vec<String> {
    let mut used = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                used.push(name);
            }
        } else {
            used.push(
                rest.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect(),
            );
        }
    }
    used
}

#[test]
fn library_modules_use_only_their_layer_and_below() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut seen = 0;
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if matches!(top.as_str(), "lib" | "main" | "cli") {
            continue;
        }
        let own = layer_of(&top).unwrap_or_else(|| panic!("src/{top} is in no layer of LAYERS"));
        let text = std::fs::read_to_string(file).unwrap();
        assert!(
            !text.contains("crate::cli") && !text.contains("mod cli"),
            "{} uses the command line",
            rel.display()
        );
        for used in used_modules(&text) {
            // `crate::Error`, `crate::Result` and the like are re-exports of layer 1.
            let Some(layer) = layer_of(&used) else {
                continue;
            };
            seen += 1;
            if layer > own {
                wrong
                    .entry(rel.display().to_string())
                    .or_default()
                    .push(used);
            }
        }
    }
    assert!(
        seen > 50,
        "only {seen} crate:: paths found: is the scan broken?"
    );
    assert!(
        wrong.is_empty(),
        "modules that use a layer above their own: {wrong:?}"
    );
}

#[test]
fn the_scan_sees_grouped_and_plain_paths() {
    let used = used_modules("use crate::{data::X, model};\nlet a = crate::serve::run();");
    assert_eq!(used, ["data", "model", "serve"]);
}
