//! `captioner index`, `search` and `index-merge` with the real (tiny, trained) model: the summary
//! line, the output formats, XMP read back by ExifTool, kill -9 at random moments then resume,
//! two runs at once on one library, and N = 3 shards merged equal to one unsharded run. Each
//! result is compared with a clean run's rows and the database passes `PRAGMA integrity_check`.
//! Also `caption` over the same folder, read only up to its first line (`| head -1`).

use crate::caption::trained;
use crate::common::{exe, first_line_then_close, ok, run_ok, synth};
use crate::library::{assert_intact, rows};
use crate::webdriver::find_program;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A few hundred small images and the library of one clean, uninterrupted run over them.
struct Corpus {
    _dir: tempfile::TempDir,
    images: PathBuf,
    clean: PathBuf,
    clean_time: Duration,
}

const IMAGES: usize = 200;

fn corpus() -> &'static Corpus {
    static C: OnceLock<Corpus> = OnceLock::new();
    C.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        synth(&dir.path().join("synth"), IMAGES);
        let images = dir.path().join("synth").join("Images");
        let clean = dir.path().join("clean.db");
        let t0 = Instant::now();
        let out = ok(index_cmd(&images, &clean, &[]).output().unwrap());
        let clean_time = t0.elapsed();
        assert_eq!(
            out.trim(),
            format!("added {IMAGES}, updated 0, moved 0, unchanged 0, removed 0, failed 0")
        );
        Corpus {
            _dir: dir,
            images,
            clean,
            clean_time,
        }
    })
}

/// `captioner index PATH --model (the tiny model) --db DB --no-progress` plus `extra`.
fn index_cmd(path: &Path, db: &Path, extra: &[&str]) -> Command {
    let mut c = exe();
    c.arg("index")
        .arg(path)
        .arg("--model")
        .arg(&trained().run)
        .arg("--db")
        .arg(db)
        .arg("--no-progress")
        .args(extra);
    c
}

fn search(db: &Path, args: &[&str]) -> std::process::Output {
    exe()
        .arg("search")
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn index_then_search_in_every_format_and_xmp_for_exiftool() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    std::fs::create_dir_all(photos.join("trip")).unwrap();
    let mut names = Vec::new();
    for (i, e) in std::fs::read_dir(trained().data.join("Images"))
        .unwrap()
        .take(10)
        .enumerate()
    {
        let src = e.unwrap().path();
        let name = format!("{}photo{i}.jpg", if i < 3 { "trip/" } else { "" });
        std::fs::copy(&src, photos.join(&name)).unwrap();
        names.push(name);
    }
    std::fs::write(photos.join("broken.jpg"), b"\xff\xd8\xff truncated").unwrap();
    let db = dir.path().join("lib.db");
    let out = index_cmd(&photos, &db, &["--beam", "3", "--xmp", "--batch-size", "4"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "one image failed: {stdout}");
    assert_eq!(
        stdout.trim(),
        "added 10, updated 0, moved 0, unchanged 0, removed 0, failed 1, sidecars written 10"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("broken.jpg"),
        "the failure names the file"
    );
    // A second run: unchanged, exit 0 (the failure is recorded, not retried), model not loaded.
    let again = ok(index_cmd(&photos, &db, &["--beam", "3", "--xmp"])
        .output()
        .unwrap());
    assert_eq!(
        again.trim(),
        "added 0, updated 0, moved 0, unchanged 11, removed 0, failed 0, sidecars written 0"
    );

    // --all: every captioned image, by path; jsonl rows as `caption --format jsonl`.
    let all = ok(search(&db, &["--all", "--format", "jsonl"]));
    let all: Vec<Value> = all
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(all.len(), 10);
    let first = &all[0];
    let caption = first["caption"].as_str().unwrap().to_string();
    assert!(!caption.is_empty());
    assert!(
        first["image"].as_str().unwrap().ends_with("photo3.jpg"),
        "{first}"
    );
    // Beam alternatives are kept.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let alts: i64 = conn
        .query_row(
            "SELECT count(*) FROM images WHERE alternatives <> ''",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(alts > 0, "no beam alternatives stored");

    // Searching a caption's words finds its image, with a score, in every format.
    let word = caption
        .split(' ')
        .rfind(|w| w.len() > 3)
        .unwrap_or(&caption)
        .to_string();
    let hits = ok(search(&db, &[&word, "--format", "jsonl", "--limit", "50"]));
    let hits: Vec<Value> = hits
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!hits.is_empty(), "{word}");
    for h in &hits {
        // BM25 of a word in every caption of a tiny library is ~0 (its IDF is floored), never < 0.
        assert!(h["score"].as_f64().unwrap() >= 0.0, "{h}");
        assert_eq!(h.as_object().unwrap().len(), 3, "{h}");
    }
    assert!(hits.iter().any(|h| h["image"] == first["image"]));
    let text = ok(search(&db, &[&word, "--limit", "1"]));
    let fields: Vec<&str> = text.trim_end().split('\t').collect();
    assert_eq!(fields.len(), 3, "{text}");
    assert!(fields[1].parse::<f64>().is_ok(), "{text}");
    let csv = ok(search(&db, &[&word, "--format", "csv"]));
    assert!(csv.starts_with("image,caption,score\n"), "{csv}");
    // Nothing found: exit 0, nothing on stdout. FTS syntax: searched as words, never an error.
    for q in ["zebra", "\"unbalanced", "a* -b (c:d) OR NEAR(", "\"\"", ")"] {
        let out = search(&db, &[q, "--format", "csv"]);
        assert!(
            out.status.success(),
            "{q}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stdout.is_empty(),
            "{q}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // A missing library is a clear error.
    let out = search(&dir.path().join("missing.db"), &["x"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a missing --db is a usage error"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such library"));

    // The sidecars, read by ExifTool.
    let Some(exiftool) = find_program(&["exiftool"]) else {
        if std::env::var_os("CI").is_some() {
            panic!("exiftool is required in CI (.ci/run installs libimage-exiftool-perl)");
        }
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED the ExifTool check of index_then_search_in_every_format_and_xmp_for_exiftool: \
             exiftool not found (apt-get install libimage-exiftool-perl)"
        );
        return;
    };
    let image: &str = first["image"].as_str().unwrap();
    let sidecar = Path::new(image).with_extension("xmp");
    let out = Command::new(exiftool)
        .args(["-s3", "-XMP-dc:Description"])
        .arg(&sidecar)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), caption);
}

/// Rows of a library whose images are captioned (a partial run has fewer).
fn count(db: &Path) -> usize {
    if !db.exists() {
        return 0;
    }
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("SELECT count(*) FROM images", [], |r| r.get::<_, i64>(0))
        .map(|n| n as usize)
        .unwrap_or(0)
}

#[test]
fn kill_9_at_random_moments_then_resume_equals_a_clean_run() {
    let c = corpus();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("killed.db");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(17);
    let mut partial = Vec::new();
    for i in 0..4 {
        // Spread over the run: kill i lands around (i + 1) / 5 of a clean run's time, jittered;
        // each resumed run skips what the killed ones committed.
        let base = c.clean_time.as_secs_f64() * 0.25;
        let delay = Duration::from_secs_f64(base * rng.random_range(0.3..1.2));
        let mut child = index_cmd(&c.images, &db, &["--batch-size", "8"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let n = count(&db);
        partial.push(n);
        if db.exists() {
            assert_intact(&db);
        }
        eprintln!("kill {i} after {delay:?}: {n} rows committed");
    }
    assert!(
        partial.iter().any(|&n| n > 0 && n < IMAGES),
        "no kill landed in the middle of the run: {partial:?}"
    );
    let out = ok(index_cmd(&c.images, &db, &[]).output().unwrap());
    let done = partial.last().copied().unwrap_or(0);
    assert!(
        out.contains(&format!("unchanged {done},")),
        "{out} after {partial:?}"
    );
    assert_eq!(rows(&db), rows(&c.clean));
    assert_intact(&db);
}

#[test]
fn two_runs_at_once_on_one_library_both_finish_with_the_clean_rows() {
    let c = corpus();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.db");
    let children: Vec<_> = (0..2)
        .map(|_| {
            index_cmd(&c.images, &db, &["--batch-size", "8"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut succeeded = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            succeeded += 1;
        } else {
            // The only acceptable failure is a clear "locked by another writer".
            assert!(stderr.contains("locked by another writer"), "{stderr}");
        }
    }
    assert!(succeeded >= 1);
    // Whatever happened, one more run leaves the library equal to a clean one.
    run_ok(&mut index_cmd(&c.images, &db, &[]));
    assert_eq!(rows(&db), rows(&c.clean));
    assert_intact(&db);
}

#[test]
fn three_shards_merged_equal_one_unsharded_run() {
    let c = corpus();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("lib.db");
    let mut shard_dbs = Vec::new();
    let mut total = 0;
    for i in 0..3 {
        let mut cmd = index_cmd(&c.images, &db, &[]);
        if i == 2 {
            // A Kubernetes Indexed Job: the index from the environment, the count from --shards.
            cmd.env("JOB_COMPLETION_INDEX", "2").args(["--shards", "3"]);
        } else {
            cmd.args(["--shard", &format!("{i}/3")]);
        }
        let out = ok(cmd.output().unwrap());
        let added: usize = out
            .strip_prefix("added ")
            .and_then(|s| s.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{out}"));
        assert!(added > 0 && added < IMAGES, "shard {i}: {out}");
        total += added;
        let shard_db = dir.path().join(format!("lib.shard-{i}-of-3.db"));
        assert!(shard_db.is_file(), "shard {i} wrote {}", shard_db.display());
        shard_dbs.push(shard_db);
    }
    assert_eq!(total, IMAGES);
    assert!(!db.exists(), "shards write their own files");
    let out = ok(exe()
        .arg("index-merge")
        .arg("--db")
        .arg(&db)
        .args(&shard_dbs)
        .output()
        .unwrap());
    assert!(
        out.contains(&format!("merged {IMAGES} images from 3 shards")),
        "{out}"
    );
    assert_eq!(rows(&db), rows(&c.clean));
    assert_intact(&db);
}

#[test]
fn caption_ends_quietly_when_its_reader_leaves_early() {
    let c = corpus();
    // 200 lines of ~100 bytes: more than one 8 KB buffer, so a write comes after the reader left.
    let mut cmd = exe();
    cmd.arg("caption")
        .arg(&c.images)
        .arg("--model")
        .arg(&trained().run)
        .arg("--no-progress");
    let (first, out) = first_line_then_close(cmd);
    assert!(first.contains(".jpg\t"), "{first}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("error"), "{err}");
}
