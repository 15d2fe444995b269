//! `captioner export`: a run directory as one self-contained `.safetensors` model file.

use captioner::export::export_run;
use std::path::PathBuf;

/// Flags of `captioner export`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run directory written by `captioner train`.
    #[arg(long, value_name = "DIR")]
    pub run: PathBuf,
    /// Model file to write (replaced atomically).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    super::exit::require_path("the run directory", &args.run)?;
    let s = export_run(&args.run, &args.out)?;
    println!(
        "wrote {} ({:.1} MB, {} tensors: {} trunk, head, decoder; vocabulary {} words)",
        s.path.display(),
        s.bytes as f64 / 1e6,
        s.tensors,
        s.arch,
        s.vocab_size
    );
    Ok(0)
}
