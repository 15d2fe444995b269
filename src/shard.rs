//! Shards of a job over many images: `--shard I/N` selects the images whose key hashes to I
//! modulo N, so the same image always falls in the same shard whatever the machine or the order
//! in which the images were listed, and the union over I = 0..N-1 is every image exactly once.
//!
//! Schedulers start the shards: a Slurm job array sets `SLURM_ARRAY_TASK_ID` and
//! `SLURM_ARRAY_TASK_COUNT`, a Kubernetes Indexed Job sets `JOB_COMPLETION_INDEX` (its count comes
//! from `--shards N`, Kubernetes does not export it). [`Shard::resolve`] reads them when no
//! explicit `--shard` is given, and says where the shard came from so the caller can log it.

use crate::{Error, Result};
use sha2::{Digest, Sha256};
use std::fmt;

/// One part of a partitioned job: shard `index` of `count` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard's number, `0..count`.
    pub index: u32,
    /// How many shards the job has (≥ 1).
    pub count: u32,
}

/// Where a [`Shard`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardSource {
    /// `--shard I/N` on the command line.
    Flag,
    /// A Slurm job array (`SLURM_ARRAY_TASK_ID`, `SLURM_ARRAY_TASK_COUNT`).
    Slurm,
    /// A Kubernetes Indexed Job (`JOB_COMPLETION_INDEX`, with `--shards N`).
    Kubernetes,
}

impl fmt::Display for ShardSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ShardSource::Flag => "--shard",
            ShardSource::Slurm => "Slurm job array (SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT)",
            ShardSource::Kubernetes => "Kubernetes Indexed Job (JOB_COMPLETION_INDEX, --shards)",
        })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// The whole job as one shard.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// A shard, checked: `count` ≥ 1 and `index` < `count`.
    pub fn new(index: u32, count: u32) -> Result<Shard> {
        if count == 0 {
            return Err(Error::Invalid("shard count must be at least 1".into()));
        }
        if index >= count {
            return Err(Error::Invalid(format!(
                "shard index {index} is out of range for {count} shards (0..{count})"
            )));
        }
        Ok(Shard { index, count })
    }

    /// Parses `I/N` (as `--shard 2/8`).
    pub fn parse(text: &str) -> Result<Shard> {
        let bad = || Error::Invalid(format!("shard {text:?}: expected I/N, e.g. 0/4"));
        let (i, n) = text.trim().split_once('/').ok_or_else(bad)?;
        let index = i.trim().parse().map_err(|_| bad())?;
        let count = n.trim().parse().map_err(|_| bad())?;
        Shard::new(index, count)
    }

    /// The shard to run: `flag` (`--shard I/N`) if given; otherwise a Slurm array task (shard
    /// `SLURM_ARRAY_TASK_ID` of `shards` when `--shards N` is given, else numbered within the
    /// array: id − `SLURM_ARRAY_TASK_MIN` of `SLURM_ARRAY_TASK_COUNT`); otherwise a Kubernetes
    /// Indexed Job's `JOB_COMPLETION_INDEX` with `shards` (`--shards N`) as the count.
    /// `None` when nothing asks for sharding. `env` reads an environment variable (a parameter so
    /// tests need not change the process's environment: pass `|k| std::env::var(k).ok()`).
    pub fn resolve(
        flag: Option<&str>,
        shards: Option<u32>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<(Shard, ShardSource)>> {
        if let Some(text) = flag {
            return Ok(Some((Shard::parse(text)?, ShardSource::Flag)));
        }
        let number = |name: &str| -> Result<Option<u32>> {
            match env(name) {
                None => Ok(None),
                Some(v) if v.trim().is_empty() => Ok(None),
                Some(v) => v.trim().parse().map(Some).map_err(|_| {
                    Error::Invalid(format!("environment variable {name}={v:?} is not a number"))
                }),
            }
        };
        if let Some(index) = number("SLURM_ARRAY_TASK_ID")? {
            // With --shards N the array's task ids are the shard numbers (so a lost task resubmitted
            // alone, `sbatch --array=2`, is still shard 2 of N). Without it, arrays such as
            // --array=0-3 give the count, and tasks are numbered from SLURM_ARRAY_TASK_MIN.
            if let Some(count) = shards {
                return Ok(Some((Shard::new(index, count)?, ShardSource::Slurm)));
            }
            let count = number("SLURM_ARRAY_TASK_COUNT")?.ok_or_else(|| {
                Error::Invalid(
                    "SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not: pass --shards N"
                        .into(),
                )
            })?;
            let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let index = index.checked_sub(min).ok_or_else(|| {
                Error::Invalid(format!(
                    "SLURM_ARRAY_TASK_ID {index} is below SLURM_ARRAY_TASK_MIN {min}"
                ))
            })?;
            return Ok(Some((Shard::new(index, count)?, ShardSource::Slurm)));
        }
        if let Some(index) = number("JOB_COMPLETION_INDEX")? {
            let count = shards.ok_or_else(|| {
                Error::Invalid(
                    "JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job): pass --shards N, the Job's completions"
                        .into(),
                )
            })?;
            return Ok(Some((Shard::new(index, count)?, ShardSource::Kubernetes)));
        }
        if shards.is_some() {
            return Err(Error::Invalid(
                "--shards N needs JOB_COMPLETION_INDEX (a Kubernetes Indexed Job) or SLURM_ARRAY_TASK_ID; use --shard I/N otherwise"
                    .into(),
            ));
        }
        Ok(None)
    }

    /// The shard an item with this key belongs to: the first 8 bytes of sha256(key), big-endian,
    /// modulo the count. Stable across machines, processes and listing orders.
    pub fn of(key: &str, count: u32) -> u32 {
        let digest = Sha256::digest(key.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        (u64::from_be_bytes(first) % u64::from(count.max(1))) as u32
    }

    /// Whether the item with this key is this shard's.
    pub fn contains(&self, key: &str) -> bool {
        self.count <= 1 || Shard::of(key, self.count) == self.index
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn parse_accepts_i_of_n_and_refuses_the_rest() {
        assert_eq!(Shard::parse("2/8").unwrap(), Shard { index: 2, count: 8 });
        assert_eq!(Shard::parse(" 0 / 1 ").unwrap(), Shard::ALL);
        for bad in ["8/8", "1/0", "x/2", "3", "-1/4", "1/2/3", ""] {
            assert!(Shard::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn shards_partition_the_keys() {
        let keys: Vec<String> = (0..2000).map(|i| format!("scene_{i:06}.jpg")).collect();
        let count = 4;
        let mut seen = vec![0u32; keys.len()];
        let mut sizes = vec![0usize; count as usize];
        for index in 0..count {
            let shard = Shard::new(index, count).unwrap();
            for (k, key) in keys.iter().enumerate() {
                if shard.contains(key) {
                    seen[k] += 1;
                    sizes[index as usize] += 1;
                }
            }
        }
        assert!(
            seen.iter().all(|&s| s == 1),
            "every key in exactly one shard"
        );
        // Balanced to within a few percent on 2000 keys (expected 500 each).
        assert!(sizes.iter().all(|&s| (440..=560).contains(&s)), "{sizes:?}");
        // Stable: a fixed key's shard is part of the format (a sharded cache made by one version
        // must merge with shards made by another).
        assert_eq!(
            Shard::of("scene_000001.jpg", 4),
            Shard::of("scene_000001.jpg", 4)
        );
        assert!(Shard::ALL.contains("anything"));
    }

    #[test]
    fn resolve_prefers_the_flag_then_slurm_then_kubernetes() {
        let none = env(&[]);
        assert_eq!(Shard::resolve(None, None, &none).unwrap(), None);
        let slurm = env(&[
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        assert_eq!(
            Shard::resolve(None, None, &slurm).unwrap(),
            Some((Shard { index: 3, count: 4 }, ShardSource::Slurm))
        );
        assert_eq!(
            Shard::resolve(Some("1/2"), None, &slurm).unwrap(),
            Some((Shard { index: 1, count: 2 }, ShardSource::Flag))
        );
        let slurm_from_one = env(&[
            ("SLURM_ARRAY_TASK_ID", "4"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
        ]);
        assert_eq!(
            Shard::resolve(None, None, &slurm_from_one).unwrap(),
            Some((Shard { index: 3, count: 4 }, ShardSource::Slurm))
        );
        // A lost task resubmitted alone (`sbatch --array=1`) with --shards keeps its number.
        let resubmitted = env(&[
            ("SLURM_ARRAY_TASK_ID", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "1"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
        ]);
        assert_eq!(
            Shard::resolve(None, Some(4), &resubmitted).unwrap(),
            Some((Shard { index: 1, count: 4 }, ShardSource::Slurm))
        );
        assert!(
            Shard::resolve(None, Some(1), &resubmitted).is_err(),
            "1 of 1"
        );
        let k8s = env(&[("JOB_COMPLETION_INDEX", "5")]);
        assert_eq!(
            Shard::resolve(None, Some(8), &k8s).unwrap(),
            Some((Shard { index: 5, count: 8 }, ShardSource::Kubernetes))
        );
        assert!(Shard::resolve(None, None, &k8s).is_err(), "count missing");
        assert!(Shard::resolve(None, Some(4), &k8s).is_err(), "5 of 4");
        assert!(
            Shard::resolve(None, Some(4), &none).is_err(),
            "--shards alone"
        );
        let junk = env(&[("SLURM_ARRAY_TASK_ID", "x")]);
        assert!(Shard::resolve(None, None, &junk).is_err());
    }
}
