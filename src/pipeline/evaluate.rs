//! Scoring a model on one part of a corpus's split, as `captioner eval` does: caption every image
//! (from the run's feature cache where it holds them, else through the trunk) and score against
//! the raw references with BLEU-1..4, ROUGE-L and CIDEr-D.

use super::CorpusSpec;
use crate::captioner::{CaptionOptions, Captioner};
use crate::data::{CaptionCorpus, DatasetSplit, ImageRecord, SplitName};
use crate::features::FeatureCache;
use crate::metrics::{evaluate, Scores};
use crate::progress::{Level, Progress, Unit};
use crate::{Error, Result};
use candle_core::Tensor;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What to evaluate and how.
#[derive(Debug, Clone)]
pub struct EvalRequest {
    /// The corpus. Its split choices are used only when the model carries no split of its own or
    /// `split_file` is set.
    pub corpus: CorpusSpec,
    /// The part of the split to score.
    pub part: SplitName,
    /// Decoding and batching.
    pub options: CaptionOptions,
    /// Take features from the run's feature cache when it was made from this corpus with this
    /// trunk (they equal the trunk's own, and cost nothing).
    pub use_cache: bool,
}

/// What an evaluation found: the scores, every hypothesis and its references.
#[derive(Debug)]
pub struct Evaluation {
    /// Corpus-level scores.
    pub scores: Scores,
    /// Image file → generated caption.
    pub hyps: BTreeMap<String, String>,
    /// Image file → its reference captions (raw).
    pub refs: BTreeMap<String, Vec<String>>,
    /// Image file → its path on disk.
    pub paths: BTreeMap<String, PathBuf>,
    /// Where the split came from, for the report.
    pub split_source: String,
    /// Images whose features came from the run's cache.
    pub from_cache: usize,
    /// Images that could not be captioned (not scored), with the error.
    pub failed: Vec<(String, String)>,
}

/// The split to evaluate: the corpus spec's split file if given, else the model's own split (its
/// run's `split.json`, or the copy inside an exported model), else the dataset's own or a seeded
/// random split. Returns it with a description of where it came from.
pub fn choose_split(
    spec: &CorpusSpec,
    captioner: &Captioner,
    corpus: &CaptionCorpus,
) -> Result<(DatasetSplit, String)> {
    if let (None, Some(split)) = (&spec.split_file, captioner.split()) {
        split.check_against(corpus).map_err(|msg| {
            Error::Invalid(format!(
                "the run's split does not fit the corpus in {}: {msg}",
                spec.data.display()
            ))
        })?;
        return Ok((split.clone(), "the run's split".to_string()));
    }
    Ok((spec.split(corpus)?, spec.split_source(corpus).to_string()))
}

/// The name of a split part, as the command line spells it.
pub fn part_name(part: SplitName) -> &'static str {
    match part {
        SplitName::Train => "train",
        SplitName::Val => "val",
        SplitName::Test => "test",
    }
}

/// The run's feature cache, when it was computed from this very corpus with this model's trunk.
fn usable_cache(captioner: &Captioner, data_dir: &Path) -> Option<FeatureCache> {
    let cfg = captioner.config();
    let same_data = match (
        std::fs::canonicalize(&cfg.data),
        std::fs::canonicalize(data_dir),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same_data {
        return None;
    }
    let cache = FeatureCache::open(&cfg.feature_cache).ok()?;
    let key = &cache.key;
    (key.backbone_sha256 == cfg.backbone_sha256
        && key.arch == cfg.arch
        && key.preprocess_version == crate::vision::preprocess_version(cfg.image_size)
        && key.precision == captioner.trunk().precision()
        && cache.dim() == captioner.trunk().feature_dim()
        && (captioner.grid().is_none() || cache.grid == captioner.grid()))
    .then_some(cache)
}

/// Captions the requested part of the split with `captioner` and scores it. Images that cannot be
/// read are reported through `progress`, listed in [`Evaluation::failed`] and left out of the
/// scores.
pub fn evaluate_model(
    captioner: &Captioner,
    req: &EvalRequest,
    progress: &dyn Progress,
) -> Result<Evaluation> {
    let corpus = req.corpus.load()?;
    let (split, split_source) = choose_split(&req.corpus, captioner, &corpus)?;
    let names = split.part(req.part);
    if names.is_empty() {
        return Err(Error::Invalid(format!(
            "the {} part of the split ({split_source}) has no images",
            part_name(req.part)
        )));
    }
    let records: BTreeMap<&str, &ImageRecord> =
        corpus.images.iter().map(|r| (r.file.as_str(), r)).collect();

    let mut hyps: BTreeMap<String, String> = BTreeMap::new();
    let mut failed: Vec<(String, String)> = Vec::new();
    // Rows of the run's feature cache where it holds them; the rest go through the trunk.
    let cache = if req.use_cache {
        usable_cache(captioner, &req.corpus.data)
    } else {
        None
    };
    let mut to_compute: Vec<&str> = Vec::new();
    let mut cached: Vec<(&str, usize)> = Vec::new();
    for name in names {
        match cache.as_ref().and_then(|c| c.row(name)) {
            Some(row) => cached.push((name.as_str(), row)),
            None => to_compute.push(name.as_str()),
        }
    }
    if let (Some(c), false) = (&cache, cached.is_empty()) {
        let features = match &c.spatial {
            // The attention decoder reads the maps: the rows of spatial.safetensors.
            Some(maps) if captioner.grid().is_some() => {
                let width = maps.cells() * maps.dim();
                let mut data = vec![0f32; cached.len() * width];
                for ((_, row), out) in cached.iter().zip(data.chunks_mut(width)) {
                    maps.row_to(*row, out);
                }
                Tensor::from_vec(data, (cached.len(), width), &candle_core::Device::Cpu)?
            }
            _ => {
                let idx: Vec<u32> = cached.iter().map(|(_, r)| *r as u32).collect();
                let idx = Tensor::from_vec(idx, cached.len(), c.features.device())?;
                c.features.index_select(&idx, 0)?
            }
        };
        let captions = captioner.caption_features(&features, &req.options)?;
        for ((name, _), caption) in cached.iter().zip(captions) {
            hyps.insert(name.to_string(), caption);
        }
    }
    let paths: Vec<PathBuf> = to_compute
        .iter()
        .map(|n| records.get(n).map(|r| r.path.clone()).unwrap_or_default())
        .collect();
    let task = progress.task("eval", Some(paths.len() as u64), Unit::Images);
    let mut internal = None;
    captioner.caption_paths_each(&paths, &req.options, |i, result| {
        match result {
            Ok(caption) => {
                hyps.insert(to_compute[i].to_string(), caption);
            }
            Err(e) if !e.is_internal() => {
                progress.log(Level::Warn, &format!("error: {e}"));
                failed.push((to_compute[i].to_string(), e.to_string()));
            }
            Err(e) => {
                internal.get_or_insert(e);
            }
        }
        task.advance(1);
    });
    if let Some(e) = internal {
        return Err(e);
    }
    task.finish();
    if !failed.is_empty() {
        progress.log(
            Level::Warn,
            &format!(
                "{} image(s) could not be captioned and are not scored",
                failed.len()
            ),
        );
    }

    let refs: BTreeMap<String, Vec<String>> = hyps
        .keys()
        .filter_map(|n| {
            records
                .get(n.as_str())
                .map(|r| (n.clone(), r.captions.clone()))
        })
        .collect();
    let paths = hyps
        .keys()
        .filter_map(|n| records.get(n.as_str()).map(|r| (n.clone(), r.path.clone())))
        .collect();
    let scores = evaluate(&refs, &hyps)?;
    Ok(Evaluation {
        scores,
        hyps,
        refs,
        paths,
        split_source,
        from_cache: cached.len(),
        failed,
    })
}
