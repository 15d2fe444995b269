//! `captioner fetch` against a tiny HTTP/1.1 server on loopback: success, resume after a cut
//! connection, checksum mismatch, 404, a server that ignores Range, zip safety, and the CLI
//! unpacking Flickr8k-shaped zips through `--mirror`.

use crate::common::exe;
use captioner::fetch::{self, Asset, Checksum, Downloaded, FetchOptions};
use captioner::progress::Silent;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// How the server answers the next requests.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Normal,
    /// Send the headers of the full answer, then only this many body bytes, then hang up (once).
    CutAfter(usize),
    /// Answer 200 with the whole file, whatever Range says.
    IgnoreRange,
}

#[derive(Default)]
struct State {
    files: HashMap<String, Vec<u8>>,
    mode: Option<Mode>,
    /// (path, Range header) of every request seen.
    log: Vec<(String, Option<String>)>,
}

struct Server {
    base: String,
    state: Arc<Mutex<State>>,
}

impl Server {
    /// Serves `files` under `/files/<name>` on 127.0.0.1 with an OS-chosen port.
    fn start(files: &[(&str, Vec<u8>)]) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}/files", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            files: files
                .iter()
                .map(|(n, b)| (format!("/files/{n}"), b.clone()))
                .collect(),
            ..State::default()
        }));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        Server { base, state }
    }

    fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = Some(mode);
    }

    fn log(&self) -> Vec<(String, Option<String>)> {
        self.state.lock().unwrap().log.clone()
    }

    fn url(&self, name: &str) -> String {
        format!("{}/{name}", self.base)
    }
}

fn serve(mut stream: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let path = request_line.split(' ').nth(1).unwrap_or("").to_string();
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_string());
            }
        }
    }
    let (body, mode) = {
        let mut s = state.lock().unwrap();
        s.log.push((path.clone(), range.clone()));
        let mode = s.mode.unwrap_or(Mode::Normal);
        if let Mode::CutAfter(_) = mode {
            s.mode = Some(Mode::Normal); // one-shot
        }
        (s.files.get(&path).cloned(), mode)
    };
    let Some(body) = body else {
        let _ = stream.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found",
        );
        return;
    };
    let start = match (range.as_deref(), mode) {
        (_, Mode::IgnoreRange) | (None, _) => None,
        (Some(r), _) => r
            .strip_prefix("bytes=")
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|n| n.parse::<usize>().ok()),
    };
    let len = body.len();
    let (head, slice) = match start {
        Some(s) if s >= len => (
            format!("HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\n"),
            &body[..0],
        ),
        Some(s) => (
            format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {s}-{}/{len}\r\nContent-Length: {}\r\n",
                len - 1,
                len - s
            ),
            &body[s..],
        ),
        None => (
            format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n"),
            &body[..],
        ),
    };
    let _ = stream.write_all(format!("{head}Connection: close\r\n\r\n").as_bytes());
    let slice = match mode {
        Mode::CutAfter(k) => &slice[..k.min(slice.len())],
        _ => slice,
    };
    let _ = stream.write_all(slice);
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Both);
}

/// Deterministic bytes that do not compress (so a cut lands mid-body).
fn payload(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

fn sha256(bytes: &[u8]) -> Checksum {
    Checksum::sha256(&hex::encode(Sha256::digest(bytes)))
}

fn md5(bytes: &[u8]) -> Checksum {
    use md5::Md5;
    Checksum::md5(&hex::encode(Md5::digest(bytes)))
}

const NO_BAR: Silent = Silent;

#[test]
fn download_writes_the_verified_file_and_skips_it_next_time() {
    let data = payload(300_000, 1);
    let server = Server::start(&[("w.pth", data.clone())]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("w.pth");

    let got = fetch::download(&server.url("w.pth"), &dest, &sha256(&data), &NO_BAR).unwrap();
    assert_eq!(
        got,
        Downloaded::Fetched {
            bytes: data.len() as u64,
            resumed_from: 0
        }
    );
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    assert!(!fetch::part_path(&dest).exists());

    let again = fetch::download(&server.url("w.pth"), &dest, &sha256(&data), &NO_BAR).unwrap();
    assert_eq!(again, Downloaded::AlreadyThere);
    assert_eq!(
        server.log().len(),
        1,
        "a verified file must not be requested again"
    );
}

#[test]
fn a_cut_connection_keeps_the_part_and_the_rerun_resumes_with_range() {
    let data = payload(500_000, 2);
    let server = Server::start(&[("w.pth", data.clone())]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("w.pth");
    let url = server.url("w.pth");

    server.set_mode(Mode::CutAfter(123_457));
    let err = fetch::download(&url, &dest, &sha256(&data), &NO_BAR).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, captioner::Error::Download { .. }), "{msg}");
    assert!(
        msg.contains(&url) && msg.contains("connection cut"),
        "{msg}"
    );
    assert!(
        !dest.exists(),
        "an incomplete file must not appear under its final name"
    );
    let part = fetch::part_path(&dest);
    assert_eq!(std::fs::metadata(&part).unwrap().len(), 123_457);

    let got = fetch::download(&url, &dest, &sha256(&data), &NO_BAR).unwrap();
    assert_eq!(
        got,
        Downloaded::Fetched {
            bytes: (data.len() - 123_457) as u64,
            resumed_from: 123_457
        }
    );
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    assert!(!part.exists());
    let log = server.log();
    assert_eq!(log[0].1, None);
    assert_eq!(log[1].1.as_deref(), Some("bytes=123457-"));
}

#[test]
fn the_checksum_covers_the_resumed_prefix() {
    let data = payload(100_000, 7);
    let server = Server::start(&[("w.pth", data.clone())]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("w.pth");
    // A `.part` whose first bytes were damaged: the server only sends the rest.
    let mut prefix = data[..40_000].to_vec();
    prefix[10] ^= 0xFF;
    std::fs::write(fetch::part_path(&dest), &prefix).unwrap();

    let err = fetch::download(&server.url("w.pth"), &dest, &sha256(&data), &NO_BAR).unwrap_err();
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    assert_eq!(server.log()[0].1.as_deref(), Some("bytes=40000-"));
    assert!(!dest.exists() && !fetch::part_path(&dest).exists());

    // The next run starts from zero and succeeds.
    fetch::download(&server.url("w.pth"), &dest, &sha256(&data), &NO_BAR).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    assert_eq!(server.log()[1].1, None);
}

#[test]
fn a_server_ignoring_range_restarts_from_zero() {
    let data = payload(200_000, 3);
    let server = Server::start(&[("w.pth", data.clone())]);
    server.set_mode(Mode::IgnoreRange);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("w.pth");
    // A stale prefix that differs from the file: appending to it would fail the checksum.
    std::fs::write(fetch::part_path(&dest), vec![0xAAu8; 5000]).unwrap();

    let got = fetch::download(&server.url("w.pth"), &dest, &sha256(&data), &NO_BAR).unwrap();
    assert_eq!(
        got,
        Downloaded::Fetched {
            bytes: data.len() as u64,
            resumed_from: 0
        }
    );
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    assert_eq!(server.log()[0].1.as_deref(), Some("bytes=5000-"));
}

#[test]
fn a_complete_part_answered_416_is_verified_and_kept() {
    let data = payload(10_000, 4);
    let server = Server::start(&[("w.pth", data.clone())]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("w.pth");
    std::fs::write(fetch::part_path(&dest), &data).unwrap();

    let got = fetch::download(&server.url("w.pth"), &dest, &sha256(&data), &NO_BAR).unwrap();
    assert_eq!(
        got,
        Downloaded::Fetched {
            bytes: 0,
            resumed_from: 10_000
        }
    );
    assert_eq!(std::fs::read(&dest).unwrap(), data);
}

#[test]
fn a_checksum_mismatch_removes_the_file_and_names_both_digests() {
    let data = payload(50_000, 5);
    let server = Server::start(&[("w.pth", data.clone())]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("w.pth");
    let wrong = sha256(b"something else");

    let err = fetch::download(&server.url("w.pth"), &dest, &wrong, &NO_BAR).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("checksum mismatch"), "{msg}");
    assert!(msg.contains(wrong.hex()), "expected digest missing: {msg}");
    assert!(
        msg.contains(sha256(&data).hex()),
        "actual digest missing: {msg}"
    );
    assert!(msg.contains("w.pth"), "{msg}");
    assert!(!dest.exists());
    assert!(
        !fetch::part_path(&dest).exists(),
        "the bad partial file must be removed"
    );
}

#[test]
fn a_404_names_the_url_and_status() {
    let server = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let url = server.url("missing.pth");
    let err =
        fetch::download(&url, &dir.path().join("missing.pth"), &md5(b""), &NO_BAR).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&url) && msg.contains("404"), "{msg}");
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
}

#[test]
fn fetch_resnet50_through_a_mirror_saves_the_torchvision_file_name() {
    let data = payload(70_000, 6);
    let server = Server::start(&[("resnet50-11ad3fa6.pth", data.clone())]);
    let dir = tempfile::tempdir().unwrap();
    let opts = FetchOptions {
        mirror: Some(format!("{}/", server.base)),
        checksum_overrides: [("resnet50-11ad3fa6.pth".to_string(), sha256(&data))].into(),
    };
    let report = fetch::fetch(Asset::Resnet50, dir.path(), &opts, &Silent).unwrap();
    assert_eq!(report.files.len(), 1);
    assert_eq!(report.files[0].url, server.url("resnet50-11ad3fa6.pth"));
    assert_eq!(
        std::fs::read(dir.path().join("resnet50-11ad3fa6.pth")).unwrap(),
        data
    );
}

/// A zip of (name, bytes) entries; a name ending in `/` is a folder.
fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default();
    for (name, bytes) in entries {
        if name.ends_with('/') {
            w.add_directory(*name, opts).unwrap();
        } else {
            w.start_file(*name, opts).unwrap();
            w.write_all(bytes).unwrap();
        }
    }
    w.finish().unwrap().into_inner()
}

#[test]
fn extraction_skips_macosx_and_refuses_escaping_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good.zip");
    std::fs::write(
        &good,
        zip_of(&[
            ("top/", b""),
            ("top/a.txt", b"a"),
            ("__MACOSX/top/._a.txt", b"fork"),
        ]),
    )
    .unwrap();
    let out = tmp.path().join("out");
    assert_eq!(fetch::extract_zip(&good, &out, None).unwrap(), 1);
    assert_eq!(std::fs::read(out.join("top/a.txt")).unwrap(), b"a");
    assert!(!out.join("__MACOSX").exists());

    let evil = tmp.path().join("evil.zip");
    std::fs::write(&evil, zip_of(&[("ok.txt", b"ok"), ("../evil", b"x")])).unwrap();
    let out2 = tmp.path().join("out2");
    let msg = fetch::extract_zip(&evil, &out2, None)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("../evil") && msg.contains("evil.zip"), "{msg}");
    assert!(!tmp.path().join("evil").exists());
    assert!(
        !out2.join("ok.txt").exists(),
        "nothing is written from a refused archive"
    );
}

/// A small real JPEG.
fn jpeg(shade: u8) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(8, 6, image::Rgb([shade, 100, 200]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

fn run_cli(args: &[&str], overrides: &Path) -> std::process::Output {
    exe()
        .args(args)
        .env("CAPTIONER_FETCH_TEST_CHECKSUMS", overrides)
        .output()
        .unwrap()
}

#[test]
fn cli_fetches_flickr8k_through_a_mirror_into_the_original_layout() {
    let (j1, j2) = (jpeg(10), jpeg(200));
    let images = zip_of(&[
        ("Flicker8k_Dataset/", b""),
        ("Flicker8k_Dataset/1000_a.jpg", &j1),
        ("Flicker8k_Dataset/1001_b.jpg", &j2),
        ("__MACOSX/Flicker8k_Dataset/._1000_a.jpg", b"fork"),
    ]);
    let token = "1000_a.jpg#0\tA dark square .\n1001_b.jpg#0\tA bright square .\n";
    // An extra top folder around the text files, which fetch must strip.
    let text = zip_of(&[
        ("Flickr8k_text/Flickr8k.token.txt", token.as_bytes()),
        ("Flickr8k_text/Flickr_8k.trainImages.txt", b"1000_a.jpg\n"),
        ("Flickr8k_text/Flickr_8k.devImages.txt", b"1001_b.jpg\n"),
        ("Flickr8k_text/Flickr_8k.testImages.txt", b""),
    ]);
    let server = Server::start(&[
        ("Flickr8k_Dataset.zip", images.clone()),
        ("Flickr8k_text.zip", text.clone()),
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let overrides = tmp.path().join("sums.json");
    std::fs::write(
        &overrides,
        serde_json::json!({
            "Flickr8k_Dataset.zip": md5(&images).to_string(),
            "Flickr8k_text.zip": md5(&text).to_string(),
        })
        .to_string(),
    )
    .unwrap();
    let dir = tmp.path().join("flickr8k");
    let dir_s = dir.to_str().unwrap();
    let mirror = server.base.clone();

    let out = run_cli(
        &["fetch", "flickr8k", "--dir", dir_s, "--mirror", &mirror],
        &overrides,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(dir.join("Flicker8k_Dataset/1000_a.jpg")).unwrap(),
        j1
    );
    assert_eq!(
        std::fs::read(dir.join("Flicker8k_Dataset/1001_b.jpg")).unwrap(),
        j2
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("Flickr8k.token.txt")).unwrap(),
        token
    );
    for split in ["train", "dev", "test"] {
        assert!(dir.join(format!("Flickr_8k.{split}Images.txt")).is_file());
    }
    assert!(!dir.join("__MACOSX").exists() && !dir.join("Flickr8k_text").exists());
    let decoded = image::open(dir.join("Flicker8k_Dataset/1001_b.jpg")).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (8, 6));

    // A rerun finds the extraction markers and asks the server for nothing.
    let requests = server.log().len();
    let out = run_cli(
        &["fetch", "flickr8k", "--dir", dir_s, "--mirror", &mirror],
        &overrides,
    );
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .matches("already there")
            .count(),
        2
    );
    assert_eq!(server.log().len(), requests);
}

#[test]
fn cli_karpathy_splits_extracts_only_flickr8k_and_reports_404s() {
    let json = br#"{"images": [], "dataset": "flickr8k"}"#;
    let zip = zip_of(&[
        ("dataset_flickr8k.json", json),
        ("dataset_coco.json", b"{}"),
    ]);
    let server = Server::start(&[("caption_datasets.zip", zip.clone())]);
    let tmp = tempfile::tempdir().unwrap();
    let overrides = tmp.path().join("sums.json");
    std::fs::write(
        &overrides,
        serde_json::json!({ "caption_datasets.zip": md5(&zip).to_string() }).to_string(),
    )
    .unwrap();
    let dir = tmp.path().join("k");
    let dir_s = dir.to_str().unwrap();

    let out = run_cli(
        &[
            "fetch",
            "karpathy-splits",
            "--dir",
            dir_s,
            "--mirror",
            &server.base,
        ],
        &overrides,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(dir.join("dataset_flickr8k.json")).unwrap(),
        json
    );
    assert!(!dir.join("dataset_coco.json").exists());

    // Nothing is served for the weights: exit code 1, the URL and the status in the message.
    let out = run_cli(
        &[
            "fetch",
            "resnet50-v1",
            "--dir",
            dir_s,
            "--mirror",
            &server.base,
        ],
        &overrides,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&server.url("resnet50-0676ba61.pth")) && stderr.contains("404"),
        "{stderr}"
    );
}
