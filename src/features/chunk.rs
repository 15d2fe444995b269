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

use super::spatial::SPATIAL_TENSOR;
use super::{CacheKey, ImageIdentity};
use crate::shard::Shard;
use crate::{fsutil, Error, Result};
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
    /// The grid `[h, w]` of the spatial features the rows file also holds (tensor `spatial`,
    /// `[images, h·w, dim]` f16), when the chunk was computed with `--spatial`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spatial_grid: Option<[usize; 2]>,
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

    /// The rows file's bytes, or `None` when it is gone or is not the one the index names (a
    /// chunk deleted by a merge while it was read).
    fn rows_file(&self) -> Option<Vec<u8>> {
        let bytes = std::fs::read(self.rows_path()).ok()?;
        (Some(hex::encode(Sha256::digest(&bytes))) == self.index.rows_sha256).then_some(bytes)
    }

    /// The rows, or `None` when the rows file is gone or is not the one the index names (a chunk
    /// deleted by a merge while it was read: its images are computed again).
    pub fn rows(&self) -> Option<Vec<Vec<f32>>> {
        if self.index.images.is_empty() {
            return Some(Vec::new());
        }
        let bytes = self.rows_file()?;
        let file = safetensors::SafeTensors::deserialize(&bytes).ok()?;
        let t = file.tensor("features").ok()?;
        let dim = self.index.dim;
        if t.dtype() != safetensors::Dtype::F32 || t.shape() != [self.index.images.len(), dim] {
            return None;
        }
        let flat: Vec<f32> = t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Some(flat.chunks(dim.max(1)).map(<[f32]>::to_vec).collect())
    }

    /// Where the chunk's spatial rows are, when it has them.
    pub fn spatial_file(&self) -> Option<SpatialChunkFile> {
        let [h, w] = self.index.spatial_grid?;
        Some(SpatialChunkFile {
            rows_path: self.rows_path(),
            sha256: self.index.rows_sha256.clone()?,
            shape: [self.index.images.len(), h * w, self.index.dim],
        })
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

/// A tensor's raw little-endian bytes, for `safetensors::serialize`.
struct Raw<'a> {
    dtype: safetensors::Dtype,
    shape: Vec<usize>,
    data: &'a [u8],
}

impl safetensors::View for Raw<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        self.data.into()
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// Spatial rows to store beside a chunk's pooled rows: the grid `[h, w]` and, per row, its
/// `h·w·dim` f16 values as little-endian bytes.
pub struct SpatialRows<'a> {
    /// Grid `[h, w]`.
    pub grid: [usize; 2],
    /// One entry per pooled row, in the same order.
    pub rows: &'a [Vec<u8>],
}

/// A chunk's rows file that holds spatial rows: enough to find and check them later.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpatialChunkFile {
    /// The rows file.
    pub rows_path: PathBuf,
    /// Its sha256, as the chunk's index records it.
    pub sha256: String,
    /// `[images, P, dim]` of its `spatial` tensor.
    pub shape: [usize; 3],
}

impl SpatialChunkFile {
    /// The spatial rows as little-endian f16 bytes, `[images, P·dim]` flat, or `None` when the
    /// rows file is gone or is not the one the index named.
    pub fn read(&self) -> Option<Vec<u8>> {
        let bytes = std::fs::read(&self.rows_path).ok()?;
        if hex::encode(Sha256::digest(&bytes)) != self.sha256 {
            return None;
        }
        let file = safetensors::SafeTensors::deserialize(&bytes).ok()?;
        let t = file.tensor(SPATIAL_TENSOR).ok()?;
        (t.dtype() == safetensors::Dtype::F16 && t.shape() == self.shape).then(|| t.data().to_vec())
    }
}

/// Where [`write()`] put a chunk's rows: the rows file and its sha256 (`None` for a chunk of
/// failures only).
pub type Written = Option<(PathBuf, String)>;

/// Writes one chunk into `dir` (created if needed); the rows are f32 `[images, dim]`, with
/// their spatial rows when `spatial` is given.
pub fn write(
    dir: &Path,
    shard: Shard,
    key: &CacheKey,
    dim: usize,
    rows: &[(ImageIdentity, Vec<f32>)],
    spatial: Option<SpatialRows<'_>>,
    unreadable: &[(ImageIdentity, String)],
) -> Result<Written> {
    let rows_bytes = if rows.is_empty() {
        None
    } else {
        let flat: Vec<u8> = rows
            .iter()
            .flat_map(|(_, r)| r.iter().flat_map(|v| v.to_le_bytes()))
            .collect();
        let mut tensors = vec![(
            "features",
            Raw {
                dtype: safetensors::Dtype::F32,
                shape: vec![rows.len(), dim],
                data: &flat,
            },
        )];
        let spatial_flat: Vec<u8>;
        if let Some(sp) = &spatial {
            if sp.rows.len() != rows.len() {
                return Err(Error::Internal(format!(
                    "a chunk of {} rows with {} spatial rows",
                    rows.len(),
                    sp.rows.len()
                )));
            }
            spatial_flat = sp.rows.concat();
            tensors.push((
                SPATIAL_TENSOR,
                Raw {
                    dtype: safetensors::Dtype::F16,
                    shape: vec![rows.len(), sp.grid[0] * sp.grid[1], dim],
                    data: &spatial_flat,
                },
            ));
        }
        let bytes = safetensors::serialize(tensors, None)
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
        spatial_grid: spatial.map(|s| s.grid).filter(|_| !rows.is_empty()),
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
    let rows_path = base.with_extension("safetensors");
    if let Some(bytes) = &rows_bytes {
        fsutil::write_atomic(&rows_path, bytes)?;
    }
    // The index is written last: it is the commit.
    fsutil::write_atomic(&base.with_extension("json"), &json)?;
    Ok(index.rows_sha256.map(|sha| (rows_path, sha)))
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
    use candle_core::{Device, Tensor};

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
        write(dir.path(), shard, &key(), 2, &rows, None, &bad).unwrap();
        // A second attempt of the same shard writing the same chunk: same files, no more.
        write(dir.path(), shard, &key(), 2, &rows, None, &bad).unwrap();
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
        write(
            dir.path(),
            shard,
            &key(),
            2,
            &[],
            None,
            &[(id(4), "x".into())],
        )
        .unwrap();
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
            None,
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
            None,
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
