//! `captioner synth` end to end: the Kaggle layout on disk, CSV round trip, determinism, refusal to
//! overwrite, and that the written JPEGs show what the captions say.

use crate::common::exe;
use captioner::data::synth::{generate, sample, Colour, SynthOptions};
use std::collections::BTreeSet;
use std::path::Path;

fn synth(out: &Path, images: usize, seed: u64, extra: &[&str]) -> std::process::Output {
    exe()
        .arg("synth")
        .arg("--out")
        .arg(out)
        .args(["--images", &images.to_string(), "--seed", &seed.to_string()])
        .args(extra)
        .output()
        .unwrap()
}

fn read_rows(path: &Path) -> (csv::StringRecord, Vec<(String, String)>) {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header = r.headers().unwrap().clone();
    let rows = r
        .records()
        .map(|rec| {
            let rec = rec.unwrap();
            assert_eq!(rec.len(), 2, "{rec:?}");
            (rec[0].to_string(), rec[1].to_string())
        })
        .collect();
    (header, rows)
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn cli_writes_n_images_and_five_captions_each_in_kaggle_layout() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("corpus");
    let o = synth(&out, 30, 5, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let images = files(&out.join("Images"));
    let names: Vec<&str> = images.iter().map(|(n, _)| n.as_str()).collect();
    let expected: Vec<String> = (1..=30).map(|i| format!("scene_{i:06}.jpg")).collect();
    assert_eq!(names, expected);

    let (header, rows) = read_rows(&out.join("captions.txt"));
    assert_eq!(header, vec!["image", "caption"]);
    assert_eq!(rows.len(), 150);
    for (i, name) in expected.iter().enumerate() {
        let caps: Vec<&str> = rows[5 * i..5 * i + 5]
            .iter()
            .map(|(n, c)| {
                assert_eq!(n, name);
                c.as_str()
            })
            .collect();
        // The CSV gives back exactly the library's captions, commas included.
        assert_eq!(caps, sample(5, i).captions.to_vec());
    }
    let raw = std::fs::read_to_string(out.join("captions.txt")).unwrap();
    let with_comma = rows.iter().filter(|(_, c)| c.contains(',')).count();
    assert!(
        with_comma > 0,
        "seed 5 should produce some captions with a comma"
    );
    assert_eq!(
        raw.matches(",\"").count(),
        with_comma,
        "comma captions must be quoted"
    );

    // Sizes vary (the readers must resize) and stay in range.
    let widths: BTreeSet<u32> = images
        .iter()
        .map(|(_, bytes)| image::load_from_memory(bytes).unwrap().width())
        .collect();
    assert!(widths.len() > 5 && widths.iter().all(|w| (224..=400).contains(w)));
}

#[test]
fn same_seed_gives_identical_bytes_and_another_seed_differs() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    for (out, seed) in [(&a, 9), (&b, 9), (&c, 10)] {
        assert!(synth(out, 12, seed, &[]).status.success());
    }
    let read = |d: &Path| std::fs::read(d.join("captions.txt")).unwrap();
    assert_eq!(read(&a), read(&b));
    assert_eq!(files(&a.join("Images")), files(&b.join("Images")));
    assert_ne!(read(&a), read(&c));
    let (fa, fc) = (files(&a.join("Images")), files(&c.join("Images")));
    assert!(fa.iter().zip(&fc).all(|(x, y)| x.1 != y.1));
}

#[test]
fn refuses_to_overwrite_without_force_and_force_removes_stale_images() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("corpus");
    assert!(synth(&out, 8, 1, &[]).status.success());
    let before = std::fs::read(out.join("captions.txt")).unwrap();

    let o = synth(&out, 3, 2, &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("captions.txt") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read(out.join("captions.txt")).unwrap(), before);

    assert!(synth(&out, 3, 2, &["--force"]).status.success());
    assert_eq!(files(&out.join("Images")).len(), 3);
    let (_, rows) = read_rows(&out.join("captions.txt"));
    assert_eq!(rows.len(), 15);
}

#[test]
fn zero_images_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let o = synth(&dir.path().join("x"), 0, 1, &[]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "a bad flag value is a usage error"
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("--images"));
}

#[test]
fn written_jpegs_show_the_named_colours() {
    let dir = tempfile::tempdir().unwrap();
    let n = 60;
    let summary = generate(
        dir.path(),
        &SynthOptions {
            images: n,
            seed: 77,
            force: false,
        },
    )
    .unwrap();
    assert_eq!((summary.images, summary.captions), (n, 5 * n));
    let mut checked = 0;
    for i in 0..n {
        let s = sample(77, i);
        let img = image::open(dir.path().join("Images").join(&s.name))
            .unwrap()
            .to_rgb8();
        assert_eq!((img.width(), img.height()), (s.scene.width, s.scene.height));
        for o in s.scene.objects.iter().filter(|o| o.radius >= 20.0) {
            let (x, y) = o.interior_point();
            // Average a 3x3 patch: JPEG blurs single pixels a little.
            let mut sum = [0u32; 3];
            for dy in -1..=1 {
                for dx in -1..=1 {
                    let p = img.get_pixel((x as i32 + dx) as u32, (y as i32 + dy) as u32);
                    for (acc, v) in sum.iter_mut().zip(p.0) {
                        *acc += v as u32;
                    }
                }
            }
            let mean = sum.map(|v| (v / 9) as u8);
            assert_eq!(Colour::nearest(mean), o.colour, "{} {:?}", s.name, o);
            let named = o.colour.rgb();
            let dist: i32 = (0..3)
                .map(|c| (mean[c] as i32 - named[c] as i32).abs())
                .max()
                .unwrap();
            assert!(dist <= 30, "{}: {mean:?} vs {named:?}", s.name);
            // And the caption names it.
            assert!(s.captions.iter().all(|c| c.contains(o.colour.name())));
            checked += 1;
        }
        let corner = img.get_pixel(1, 1).0;
        assert_eq!(Colour::nearest(corner), s.scene.background, "{}", s.name);
    }
    assert!(checked >= 30, "only {checked} objects checked");
}

#[test]
fn vocabulary_is_small_and_every_word_is_used() {
    let mut vocab = BTreeSet::new();
    for i in 0..5000 {
        for c in sample(3, i).captions {
            for w in c
                .split(|ch: char| !ch.is_alphanumeric())
                .filter(|w| !w.is_empty())
            {
                vocab.insert(w.to_lowercase());
            }
        }
    }
    assert!(vocab.len() < 100, "{} words: {vocab:?}", vocab.len());
    for w in [
        "red", "gray", "circles", "triangle", "above", "left", "three", "pair",
    ] {
        assert!(vocab.contains(w), "{w} never used");
    }
}
