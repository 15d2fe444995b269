//! `captioner eval`: flags in, [`captioner::pipeline::evaluate_model`] called (captions one part of
//! a corpus's split, scores them with BLEU-1..4, ROUGE-L and CIDEr-D), the scores printed.

use super::data_args::DataArgs;
use super::exit::UsageContext;
use super::progress::Bars;
use captioner::data::SplitName;
use captioner::metrics::coco::{write_coco_files, write_hyps_json};
use captioner::pipeline::{evaluate_model, part_name, EvalRequest, Evaluation};
use captioner::{CaptionOptions, Captioner};
use std::path::PathBuf;

/// Parts of the split that can be evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// The held-out test images.
    Test,
    /// The validation images.
    Val,
}

impl From<Part> for SplitName {
    fn from(p: Part) -> Self {
        match p {
            Part::Test => SplitName::Test,
            Part::Val => SplitName::Val,
        }
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
    // The run's feature cache is used only when it was computed in the same precision: bf16
    // captions every image through the bf16 trunk unless the cache is bf16 too.
    #[command(flatten)]
    pub precision: super::precision_arg::PrecisionArg,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let ev = evaluate_model_args(&args)?;
    if let Some(path) = &args.hyps_out {
        write_hyps_json(path, &ev.hyps)?;
    }
    if let Some(dir) = &args.coco_out {
        write_coco_files(dir, &ev.refs, &ev.hyps)?;
    }
    if let Some(dir) = &args.report {
        super::eval_report::write(
            dir,
            &ev,
            &args.model,
            part_name(args.split.into()),
            args.beam,
        )?;
    }
    if args.json {
        println!("{}", serde_json::to_string(&ev.scores)?);
    } else {
        println!(
            "{} images of the {} split ({}), {} ({} from the feature cache)",
            ev.scores.images,
            part_name(args.split.into()),
            ev.split_source,
            if args.beam > 1 {
                format!("beam {}", args.beam)
            } else {
                "greedy".to_string()
            },
            ev.from_cache
        );
        super::render::print_scores(&ev.scores);
    }
    Ok(0)
}

/// Loads the model these flags name and evaluates it.
pub fn evaluate_model_args(args: &Args) -> anyhow::Result<Evaluation> {
    args.data.check()?;
    let precision = args.precision.checked()?;
    let device = captioner::device::default_device();
    let captioner = Captioner::load(&args.model, &device)
        .usage_context(|| format!("cannot load the model {}", args.model.display()))?
        .with_precision(precision)?;
    let request = EvalRequest {
        corpus: args.data.spec(),
        part: args.split.into(),
        options: CaptionOptions {
            beam: args.beam as usize,
            length_alpha: args.length_alpha,
            batch_size: args.batch_size.max(1),
        },
        use_cache: !args.no_cache,
    };
    let bars = Bars::new(!args.no_progress);
    Ok(evaluate_model(&captioner, &request, &bars)?)
}
