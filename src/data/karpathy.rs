//! Reader for Karpathy's split files (`dataset_flickr8k.json`, `dataset_flickr30k.json`,
//! `dataset_coco.json`): `images[]` with `filename`, optional `filepath` (COCO's `train2014`, ...),
//! `split` and `sentences[].raw`.

use crate::data::layout::has_image_extension;
use crate::data::parsed::{strip_bom, ParsedCaptions};
use crate::data::SplitName;
use crate::{Error, Result};
use serde_json::Value;
use std::path::Path;

/// Reads the JSON. Invalid JSON or a missing `images` array is an error; a bad image entry or
/// sentence is counted and skipped.
pub fn read(path: &Path) -> Result<ParsedCaptions> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let root: Value = serde_json::from_slice(strip_bom(&bytes))
        .map_err(|e| Error::format(path, format!("invalid JSON: {e}")))?;
    let Some(images) = root.get("images").and_then(Value::as_array) else {
        return Err(Error::format(path, "no \"images\" array"));
    };
    let mut parsed = ParsedCaptions::default();
    for (i, entry) in images.iter().enumerate() {
        let (file, split) = match image_name_and_split(entry) {
            Ok(x) => x,
            Err(msg) => {
                parsed.bad_rows.add(format!("images[{i}]: {msg}"));
                continue;
            }
        };
        let Some(sentences) = entry.get("sentences").and_then(Value::as_array) else {
            parsed
                .bad_rows
                .add(format!("images[{i}] {file}: no \"sentences\" array"));
            continue;
        };
        if sentences.is_empty() {
            parsed
                .bad_rows
                .add(format!("images[{i}] {file}: no sentences"));
            continue;
        }
        let mut captions = Vec::new();
        for (j, s) in sentences.iter().enumerate() {
            match s.get("raw").and_then(Value::as_str).map(str::trim) {
                Some(raw) if !raw.is_empty() => captions.push(raw.to_owned()),
                _ => parsed.bad_rows.add(format!(
                    "images[{i}].sentences[{j}] {file}: no \"raw\" text"
                )),
            }
        }
        if captions.is_empty() {
            continue;
        }
        let image = parsed.image_mut(&file);
        image.captions.extend(captions);
        if image.split.is_none() {
            image.split = split;
        }
    }
    Ok(parsed)
}

/// `filepath/filename` (or `filename`) and the split of one entry of `images[]`.
fn image_name_and_split(entry: &Value) -> std::result::Result<(String, Option<SplitName>), String> {
    let name = entry
        .get("filename")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or("no \"filename\"")?;
    let file = match entry.get("filepath") {
        None | Some(Value::Null) => name.to_owned(),
        Some(Value::String(dir)) if dir.trim().is_empty() => name.to_owned(),
        Some(Value::String(dir)) => format!("{}/{name}", dir.trim().trim_end_matches('/')),
        Some(other) => return Err(format!("\"filepath\" is not a string: {other}")),
    };
    if !has_image_extension(&file) {
        return Err(format!("{file:?} is not an image file name"));
    }
    let split = match entry.get("split") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(
            SplitName::from_karpathy(s).ok_or_else(|| format!("{file}: unknown split {s:?}"))?,
        ),
        Some(other) => return Err(format!("{file}: \"split\" is not a string: {other}")),
    };
    Ok((file, split))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_entries_filepaths_and_splits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dataset_coco.json");
        let json = r#"{"images": [
            {"filename": "a.jpg", "split": "train", "sentences": [{"raw": "A dog ."}, {"raw": "Dog"}]},
            {"filename": "b.jpg", "filepath": "val2014", "split": "restval", "sentences": [{"raw": "cat"}]},
            {"filename": "c.jpg", "split": "val", "sentences": [{"tokens": []}, {"raw": "bird"}]},
            {"split": "test", "sentences": [{"raw": "x"}]},
            {"filename": "d.jpg", "split": "holdout", "sentences": [{"raw": "x"}]},
            {"filename": "e.jpg", "split": "test", "sentences": []}
        ], "dataset": "coco"}"#;
        std::fs::write(&path, json).unwrap();
        let p = read(&path).unwrap();
        let got: Vec<_> = p
            .images
            .iter()
            .map(|i| (i.file.as_str(), i.captions.len(), i.split))
            .collect();
        use SplitName::*;
        assert_eq!(
            got,
            [
                ("a.jpg", 2, Some(Train)),
                ("val2014/b.jpg", 1, Some(Train)),
                ("c.jpg", 1, Some(Val)),
            ]
        );
        assert_eq!(p.bad_rows.count, 4, "{:?}", p.bad_rows);
    }

    #[test]
    fn invalid_json_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dataset_flickr8k.json");
        std::fs::write(&path, "{\"images\": [").unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("dataset_flickr8k.json"), "{err}");
        std::fs::write(&path, "[]").unwrap();
        assert!(read(&path).is_err());
    }
}
