//! `captioner caption`.

/// Flags of `captioner caption`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<i32> {
    anyhow::bail!("`captioner caption` is not implemented yet")
}
