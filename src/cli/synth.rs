//! `captioner synth`: writes a corpus of rendered scenes with five captions each (Kaggle layout).

use captioner::data::synth::{generate, SynthOptions};
use std::path::PathBuf;
use std::time::Instant;

/// Flags of `captioner synth`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output directory; receives Images/ and captions.txt (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Number of images; each gets five captions.
    #[arg(long, default_value_t = 1000)]
    pub images: usize,
    /// Seed: the same seed and count give byte-identical files.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Overwrite a corpus already in --out.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let start = Instant::now();
    let opts = SynthOptions {
        images: args.images,
        seed: args.seed,
        force: args.force,
    };
    let s = generate(&args.out, &opts)?;
    println!(
        "wrote {} images ({:.1} MB) and {} captions to {} ({} distinct words) in {:.1} s",
        s.images,
        s.image_bytes as f64 / 1e6,
        s.captions,
        args.out.display(),
        s.vocabulary,
        start.elapsed().as_secs_f64()
    );
    Ok(0)
}
