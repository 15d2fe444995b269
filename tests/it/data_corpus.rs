//! A small corpus written in any of the three layouts with the same images and captions, including
//! every kind of broken input the readers and `inspect` must survive. Shared by tests/it/data.rs and by
//! the Python reference fixture (see scripts/reference/corpus_reference.py).

use crate::common::pixel_bomb_png;
use captioner::data::{DatasetSplit, Layout};
use std::path::{Path, PathBuf};

/// Good images (decodable), then the broken ones, then one with captions but no file.
pub const GOOD: usize = 14;
pub const BROKEN: [&str; 5] = [
    "empty.jpg",
    "truncated.jpg",
    "tail_cut.jpg",
    "notes.jpg",
    "bomb.png",
];
pub const MISSING: &str = "missing.jpg";
pub const UNCAPTIONED: &str = "uncaptioned.jpg";
/// The image that no split places.
pub const UNSPLIT: &str = "img_12.jpg";

pub fn good_name(i: usize) -> String {
    let ext = if i % 5 == 3 { "png" } else { "jpg" };
    format!("img_{i:02}.{ext}")
}

/// All image names the captions file names, in file order.
pub fn captioned_names() -> Vec<String> {
    let mut names: Vec<String> = (0..GOOD).map(good_name).collect();
    names.extend(BROKEN.iter().map(|s| s.to_string()));
    names.push(MISSING.into());
    names
}

/// The five captions of image `i`: quoted commas, punctuation, non-ASCII, a word unique to it.
pub fn captions(i: usize) -> Vec<String> {
    const COLOURS: [&str; 5] = ["red", "blue", "green", "yellow", "white"];
    const ANIMALS: [&str; 4] = ["dog", "cat", "bird", "horse"];
    const PLACES: [&str; 3] = ["grass", "beach", "snow"];
    let (c, a, p) = (COLOURS[i % 5], ANIMALS[i % 4], PLACES[i % 3]);
    let mut caps = vec![
        format!("A {c} {a} runs on the {p} ."),
        format!("The {a}, {c} and small, plays near a {p}"),
        format!("{a} in the {p}; it's {c}!"),
        format!("A {a} jumps {i} times"),
        format!("Two {a}s on {p}-side"),
    ];
    if i == 0 {
        caps[4] = "Café naïve 3_dogs ΟΔΟΣ x² sit".into();
    }
    caps
}

/// The dataset's own split: every 6th image val, the next test, the rest train; one unsplit.
pub fn own_split(name: &str, i: usize) -> Option<&'static str> {
    if name == UNSPLIT {
        return None;
    }
    Some(match i % 6 {
        4 => "val",
        5 => "test",
        _ => "train",
    })
}

/// Writes the corpus in `layout` under `dir`, with split files (or split fields) when `own_split`.
pub fn write_corpus(dir: &Path, layout: Layout, own_split_too: bool) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let images = dir.join(if layout == Layout::Token {
        "Flicker8k_Dataset"
    } else {
        "Images"
    });
    write_images(&images);
    let names = captioned_names();
    match layout {
        Layout::Kaggle => write_kaggle(dir, &names),
        Layout::Token => write_token(dir, &names),
        Layout::Karpathy => write_karpathy(dir, &names, own_split_too),
    }
    if own_split_too && layout != Layout::Karpathy {
        for (file, part) in [
            ("Flickr_8k.trainImages.txt", "train"),
            ("Flickr_8k.devImages.txt", "val"),
            ("Flickr_8k.testImages.txt", "test"),
        ] {
            let listed: Vec<&str> = names
                .iter()
                .enumerate()
                .filter(|(i, n)| own_split(n, *i) == Some(part))
                .map(|(_, n)| n.as_str())
                .collect();
            std::fs::write(dir.join(file), listed.join("\r\n") + "\r\n").unwrap();
        }
    }
    fixed_split().save(&dir.join("split.json")).unwrap();
    dir.to_path_buf()
}

/// A split.json naming only images of the corpus (for `--split-file`).
pub fn fixed_split() -> DatasetSplit {
    let good: Vec<String> = (0..GOOD).map(good_name).collect();
    DatasetSplit {
        train: good[..10]
            .iter()
            .cloned()
            .chain(["empty.jpg".to_string()])
            .collect(),
        val: vec![good[10].clone(), good[11].clone(), "truncated.jpg".into()],
        test: vec![good[12].clone(), good[13].clone()],
    }
}

fn write_images(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..GOOD {
        let img = image::RgbImage::from_fn(32, 24, |x, y| {
            image::Rgb([(x * 8) as u8, (y * 10) as u8, (i * 17) as u8])
        });
        img.save(dir.join(good_name(i))).unwrap();
    }
    image::RgbImage::new(8, 8)
        .save(dir.join(UNCAPTIONED))
        .unwrap();
    std::fs::write(dir.join("README.txt"), "not an image, not counted").unwrap();
    std::fs::write(dir.join("empty.jpg"), b"").unwrap();
    let jpeg = std::fs::read(dir.join(good_name(0))).unwrap();
    std::fs::write(dir.join("truncated.jpg"), &jpeg[..jpeg.len() / 2]).unwrap();
    // Cut in the pixel data, headers intact: the `image` crate alone would decode it.
    std::fs::write(dir.join("tail_cut.jpg"), &jpeg[..jpeg.len() - 10]).unwrap();
    std::fs::write(dir.join("notes.jpg"), "these are notes, not a JPEG\n").unwrap();
    std::fs::write(dir.join("bomb.png"), pixel_bomb_png(10_000, 10_000)).unwrap();
}

fn write_kaggle(dir: &Path, names: &[String]) {
    let mut w = csv::WriterBuilder::new()
        .flexible(true)
        .from_path(dir.join("captions.txt"))
        .unwrap();
    w.write_record(["image", "caption"]).unwrap();
    for (i, name) in names.iter().enumerate() {
        for c in captions(i) {
            w.write_record([name.as_str(), c.as_str()]).unwrap();
        }
    }
    w.write_record(["img_00.jpg", "too", "many fields"])
        .unwrap();
    w.flush().unwrap();
}

fn write_token(dir: &Path, names: &[String]) {
    let mut text = String::new();
    for (i, name) in names.iter().enumerate() {
        for (k, c) in captions(i).iter().enumerate() {
            text += &format!("{name}#{k}\t{c}\r\n");
        }
        if i == 2 {
            text += "2258277193_586949ec62.jpg.1#0\tA bogus line from the real file\r\n";
            text += "a line without a tab\r\n";
        }
    }
    std::fs::write(dir.join("Flickr8k.token.txt"), text).unwrap();
}

fn write_karpathy(dir: &Path, names: &[String], with_split: bool) {
    let images: Vec<serde_json::Value> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mut sentences: Vec<serde_json::Value> = captions(i)
                .iter()
                .map(|c| serde_json::json!({"raw": c, "tokens": []}))
                .collect();
            if i == 1 {
                sentences.push(serde_json::json!({"tokens": ["no", "raw"]}));
            }
            let mut entry =
                serde_json::json!({"filename": name, "imgid": i, "sentences": sentences});
            if let (true, Some(part)) = (with_split, own_split(name, i)) {
                // Karpathy's "restval" counts as train.
                let part = if i == 1 { "restval" } else { part };
                entry["split"] = part.into();
            }
            entry
        })
        .collect();
    let json = serde_json::json!({"images": images, "dataset": "flickr8k"});
    std::fs::write(dir.join("dataset_flickr8k.json"), json.to_string()).unwrap();
}
