//! `captioner synth`.

/// Flags of `captioner synth`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<i32> {
    anyhow::bail!("`captioner synth` is not implemented yet")
}
