//! End to end in a real browser: headless Chromium, driven through chromedriver (WebDriver),
//! uploads a generated picture through the page's file input and reads the caption back; checks
//! keyboard access and phone width; saves screenshots to docs/page.png and docs/page-phone.png.
//!
//! Needs Debian's `chromium` and `chromium-driver` (.ci/run installs them). Without them the test
//! fails when `CI` is set and says it is skipped otherwise.
//!
//! The WebDriver calls are a few JSON requests over ureq, which the API tests already use:
//! fantoccini, the obvious crate, brings ~40 more crates (a second ICU, a hyper client) and turns
//! on syn's `fold` feature, which rebuilds every proc-macro and everything above them.

use base64::Engine as _;
use captioner::serve::{self, FakeEngine, ServeConfig};
use serde_json::{json, Value};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The W3C name of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// A chromedriver process and one browser session in it; both end on drop.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: ureq::Agent,
    profile: tempfile::TempDir,
}

impl Browser {
    fn launch(chromium: &Path, chromedriver: &Path) -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let http: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let base = format!("http://127.0.0.1:{port}");
        let profile = tempfile::tempdir().unwrap();
        let mut browser = Browser {
            driver,
            base,
            session: String::new(),
            http,
            profile,
        };
        browser.wait_ready();
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--window-size=1280,900",
            &format!("--user-data-dir={}", browser.profile.path().display()),
        ];
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium, "args": args },
        }}});
        let answer = browser.call("POST", "/session", Some(caps));
        browser.session = answer["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session in {answer}"))
            .to_string();
        browser
    }

    fn wait_ready(&self) {
        let t0 = Instant::now();
        loop {
            let ready = self
                .http
                .get(format!("{}/status", self.base))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_json::<Value>().ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "chromedriver not ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One WebDriver command; returns its `value`, panicking on a WebDriver error.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{}", self.base, path);
        let res = match (method, body) {
            ("GET", _) => self.http.get(&url).call(),
            ("DELETE", _) => self.http.delete(&url).call(),
            (_, body) => self.http.post(&url).send_json(body.unwrap_or(json!({}))),
        };
        let mut res = res.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = res.status();
        let answer: Value = res.body_mut().read_json().expect("WebDriver answers JSON");
        let value = answer["value"].clone();
        assert!(
            status.is_success(),
            "{method} {path}: {status}: {}",
            value["message"]
        );
        value
    }

    fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    fn goto(&self, url: &str) {
        self.session_call("POST", "/url", Some(json!({ "url": url })));
    }

    fn find(&self, css: &str) -> String {
        let v = self.session_call(
            "POST",
            "/element",
            Some(json!({ "using": "css selector", "value": css })),
        );
        v[ELEMENT].as_str().expect("element id").to_string()
    }

    fn text(&self, element: &str) -> String {
        let v = self.session_call("GET", &format!("/element/{element}/text"), None);
        v.as_str().unwrap_or_default().to_string()
    }

    fn send_keys(&self, element: &str, text: &str) {
        let path = format!("/element/{element}/value");
        self.session_call("POST", &path, Some(json!({ "text": text })));
    }

    fn script(&self, script: &str) -> Value {
        let body = json!({ "script": script, "args": [] });
        self.session_call("POST", "/execute/sync", Some(body))
    }

    fn resize(&self, width: u32, height: u32) {
        let rect = json!({ "width": width, "height": height });
        self.session_call("POST", "/window/rect", Some(rect));
    }

    fn screenshot(&self, to: &Path) {
        let v = self.session_call("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 screenshot"))
            .expect("valid base64");
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(to, png).unwrap();
    }

    /// Polls `#id`'s text until `done` accepts it.
    fn wait_text(&self, id: &str, done: impl Fn(&str) -> bool) -> String {
        let element = self.find(id);
        let t0 = Instant::now();
        loop {
            let text = self.text(&element);
            if done(&text) {
                return text;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "{id} still says {text:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let url = format!("{}/session/{}", self.base, self.session);
            let _ = self.http.delete(&url).call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A warm red evening scene: a gradient sky, a low sun, a dark hill. Mostly red on average.
fn scene() -> image::RgbImage {
    image::RgbImage::from_fn(480, 320, |x, y| {
        let (fx, fy) = (x as f32 / 480.0, y as f32 / 320.0);
        let (dx, dy) = (x as f32 - 330.0, y as f32 - 150.0);
        if y as f32 > 250.0 - 30.0 * (fx * 3.0).sin() {
            image::Rgb([110, 25, 35])
        } else if dx * dx + dy * dy < 45.0 * 45.0 {
            image::Rgb([250, 200, 90])
        } else {
            let r = 235.0 - 40.0 * fy;
            let g = 40.0 + 60.0 * fy;
            image::Rgb([r as u8, g as u8, (45.0 + 20.0 * fx) as u8])
        }
    })
}

#[test]
fn the_page_captions_an_uploaded_image_in_chromium() {
    let (Some(chromium), Some(chromedriver)) = (
        find_program(&["chromium", "chromium-browser", "google-chrome"]),
        find_program(&["chromedriver"]),
    ) else {
        if std::env::var_os("CI").is_some() {
            panic!("chromium and chromedriver are required in CI (.ci/run installs them)");
        }
        // Straight to stderr: the test harness would swallow eprintln! of a passing test.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED the_page_captions_an_uploaded_image_in_chromium: chromium or chromedriver \
             not found (apt-get install chromium chromium-driver)"
        );
        return;
    };

    let cfg = ServeConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        ..ServeConfig::default()
    };
    let delay = Duration::from_millis(150); // long enough to see the busy state, short to wait
    let server = serve::start(Arc::new(FakeEngine::with_delay(delay)), cfg).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let picture = dir.path().join("evening.png");
    scene().save(&picture).unwrap();

    let browser = Browser::launch(&chromium, &chromedriver);
    browser.goto(&format!("http://{}/", server.addr()));
    assert_eq!(browser.script("return document.title"), "captioner");

    // Keyboard: the drop zone takes focus, and Enter on it opens the file picker.
    let zone = browser.find("#drop");
    browser.script(
        "window.pickerOpened = 0; \
         HTMLInputElement.prototype.click = function () { window.pickerOpened++; };",
    );
    browser.send_keys(&zone, "\u{E007}"); // Enter
    browser.send_keys(&zone, " ");
    assert_eq!(browser.script("return document.activeElement.id"), "drop");
    assert_eq!(browser.script("return window.pickerOpened"), 2);

    // Beam 3, then upload through the real file input.
    let beam = browser.find("#beam option[value='3']");
    browser.session_call("POST", &format!("/element/{beam}/click"), None);
    let input = browser.find("#file");
    browser.send_keys(&input, picture.to_str().unwrap());
    let caption = browser.wait_text("#caption", |t| t.contains("picture"));
    assert_eq!(caption, "a mostly red picture");
    let latency = browser.wait_text("#latency", |t| !t.is_empty());
    assert!(
        latency.contains("server") && latency.contains("ms") && latency.contains("beam 3"),
        "{latency}"
    );
    assert_eq!(
        browser.script("return document.getElementById('preview').naturalWidth"),
        480
    );

    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    browser.screenshot(&docs.join("page.png"));

    // Phone width: nothing sticks out sideways, the caption is still there.
    browser.resize(390, 844);
    let overflow = browser.script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
    );
    assert_eq!(overflow, 0, "the page scrolls sideways at 390 px");
    assert_eq!(
        browser.text(&browser.find("#caption")),
        "a mostly red picture"
    );
    browser.screenshot(&docs.join("page-phone.png"));

    drop(browser);
    server.shutdown().unwrap();
}
