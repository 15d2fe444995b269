//! `captioner bench encoder`: ResNet images/s at batch 1 and 16 for captioner's folded trunk,
//! candle's stock path (conv2d + batch_norm), and PyTorch eager in the same run when `python3`
//! has torch and torchvision. Weights are formula weights: speed does not depend on the values.

use super::bench_common::{json_lines, median_seconds, use_threads};
use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use captioner::model::resnet::{formula, Arch, ResNet, ResNetTrunk, TrunkLayout};
use std::process::Command;

const PYTORCH_SCRIPT: &str = include_str!("../../scripts/reference/bench_encoder.py");

/// Flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Threads for captioner (rayon/gemm) and PyTorch (torch.set_num_threads); default: all cores.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Timed iterations per batch size (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    /// Batch sizes, comma separated.
    #[arg(long, default_value = "1,16", value_delimiter = ',')]
    pub batches: Vec<usize>,
    #[arg(long, default_value = "resnet50")]
    pub arch: Arch,
    /// Python interpreter for the PyTorch column (default: python3 on PATH).
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// Skip the PyTorch column.
    #[arg(long)]
    pub no_python: bool,
    /// Also time candle's stock path (unfolded conv2d + batch_norm) and the folded NCHW graph.
    #[arg(long)]
    pub compare_candle: bool,
}

/// PyTorch images/s per batch size, or why there is none.
fn pytorch(args: &Args, threads: usize) -> Result<Vec<(usize, f64)>, String> {
    let probe = Command::new(&args.python)
        .args(["-c", "import torch, torchvision"])
        .output()
        .map_err(|e| format!("{}: {e}", args.python))?;
    if !probe.status.success() {
        return Err(format!(
            "{} cannot import torch and torchvision (pip install torch torchvision)",
            args.python
        ));
    }
    let batches: Vec<String> = args.batches.iter().map(|b| b.to_string()).collect();
    let lines = json_lines(
        Command::new(&args.python)
            .args(["-c", PYTORCH_SCRIPT, "--threads", &threads.to_string()])
            .args([
                "--iters",
                &args.iters.to_string(),
                "--batches",
                &batches.join(","),
            ])
            .args(["--arch", &args.arch.to_string()]),
    )?;
    lines
        .into_iter()
        .map(
            |v| match (v["batch"].as_u64(), v["images_per_s"].as_f64()) {
                (Some(b), Some(r)) => Ok((b as usize, r)),
                _ => Err(format!("unexpected line from the PyTorch script: {v}")),
            },
        )
        .collect()
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let threads = use_threads(args.threads);

    let dev = Device::Cpu;
    let sd = formula::state_dict(args.arch)?;
    let trunk = ResNetTrunk::from_state_dict(args.arch, &sd, &dev)?;
    let extra = if args.compare_candle {
        let nchw = ResNetTrunk::with_layout(args.arch, &sd, &dev, TrunkLayout::Nchw)?;
        let stock = ResNet::new(args.arch, VarBuilder::from_tensors(sd, DType::F32, &dev))?;
        Some((nchw, stock))
    } else {
        None
    };

    let mut rows = Vec::new();
    for &b in &args.batches {
        let x = Tensor::randn(0f32, 1.0, (b, 3, 224, 224), &dev)?;
        let ours = median_seconds(args.iters, || {
            trunk.forward(&x)?;
            Ok(())
        })?;
        let (nchw, stock) = match &extra {
            Some((nchw, stock)) => (
                Some(median_seconds(args.iters, || {
                    nchw.forward(&x)?;
                    Ok(())
                })?),
                Some(median_seconds(args.iters.min(3), || {
                    stock.features_t(&x, false)?;
                    Ok(())
                })?),
            ),
            None => (None, None),
        };
        eprintln!("batch {b}: captioner {:.1} ms", ours * 1e3);
        rows.push((b, ours, nchw, stock));
    }
    let torch = if args.no_python {
        Err("skipped (--no-python)".to_string())
    } else {
        pytorch(&args, threads)
    };

    println!(
        "{} encoder, 224x224 f32, {threads} threads, median of {} iterations (images/s, higher is better)",
        args.arch, args.iters
    );
    let ips = |b: usize, s: f64| b as f64 / s;
    let mut header = format!("{:>6} {:>12}", "batch", "captioner");
    if extra.is_some() {
        header.push_str(&format!(" {:>13} {:>13}", "folded-NCHW", "candle-stock"));
    }
    if torch.is_ok() {
        header.push_str(&format!(" {:>9} {:>17}", "pytorch", "captioner/pytorch"));
    }
    println!("{header}");
    for (b, ours, nchw, stock) in &rows {
        let mut line = format!("{b:>6} {:>12.2}", ips(*b, *ours));
        if let (Some(n), Some(s)) = (nchw, stock) {
            line.push_str(&format!(" {:>13.2} {:>13.2}", ips(*b, *n), ips(*b, *s)));
        }
        if let Ok(t) = &torch {
            let r = t
                .iter()
                .find(|(tb, _)| tb == b)
                .map(|x| x.1)
                .context("PyTorch skipped a batch size")?;
            line.push_str(&format!(" {r:>9.2} {:>16.2}x", ips(*b, *ours) / r));
        }
        println!("{line}");
    }
    if let Err(why) = &torch {
        println!("PyTorch: not measured: {}", why.trim());
    }
    Ok(0)
}
