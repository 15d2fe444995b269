//! `captioner data args`.

/// Flags.
#[derive(Debug, clap::Args)]
pub struct Args {}

#[allow(dead_code)]
pub fn run(_args: Args) -> anyhow::Result<i32> {
    anyhow::bail!("not implemented yet")
}
