//! `captioner train`.

/// Flags of `captioner train`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<i32> {
    anyhow::bail!("`captioner train` is not implemented yet")
}
