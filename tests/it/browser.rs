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
