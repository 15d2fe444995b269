//! The evaluation report (`captioner::report`, `eval --report`): per-image scores from the corpus's
//! document frequencies, escaping, worst-first order, thumbnails, the loss curve of a run, the CLI
//! end to end with beam search, and the page in headless Chromium (loads from file://, shows the
//! scores and the first images, sorts, pages).
//!
//! The browser test needs Debian's `chromium` and `chromium-driver` (.ci/run installs them); without
//! them it fails when `CI` is set and says it is skipped otherwise. Set `CAPTIONER_REPORT` to a
//! report's index.html (e.g. `demo/report/index.html`) and it checks that report instead, prints its
//! load time and saves the screenshot docs/report.png; otherwise the screenshot of its own fixture
//! goes under the target folder, so `cargo test` leaves docs/ alone.

use crate::common::{exe, run_ok};
use crate::webdriver::{self, Browser};
use captioner::data::synth;
use captioner::metrics::{cider_d, cider_d_per_image, ptb_tokenize, Scores};
use captioner::metrics::{TokenizedHyps, TokenizedRefs};
use captioner::report::{per_image_scores, write_report, ReportImage, ReportInput};
use captioner::train::metrics_log::{write_metrics, EpochMetrics};
use serde_json::Value;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// A caption that would run script if it were written into the page unescaped.
const HOSTILE: &str = "a <script>window.pwned=1</script> & \"red\" <b>square</b>";

fn scores(images: usize) -> Scores {
    Scores {
        bleu1: 0.71,
        bleu2: 0.6,
        bleu3: 0.5,
        bleu4: 0.41,
        rouge_l: 0.66,
        cider: 1.4,
        images,
    }
}

/// `n` rendered scenes in `dir` with their true captions as references. The "generated" caption is
/// the first true one for most, another scene's for every third (so scores spread), the hostile
/// caption for image 5; image 7's file does not exist.
fn fixture(dir: &Path, n: usize) -> Vec<ReportImage> {
    let samples: Vec<synth::SynthSample> = (0..n).map(|i| synth::sample(3, i)).collect();
    samples
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let path = dir.join(&s.name).with_extension("png");
            if i != 7 {
                synth::render(&s.scene).save(&path).unwrap();
            }
            let caption = match i {
                5 => HOSTILE.to_string(),
                i if i % 3 == 0 => samples[(i + 1) % n].captions[0].clone(),
                _ => s.captions[0].clone(),
            };
            ReportImage {
                name: if i == 9 {
                    "odd name <&>.png".to_string()
                } else {
                    s.name.clone()
                },
                path,
                caption,
                references: s.captions[1..].to_vec(),
            }
        })
        .collect()
}

fn rows_in_order(html: &str) -> Vec<(String, f64)> {
    html.split("<tr data-name=\"")
        .skip(1)
        .map(|r| {
            let name = r.split('"').next().unwrap().to_string();
            let cider = r.split("data-cider=\"").nth(1).unwrap();
            let cider: f64 = cider.split('"').next().unwrap().parse().unwrap();
            (name, cider)
        })
        .collect()
}

#[test]
fn per_image_cider_uses_the_whole_corpus_document_frequencies() {
    let dir = tempfile::tempdir().unwrap();
    let images = fixture(dir.path(), 12);
    let got = per_image_scores(&images).unwrap();
    let refs: TokenizedRefs = images
        .iter()
        .map(|im| {
            let r = im.references.iter().map(|c| ptb_tokenize(c)).collect();
            (im.name.clone(), r)
        })
        .collect();
    let hyps: TokenizedHyps = images
        .iter()
        .map(|im| (im.name.clone(), ptb_tokenize(&im.caption)))
        .collect();
    let want = cider_d_per_image(&refs, &hyps).unwrap();
    // Equal up to the last bits: CIDEr-D sums over hash maps, whose order differs between calls.
    for (name, c) in &want {
        assert!(
            (got[name].0 - c).abs() < 1e-12,
            "{name}: {} vs {c}",
            got[name].0
        );
    }
    // Their mean is the corpus CIDEr-D; alone, an image would score 0 (all IDFs are log 1).
    let mean = got.values().map(|v| v.0).sum::<f64>() / got.len() as f64;
    assert!((mean - cider_d(&refs, &hyps).unwrap()).abs() < 1e-12);
    let good = &images[1];
    assert!(got[&good.name].0 > 1.0, "{:?}", got[&good.name]);
    assert_eq!(
        per_image_scores(std::slice::from_ref(good)).unwrap()[&good.name].0,
        0.0
    );
    // A caption equal to one of the references has BLEU-4 1.
    let mut exact = images.clone();
    exact[1].caption = exact[1].references[0].clone();
    assert!((per_image_scores(&exact).unwrap()[&good.name].1 - 1.0).abs() < 1e-6);
    // The same name twice is refused.
    let mut twice = images.clone();
    twice[2].name = twice[1].name.clone();
    assert!(per_image_scores(&twice).is_err());
}

#[test]
fn the_page_lists_every_image_escaped_worst_first_with_thumbnails() {
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let images = fixture(src.path(), 30);
    let s = scores(images.len());
    let input = ReportInput {
        title: "eval of <run>".into(),
        decoding: "beam 3".into(),
        scores: &s,
        images: images.clone(),
        run_dir: None,
    };
    let summary = write_report(out.path(), &input).unwrap();
    assert_eq!(summary.index, out.path().join("index.html"));
    assert_eq!(summary.images, 30);
    assert!(!summary.loss_curve);
    assert_eq!(summary.unreadable.len(), 1, "{:?}", summary.unreadable);
    assert_eq!(summary.unreadable[0].0, images[7].name);
    let html = std::fs::read_to_string(&summary.index).unwrap();

    // Escaped everywhere: no markup from a caption, a reference or a name reaches the page.
    assert!(
        !html.contains("<script>window.pwned"),
        "caption not escaped"
    );
    assert!(html.contains("a &lt;script&gt;window.pwned=1&lt;/script&gt; &amp; &quot;red&quot;"));
    assert!(html.contains("odd name &lt;&amp;&gt;.png"));
    assert!(!html.contains("odd name <"));
    assert!(html.contains("<title>eval of &lt;run&gt;</title>"));
    assert_eq!(
        html.matches("<script>").count(),
        1,
        "only the page's own script"
    );
    // No network: nothing is fetched from anywhere but the report folder.
    for remote in ["http://", "https://", "//cdn", "@import"] {
        assert!(!html.contains(remote), "{remote} in the page");
    }

    // The scores table and the decoding.
    for text in [
        "BLEU-1", "BLEU-4", "ROUGE-L", "CIDEr-D", "0.4100", "1.4000", "beam 3",
    ] {
        assert!(html.contains(text), "{text} missing");
    }
    assert!(html.contains("<td>30</td>"));

    // Every image once, sorted by CIDEr-D, worst first; each row has its references.
    let rows = rows_in_order(&html);
    assert_eq!(rows.len(), 30);
    assert!(rows.windows(2).all(|w| w[0].1 <= w[1].1), "{rows:?}");
    let per = per_image_scores(&images).unwrap();
    for (name, cider) in &rows {
        let raw = images
            .iter()
            .find(|im| captioner::report::escape(&im.name) == *name)
            .unwrap();
        assert!((per[&raw.name].0 - cider).abs() < 1e-6);
        for r in &raw.references {
            assert!(html.contains(&format!("<li>{}</li>", captioner::report::escape(r))));
        }
    }
    assert_eq!(html.matches("loading=\"lazy\"").count(), 29);
    assert_eq!(html.matches("image unavailable").count(), 1);

    // Thumbnails: at most 256 px, JPEG, named by the input order; bytes add up.
    let mut bytes = std::fs::metadata(&summary.index).unwrap().len();
    for i in (0..30).filter(|&i| i != 7) {
        let p = out.path().join("images").join(format!("{i}.jpg"));
        let img = image::open(&p).unwrap();
        assert!(img.width().max(img.height()) <= 256, "{i}");
        assert!(html.contains(&format!("src=\"images/{i}.jpg\"")));
        bytes += std::fs::metadata(&p).unwrap().len();
    }
    assert!(!out.path().join("images/7.jpg").exists());
    assert_eq!(summary.bytes, bytes);
}

fn history() -> Vec<EpochMetrics> {
    (1..=4)
        .map(|epoch| EpochMetrics {
            epoch,
            train_loss: 3.0 / epoch as f64,
            val_loss: 2.0 + (epoch as f64 - 3.0).powi(2) * 0.1,
            seconds: 1.0,
            tokens_per_s: 1.0,
            best: epoch == 3,
        })
        .collect()
}

#[test]
fn a_run_directory_brings_its_loss_curve() {
    let src = tempfile::tempdir().unwrap();
    let images = fixture(src.path(), 4);
    let s = scores(4);
    let write = |run: &Path| {
        let out = tempfile::tempdir().unwrap();
        let input = ReportInput {
            title: "t".into(),
            decoding: "greedy".into(),
            scores: &s,
            images: images.clone(),
            run_dir: Some(run),
        };
        let summary = write_report(out.path(), &input).unwrap();
        let html = std::fs::read_to_string(&summary.index).unwrap();
        (out, summary, html)
    };

    // An empty folder (a run without history): no curve, no section.
    let run = tempfile::tempdir().unwrap();
    let (_out, summary, html) = write(run.path());
    assert!(!summary.loss_curve);
    assert!(!html.contains("id=\"loss\""));

    // Only metrics.jsonl (a run from before loss.svg): drawn from it, with its text.
    write_metrics(&run.path().join("metrics.jsonl"), &history()).unwrap();
    let (out, summary, html) = write(run.path());
    assert!(summary.loss_curve);
    assert!(html.contains("<img src=\"loss.svg\""));
    let svg = std::fs::read_to_string(out.path().join("loss.svg")).unwrap();
    for text in [
        "epoch",
        "loss",
        "train",
        "validation",
        "best: epoch 3, validation 2.000",
    ] {
        assert!(
            svg.contains(&format!(">\n{text}\n</text>")),
            "{text} not in the drawn svg"
        );
    }

    // What training writes: loss.png and loss.svg; the svg is copied as it is.
    captioner::train::plot::draw_loss(&run.path().join("loss.png"), "trained", &history()).unwrap();
    let (out, _, _) = write(run.path());
    assert_eq!(
        std::fs::read(out.path().join("loss.svg")).unwrap(),
        std::fs::read(run.path().join("loss.svg")).unwrap()
    );
}

// ---- the CLI end to end ----

#[test]
fn eval_report_writes_the_page_for_a_run_with_beam_search() {
    // The tiny model the caption tests train once per test binary (synth 40, formula ResNet-18,
    // 2 epochs).
    let t = crate::caption::trained();
    let (data, run) = (&t.data, &t.run);
    let root = tempfile::tempdir().unwrap();
    // Training drew both pictures of the loss.
    assert!(image::open(run.join("loss.png")).is_ok());
    assert!(std::fs::read_to_string(run.join("loss.svg"))
        .unwrap()
        .contains(">\nvalidation\n</text>"));

    let report = root.path().join("report");
    let out = run_ok(
        exe()
            .args(["eval", "--json", "--no-progress", "--beam", "2", "--model"])
            .arg(run)
            .arg("--data")
            .arg(data)
            .arg("--report")
            .arg(&report),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let index = report.join("index.html");
    assert!(
        stderr.contains(&format!("wrote the report {}", index.display())),
        "{stderr}"
    );
    // stdout still holds only the scores.
    let scores: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let html = std::fs::read_to_string(&index).unwrap();
    assert!(html.contains(&format!(
        "<td>{:.4}</td>",
        scores["bleu4"].as_f64().unwrap()
    )));
    let split: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("split.json")).unwrap()).unwrap();
    let test = split["test"].as_array().unwrap();
    assert_eq!(rows_in_order(&html).len(), test.len());
    for name in test {
        let name = name.as_str().unwrap();
        assert!(html.contains(&format!("data-name=\"{name}\"")), "{name}");
    }
    assert!(html.contains("<td>beam 2</td>"));
    assert!(html.contains("<img src=\"loss.svg\""));
    assert!(report.join("loss.svg").is_file());
    for i in 0..test.len() {
        assert!(report.join("images").join(format!("{i}.jpg")).is_file());
    }
}

// ---- in Chromium ----

/// The visible rows' (name, CIDEr-D, BLEU-4), in page order.
const VISIBLE_ROWS: &str = "return Array.from(document.querySelectorAll('#results tbody tr'))\
     .filter(r => !r.hidden && r.offsetParent !== null)\
     .map(r => [r.dataset.name, Number(r.dataset.cider), Number(r.dataset.bleu4)]);";

fn visible_rows(b: &Browser) -> Vec<(String, f64, f64)> {
    let v = b.script(VISIBLE_ROWS);
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().to_string(),
                r[1].as_f64().unwrap(),
                r[2].as_f64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn the_report_page_works_in_chromium() {
    let Some((chromium, chromedriver)) = webdriver::chromium("the_report_page_works_in_chromium")
    else {
        return;
    };

    // The page under test: the one named by CAPTIONER_REPORT, or a fixture of 60 scenes.
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let (index, screenshot) = match std::env::var_os("CAPTIONER_REPORT") {
        Some(p) => {
            let index = std::fs::canonicalize(PathBuf::from(p)).expect("CAPTIONER_REPORT exists");
            let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
            (index, docs.join("report.png"))
        }
        None => {
            let images = fixture(src.path(), 60);
            let s = scores(images.len());
            let run = tempfile::tempdir().unwrap();
            write_metrics(&run.path().join("metrics.jsonl"), &history()).unwrap();
            let input = ReportInput {
                title: "captioner evaluation: fixture".into(),
                decoding: "greedy".into(),
                scores: &s,
                images,
                run_dir: Some(run.path()),
            };
            let summary = write_report(out.path(), &input).unwrap();
            let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report.png");
            (summary.index, shot)
        }
    };
    let total = std::fs::read_to_string(&index)
        .unwrap()
        .matches("<tr data-name=")
        .count();
    assert!(total > 0);

    let browser = Browser::launch(&chromium, &chromedriver, 1280, 1000);
    // Loaded twice: the first navigation of a fresh browser also starts its renderer, the second
    // is what a reader sees when opening another report.
    for visit in ["first load", "second load"] {
        browser.goto(&format!("file://{}", index.display()));
        browser.wait_until(
            "the load event",
            "return document.readyState === 'complete' && performance.timing.loadEventEnd > 0",
        );
        let timing = browser.script(
            "const t = performance.timing; \
             return [t.domContentLoadedEventEnd - t.navigationStart, \
                     t.loadEventEnd - t.navigationStart];",
        );
        let _ = writeln!(
            std::io::stderr(),
            "report of {total} images, {visit}: DOMContentLoaded {} ms, load {} ms",
            timing[0],
            timing[1]
        );
    }
    assert_eq!(browser.script("return window.pwned === undefined"), true);
    let scores_text = browser.script("return document.getElementById('scores').innerText");
    let scores_text = scores_text.as_str().unwrap();
    for metric in [
        "BLEU-1", "BLEU-4", "ROUGE-L", "CIDEr-D", "images", "decoding",
    ] {
        assert!(
            scores_text.contains(metric),
            "{metric} not shown: {scores_text}"
        );
    }

    // The first page: at most 50 rows shown, worst first, and the first images decoded.
    let rows = visible_rows(&browser);
    assert_eq!(rows.len(), total.min(50));
    assert!(rows.windows(2).all(|w| w[0].1 <= w[1].1), "not worst first");
    browser.wait_until(
        "the first image is decoded",
        "const i = document.querySelector('#results tbody tr:not([hidden]) img'); \
         return i !== null && i.complete && i.naturalWidth > 0;",
    );
    let loss_ok = browser.script(
        "const i = document.querySelector('#loss img'); \
         return i === null ? null : (i.complete && i.naturalWidth > 0);",
    );
    assert_eq!(loss_ok, true, "the loss curve does not show");
    // Tall enough to show the scores, the curve and the first rows, each with its picture.
    browser.resize(1280, 1800);
    browser.wait_until(
        "the images in view are decoded",
        "return Array.from(document.querySelectorAll('#results tbody tr:not([hidden]) img'))\
           .filter(i => i.getBoundingClientRect().top < window.innerHeight)\
           .every(i => i.complete && i.naturalWidth > 0);",
    );
    browser.screenshot(&screenshot);

    // Sorting: CIDEr-D again flips to best first; BLEU-4 sorts by BLEU-4, worst first.
    browser.click("th button[data-key='cider']");
    let rows = visible_rows(&browser);
    assert!(rows.windows(2).all(|w| w[0].1 >= w[1].1), "not best first");
    browser.click("th button[data-key='bleu4']");
    let rows = visible_rows(&browser);
    assert!(rows.windows(2).all(|w| w[0].2 <= w[1].2), "not by BLEU-4");
    assert_eq!(
        browser.script("return document.querySelector(\"th[aria-sort]\").innerText"),
        "BLEU-4 ↑"
    );

    // Paging: the next page holds the next rows; "all" shows every one.
    if total > 50 {
        let first: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
        browser.click("#next");
        let second = visible_rows(&browser);
        assert_eq!(second.len(), (total - 50).min(50));
        assert!(second.iter().all(|r| !first.contains(&r.0)));
        assert!(rows.last().unwrap().2 <= second[0].2);
    }
    browser.script("const s = document.getElementById('pagesize'); s.value = '0'; s.dispatchEvent(new Event('change'));");
    assert_eq!(visible_rows(&browser).len(), total);
    if std::env::var_os("CAPTIONER_REPORT").is_none() {
        // The hostile caption shows as text.
        let text = browser.script("return document.getElementById('results').innerText");
        assert!(text
            .as_str()
            .unwrap()
            .contains("<script>window.pwned=1</script>"));
    }
}
