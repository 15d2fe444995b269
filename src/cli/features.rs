//! `captioner features`.

/// Flags of `captioner features`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<i32> {
    anyhow::bail!("`captioner features` is not implemented yet")
}
