//! One in-memory corpus, whatever the layout on disk: the images that exist, each with its captions,
//! in the order the captions file names them, plus a [`LoadReport`] of what was wrong.

use crate::data::layout::{has_image_extension, image_root};
use crate::data::parsed::ParsedCaptions;
use crate::data::{
    kaggle, karpathy, split_files, token_file, Layout, LoadReport, SplitName, Tally,
};
use crate::{Error, Result};
use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

/// How to load a corpus.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Read this layout instead of detecting one.
    pub format: Option<Layout>,
    /// Refuse the corpus when any row, line or image is bad, instead of reporting and skipping it.
    pub strict: bool,
}

/// An image and its captions.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRecord {
    /// The name the corpus uses: `1000268201_693b08cb0e.jpg`, or Karpathy's `filepath/filename`.
    pub file: String,
    /// Where the image is on disk.
    pub path: PathBuf,
    /// Its captions, in file order (never empty).
    pub captions: Vec<String>,
    /// The part the dataset's own split puts it in, if the dataset has a split.
    pub split: Option<SplitName>,
}

/// Images with captions, in file order.
#[derive(Debug, Clone)]
pub struct CaptionCorpus {
    /// The images that exist on disk and have captions, in captions-file order.
    pub images: Vec<ImageRecord>,
    /// What loading found wrong.
    pub report: LoadReport,
}

impl CaptionCorpus {
    /// Loads the corpus in `dir`, detecting its layout unless `opts.format` names one.
    pub fn load(dir: &Path, opts: &LoadOptions) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::format(dir, "not a directory"));
        }
        let present = Layout::present_in(dir);
        let layout = match opts.format {
            Some(layout) => layout,
            None => Layout::detect(dir)?,
        };
        let captions_file = layout.captions_file(dir).ok_or_else(|| {
            Error::format(dir, format!("no captions file of the {layout} layout"))
        })?;
        let mut parsed = match layout {
            Layout::Kaggle => kaggle::read(&captions_file)?,
            Layout::Token => token_file::read(&captions_file)?,
            Layout::Karpathy => karpathy::read(&captions_file)?,
        };
        if layout != Layout::Karpathy {
            // Kaggle's zip has no split files, but a user may put Flickr8k's beside captions.txt.
            split_files::apply(dir, &mut parsed)?;
        }
        let report = LoadReport {
            layout,
            also_present: present.into_iter().filter(|&l| l != layout).collect(),
            captions_file,
            image_root: image_root(dir),
            bad_rows: Tally::default(),
            skipped_lines: Tally::default(),
            missing_images: Tally::default(),
            images_without_captions: Tally::default(),
            unsplit_images: Tally::default(),
        };
        let corpus = Self::assemble(parsed, report);
        if opts.strict && !corpus.report.is_clean() {
            let problems: Vec<String> = corpus
                .report
                .problems()
                .iter()
                .filter(|(_, t)| t.count > 0)
                .map(|(name, t)| format!("{name}: {}", t.summary()))
                .collect();
            return Err(Error::format(
                &corpus.report.captions_file,
                format!("refused (--strict): {}", problems.join("; ")),
            ));
        }
        Ok(corpus)
    }

    /// Keeps the images that exist on disk and fills the report.
    fn assemble(parsed: ParsedCaptions, mut report: LoadReport) -> Self {
        report.bad_rows = parsed.bad_rows;
        report.skipped_lines = parsed.skipped_lines;
        let named: HashSet<&str> = parsed.images.iter().map(|i| i.file.as_str()).collect();
        report.images_without_captions = uncaptioned_images(&report.image_root, &named);
        let mut images = Vec::with_capacity(parsed.images.len());
        for image in parsed.images {
            if !is_plain_relative(&image.file) {
                report
                    .bad_rows
                    .add(format!("{:?}: not a relative path", image.file));
                continue;
            }
            let path = report.image_root.join(&image.file);
            if !path.is_file() {
                report.missing_images.add(image.file);
                continue;
            }
            images.push(ImageRecord {
                file: image.file,
                path,
                captions: image.captions,
                split: image.split,
            });
        }
        if images.iter().any(|i| i.split.is_some()) {
            for image in images.iter().filter(|i| i.split.is_none()) {
                report.unsplit_images.add(image.file.clone());
            }
        }
        Self { images, report }
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// True when no image survived loading.
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// Number of captions over all images.
    pub fn num_captions(&self) -> usize {
        self.images.iter().map(|i| i.captions.len()).sum()
    }

    /// True when the dataset came with its own split (Karpathy JSON, Flickr8k split files).
    pub fn has_own_split(&self) -> bool {
        self.images.iter().any(|i| i.split.is_some())
    }

    /// All captions, in corpus order.
    pub fn captions(&self) -> impl Iterator<Item = &str> {
        self.images
            .iter()
            .flat_map(|i| i.captions.iter().map(String::as_str))
    }

    /// The captions of the images named in `files`, in corpus order (not in the order of `files`,
    /// so a vocabulary built from them has the corpus's first-appearance order).
    pub fn captions_of<'a>(&'a self, files: &[String]) -> impl Iterator<Item = &'a str> {
        let wanted: HashSet<String> = files.iter().cloned().collect();
        self.images
            .iter()
            .filter(move |i| wanted.contains(&i.file))
            .flat_map(|i| i.captions.iter().map(String::as_str))
    }
}

/// An image name we are willing to join to the image folder: relative, without `..`.
fn is_plain_relative(file: &str) -> bool {
    Path::new(file)
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
}

/// Image files under `root` (recursively, hidden entries skipped) that no caption names.
fn uncaptioned_images(root: &Path, named: &HashSet<&str>) -> Tally {
    let mut tally = Tally::default();
    let entries = walkdir::WalkDir::new(root)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file());
    for entry in entries {
        let Ok(rel) = entry.path().strip_prefix(root) else {
            continue;
        };
        let rel: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let rel = rel.join("/");
        if has_image_extension(&rel) && !named.contains(rel.as_str()) {
            tally.add(rel);
        }
    }
    tally
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coco_filepaths_resolve_under_the_corpus_dir_and_unsafe_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("val2014")).unwrap();
        image::RgbImage::new(2, 2)
            .save(d.join("val2014/a.jpg"))
            .unwrap();
        image::RgbImage::new(2, 2)
            .save(d.join("val2014/extra.jpg"))
            .unwrap();
        let json = r#"{"images": [
            {"filepath": "val2014", "filename": "a.jpg", "split": "val", "sentences": [{"raw": "A cat"}]},
            {"filepath": "val2014", "filename": "gone.jpg", "split": "test", "sentences": [{"raw": "x"}]},
            {"filepath": "..", "filename": "escape.jpg", "sentences": [{"raw": "x"}]}
        ]}"#;
        std::fs::write(d.join("dataset_coco.json"), json).unwrap();
        let corpus = CaptionCorpus::load(d, &LoadOptions::default()).unwrap();
        assert_eq!(corpus.report.layout, Layout::Karpathy);
        assert_eq!(corpus.len(), 1);
        assert_eq!(corpus.images[0].file, "val2014/a.jpg");
        assert_eq!(corpus.images[0].path, d.join("val2014/a.jpg"));
        assert_eq!(corpus.images[0].split, Some(SplitName::Val));
        assert_eq!(corpus.report.missing_images.examples, ["val2014/gone.jpg"]);
        assert_eq!(
            corpus.report.images_without_captions.examples,
            ["val2014/extra.jpg"]
        );
        assert_eq!(
            corpus.report.bad_rows.count, 1,
            "{:?}",
            corpus.report.bad_rows
        );
        let strict = LoadOptions {
            strict: true,
            ..LoadOptions::default()
        };
        let err = CaptionCorpus::load(d, &strict).unwrap_err().to_string();
        assert!(
            err.contains("dataset_coco.json") && err.contains("gone.jpg"),
            "{err}"
        );
    }
}
