//! `captioner demo`: from nothing to captions on the CPU in a few minutes, without network or input
//! files. Generates a scenes corpus (`synth`), writes a randomly initialised ResNet-18
//! (`init-backbone`), trains the head and decoder on its frozen features at a low resolution
//! (`train`), scores the held-out test images (`eval`), prints five of them and writes
//! `DIR/metrics.json` and the report `DIR/report/index.html`; `--serve` then opens the page on the model.
//!
//! Each step is the ordinary subcommand with the flags printed before it runs, so every number
//! the demo shows can be reproduced by hand. The production recipe is different: a pretrained
//! ResNet-50 at 224×224 on Flickr8k (see the README).

use super::progress::Bars;
use super::render::print_scores;
use super::{Cli, Command};
use anyhow::Context;
use captioner::data::SplitName;
use captioner::pipeline::{evaluate_model, CorpusSpec, EvalRequest};
use captioner::{CaptionOptions, Captioner};
use clap::Parser;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Flags of `captioner demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Working directory: receives scenes/, the backbone, features/, run/, metrics.json and report/.
    #[arg(long, value_name = "DIR", default_value = "demo")]
    pub out: PathBuf,
    /// After evaluating, serve the page and API on the demo model (see `captioner serve`).
    #[arg(long)]
    pub serve: bool,
    /// Address for --serve.
    #[arg(long, default_value = "127.0.0.1:7860")]
    pub addr: String,
    /// No progress bars.
    #[arg(long)]
    pub no_progress: bool,
    /// Scenes to generate (fewer: faster, worse captions).
    #[arg(long, default_value_t = IMAGES, value_parser = clap::value_parser!(u64).range(20..))]
    pub images: u64,
    /// Most epochs to train.
    #[arg(long, default_value_t = EPOCHS, value_parser = clap::value_parser!(u64).range(1..))]
    pub epochs: u64,
    /// The decoder to train: `lstm` (the seed's) or `attention` (soft attention over the feature
    /// map, with the tutorial's sizes: slower, about 10 minutes on 2 cores).
    #[arg(long, value_enum, default_value = "lstm")]
    pub decoder: super::train::Decoder,
}

/// Scenes in the corpus: 80% train, 10% validation, 10% held-out test. BLEU-4 on the test split
/// grows with the corpus (2000 scenes: 0.42 with these features; 400 gave 0.22 with the
/// running-average BatchNorm statistics); 2000 keeps the whole demo within a few minutes on 2 cores.
const IMAGES: u64 = 2000;
/// Side of the square images the backbone sees. The random backbone gains nothing from 224 and
/// costs 4× the time of 112.
const IMAGE_SIZE: usize = 112;
/// Architecture of the random, frozen backbone: ResNet-18's 512-d features are enough for scenes
/// and 2.3× cheaper than ResNet-50's.
const ARCH: &str = "resnet18";
/// Training stops after this many epochs at the latest (early stopping usually ends it sooner).
const EPOCHS: u64 = 12;
/// Epochs without a better validation loss before training stops.
const PATIENCE: usize = 3;
/// Seed of the corpus, the backbone and the split: the demo is the same on every machine.
const SEED: u64 = 0;
/// Test images shown with their captions.
const SHOWN: usize = 5;

/// Runs one subcommand from its command line (the one printed).
fn step(argv: &[String]) -> anyhow::Result<Command> {
    println!("\n$ captioner {}", argv.join(" "));
    let cli =
        Cli::try_parse_from(std::iter::once("captioner".to_string()).chain(argv.iter().cloned()))
            .context("demo: bad internal command line")?;
    Ok(cli.command)
}

fn run_step(argv: &[String]) -> anyhow::Result<()> {
    let code = super::run(Cli {
        command: step(argv)?,
    })?;
    anyhow::ensure!(code == 0, "demo step failed with exit status {code}");
    Ok(())
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Removes `DIR/run` if it is an earlier demo's run, so that the demo trains afresh; refuses to
/// touch anything else.
fn clear_previous_run(run: &Path, scenes: &Path) -> anyhow::Result<()> {
    if !run.exists() {
        return Ok(());
    }
    let cfg = captioner::run::RunConfig::load(run).with_context(|| {
        format!(
            "{} exists and is not a demo run; choose another --out",
            run.display()
        )
    })?;
    let ours = std::fs::canonicalize(&cfg.data).ok() == std::fs::canonicalize(scenes).ok();
    anyhow::ensure!(
        ours,
        "{} holds a run on {}, not on the demo's scenes; choose another --out",
        run.display(),
        cfg.data.display()
    );
    println!("replacing the previous demo run in {}", run.display());
    std::fs::remove_dir_all(run).with_context(|| format!("cannot remove {}", run.display()))
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let start = Instant::now();
    let dir = &args.out;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let scenes = dir.join("scenes");
    let backbone = dir.join(format!("{ARCH}-random.safetensors"));
    let features = dir.join("features");
    let run_dir = dir.join("run");
    let progress: &[&str] = if args.no_progress {
        &["--no-progress"]
    } else {
        &[]
    };
    let owned = |v: &[&str]| -> Vec<String> { v.iter().map(|x| x.to_string()).collect() };
    let mut phases: Vec<(&str, f64)> = Vec::new();

    let t = Instant::now();
    // The corpus is a pure function of (seed, count): rewriting it gives the same bytes, so the
    // feature cache of an earlier demo stays valid.
    run_step(&owned(&[
        "synth",
        "--out",
        &s(&scenes),
        "--images",
        &args.images.to_string(),
        "--seed",
        &SEED.to_string(),
        "--force",
    ]))?;
    run_step(&owned(&[
        "init-backbone",
        "--arch",
        ARCH,
        "--seed",
        &SEED.to_string(),
        "--out",
        &s(&backbone),
    ]))?;
    phases.push(("data and backbone", t.elapsed().as_secs_f64()));

    let t = Instant::now();
    clear_previous_run(&run_dir, &scenes)?;
    let mut train = owned(&[
        "train",
        "--data",
        &s(&scenes),
        "--backbone",
        &s(&backbone),
        "--arch",
        ARCH,
        "--image-size",
        &IMAGE_SIZE.to_string(),
        "--cache",
        &s(&features),
        "--run",
        &s(&run_dir),
        "--epochs",
        &args.epochs.to_string(),
        "--patience",
        &PATIENCE.to_string(),
        "--seed",
        &SEED.to_string(),
    ]);
    if args.decoder == super::train::Decoder::Attention {
        train.extend(owned(&["--decoder", "attention"]));
    }
    train.extend(owned(progress));
    run_step(&train)?;
    phases.push(("features and training", t.elapsed().as_secs_f64()));

    let t = Instant::now();
    // What `captioner eval --model RUN --data SCENES` does, called as the library.
    println!(
        "\n$ captioner eval --model {} --data {}",
        s(&run_dir),
        s(&scenes)
    );
    let model = Captioner::load(&run_dir, &captioner::device::default_device())?;
    let request = EvalRequest {
        corpus: CorpusSpec::new(&scenes),
        part: SplitName::Test,
        options: CaptionOptions {
            batch_size: 32,
            ..CaptionOptions::default()
        },
        use_cache: true,
    };
    let ev = evaluate_model(&model, &request, &Bars::new(!args.no_progress))?;
    phases.push(("evaluation", t.elapsed().as_secs_f64()));

    println!(
        "\n{} held-out test images, greedy decoding. Five of them:",
        ev.scores.images
    );
    let n = ev.hyps.len();
    for (name, caption) in ev.hyps.iter().step_by((n / SHOWN).max(1)).take(SHOWN) {
        println!("\n  {}", scenes.join("Images").join(name).display());
        println!("    captioner: {caption}");
        for r in ev.refs.get(name).into_iter().flatten() {
            println!("    reference: {r}");
        }
    }
    println!();
    print_scores(&ev.scores);
    let metrics = dir.join("metrics.json");
    captioner::fsutil::write_json_atomic(&metrics, &ev.scores)?;
    let hyps = dir.join("captions.json");
    captioner::metrics::coco::write_hyps_json(&hyps, &ev.hyps)?;
    println!("\nwrote {} and {}", metrics.display(), hyps.display());
    super::eval_report::write(&dir.join("report"), &ev, &run_dir, "test", 1)?;
    let total = start.elapsed().as_secs_f64();
    let phases: Vec<String> = phases
        .iter()
        .map(|(what, secs)| format!("{what} {secs:.1} s"))
        .collect();
    println!("demo took {total:.1} s ({})", phases.join(", "));
    println!(
        "next: captioner caption --model {} IMAGE..., or captioner serve --model {}",
        run_dir.display(),
        run_dir.display()
    );

    if args.serve {
        run_step(&owned(&[
            "serve",
            "--model",
            &s(&run_dir),
            "--addr",
            &args.addr,
        ]))?;
    }
    Ok(0)
}
