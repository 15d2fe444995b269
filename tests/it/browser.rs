//! End to end in a real browser: headless Chromium, driven through chromedriver (WebDriver),
//! uploads a generated picture through the page's file input and reads the caption back; checks
//! keyboard access and phone width; saves screenshots to docs/page.png and docs/page-phone.png.
//!
//! Needs Debian's `chromium` and `chromium-driver` (.ci/run installs them). Without them the test
//! fails when `CI` is set and says it is skipped otherwise. The WebDriver client is
//! tests/it/webdriver.rs.

use crate::webdriver::{self, Browser};
use captioner::serve::{self, FakeEngine, ServeConfig};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

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
    let Some((chromium, chromedriver)) =
        webdriver::chromium("the_page_captions_an_uploaded_image_in_chromium")
    else {
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

    let browser = Browser::launch(&chromium, &chromedriver, 1280, 900);
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
    browser.click("#beam option[value='3']");
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

/// A stand-in attention model: every upload is "a sun over a hill", whose word "sun" looked at
/// the top-right cell of a 2×3 grid and "hill" at the bottom row.
struct Looking;

impl captioner::serve::CaptionEngine for Looking {
    fn caption_bytes(&self, _: &[u8], _: usize) -> captioner::Result<String> {
        Ok("a sun over a hill".into())
    }
    fn info(&self) -> serde_json::Value {
        serde_json::json!({ "decoder": "attention" })
    }
    fn has_attention(&self) -> bool {
        true
    }
    fn caption_attended(
        &self,
        bytes: &[u8],
        beam: usize,
    ) -> captioner::Result<captioner::Attended> {
        let caption = self.caption_bytes(bytes, beam)?;
        let even = vec![1.0 / 6.0; 6];
        let sun = vec![0.0, 0.0, 1.0, 0.0, 0.0, 0.0];
        let hill = vec![0.0, 0.0, 0.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0];
        Ok(captioner::Attended {
            words: caption.split(' ').map(str::to_string).collect(),
            caption,
            attention: Some(captioner::WordAttention {
                grid: [2, 3],
                weights: vec![even.clone(), sun, even.clone(), even, hill],
            }),
        })
    }
}

#[test]
fn the_page_shows_where_an_attention_model_looked_for_the_word_under_the_pointer_or_focus() {
    let Some((chromium, chromedriver)) = webdriver::chromium(
        "the_page_shows_where_an_attention_model_looked_for_the_word_under_the_pointer_or_focus",
    ) else {
        return;
    };
    let cfg = ServeConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        ..ServeConfig::default()
    };
    let server = serve::start(Arc::new(Looking), cfg).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let picture = dir.path().join("evening.png");
    scene().save(&picture).unwrap();

    let browser = Browser::launch(&chromium, &chromedriver, 1280, 900);
    browser.goto(&format!("http://{}/", server.addr()));
    // The page learns from /api/info that the model attends.
    browser.wait_until(
        "the info",
        "return document.getElementById('info').textContent.includes('attention')",
    );
    let input = browser.find("#file");
    browser.send_keys(&input, picture.to_str().unwrap());
    browser.wait_until(
        "the words",
        "return document.querySelectorAll('#caption .word').length === 5",
    );
    assert_eq!(browser.text(&browser.find("#caption")), "a sun over a hill");

    // The map's overlay alpha at a point of the image (fractions of its width and height): low
    // where the word looked (lit), high elsewhere (dimmed); -1 while no map is shown.
    let dark = |fx: f64, fy: f64| -> i64 {
        browser
            .script(&format!(
                "const m = document.getElementById('map'); \
                 if (!m.classList.contains('shown')) return -1; \
                 const d = m.getContext('2d').getImageData(Math.floor(m.width * {fx}), \
                 Math.floor(m.height * {fy}), 1, 1).data; return d[3];"
            ))
            .as_i64()
            .unwrap()
    };
    assert_eq!(dark(0.9, 0.2), -1, "no map before a word is chosen");

    // Keyboard focus on "sun": the top-right of the image is lit, the bottom-left dark.
    let sun = browser.find("#caption .word:nth-of-type(2)");
    browser.send_keys(&sun, "\u{E008}"); // Shift: WebDriver focuses the element first
    browser.wait_until(
        "the sun map",
        "return document.getElementById('map').classList.contains('shown')",
    );
    assert_eq!(
        browser.script("return document.activeElement.textContent"),
        "sun"
    );
    let lit = dark(0.9, 0.2);
    assert!(
        (0..40).contains(&lit),
        "sun's cell is not lit (overlay alpha {lit})"
    );
    assert!(
        dark(0.1, 0.8) > 150,
        "a cell sun ignored is not dimmed (overlay alpha {})",
        dark(0.1, 0.8)
    );
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    browser.screenshot(&docs.join("page-attention.png"));

    // The pointer on "hill": the bottom row is lit now.
    let centre = browser.script(
        "const r = document.querySelector('#caption .word:nth-of-type(5)').getBoundingClientRect(); \
         return [Math.round(r.left + r.width / 2), Math.round(r.top + r.height / 2)];",
    );
    let (x, y) = (centre[0].as_i64().unwrap(), centre[1].as_i64().unwrap());
    browser.session_call(
        "POST",
        "/actions",
        Some(
            serde_json::json!({"actions": [{"type": "pointer", "id": "mouse", "actions": [
                {"type": "pointerMove", "origin": "viewport", "x": x, "y": y}
            ]}]}),
        ),
    );
    browser.wait_until("the hill map", "return document.querySelectorAll('#caption .word.active').length === 1 && document.querySelector('#caption .word.active').textContent === 'hill'");
    let lit = dark(0.5, 0.85);
    assert!(
        (0..40).contains(&lit),
        "hill's row is not lit (overlay alpha {lit})"
    );
    assert!(dark(0.9, 0.15) > 150, "the sky is not dimmed for hill");

    drop(browser);
    server.shutdown().unwrap();
}
