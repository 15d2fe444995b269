//! The evaluation report: one self-contained HTML page (`DIR/index.html`, thumbnails in
//! `DIR/images/`, the loss curve in `DIR/loss.svg`) with the corpus scores, the run's loss curve
//! and every evaluated image beside its caption, its references and its own CIDEr-D and BLEU-4.

pub mod attention_png;
mod html;

pub use html::escape;

use crate::metrics::{bleu_per_image, cider_d_per_image, ptb_tokenize, Scores};
use crate::metrics::{TokenizedHyps, TokenizedRefs};
use crate::run::RunDir;
use crate::train::metrics_log::read_metrics;
use crate::{Error, Result};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The page's file name inside the report folder.
pub const INDEX_FILE: &str = "index.html";
/// The folder of thumbnails inside the report folder.
pub const IMAGES_DIR: &str = "images";
/// Longest side of a thumbnail, in pixels.
pub const THUMBNAIL_SIDE: u32 = 256;
/// JPEG quality of the thumbnails: small files, no visible blocks at 256 px.
const THUMBNAIL_QUALITY: u8 = 82;

/// One evaluated image.
#[derive(Debug, Clone)]
pub struct ReportImage {
    /// The name the corpus gives it (shown on the page; need not be a valid file name).
    pub name: String,
    /// Where it is on disk (read once to make its thumbnail).
    pub path: PathBuf,
    /// The generated caption.
    pub caption: String,
    /// Its reference captions, raw.
    pub references: Vec<String>,
}

/// Everything the report shows.
#[derive(Debug, Clone)]
pub struct ReportInput<'a> {
    /// Heading of the page (plain text; escaped when written).
    pub title: String,
    /// How the captions were decoded, e.g. "greedy" or "beam 3".
    pub decoding: String,
    /// The corpus scores, shown in the table at the top.
    pub scores: &'a Scores,
    /// Every evaluated image; their captions and references give the per-image scores.
    pub images: Vec<ReportImage>,
    /// The model's run directory, for its loss curve; `None` for an exported model file.
    pub run_dir: Option<&'a Path>,
}

/// What [`write_report`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportSummary {
    /// The page: `DIR/index.html`.
    pub index: PathBuf,
    /// Images on the page.
    pub images: usize,
    /// Images shown without a thumbnail because they could not be read, with the reason.
    pub unreadable: Vec<(String, String)>,
    /// Whether the page shows a loss curve.
    pub loss_curve: bool,
    /// Bytes of every file written (page, thumbnails, loss curve).
    pub bytes: u64,
}

/// An image's row on the page, in the order the page first shows them (worst CIDEr-D first).
#[derive(Debug, Clone)]
struct Row<'a> {
    image: &'a ReportImage,
    /// Number of its thumbnail file, `images/<n>.jpg`.
    n: usize,
    thumbnail: Option<(u32, u32)>,
    cider: f64,
    bleu4: f64,
}

/// Per-image CIDEr-D and BLEU-4 of `images`. CIDEr-D's document frequencies come from the
/// references of all of them, as coco-caption's per-image scores do; an image scored alone would
/// get zero (every IDF is log(1/1)).
pub fn per_image_scores(images: &[ReportImage]) -> Result<BTreeMap<String, (f64, f64)>> {
    let mut refs = TokenizedRefs::new();
    let mut hyps = TokenizedHyps::new();
    for im in images {
        let tokens = im.references.iter().map(|r| ptb_tokenize(r)).collect();
        if refs.insert(im.name.clone(), tokens).is_some() {
            return Err(Error::Invalid(format!(
                "image {} appears twice in the report",
                im.name
            )));
        }
        hyps.insert(im.name.clone(), ptb_tokenize(&im.caption));
    }
    let cider = cider_d_per_image(&refs, &hyps)?;
    let bleu = bleu_per_image(&refs, &hyps)?;
    Ok(cider
        .into_iter()
        .map(|(name, c)| {
            let b4 = bleu.get(&name).map_or(0.0, |b| b[3]);
            (name, (c, b4))
        })
        .collect())
}

/// Writes the report into `dir` (created if missing): `index.html`, `images/<n>.jpg` and, for a
/// run directory with a loss history, `loss.svg` (or `loss.png` for a run without one).
/// Files of an earlier report in `dir` are overwritten, other files are left alone.
pub fn write_report(dir: &Path, input: &ReportInput) -> Result<ReportSummary> {
    let scores = per_image_scores(&input.images)?;
    let images_dir = dir.join(IMAGES_DIR);
    std::fs::create_dir_all(&images_dir).map_err(|e| Error::io(&images_dir, e))?;

    let thumbs: Vec<Result<(u32, u32, u64)>> = crate::pool::in_pool(|| {
        input
            .images
            .par_iter()
            .enumerate()
            .map(|(n, im)| write_thumbnail(&im.path, &images_dir.join(thumb_name(n))))
            .collect()
    });
    let mut bytes = 0;
    let mut unreadable = Vec::new();
    let mut rows: Vec<Row> = Vec::with_capacity(input.images.len());
    for (n, (image, thumb)) in input.images.iter().zip(thumbs).enumerate() {
        let thumbnail = match thumb {
            Ok((w, h, size)) => {
                bytes += size;
                Some((w, h))
            }
            // A corpus image that went missing still has its captions and scores to show.
            Err(e) => {
                unreadable.push((image.name.clone(), e.to_string()));
                None
            }
        };
        let (cider, bleu4) = scores.get(&image.name).copied().unwrap_or((0.0, 0.0));
        rows.push(Row {
            image,
            n,
            thumbnail,
            cider,
            bleu4,
        });
    }
    rows.sort_by(|a, b| {
        a.cider
            .total_cmp(&b.cider)
            .then(a.image.name.cmp(&b.image.name))
    });

    let loss = match input.run_dir {
        Some(run) => copy_loss_curve(run, dir)?,
        None => None,
    };
    if let Some((_, size)) = &loss {
        bytes += size;
    }
    let page = html::page(input, &rows, loss.as_ref().map(|(name, _)| name.as_str()));
    let index = dir.join(INDEX_FILE);
    crate::fsutil::write_atomic(&index, page.as_bytes())?;
    bytes += page.len() as u64;
    Ok(ReportSummary {
        index,
        images: rows.len(),
        unreadable,
        loss_curve: loss.is_some(),
        bytes,
    })
}

fn thumb_name(n: usize) -> String {
    format!("{n}.jpg")
}

/// Decodes `src` (pixel limit checked), shrinks it to at most [`THUMBNAIL_SIDE`] on its longer
/// side and writes it as JPEG to `dst`; returns its size in pixels and bytes.
fn write_thumbnail(src: &Path, dst: &Path) -> Result<(u32, u32, u64)> {
    let img = crate::vision::decode::load_rgb(src)?;
    let (w, h) = img.dimensions();
    let scale = (THUMBNAIL_SIDE as f64 / w.max(h) as f64).min(1.0);
    let (tw, th) = (
        ((w as f64 * scale).round() as u32).max(1),
        ((h as f64 * scale).round() as u32).max(1),
    );
    let small = if (tw, th) == (w, h) {
        img
    } else {
        crate::vision::resize::resize_bilinear_antialias(&img, tw, th)
    };
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, THUMBNAIL_QUALITY)
        .encode_image(&small)
        .map_err(|e| Error::Image {
            path: dst.into(),
            msg: format!("cannot encode the thumbnail: {e}"),
        })?;
    crate::fsutil::write_atomic(dst, &jpeg)?;
    Ok((tw, th, jpeg.len() as u64))
}

/// Puts the run's loss curve into `dir`: its `loss.svg` as written during training, else one drawn
/// from its `metrics.jsonl` (runs from before the svg existed), else a copy of its `loss.png`.
/// Returns the file name in `dir` and its size, or `None` when the run has no history.
fn copy_loss_curve(run: &Path, dir: &Path) -> Result<Option<(String, u64)>> {
    let files = RunDir::new(run);
    let (svg, metrics, png) = (files.plot_svg(), files.metrics(), files.plot());
    let (name, bytes) = if svg.is_file() {
        let bytes = std::fs::read(&svg).map_err(|e| Error::io(&svg, e))?;
        ("loss.svg", bytes)
    } else if metrics.is_file() {
        let history = read_metrics(&metrics)?;
        let title = run
            .file_name()
            .map_or_else(|| run.display().to_string(), |n| n.to_string_lossy().into());
        let text = crate::train::plot::render_svg(&title, &history).map_err(|e| {
            Error::format(&metrics, format!("cannot draw the loss curve from it: {e}"))
        })?;
        ("loss.svg", text.into_bytes())
    } else if png.is_file() {
        let bytes = std::fs::read(&png).map_err(|e| Error::io(&png, e))?;
        ("loss.png", bytes)
    } else {
        return Ok(None);
    };
    crate::fsutil::write_atomic(&dir.join(name), &bytes)?;
    Ok(Some((name.to_string(), bytes.len() as u64)))
}
