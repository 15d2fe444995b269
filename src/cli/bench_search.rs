//! `captioner bench search`: search latency over a synthetic library. Builds a library of N images
//! (100,000 by default) in a temporary database, with Flickr-like captions made from a small
//! vocabulary (a content word is in 2-7% of the captions or their alternatives, like "dog" in
//! Flickr8k's) and two alternatives each, then times Q queries of one to three words as
//! `GET /api/search` runs them (a page of 20 and the total count) and prints p50, p95 and max.

use super::bench_common::median;
use anyhow::Context;
use captioner::library::schema::open_for_writing;
use captioner::library::Library;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use std::time::Instant;

/// Flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Images in the synthetic library.
    #[arg(long, default_value_t = 100_000)]
    pub images: usize,
    /// Queries timed.
    #[arg(long, default_value_t = 100)]
    pub queries: usize,
    /// Results per query (a page).
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Seed of the captions and queries.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Build the library in this (new) file and keep it, instead of a temporary one.
    #[arg(long, value_name = "FILE")]
    pub keep: Option<std::path::PathBuf>,
}

const ADJECTIVES: &[&str] = &[
    "black",
    "brown",
    "white",
    "red",
    "young",
    "small",
    "little",
    "blue",
    "old",
    "yellow",
    "green",
    "large",
    "happy",
    "smiling",
    "wet",
    "tall",
    "pink",
    "orange",
    "purple",
    "grey",
    "muddy",
    "fluffy",
    "shirtless",
    "bearded",
    "elderly",
    "tiny",
    "spotted",
    "striped",
    "curly",
    "blond",
];
const SUBJECTS: &[&str] = &[
    "dog",
    "man",
    "woman",
    "child",
    "girl",
    "boy",
    "cat",
    "bird",
    "horse",
    "group of people",
    "couple",
    "surfer",
    "cyclist",
    "baby",
    "puppy",
    "football player",
    "skier",
    "crowd",
    "teenager",
    "family",
    "snowboarder",
    "climber",
    "runner",
    "swimmer",
    "toddler",
    "goat",
    "cow",
    "sheep",
    "duck",
    "seagull",
    "motorcyclist",
    "skateboarder",
    "musician",
    "dancer",
    "fisherman",
    "hiker",
    "soldier",
    "policeman",
    "chef",
    "clown",
    "kitten",
    "pony",
    "camel",
    "elephant",
    "monkey",
    "squirrel",
    "rabbit",
    "deer",
    "swan",
    "pigeon",
];
const VERBS: &[&str] = &[
    "running",
    "jumping",
    "sitting",
    "standing",
    "playing",
    "walking",
    "riding a bike",
    "swimming",
    "climbing a rock",
    "looking at the camera",
    "catching a ball",
    "smiling",
    "sleeping",
    "dancing",
    "eating",
    "reading a book",
    "holding an umbrella",
    "throwing a frisbee",
    "pulling a sled",
    "carrying a bag",
    "drinking coffee",
    "kicking a ball",
    "laughing",
    "waving",
    "singing",
    "painting",
    "fishing",
    "surfing a wave",
    "skiing down a slope",
    "crossing a road",
    "waiting for a bus",
    "taking a photo",
    "flying a kite",
    "digging",
    "rolling",
    "splashing",
    "hugging",
    "posing",
    "resting",
    "chasing a stick",
];
const PLACES: &[&str] = &[
    "on the beach",
    "in the snow",
    "on the grass",
    "in a park",
    "in the water",
    "on a street",
    "near a lake",
    "in a field",
    "on a mountain",
    "in front of a building",
    "on a bridge",
    "in the forest",
    "by the sea",
    "in a city",
    "in a kitchen",
    "at a market",
    "in a garden",
    "on a boat",
    "in a stadium",
    "on a sidewalk",
    "in a desert",
    "under a tree",
    "at a concert",
    "in a playground",
    "on a farm",
    "in a subway station",
    "at an airport",
    "in a classroom",
    "on a rooftop",
    "in a museum",
    "by a river",
    "on a dirt road",
    "in a swimming pool",
    "at a wedding",
    "in a library",
    "on a trail",
    "near a fountain",
    "in the rain",
    "at night",
    "at sunset",
];
/// Words too common to be what someone searches for alone.
const STOP: &[&str] = &[
    "a", "an", "the", "on", "in", "at", "of", "by", "for", "to", "down",
];

fn caption(rng: &mut impl Rng) -> String {
    let pick = |rng: &mut _, words: &[&'static str]| *words.choose(rng).unwrap_or(&"");
    format!(
        "a {} {} {} {}",
        pick(rng, ADJECTIVES),
        pick(rng, SUBJECTS),
        pick(rng, VERBS),
        pick(rng, PLACES)
    )
}

fn query(rng: &mut impl Rng) -> String {
    let words: Vec<&str> = [ADJECTIVES, SUBJECTS, VERBS, PLACES]
        .iter()
        .flat_map(|l| l.iter().flat_map(|p| p.split(' ')))
        .filter(|w| !STOP.contains(w))
        .collect();
    let n = rng.random_range(1..=2);
    let mut q: Vec<&str> = (0..n)
        .map(|_| *words.choose(rng).unwrap_or(&"dog"))
        .collect();
    // Some users type stems and syntax characters: "dogs", "(beach)", "sand*".
    if rng.random_bool(0.1) {
        q.push("dogs");
    }
    if rng.random_bool(0.05) {
        q.push("(beach)");
    }
    q.join(" ")
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let dir = tempfile::tempdir().context("cannot make a temporary folder")?;
    let db = match &args.keep {
        Some(path) if path.exists() => {
            anyhow::bail!("{} exists; --keep makes a new file", path.display())
        }
        Some(path) => path.clone(),
        None => dir.path().join("bench.db"),
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(args.seed);
    let t0 = Instant::now();
    {
        let mut conn = open_for_writing(&db)?;
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO models VALUES ('bench', 'synthetic', '2026-01-01T00:00:00Z')",
            [],
        )?;
        {
            let mut insert = tx.prepare(
                "INSERT INTO images (path, root, rel, sha256, size, mtime_ns, width, height,
                     caption, alternatives, model, captioned_at)
                 VALUES (?1, '/photos', ?2, ?3, 100000, 0, 500, 375, ?4, ?5, 'bench',
                     '2026-01-01T00:00:00Z')",
            )?;
            for i in 0..args.images {
                let rel = format!("{:03}/photo_{i:07}.jpg", i % 1000);
                let alternatives = format!("{}\n{}", caption(&mut rng), caption(&mut rng));
                insert.execute(rusqlite::params![
                    format!("/photos/{rel}"),
                    rel,
                    format!("{i:064x}"),
                    caption(&mut rng),
                    alternatives
                ])?;
            }
        }
        tx.commit()?;
        conn.execute_batch("INSERT INTO images_fts(images_fts) VALUES ('optimize')")?;
    }
    let build_s = t0.elapsed().as_secs_f64();
    let library = Library::open(&db)?;
    let queries: Vec<String> = (0..args.queries.max(1)).map(|_| query(&mut rng)).collect();
    // One warm-up pass of the page cache, as a server that has been running a while has.
    library.search(&queries[0], args.limit, 0)?;
    let mut ms = Vec::with_capacity(queries.len());
    let mut hits = 0usize;
    for q in &queries {
        let t = Instant::now();
        let page = library.search(q, args.limit, 0)?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        hits += page.total;
    }
    let mut sorted = ms.clone();
    let p50 = median(&mut sorted);
    let p95 = sorted[((sorted.len() as f64 * 0.95).ceil() as usize).clamp(1, sorted.len()) - 1];
    let max = sorted[sorted.len() - 1];
    println!(
        "library: {} images, built in {build_s:.1} s; {} queries of 1-4 words, page of {}, \
         {:.0} matches per query on average",
        args.images,
        queries.len(),
        args.limit,
        hits as f64 / queries.len() as f64
    );
    println!("{:>10} {:>10} {:>10}", "p50 ms", "p95 ms", "max ms");
    println!("{p50:>10.2} {p95:>10.2} {max:>10.2}");
    Ok(0)
}
