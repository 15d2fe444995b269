//! `captioner index-merge`: folds the shard libraries of `index --shard I/N` runs into one
//! library, equal to an unsharded `index` over the same images.

use super::progress::Bars;
use captioner::library::merge_shards;
use std::path::PathBuf;

/// Flags of `captioner index-merge`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The library to merge into (created if needed).
    #[arg(long, value_name = "FILE")]
    pub db: PathBuf,
    /// Shard libraries written by `captioner index --shard I/N` (e.g. lib.shard-*-of-4.db).
    #[arg(required = true, value_name = "SHARD_DB")]
    pub shards: Vec<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let summary = merge_shards(&args.db, &args.shards, &Bars::new(false))?;
    println!(
        "merged {} images from {} shards into {}",
        summary.images,
        summary.shards,
        args.db.display()
    );
    Ok(0)
}
