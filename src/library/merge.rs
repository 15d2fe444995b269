//! Folding shard libraries into one: each `index --shard I/N` run writes its own database, and
//! [`merge_shards`] copies their models and images into the library (by path; a shard's row
//! replaces the library's row for the same path), so N shards merged equal one unsharded run.

use super::schema::{db_error, open_for_writing, APPLICATION_ID, SCHEMA_VERSION};
use crate::progress::{Level, Progress};
use crate::{Error, Result};
use rusqlite::{params, TransactionBehavior};
use std::path::{Path, PathBuf};

/// What a merge did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MergeSummary {
    /// Shard databases merged.
    pub shards: usize,
    /// Image rows copied into the library.
    pub images: usize,
}

/// Merges the shard libraries `shards` into the library `db` (created if needed), each in one
/// transaction: a shard is merged whole or not at all.
pub fn merge_shards(
    db: &Path,
    shards: &[PathBuf],
    progress: &dyn Progress,
) -> Result<MergeSummary> {
    let mut conn = open_for_writing(db)?;
    let at = |e| db_error(db, e);
    let mut summary = MergeSummary::default();
    let target = db.canonicalize().map_err(|e| Error::io(db, e))?;
    for shard in shards {
        if !shard.is_file() {
            return Err(Error::Database {
                path: shard.clone(),
                msg: "no such shard library".into(),
            });
        }
        if shard.canonicalize().map_err(|e| Error::io(shard, e))? == target {
            return Err(Error::Invalid(format!(
                "{}: a library cannot be merged into itself",
                shard.display()
            )));
        }
        let shard_str = shard
            .to_str()
            .ok_or_else(|| Error::Invalid(format!("{}: the path is not UTF-8", shard.display())))?;
        conn.execute("ATTACH DATABASE ?1 AS shard", [shard_str])
            .map_err(|e| db_error(shard, e))?;
        let result = (|| -> Result<usize> {
            let on_shard = |e| db_error(shard, e);
            let app: i64 = conn
                .query_row("PRAGMA shard.application_id", [], |r| r.get(0))
                .map_err(on_shard)?;
            let version: i64 = conn
                .query_row("PRAGMA shard.user_version", [], |r| r.get(0))
                .map_err(on_shard)?;
            if app != APPLICATION_ID || version != SCHEMA_VERSION {
                return Err(Error::Database {
                    path: shard.clone(),
                    msg: format!(
                        "not a captioner library of schema version {SCHEMA_VERSION} \
                         (application id {app:#x}, version {version})"
                    ),
                });
            }
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(at)?;
            tx.execute(
                "INSERT OR IGNORE INTO main.models SELECT * FROM shard.models",
                [],
            )
            .map_err(at)?;
            let n = tx
                .execute(
                    "INSERT INTO main.images (path, root, rel, sha256, size, mtime_ns, width,
                         height, caption, alternatives, error, model, captioned_at)
                     SELECT path, root, rel, sha256, size, mtime_ns, width, height, caption,
                         alternatives, error, model, captioned_at
                     FROM shard.images WHERE true
                     ON CONFLICT(path) DO UPDATE SET
                         root = excluded.root, rel = excluded.rel, sha256 = excluded.sha256,
                         size = excluded.size, mtime_ns = excluded.mtime_ns,
                         width = excluded.width, height = excluded.height,
                         caption = excluded.caption, alternatives = excluded.alternatives,
                         error = excluded.error, model = excluded.model,
                         captioned_at = excluded.captioned_at",
                    params![],
                )
                .map_err(at)?;
            tx.commit().map_err(at)?;
            Ok(n)
        })();
        let detached = conn.execute("DETACH DATABASE shard", []);
        let n = result?;
        detached.map_err(at)?;
        progress.log(
            Level::Info,
            &format!("merged {n} images from {}", shard.display()),
        );
        summary.shards += 1;
        summary.images += n;
    }
    Ok(summary)
}
