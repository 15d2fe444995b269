//! `captioner inspect`.

/// Flags of `captioner inspect`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<i32> {
    anyhow::bail!("`captioner inspect` is not implemented yet")
}
