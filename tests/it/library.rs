//! The photo library through its API, with a stand-in describer (fast, and it counts what it
//! captions): the incremental rules (unchanged, touched, moved, copied, changed, removed, failed and
//! retried only when the file changes, another model), search (stemming, ranking, FTS syntax as
//! words), XMP sidecars read back by ExifTool, and shard merging. The real model end to end, the
//! kill -9 and concurrent-run tests are in `library_cli`.

use crate::webdriver::find_program;
use captioner::library::xmp::SidecarName;
use captioner::library::{
    index_library, merge_shards, Describer, IndexOptions, IndexSummary, Library, ModelId,
};
use captioner::progress::Silent;
use captioner::serve::{CaptionEngine, FakeEngine};
use captioner::shard::Shard;
use captioner::CaptionOptions;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Captions by file name where the test says so, else the image's mean colour ("a mostly red
/// picture"); counts the images it was asked for.
#[derive(Default)]
pub(crate) struct Fake {
    pub(crate) by_name: HashMap<String, Vec<String>>,
    pub(crate) calls: AtomicUsize,
}

struct Shared(Arc<Fake>);

impl Describer for Shared {
    fn describe_each(
        &self,
        paths: &[PathBuf],
        _opts: &CaptionOptions,
        each: &mut dyn FnMut(usize, captioner::Result<Vec<String>>),
    ) {
        for (i, p) in paths.iter().enumerate() {
            self.0.calls.fetch_add(1, Ordering::SeqCst);
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let result = match self.0.by_name.get(&name) {
                Some(c) => Ok(c.clone()),
                None => std::fs::read(p)
                    .map_err(|e| captioner::Error::io(p, e))
                    .and_then(|b| FakeEngine::new().caption_bytes(&b, 1))
                    .map(|c| vec![c])
                    .map_err(|e| captioner::Error::Image {
                        path: p.clone(),
                        msg: e.to_string(),
                    }),
            };
            each(i, result);
        }
    }
}

pub(crate) fn model(name: &str) -> ModelId {
    ModelId {
        sha256: format!("{name:0>64}"),
        name: name.into(),
    }
}

pub(crate) fn index(
    db: &Path,
    paths: &[PathBuf],
    fake: &Arc<Fake>,
    model: &ModelId,
    opts: &IndexOptions,
) -> IndexSummary {
    let f = Arc::clone(fake);
    let load =
        move || -> captioner::Result<Box<dyn Describer>> { Ok(Box::new(Shared(Arc::clone(&f)))) };
    index_library(db, paths, model, &load, opts, &Silent).unwrap()
}

pub(crate) fn png(path: &Path, rgb: [u8; 3]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_pixel(40, 30, image::Rgb(rgb))
        .save_with_format(path, image::ImageFormat::Png)
        .unwrap();
}

/// One row of the library, as compared between runs.
pub(crate) type RowView = (
    String,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    Option<i64>,
    Option<i64>,
    String,
);

/// Every image row (path, sha256, caption, alternatives, error, width, height, model), by path.
pub(crate) fn rows(db: &Path) -> Vec<RowView> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT path, sha256, caption, alternatives, error, width, height, model
             FROM images ORDER BY path",
        )
        .unwrap();
    stmt.query_map([], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
            r.get(7)?,
        ))
    })
    .unwrap()
    .collect::<rusqlite::Result<_>>()
    .unwrap()
}

/// `PRAGMA integrity_check` and the FTS index's own check both pass.
pub(crate) fn assert_intact(db: &Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok", "{}", db.display());
    conn.execute(
        "INSERT INTO images_fts(images_fts, rank) VALUES ('integrity-check', 1)",
        [],
    )
    .unwrap_or_else(|e| panic!("FTS index differs from the table: {e}"));
}

fn id_of(db: &Path, path: &Path) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row(
        "SELECT id FROM images WHERE path = ?1",
        [path.to_str().unwrap()],
        |r| r.get(0),
    )
    .unwrap()
}

fn summary(
    added: usize,
    updated: usize,
    moved: usize,
    unchanged: usize,
    removed: usize,
    failed: usize,
) -> IndexSummary {
    IndexSummary {
        added,
        updated,
        moved,
        unchanged,
        removed,
        failed,
        ..IndexSummary::default()
    }
}

#[test]
fn runs_are_incremental_moves_keep_captions_and_failures_wait_for_a_change() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos").canonicalize_or_create();
    let db = dir.path().join("lib.db");
    png(&photos.join("red.png"), [230, 20, 25]);
    png(&photos.join("blue.png"), [30, 60, 200]);
    png(&photos.join("sub/green.png"), [40, 170, 60]);
    std::fs::write(photos.join("broken.jpg"), b"\xff\xd8 not really a jpeg").unwrap();
    std::fs::write(photos.join("notes.txt"), "not an image").unwrap();
    let fake = Arc::new(Fake::default());
    let m = model("a");
    let opts = IndexOptions::default();
    let roots = [photos.clone()];
    let calls = |f: &Fake| f.calls.swap(0, Ordering::SeqCst);

    assert_eq!(
        index(&db, &roots, &fake, &m, &opts),
        summary(3, 0, 0, 0, 0, 1)
    );
    assert_eq!(calls(&fake), 4);
    let first = rows(&db);
    assert_eq!(first.len(), 4, "{first:?}");
    let broken = first.iter().find(|r| r.0.ends_with("broken.jpg")).unwrap();
    assert!(broken.2.is_none(), "{broken:?}");
    assert!(
        broken.4.as_deref().unwrap().contains("broken.jpg"),
        "{broken:?}"
    );
    let red = first.iter().find(|r| r.0.ends_with("red.png")).unwrap();
    assert_eq!(red.2.as_deref(), Some("a mostly red picture"));
    assert_eq!((red.5, red.6), (Some(40), Some(30)));
    assert_eq!(red.7, m.sha256);
    assert_intact(&db);

    // Nothing changed: nothing captioned, the failure is not retried.
    assert_eq!(
        index(&db, &roots, &fake, &m, &opts),
        summary(0, 0, 0, 4, 0, 0)
    );
    assert_eq!(calls(&fake), 0);

    // A rename keeps the caption and the id; a copy reuses it; a touched file is only rehashed.
    let red_id = id_of(&db, &photos.join("red.png"));
    std::fs::rename(photos.join("red.png"), photos.join("crimson.png")).unwrap();
    std::fs::copy(photos.join("blue.png"), photos.join("blue copy.png")).unwrap();
    let green = photos.join("sub/green.png");
    let bytes = std::fs::read(&green).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&green, &bytes).unwrap();
    assert_eq!(
        index(&db, &roots, &fake, &m, &opts),
        summary(1, 0, 1, 3, 0, 0)
    );
    assert_eq!(
        calls(&fake),
        0,
        "moved, copied and touched files are not captioned again"
    );
    assert_eq!(id_of(&db, &photos.join("crimson.png")), red_id);

    // A changed file is captioned again; a fixed broken file too; a deleted one is removed.
    png(&green, [240, 220, 40]);
    png(&photos.join("broken.jpg"), [0, 0, 0]);
    std::fs::remove_file(photos.join("blue copy.png")).unwrap();
    assert_eq!(
        index(&db, &roots, &fake, &m, &opts),
        summary(0, 2, 0, 2, 1, 0)
    );
    assert_eq!(calls(&fake), 2);
    let now = rows(&db);
    let green_row = now.iter().find(|r| r.0.ends_with("green.png")).unwrap();
    assert_eq!(green_row.2.as_deref(), Some("a mostly yellow picture"));
    let fixed = now.iter().find(|r| r.0.ends_with("broken.jpg")).unwrap();
    assert_eq!(
        (fixed.2.as_deref(), fixed.4.as_deref()),
        (Some("a mostly black picture"), None)
    );

    // Another model captions everything again.
    assert_eq!(
        index(&db, &roots, &fake, &model("b"), &opts),
        summary(0, 4, 0, 0, 0, 0)
    );
    assert_eq!(calls(&fake), 4);
    assert_intact(&db);

    // A missing path is refused before anything changes.
    let before = rows(&db);
    let f = Arc::clone(&fake);
    let load =
        move || -> captioner::Result<Box<dyn Describer>> { Ok(Box::new(Shared(Arc::clone(&f)))) };
    let err = index_library(&db, &[photos.join("nope")], &m, &load, &opts, &Silent)
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope"), "{err}");
    assert_eq!(rows(&db), before);
}

/// `canonicalize` for a folder that may not exist yet (tempdir paths can go through symlinks).
trait CanonOrCreate {
    fn canonicalize_or_create(&self) -> PathBuf;
}

impl CanonOrCreate for PathBuf {
    fn canonicalize_or_create(&self) -> PathBuf {
        std::fs::create_dir_all(self).unwrap();
        self.canonicalize().unwrap()
    }
}

#[test]
fn search_stems_ranks_captions_above_alternatives_and_takes_syntax_as_words() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("p").canonicalize_or_create();
    let db = dir.path().join("lib.db");
    for (i, name) in ["beach.png", "alt.png", "dog.png", "other.png"]
        .iter()
        .enumerate()
    {
        png(&photos.join(name), [i as u8 * 40, 10, 10]);
    }
    let mut fake = Fake::default();
    for (name, captions) in [
        (
            "beach.png",
            vec!["people relaxing on a sandy beach", "a crowd near the sea"],
        ),
        (
            "alt.png",
            vec!["a man standing in the sun", "a man on a sandy beach"],
        ),
        ("dog.png", vec!["a dog runs across the grass"]),
        (
            "other.png",
            vec!["a red bus on a \"quoted\" street (with -dashes- and a: colon)"],
        ),
    ] {
        fake.by_name.insert(
            name.into(),
            captions.into_iter().map(String::from).collect(),
        );
    }
    let fake = Arc::new(fake);
    index(
        &db,
        std::slice::from_ref(&photos),
        &fake,
        &model("a"),
        &IndexOptions::default(),
    );
    let lib = Library::open(&db).unwrap();
    let names = |q: &str| -> Vec<String> {
        lib.search(q, 10, 0)
            .unwrap()
            .hits
            .iter()
            .map(|h| h.rel.clone())
            .collect()
    };
    // Porter stemming: plural and -ing forms find "a dog runs".
    assert_eq!(names("dogs running"), ["dog.png"]);
    // The alternative is searchable, but a caption match ranks first.
    assert_eq!(names("beach"), ["beach.png", "alt.png"]);
    assert_eq!(names("SANDY Beaches"), ["beach.png", "alt.png"]);
    let page = lib.search("beach", 1, 1).unwrap();
    assert_eq!((page.hits.len(), page.total), (1, 2));
    assert_eq!(page.hits[0].rel, "alt.png");
    assert!(lib.search("beach", 10, 0).unwrap().hits[0].score > page.hits[0].score);
    // FTS syntax is never interpreted, never an error.
    for q in [
        "\"quoted\"",
        "(with",
        "-dashes-",
        "a: colon)",
        "bus*",
        "NEAR(bus street)",
        "bus OR dog",
        "caption:bus",
        "\"",
        "*",
        "-",
        ":",
        "()",
    ] {
        let found = lib.search(q, 10, 0).unwrap_or_else(|e| panic!("{q}: {e}"));
        assert!(found.hits.len() <= 1, "{q}: {:?}", found.hits);
    }
    assert_eq!(names("\"quoted\" (with -dashes-"), ["other.png"]);
    assert!(
        names("bus OR dog").is_empty(),
        "OR is a word, and not in any caption"
    );
    assert!(names("zebra").is_empty());
    let mut all = Vec::new();
    lib.all(|h| all.push(h.rel)).unwrap();
    assert_eq!(all, ["alt.png", "beach.png", "dog.png", "other.png"]);
}

#[test]
fn xmp_sidecars_are_written_merged_and_read_back_by_exiftool() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("p").canonicalize_or_create();
    let db = dir.path().join("lib.db");
    png(&photos.join("red.png"), [230, 20, 25]);
    png(&photos.join("blue.png"), [30, 60, 200]);
    // An existing Lightroom-style sidecar with a rating and keywords.
    std::fs::write(
        photos.join("red.xmp"),
        r#"<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:dc="http://purl.org/dc/elements/1.1/" xmp:Rating="4">
   <dc:subject><rdf:Bag><rdf:li>holiday</rdf:li><rdf:li>sea</rdf:li></rdf:Bag></dc:subject>
   <dc:description><rdf:Alt><rdf:li xml:lang="x-default">typed by hand</rdf:li></rdf:Alt></dc:description>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>"#,
    )
    .unwrap();
    let fake = Arc::new(Fake::default());
    let m = model("a");
    let opts = IndexOptions {
        xmp: Some(SidecarName::Base),
        ..IndexOptions::default()
    };
    let s = index(&db, std::slice::from_ref(&photos), &fake, &m, &opts);
    assert_eq!((s.added, s.sidecars_written, s.sidecars_failed), (2, 2, 0));
    assert!(s.to_string().ends_with("sidecars written 2"), "{s}");
    // Up to date: nothing is written again.
    let s = index(&db, std::slice::from_ref(&photos), &fake, &m, &opts);
    assert_eq!((s.unchanged, s.sidecars_written), (2, 0));
    // darktable's names.
    let full = IndexOptions {
        xmp: Some(SidecarName::Full),
        ..IndexOptions::default()
    };
    index(&db, std::slice::from_ref(&photos), &fake, &m, &full);
    assert!(photos.join("blue.png.xmp").is_file());

    let Some(exiftool) = find_program(&["exiftool"]) else {
        if std::env::var_os("CI").is_some() {
            panic!("exiftool is required in CI (.ci/run installs libimage-exiftool-perl)");
        }
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED the ExifTool half of xmp_sidecars_are_written_merged_and_read_back_by_exiftool: \
             exiftool not found (apt-get install libimage-exiftool-perl)"
        );
        return;
    };
    let out = std::process::Command::new(exiftool)
        .args([
            "-j",
            "-XMP-dc:Description",
            "-XMP-xmp:Rating",
            "-XMP-dc:Subject",
        ])
        .arg(photos.join("red.xmp"))
        .arg(photos.join("blue.xmp"))
        .arg(photos.join("blue.png.xmp"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tags: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(tags[0]["Description"], "a mostly red picture", "{tags}");
    assert_eq!(tags[0]["Rating"], 4, "the rating was lost: {tags}");
    assert_eq!(
        tags[0]["Subject"],
        serde_json::json!(["holiday", "sea"]),
        "{tags}"
    );
    assert_eq!(tags[1]["Description"], "a mostly blue picture", "{tags}");
    assert_eq!(tags[2]["Description"], "a mostly blue picture", "{tags}");
}

#[test]
fn shard_libraries_merge_into_the_unsharded_library() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("p").canonicalize_or_create();
    for i in 0..30u8 {
        png(
            &photos.join(format!("d{}/img{i:02}.png", i % 3)),
            [i * 8, 255 - i * 8, i.wrapping_mul(37)],
        );
    }
    let fake = Arc::new(Fake::default());
    let m = model("a");
    let whole = dir.path().join("whole.db");
    index(
        &whole,
        std::slice::from_ref(&photos),
        &fake,
        &m,
        &IndexOptions::default(),
    );
    let mut shard_dbs = Vec::new();
    let mut sizes = Vec::new();
    for i in 0..3 {
        let db = dir.path().join(format!("lib.shard-{i}-of-3.db"));
        let opts = IndexOptions {
            shard: Some(Shard::new(i, 3).unwrap()),
            ..IndexOptions::default()
        };
        sizes.push(index(&db, std::slice::from_ref(&photos), &fake, &m, &opts).added);
        shard_dbs.push(db);
    }
    assert_eq!(sizes.iter().sum::<usize>(), 30, "{sizes:?}");
    assert!(sizes.iter().all(|&n| n > 0), "{sizes:?}");
    let merged = dir.path().join("merged.db");
    let s = merge_shards(&merged, &shard_dbs, &Silent).unwrap();
    assert_eq!((s.shards, s.images), (3, 30));
    assert_eq!(rows(&merged), rows(&whole));
    assert_intact(&merged);
    // Merging again changes nothing; a database that is not a library is refused.
    merge_shards(&merged, &shard_dbs, &Silent).unwrap();
    assert_eq!(rows(&merged), rows(&whole));
    let junk = dir.path().join("junk.db");
    rusqlite::Connection::open(&junk)
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    let err = merge_shards(&merged, &[junk], &Silent)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("junk.db") && err.contains("not a captioner library"),
        "{err}"
    );
}
