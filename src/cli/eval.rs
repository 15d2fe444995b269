//! `captioner eval`.

/// Flags of `captioner eval`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<i32> {
    anyhow::bail!("`captioner eval` is not implemented yet")
}
