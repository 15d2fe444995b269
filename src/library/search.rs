//! Searching the library: the user's words become an FTS5 query of quoted tokens (never raw FTS5
//! syntax, so quotes, `*`, `-`, `:` and parentheses are just characters), ranked by BM25 with a
//! caption match above an alternative's.

use super::schema::db_error;
use crate::Result;
use rusqlite::{params, Connection};
use serde::Serialize;
use std::path::Path;

/// Most words of a query that are used (the rest are ignored).
pub const MAX_QUERY_WORDS: usize = 32;

/// One image found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    /// The image's row id (what `/api/thumb/{id}` takes).
    pub id: i64,
    /// The image's absolute path.
    pub path: String,
    /// Its path relative to the folder that was indexed.
    pub rel: String,
    /// The caption.
    pub caption: String,
    /// BM25 relevance, higher is better (0 for a listing without a query).
    pub score: f64,
}

/// A page of results and how many there are in all.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchPage {
    /// The hits of this page, best first.
    pub hits: Vec<Hit>,
    /// Matches in the whole library.
    pub total: usize,
}

/// The FTS5 query for the user's `text`: each whitespace-separated word that has a letter or a
/// digit, as a quoted string (`"` doubled inside), all of them required. `None` when there is no
/// such word.
pub fn fts_query(text: &str) -> Option<String> {
    let words: Vec<String> = text
        .split_whitespace()
        .filter(|w| w.chars().any(char::is_alphanumeric))
        .take(MAX_QUERY_WORDS)
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

fn hit(r: &rusqlite::Row) -> rusqlite::Result<Hit> {
    Ok(Hit {
        id: r.get(0)?,
        path: r.get(1)?,
        rel: r.get(2)?,
        caption: r.get(3)?,
        score: r.get(4)?,
    })
}

/// The `limit` best matches of `text` after the first `offset`, and the number of matches.
pub fn search(
    conn: &Connection,
    db: &Path,
    text: &str,
    limit: usize,
    offset: usize,
) -> Result<SearchPage> {
    let at = |e| db_error(db, e);
    let Some(query) = fts_query(text) else {
        return Ok(SearchPage {
            hits: Vec::new(),
            total: 0,
        });
    };
    let mut stmt = conn
        .prepare_cached(
            "SELECT images.id, images.path, images.rel, images.caption, -images_fts.rank
             FROM images_fts JOIN images ON images.id = images_fts.rowid
             WHERE images_fts MATCH ?1 AND images.caption IS NOT NULL
             ORDER BY images_fts.rank LIMIT ?2 OFFSET ?3",
        )
        .map_err(at)?;
    let hits = stmt
        .query_map(params![query, limit as i64, offset as i64], hit)
        .map_err(at)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(at)?;
    let total = if offset == 0 && hits.len() < limit {
        hits.len()
    } else {
        let n: i64 = conn
            .prepare_cached("SELECT count(*) FROM images_fts WHERE images_fts MATCH ?1")
            .and_then(|mut s| s.query_row([&query], |r| r.get(0)))
            .map_err(at)?;
        n as usize
    };
    Ok(SearchPage { hits, total })
}

/// A page of captioned images by path, and how many there are.
pub fn browse(conn: &Connection, db: &Path, limit: usize, offset: usize) -> Result<SearchPage> {
    let at = |e| db_error(db, e);
    let hits = conn
        .prepare_cached(
            "SELECT id, path, rel, caption, 0.0 FROM images
             WHERE caption IS NOT NULL ORDER BY path LIMIT ?1 OFFSET ?2",
        )
        .and_then(|mut s| {
            s.query_map(params![limit as i64, offset as i64], hit)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(at)?;
    let total: i64 = conn
        .query_row(
            "SELECT count(*) FROM images WHERE caption IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .map_err(at)?;
    Ok(SearchPage {
        hits,
        total: total as usize,
    })
}

/// Every captioned image, by path (`search --all`, the alt-text export), handed to `each`.
pub fn list_all(conn: &Connection, db: &Path, mut each: impl FnMut(Hit)) -> Result<()> {
    let at = |e| db_error(db, e);
    let mut stmt = conn
        .prepare(
            "SELECT id, path, rel, caption, 0.0 FROM images
             WHERE caption IS NOT NULL ORDER BY path",
        )
        .map_err(at)?;
    let rows = stmt.query_map([], hit).map_err(at)?;
    for row in rows {
        each(row.map_err(at)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_quoted_words_never_fts_syntax() {
        assert_eq!(fts_query("dogs running").unwrap(), "\"dogs\" \"running\"");
        assert_eq!(
            fts_query("\"beach\" OR (sea) -sand a*:b").unwrap(),
            "\"\"\"beach\"\"\" \"OR\" \"(sea)\" \"-sand\" \"a*:b\""
        );
        assert_eq!(fts_query("  - * \" ( )  "), None);
        assert_eq!(fts_query(""), None);
    }
}
