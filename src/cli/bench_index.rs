//! `captioner bench index`: indexing throughput against plain captioning on the same images, side
//! by side in one run: rounds of `caption`'s work (load the model, caption every image in batches)
//! then `index` into a new library, alternated so a machine whose load drifts affects both alike,
//! then `index` again over the unchanged images. Every timing includes what the command does
//! before captioning (loading the model; for `index` the model's sha256 and the walk); nothing is
//! written to a terminal.

use super::bench_common::median;
use captioner::data::walk::find_images;
use captioner::library::{index_library, Describer, IndexOptions, ModelId};
use captioner::progress::Silent;
use captioner::{CaptionOptions, Captioner};
use std::path::PathBuf;
use std::time::Instant;

/// Flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A run directory or a file written by `captioner export`.
    #[arg(long, value_name = "M")]
    pub model: PathBuf,
    /// Images per forward pass (and per committed transaction of `index`).
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Rounds of (caption, index); the medians are compared.
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
    /// Image files or folders (e.g. the `Images` folder of `captioner synth --images 2000`).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let (files, _) = find_images(&args.paths);
    anyhow::ensure!(!files.is_empty(), "no images under the given paths");
    let opts = CaptionOptions {
        batch_size: args.batch_size.max(1),
        ..CaptionOptions::default()
    };
    let device = captioner::device::default_device();
    let caption = || -> anyhow::Result<f64> {
        let t = Instant::now();
        let model = Captioner::load(&args.model, &device)?;
        let mut n = 0usize;
        model.caption_paths_each(&files, &opts, |_, r| {
            if r.is_ok() {
                n += 1;
            }
        });
        anyhow::ensure!(n == files.len(), "{} images failed", files.len() - n);
        Ok(t.elapsed().as_secs_f64())
    };
    let dir = tempfile::tempdir()?;
    let load = || -> captioner::Result<Box<dyn Describer>> {
        Ok(Box::new(Captioner::load(&args.model, &device)?))
    };
    let index_opts = IndexOptions {
        caption: opts,
        ..IndexOptions::default()
    };
    let index = |db: &std::path::Path| -> anyhow::Result<(f64, String)> {
        let t = Instant::now();
        let model_id = ModelId::of(&args.model)?;
        let s = index_library(db, &args.paths, &model_id, &load, &index_opts, &Silent)?;
        Ok((t.elapsed().as_secs_f64(), s.to_string()))
    };
    let n = files.len() as f64;
    println!("{} images, batch size {}", files.len(), opts.batch_size);
    println!("{:<28} {:>9} {:>10}", "", "seconds", "images/s");
    let row = |name: &str, s: f64| println!("{name:<28} {s:>9.2} {:>10.1}", n / s);
    let (mut captions, mut indexes) = (Vec::new(), Vec::new());
    let mut last_db = dir.path().join("round-0.db");
    let mut first = String::new();
    for r in 0..args.rounds.max(1) {
        let c = caption()?;
        row(&format!("caption, round {}", r + 1), c);
        last_db = dir.path().join(format!("round-{r}.db"));
        let (i, summary) = index(&last_db)?;
        row(&format!("index (new library), round {}", r + 1), i);
        captions.push(c);
        indexes.push(i);
        first = summary;
    }
    let (rerun_s, second) = index(&last_db)?;
    row("index again (unchanged)", rerun_s);
    let per_round = captions
        .iter()
        .zip(&indexes)
        .map(|(c, i)| format!("{:.3}", c / i))
        .collect::<Vec<_>>()
        .join(", ");
    let (c, i) = (median(&mut captions), median(&mut indexes));
    println!(
        "index / caption throughput (medians): {:.3}; per round: {per_round}",
        c / i
    );
    println!("first index: {first}");
    println!("second index: {second}");
    Ok(0)
}
