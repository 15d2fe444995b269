//! One resumable, checksum-verified HTTP download: bytes go to `<dest>.part`, a rerun asks for
//! the rest with `Range`, and `<dest>` appears only by renaming a `.part` whose digest matched.

use super::catalog::Checksum;
use crate::progress::{Progress, Task, Unit};
use crate::{Error, Result};
use md5::Md5;
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How a download went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Downloaded {
    /// `dest` already existed with the right checksum; nothing was requested.
    AlreadyThere,
    /// The file was (partly) fetched: `bytes` over the network, continuing at `resumed_from`.
    Fetched {
        /// Bytes received over the network by this call.
        bytes: u64,
        /// The offset the download continued at (0 when it started from scratch).
        resumed_from: u64,
    },
}

/// A streaming digest of either kind.
enum Hasher {
    Sha256(Sha256),
    Md5(Md5),
}

impl Hasher {
    fn new(kind: &Checksum) -> Self {
        match kind {
            Checksum::Sha256(_) => Hasher::Sha256(Sha256::new()),
            Checksum::Md5(_) => Hasher::Md5(Md5::new()),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Md5(h) => h.update(bytes),
        }
    }

    fn finish(self) -> String {
        match self {
            Hasher::Sha256(h) => hex::encode(h.finalize()),
            Hasher::Md5(h) => hex::encode(h.finalize()),
        }
    }
}

/// Hashes the file at `path` with the algorithm of `kind`; returns the hex digest.
pub fn hash_file(path: &Path, kind: &Checksum) -> Result<String> {
    let mut h = Hasher::new(kind);
    feed_file(path, &mut h)?;
    Ok(h.finish())
}

fn feed_file(path: &Path, h: &mut Hasher) -> Result<u64> {
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            return Ok(total);
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
}

/// The `.part` file a download of `dest` writes into.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

/// Downloads `url` to `dest`, resuming a previous `.part`, and verifies `expected` over the whole
/// file. A complete `dest` with the right checksum is left alone ([`Downloaded::AlreadyThere`]);
/// one with another checksum is downloaded again and replaced. The bytes received are reported as a
/// task of `progress` named after the file.
pub fn download(
    url: &str,
    dest: &Path,
    expected: &Checksum,
    progress: &dyn Progress,
) -> Result<Downloaded> {
    if dest.is_file() && hash_file(dest, expected)? == expected.hex() {
        return Ok(Downloaded::AlreadyThere);
    }
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let part = part_path(dest);
    let agent = agent_for(url);
    // At most one retry from zero: after a 416 on a `.part` that turned out wrong, or a 206 that
    // does not continue where the `.part` ends.
    for _attempt in 0..2 {
        match fetch_into_part(&agent, url, &part, dest, expected, progress)? {
            PartState::Complete {
                bytes,
                resumed_from,
            } => {
                // The digest was verified: the rename is the one step that makes `dest` visible.
                std::fs::rename(&part, dest).map_err(|e| Error::io(dest, e))?;
                return Ok(Downloaded::Fetched {
                    bytes,
                    resumed_from,
                });
            }
            PartState::Restart => remove_if_exists(&part)?,
        }
    }
    Err(Error::Download {
        url: url.to_string(),
        msg: "the server does not answer Range requests consistently".into(),
    })
}

enum PartState {
    Complete { bytes: u64, resumed_from: u64 },
    Restart,
}

fn fetch_into_part(
    agent: &ureq::Agent,
    url: &str,
    part: &Path,
    dest: &Path,
    expected: &Checksum,
    progress: &dyn Progress,
) -> Result<PartState> {
    let dl_err = |msg: String| Error::Download {
        url: url.to_string(),
        msg,
    };
    let mut hasher = Hasher::new(expected);
    // Hash the prefix already on disk now, so the digest covers the whole file in one pass.
    let have = if part.is_file() {
        feed_file(part, &mut hasher)?
    } else {
        0
    };
    let mut request = agent.get(url);
    if have > 0 {
        request = request.header("Range", format!("bytes={have}-"));
    }
    let response = request
        .call()
        .map_err(|e| dl_err(format!("request failed: {e}")))?;
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let content_range = header("content-range");
    let (start, total) = match status {
        206 if have > 0 => match content_range.as_deref().and_then(parse_content_range) {
            Some((start, total)) if start == have => (have, total),
            _ => return Ok(PartState::Restart),
        },
        // The server ignored Range (or there was nothing to resume): start over.
        200 => {
            hasher = Hasher::new(expected);
            let total = header("content-length").and_then(|v| v.parse().ok());
            (0, total)
        }
        // Nothing left to send: the `.part` is complete, or longer than the file (then restart).
        416 if have > 0 => {
            return if hasher.finish() == expected.hex() {
                Ok(PartState::Complete {
                    bytes: 0,
                    resumed_from: have,
                })
            } else {
                Ok(PartState::Restart)
            };
        }
        _ => {
            let reason = response.status().canonical_reason().unwrap_or("");
            return Err(dl_err(
                format!("HTTP {status} {reason}").trim_end().to_string(),
            ));
        }
    };

    let mut file = if start > 0 {
        OpenOptions::new().append(true).open(part)
    } else {
        File::create(part)
    }
    .map_err(|e| Error::io(part, e))?;
    let task = download_task(progress, part, total, start);
    let mut body = response.into_body().into_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut written = start;
    let cut = |written: u64, why: String| {
        let of = total.map(|t| format!(" of {t}")).unwrap_or_default();
        dl_err(format!(
            "connection cut after {written}{of} bytes ({why}); {} is kept, run again to resume",
            part.display()
        ))
    };
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                file.flush().map_err(|e| Error::io(part, e))?;
                return Err(cut(written, e.to_string()));
            }
        };
        file.write_all(&buf[..n]).map_err(|e| Error::io(part, e))?;
        hasher.update(&buf[..n]);
        written += n as u64;
        task.set_position(written);
    }
    file.sync_all().map_err(|e| Error::io(part, e))?;
    task.finish();
    if let Some(t) = total.filter(|&t| t != written) {
        return Err(cut(written, format!("expected {t} bytes")));
    }
    let actual = hasher.finish();
    if actual != expected.hex() {
        remove_if_exists(part)?;
        return Err(dl_err(format!(
            "checksum mismatch for {}: expected {expected}, got {}:{actual}; the download was removed",
            dest.display(),
            expected.algorithm()
        )));
    }
    Ok(PartState::Complete {
        bytes: written - start,
        resumed_from: start,
    })
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}

/// Parses `bytes START-END/TOTAL` (TOTAL may be `*`).
fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((start.trim().parse().ok()?, total))
}

fn agent_for(url: &str) -> ureq::Agent {
    let mut config = ureq::Agent::config_builder()
        // Statuses are handled here, so that 206/416 are not errors and 404 names the URL.
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .user_agent(concat!("captioner/", env!("CARGO_PKG_VERSION")));
    // A loopback mirror never goes through an HTTP(S)_PROXY from the environment.
    let loopback = url
        .parse::<ureq::http::Uri>()
        .ok()
        .and_then(|u| u.host().map(str::to_string))
        .is_some_and(|h| h == "localhost" || h == "[::1]" || h.starts_with("127."));
    if loopback {
        config = config.proxy(None);
    }
    config.build().into()
}

/// The task of one download, named after the file, starting at the bytes already there.
fn download_task(
    progress: &dyn Progress,
    part: &Path,
    total: Option<u64>,
    start: u64,
) -> Box<dyn Task> {
    let name = part.file_name().unwrap_or_default().to_string_lossy();
    let task = progress.task(name.trim_end_matches(".part"), total, Unit::Bytes);
    task.set_position(start);
    task
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parses() {
        assert_eq!(
            parse_content_range("bytes 100-199/200"),
            Some((100, Some(200)))
        );
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(parse_content_range("items 1-2/3"), None);
    }

    #[test]
    fn digests_match_known_values() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("abc");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(
            hash_file(&p, &Checksum::md5("")).unwrap(),
            "900150983cd24fb0d6963f7d28e17f72"
        );
        assert_eq!(
            hash_file(&p, &Checksum::sha256("")).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
