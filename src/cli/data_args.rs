//! Flags shared by every command that reads a corpus (`inspect`, `train`, `eval`): where the data
//! is, how to read it, how to split it and how to build the vocabulary. Flatten with
//! `#[command(flatten)]`; [`DataArgs::spec`] hands them to the library.

use super::exit::UsageContext;
use anyhow::Context;
use captioner::data::{CaptionCorpus, Layout, SplitRatios};
use captioner::pipeline::CorpusSpec;
use captioner::text::VocabSource;
use std::path::PathBuf;

/// Where the corpus is and how to turn it into a split and a vocabulary.
#[derive(Debug, Clone, clap::Args)]
pub struct DataArgs {
    /// Corpus directory (Kaggle `captions.txt` + `Images/`, `Flickr8k.token.txt`, or Karpathy JSON).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,

    /// Layout to read instead of detecting it (detection prefers kaggle, then token, then karpathy).
    #[arg(long, value_name = "kaggle|token|karpathy", value_parser = parse_layout)]
    pub format: Option<Layout>,

    /// Treat bad rows, skipped lines, missing or uncaptioned images as errors instead of skipping them
    /// (`inspect` prints its whole report, then exits with code 2).
    #[arg(long)]
    pub strict: bool,

    /// Keep words seen at least K times.
    ///
    /// 5 is the threshold of Karpathy's neuraltalk and most
    /// Show-and-Tell replications on Flickr8k: with 1 (the tutorial's) about a third of the words
    /// occur once, and the decoder cannot learn words it saw a single time.
    #[arg(long, value_name = "K", default_value_t = 5)]
    pub min_freq: usize,

    /// Build the vocabulary from the training images only, or from all captions (the tutorial).
    #[arg(long, value_name = "train|all", default_value = "train", value_parser = parse_vocab_source)]
    pub vocab_from: VocabSource,

    /// Fractions train,val,test for a random split, used when the dataset has no split of its own.
    #[arg(long, value_name = "A,B,C", default_value = "0.8,0.1,0.1", value_parser = parse_ratios)]
    pub split_ratios: SplitRatios,

    /// Seed of the random split.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Read the split from this split.json instead of computing it.
    #[arg(long, value_name = "FILE")]
    pub split_file: Option<PathBuf>,
}

impl DataArgs {
    /// The library's description of the corpus these flags name.
    pub fn spec(&self) -> CorpusSpec {
        CorpusSpec {
            data: self.data.clone(),
            format: self.format,
            strict: self.strict,
            min_freq: self.min_freq,
            vocab_from: self.vocab_from,
            split_ratios: self.split_ratios,
            seed: self.seed,
            split_file: self.split_file.clone(),
        }
    }

    /// Refuses a `--data` that is missing or holds no corpus this command can read (exit 2),
    /// before any work starts.
    pub fn check(&self) -> anyhow::Result<()> {
        check_data(&self.data, self.format)
    }

    /// Loads the corpus, naming the directory in the error.
    pub fn load_corpus(&self) -> anyhow::Result<CaptionCorpus> {
        self.spec()
            .load()
            .with_context(|| format!("cannot load the corpus in {}", self.data.display()))
    }
}

/// Refuses a `--data` directory that is missing or has no corpus (of `format`, when given).
pub fn check_data(data: &std::path::Path, format: Option<Layout>) -> anyhow::Result<()> {
    super::exit::require_path("--data", data)?;
    match format {
        Some(layout) => {
            if layout.captions_file(data).is_none_or(|f| !f.is_file()) {
                return Err(super::exit::usage(format!(
                    "--data {}: no {} corpus there",
                    data.display(),
                    layout.name()
                )));
            }
            Ok(())
        }
        None => Layout::detect(data)
            .map(|_| ())
            .usage_context(|| format!("--data {}: no corpus there", data.display())),
    }
}

/// `--format`: a corpus layout.
pub fn parse_layout(s: &str) -> Result<Layout, String> {
    s.parse()
}

fn parse_vocab_source(s: &str) -> Result<VocabSource, String> {
    match s {
        "train" => Ok(VocabSource::Train),
        "all" => Ok(VocabSource::All),
        _ => Err(format!("expected train or all, found {s:?}")),
    }
}

fn parse_ratios(s: &str) -> Result<SplitRatios, String> {
    s.parse().map_err(|e: captioner::Error| e.to_string())
}

/// The first `n` images under the folder `dir` given as `flag` (walked recursively, sorted, as
/// `caption` walks folders): at least `min` of them, else a usage error naming the flag.
pub fn first_images(
    flag: &str,
    dir: &std::path::Path,
    n: usize,
    min: usize,
) -> anyhow::Result<Vec<PathBuf>> {
    super::exit::require_path(flag, dir)?;
    let files: Vec<PathBuf> = captioner::data::walk::walk_images(dir)
        .images
        .into_iter()
        .take(n)
        .map(|f| f.path)
        .collect();
    if files.len() < min {
        return Err(super::exit::usage(format!(
            "{flag} {}: needs at least {min} image(s), found {}",
            dir.display(),
            files.len()
        )));
    }
    Ok(files)
}

/// `files` decoded and preprocessed at 224×224 as one `[n, 3, 224, 224]` batch on the CPU; the
/// first file that cannot be read is the error (it names the file).
pub fn image_batch(files: &[PathBuf]) -> anyhow::Result<candle_core::Tensor> {
    let side = captioner::vision::IMAGE_SIZE;
    let mut pixels = Vec::with_capacity(files.len() * 3 * side * side);
    for r in captioner::vision::preprocess::preprocess_batch_sized(files, side) {
        pixels.extend(r?);
    }
    Ok(candle_core::Tensor::from_vec(
        pixels,
        (files.len(), 3, side, side),
        &candle_core::Device::Cpu,
    )?)
}
