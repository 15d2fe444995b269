//! The feature cache: the frozen ResNet trunk's pooled feature of every image, computed once and kept on
//! disk, keyed by backbone sha256 + architecture + preprocessing version + image content, so a stale entry
//! is never used. Extraction writes shards as it goes, so a killed run continues where it stopped.

use crate::data::CaptionCorpus;
use crate::model::resnet::{Arch, ResNetTrunk};
use crate::model::weights::sha256_file;
use crate::progress::{Progress, Unit};
use crate::vision::preprocess::{preprocess_batch_sized, preprocess_version};
use crate::{fsutil, Error, Result};
use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The feature matrix file: tensor `features`, shape [N, D].
pub const FEATURES_FILE: &str = "features.safetensors";
/// The N image file names, in the rows' order.
pub const IMAGES_FILE: &str = "images.json";
/// The cache key and the identity of every row.
pub const INDEX_FILE: &str = "cache.json";
/// Shards written during extraction; merged into the final files at the end.
const PARTIAL_DIR: &str = "partial";
/// Images per shard by default: a killed run loses at most this many images' work.
pub const SHARD_IMAGES: usize = 128;

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
    /// Images per shard written during extraction (see [`SHARD_IMAGES`]).
    pub shard_images: usize,
    /// Side of the square images are resized to ([`crate::vision::IMAGE_SIZE`] = 224 as the seed).
    pub image_size: usize,
}

/// What [`extract`] did.
#[derive(Debug, Default)]
pub struct ExtractSummary {
    /// Images in the corpus.
    pub images: usize,
    /// Features found in the cache (or in shards of an interrupted run).
    pub reused: usize,
    /// Features computed now.
    pub computed: usize,
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
        let rows = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        Ok(FeatureCache {
            key: index.key,
            names,
            features,
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

/// sha256 of an image's bytes, hex.
fn image_sha256(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// Rows already computed under `key`, from the final cache and from shards of an interrupted run,
/// and the images known to be undecodable under `key`.
type KnownRows = (
    HashMap<ImageIdentity, Vec<f32>>,
    HashMap<ImageIdentity, String>,
);

fn known_rows(dir: &Path, key: &CacheKey) -> KnownRows {
    let mut known = HashMap::new();
    let mut failed = HashMap::new();
    let mut absorb = |index_path: PathBuf, features_path: PathBuf| {
        let Ok(index) = fsutil::read_json::<CacheIndex>(&index_path) else {
            return;
        };
        if &index.key != key {
            return;
        }
        failed.extend(index.unreadable);
        let Ok(t) = load_features(&features_path) else {
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
    };
    absorb(dir.join(INDEX_FILE), dir.join(FEATURES_FILE));
    if let Ok(entries) = std::fs::read_dir(dir.join(PARTIAL_DIR)) {
        let mut shards: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        shards.sort();
        for index_path in shards {
            let features_path = index_path.with_extension("safetensors");
            absorb(index_path, features_path);
        }
    }
    (known, failed)
}

/// Computes the feature of every image of `corpus` into `cache_dir`, reusing every row already there for the
/// same backbone, architecture, preprocessing and image bytes. Unreadable images are listed and skipped.
/// The images computed are reported as one task of `progress`.
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
    };
    let mut summary = ExtractSummary {
        images: corpus.images.len(),
        ..Default::default()
    };

    // Identify every image by content; unreadable files are reported and left out.
    let identities: Vec<(usize, Result<ImageIdentity>)> = corpus
        .images
        .par_iter()
        .enumerate()
        .map(|(i, rec)| {
            let id = image_sha256(&rec.path).map(|sha256| ImageIdentity {
                file: rec.file.clone(),
                sha256,
            });
            (i, id)
        })
        .collect();

    let (mut known, known_failed) = known_rows(cache_dir, &key);
    let mut todo: Vec<(usize, ImageIdentity)> = Vec::new();
    let mut present: Vec<(usize, ImageIdentity)> = Vec::new();
    let mut unreadable: Vec<(ImageIdentity, String)> = Vec::new();
    for (i, id) in identities {
        match id {
            Ok(id) if known.contains_key(&id) => present.push((i, id)),
            Ok(id) if known_failed.contains_key(&id) => {
                let error = known_failed[&id].clone();
                summary.failed.push((id.file.clone(), error.clone()));
                unreadable.push((id, error));
            }
            Ok(id) => todo.push((i, id)),
            Err(e) => summary
                .failed
                .push((corpus.images[i].file.clone(), e.to_string())),
        }
    }
    summary.reused = present.len();

    if !todo.is_empty() {
        let trunk = ResNetTrunk::load(backbone, opts.arch, device)?;
        let computed = compute_missing(
            corpus,
            &trunk,
            &key,
            cache_dir,
            &todo,
            opts,
            device,
            &mut summary,
            progress,
        )?;
        for (id, row) in computed.rows {
            known.insert(id, row);
        }
        unreadable.extend(computed.unreadable);
        present.extend(todo.into_iter().filter(|(_, id)| known.contains_key(id)));
        present.sort_by_key(|(i, _)| *i);
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
    fsutil::write_json_atomic(&cache_dir.join(IMAGES_FILE), &names)?;
    fsutil::write_json_atomic(
        &cache_dir.join(INDEX_FILE),
        &CacheIndex {
            key,
            dim,
            images,
            unreadable,
        },
    )?;
    let _ = std::fs::remove_dir_all(cache_dir.join(PARTIAL_DIR));
    Ok(summary)
}

/// What [`compute_missing`] produced: new rows, and images that failed to decode.
struct Computed {
    rows: Vec<(ImageIdentity, Vec<f32>)>,
    unreadable: Vec<(ImageIdentity, String)>,
}

/// Runs the trunk over `todo`, decoding the next batch on other threads while the network runs,
/// and writes a shard every `opts.shard_images` images.
#[allow(clippy::too_many_arguments)]
fn compute_missing(
    corpus: &CaptionCorpus,
    trunk: &ResNetTrunk,
    key: &CacheKey,
    cache_dir: &Path,
    todo: &[(usize, ImageIdentity)],
    opts: &ExtractOptions,
    device: &Device,
    summary: &mut ExtractSummary,
    progress: &dyn Progress,
) -> Result<Computed> {
    let partial = cache_dir.join(PARTIAL_DIR);
    std::fs::create_dir_all(&partial).map_err(|e| Error::io(&partial, e))?;
    let task = progress.task("features", Some(todo.len() as u64), Unit::Images);
    let batch_size = opts.batch_size.max(1);
    let dim = trunk.feature_dim();
    let side = opts.image_size;

    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<(ImageIdentity, Result<Vec<f32>>)>>(2);
    let batches: Vec<Vec<(ImageIdentity, PathBuf)>> = todo
        .chunks(batch_size)
        .map(|c| {
            c.iter()
                .map(|(i, id)| (id.clone(), corpus.images[*i].path.clone()))
                .collect()
        })
        .collect();

    let mut out = Vec::with_capacity(todo.len());
    let mut shard: Vec<(ImageIdentity, Vec<f32>)> = Vec::new();
    // Every unreadable image so far: each shard's index lists them, so a run killed later does
    // not decode them again.
    let mut unreadable: Vec<(ImageIdentity, String)> = Vec::new();
    let mut shard_no = next_shard_no(&partial);
    let shard_images = opts.shard_images.max(1);
    std::thread::scope(|s| -> Result<()> {
        s.spawn(move || {
            for batch in batches {
                let paths: Vec<PathBuf> = batch.iter().map(|(_, p)| p.clone()).collect();
                let pixels = preprocess_batch_sized(&paths, side);
                let items = batch.into_iter().map(|(id, _)| id).zip(pixels).collect();
                if tx.send(items).is_err() {
                    return;
                }
            }
        });
        for items in rx {
            let handled = items.len() as u64;
            let mut ids = Vec::new();
            let mut data = Vec::new();
            for (id, px) in items {
                match px {
                    Ok(px) => {
                        ids.push(id);
                        data.extend_from_slice(&px);
                    }
                    Err(e) => {
                        summary.failed.push((id.file.clone(), e.to_string()));
                        unreadable.push((id, e.to_string()));
                    }
                }
            }
            if !ids.is_empty() {
                let x = Tensor::from_vec(data, (ids.len(), 3, side, side), device)?;
                let feats = trunk
                    .forward(&x)?
                    .to_device(&Device::Cpu)?
                    .to_dtype(DType::F32)?;
                let feats = feats.to_vec2::<f32>()?;
                for (id, row) in ids.into_iter().zip(feats) {
                    let row = if opts.half { round_half(row) } else { row };
                    shard.push((id, row));
                }
            }
            task.advance(handled);
            if shard.len() >= shard_images {
                write_shard(&partial, shard_no, key, dim, &shard, &unreadable)?;
                shard_no += 1;
                out.append(&mut shard);
            }
        }
        Ok(())
    })?;
    if !shard.is_empty() {
        write_shard(&partial, shard_no, key, dim, &shard, &unreadable)?;
        out.append(&mut shard);
    }
    task.finish();
    summary.computed = out.len();
    Ok(Computed {
        rows: out,
        unreadable,
    })
}

/// One past the highest shard number in `partial` (shards of an earlier, killed run stay valid).
fn next_shard_no(partial: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(partial) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix("shard-")?
                .split('.')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .map(|n| n + 1)
        .max()
        .unwrap_or(0)
}

fn round_half(row: Vec<f32>) -> Vec<f32> {
    row.into_iter()
        .map(|v| half::f16::from_f32(v).to_f32())
        .collect()
}

fn write_shard(
    partial: &Path,
    no: usize,
    key: &CacheKey,
    dim: usize,
    rows: &[(ImageIdentity, Vec<f32>)],
    unreadable: &[(ImageIdentity, String)],
) -> Result<()> {
    let base = partial.join(format!("shard-{no:06}"));
    let flat: Vec<f32> = rows.iter().flat_map(|(_, r)| r.iter().copied()).collect();
    save_features(
        &base.with_extension("safetensors"),
        &flat,
        rows.len(),
        dim,
        false,
    )?;
    let index = CacheIndex {
        key: key.clone(),
        dim,
        images: rows.iter().map(|(id, _)| id.clone()).collect(),
        unreadable: unreadable.to_vec(),
    };
    // The index is written last: a shard without its index is ignored on resume.
    fsutil::write_json_atomic(&base.with_extension("json"), &index)
}
