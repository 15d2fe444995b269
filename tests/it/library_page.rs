//! `serve --library`: the search API, thumbnails by id only, the server without a model, and the
//! gallery page in the real Chromium (type a query, see the matching thumbnails, page through,
//! captions and paths shown as text). Saves the screenshot docs/library.png.

use crate::library::{index, model, Fake};
use crate::webdriver::{self, Browser};
use captioner::library::{IndexOptions, Library};
use captioner::serve::{self, FakeEngine, ServeConfig, ServerHandle};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;

/// A picture with a sky, a horizon and a ground of the given colours, and a sun.
fn scene(sky: [u8; 3], ground: [u8; 3], horizon: f32, sun: bool) -> image::RgbImage {
    image::RgbImage::from_fn(400, 300, |x, y| {
        let (fx, fy) = (x as f32 / 400.0, y as f32 / 300.0);
        let (dx, dy) = (x as f32 - 300.0, y as f32 - 70.0);
        let wave = 0.03 * (fx * 9.0).sin();
        let mix = |c: [u8; 3], k: f32| {
            image::Rgb([
                (c[0] as f32 * k).min(255.0) as u8,
                (c[1] as f32 * k).min(255.0) as u8,
                (c[2] as f32 * k).min(255.0) as u8,
            ])
        };
        if sun && dx * dx + dy * dy < 30.0 * 30.0 {
            image::Rgb([250, 220, 120])
        } else if fy < horizon + wave {
            mix(sky, 0.8 + 0.4 * fy)
        } else {
            mix(ground, 1.1 - 0.4 * (fy - horizon))
        }
    })
}

/// One photo of the gallery: (file, caption, sky, ground, horizon, sun).
type Photo = (&'static str, &'static str, [u8; 3], [u8; 3], f32, bool);

/// The gallery's photos.
const PHOTOS: &[Photo] = &[
    (
        "2023/beach-day.jpg",
        "people relaxing on a sandy beach",
        [110, 180, 240],
        [235, 210, 150],
        0.55,
        true,
    ),
    (
        "2023/dog-beach.jpg",
        "a dog runs along the beach",
        [140, 200, 245],
        [225, 200, 140],
        0.45,
        false,
    ),
    (
        "2023/sunset.jpg",
        "the sun sets over the sea near a beach",
        [240, 140, 90],
        [60, 90, 150],
        0.6,
        true,
    ),
    (
        "2024/surf.jpg",
        "a surfer rides a wave off the beach",
        [90, 160, 230],
        [40, 110, 170],
        0.4,
        false,
    ),
    (
        "2024/snow.jpg",
        "children play in the snow",
        [200, 215, 235],
        [245, 245, 250],
        0.5,
        false,
    ),
    (
        "2024/park.jpg",
        "a man walks his dog in a green park",
        [150, 200, 240],
        [70, 150, 70],
        0.5,
        true,
    ),
    (
        "2024/city.jpg",
        "a red bus drives down a city street",
        [170, 180, 190],
        [90, 90, 95],
        0.35,
        false,
    ),
    (
        "2024/<img src=x onerror=window.pwned=1>.jpg",
        "<b>bold</b> & \"quoted\" on the beach",
        [60, 60, 120],
        [200, 120, 60],
        0.5,
        false,
    ),
];

struct Gallery {
    _dir: tempfile::TempDir,
    db: std::path::PathBuf,
}

/// A library of the [`PHOTOS`] plus `extra` plain pictures (for paging).
fn gallery(extra: usize) -> Gallery {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    let mut fake = Fake::default();
    for (name, caption, sky, ground, horizon, sun) in PHOTOS {
        let path = photos.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        scene(*sky, *ground, *horizon, *sun).save(&path).unwrap();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        fake.by_name.insert(file, vec![caption.to_string()]);
    }
    for i in 0..extra {
        let path = photos.join(format!("misc/field-{i:02}.jpg"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let g = (i * 7 % 100) as u8;
        scene([150, 190, 230], [60 + g, 140, 60], 0.5, i % 2 == 0)
            .save(&path)
            .unwrap();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        fake.by_name.insert(
            file,
            vec![format!("a quiet field under a blue sky, number {i}")],
        );
    }
    let db = dir.path().join("library.db");
    let summary = index(
        &db,
        &[photos],
        &Arc::new(fake),
        &model("a"),
        &IndexOptions::default(),
    );
    assert_eq!(summary.added, PHOTOS.len() + extra);
    Gallery { _dir: dir, db }
}

fn start(db: &Path, with_model: bool) -> ServerHandle {
    let cfg = ServeConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        ..ServeConfig::default()
    };
    let engine: Option<Arc<dyn serve::CaptionEngine>> =
        with_model.then(|| Arc::new(FakeEngine::new()) as _);
    serve::start_with_library(engine, Arc::new(Library::open(db).unwrap()), cfg).unwrap()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into()
}

fn get(base: &str, path: &str) -> (u16, String, Vec<u8>) {
    let mut res = agent().get(format!("{base}{path}")).call().unwrap();
    let status = res.status().as_u16();
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = res.body_mut().read_to_vec().unwrap();
    (status, ct, body)
}

fn json(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap()
}

#[test]
fn the_search_api_pages_results_and_serves_thumbnails_by_id_only() {
    let g = gallery(30);
    let server = start(&g.db, false);
    let base = format!("http://{}", server.addr());

    let (status, ct, body) = get(&base, "/api/search?q=beaches&limit=3");
    assert_eq!((status, ct.as_str()), (200, "application/json"));
    let page = json(&body);
    assert_eq!(page["total"], 5, "{page}");
    let results = page["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    for r in results {
        let keys: Vec<&String> = r.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["caption", "id", "image", "score"], "{r}");
        assert!(r["caption"].as_str().unwrap().contains("beach"));
        assert!(
            !r["image"].as_str().unwrap().starts_with('/'),
            "the API shows paths relative to the indexed folder: {r}"
        );
    }
    let next = json(&get(&base, "/api/search?q=beaches&limit=3&offset=3").2);
    assert_eq!(next["results"].as_array().unwrap().len(), 2);
    assert_eq!(next["total"], 5);
    // No words: the whole library, by path, page by page.
    let all = json(&get(&base, "/api/search?q=&limit=200").2);
    assert_eq!(all["total"], PHOTOS.len() + 30);
    // Syntax characters are words; bad numbers are 400.
    let odd = json(&get(&base, "/api/search?q=%22bold%22%20(%3Cb%3E*").2);
    assert_eq!(odd["total"], 1, "{odd}");
    for bad in ["limit=x", "limit=100000", "offset=-1"] {
        let (status, _, body) = get(&base, &format!("/api/search?q=beach&{bad}"));
        assert_eq!(status, 400, "{bad}");
        assert!(json(&body)["error"].is_string());
    }

    // Thumbnails: a JPEG at most 320 px, by id only.
    let id = results[0]["id"].as_i64().unwrap();
    let (status, ct, body) = get(&base, &format!("/api/thumb/{id}"));
    assert_eq!((status, ct.as_str()), (200, "image/jpeg"));
    let thumb = image::load_from_memory(&body).unwrap();
    assert_eq!((thumb.width(), thumb.height()), (320, 240));
    for (path, want) in [
        ("/api/thumb/999999", 404),
        ("/api/thumb/..%2F..%2Fetc%2Fpasswd", 400),
        ("/api/thumb/%2Fetc%2Fpasswd", 400),
        ("/api/thumb/1;DROP", 400),
    ] {
        assert_eq!(get(&base, path).0, want, "{path}");
    }

    // Without a model: / leads to the gallery, uploads are refused with a reason.
    let (status, _, _) = get(&base, "/");
    assert_eq!(status, 303);
    let (status, ct, body) = get(&base, "/library");
    assert_eq!(status, 200);
    assert!(ct.starts_with("text/html"));
    assert!(String::from_utf8_lossy(&body).contains("<title>captioner library</title>"));
    let mut res = agent()
        .post(format!("{base}/api/caption"))
        .header("content-type", "image/png")
        .send(&b"x"[..])
        .unwrap();
    assert_eq!(res.status().as_u16(), 503);
    let err: Value = res.body_mut().read_json().unwrap();
    assert!(err["error"].as_str().unwrap().contains("--model"), "{err}");
    server.shutdown().unwrap();

    // With a model: the captioning page at / and the library beside it.
    let server = start(&g.db, true);
    let base = format!("http://{}", server.addr());
    let (status, _, body) = get(&base, "/");
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("<title>captioner</title>"));
    assert_eq!(get(&base, "/api/search?q=snow").0, 200);
    server.shutdown().unwrap();
}

#[test]
fn the_gallery_finds_the_beach_photos_in_chromium() {
    let Some((chromium, chromedriver)) =
        webdriver::chromium("the_gallery_finds_the_beach_photos_in_chromium")
    else {
        return;
    };
    let g = gallery(30);
    let server = start(&g.db, false);
    let browser = Browser::launch(&chromium, &chromedriver, 1280, 900);
    browser.goto(&format!("http://{}/", server.addr()));
    assert_eq!(browser.script("return document.title"), "captioner library");
    // The whole library first, 24 a page.
    browser.wait_until(
        "the first page",
        "return document.querySelectorAll('#grid li').length === 24",
    );
    let status = browser.wait_text("#status", |t| t.contains("photos in the library"));
    assert!(
        status.contains(&format!("{} photos", PHOTOS.len() + 30)),
        "{status}"
    );
    browser.click("#next");
    browser.wait_until(
        "the second page",
        &format!(
            "return document.querySelectorAll('#grid li').length === {}",
            PHOTOS.len() + 30 - 24
        ),
    );
    assert_eq!(browser.text(&browser.find("#page")), "Page 2 of 2");

    // Type a query: the matching thumbnails, best first, loaded.
    let q = browser.find("#q");
    browser.send_keys(&q, "beaches");
    browser.wait_until(
        "the beach photos",
        "return document.querySelectorAll('#grid li').length === 5 && \
         [...document.querySelectorAll('#grid img')].every(i => i.complete && i.naturalWidth > 0)",
    );
    let captions = browser
        .script("return [...document.querySelectorAll('#grid .caption')].map(e => e.textContent)");
    let captions: Vec<String> = serde_json::from_value(captions).unwrap();
    assert!(captions.iter().all(|c| c.contains("beach")), "{captions:?}");
    assert_eq!(
        browser.script("return new URL(location.href).searchParams.get('q')"),
        "beaches"
    );
    // Captions and paths are text, never markup: the file named like an <img> tag and the
    // caption with <b> show literally and run nothing.
    assert!(captions
        .iter()
        .any(|c| c == "<b>bold</b> & \"quoted\" on the beach"));
    assert_eq!(
        browser.script("return document.querySelectorAll('#grid b').length"),
        0
    );
    assert_eq!(
        browser.script("return document.querySelectorAll('#grid img').length"),
        5
    );
    assert_eq!(browser.script("return typeof window.pwned"), "undefined");
    let paths = browser
        .script("return [...document.querySelectorAll('#grid .path')].map(e => e.textContent)");
    assert!(
        paths
            .to_string()
            .contains("<img src=x onerror=window.pwned=1>.jpg"),
        "{paths}"
    );
    // Thumbnails carry their caption as alt text.
    assert_eq!(
        browser.script("return document.querySelector('#grid img').alt"),
        Value::String(captions[0].clone())
    );
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    browser.screenshot(&docs.join("library.png"));

    // Nothing found says so.
    browser.script("document.getElementById('q').value = ''");
    browser.send_keys(&q, "zebra");
    browser.wait_text("#status", |t| t.contains("No photo matches"));
    assert_eq!(
        browser.script("return document.querySelectorAll('#grid li').length"),
        0
    );
    drop(browser);
    server.shutdown().unwrap();
}
