//! The library database: opening it (WAL, a busy timeout so concurrent runs wait for each other
//! rather than fail), creating and migrating its schema, and SQLite's errors as [`Error`]s that name
//! the file. The schema is documented in `docs/library.md`.

use crate::{Error, Result};
use rusqlite::{Connection, ErrorCode, OpenFlags};
use std::path::Path;
use std::time::Duration;

/// `PRAGMA application_id` of a captioner library ("CAPT"): a database made by something else is
/// refused rather than written to.
pub const APPLICATION_ID: i64 = 0x4341_5054;

/// The schema version this build writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 1;

/// How long a writer waits for another one to finish its transaction before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// Version 1: models, images, the FTS5 index over captions and alternatives, and the triggers
/// that keep the index equal to the table (an external-content FTS5 table).
const V1: &str = "
CREATE TABLE models (
    sha256     TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    first_used TEXT NOT NULL
);
CREATE TABLE images (
    id           INTEGER PRIMARY KEY,
    path         TEXT NOT NULL UNIQUE,
    root         TEXT NOT NULL,
    rel          TEXT NOT NULL,
    sha256       TEXT,
    size         INTEGER NOT NULL,
    mtime_ns     INTEGER NOT NULL,
    width        INTEGER,
    height       INTEGER,
    caption      TEXT,
    alternatives TEXT NOT NULL DEFAULT '',
    error        TEXT,
    model        TEXT NOT NULL REFERENCES models(sha256),
    captioned_at TEXT NOT NULL,
    CHECK ((caption IS NULL) <> (error IS NULL))
);
CREATE INDEX images_by_sha256 ON images(sha256);
CREATE VIRTUAL TABLE images_fts USING fts5(
    caption, alternatives,
    content = 'images', content_rowid = 'id',
    tokenize = 'porter unicode61'
);
-- ORDER BY rank ranks by BM25 with a caption match weighing ten times an alternative's.
INSERT INTO images_fts(images_fts, rank) VALUES ('rank', 'bm25(10.0, 1.0)');
CREATE TRIGGER images_fts_insert AFTER INSERT ON images BEGIN
    INSERT INTO images_fts(rowid, caption, alternatives)
    VALUES (new.id, new.caption, new.alternatives);
END;
CREATE TRIGGER images_fts_delete AFTER DELETE ON images BEGIN
    INSERT INTO images_fts(images_fts, rowid, caption, alternatives)
    VALUES ('delete', old.id, old.caption, old.alternatives);
END;
CREATE TRIGGER images_fts_update AFTER UPDATE OF caption, alternatives ON images BEGIN
    INSERT INTO images_fts(images_fts, rowid, caption, alternatives)
    VALUES ('delete', old.id, old.caption, old.alternatives);
    INSERT INTO images_fts(rowid, caption, alternatives)
    VALUES (new.id, new.caption, new.alternatives);
END;
";

/// SQLite's error as an [`Error::Database`] naming `path`, with advice where there is some.
pub fn db_error(path: &Path, e: rusqlite::Error) -> Error {
    let msg = match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => format!(
            "the library is locked by another writer (another `captioner index` on it?) for over {} s; \
             try again when it is done ({e})",
            BUSY_TIMEOUT.as_secs()
        ),
        Some(ErrorCode::NotADatabase) => {
            format!("not a captioner library (not an SQLite database): {e}")
        }
        Some(ErrorCode::DiskFull) => format!("the disk is full: {e}"),
        Some(ErrorCode::ReadOnly) => format!("the library cannot be written: {e}"),
        _ => e.to_string(),
    };
    Error::Database {
        path: path.to_path_buf(),
        msg,
    }
}

/// Opens (creating it if needed) the library at `path` for writing: WAL mode, a busy timeout,
/// the schema created or checked.
pub fn open_for_writing(path: &Path) -> Result<Connection> {
    let at = |e| db_error(path, e);
    let conn = Connection::open(path).map_err(at)?;
    configure(&conn, path)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(at)?;
    migrate(&conn, path)?;
    Ok(conn)
}

/// Opens an existing library for reading (search, the server); refuses a missing file or a
/// database that is not a library.
pub fn open_for_reading(path: &Path) -> Result<Connection> {
    if !path.is_file() {
        return Err(Error::Database {
            path: path.to_path_buf(),
            msg: "no such library: `captioner index PATH... --db FILE` creates it".into(),
        });
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| db_error(path, e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| db_error(path, e))?;
    check_version(&conn, path, false)?;
    Ok(conn)
}

fn configure(conn: &Connection, path: &Path) -> Result<()> {
    let at = |e| db_error(path, e);
    conn.busy_timeout(BUSY_TIMEOUT).map_err(at)?;
    // WAL: readers never block the writer, and a killed writer leaves a log that the next opener
    // rolls back (uncommitted) or forward (committed).
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(at)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Database {
            path: path.to_path_buf(),
            msg: format!("cannot switch the library to WAL mode (it stays in {mode} mode)"),
        });
    }
    conn.pragma_update(None, "foreign_keys", true).map_err(at)?;
    Ok(())
}

/// The schema version of `conn`, after checking that it is a library (or an empty database when
/// `may_be_new`).
fn check_version(conn: &Connection, path: &Path, may_be_new: bool) -> Result<i64> {
    let at = |e| db_error(path, e);
    let app: i64 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(at)?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(at)?;
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .map_err(at)?;
    let refuse = |msg: String| Error::Database {
        path: path.to_path_buf(),
        msg,
    };
    if app == 0 && version == 0 && tables == 0 {
        return if may_be_new {
            Ok(0)
        } else {
            Err(refuse(
                "an empty database, not a library yet: `captioner index` fills it".into(),
            ))
        };
    }
    if app != APPLICATION_ID {
        return Err(refuse(
            "an SQLite database, but not a captioner library; refusing to touch it".into(),
        ));
    }
    if version > SCHEMA_VERSION {
        return Err(refuse(format!(
            "library schema version {version} is newer than this captioner's ({SCHEMA_VERSION}); \
             upgrade captioner"
        )));
    }
    Ok(version)
}

/// Creates the schema in a new database, or upgrades an older one, in one transaction taken
/// before reading the version, so two runs creating the same library at once do it once.
fn migrate(conn: &Connection, path: &Path) -> Result<()> {
    let at = |e| db_error(path, e);
    conn.execute_batch("BEGIN IMMEDIATE").map_err(at)?;
    let result = (|| {
        let version = check_version(conn, path, true)?;
        if version < 1 {
            conn.execute_batch(V1).map_err(at)?;
            conn.pragma_update(None, "application_id", APPLICATION_ID)
                .map_err(at)?;
        }
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(at)?;
        Ok(())
    })();
    match result {
        Ok(()) => conn.execute_batch("COMMIT").map_err(at),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_library_is_wal_with_fts5_and_porter_stemming() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("lib.db");
        let conn = open_for_writing(&db).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        conn.execute_batch(
            "INSERT INTO models VALUES ('m', 'model', 'now');
             INSERT INTO images (path, root, rel, size, mtime_ns, caption, model, captioned_at)
             VALUES ('/p/a.jpg', '/p', 'a.jpg', 1, 1, 'a dog runs on the grass', 'm', 'now');",
        )
        .unwrap();
        let hit: i64 = conn
            .query_row(
                "SELECT rowid FROM images_fts WHERE images_fts MATCH '\"dogs\" \"running\"'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(hit, 1);
        drop(conn);
        // Opening again keeps the schema; reading works too.
        open_for_writing(&db).unwrap();
        open_for_reading(&db).unwrap();
    }

    #[test]
    fn other_databases_and_missing_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let other = dir.path().join("other.db");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        let err = open_for_writing(&other).unwrap_err().to_string();
        assert!(err.contains("not a captioner library"), "{err}");
        let text = dir.path().join("notes.db");
        std::fs::write(&text, "just some text, not a database at all......").unwrap();
        let err = open_for_writing(&text).unwrap_err().to_string();
        assert!(err.contains("notes.db"), "{err}");
        let err = open_for_reading(&dir.path().join("missing.db"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no such library"), "{err}");
    }
}
