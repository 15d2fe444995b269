//! `captioner fetch`: downloads the pretrained ResNet-50 weights, Flickr8k and Karpathy's splits
//! from their public locations (or a mirror), resumable and checksum-verified, and unpacks the
//! archives into the layout `train --data DIR` reads.
//!
//! An archive is extracted into a hidden temporary folder of DIR, moved into place, and only then
//! marked done by `DIR/.<archive>.extracted`; a rerun with that marker skips download and
//! extraction. The downloaded zips stay in DIR and may be deleted once extracted.

mod catalog;
mod download;
mod extract;
mod layout;

pub use catalog::{file_name_of, Asset, Checksum, Remote, Unpack};
pub use download::{download, hash_file, part_path, Downloaded};
pub use extract::extract_zip;

use crate::progress::Progress;
use crate::{fsutil, Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Settings for [`fetch`].
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    /// Base URL replacing scheme, host and path of every public URL; the file name is kept:
    /// `http://127.0.0.1:8080/files` fetches `http://127.0.0.1:8080/files/resnet50-11ad3fa6.pth`.
    pub mirror: Option<String>,
    /// Checksums to use instead of the catalog's, by file name. For tests that serve small
    /// stand-in files; a real mirror serves the real files and needs none.
    pub checksum_overrides: BTreeMap<String, Checksum>,
}

/// What [`fetch`] did, one entry per file of the asset.
#[derive(Debug, Clone)]
pub struct FetchReport {
    /// The asset fetched.
    pub asset: Asset,
    /// Its files, in catalog order.
    pub files: Vec<FileReport>,
}

/// What happened to one downloaded file.
#[derive(Debug, Clone)]
pub struct FileReport {
    /// Where the file was fetched from.
    pub url: String,
    /// Where it is saved.
    pub path: PathBuf,
    /// Whether it was downloaded or already there.
    pub download: Downloaded,
    /// For archives: the names placed in DIR (empty when the marker said it was done already).
    pub extracted: Vec<String>,
}

/// The marker written once an archive is fully extracted.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Extracted {
    archive: String,
    checksum: String,
    entries: Vec<String>,
}

/// Downloads (and unpacks) `asset` into `dir`, each download a task of `progress`.
pub fn fetch(
    asset: Asset,
    dir: &Path,
    opts: &FetchOptions,
    progress: &dyn Progress,
) -> Result<FetchReport> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut files = Vec::new();
    for remote in asset.remotes() {
        let name = remote.file_name();
        let url = remote.url_with_mirror(opts.mirror.as_deref());
        let checksum = opts
            .checksum_overrides
            .get(name)
            .cloned()
            .unwrap_or_else(|| remote.checksum.clone());
        let path = dir.join(name);
        let report = match remote.unpack {
            None => FileReport {
                download: download(&url, &path, &checksum, progress)?,
                url,
                path,
                extracted: Vec::new(),
            },
            Some(unpack) => fetch_archive(url, path, &checksum, unpack, dir, progress)?,
        };
        files.push(report);
    }
    Ok(FetchReport { asset, files })
}

fn fetch_archive(
    url: String,
    path: PathBuf,
    checksum: &Checksum,
    unpack: Unpack,
    dir: &Path,
    progress: &dyn Progress,
) -> Result<FileReport> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let marker = dir.join(format!(".{name}.extracted"));
    // An unreadable or stale marker only means: extract again.
    if let Ok(done) = fsutil::read_json::<Extracted>(&marker) {
        let all_there = done.entries.iter().all(|e| dir.join(e).exists());
        if done.checksum == checksum.to_string() && all_there {
            return Ok(FileReport {
                url,
                path,
                download: Downloaded::AlreadyThere,
                extracted: Vec::new(),
            });
        }
    }
    let download = download(&url, &path, checksum, progress)?;
    let staging = dir.join(format!(".{name}.extracting"));
    layout::remove_any(&staging)?;
    let placed = extract_zip(&path, &staging, unpack.only)
        .and_then(|_| layout::install(&staging, dir, unpack.expect));
    layout::remove_any(&staging)?;
    let entries = placed?;
    fsutil::write_json_atomic(
        &marker,
        &Extracted {
            archive: name.into_owned(),
            checksum: checksum.to_string(),
            entries: entries.clone(),
        },
    )?;
    Ok(FileReport {
        url,
        path,
        download,
        extracted: entries,
    })
}
