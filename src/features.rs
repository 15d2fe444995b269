//! The feature cache: the frozen ResNet trunk's pooled feature of every image, computed once and kept on
//! disk, keyed by backbone sha256 + architecture + preprocessing version + image content, so a stale entry
//! is never used. Extraction commits [`chunk`]s as it goes, so a killed run continues where it stopped.
//!
//! Sharded extraction ([`ExtractOptions::shard`], `captioner features --shard I/N`) computes one
//! part of the images into chunks in the shared cache directory and stops there; an unsharded run
//! over the same cache computes whatever is still missing and merges every chunk into the
//! standard files, bit-identical to a single-machine run.

use crate::data::CaptionCorpus;
use crate::model::resnet::{Arch, ResNetTrunk};
use crate::model::weights::sha256_file;
use crate::model::Precision;
use crate::progress::{Level, Progress, Unit};
use crate::shard::{Shard, ShardSource};
use crate::vision::preprocess::{preprocess_batch_sized, preprocess_version};
use crate::{fsutil, Error, Result};
use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// The feature matrix file: tensor `features`, shape [N, D].
pub const FEATURES_FILE: &str = "features.safetensors";
/// The N image file names, in the rows' order.
pub const IMAGES_FILE: &str = "images.json";
/// The cache key and the identity of every row.
pub const INDEX_FILE: &str = "cache.json";
/// Chunks written by a run killed before the chunk layout existed: no longer read, removed by a
/// merge.
const LEGACY_PARTIAL_DIR: &str = "partial";
/// Images per chunk by default: a killed run loses at most this many images' work.
pub const CHUNK_IMAGES: usize = 128;

pub mod chunk;
pub mod spatial;

pub use spatial::{SpatialFeatures, SPATIAL_FILE};

/// What a feature depends on besides the image itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheKey {
    /// sha256 of the backbone weights file, hex.
    pub backbone_sha256: String,
    /// ResNet architecture (`resnet50`, ...).
    pub arch: String,
    /// Version tag of the preprocessing, image size included.
    pub preprocess_version: String,
    /// Whether the features are stored as f16.
    pub half: bool,
    /// Arithmetic of the trunk that computed them (absent in the file for f32, so caches
    /// written before bf16 existed keep their key).
    #[serde(default, skip_serializing_if = "Precision::is_f32")]
    pub precision: Precision,
}

/// An image as the cache knows it: its name in the corpus and the sha256 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ImageIdentity {
    /// The image's file name in the corpus.
    pub file: String,
    /// sha256 of the image's bytes, hex.
    pub sha256: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct CacheIndex {
    key: CacheKey,
    dim: usize,
    images: Vec<ImageIdentity>,
    /// Images that failed to decode under this key, with the error: a rerun reports them again
    /// without loading the network.
    #[serde(default)]
    unreadable: Vec<(ImageIdentity, String)>,
    /// The grid `[h, w]` of [`SPATIAL_FILE`], when the cache has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    spatial_grid: Option<[usize; 2]>,
}

/// Options of [`extract`].
#[derive(Debug, Clone)]
pub struct ExtractOptions {
    /// ResNet architecture of the backbone.
    pub arch: Arch,
    /// Images per forward pass.
    pub batch_size: usize,
    /// Store the features as f16.
    pub half: bool,
    /// Arithmetic of the trunk's convolutions (bf16: see [`ResNetTrunk::with_precision`]).
    pub precision: Precision,
    /// Images per chunk committed during extraction (see [`CHUNK_IMAGES`]).
    pub chunk_images: usize,
    /// Side of the square images are resized to ([`crate::vision::IMAGE_SIZE`] = 224 as the seed).
    pub image_size: usize,
    /// Compute only this shard's images into chunks and stop (no merge), and where the shard came
    /// from (logged). `None`: every image, then the merge into the standard files.
    pub shard: Option<(Shard, ShardSource)>,
    /// Also keep the trunk's last feature map before the pool, in [`SPATIAL_FILE`] (f16), for
    /// the attention decoder. The pooled features are the same either way.
    pub spatial: bool,
}

/// What [`extract`] did.
#[derive(Debug, Default)]
pub struct ExtractSummary {
    /// Images of the corpus this run was responsible for (all of them without a shard).
    pub images: usize,
    /// The shard this run computed (then nothing was merged), `None` for a whole run.
    pub shard: Option<Shard>,
    /// Chunks merged into the standard files (0 for a shard).
    pub chunks_merged: usize,
    /// Features found in the cache (or in chunks of other shards or an interrupted run).
    pub reused: usize,
    /// Features computed now.
    pub computed: usize,
    /// Seconds spent computing them, from the first image read to the last feature (the
    /// backbone's load excluded); 0 when none was computed.
    pub compute_seconds: f64,
    /// Images that could not be read or decoded: (file as in the corpus, error).
    pub failed: Vec<(String, String)>,
}

/// A loaded cache: one feature row per image name.
#[derive(Debug)]
pub struct FeatureCache {
    /// What the features were computed with.
    pub key: CacheKey,
    /// The image file names, in row order.
    pub names: Vec<String>,
    /// [N, D], f32.
    pub features: Tensor,
    /// The feature maps `[N, P, D]`, memory-mapped, when the cache was made with `--spatial`.
    pub spatial: Option<std::sync::Arc<SpatialFeatures>>,
    /// The grid `[h, w]` of `spatial` (`P = h·w`).
    pub grid: Option<[usize; 2]>,
    rows: HashMap<String, usize>,
}

impl FeatureCache {
    /// Opens the cache in `dir`, checking that its files agree with each other.
    pub fn open(dir: &Path) -> Result<FeatureCache> {
        let index: CacheIndex = fsutil::read_json(&dir.join(INDEX_FILE))?;
        let names: Vec<String> = fsutil::read_json(&dir.join(IMAGES_FILE))?;
        let path = dir.join(FEATURES_FILE);
        let features = load_features(&path)?;
        let (n, d) = features.dims2()?;
        let index_names: Vec<&str> = index.images.iter().map(|i| i.file.as_str()).collect();
        let names_ref: Vec<&str> = names.iter().map(String::as_str).collect();
        if n != names.len() || d != index.dim || index_names != names_ref {
            return Err(Error::format(
                dir,
                format!(
                    "feature cache is inconsistent ({n} rows of {d}, {} names, {} indexed): delete it and rerun",
                    names.len(),
                    index.images.len()
                ),
            ));
        }
        let spatial = match index.spatial_grid {
            None => None,
            Some([h, w]) => {
                let sp = SpatialFeatures::open(&dir.join(SPATIAL_FILE))?;
                if (sp.len(), sp.cells(), sp.dim()) != (n, h * w, d) {
                    return Err(Error::format(
                        sp.path(),
                        format!(
                            "spatial features of shape [{}, {}, {}] do not fit the cache's {n} images, \
                             {h}×{w} grid and {d} channels: rerun `captioner features --spatial`",
                            sp.len(),
                            sp.cells(),
                            sp.dim()
                        ),
                    ));
                }
                Some(std::sync::Arc::new(sp))
            }
        };
        let rows = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        Ok(FeatureCache {
            key: index.key,
            names,
            features,
            spatial,
            grid: index.spatial_grid,
            rows,
        })
    }

    /// The row of `file`, if the cache has it.
    pub fn row(&self, file: &str) -> Option<usize> {
        self.rows.get(file).copied()
    }

    /// Feature dimension D.
    pub fn dim(&self) -> usize {
        self.features.dims()[1]
    }
}

fn load_features(path: &Path) -> Result<Tensor> {
    let tensors = candle_core::safetensors::load(path, &Device::Cpu)
        .map_err(|e| Error::format(path, format!("not a readable feature file: {e}")))?;
    let t = tensors
        .get("features")
        .ok_or_else(|| Error::format(path, "no tensor named `features`"))?;
    if t.rank() != 2 {
        return Err(Error::format(
            path,
            format!("`features` has shape {:?}, expected [N, D]", t.dims()),
        ));
    }
    Ok(t.to_dtype(DType::F32)?)
}

fn save_features(path: &Path, rows: &[f32], n: usize, dim: usize, half: bool) -> Result<()> {
    let t = Tensor::from_slice(rows, (n, dim), &Device::Cpu)?;
    let t = if half { t.to_dtype(DType::F16)? } else { t };
    fsutil::write_atomic_with(path, |tmp| {
        candle_core::safetensors::save(&HashMap::from([("features".to_string(), t)]), tmp)
            .map_err(Error::from)
    })
}

/// Where an image's spatial row can be copied from when the cache is assembled.
#[derive(Debug, Clone)]
enum SpatialSource {
    /// A row of the cache's current spatial file.
    Final(usize),
    /// A row of a chunk's rows file.
    Chunk(chunk::SpatialChunkFile, usize),
}

/// Every image's spatial source known so far, and the grid they share (one cache key means one
/// architecture and image size, so one grid).
#[derive(Debug, Default)]
struct SpatialSources {
    grid: Option<[usize; 2]>,
    at: HashMap<ImageIdentity, SpatialSource>,
    /// The cache's current spatial file, mapped: the rows of [`SpatialSource::Final`].
    final_file: Option<SpatialFeatures>,
}

impl SpatialSources {
    /// Adds the spatial rows of `chunks`; rows already known (from the current file) are kept.
    fn add_chunks(&mut self, chunks: &[chunk::Chunk]) {
        for c in chunks {
            if let (Some(file), Some(grid)) = (c.spatial_file(), c.index.spatial_grid) {
                self.grid = Some(grid);
                for (row, id) in c.index.images.iter().enumerate() {
                    self.at
                        .entry(id.clone())
                        .or_insert_with(|| SpatialSource::Chunk(file.clone(), row));
                }
            }
        }
    }
}

/// Writes [`SPATIAL_FILE`] in `dir` for `images` (the cache's rows, in order) from their sources,
/// one chunk in memory at a time; keeps the current file when it already holds exactly these
/// rows. Returns the grid.
fn assemble_spatial(
    dir: &Path,
    images: &[ImageIdentity],
    sources: &SpatialSources,
    dim: usize,
) -> Result<[usize; 2]> {
    let grid = sources
        .grid
        .ok_or_else(|| Error::Internal("spatial rows without a grid".into()))?;
    let unchanged = sources
        .final_file
        .as_ref()
        .is_some_and(|f| f.len() == images.len())
        && images
            .iter()
            .enumerate()
            .all(|(i, id)| matches!(sources.at.get(id), Some(SpatialSource::Final(r)) if *r == i));
    if unchanged {
        return Ok(grid);
    }
    let cells = grid[0] * grid[1];
    let row_bytes = cells * dim * 2;
    fsutil::write_atomic_with(&dir.join(SPATIAL_FILE), |tmp| {
        let mut out = spatial::SpatialWriter::create(tmp, images.len(), cells, dim)?;
        let mut by_chunk: std::collections::BTreeMap<
            &chunk::SpatialChunkFile,
            Vec<(usize, usize)>,
        > = Default::default();
        for (i, id) in images.iter().enumerate() {
            match (sources.at.get(id), &sources.final_file) {
                (Some(SpatialSource::Final(r)), Some(file)) => {
                    out.write_row(i, file.row_bytes(*r))?
                }
                (Some(SpatialSource::Chunk(file, r)), _) => {
                    by_chunk.entry(file).or_default().push((i, *r))
                }
                _ => {
                    return Err(Error::Internal(format!(
                        "no spatial row for {} in the merge",
                        id.file
                    )))
                }
            }
        }
        for (file, rows) in by_chunk {
            let bytes = file.read().ok_or_else(|| {
                Error::Invalid(format!(
                    "{} changed while the cache was merged (another merge of the same cache at \
                     once?): rerun `captioner features --spatial`",
                    file.rows_path.display()
                ))
            })?;
            for (i, r) in rows {
                out.write_row(i, &bytes[r * row_bytes..(r + 1) * row_bytes])?;
            }
        }
        Ok(())
    })?;
    Ok(grid)
}

/// sha256 of an image's bytes, hex.
fn image_sha256(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// Adds the final cache's rows (for any of `wanted`) and its recorded failures, when the cache
/// was made under `key`; a cache made under another key (a new backbone) is ignored, so every
/// image is computed again.
fn absorb_final(
    dir: &Path,
    key: &CacheKey,
    wanted: &HashSet<&ImageIdentity>,
    known: &mut HashMap<ImageIdentity, Vec<f32>>,
    failed: &mut HashMap<ImageIdentity, String>,
    spatial: &mut SpatialSources,
) {
    let Ok(index) = fsutil::read_json::<CacheIndex>(&dir.join(INDEX_FILE)) else {
        return;
    };
    if &index.key != key {
        return;
    }
    failed.extend(index.unreadable);
    if !index.images.iter().any(|id| wanted.contains(id)) {
        return;
    }
    if let Some(grid) = index.spatial_grid {
        if let Ok(file) = SpatialFeatures::open(&dir.join(SPATIAL_FILE)) {
            if (file.len(), file.cells(), file.dim())
                == (index.images.len(), grid[0] * grid[1], index.dim)
            {
                spatial.grid = Some(grid);
                for (row, id) in index.images.iter().enumerate() {
                    spatial.at.insert(id.clone(), SpatialSource::Final(row));
                }
                spatial.final_file = Some(file);
            }
        }
    }
    let Ok(t) = load_features(&dir.join(FEATURES_FILE)) else {
        return;
    };
    let Ok(rows) = t.to_vec2::<f32>() else {
        return;
    };
    if rows.len() != index.images.len() {
        return;
    }
    for (id, row) in index.images.into_iter().zip(rows) {
        known.insert(id, row);
    }
}

/// Computes the feature of every image of `corpus` into `cache_dir`, reusing every row already there for the
/// same backbone, architecture, preprocessing and image bytes (in the standard files or in chunks
/// of other shards and killed runs). Unreadable images are listed and skipped.
///
/// With [`ExtractOptions::shard`], only the images of that shard (by their file name in the
/// corpus, see [`Shard::contains`]) are computed, into chunks, and nothing is merged. Without it,
/// whatever is still missing is computed, then every chunk is merged into the standard files (in
/// corpus order: the same bytes as a single run) and removed. Chunks made under another cache key
/// are refused with an error naming the difference.
///
/// The images computed are reported as one task of `progress`; the shard and where it came from
/// are logged.
pub fn extract(
    corpus: &CaptionCorpus,
    backbone: &Path,
    cache_dir: &Path,
    opts: &ExtractOptions,
    device: &Device,
    progress: &dyn Progress,
) -> Result<ExtractSummary> {
    std::fs::create_dir_all(cache_dir).map_err(|e| Error::io(cache_dir, e))?;
    let key = CacheKey {
        backbone_sha256: sha256_file(backbone)?,
        arch: opts.arch.to_string(),
        preprocess_version: preprocess_version(opts.image_size),
        half: opts.half,
        precision: opts.precision,
    };
    let shard = opts.shard.map(|(s, _)| s);
    let mine: Vec<usize> = (0..corpus.images.len())
        .filter(|&i| shard.is_none_or(|s| s.contains(&corpus.images[i].file)))
        .collect();
    if let Some((s, source)) = opts.shard {
        progress.log(
            Level::Info,
            &format!(
                "features: shard {s} (from {source}): {} of the {} images",
                mine.len(),
                corpus.images.len()
            ),
        );
    }
    let mut summary = ExtractSummary {
        images: mine.len(),
        shard,
        ..Default::default()
    };

    // Identify every image by content; unreadable files are reported and left out.
    let identities: Vec<(usize, Result<ImageIdentity>)> = mine
        .par_iter()
        .map(|&i| {
            let rec = &corpus.images[i];
            let id = image_sha256(&rec.path).map(|sha256| ImageIdentity {
                file: rec.file.clone(),
                sha256,
            });
            (i, id)
        })
        .collect();

    let chunks_dir = cache_dir.join(chunk::CHUNKS_DIR);
    let chunks = chunk::read_all(&chunks_dir, &key)?;
    let mut known = HashMap::new();
    let mut known_failed = HashMap::new();
    let mut spatial = SpatialSources::default();
    {
        let wanted: HashSet<&ImageIdentity> = identities
            .iter()
            .filter_map(|(_, id)| id.as_ref().ok())
            .collect();
        absorb_final(
            cache_dir,
            &key,
            &wanted,
            &mut known,
            &mut known_failed,
            &mut spatial,
        );
        chunk::absorb(&chunks, &wanted, &mut known, &mut known_failed);
        spatial.add_chunks(&chunks);
    }

    // Failures by corpus position, so the files and the report list them in corpus order.
    let mut failed: Vec<(usize, String, String)> = Vec::new();
    let mut unreadable: Vec<(usize, ImageIdentity, String)> = Vec::new();
    let mut todo: Vec<(usize, ImageIdentity)> = Vec::new();
    let mut present: Vec<(usize, ImageIdentity)> = Vec::new();
    // With --spatial, an image is done only when its spatial row is somewhere too.
    let done = |id: &ImageIdentity, spatial: &SpatialSources| {
        known.contains_key(id) && (!opts.spatial || spatial.at.contains_key(id))
    };
    for (i, id) in identities {
        match id {
            Ok(id) if done(&id, &spatial) => present.push((i, id)),
            Ok(id) if known_failed.contains_key(&id) => {
                let error = known_failed[&id].clone();
                failed.push((i, id.file.clone(), error.clone()));
                unreadable.push((i, id, error));
            }
            Ok(id) => todo.push((i, id)),
            Err(e) => failed.push((i, corpus.images[i].file.clone(), e.to_string())),
        }
    }
    summary.reused = present.len();

    let mut chunks_written = 0;
    if !todo.is_empty() {
        let trunk =
            ResNetTrunk::load(backbone, opts.arch, device)?.with_precision(opts.precision)?;
        let started = std::time::Instant::now();
        let computed = compute_missing(
            corpus,
            &trunk,
            &key,
            &chunks_dir,
            &todo,
            opts,
            device,
            progress,
        )?;
        summary.computed = computed.rows.len();
        summary.compute_seconds = started.elapsed().as_secs_f64();
        chunks_written = computed.chunks;
        for (id, row) in computed.rows {
            known.insert(id, row);
        }
        if computed.grid.is_some() {
            spatial.grid = computed.grid;
        }
        spatial.at.extend(computed.spatial);
        for (i, id, error) in computed.unreadable {
            failed.push((i, id.file.clone(), error.clone()));
            unreadable.push((i, id, error));
        }
        present.extend(todo.into_iter().filter(|(_, id)| known.contains_key(id)));
        present.sort_by_key(|(i, _)| *i);
    }
    failed.sort_by_key(|(i, _, _)| *i);
    unreadable.sort_by_key(|(i, _, _)| *i);
    summary.failed = failed.into_iter().map(|(_, f, e)| (f, e)).collect();
    if shard.is_some() {
        // A shard stops at its chunks: the merge is a separate, unsharded run.
        return Ok(summary);
    }

    // Assemble the final cache in corpus order.
    let dim = known.values().next().map(Vec::len).unwrap_or(0);
    let mut rows = Vec::with_capacity(present.len() * dim);
    for (_, id) in &present {
        rows.extend_from_slice(&known[id]);
    }
    let images: Vec<ImageIdentity> = present.into_iter().map(|(_, id)| id).collect();
    let names: Vec<&str> = images.iter().map(|i| i.file.as_str()).collect();
    save_features(
        &cache_dir.join(FEATURES_FILE),
        &rows,
        images.len(),
        dim,
        opts.half,
    )?;
    // Without --spatial, a spatial file is carried over only while it can stay whole.
    let keep_spatial = opts.spatial
        || (spatial.final_file.is_some() && images.iter().all(|id| spatial.at.contains_key(id)));
    let spatial_grid = if keep_spatial && !images.is_empty() {
        Some(assemble_spatial(cache_dir, &images, &spatial, dim)?)
    } else {
        None
    };
    let had_spatial = spatial.final_file.take().is_some();
    fsutil::write_json_atomic(&cache_dir.join(IMAGES_FILE), &names)?;
    fsutil::write_json_atomic(
        &cache_dir.join(INDEX_FILE),
        &CacheIndex {
            key: key.clone(),
            dim,
            images,
            unreadable: unreadable.into_iter().map(|(_, id, e)| (id, e)).collect(),
            spatial_grid,
        },
    )?;
    if spatial_grid.is_none() && cache_dir.join(SPATIAL_FILE).exists() {
        let _ = std::fs::remove_file(cache_dir.join(SPATIAL_FILE));
        if had_spatial {
            progress.log(
                Level::Warn,
                "features: spatial.safetensors removed (images without spatial features were \
                 added); rerun with --spatial to rebuild it",
            );
        }
    }
    summary.chunks_merged = chunks.len() + chunks_written;
    // Everything the chunks held is in the standard files now. Each chunk is removed by name (a
    // shard attempt still running may be writing into the folder); a chunk committed after this
    // listing holds images the merge already has and is merged, harmlessly, next time.
    if let Ok(now) = chunk::read_all(&chunks_dir, &key) {
        for c in &now {
            c.remove();
        }
    }
    let _ = std::fs::remove_dir(&chunks_dir);
    let _ = std::fs::remove_dir_all(cache_dir.join(LEGACY_PARTIAL_DIR));
    if summary.chunks_merged > 0 {
        progress.log(
            Level::Info,
            &format!(
                "features: merged {} chunks into {}",
                summary.chunks_merged,
                cache_dir.display()
            ),
        );
    }
    Ok(summary)
}

/// What [`compute_missing`] produced: new rows, the images that failed to decode (with their
/// corpus position), and how many chunks were committed.
struct Computed {
    rows: Vec<(ImageIdentity, Vec<f32>)>,
    /// With `--spatial`: where each computed row's spatial row went, and the grid.
    spatial: Vec<(ImageIdentity, SpatialSource)>,
    grid: Option<[usize; 2]>,
    unreadable: Vec<(usize, ImageIdentity, String)>,
    chunks: usize,
}

/// Runs the trunk over `todo`, decoding the next batch on other threads while the network runs,
/// and commits a chunk every `opts.chunk_images` images handled.
#[allow(clippy::too_many_arguments)]
fn compute_missing(
    corpus: &CaptionCorpus,
    trunk: &ResNetTrunk,
    key: &CacheKey,
    chunks_dir: &Path,
    todo: &[(usize, ImageIdentity)],
    opts: &ExtractOptions,
    device: &Device,
    progress: &dyn Progress,
) -> Result<Computed> {
    std::fs::create_dir_all(chunks_dir).map_err(|e| Error::io(chunks_dir, e))?;
    let shard = opts.shard.map_or(Shard::ALL, |(s, _)| s);
    let task = progress.task("features", Some(todo.len() as u64), Unit::Images);
    let batch_size = opts.batch_size.max(1);
    let dim = trunk.feature_dim();
    let side = opts.image_size;

    type Item = (usize, ImageIdentity, Result<Vec<f32>>);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Item>>(2);
    let batches: Vec<Vec<(usize, ImageIdentity, PathBuf)>> = todo
        .chunks(batch_size)
        .map(|c| {
            c.iter()
                .map(|(i, id)| (*i, id.clone(), corpus.images[*i].path.clone()))
                .collect()
        })
        .collect();

    let mut out = Computed {
        rows: Vec::with_capacity(todo.len()),
        spatial: Vec::new(),
        grid: None,
        unreadable: Vec::new(),
        chunks: 0,
    };
    // The chunk being filled: rows (and their spatial rows, f16 bytes), and the images of the
    // same stretch that failed.
    let mut rows: Vec<(ImageIdentity, Vec<f32>)> = Vec::new();
    let mut spatial_rows: Vec<Vec<u8>> = Vec::new();
    let mut bad: Vec<(ImageIdentity, String)> = Vec::new();
    let commit = |out: &mut Computed,
                  rows: &mut Vec<(ImageIdentity, Vec<f32>)>,
                  spatial_rows: &mut Vec<Vec<u8>>,
                  bad: &mut Vec<(ImageIdentity, String)>|
     -> Result<()> {
        let sp = out
            .grid
            .filter(|_| opts.spatial)
            .map(|grid| chunk::SpatialRows {
                grid,
                rows: spatial_rows,
            });
        let written = chunk::write(chunks_dir, shard, key, dim, rows, sp, bad)?;
        if let (Some((rows_path, sha256)), Some([h, w]), true) = (written, out.grid, opts.spatial) {
            let file = chunk::SpatialChunkFile {
                rows_path,
                sha256,
                shape: [rows.len(), h * w, dim],
            };
            for (r, (id, _)) in rows.iter().enumerate() {
                out.spatial
                    .push((id.clone(), SpatialSource::Chunk(file.clone(), r)));
            }
        }
        out.chunks += 1;
        out.rows.append(rows);
        spatial_rows.clear();
        bad.clear();
        Ok(())
    };
    let chunk_images = opts.chunk_images.max(1);
    std::thread::scope(|s| -> Result<()> {
        s.spawn(move || {
            for batch in batches {
                let paths: Vec<PathBuf> = batch.iter().map(|(_, _, p)| p.clone()).collect();
                let pixels = preprocess_batch_sized(&paths, side);
                let items = batch
                    .into_iter()
                    .zip(pixels)
                    .map(|((i, id, _), px)| (i, id, px))
                    .collect();
                if tx.send(items).is_err() {
                    return;
                }
            }
        });
        for items in rx {
            let handled = items.len() as u64;
            let mut ids = Vec::new();
            let mut data = Vec::new();
            for (i, id, px) in items {
                match px {
                    Ok(px) => {
                        ids.push(id);
                        data.extend_from_slice(&px);
                    }
                    Err(e) => {
                        bad.push((id.clone(), e.to_string()));
                        out.unreadable.push((i, id, e.to_string()));
                    }
                }
            }
            if !ids.is_empty() {
                let x = Tensor::from_vec(data, (ids.len(), 3, side, side), device)?;
                let feats = if opts.spatial {
                    // The pooled rows as `ResNetTrunk::forward` computes them, bit for bit.
                    let map = trunk.forward_map(&x)?;
                    let (b, h, w, d) = map.dims4()?;
                    let map = map.reshape((b, h * w, d))?;
                    out.grid = Some([h, w]);
                    let cells = map.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
                    let cells = cells.flatten_all()?.to_vec1::<f32>()?;
                    spatial_rows.extend(cells.chunks(h * w * d).map(spatial::f16_bytes));
                    map.mean(1)?
                } else {
                    trunk.forward(&x)?
                };
                let feats = feats.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
                let feats = feats.to_vec2::<f32>()?;
                for (id, row) in ids.into_iter().zip(feats) {
                    let row = if opts.half { round_half(row) } else { row };
                    rows.push((id, row));
                }
            }
            // Failures count toward the chunk like rows, and the chunk records them: a run killed
            // later decodes neither again.
            if rows.len() + bad.len() >= chunk_images {
                commit(&mut out, &mut rows, &mut spatial_rows, &mut bad)?;
            }
            task.advance(handled);
        }
        Ok(())
    })?;
    if !rows.is_empty() || !bad.is_empty() {
        commit(&mut out, &mut rows, &mut spatial_rows, &mut bad)?;
    }
    task.finish();
    Ok(out)
}

fn round_half(row: Vec<f32>) -> Vec<f32> {
    row.into_iter()
        .map(|v| half::f16::from_f32(v).to_f32())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synth::{generate, SynthOptions};
    use crate::data::LoadOptions;
    use crate::model::resnet::init::random_state_dict;
    use crate::model::weights::save_safetensors;
    use crate::progress::{Silent, Task};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;

    /// A progress whose task panics once `at` images are done: a run killed right after its
    /// last batch, before the merge.
    struct KillAt(u64, AtomicU64);
    impl Task for KillAt {
        fn advance(&self, n: u64) {
            if self.1.fetch_add(n, Ordering::SeqCst) + n >= self.0 {
                panic!("killed after {} images", self.0);
            }
        }
        fn set_position(&self, _: u64) {}
        fn set_message(&self, _: &str) {}
        fn finish(&self) {}
    }
    struct Killer(u64);
    impl Progress for Killer {
        fn task(&self, _: &str, _: Option<u64>, _: Unit) -> Box<dyn Task> {
            Box::new(KillAt(self.0, AtomicU64::new(0)))
        }
        fn log(&self, _: Level, _: &str) {}
    }

    /// Records the totals of the tasks started: the images a run decodes.
    #[derive(Default)]
    struct Totals(Mutex<Vec<Option<u64>>>);
    impl Progress for Totals {
        fn task(&self, _: &str, total: Option<u64>, _: Unit) -> Box<dyn Task> {
            self.0.lock().unwrap().push(total);
            Box::new(Silent)
        }
        fn log(&self, _: Level, _: &str) {}
    }

    /// Issue #16: chunks were committed only when they had enough rows, so a stretch of
    /// unreadable images was recorded nowhere until the final merge, and after a kill those
    /// images were decoded again.
    #[test]
    fn a_killed_run_does_not_decode_its_unreadable_images_again() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        generate(
            &data,
            &SynthOptions {
                images: 10,
                seed: 0,
                force: false,
            },
        )
        .unwrap();
        let corpus = CaptionCorpus::load(&data, &LoadOptions::default()).unwrap();
        for rec in &corpus.images[4..] {
            std::fs::write(&rec.path, b"not an image").unwrap();
        }
        let backbone = dir.path().join("r18.safetensors");
        save_safetensors(&backbone, &random_state_dict(Arch::ResNet18, 0).unwrap()).unwrap();
        let cache = dir.path().join("cache");
        let opts = ExtractOptions {
            arch: Arch::ResNet18,
            batch_size: 2,
            half: false,
            precision: Precision::F32,
            chunk_images: 2,
            image_size: 32,
            shard: None,
            spatial: false,
        };
        let killed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            extract(&corpus, &backbone, &cache, &opts, &Device::Cpu, &Killer(10))
        }));
        assert!(killed.is_err(), "the run was not killed");
        assert!(
            !cache.join(FEATURES_FILE).exists(),
            "merged before the kill"
        );

        let totals = Totals::default();
        let summary = extract(&corpus, &backbone, &cache, &opts, &Device::Cpu, &totals).unwrap();
        assert_eq!((summary.reused, summary.computed), (4, 0));
        let failed: Vec<&str> = summary.failed.iter().map(|(f, _)| f.as_str()).collect();
        let expected: Vec<&str> = corpus.images[4..].iter().map(|r| r.file.as_str()).collect();
        assert_eq!(failed, expected, "failures in corpus order");
        assert!(
            totals.0.lock().unwrap().is_empty(),
            "images decoded again after the kill: {:?}",
            totals.0.lock().unwrap()
        );
    }
}
