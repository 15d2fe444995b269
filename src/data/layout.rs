//! The three on-disk layouts of a captioned image corpus and how to tell them apart from the files
//! in the directory.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// How a corpus directory is organised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Kaggle's Flickr8k: `captions.txt` (CSV `image,caption`) + `Images/`.
    Kaggle,
    /// The original Flickr8k: `Flickr8k.token.txt` (`name.jpg#k<TAB>caption`) + `Flicker8k_Dataset/`.
    Token,
    /// Karpathy's split file `dataset_flickr8k.json` (or `_flickr30k`, `_coco`).
    Karpathy,
}

/// Layouts in the order detection prefers them when a directory holds several.
pub const DETECTION_ORDER: [Layout; 3] = [Layout::Kaggle, Layout::Token, Layout::Karpathy];

/// File names of the Karpathy JSON, tried in this order.
const KARPATHY_FILES: [&str; 3] = [
    "dataset_flickr8k.json",
    "dataset_flickr30k.json",
    "dataset_coco.json",
];

/// Image folders, tried in this order; when none exists the images are looked up in the corpus
/// directory itself (COCO's `train2014/`, `val2014/` sit there).
const IMAGE_FOLDERS: [&str; 3] = ["Images", "Flicker8k_Dataset", "images"];

/// File extensions counted as images (compared case-insensitively).
pub const IMAGE_EXTENSIONS: [&str; 9] = [
    "jpg", "jpeg", "png", "bmp", "gif", "webp", "tif", "tiff", "ppm",
];

impl Layout {
    /// The lower-case name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Kaggle => "kaggle",
            Layout::Token => "token",
            Layout::Karpathy => "karpathy",
        }
    }

    /// The captions file of this layout in `dir`, if present.
    pub fn captions_file(self, dir: &Path) -> Option<PathBuf> {
        let names: &[&str] = match self {
            Layout::Kaggle => &["captions.txt"],
            Layout::Token => &["Flickr8k.token.txt"],
            Layout::Karpathy => &KARPATHY_FILES,
        };
        names.iter().map(|n| dir.join(n)).find(|p| p.is_file())
    }

    /// Every layout whose captions file is in `dir`, in [`DETECTION_ORDER`].
    pub fn present_in(dir: &Path) -> Vec<Layout> {
        DETECTION_ORDER
            .into_iter()
            .filter(|l| l.captions_file(dir).is_some())
            .collect()
    }

    /// The layout of `dir`: the first of [`DETECTION_ORDER`] whose captions file is there.
    pub fn detect(dir: &Path) -> Result<Layout> {
        Self::present_in(dir).first().copied().ok_or_else(|| {
            Error::format(
                dir,
                "no captions file found (looked for captions.txt, Flickr8k.token.txt, \
                 dataset_flickr8k.json, dataset_flickr30k.json, dataset_coco.json)",
            )
        })
    }
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Layout {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        DETECTION_ORDER
            .into_iter()
            .find(|l| l.name() == s)
            .ok_or_else(|| format!("unknown layout {s:?} (expected kaggle, token or karpathy)"))
    }
}

/// The folder holding the images of the corpus in `dir`.
pub fn image_root(dir: &Path) -> PathBuf {
    IMAGE_FOLDERS
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_dir())
        .unwrap_or_else(|| dir.to_path_buf())
}

/// True when `name` ends in `.` + one of [`IMAGE_EXTENSIONS`] (any case) after a non-empty stem.
pub fn has_image_extension(name: &str) -> bool {
    match name.rsplit_once('.') {
        Some((stem, ext)) => {
            !stem.is_empty()
                && !stem.ends_with('/')
                && IMAGE_EXTENSIONS.iter().any(|e| e.eq_ignore_ascii_case(ext))
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_extensions() {
        assert!(has_image_extension("1000268201_693b08cb0e.jpg"));
        assert!(has_image_extension("val2014/COCO_1.JPG"));
        assert!(!has_image_extension("2258277193_586949ec62.jpg.1"));
        assert!(!has_image_extension(".jpg"));
        assert!(!has_image_extension("notes.txt"));
    }

    #[test]
    fn detection_prefers_kaggle_then_token() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Layout::detect(dir.path()).is_err());
        std::fs::write(dir.path().join("dataset_coco.json"), "{}").unwrap();
        assert_eq!(Layout::detect(dir.path()).unwrap(), Layout::Karpathy);
        std::fs::write(dir.path().join("Flickr8k.token.txt"), "").unwrap();
        assert_eq!(Layout::detect(dir.path()).unwrap(), Layout::Token);
        std::fs::write(dir.path().join("captions.txt"), "").unwrap();
        assert_eq!(Layout::detect(dir.path()).unwrap(), Layout::Kaggle);
        assert_eq!(Layout::present_in(dir.path()).len(), 3);
        assert_eq!("token".parse::<Layout>().unwrap(), Layout::Token);
        assert!("csv".parse::<Layout>().is_err());
    }
}
