//! Files for the official coco-caption toolkit, so users can add METEOR and SPICE (which need
//! Java) to our scores: an annotations file that `pycocotools.coco.COCO` loads, a results file
//! that `COCO.loadRes` accepts, and the mapping from our image file names to integer ids.

use super::check_images;
use crate::{fsutil, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// File name of the ground-truth annotations written by [`write_coco_files`].
pub const ANNOTATIONS_FILE: &str = "captions_gt.json";
/// File name of the results (one caption per image) written by [`write_coco_files`].
pub const RESULTS_FILE: &str = "captions_results.json";
/// File name of the `{"<image file>": id}` mapping written by [`write_coco_files`].
pub const IMAGE_IDS_FILE: &str = "image_ids.json";

/// Writes `{"<image file>": "<caption>"}` as JSON, atomically.
pub fn write_hyps_json(path: &Path, hyps: &BTreeMap<String, String>) -> Result<()> {
    fsutil::write_json_atomic(path, hyps)
}

/// The paths written by [`write_coco_files`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CocoFiles {
    /// The ground-truth annotations, [`ANNOTATIONS_FILE`].
    pub annotations: PathBuf,
    /// The results, [`RESULTS_FILE`].
    pub results: PathBuf,
    /// The image-name-to-id mapping, [`IMAGE_IDS_FILE`].
    pub image_ids: PathBuf,
}

#[derive(Serialize)]
struct Image<'a> {
    id: usize,
    file_name: &'a str,
}

#[derive(Serialize)]
struct Annotation<'a> {
    image_id: usize,
    id: usize,
    caption: &'a str,
}

#[derive(Serialize)]
struct Annotations<'a> {
    info: BTreeMap<String, String>,
    licenses: Vec<()>,
    #[serde(rename = "type")]
    kind: &'static str,
    images: Vec<Image<'a>>,
    annotations: Vec<Annotation<'a>>,
}

#[derive(Serialize)]
struct CaptionResult<'a> {
    image_id: usize,
    caption: &'a str,
}

/// Writes the annotations, results and id-mapping files into `dir` (created if needed).
///
/// Images get integer ids 1..=N in file-name order: pycocotools would take strings, but the
/// original coco-caption scripts and SPICE expect the integer ids of COCO, so the file name
/// is kept beside each id (`images[].file_name` and `image_ids.json`). Captions are written
/// raw; the toolkit tokenizes them itself.
pub fn write_coco_files(
    dir: &Path,
    refs: &BTreeMap<String, Vec<String>>,
    hyps: &BTreeMap<String, String>,
) -> Result<CocoFiles> {
    check_images(refs, hyps)?;
    let ids: BTreeMap<&str, usize> = refs
        .keys()
        .enumerate()
        .map(|(i, name)| (name.as_str(), i + 1))
        .collect();
    let mut annotations = Vec::new();
    for (name, captions) in refs {
        for caption in captions {
            annotations.push(Annotation {
                image_id: ids[name.as_str()],
                id: annotations.len() + 1,
                caption,
            });
        }
    }
    let gt = Annotations {
        info: [(
            "description".to_string(),
            "captioner references".to_string(),
        )]
        .into(),
        licenses: Vec::new(),
        kind: "captions",
        images: ids
            .iter()
            .map(|(&file_name, &id)| Image { id, file_name })
            .collect(),
        annotations,
    };
    let results: Vec<CaptionResult> = hyps
        .iter()
        .map(|(name, caption)| CaptionResult {
            image_id: ids[name.as_str()],
            caption,
        })
        .collect();
    let files = CocoFiles {
        annotations: dir.join(ANNOTATIONS_FILE),
        results: dir.join(RESULTS_FILE),
        image_ids: dir.join(IMAGE_IDS_FILE),
    };
    fsutil::write_json_atomic(&files.annotations, &gt)?;
    fsutil::write_json_atomic(&files.results, &results)?;
    fsutil::write_json_atomic(&files.image_ids, &ids)?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn coco_files_have_the_layout_pycocotools_reads() {
        let dir = tempfile::tempdir().unwrap();
        let refs: BTreeMap<String, Vec<String>> = [
            ("b.jpg".to_string(), vec!["A cat.".to_string()]),
            (
                "a.jpg".to_string(),
                vec!["A dog.".to_string(), "Dog runs".to_string()],
            ),
        ]
        .into();
        let hyps: BTreeMap<String, String> = [
            ("a.jpg".to_string(), "a dog".to_string()),
            ("b.jpg".to_string(), "a cat".to_string()),
        ]
        .into();
        let files = write_coco_files(dir.path(), &refs, &hyps).unwrap();
        let gt: Value = fsutil::read_json(&files.annotations).unwrap();
        assert_eq!(gt["type"], "captions");
        assert!(gt["info"].is_object() && gt["licenses"].is_array());
        assert_eq!(gt["images"][0]["id"], 1);
        assert_eq!(gt["images"][0]["file_name"], "a.jpg");
        assert_eq!(gt["annotations"].as_array().unwrap().len(), 3);
        assert_eq!(gt["annotations"][2]["image_id"], 2);
        assert_eq!(gt["annotations"][2]["id"], 3);
        assert_eq!(gt["annotations"][2]["caption"], "A cat.");
        let res: Value = fsutil::read_json(&files.results).unwrap();
        assert_eq!(res[1]["image_id"], 2);
        assert_eq!(res[1]["caption"], "a cat");
        let ids: BTreeMap<String, usize> = fsutil::read_json(&files.image_ids).unwrap();
        assert_eq!(ids["b.jpg"], 2);

        let path = dir.path().join("hyps.json");
        write_hyps_json(&path, &hyps).unwrap();
        let back: BTreeMap<String, String> = fsutil::read_json(&path).unwrap();
        assert_eq!(back, hyps);
    }

    #[test]
    fn mismatched_images_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let refs: BTreeMap<String, Vec<String>> =
            [("a.jpg".to_string(), vec!["x".to_string()])].into();
        let hyps: BTreeMap<String, String> = [("b.jpg".to_string(), "x".to_string())].into();
        assert!(write_coco_files(dir.path(), &refs, &hyps).is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
