//! The fuzz harnesses: one `pub fn` per input surface, each taking the fuzzer's bytes. Shared by
//! the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`, nightly, libFuzzer) and by the stable replay
//! test (`tests/it/fuzz_replay.rs`), which runs every file of `fuzz/corpus/<target>/` and
//! `fuzz/regressions/<target>/` through the same function. A harness fails by panicking: either
//! the library panicked, or one of the properties asserted here does not hold.
//!
//! Every harness goes through the library's public API, the way the commands use it: `caption`
//! decodes and preprocesses, `train` loads `.pth`/`.safetensors` backbones, `caption`/`serve` load
//! run checkpoints and exports, `inspect`/`train` read the corpora, `fetch` extracts zips, `serve`
//! takes uploads.

// Each target uses one of these functions; the others are dead code in its binary.
#![allow(dead_code)]

use captioner::vision::header::{probe_bytes, MAX_IMAGE_PIXELS};
use captioner::Error;
use std::path::{Path, PathBuf};

/// A fresh temporary directory holding `bytes` as the file `name`, for the readers that take paths.
fn temp_file(name: &str, bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).expect("write the input");
    (dir, path)
}

// ---------------------------------------------------------------------------------------------
// image

/// Image decoding and preprocessing, as `caption` does it for a file (`preprocess_file_sized`
/// is `load_rgb` = read + `decode_rgb`, then `preprocess_sized`): every format the `image` crate
/// is built with, JPEG through libjpeg-turbo, GIF's first frame. Properties: no panic; a decoded
/// image has pixels and is within the pixel limit; preprocessing gives 3×224×224 finite values;
/// a pixel-limit refusal really is over the limit; the upload path's header probe never lets
/// through an image that decoding refuses for its size.
pub fn image(data: &[u8]) {
    use captioner::vision::decode::decode_rgb;
    use captioner::vision::preprocess::preprocess_sized;
    use captioner::vision::IMAGE_SIZE;

    let probed = probe_bytes(data, "upload");
    match decode_rgb(data, Path::new("fuzz-input")) {
        Ok(img) => {
            let (w, h) = img.dimensions();
            assert!(w > 0 && h > 0, "decoded an image without pixels: {w}x{h}");
            let pixels = u64::from(w) * u64::from(h);
            assert!(
                pixels <= MAX_IMAGE_PIXELS,
                "decoded {w}x{h} = {pixels} pixels, over the limit {MAX_IMAGE_PIXELS}"
            );
            let planes = preprocess_sized(&img, IMAGE_SIZE);
            assert_eq!(planes.len(), 3 * IMAGE_SIZE * IMAGE_SIZE);
            assert!(
                planes.iter().all(|v| v.is_finite()),
                "non-finite pixel value"
            );
            if let Ok(header) = &probed {
                assert!(
                    u64::from(header.width) * u64::from(header.height) <= MAX_IMAGE_PIXELS,
                    "probe accepted {header:?} over the limit"
                );
            }
        }
        Err(Error::PixelLimit { pixels, limit, .. }) => {
            assert!(
                pixels > limit,
                "refused {pixels} pixels under the limit {limit}"
            );
            assert!(
                matches!(probed, Err(Error::PixelLimit { .. })),
                "decode refused the size but the upload probe said {probed:?}"
            );
        }
        Err(_) => {}
    }
}

// ---------------------------------------------------------------------------------------------
// pth

/// A `.pth` (torch.save zip) backbone, read by `model::pth::load_pth` directly and through
/// `load_state_dict` (which sniffs the format, as `train --backbone` does). Properties: no
/// panic, no allocation beyond what the file really holds (libFuzzer's -rss_limit_mb and
/// -malloc_limit_mb catch that), nothing executed (no GLOBAL outside the allowlist is ever
/// accepted: the loaded tensors are plain data), and every tensor's bytes come from the file.
pub fn pth(data: &[u8]) {
    use captioner::model::pth::load_pth;
    use captioner::model::weights::load_state_dict;

    let (_dir, path) = temp_file("weights.pth", data);
    if let Ok(tensors) = load_pth(&path) {
        for (name, t) in &tensors {
            // A tensor holds at most its storage's elements, and a storage's bytes are read
            // from the archive; a zip entry inflates at most ~1032x (deflate's limit).
            let bytes = t.elem_count() * t.dtype().size_in_bytes();
            assert!(
                bytes <= data.len().saturating_mul(1100).max(1 << 16),
                "tensor {name} holds {bytes} bytes from a {}-byte file",
                data.len()
            );
        }
    }
    let _ = load_state_dict(&path);
}

// ---------------------------------------------------------------------------------------------
// safetensors

/// A `.safetensors` file read by every loader that takes one: a backbone (`load_state_dict`), a
/// run's `best.safetensors` / `last/weights` (`CaptionModel::load`), the optimiser state of
/// `last/` (candle's `safetensors::load`, as `load_last` reads it), and an exported model
/// (`read_export`, then the whole `Captioner::load` that `caption --model FILE` and `serve` do).
/// Property: no panic; whatever loads is the same through the export reader and the full load.
pub fn safetensors(data: &[u8]) {
    use candle_core::Device;
    use captioner::export::read_export;
    use captioner::model::weights::load_state_dict;
    use captioner::model::CaptionModel;
    use captioner::Captioner;

    let (_dir, path) = temp_file("model.safetensors", data);
    let cpu = Device::Cpu;
    let _ = load_state_dict(&path);
    let _ = CaptionModel::load(&path, &cpu);
    let _ = candle_core::safetensors::load(&path, &cpu);
    let export = read_export(&path);
    let full = Captioner::load(&path, &cpu);
    if full.is_ok() {
        assert!(
            export.is_ok(),
            "Captioner::load accepted what read_export refused"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// corpus readers and the vocabulary

/// Checks what a corpus reader returned: every image has a name and at least one caption.
fn check_parsed(parsed: &captioner::data::parsed::ParsedCaptions) {
    for image in &parsed.images {
        assert!(!image.file.is_empty(), "an image without a name");
    }
}

/// Kaggle's `captions.txt` (CSV, header `image,caption`), as `inspect`/`train` read it.
pub fn kaggle_csv(data: &[u8]) {
    let (_dir, path) = temp_file("captions.txt", data);
    if let Ok(parsed) = captioner::data::kaggle::read(&path) {
        check_parsed(&parsed);
    }
}

/// The original `Flickr8k.token.txt` (`name.jpg#k<TAB>caption` per line).
pub fn token_file(data: &[u8]) {
    let (_dir, path) = temp_file("Flickr8k.token.txt", data);
    if let Ok(parsed) = captioner::data::token_file::read(&path) {
        check_parsed(&parsed);
    }
}

/// Karpathy's `dataset_flickr8k.json`.
pub fn karpathy_json(data: &[u8]) {
    let (_dir, path) = temp_file("dataset_flickr8k.json", data);
    if let Ok(parsed) = captioner::data::karpathy::read(&path) {
        check_parsed(&parsed);
    }
}

/// A run's `vocab.json`. Properties: no panic; a vocabulary that loads encodes and decodes any
/// text, and survives a save and load unchanged.
pub fn vocab_json(data: &[u8]) {
    use captioner::text::Vocabulary;

    let (dir, path) = temp_file("vocab.json", data);
    let Ok(vocab) = Vocabulary::load(&path) else {
        return;
    };
    let text = String::from_utf8_lossy(data);
    let ids = vocab.encode(&text);
    assert!(
        ids.iter().all(|&id| (id as usize) < vocab.len()),
        "encode gave an id outside the vocabulary"
    );
    let _ = vocab.decode(&ids);
    let _ = vocab.decode(&[0, 1, 2, 3, u32::MAX]);
    let again = dir.path().join("again.json");
    vocab.save(&again).expect("a loaded vocabulary saves");
    assert_eq!(
        Vocabulary::load(&again).expect("a saved vocabulary loads"),
        vocab
    );
}

// ---------------------------------------------------------------------------------------------
// zip extraction

/// `fetch`'s zip extraction (`fetch::extract_zip`), with and without an `only` list. The archive
/// lies outside a parent directory that holds nothing but the target directory and a sentinel
/// file; after extraction (whether it succeeded or not) a walk of the parent must find nothing
/// outside the target, no symbolic link anywhere, and the sentinel untouched.
pub fn zip_extract(data: &[u8]) {
    use captioner::fetch::extract_zip;

    let (_archive_dir, archive) = temp_file("archive.zip", data);
    for only in [None, Some(&["dataset_flickr8k.json", "a.txt"][..])] {
        let parent = tempfile::tempdir().expect("temp dir");
        let sentinel = parent.path().join("sentinel");
        std::fs::write(&sentinel, b"untouched").expect("write the sentinel");
        let target = parent.path().join("out");
        let result = extract_zip(&archive, &target, only);
        check_confined(parent.path(), &target, &sentinel, &result);
    }
}

fn check_confined(
    parent: &Path,
    target: &Path,
    sentinel: &Path,
    result: &captioner::Result<usize>,
) {
    let mut stack = vec![parent.to_path_buf()];
    let mut files = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let entry = entry.expect("dir entry");
            let path = entry.path();
            let kind = entry.file_type().expect("file type");
            assert!(
                !kind.is_symlink(),
                "extraction made a symbolic link: {} ({result:?})",
                path.display()
            );
            if path == sentinel {
                continue;
            }
            assert!(
                path.starts_with(target),
                "extraction wrote outside the target folder: {} ({result:?})",
                path.display()
            );
            if kind.is_dir() {
                stack.push(path);
            } else {
                files += 1;
            }
        }
    }
    assert_eq!(
        std::fs::read(sentinel).expect("the sentinel is still there"),
        b"untouched"
    );
    if let Ok(n) = result {
        assert_eq!(*n, files, "extract_zip counted {n} files, wrote {files}");
    }
}

// ---------------------------------------------------------------------------------------------
// http_upload

/// The `serve` API with a real (tiny, random) model: the first byte picks how the rest is sent to
/// `POST /api/caption`, the second the query string. Properties: the server never panics, every
/// answer is a status a client fault or a busy server may get (200, 400, 413, 415, 422, 503:
/// never another 5xx), and a well-formed request carrying an image that decodes is captioned (200).
pub fn http_upload(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Some((&query, rest)) = rest.split_first() else {
        return;
    };
    const QUERIES: [(&str, bool); 7] = [
        ("", true),
        ("?beam=1", true),
        ("?beam=3", true),
        ("?beam=0", false),
        ("?beam=x", false),
        ("?beam=11", false),
        ("?beam=2&beam=9999999999999999999999", false),
    ];
    let (query, beam_ok) = QUERIES[usize::from(query) % QUERIES.len()];
    const TYPES: [(&str, bool, bool); 8] = [
        // content type, accepted raw, accepted in a form
        ("image/png", true, true),
        ("image/jpeg", true, true),
        ("IMAGE/WebP; q=1", true, true),
        ("application/octet-stream", false, true),
        ("text/plain", false, false),
        ("", false, true),
        ("image/", true, true),
        ("multipart/form-data", false, false),
    ];
    let server = server();
    let limit = HTTP_MAX_UPLOAD;
    let (request, image, accepted) = match mode % 4 {
        // A raw body with a chosen content type.
        0 => {
            let Some((&t, body)) = rest.split_first() else {
                return;
            };
            let (ct, raw_ok, _) = TYPES[usize::from(t) % TYPES.len()];
            let headers = if ct.is_empty() {
                String::new()
            } else {
                format!("Content-Type: {ct}\r\n")
            };
            (raw_request(query, &headers, body), body, raw_ok)
        }
        // A well-formed form whose `image` field holds the bytes, with a chosen part type.
        1 => {
            let Some((&t, body)) = rest.split_first() else {
                return;
            };
            let (ct, _, form_ok) = TYPES[usize::from(t) % TYPES.len()];
            let mut form = Vec::new();
            form.extend_from_slice(b"--FUZZBOUNDARY\r\n");
            form.extend_from_slice(
                b"Content-Disposition: form-data; name=\"image\"; filename=\"x\"\r\n",
            );
            if !ct.is_empty() {
                form.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
            }
            form.extend_from_slice(b"\r\n");
            form.extend_from_slice(body);
            form.extend_from_slice(b"\r\n--FUZZBOUNDARY--\r\n");
            let headers = "Content-Type: multipart/form-data; boundary=FUZZBOUNDARY\r\n";
            (raw_request(query, headers, &form), body, form_ok)
        }
        // The bytes are the whole multipart body (the fuzzer writes the envelope).
        2 => {
            let headers = "Content-Type: multipart/form-data; boundary=FUZZBOUNDARY\r\n";
            (raw_request(query, headers, rest), &[][..], false)
        }
        // The bytes are the whole HTTP request.
        _ => (rest.to_vec(), &[][..], false),
    };
    let status = exchange(server, &request, mode % 4 == 3);
    let Some(status) = status else {
        // No answer at all: only acceptable when the request was not a well-formed one.
        assert!(
            mode % 4 >= 2 || image.len() > limit,
            "no HTTP answer to a well-formed request"
        );
        return;
    };
    if mode % 4 >= 2 {
        // Fuzzer-written envelopes and requests may reach other routes and methods (404, 405)
        // or hyper's own refusals: any client error, but no server error other than busy.
        assert!(
            status < 500 || status == 503,
            "status {status} for client bytes (mode {mode}, query {query:?})"
        );
        return;
    }
    assert!(
        matches!(status, 200 | 400 | 413 | 415 | 422 | 503),
        "status {status} for a caption request (mode {mode}, query {query:?})"
    );
    if mode % 4 == 1 && image.windows(14).any(|w| w == b"--FUZZBOUNDARY") {
        // The bytes end the form's field early: the server sees another upload.
        return;
    }
    let decodes = captioner::vision::decode::decode_rgb(image, Path::new("upload")).is_ok();
    if accepted && beam_ok && image.len() <= limit && decodes {
        assert_eq!(status, 200, "a decodable image was not captioned");
    }
    if status == 200 {
        assert!(
            decodes && accepted && beam_ok,
            "200 for an upload that is not an image"
        );
    }
}

/// Largest upload the fuzzed server accepts (413 above).
const HTTP_MAX_UPLOAD: usize = 64 * 1024;

fn raw_request(query: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST /api/caption{query} HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n{headers}\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// Sends `request` on a fresh connection and returns the answer's status, if one came. A raw
/// request (`half_close`) may be incomplete: the write side is closed after it so that the server
/// stops waiting for the rest (hyper may then drop the request unanswered).
fn exchange(addr: std::net::SocketAddr, request: &[u8], half_close: bool) -> Option<u16> {
    use std::io::{Read, Write};
    use std::time::Duration;

    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the fuzzed server");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("read timeout");
    // The server may answer (413, 415) and close before reading the whole body.
    let _ = stream.write_all(request);
    if half_close {
        let _ = stream.shutdown(std::net::Shutdown::Write);
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let line = answer.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_whitespace();
    if !words.next()?.starts_with("HTTP/1.") {
        panic!("not an HTTP answer: {line:?}");
    }
    words.next()?.parse().ok()
}

/// The server, started once per process with a tiny random model: a ResNet-18 trunk seeing
/// 32×32 images and a small LSTM decoder, as a run directory `Captioner::load` reads.
fn server() -> std::net::SocketAddr {
    static ADDR: std::sync::OnceLock<std::net::SocketAddr> = std::sync::OnceLock::new();
    *ADDR.get_or_init(|| {
        use candle_core::Device;
        use captioner::model::resnet::init::random_state_dict;
        use captioner::model::resnet::Arch;
        use captioner::model::weights::{save_safetensors, sha256_file};
        use captioner::model::CaptionModel;
        use captioner::run::{RunConfig, TrainConfig, RUN_FORMAT};
        use captioner::serve::{self, ServeConfig};
        use captioner::text::Vocabulary;
        use captioner::Captioner;
        use rand_chacha::rand_core::SeedableRng;
        use std::sync::Arc;
        use std::time::Duration;

        let dir = tempfile::tempdir().expect("temp dir").keep();
        let backbone = dir.join("resnet18.safetensors");
        save_safetensors(&backbone, &random_state_dict(Arch::ResNet18, 0).unwrap()).unwrap();
        let vocab = Vocabulary::build(["a red square", "two green circles on a blue ground"], 1);
        vocab.save(&dir.join("vocab.json")).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let model = CaptionModel::new(512, vocab.len(), 8, 8, &mut rng, &Device::Cpu).unwrap();
        model.save(&dir.join("best.safetensors")).unwrap();
        let config = RunConfig {
            format: RUN_FORMAT.into(),
            data: dir.join("data"),
            layout: "kaggle".into(),
            arch: Arch::ResNet18.to_string(),
            backbone_sha256: sha256_file(&backbone).unwrap(),
            backbone,
            preprocess_version: captioner::vision::preprocess_version(32),
            image_size: 32,
            feature_cache: dir.join("cache"),
            min_freq: 1,
            vocab_from: "train".into(),
            split_source: "random".into(),
            preset: None,
            train: TrainConfig::new(512, vocab.len()),
        };
        config.save(&dir).unwrap();
        let captioner = Captioner::load(&dir, &Device::Cpu).expect("the tiny model loads");
        let cfg = ServeConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            workers: 1,
            queue: 8,
            max_upload_bytes: HTTP_MAX_UPLOAD,
            timeout: Duration::from_secs(60),
            max_batch: 1,
            ..ServeConfig::default()
        };
        let handle = serve::start(Arc::new(captioner), cfg).expect("the server starts");
        let addr = handle.addr();
        // Serves until the process ends.
        std::mem::forget(handle);
        addr
    })
}
