//! `captioner bench`.

/// Flags of `captioner bench`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<i32> {
    anyhow::bail!("`captioner bench` is not implemented yet")
}
