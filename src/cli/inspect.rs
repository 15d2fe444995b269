//! `captioner inspect`: describes a corpus (layout, counts, split, vocabulary, caption lengths) and
//! opens every image, naming each one that cannot be read. It never stops at a bad file.

use super::data_args::DataArgs;
use captioner::data::readable::{unreadable_images, Unreadable};
use captioner::data::{CaptionCorpus, LoadReport, Tally};
use captioner::text::tokenize;
use serde::Serialize;

/// Flags of `captioner inspect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub data: DataArgs,

    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What `inspect` found; also its `--json` output.
#[derive(Debug, Serialize)]
struct Inspection {
    layout: String,
    captions_file: String,
    images: usize,
    captions: usize,
    missing_images: usize,
    bad_rows: usize,
    skipped_lines: usize,
    images_without_captions: usize,
    unsplit_images: usize,
    split: SplitSizes,
    split_source: &'static str,
    vocab_size: usize,
    vocab_from: captioner::text::VocabSource,
    min_freq: usize,
    caption_length: LengthStats,
    unreadable_images: Vec<Unreadable>,
    examples: Examples,
}

#[derive(Debug, Serialize)]
struct SplitSizes {
    train: usize,
    val: usize,
    test: usize,
}

#[derive(Debug, Serialize)]
struct LengthStats {
    min: usize,
    mean: f64,
    max: usize,
}

#[derive(Debug, Serialize)]
struct Examples {
    missing_images: Vec<String>,
    bad_rows: Vec<String>,
    skipped_lines: Vec<String>,
    images_without_captions: Vec<String>,
}

/// Exit code when `--strict` is given and something was wrong (1 is for errors that stopped us).
const EXIT_PROBLEMS: i32 = 2;

pub fn run(args: Args) -> anyhow::Result<i32> {
    // Always load leniently: inspect's job is to report every problem; --strict sets the exit code.
    let lenient = DataArgs {
        strict: false,
        ..args.data.clone()
    };
    let spec = lenient.spec();
    let corpus = lenient.load_corpus()?;
    let split = spec.split(&corpus)?;
    let vocab = spec.vocabulary(&corpus, &split);
    let report = &corpus.report;
    for other in &report.also_present {
        eprintln!(
            "note: the directory also holds a {other} captions file; reading {} (use --format to choose)",
            report.layout
        );
    }
    if corpus.is_empty() {
        eprintln!("warning: no image of the corpus is usable (see the counts below)");
    }
    let split_source = spec.split_source(&corpus);
    let unreadable = unreadable_images(&corpus);
    let (corpus, split, vocab) = (&corpus, &split, &vocab);
    let inspection = Inspection {
        layout: report.layout.to_string(),
        captions_file: report.captions_file.display().to_string(),
        images: corpus.len(),
        captions: corpus.num_captions(),
        missing_images: report.missing_images.count,
        bad_rows: report.bad_rows.count,
        skipped_lines: report.skipped_lines.count,
        images_without_captions: report.images_without_captions.count,
        unsplit_images: report.unsplit_images.count,
        split: SplitSizes {
            train: split.train.len(),
            val: split.val.len(),
            test: split.test.len(),
        },
        split_source,
        vocab_size: vocab.len(),
        vocab_from: args.data.vocab_from,
        min_freq: args.data.min_freq,
        caption_length: caption_lengths(corpus),
        examples: examples(report),
        unreadable_images: unreadable,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&inspection)?);
    } else {
        print_text(&inspection, report, args.data.seed);
    }
    let problems = !report.is_clean() || !inspection.unreadable_images.is_empty();
    Ok(if args.data.strict && problems {
        EXIT_PROBLEMS
    } else {
        0
    })
}

fn caption_lengths(corpus: &CaptionCorpus) -> LengthStats {
    let lengths: Vec<usize> = corpus.captions().map(|c| tokenize(c).len()).collect();
    let mean = if lengths.is_empty() {
        0.0
    } else {
        lengths.iter().sum::<usize>() as f64 / lengths.len() as f64
    };
    LengthStats {
        min: lengths.iter().copied().min().unwrap_or(0),
        mean,
        max: lengths.iter().copied().max().unwrap_or(0),
    }
}

fn examples(report: &LoadReport) -> Examples {
    let ex = |t: &Tally| t.examples.clone();
    Examples {
        missing_images: ex(&report.missing_images),
        bad_rows: ex(&report.bad_rows),
        skipped_lines: ex(&report.skipped_lines),
        images_without_captions: ex(&report.images_without_captions),
    }
}

fn print_text(i: &Inspection, report: &LoadReport, seed: u64) {
    println!("layout: {} ({})", i.layout, i.captions_file);
    println!("images: {}", i.images);
    println!("captions: {}", i.captions);
    for (name, tally) in report.problems() {
        println!("{name}: {}", tally.summary());
    }
    if i.unsplit_images > 0 {
        println!(
            "images outside the dataset's split: {}",
            report.unsplit_images.summary()
        );
    }
    let source = match i.split_source {
        "random" => format!("random, seed {seed}"),
        other => other.to_string(),
    };
    println!(
        "split ({source}): train {}, val {}, test {}",
        i.split.train, i.split.val, i.split.test
    );
    println!(
        "vocabulary (from {}, min freq {}): {} tokens",
        i.vocab_from.name(),
        i.min_freq,
        i.vocab_size
    );
    let l = &i.caption_length;
    println!(
        "caption length (tokens): min {}, mean {:.2}, max {}",
        l.min, l.mean, l.max
    );
    println!("unreadable images: {}", i.unreadable_images.len());
    for u in &i.unreadable_images {
        println!("unreadable: {}: {}", u.file, u.error);
    }
}
