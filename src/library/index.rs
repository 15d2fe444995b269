//! An index run: every image under the given paths captioned into the library, incrementally.
//!
//! 1. Walk the paths (the same image detection as `caption`) and stat each file.
//! 2. A file whose path, size, mtime and model match its row is unchanged: nothing more is done.
//! 3. The others are hashed (sha256 of the bytes) in parallel. Same bytes as their own row: the
//!    row is touched. Same bytes as a row whose file is gone: the row moves to the new path (a
//!    rename keeps its caption and its id). Same bytes as another captioned row: its caption is
//!    copied. Otherwise the file is captioned.
//! 4. Rows of files gone from a walked folder are removed.
//! 5. The files to caption go through the model in batches; each batch's rows are committed in
//!    one transaction, so a kill loses at most the batch in flight.
//!
//! Every write is idempotent (rows are keyed by path, written with upserts, moves re-checked), so
//! two runs on one library at once both finish with the same rows; SQLite's busy timeout makes
//! each wait for the other's transaction.

use super::model_id::ModelId;
use super::schema::{db_error, open_for_writing};
use super::xmp::{sidecar_path, write_sidecar, SidecarName, XmpCaption};
use crate::captioner::{CaptionOptions, Captioner};
use crate::data::walk::{walk_images, FoundImage};
use crate::progress::{Level, Progress, Unit};
use crate::shard::Shard;
use crate::vision::header::probe_bytes;
use crate::{Error, Result};
use rayon::prelude::*;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// What captions files for an index run: the real [`Captioner`], or a stand-in in tests.
pub trait Describer: Sync {
    /// Captions `paths` in batches, handing `each(index, captions)` every image's captions, best
    /// first (the caption, then the beam's alternatives), or its error, in order.
    fn describe_each(
        &self,
        paths: &[PathBuf],
        opts: &CaptionOptions,
        each: &mut dyn FnMut(usize, Result<Vec<String>>),
    );
}

impl Describer for Captioner {
    fn describe_each(
        &self,
        paths: &[PathBuf],
        opts: &CaptionOptions,
        each: &mut dyn FnMut(usize, Result<Vec<String>>),
    ) {
        self.caption_paths_all_each(paths, opts, each);
    }
}

/// How an index run captions and what else it writes.
#[derive(Debug, Clone, Default)]
pub struct IndexOptions {
    /// Beam size, length normalisation and batch size, as `caption` takes them. The batch is also
    /// the unit of commit.
    pub caption: CaptionOptions,
    /// Write an XMP sidecar beside each captioned image, named this way.
    pub xmp: Option<SidecarName>,
    /// Index only the images of this shard (by path relative to the walked folder).
    pub shard: Option<Shard>,
}

/// What an index run did, image by image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexSummary {
    /// New images captioned, or new copies of images already in the library.
    pub added: usize,
    /// Images whose file or model changed, captioned again.
    pub updated: usize,
    /// Images found at a new path with the same bytes: the caption moved with them.
    pub moved: usize,
    /// Images left as they were (failures of unchanged files included: they are not retried).
    pub unchanged: usize,
    /// Rows of files gone from the indexed folders.
    pub removed: usize,
    /// Images (or folders) that could not be read or captioned in this run.
    pub failed: usize,
    /// XMP sidecars written (up-to-date ones are left alone).
    pub sidecars_written: usize,
    /// XMP sidecars that could not be written.
    pub sidecars_failed: usize,
    /// Whether sidecars were asked for (so the summary mentions them).
    pub xmp: bool,
}

impl fmt::Display for IndexSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "added {}, updated {}, moved {}, unchanged {}, removed {}, failed {}",
            self.added, self.updated, self.moved, self.unchanged, self.removed, self.failed
        )?;
        if self.xmp {
            write!(f, ", sidecars written {}", self.sidecars_written)?;
            if self.sidecars_failed > 0 {
                write!(f, ", sidecars failed {}", self.sidecars_failed)?;
            }
        }
        Ok(())
    }
}

/// A file found by the walk, with what the file system says about it.
#[derive(Debug, Clone)]
struct Candidate {
    path: PathBuf,
    key: String,
    root: String,
    rel: String,
    size: i64,
    mtime_ns: i64,
}

/// A row of the library as the run found it.
#[derive(Debug, Clone)]
struct Row {
    id: i64,
    sha256: Option<String>,
    size: i64,
    mtime_ns: i64,
    model: String,
    captioned: bool,
}

/// A candidate's bytes: sha256 and header size, or why they could not be read.
enum Hashed {
    Read {
        sha256: String,
        size: Option<(u32, u32)>,
    },
    Unreadable(String),
}

/// A file to caption.
struct ToCaption {
    cand: Candidate,
    sha256: String,
    size: Option<(u32, u32)>,
    replaces: bool,
}

fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i64)
}

fn path_str(path: &Path) -> Result<String> {
    path.to_str()
        .map(str::to_string)
        .ok_or_else(|| Error::Invalid(format!("{}: the path is not UTF-8", path.display())))
}

/// The walk: candidates (in this shard, each once), the folders walked (for removals), the
/// prefixes that could not be read (nothing under them is removed), and the failures.
struct Found {
    candidates: Vec<Candidate>,
    walked: Vec<String>,
    unreadable: Vec<String>,
    failed: Vec<String>,
}

fn find(paths: &[PathBuf], shard: Option<Shard>) -> Result<Found> {
    let mut found = Found {
        candidates: Vec::new(),
        walked: Vec::new(),
        unreadable: Vec::new(),
        failed: Vec::new(),
    };
    let mut seen = HashSet::new();
    for p in paths {
        let canon = p.canonicalize().map_err(|e| Error::io(p, e))?;
        let (root, images) = if canon.is_dir() {
            let walk = walk_images(&canon);
            for (bad, e) in walk.unreadable {
                found.unreadable.push(bad.to_string_lossy().into_owned());
                found.failed.push(e);
            }
            let root = path_str(&canon)?;
            found.walked.push(root.clone());
            (root, walk.images)
        } else {
            let parent = canon.parent().unwrap_or(Path::new("/"));
            let rel = canon
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let image = FoundImage {
                path: canon.clone(),
                rel,
            };
            (path_str(parent)?, vec![image])
        };
        for image in images {
            if shard.is_some_and(|s| !s.contains(&image.rel)) {
                continue;
            }
            let key = match path_str(&image.path) {
                Ok(k) => k,
                Err(e) => {
                    found.failed.push(e.to_string());
                    continue;
                }
            };
            if !seen.insert(key.clone()) {
                continue;
            }
            match std::fs::metadata(&image.path) {
                Ok(meta) => found.candidates.push(Candidate {
                    size: meta.len() as i64,
                    mtime_ns: mtime_ns(&meta),
                    path: image.path,
                    key,
                    root: root.clone(),
                    rel: image.rel,
                }),
                Err(e) => {
                    found.failed.push(Error::io(&image.path, e).to_string());
                    found.unreadable.push(key);
                }
            }
        }
    }
    Ok(found)
}

fn load_rows(conn: &Connection, db: &Path) -> Result<HashMap<String, Row>> {
    let at = |e| db_error(db, e);
    let mut stmt = conn
        .prepare("SELECT id, path, sha256, size, mtime_ns, model, caption IS NOT NULL FROM images")
        .map_err(at)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(1)?,
                Row {
                    id: r.get(0)?,
                    sha256: r.get(2)?,
                    size: r.get(3)?,
                    mtime_ns: r.get(4)?,
                    model: r.get(5)?,
                    captioned: r.get(6)?,
                },
            ))
        })
        .map_err(at)?;
    rows.collect::<rusqlite::Result<_>>().map_err(at)
}

fn hash_file(path: &Path) -> Hashed {
    match std::fs::read(path) {
        Ok(bytes) => {
            let sha256 = hex::encode(Sha256::digest(&bytes));
            let size = probe_bytes(&bytes, "image")
                .ok()
                .map(|h| (h.width, h.height));
            Hashed::Read { sha256, size }
        }
        Err(e) => Hashed::Unreadable(Error::io(path, e).to_string()),
    }
}

/// Whether `path` is `prefix` or lies under it.
fn under(path: &str, prefix: &str) -> bool {
    path == prefix
        || (path.starts_with(prefix)
            && (prefix.ends_with('/') || path.as_bytes().get(prefix.len()) == Some(&b'/')))
}

/// The upsert of one image row; `captioned_at` NULL means now.
const UPSERT: &str = "
INSERT INTO images (path, root, rel, sha256, size, mtime_ns, width, height, caption,
                    alternatives, error, model, captioned_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12,
        strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
ON CONFLICT(path) DO UPDATE SET
    root = excluded.root, rel = excluded.rel, sha256 = excluded.sha256, size = excluded.size,
    mtime_ns = excluded.mtime_ns, width = excluded.width, height = excluded.height,
    caption = excluded.caption, alternatives = excluded.alternatives, error = excluded.error,
    model = excluded.model, captioned_at = excluded.captioned_at";

/// A copy of row `?7`'s caption at a new path (same bytes elsewhere).
const COPY: &str = "
INSERT INTO images (path, root, rel, sha256, size, mtime_ns, width, height, caption,
                    alternatives, error, model, captioned_at)
SELECT ?1, ?2, ?3, sha256, ?4, ?5, width, height, caption, alternatives, error, model, captioned_at
FROM images WHERE id = ?6 AND path <> ?1
ON CONFLICT(path) DO UPDATE SET
    root = excluded.root, rel = excluded.rel, sha256 = excluded.sha256, size = excluded.size,
    mtime_ns = excluded.mtime_ns, width = excluded.width, height = excluded.height,
    caption = excluded.caption, alternatives = excluded.alternatives, error = excluded.error,
    model = excluded.model, captioned_at = excluded.captioned_at";

/// Runs `f` in an IMMEDIATE transaction (the write lock taken up front, so the busy timeout
/// applies instead of a failed upgrade) and commits it.
fn write_tx<T>(
    conn: &mut Connection,
    db: &Path,
    f: impl FnOnce(&rusqlite::Transaction) -> rusqlite::Result<T>,
) -> Result<T> {
    let at = |e| db_error(db, e);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(at)?;
    let value = f(&tx).map_err(at)?;
    tx.commit().map_err(at)?;
    Ok(value)
}

/// Indexes the images under `paths` into the library `db` (created if needed). `model` is the
/// model's identity; `load` loads it, and is called only when some image must be captioned.
/// Returns the counts; an internal error (the model failing, not an image) stops the run after
/// committing the batches already done.
pub fn index_library(
    db: &Path,
    paths: &[PathBuf],
    model: &ModelId,
    load: &dyn Fn() -> Result<Box<dyn Describer>>,
    opts: &IndexOptions,
    progress: &dyn Progress,
) -> Result<IndexSummary> {
    let mut summary = IndexSummary {
        xmp: opts.xmp.is_some(),
        ..IndexSummary::default()
    };
    let found = find(paths, opts.shard)?;
    for line in &found.failed {
        progress.log(Level::Warn, &format!("error: {line}"));
    }
    summary.failed += found.failed.len();

    let mut conn = open_for_writing(db)?;
    let at = |e| db_error(db, e);
    conn.execute(
        "INSERT OR IGNORE INTO models (sha256, name, first_used)
         VALUES (?1, ?2, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))",
        params![model.sha256, model.name],
    )
    .map_err(at)?;
    let rows = load_rows(&conn, db)?;

    // 2. Unchanged files, and the ones to look at.
    let seen: HashSet<&str> = found.candidates.iter().map(|c| c.key.as_str()).collect();
    let mut suspects = Vec::new();
    for cand in &found.candidates {
        match rows.get(&cand.key) {
            Some(r)
                if r.size == cand.size
                    && r.mtime_ns == cand.mtime_ns
                    && r.model == model.sha256 =>
            {
                summary.unchanged += 1;
            }
            _ => suspects.push(cand.clone()),
        }
    }
    // Rows whose file is gone from a walked folder (and in this shard): moved or removed.
    let mut missing: BTreeMap<i64, (String, Row)> = BTreeMap::new();
    for (path, row) in &rows {
        if seen.contains(path.as_str()) || found.unreadable.iter().any(|u| under(path, u)) {
            continue;
        }
        let Some(root) = found.walked.iter().find(|w| under(path, w)) else {
            continue;
        };
        let rel = path[root.len()..].trim_start_matches('/');
        if opts.shard.is_some_and(|s| !s.contains(rel)) {
            continue;
        }
        missing.insert(row.id, (path.clone(), row.clone()));
    }

    // 3. Hash the suspects.
    let task = progress.task("hash", Some(suspects.len() as u64), Unit::Images);
    let hashed: Vec<Hashed> = suspects
        .par_iter()
        .map(|c| {
            let h = hash_file(&c.path);
            task.advance(1);
            h
        })
        .collect();
    task.finish();

    let mut by_sha: HashMap<&str, i64> = HashMap::new();
    let mut missing_by_sha: HashMap<&str, Vec<i64>> = HashMap::new();
    for row in rows.values() {
        if let (Some(sha), true, true) = (&row.sha256, row.captioned, row.model == model.sha256) {
            by_sha.entry(sha).or_insert(row.id);
            if missing.contains_key(&row.id) {
                missing_by_sha.entry(sha).or_default().push(row.id);
            }
        }
    }
    enum Step {
        Touch(i64),
        Move(i64),
        Copy(i64),
        Fail(String),
    }
    let mut steps: Vec<(Candidate, Option<String>, Step)> = Vec::new();
    let mut to_caption: Vec<ToCaption> = Vec::new();
    // Identical new files: the first is captioned, the others copy it afterwards.
    let mut pending: HashMap<String, String> = HashMap::new();
    let mut copies_of_pending: Vec<(Candidate, String)> = Vec::new();
    for (cand, hashed) in suspects.into_iter().zip(hashed) {
        let own = rows.get(&cand.key);
        let (sha, size) = match hashed {
            Hashed::Unreadable(e) => {
                steps.push((cand, None, Step::Fail(e)));
                continue;
            }
            Hashed::Read { sha256, size } => (sha256, size),
        };
        if let Some(r) =
            own.filter(|r| r.sha256.as_deref() == Some(sha.as_str()) && r.model == model.sha256)
        {
            steps.push((cand, Some(sha), Step::Touch(r.id)));
        } else if let Some(src) = missing_by_sha
            .get_mut(sha.as_str())
            .and_then(|ids| ids.pop())
        {
            missing.remove(&src);
            steps.push((cand, Some(sha), Step::Move(src)));
        } else if let Some(&src) = by_sha.get(sha.as_str()) {
            steps.push((cand, Some(sha), Step::Copy(src)));
        } else if let Some(first) = pending.get(&sha) {
            copies_of_pending.push((cand, first.clone()));
        } else {
            pending.insert(sha.clone(), cand.key.clone());
            to_caption.push(ToCaption {
                replaces: own.is_some(),
                cand,
                sha256: sha,
                size,
            });
        }
    }
    let mut fallback = Vec::new();
    if !steps.is_empty() {
        let outcome = write_tx(&mut conn, db, |tx| {
            let mut upsert = tx.prepare_cached(UPSERT)?;
            let mut copy = tx.prepare_cached(COPY)?;
            let mut outcome = Vec::with_capacity(steps.len());
            for (cand, sha, step) in &steps {
                let ok = match step {
                    Step::Touch(id) => {
                        tx.execute(
                            "UPDATE images SET size = ?1, mtime_ns = ?2, root = ?3, rel = ?4
                             WHERE id = ?5",
                            params![cand.size, cand.mtime_ns, cand.root, cand.rel, id],
                        )? == 1
                    }
                    Step::Move(id) => {
                        tx.execute(
                            "DELETE FROM images WHERE path = ?1 AND id <> ?2",
                            params![cand.key, id],
                        )?;
                        tx.execute(
                            "UPDATE images SET path = ?1, root = ?2, rel = ?3, size = ?4,
                             mtime_ns = ?5 WHERE id = ?6",
                            params![cand.key, cand.root, cand.rel, cand.size, cand.mtime_ns, id],
                        )? == 1
                    }
                    Step::Copy(id) => {
                        copy.execute(params![
                            cand.key,
                            cand.root,
                            cand.rel,
                            cand.size,
                            cand.mtime_ns,
                            id
                        ])? == 1
                    }
                    Step::Fail(e) => {
                        upsert.execute(params![
                            cand.key,
                            cand.root,
                            cand.rel,
                            sha,
                            cand.size,
                            cand.mtime_ns,
                            None::<u32>,
                            None::<u32>,
                            None::<String>,
                            "",
                            e,
                            model.sha256,
                        ])?;
                        true
                    }
                };
                outcome.push(ok);
            }
            Ok(outcome)
        })?;
        for ((cand, sha, step), ok) in steps.into_iter().zip(outcome) {
            let replaces = rows.contains_key(&cand.key);
            match (step, ok, sha) {
                (Step::Touch(_), true, _) => summary.unchanged += 1,
                (Step::Move(_), true, _) => summary.moved += 1,
                (Step::Copy(_), true, _) if replaces => summary.updated += 1,
                (Step::Copy(_), true, _) => summary.added += 1,
                (Step::Fail(e), _, _) => {
                    progress.log(Level::Warn, &format!("error: {e}"));
                    summary.failed += 1;
                }
                // Another run changed the source row meanwhile: caption this file after all.
                (_, false, Some(sha)) => fallback.push(ToCaption {
                    replaces,
                    cand,
                    sha256: sha,
                    size: None,
                }),
                (_, false, None) => {}
            }
        }
    }
    for mut t in fallback {
        t.size = probe_size(&t.cand.path);
        to_caption.push(t);
    }

    // 4. Remove the rows of files gone.
    if !missing.is_empty() {
        let ids: Vec<i64> = missing.keys().copied().collect();
        summary.removed += write_tx(&mut conn, db, |tx| {
            let mut del = tx.prepare_cached("DELETE FROM images WHERE id = ?1")?;
            let mut n = 0;
            for id in &ids {
                n += del.execute([id])?;
            }
            Ok(n)
        })?;
    }

    // 5. Caption, committing each batch.
    if !to_caption.is_empty() {
        let describer = load()?;
        caption_and_commit(
            &mut conn,
            db,
            describer.as_ref(),
            &to_caption,
            model,
            opts,
            progress,
            &mut summary,
        )?;
    }
    if !copies_of_pending.is_empty() {
        let results = write_tx(&mut conn, db, |tx| {
            let mut copy = tx.prepare_cached(COPY)?;
            let mut out = Vec::new();
            for (cand, first) in &copies_of_pending {
                let id: Option<i64> = tx
                    .query_row("SELECT id FROM images WHERE path = ?1", [first], |r| {
                        r.get(0)
                    })
                    .optional()?;
                let Some(id) = id else {
                    out.push(None);
                    continue;
                };
                copy.execute(params![
                    cand.key,
                    cand.root,
                    cand.rel,
                    cand.size,
                    cand.mtime_ns,
                    id
                ])?;
                let error: Option<String> = tx.query_row(
                    "SELECT error FROM images WHERE path = ?1",
                    [&cand.key],
                    |r| r.get(0),
                )?;
                out.push(Some(error));
            }
            Ok(out)
        })?;
        for ((cand, _), r) in copies_of_pending.iter().zip(results) {
            match r {
                Some(None) if rows.contains_key(&cand.key) => summary.updated += 1,
                Some(None) => summary.added += 1,
                Some(Some(e)) => {
                    progress.log(Level::Warn, &format!("error: {}: {e}", cand.path.display()));
                    summary.failed += 1;
                }
                // Its twin was not captioned (an interrupted run): the next run does it.
                None => {}
            }
        }
    }

    // 6. Sidecars.
    if let Some(name) = opts.xmp {
        write_sidecars(
            &conn,
            db,
            &found.candidates,
            model,
            name,
            progress,
            &mut summary,
        )?;
    }
    Ok(summary)
}

fn probe_size(path: &Path) -> Option<(u32, u32)> {
    crate::vision::header::probe(path)
        .ok()
        .map(|h| (h.width, h.height))
}

/// Images per call of the describer: between calls the run checks that the database still takes
/// writes, so a full disk stops the run instead of captioning the rest for nothing.
const CHUNK: usize = 1024;

#[allow(clippy::too_many_arguments)]
fn caption_and_commit(
    conn: &mut Connection,
    db: &Path,
    describer: &dyn Describer,
    to_caption: &[ToCaption],
    model: &ModelId,
    opts: &IndexOptions,
    progress: &dyn Progress,
    summary: &mut IndexSummary,
) -> Result<()> {
    let batch = opts.caption.batch_size.max(1);
    let task = progress.task("index", Some(to_caption.len() as u64), Unit::Images);
    let mut failure: Option<Error> = None;
    for chunk in to_caption.chunks(CHUNK) {
        let paths: Vec<PathBuf> = chunk.iter().map(|t| t.cand.path.clone()).collect();
        let mut done: Vec<(usize, Result<Vec<String>>)> = Vec::with_capacity(batch);
        let mut commit = |done: &mut Vec<(usize, Result<Vec<String>>)>,
                          summary: &mut IndexSummary|
         -> Result<()> {
            if done.is_empty() {
                return Ok(());
            }
            write_tx(conn, db, |tx| {
                let mut upsert = tx.prepare_cached(UPSERT)?;
                for (i, result) in done.iter() {
                    let t = &chunk[*i];
                    let (caption, alternatives, error) = match result {
                        Ok(all) => (
                            all.first().cloned(),
                            all.get(1..).unwrap_or_default().join("\n"),
                            None,
                        ),
                        Err(e) => (None, String::new(), Some(e.to_string())),
                    };
                    upsert.execute(params![
                        t.cand.key,
                        t.cand.root,
                        t.cand.rel,
                        t.sha256,
                        t.cand.size,
                        t.cand.mtime_ns,
                        t.size.map(|s| s.0),
                        t.size.map(|s| s.1),
                        caption,
                        alternatives,
                        error,
                        model.sha256,
                    ])?;
                }
                Ok(())
            })?;
            for (i, result) in done.drain(..) {
                match result {
                    Ok(_) if chunk[i].replaces => summary.updated += 1,
                    Ok(_) => summary.added += 1,
                    Err(e) => {
                        progress.log(Level::Warn, &format!("error: {e}"));
                        summary.failed += 1;
                    }
                }
            }
            Ok(())
        };
        describer.describe_each(&paths, &opts.caption, &mut |i, result| {
            if failure.is_some() {
                return;
            }
            match result {
                // Not the image's fault: stop rather than record it against the file.
                Err(e) if e.is_internal() => failure = Some(e),
                result => {
                    done.push((i, result));
                    task.advance(1);
                    if done.len() >= batch {
                        if let Err(e) = commit(&mut done, summary) {
                            failure = Some(e);
                        }
                    }
                }
            }
        });
        if failure.is_none() {
            if let Err(e) = commit(&mut done, summary) {
                failure = Some(e);
            }
        } else {
            // What was captioned before the failure is kept.
            let _ = commit(&mut done, summary);
        }
        if let Some(e) = failure.take() {
            return Err(e);
        }
    }
    task.finish();
    Ok(())
}

/// Writes (or brings up to date) the sidecar of every captioned image the run saw.
fn write_sidecars(
    conn: &Connection,
    db: &Path,
    candidates: &[Candidate],
    model: &ModelId,
    name: SidecarName,
    progress: &dyn Progress,
    summary: &mut IndexSummary,
) -> Result<()> {
    let at = |e| db_error(db, e);
    let mut stmt = conn
        .prepare_cached("SELECT caption FROM images WHERE path = ?1 AND caption IS NOT NULL")
        .map_err(at)?;
    let mut claimed: HashMap<PathBuf, &Path> = HashMap::new();
    let task = progress.task("xmp", Some(candidates.len() as u64), Unit::Images);
    for cand in candidates {
        task.advance(1);
        let caption: Option<String> = stmt
            .query_row([&cand.key], |r| r.get(0))
            .optional()
            .map_err(at)?;
        let Some(caption) = caption else { continue };
        let sidecar = sidecar_path(&cand.path, name);
        if let Some(first) = claimed.get(&sidecar) {
            progress.log(
                Level::Warn,
                &format!(
                    "warning: {} and {} share the sidecar {}; it describes the first \
                     (--xmp-name full gives each its own)",
                    first.display(),
                    cand.path.display(),
                    sidecar.display()
                ),
            );
            continue;
        }
        claimed.insert(sidecar.clone(), &cand.path);
        let value = XmpCaption {
            caption,
            model: model.sha256.clone(),
            model_name: model.name.clone(),
        };
        match write_sidecar(&sidecar, &value) {
            Ok(true) => summary.sidecars_written += 1,
            Ok(false) => {}
            Err(e) => {
                progress.log(Level::Warn, &format!("error: {e}"));
                summary.sidecars_failed += 1;
            }
        }
    }
    task.finish();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_means_the_folder_or_below_it() {
        assert!(under("/a/b/c.jpg", "/a/b"));
        assert!(under("/a/b", "/a/b"));
        assert!(!under("/a/bc/d.jpg", "/a/b"));
        assert!(under("/x.jpg", "/"));
    }
}
