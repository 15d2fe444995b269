//! `captioner serve` over real HTTP: every status code of the API, the queue and timeout paths,
//! and a graceful shutdown that finishes the request in flight. The server runs in-process on a
//! free loopback port with the fake engine (real decoding, mean-colour captions, chosen delay).

use crate::common::exe;
use captioner::serve::{self, FakeEngine, ServeConfig, ServerHandle};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn start(delay_ms: u64, cfg: ServeConfig) -> ServerHandle {
    let engine = Arc::new(FakeEngine::with_delay(Duration::from_millis(delay_ms)));
    serve::start(engine, cfg).expect("server starts")
}

fn config() -> ServeConfig {
    ServeConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        workers: 2,
        queue: 4,
        max_upload_bytes: 64 * 1024,
        timeout: Duration::from_secs(10),
        ..ServeConfig::default()
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

fn png(w: u32, h: u32, rgb: [u8; 3]) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(w, h, image::Rgb(rgb));
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// A BMP header claiming 10000x10000 pixels with no pixel data: a decompression bomb.
fn bomb_bmp() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"BM");
    b.extend_from_slice(&54u32.to_le_bytes()); // file size
    b.extend_from_slice(&0u32.to_le_bytes()); // reserved
    b.extend_from_slice(&54u32.to_le_bytes()); // pixel data offset
    b.extend_from_slice(&40u32.to_le_bytes()); // BITMAPINFOHEADER
    b.extend_from_slice(&10_000i32.to_le_bytes());
    b.extend_from_slice(&10_000i32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes()); // planes
    b.extend_from_slice(&24u16.to_le_bytes()); // bits per pixel
    b.extend_from_slice(&[0u8; 24]); // no compression, sizes, resolution, palette
    b
}

/// Status and JSON body of a raw POST to /api/caption.
fn post_raw(
    agent: &ureq::Agent,
    server: &ServerHandle,
    query: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> (u16, Value) {
    let url = format!("http://{}/api/caption{query}", server.addr());
    let mut req = agent.post(&url);
    if let Some(ct) = content_type {
        req = req.header("Content-Type", ct);
    }
    let mut res = req.send(body).expect("request goes through");
    let status = res.status().as_u16();
    (status, res.body_mut().read_json().expect("JSON body"))
}

/// Status and JSON body of a multipart POST with one field.
fn post_form(
    agent: &ureq::Agent,
    server: &ServerHandle,
    field: &str,
    field_type: &str,
    body: &[u8],
) -> (u16, Value) {
    let boundary = "captioner-test-boundary-7MA4YWxk";
    let mut form = Vec::new();
    form.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; \
             filename=\"x.png\"\r\nContent-Type: {field_type}\r\n\r\n"
        )
        .as_bytes(),
    );
    form.extend_from_slice(body);
    form.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let ct = format!("multipart/form-data; boundary={boundary}");
    post_raw(agent, server, "", Some(&ct), &form)
}

/// Polls /healthz until the pool reports `running` captions running and `waiting` waiting.
fn wait_for_load(server: &ServerHandle, running: u64, waiting: u64) {
    let url = format!("http://{}/healthz", server.addr());
    let t0 = Instant::now();
    loop {
        let health: Value = agent()
            .get(&url)
            .call()
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap();
        if health["running"] == running && health["waiting"] == waiting {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "load stays {health}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn error_of(body: &Value) -> &str {
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error in {body}"))
}

#[test]
fn captions_raw_and_multipart_uploads_with_200() {
    let server = start(0, config());
    let agent = agent();
    let (status, body) = post_raw(
        &agent,
        &server,
        "?beam=3",
        Some("image/png"),
        &png(20, 10, [220, 20, 30]),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["caption"], "a mostly red picture");
    assert_eq!(body["beam"], 3);
    assert!(body["ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{body}");

    let (status, body) = post_form(
        &agent,
        &server,
        "image",
        "image/png",
        &png(7, 9, [30, 60, 210]),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["caption"], "a mostly blue picture");
    assert_eq!(body["beam"], 1, "greedy unless asked");
}

#[test]
fn info_health_and_page() {
    let server = start(0, config());
    let agent = agent();
    let base = format!("http://{}", server.addr());
    let mut res = agent.get(format!("{base}/healthz")).call().unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.body_mut().read_json::<Value>().unwrap()["status"], "ok");

    let mut res = agent.get(format!("{base}/api/info")).call().unwrap();
    assert_eq!(res.status(), 200);
    let info: Value = res.body_mut().read_json().unwrap();
    assert_eq!(info["engine"]["backbone"], "fake (mean colour)");
    assert_eq!(info["server"]["workers"], 2);
    assert_eq!(info["server"]["max_upload_bytes"], 64 * 1024);

    let mut res = agent.get(&base).call().unwrap();
    assert_eq!(res.status(), 200);
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    let html = res.body_mut().read_to_string().unwrap();
    assert!(html.contains("id=\"file\"") && html.contains("/api/caption"));
    // Every asset is inline: nothing is loaded from another origin, or even from this one.
    let compact = html.replace('\'', "\"");
    for external in [
        "src=\"http",
        "href=\"http",
        "src=\"/",
        "href=\"/",
        "url(",
        "@import",
    ] {
        assert!(!compact.contains(external), "page loads {external}...");
    }

    let mut res = agent.get(format!("{base}/nope")).call().unwrap();
    assert_eq!(res.status(), 404);
    assert!(res.body_mut().read_json::<Value>().unwrap()["error"].is_string());
}

#[test]
fn bad_requests_get_400() {
    let server = start(0, config());
    let agent = agent();
    let (status, body) = post_raw(&agent, &server, "", Some("image/png"), b"not a png at all");
    assert_eq!(status, 400, "{body}");
    assert!(error_of(&body).contains("not an image"), "{body}");

    // A PNG cut after its header: the format is known but the pixels are missing.
    let truncated = &png(64, 64, [1, 2, 3])[..40];
    let (status, body) = post_raw(&agent, &server, "", Some("image/png"), truncated);
    assert_eq!(status, 400, "{body}");

    let (status, body) = post_raw(&agent, &server, "", Some("image/png"), b"");
    assert_eq!(status, 400, "{body}");
    assert!(error_of(&body).contains("0 bytes"), "{body}");

    let (status, body) = post_form(&agent, &server, "picture", "image/png", &png(4, 4, [0; 3]));
    assert_eq!(status, 400, "{body}");
    assert!(error_of(&body).contains("`image` field"), "{body}");

    for beam in ["0", "11", "abc"] {
        let q = format!("?beam={beam}");
        let (status, body) = post_raw(&agent, &server, &q, Some("image/png"), &png(4, 4, [9; 3]));
        assert_eq!(status, 400, "beam={beam}: {body}");
        assert!(error_of(&body).contains("beam"), "{body}");
    }
}

#[test]
fn non_images_get_415() {
    let server = start(0, config());
    let agent = agent();
    let image = png(4, 4, [200; 3]);
    for ct in [Some("text/plain"), Some("application/json"), None] {
        let (status, body) = post_raw(&agent, &server, "", ct, &image);
        assert_eq!(status, 415, "{ct:?}: {body}");
        assert!(error_of(&body).contains("not an image"), "{body}");
    }
    let (status, body) = post_form(&agent, &server, "image", "text/plain", &image);
    assert_eq!(status, 415, "{body}");
}

#[test]
fn uploads_over_the_limit_get_413() {
    let server = start(0, config());
    let agent = agent();
    // Noise does not compress: the PNG is well over the 64 KiB limit.
    let mut noise = image::RgbImage::new(160, 160);
    for (i, p) in noise.pixels_mut().enumerate() {
        let x = (i as u32).wrapping_mul(2_654_435_761);
        *p = image::Rgb([(x >> 24) as u8, (x >> 16) as u8, (x >> 8) as u8]);
    }
    let mut big = Vec::new();
    noise
        .write_to(&mut std::io::Cursor::new(&mut big), image::ImageFormat::Png)
        .unwrap();
    assert!(
        big.len() > 64 * 1024 && big.len() < 200 * 1024,
        "{}",
        big.len()
    );
    let (status, body) = post_raw(&agent, &server, "", Some("image/png"), &big);
    assert_eq!(status, 413, "{body}");
    assert!(error_of(&body).contains("64.0 KiB"), "{body}");
    let (status, body) = post_form(&agent, &server, "image", "image/png", &big);
    assert_eq!(status, 413, "{body}");
    // Just under the limit still goes through.
    let (status, body) = post_raw(&agent, &server, "", Some("image/png"), &big[..60 * 1024]);
    assert_eq!(
        status, 400,
        "a truncated PNG under the limit is read, then refused: {body}"
    );
}

#[test]
fn pixel_bombs_get_422() {
    let server = start(0, config());
    let agent = agent();
    let (status, body) = post_raw(&agent, &server, "", Some("image/bmp"), &bomb_bmp());
    assert_eq!(status, 422, "{body}");
    assert!(error_of(&body).contains("100000000 pixels"), "{body}");
}

#[test]
fn a_full_queue_gets_503_and_the_admitted_requests_finish() {
    let cfg = ServeConfig {
        workers: 1,
        queue: 1,
        ..config()
    };
    let server = Arc::new(start(1000, cfg));
    let image = png(4, 4, [250, 250, 250]);
    // One request runs, one waits: the server says so before the third is sent.
    let admitted: Vec<_> = (0..2)
        .map(|i| {
            let (shared, image) = (Arc::clone(&server), image.clone());
            let t = std::thread::spawn(move || {
                post_raw(&agent(), &shared, "", Some("image/png"), &image)
            });
            wait_for_load(&server, 1, i);
            t
        })
        .collect();
    let (status, body) = post_raw(&agent(), &server, "", Some("image/png"), &image);
    assert_eq!(status, 503, "{body}");
    assert!(error_of(&body).contains("busy"), "{body}");
    for t in admitted {
        let (status, body) = t.join().unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["caption"], "a mostly white picture");
    }
}

#[test]
fn a_slow_caption_gets_504() {
    let cfg = ServeConfig {
        workers: 1,
        timeout: Duration::from_millis(300),
        ..config()
    };
    let server = start(1500, cfg);
    let t0 = Instant::now();
    let (status, body) = post_raw(&agent(), &server, "", Some("image/png"), &png(4, 4, [0; 3]));
    assert_eq!(status, 504, "{body}");
    assert!(error_of(&body).contains("longer than 0.3 s"), "{body}");
    assert!(
        t0.elapsed() < Duration::from_millis(1400),
        "{:?}",
        t0.elapsed()
    );
}

#[test]
fn shutdown_lets_the_request_in_flight_finish_then_refuses_connections() {
    let server = start(1500, config());
    let addr = server.addr();
    let image = png(6, 6, [40, 170, 60]);
    let in_flight = std::thread::spawn(move || {
        let url = format!("http://{addr}/api/caption");
        let mut res = agent()
            .post(&url)
            .header("Content-Type", "image/png")
            .send(&image[..])
            .unwrap();
        let status = res.status().as_u16();
        (status, res.body_mut().read_json::<Value>().unwrap())
    });
    wait_for_load(&server, 1, 0);
    let asked = Instant::now();
    server.shutdown().expect("clean shutdown");
    // The caption was still being computed: shutdown waited for it rather than cutting it off.
    assert!(
        asked.elapsed() >= Duration::from_millis(200),
        "{:?}",
        asked.elapsed()
    );
    let (status, body) = in_flight.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["caption"], "a mostly green picture");
    assert!(
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err(),
        "the listener is closed after shutdown"
    );
}

#[test]
fn cli_refuses_bad_settings_and_an_unwired_model() {
    let out = exe()
        .args(["serve", "--model", "m.safetensors", "--addr", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "a missing --model is a usage error"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("m.safetensors"), "{err}");
    let out = exe()
        .args([
            "serve",
            "--fake-engine",
            "--workers",
            "0",
            "--addr",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "a bad flag value is a usage error"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--workers"));
}

/// An engine whose every caption fails inside the server: a model fault, not the client's.
struct BrokenEngine;

impl captioner::serve::CaptionEngine for BrokenEngine {
    fn caption_bytes(&self, _: &[u8], _: usize) -> captioner::Result<String> {
        Err(captioner::Error::Internal(
            "decoder state lost in /srv/models/secret.safetensors".into(),
        ))
    }
    fn info(&self) -> Value {
        serde_json::json!({})
    }
}

/// Keeps the log lines a server writes.
#[derive(Default)]
struct Log(std::sync::Mutex<Vec<String>>);

impl captioner::progress::Progress for Log {
    fn task(
        &self,
        _: &str,
        _: Option<u64>,
        _: captioner::progress::Unit,
    ) -> Box<dyn captioner::progress::Task> {
        Box::new(captioner::progress::Silent)
    }
    fn log(&self, _: captioner::progress::Level, line: &str) {
        self.0.lock().unwrap().push(line.to_string());
    }
}

#[test]
fn a_server_fault_is_a_500_with_a_generic_message_and_the_detail_in_the_log() {
    let log = Arc::new(Log::default());
    let server = serve::start_logged(Some(Arc::new(BrokenEngine)), None, config(), log.clone())
        .expect("server starts");
    let (status, body) = post_raw(
        &agent(),
        &server,
        "",
        Some("image/png"),
        &png(4, 4, [1, 2, 3]),
    );
    assert_eq!(status, 500, "{body}");
    let message = error_of(&body);
    assert_eq!(message, "internal error; the server log has the details");
    assert!(!body.to_string().contains("/srv"), "{body}");
    server.shutdown().unwrap();
    let lines = log.0.lock().unwrap().clone();
    assert!(
        lines.iter().any(|l| l.contains("POST /api/caption")
            && l.contains("decoder state lost in /srv/models/secret.safetensors")),
        "{lines:?}"
    );
}

#[test]
fn attention_is_refused_by_a_model_without_it() {
    let server = serve::start(Arc::new(FakeEngine::new()), config()).unwrap();
    let (status, body) = post_raw(
        &agent(),
        &server,
        "?attention=1",
        Some("image/png"),
        &png(8, 8, [200, 0, 0]),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("attention model"),
        "{body}"
    );
    let (status, body) = post_raw(
        &agent(),
        &server,
        "?attention=maybe",
        Some("image/png"),
        &png(8, 8, [200, 0, 0]),
    );
    assert_eq!(status, 400, "{body}");
    let (status, body) = post_raw(
        &agent(),
        &server,
        "?attention=0",
        Some("image/png"),
        &png(8, 8, [200, 0, 0]),
    );
    assert_eq!(status, 200, "{body}");
    server.shutdown().unwrap();
}
