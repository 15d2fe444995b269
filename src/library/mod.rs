//! The photo library: captions kept in an SQLite database (WAL, FTS5 with Porter stemming),
//! searchable, exportable as alt text and as XMP sidecars, served as a gallery.
//!
//! - [`index::index_library`] captions every image under some folders into the database,
//!   incrementally (unchanged files are skipped, moved ones keep their caption, gone ones are
//!   removed) and in committed batches (a kill loses at most the batch in flight).
//! - [`search::search`] ranks captions by BM25; [`search::list_all`] lists the library.
//! - [`xmp`] writes the caption into `photo.xmp` sidecars, keeping what else they say.
//! - [`merge::merge_shards`] folds the libraries of `index --shard I/N` runs into one.
//! - [`Library`] is a read-only handle for the server.
//!
//! The schema is documented in `docs/library.md`.

pub mod index;
pub mod merge;
pub mod model_id;
pub mod schema;
pub mod search;
pub mod xmp;

pub use index::{index_library, Describer, IndexOptions, IndexSummary};
pub use merge::{merge_shards, MergeSummary};
pub use model_id::ModelId;
pub use search::{fts_query, Hit, SearchPage};

use crate::{Error, Result};
use rusqlite::{Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A library opened for reading, shared by the server's requests.
pub struct Library {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl Library {
    /// Opens the library at `path` (it must exist and be a library).
    pub fn open(path: &Path) -> Result<Library> {
        let conn = schema::open_for_reading(path)?;
        Ok(Library {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self
            .conn
            .lock()
            .map_err(|_| Error::Internal("the library connection was poisoned".into()))?;
        f(&conn)
    }

    /// The `limit` best matches of `text` after `offset`, and how many match in all.
    pub fn search(&self, text: &str, limit: usize, offset: usize) -> Result<SearchPage> {
        self.with(|c| search::search(c, &self.path, text, limit, offset))
    }

    /// A page of the captioned images by path (the gallery without a query), and how many
    /// there are.
    pub fn browse(&self, limit: usize, offset: usize) -> Result<SearchPage> {
        self.with(|c| search::browse(c, &self.path, limit, offset))
    }

    /// Every captioned image, by path.
    pub fn all(&self, each: impl FnMut(Hit)) -> Result<()> {
        self.with(|c| search::list_all(c, &self.path, each))
    }

    /// The file of the image with row id `id`, if the library has one.
    pub fn image_path(&self, id: i64) -> Result<Option<PathBuf>> {
        self.with(|c| {
            c.query_row("SELECT path FROM images WHERE id = ?1", [id], |r| {
                r.get::<_, String>(0)
            })
            .optional()
            .map(|p| p.map(PathBuf::from))
            .map_err(|e| schema::db_error(&self.path, e))
        })
    }

    /// Captioned images in the library.
    pub fn count(&self) -> Result<usize> {
        self.with(|c| {
            c.query_row(
                "SELECT count(*) FROM images WHERE caption IS NOT NULL",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as usize)
            .map_err(|e| schema::db_error(&self.path, e))
        })
    }
}
