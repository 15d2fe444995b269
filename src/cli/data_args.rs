//! Flags shared by every command that reads a corpus (`inspect`, `train`, ...): where the data is,
//! how to read it, how to split it and how to build the vocabulary. Flatten with `#[command(flatten)]`.

use anyhow::Context;
use captioner::data::{CaptionCorpus, DatasetSplit, Layout, LoadOptions, SplitRatios};
use captioner::text::{VocabSource, Vocabulary};
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

/// A loaded corpus with its split and vocabulary.
#[derive(Debug)]
pub struct PreparedData {
    pub corpus: CaptionCorpus,
    pub split: DatasetSplit,
    pub vocab: Vocabulary,
}

impl DataArgs {
    /// The corpus loading options these flags ask for.
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            format: self.format,
            strict: self.strict,
        }
    }

    /// Loads the corpus with [`DataArgs::load_options`].
    pub fn load_corpus(&self) -> anyhow::Result<CaptionCorpus> {
        CaptionCorpus::load(&self.data, &self.load_options())
            .with_context(|| format!("cannot load the corpus in {}", self.data.display()))
    }

    /// The split file's split if `--split-file` is given, else the dataset's own, else a random one.
    pub fn split(&self, corpus: &CaptionCorpus) -> anyhow::Result<DatasetSplit> {
        Ok(match &self.split_file {
            Some(path) => DatasetSplit::load_for(path, corpus)?,
            None => DatasetSplit::from_corpus(corpus, self.split_ratios, self.seed),
        })
    }

    /// Where the split comes from, for reports: "file", "dataset" or "random".
    pub fn split_source(&self, corpus: &CaptionCorpus) -> &'static str {
        if self.split_file.is_some() {
            "file"
        } else if corpus.has_own_split() {
            "dataset"
        } else {
            "random"
        }
    }

    /// The vocabulary of the training captions (or of all captions with `--vocab-from all`).
    pub fn vocabulary(&self, corpus: &CaptionCorpus, split: &DatasetSplit) -> Vocabulary {
        match self.vocab_from {
            VocabSource::Train => {
                Vocabulary::build(corpus.captions_of(&split.train), self.min_freq)
            }
            VocabSource::All => Vocabulary::build(corpus.captions(), self.min_freq),
        }
    }

    /// Corpus, split and vocabulary, all from these flags.
    pub fn prepare_with(&self, corpus: CaptionCorpus) -> anyhow::Result<PreparedData> {
        let split = self.split(&corpus)?;
        let vocab = self.vocabulary(&corpus, &split);
        Ok(PreparedData {
            corpus,
            split,
            vocab,
        })
    }

    /// Loads the corpus, then [`DataArgs::prepare_with`].
    pub fn prepare(&self) -> anyhow::Result<PreparedData> {
        self.prepare_with(self.load_corpus()?)
    }
}

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
