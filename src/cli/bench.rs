//! `captioner bench`: measured tables, side by side with PyTorch when `python3` has torch installed.

use clap::Subcommand;

/// Flags of `captioner bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub what: Bench,
}

#[derive(Debug, Subcommand)]
pub enum Bench {
    /// ResNet encoder images/s at batch 1 and 16.
    Encoder(super::bench_encoder::Args),
    /// Decoder training step (batch 64, 21 steps, Adam) in ms.
    Train(super::bench_train::Args),
    /// One 500x375 JPEG end to end (read, decode, preprocess, encode, greedy / beam) in ms.
    Caption(super::bench_caption::Args),
    /// Index throughput against `caption` on the same images, and an unchanged re-run.
    Index(super::bench_index::Args),
    /// Library search latency (p50, p95) over a synthetic 100,000-image library.
    Search(super::bench_search::Args),
    /// bf16 against f32: feature parity, speed, and a trained model's scores both ways.
    Precision(super::bench_precision::Args),
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    match args.what {
        Bench::Encoder(a) => super::bench_encoder::run(a),
        Bench::Train(a) => super::bench_train::run(a),
        Bench::Caption(a) => super::bench_caption::run(a),
        Bench::Index(a) => super::bench_index::run(a),
        Bench::Search(a) => super::bench_search::run(a),
        Bench::Precision(a) => super::bench_precision::run(a),
    }
}
