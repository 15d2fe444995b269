//! Chunks: the pieces of work extraction commits as it goes, under `CACHE/chunks/`. A chunk holds
//! the features of a few consecutive images (and the images of that stretch that failed to
//! decode), so a killed run, or a retried shard, continues where it stopped.
//!
//! Shards of a job share one cache directory, on a shared filesystem, so the layout is made for
//! writers that never coordinate:
//! - a chunk is two files named by a hash of its content, `<tag>-<hash>.safetensors` (the rows)
//!   and `<tag>-<hash>.json` (the index), where the tag names the shard that wrote it
//!   (`s0002of0004`, or `all` without sharding);
//! - each file is written to a temp file and renamed (the rows first, the index last: the index is
//!   the commit), so a reader sees a whole chunk or none;
//! - two attempts of the same shard that compute the same chunk write the same bytes under the
//!   same name, and different chunks never share a name, so attempts running at once, or an
//!   attempt and the merge, cannot corrupt each other; an image in two chunks has the same row in
//!   both;
//! - the index records the sha256 of its rows file, so a rows file that is not the one the index
//!   was written with is never used.

use super::{CacheKey, ImageIdentity};
use crate::shard::Shard;
use crate::{fsutil, Error, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The folder of chunks inside a cache directory.
pub const CHUNKS_DIR: &str = "chunks";

/// A chunk's index: what its rows are, and which images of its stretch failed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChunkIndex {
    /// What the rows were computed with.
    pub key: CacheKey,
    /// The shard that wrote the chunk (`2/4`), `all` without sharding: for people reading the
    /// folder; merging does not depend on it.
    pub shard: String,
    /// Feature dimension.
    pub dim: usize,
    /// The images of the rows, in row order.
    pub images: Vec<ImageIdentity>,
    /// sha256 of the rows file, hex; absent when the chunk has no rows (all its images failed).
    pub rows_sha256: Option<String>,
    /// Images that failed to decode under this key, with the error.
    pub unreadable: Vec<(ImageIdentity, String)>,
}

/// A committed chunk found in the folder.
#[derive(Debug)]
pub struct Chunk {
    /// Path of its index file.
    pub index_path: PathBuf,
    /// The index.
    pub index: ChunkIndex,
}

impl Chunk {
    /// Path of its rows file.
    pub fn rows_path(&self) -> PathBuf {
        self.index_path.with_extension("safetensors")
    }

    /// The rows, or `None` when the rows file is gone or is not the one the index names (a chunk
    /// deleted by a merge while it was read: its images are computed again).
    pub fn rows(&self) -> Option<Vec<Vec<f32>>> {
        if self.index.images.is_empty() {
            return Some(Vec::new());
        }
        let path = self.rows_path();
        let bytes = std::fs::read(&path).ok()?;
        if Some(hex::encode(Sha256::digest(&bytes))) != self.index.rows_sha256 {
            return None;
        }
        let t = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .ok()?
            .remove("features")?;
        let rows = t.to_vec2::<f32>().ok()?;
        (rows.len() == self.index.images.len()).then_some(rows)
    }

    /// Deletes the chunk's files (index first, so no index ever names a missing rows file for
    /// long). Files already gone are fine: another merge may have removed them.
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.index_path);
        let _ = std::fs::remove_file(self.rows_path());
    }
}

/// The file-name tag of a shard's chunks: `s0002of0004`, or `all` for an unsharded run.
pub fn tag(shard: Shard) -> String {
    if shard.count <= 1 {
        "all".into()
    } else {
        format!("s{:04}of{:04}", shard.index, shard.count)
    }
}

/// Writes one chunk into `dir` (created if needed); the rows are f32 `[images, dim]`.
pub fn write(
    dir: &Path,
    shard: Shard,
    key: &CacheKey,
    dim: usize,
    rows: &[(ImageIdentity, Vec<f32>)],
    unreadable: &[(ImageIdentity, String)],
) -> Result<()> {
    let rows_bytes = if rows.is_empty() {
        None
    } else {
        let flat: Vec<f32> = rows.iter().flat_map(|(_, r)| r.iter().copied()).collect();
        let t = Tensor::from_vec(flat, (rows.len(), dim), &Device::Cpu)?;
        let bytes = safetensors::serialize([("features", &t)], None)
            .map_err(|e| Error::Internal(format!("cannot serialise a feature chunk: {e}")))?;
        Some(bytes)
    };
    let index = ChunkIndex {
        key: key.clone(),
        shard: if shard.count <= 1 {
            "all".into()
        } else {
            shard.to_string()
        },
        dim,
        images: rows.iter().map(|(id, _)| id.clone()).collect(),
        rows_sha256: rows_bytes.as_ref().map(|b| hex::encode(Sha256::digest(b))),
        unreadable: unreadable.to_vec(),
    };
    let json = serde_json::to_vec_pretty(&index)
        .map_err(|e| Error::Internal(format!("cannot serialise a chunk index: {e}")))?;
    // The name is a hash of everything in the chunk: equal chunks, equal names.
    let name = format!(
        "{}-{}",
        tag(shard),
        &hex::encode(Sha256::digest(&json))[..16]
    );
    let base = dir.join(name);
    if let Some(bytes) = rows_bytes {
        fsutil::write_atomic(&base.with_extension("safetensors"), &bytes)?;
    }
    // The index is written last: it is the commit.
    fsutil::write_atomic(&base.with_extension("json"), &json)
}

/// Every committed chunk in `dir` (none if it does not exist), sorted by file name. An index
/// that cannot be read is skipped (it is never half-written, but a user may have damaged it);
/// a chunk made under another key than `key` is an error naming the difference, so shards made
/// with different settings are never merged.
pub fn read_all(dir: &Path, key: &CacheKey) -> Result<Vec<Chunk>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "json")
                && !p
                    .file_name()
                    .is_some_and(|n| fsutil::is_temp_file_name(&n.to_string_lossy()))
        })
        .collect();
    paths.sort();
    let mut chunks = Vec::with_capacity(paths.len());
    for index_path in paths {
        let Ok(index) = fsutil::read_json::<ChunkIndex>(&index_path) else {
            continue;
        };
        if &index.key != key {
            return Err(Error::Invalid(format!(
                "{} was made with {}: every shard of a cache must use the same --backbone, \
                 --arch, --image-size, --half and --precision (rerun with those, or delete {} to start over)",
                index_path.display(),
                key_difference(&index.key, key),
                dir.display()
            )));
        }
        chunks.push(Chunk { index_path, index });
    }
    Ok(chunks)
}

/// What differs between the key of a chunk (`theirs`) and this run's (`ours`), in words.
pub fn key_difference(theirs: &CacheKey, ours: &CacheKey) -> String {
    let mut parts = Vec::new();
    if theirs.backbone_sha256 != ours.backbone_sha256 {
        parts.push(format!(
            "another backbone (sha256 {} where this run's is {})",
            short(&theirs.backbone_sha256),
            short(&ours.backbone_sha256)
        ));
    }
    if theirs.arch != ours.arch {
        parts.push(format!(
            "another architecture ({} where this run's is {})",
            theirs.arch, ours.arch
        ));
    }
    if theirs.preprocess_version != ours.preprocess_version {
        parts.push(format!(
            "another preprocessing or image size ({} where this run's is {})",
            theirs.preprocess_version, ours.preprocess_version
        ));
    }
    if theirs.half != ours.half {
        let kind = |h: bool| if h { "f16 (--half)" } else { "f32" };
        parts.push(format!(
            "another storage ({} where this run's is {})",
            kind(theirs.half),
            kind(ours.half)
        ));
    }
    if theirs.precision != ours.precision {
        parts.push(format!(
            "another precision ({} where this run's is {})",
            theirs.precision, ours.precision
        ));
    }
    if parts.is_empty() {
        "another cache key".into()
    } else {
        parts.join(", ")
    }
}

fn short(hex: &str) -> &str {
    &hex[..hex.len().min(12)]
}

/// The rows of the chunks that hold any of `wanted`, and the failures every chunk records. A
/// chunk whose rows cannot be read contributes its failures only.
pub fn absorb(
    chunks: &[Chunk],
    wanted: &std::collections::HashSet<&ImageIdentity>,
    known: &mut HashMap<ImageIdentity, Vec<f32>>,
    failed: &mut HashMap<ImageIdentity, String>,
) {
    for chunk in chunks {
        for (id, error) in &chunk.index.unreadable {
            failed.insert(id.clone(), error.clone());
        }
        let needed = chunk
            .index
            .images
            .iter()
            .any(|id| wanted.contains(id) && !known.contains_key(id));
        if !needed {
            continue;
        }
        if let Some(rows) = chunk.rows() {
            for (id, row) in chunk.index.images.iter().zip(rows) {
                known.entry(id.clone()).or_insert(row);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CacheKey {
        CacheKey {
            backbone_sha256: "ab".repeat(32),
            arch: "resnet18".into(),
            preprocess_version: "v1-224".into(),
            half: false,
            precision: Default::default(),
        }
    }

    fn id(i: usize) -> ImageIdentity {
        ImageIdentity {
            file: format!("img{i}.jpg"),
            sha256: format!("{i:064}"),
        }
    }

    #[test]
    fn equal_chunks_share_a_name_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let shard = Shard::new(1, 4).unwrap();
        let rows = vec![(id(1), vec![1.0, 2.0]), (id(2), vec![3.0, 4.5])];
        let bad = vec![(id(3), "cannot decode".to_string())];
        write(dir.path(), shard, &key(), 2, &rows, &bad).unwrap();
        // A second attempt of the same shard writing the same chunk: same files, no more.
        write(dir.path(), shard, &key(), 2, &rows, &bad).unwrap();
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names.iter().all(|n| n.starts_with("s0001of0004-")));
        let chunks = read_all(dir.path(), &key()).unwrap();
        assert_eq!(chunks.len(), 1);
        assert_eq!(
            chunks[0].rows().unwrap(),
            vec![vec![1.0, 2.0], vec![3.0, 4.5]]
        );
        assert_eq!(chunks[0].index.unreadable, bad);
        // A chunk of failures only has no rows file.
        write(dir.path(), shard, &key(), 2, &[], &[(id(4), "x".into())]).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
    }

    #[test]
    fn a_replaced_rows_file_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            Shard::ALL,
            &key(),
            1,
            &[(id(1), vec![1.0])],
            &[],
        )
        .unwrap();
        let chunks = read_all(dir.path(), &key()).unwrap();
        let other = Tensor::from_vec(vec![9f32], (1, 1), &Device::Cpu).unwrap();
        candle_core::safetensors::save(
            &HashMap::from([("features".to_string(), other)]),
            chunks[0].rows_path(),
        )
        .unwrap();
        assert!(chunks[0].rows().is_none());
    }

    #[test]
    fn chunks_of_another_key_are_refused_naming_the_difference() {
        let dir = tempfile::tempdir().unwrap();
        let mut theirs = key();
        theirs.preprocess_version = "v1-112".into();
        theirs.half = true;
        write(
            dir.path(),
            Shard::ALL,
            &theirs,
            1,
            &[(id(1), vec![1.0])],
            &[],
        )
        .unwrap();
        let err = read_all(dir.path(), &key()).unwrap_err().to_string();
        assert!(err.contains("v1-112") && err.contains("v1-224"), "{err}");
        assert!(err.contains("f16 (--half)"), "{err}");
        assert!(!err.contains("backbone (sha256"), "{err}");
        let mut other_backbone = key();
        other_backbone.backbone_sha256 = "cd".repeat(32);
        let err = key_difference(&other_backbone, &key());
        assert!(
            err.contains("cdcdcdcdcdcd") && err.contains("ababababab"),
            "{err}"
        );
    }
}
