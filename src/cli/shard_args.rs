//! `--shard I/N` and `--shards N`, shared by `features`, `caption` and `train`: which part of the
//! images this process takes, from the flag or from the scheduler's environment (a Slurm job
//! array, a Kubernetes Indexed Job).

use captioner::shard::{Shard, ShardSource};

/// The sharding flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ShardArgs {
    /// Process only shard I of N (0-based), e.g. 2/8: the images whose name hashes to I. Without
    /// it, a Slurm job array (SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT) or a Kubernetes Indexed
    /// Job (JOB_COMPLETION_INDEX with --shards) sets the shard; `--shard 0/1` forces the whole job.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// The number of shards: of a Kubernetes Indexed Job (its `completions`; the index comes from
    /// JOB_COMPLETION_INDEX), or of a Slurm job array whose task ids are the shard numbers (so a
    /// lost task resubmitted alone, `sbatch --array=3`, is still shard 3 of N).
    #[arg(long, value_name = "N")]
    pub shards: Option<u32>,
}

impl ShardArgs {
    /// The shard to run and where it came from; `None` for the whole job (`--shard 0/1` included).
    pub fn resolve(&self) -> anyhow::Result<Option<(Shard, ShardSource)>> {
        let resolved = Shard::resolve(self.shard.as_deref(), self.shards, |k| {
            std::env::var(k).ok()
        })?;
        Ok(resolved.filter(|(s, _)| s.count > 1))
    }
}
