//! A model's identity in the library: the sha256 of what makes its captions, computed without
//! loading it, so a run over an unchanged library never loads the model at all.

use crate::run::{RunConfig, RunDir};
use crate::{Error, Result};
use sha2::{Digest, Sha256};
use std::path::Path;

/// Which model captioned an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelId {
    /// sha256, hex: of the file for an exported model; for a run directory, of its
    /// `best.safetensors` and `vocab.json` bytes and its backbone's sha256 (from `config.json`).
    pub sha256: String,
    /// The file or directory name, for people reading the library.
    pub name: String,
}

fn hash_file(hasher: &mut Sha256, path: &Path) -> Result<()> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    std::io::copy(&mut f, hasher).map_err(|e| Error::io(path, e))?;
    Ok(())
}

impl ModelId {
    /// The identity of `model`: a run directory or a file written by `captioner export`.
    pub fn of(model: &Path) -> Result<ModelId> {
        let mut hasher = Sha256::new();
        if model.is_dir() {
            let files = RunDir::new(model);
            let config = RunConfig::load(model)?;
            hasher.update(b"captioner run\n");
            hash_file(&mut hasher, &files.best())?;
            hash_file(&mut hasher, &files.vocab())?;
            hasher.update(config.backbone_sha256.as_bytes());
        } else {
            hash_file(&mut hasher, model)?;
        }
        let name = model
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| model.display().to_string());
        Ok(ModelId {
            sha256: hex::encode(hasher.finalize()),
            name,
        })
    }
}
