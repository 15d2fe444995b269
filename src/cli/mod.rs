//! Subcommand table. Each command's flags and body are in their own file.

mod bench;
mod bench_batch;
mod bench_caption;
mod bench_common;
mod bench_encoder;
mod bench_index;
mod bench_precision;
mod bench_rounds;
mod bench_search;
mod bench_train;
mod bench_train_attention;
mod caption;
mod data_args;
mod demo;
mod eval;
mod eval_report;
mod exit;
mod export;
mod features;
mod fetch;
mod index;
mod index_merge;
mod init_backbone;
mod inspect;
mod interrupt;
mod output;
mod precision_arg;
mod progress;
mod render;
mod search;
mod serve;
mod shard_args;
mod synth;
mod train;

use clap::{Parser, Subcommand};

/// Image captioning: a ResNet eye and an LSTM mouth, in one binary.
#[derive(Debug, Parser)]
#[command(name = "captioner", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// From nothing to captions in minutes: synth corpus, train, evaluate, show (no network).
    Demo(demo::Args),
    /// Generate a corpus of rendered scenes with five captions each (Kaggle layout).
    Synth(synth::Args),
    /// Describe a dataset: layout, counts, split, vocabulary, unreadable images.
    Inspect(inspect::Args),
    /// Compute (or reuse) the ResNet feature of every image of a corpus.
    Features(features::Args),
    /// Train the head and the LSTM decoder on cached features.
    Train(train::Args),
    /// Export a run as one self-contained model file.
    Export(export::Args),
    /// Caption images.
    Caption(caption::Args),
    /// Caption every image under some folders into a searchable library (SQLite), incrementally.
    Index(index::Args),
    /// Merge the shard libraries of `index --shard I/N` runs into one library.
    IndexMerge(index_merge::Args),
    /// Search a library's captions (BM25), or list it with --all.
    Search(search::Args),
    /// Evaluate a model: BLEU-1..4, ROUGE-L, CIDEr-D.
    Eval(eval::Args),
    /// Benchmarks, side by side with PyTorch when it is installed.
    Bench(bench::Args),
    /// Download pretrained weights and datasets (resumable, checksum-verified).
    Fetch(fetch::Args),
    /// Serve the captioning page and JSON API over HTTP.
    Serve(serve::Args),
    /// Write a ResNet with torchvision's default random initialisation (for tests and the demo).
    InitBackbone(init_backbone::Args),
}

pub use exit::code as exit_code;
pub use output::reader_gone;

/// Runs the parsed command; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Demo(a) => demo::run(a),
        Command::Synth(a) => synth::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Features(a) => features::run(a),
        Command::Train(a) => train::run(a),
        Command::Export(a) => export::run(a),
        Command::Caption(a) => caption::run(a),
        Command::Index(a) => index::run(a),
        Command::IndexMerge(a) => index_merge::run(a),
        Command::Search(a) => search::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Fetch(a) => fetch::run(a),
        Command::Serve(a) => serve::run(a),
        Command::InitBackbone(a) => init_backbone::run(a),
    }
}
