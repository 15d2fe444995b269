//! `captioner export`.

/// Flags of `captioner export`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<i32> {
    anyhow::bail!("`captioner export` is not implemented yet")
}
