//! Writes a generated corpus in the Kaggle Flickr8k layout: `DIR/Images/<name>.jpg` (JPEG quality
//! 90, rendered in parallel) and `DIR/captions.txt` (CSV `image,caption`, five rows per image).

use super::{image_name, render, sample};
use crate::fsutil::write_atomic_with;
use crate::{Error, Result};
use rayon::prelude::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// JPEG quality of the written images: high enough that colours survive, as in Flickr8k's photos.
pub const JPEG_QUALITY: u8 = 90;

/// What to generate.
#[derive(Debug, Clone)]
pub struct SynthOptions {
    /// Number of images (at least 1); each gets five captions.
    pub images: usize,
    /// Seed of the whole corpus.
    pub seed: u64,
    /// Replace a corpus already present in the output directory.
    pub force: bool,
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions {
            images: 1000,
            seed: 42,
            force: false,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthSummary {
    /// Number of images written.
    pub images: usize,
    /// Number of captions written.
    pub captions: usize,
    /// Distinct lower-cased words over all captions.
    pub vocabulary: usize,
    /// Total size of the JPEG files.
    pub image_bytes: u64,
    /// The `captions.txt` written.
    pub captions_file: PathBuf,
    /// The `Images/` folder written.
    pub images_dir: PathBuf,
}

/// Renders `opts.images` scenes into `out` (created if missing). Refuses, naming the file, when
/// `out/captions.txt` already exists unless `opts.force`. Images are written first and
/// `captions.txt` last (atomically), so an interrupted run never leaves a corpus that looks complete;
/// stale `scene_*.jpg` files from an earlier, larger run are removed so no image lacks captions.
pub fn generate(out: &Path, opts: &SynthOptions) -> Result<SynthSummary> {
    if opts.images == 0 {
        return Err(Error::Invalid("--images must be at least 1".into()));
    }
    let captions_file = out.join("captions.txt");
    let images_dir = out.join("Images");
    if captions_file.exists() && !opts.force {
        return Err(Error::io(
            &captions_file,
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a corpus is already there; pass --force to overwrite it",
            ),
        ));
    }
    std::fs::create_dir_all(&images_dir).map_err(|e| Error::io(&images_dir, e))?;

    let rows = (0..opts.images)
        .into_par_iter()
        .map(|i| {
            let s = sample(opts.seed, i);
            let path = images_dir.join(&s.name);
            let img = render(&s.scene);
            let mut bytes = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, JPEG_QUALITY)
                .encode_image(&img)
                .map_err(|e| Error::Image {
                    path: path.clone(),
                    msg: e.to_string(),
                })?;
            std::fs::write(&path, &bytes).map_err(|e| Error::io(&path, e))?;
            Ok((s.name, s.captions, bytes.len() as u64))
        })
        .collect::<Result<Vec<_>>>()?;

    remove_stale_images(&images_dir, opts.images)?;

    write_atomic_with(&captions_file, |tmp| {
        let mut w = csv::Writer::from_path(tmp).map_err(|e| csv_error(tmp, e))?;
        w.write_record(["image", "caption"])
            .map_err(|e| csv_error(tmp, e))?;
        for (name, caps, _) in &rows {
            for c in caps {
                w.write_record([name.as_str(), c.as_str()])
                    .map_err(|e| csv_error(tmp, e))?;
            }
        }
        w.flush().map_err(|e| Error::io(tmp, e))
    })?;

    let vocabulary = rows
        .iter()
        .flat_map(|(_, caps, _)| caps.iter())
        .flat_map(|c| words(c))
        .collect::<BTreeSet<_>>()
        .len();
    Ok(SynthSummary {
        images: rows.len(),
        captions: rows.len() * 5,
        vocabulary,
        image_bytes: rows.iter().map(|r| r.2).sum(),
        captions_file,
        images_dir,
    })
}

/// Lower-cased runs of letters and digits: the same words the vocabulary builder sees in these
/// ASCII captions.
pub fn words(caption: &str) -> impl Iterator<Item = String> + '_ {
    caption
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

/// Deletes `scene_NNNNNN.jpg` files with an index past `images` (left by an earlier, larger run).
fn remove_stale_images(dir: &Path, images: usize) -> Result<()> {
    let keep: BTreeSet<String> = (0..images).map(image_name).collect();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = name
            .strip_prefix("scene_")
            .and_then(|r| r.strip_suffix(".jpg"))
            .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
        if ours && !keep.contains(&name) {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(())
}

fn csv_error(path: &Path, e: csv::Error) -> Error {
    Error::format(path, format!("cannot write CSV: {e}"))
}
