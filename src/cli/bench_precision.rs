//! `captioner bench precision`: what `--precision bf16` costs in accuracy and buys in speed. The
//! features of a folder's images through the f32 and the bf16 trunk (per-image cosine, the
//! largest error relative to the feature's norm, images/s of each), and with `--model` and
//! `--data` a trained model's test-set BLEU-4 and CIDEr captioned both ways.

use super::bench_common::use_threads;
use candle_core::{Device, Tensor};
use captioner::data::SplitName;
use captioner::model::resnet::{Arch, ResNetTrunk};
use captioner::model::Precision;
use captioner::pipeline::{evaluate_model, CorpusSpec, EvalRequest};
use captioner::progress::Silent;
use captioner::{CaptionOptions, Captioner};
use std::path::PathBuf;
use std::time::Instant;

/// Flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Backbone weights (`.safetensors` or `.pth`): pretrained, or a random one whose BatchNorm
    /// statistics were recomputed (`init-backbone --calibrate DIR`); with the init's identity
    /// statistics every feature points the same way and any arithmetic looks exact.
    #[arg(long, value_name = "FILE")]
    pub backbone: PathBuf,
    #[arg(long, default_value = "resnet50")]
    pub arch: Arch,
    /// Folder of images (.jpg/.jpeg/.png, recursively; the first `--images` by name).
    #[arg(long, value_name = "DIR")]
    pub images_dir: PathBuf,
    /// Images compared.
    #[arg(long, default_value_t = 128)]
    pub images: usize,
    /// Images per forward pass.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// A trained run directory or export: also caption `--data`'s test part both ways.
    #[arg(long, value_name = "M", requires = "data")]
    pub model: Option<PathBuf>,
    /// The corpus the model was trained on.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Threads for both trunks and the decoding (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Leading stages kept in f32 (0: bf16 everywhere; 1: the stem; 2: the stem and layer1,
    /// what `--precision bf16` does).
    #[arg(long, default_value_t = captioner::model::resnet::F32_STAGES_IN_BF16)]
    pub f32_stages: usize,
}

/// Features of `batches` and the seconds the forward passes took.
fn features(trunk: &ResNetTrunk, batches: &[Tensor]) -> anyhow::Result<(Vec<Vec<f32>>, f64)> {
    trunk.forward(&batches[0])?; // warm-up
    let mut rows = Vec::new();
    let start = Instant::now();
    for b in batches {
        rows.extend(trunk.forward(b)?.to_vec2::<f32>()?);
    }
    Ok((rows, start.elapsed().as_secs_f64()))
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb).max(f64::MIN_POSITIVE)
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let threads = use_threads(args.threads);
    captioner::model::bf16::kernel()?;
    super::exit::require_path("--backbone", &args.backbone)?;
    let files = super::data_args::first_images("--images-dir", &args.images_dir, args.images, 1)?;
    let dev = Device::Cpu;
    let batches = files
        .chunks(args.batch_size.max(1))
        .map(super::data_args::image_batch)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let f32_trunk = ResNetTrunk::load(&args.backbone, args.arch, &dev)?;
    let bf16_trunk = f32_trunk
        .clone()
        .with_precision_from(Precision::Bf16, args.f32_stages)?;
    let (want, t32) = features(&f32_trunk, &batches)?;
    let (got, t16) = features(&bf16_trunk, &batches)?;
    let mut cos: Vec<f64> = want.iter().zip(&got).map(|(a, b)| cosine(a, b)).collect();
    let rel: Vec<f64> = want
        .iter()
        .zip(&got)
        .map(|(a, b)| {
            let norm = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            let max = a
                .iter()
                .zip(b)
                .map(|(x, y)| (*x as f64 - *y as f64).abs())
                .fold(0.0, f64::max);
            max / norm.max(f64::MIN_POSITIVE)
        })
        .collect();
    // How alike the images' own f32 features are: cosine parity means little if all are alike.
    let mut between = Vec::new();
    for i in 0..want.len().min(32) {
        for j in i + 1..want.len().min(32) {
            between.push(cosine(&want[i], &want[j]));
        }
    }
    cos.sort_by(f64::total_cmp);
    let n = files.len();
    println!(
        "{} bf16 ({}, first {} stages f32) against f32, {n} images of {}, batch {}, {threads} threads",
        args.arch,
        bf16_trunk
            .bf16_kernel()
            .map(|k| k.to_string())
            .unwrap_or_default(),
        args.f32_stages,
        args.images_dir.display(),
        args.batch_size
    );
    println!(
        "per-image cosine: min {:.6}  median {:.6}  mean {:.6}",
        cos[0],
        cos[n / 2],
        cos.iter().sum::<f64>() / n as f64
    );
    println!(
        "largest |bf16 - f32| / |f32 feature|: max {:.2e}  mean {:.2e}",
        rel.iter().copied().fold(0.0, f64::max),
        rel.iter().sum::<f64>() / n as f64
    );
    if !between.is_empty() {
        println!(
            "cosine between different images' f32 features: mean {:.4} (near 1 would mean degenerate features)",
            between.iter().sum::<f64>() / between.len() as f64
        );
    }
    println!(
        "images/s: f32 {:.2}  bf16 {:.2}  ({:.2}x)",
        n as f64 / t32,
        n as f64 / t16,
        t32 / t16
    );

    if let (Some(model), Some(data)) = (&args.model, &args.data) {
        let device = captioner::device::default_device();
        let request = EvalRequest {
            corpus: CorpusSpec::new(data),
            part: SplitName::Test,
            options: CaptionOptions::default(),
            use_cache: false,
        };
        let f32_model = Captioner::load(model, &device)?;
        let ev32 = evaluate_model(&f32_model, &request, &Silent)?;
        drop(f32_model);
        let bf16_model = Captioner::load(model, &device)?
            .with_precision_from(Precision::Bf16, args.f32_stages)?;
        let ev16 = evaluate_model(&bf16_model, &request, &Silent)?;
        let same = ev32
            .hyps
            .iter()
            .filter(|(k, v)| ev16.hyps.get(*k) == Some(*v))
            .count();
        println!(
            "captions of the test part ({} images), greedy: identical {same} of {}",
            ev32.scores.images,
            ev32.hyps.len()
        );
        println!("{:>10} {:>8} {:>8}", "", "BLEU-4", "CIDEr");
        for (name, ev) in [("f32", &ev32), ("bf16", &ev16)] {
            println!(
                "{name:>10} {:>8.4} {:>8.4}",
                ev.scores.bleu4, ev.scores.cider
            );
        }
    }
    Ok(0)
}
