//! `captioner eval`: captions one part of a corpus's split and scores them against the raw references
//! with BLEU-1..4, ROUGE-L and CIDEr-D (coco-caption's definitions, see `captioner::metrics`).

use super::data_args::DataArgs;
use anyhow::Context;
use candle_core::Tensor;
use captioner::data::{CaptionCorpus, DatasetSplit, SplitName};
use captioner::features::FeatureCache;
use captioner::metrics::coco::{write_coco_files, write_hyps_json};
use captioner::metrics::{evaluate, Scores};
use captioner::{CaptionOptions, Captioner};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Parts of the split that can be evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    Test,
    Val,
}

fn part_name(p: Part) -> &'static str {
    match p {
        Part::Test => "test",
        Part::Val => "val",
    }
}

/// Flags of `captioner eval`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A run directory or a file written by `captioner export`.
    #[arg(long, value_name = "M")]
    pub model: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// The part of the split to score. The run's split is used (its split.json, or the copy in an
    /// exported model) unless --split-file is given; else the dataset's own split, or the random one.
    #[arg(long, value_enum, default_value = "test")]
    pub split: Part,
    /// Beam size; 1 is greedy decoding.
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub beam: u64,
    /// Length normalisation of beam search (scores divided by length^A).
    #[arg(long, value_name = "A", default_value_t = 0.0)]
    pub length_alpha: f32,
    /// Print one JSON object: bleu1..bleu4, rouge_l, cider, images.
    #[arg(long)]
    pub json: bool,
    /// Write {"<image file>": "<caption>"} to this file.
    #[arg(long, value_name = "FILE")]
    pub hyps_out: Option<PathBuf>,
    /// Write the annotations and results files of the official coco-caption toolkit into this folder.
    #[arg(long, value_name = "DIR")]
    pub coco_out: Option<PathBuf>,
    /// Write an HTML report (scores, loss curve, every image with its captions) into this folder.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Images per forward pass / decoding batch.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub batch_size: usize,
    /// Always compute features through the trunk, never from the run's feature cache.
    #[arg(long)]
    pub no_cache: bool,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

/// The split to evaluate: --split-file, else the run's split (its split.json, or the copy inside an
/// exported model), else the dataset's own or the seeded random split.
fn choose_split(
    args: &Args,
    captioner: &Captioner,
    corpus: &CaptionCorpus,
) -> anyhow::Result<(DatasetSplit, String)> {
    if let (None, Some(split)) = (&args.data.split_file, captioner.split()) {
        split.check_against(corpus).map_err(|msg| {
            anyhow::anyhow!(
                "the run's split does not fit the corpus in {}: {msg}",
                args.data.data.display()
            )
        })?;
        return Ok((split.clone(), "the run's split".to_string()));
    }
    let source = args.data.split_source(corpus).to_string();
    Ok((args.data.split(corpus)?, source))
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
        && key.preprocess_version == captioner::vision::preprocess_version(cfg.image_size)
        && cache.dim() == captioner.trunk().feature_dim())
    .then_some(cache)
}

/// What an evaluation found: the scores, every hypothesis and its references.
#[derive(Debug)]
pub struct Evaluation {
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
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let ev = evaluate_model(&args)?;
    if let Some(path) = &args.hyps_out {
        write_hyps_json(path, &ev.hyps)?;
    }
    if let Some(dir) = &args.coco_out {
        write_coco_files(dir, &ev.refs, &ev.hyps)?;
    }
    if let Some(dir) = &args.report {
        super::eval_report::write(dir, &ev, &args.model, part_name(args.split), args.beam)?;
    }
    if args.json {
        println!("{}", serde_json::to_string(&ev.scores)?);
    } else {
        println!(
            "{} images of the {} split ({}), {} ({} from the feature cache)",
            ev.scores.images,
            part_name(args.split),
            ev.split_source,
            if args.beam > 1 {
                format!("beam {}", args.beam)
            } else {
                "greedy".to_string()
            },
            ev.from_cache
        );
        print_scores(&ev.scores);
    }
    Ok(0)
}

/// The metric table, one line a metric.
pub fn print_scores(scores: &Scores) {
    for (name, v) in [
        ("BLEU-1", scores.bleu1),
        ("BLEU-2", scores.bleu2),
        ("BLEU-3", scores.bleu3),
        ("BLEU-4", scores.bleu4),
        ("ROUGE-L", scores.rouge_l),
        ("CIDEr-D", scores.cider),
    ] {
        println!("{name:>8} {v:.4}");
    }
}

/// Captions the chosen part of the split and scores it.
pub fn evaluate_model(args: &Args) -> anyhow::Result<Evaluation> {
    let device = captioner::device::default_device();
    let captioner = Captioner::load(&args.model, &device)
        .with_context(|| format!("cannot load the model {}", args.model.display()))?;
    let corpus = args.data.load_corpus()?;
    let (split, split_source) = choose_split(args, &captioner, &corpus)?;
    let part = match args.split {
        Part::Test => SplitName::Test,
        Part::Val => SplitName::Val,
    };
    let names = split.part(part);
    if names.is_empty() {
        anyhow::bail!(
            "the {} part of the split ({split_source}) has no images",
            part_name(args.split)
        );
    }
    let records: BTreeMap<&str, &captioner::data::ImageRecord> =
        corpus.images.iter().map(|r| (r.file.as_str(), r)).collect();
    let opts = CaptionOptions {
        beam: args.beam as usize,
        length_alpha: args.length_alpha,
        batch_size: args.batch_size.max(1),
    };

    let mut hyps: BTreeMap<String, String> = BTreeMap::new();
    let mut failed: Vec<String> = Vec::new();
    // Rows of the run's feature cache where it holds them; the rest go through the trunk.
    let cache = if args.no_cache {
        None
    } else {
        usable_cache(&captioner, &args.data.data)
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
        let idx: Vec<u32> = cached.iter().map(|(_, r)| *r as u32).collect();
        let idx = Tensor::from_vec(idx, cached.len(), c.features.device())?;
        let features = c.features.index_select(&idx, 0)?;
        let captions = captioner.caption_features(&features, &opts)?;
        for ((name, _), caption) in cached.iter().zip(captions) {
            hyps.insert(name.to_string(), caption);
        }
    }
    let paths: Vec<PathBuf> = to_compute
        .iter()
        .map(|n| records.get(n).map(|r| r.path.clone()).unwrap_or_default())
        .collect();
    let bar = progress_bar(paths.len() as u64, !args.no_progress && paths.len() > 1);
    captioner.caption_paths_each(&paths, &opts, |i, result| {
        match result {
            Ok(caption) => {
                hyps.insert(to_compute[i].to_string(), caption);
            }
            Err(e) => {
                bar.suspend(|| eprintln!("error: {e}"));
                failed.push(to_compute[i].to_string());
            }
        }
        bar.inc(1);
    });
    bar.finish_and_clear();
    if !failed.is_empty() {
        eprintln!(
            "{} image(s) could not be captioned and are not scored",
            failed.len()
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
    let scores = evaluate(&refs, &hyps)?;
    let paths = hyps
        .keys()
        .filter_map(|n| Some((n.clone(), records.get(n.as_str())?.path.clone())));
    let paths = paths.collect();
    Ok(Evaluation {
        scores,
        hyps,
        refs,
        paths,
        split_source,
        from_cache: cached.len(),
    })
}

fn progress_bar(len: u64, visible: bool) -> indicatif::ProgressBar {
    if !visible {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template("eval {bar:40} {pos}/{len} images  ETA {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}
