//! `captioner bench encoder`: ResNet images/s at batch 1 and 16 for captioner's folded trunk,
//! candle's stock path (conv2d + batch_norm), and PyTorch eager in the same run when `python3`
//! has torch and torchvision. Weights are formula weights: speed does not depend on the values.
//! `--bf16` adds captioner's bf16 trunk and PyTorch under bf16 autocast; `--pause-ms` starts every
//! timed call from an idle machine, as a one-off `caption` or `features --batch-size 1` does.

use super::bench_common::{json_lines, median_seconds, median_seconds_after, use_threads};
use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use captioner::model::resnet::{formula, Arch, ResNet, ResNetTrunk, TrunkLayout};
use captioner::model::Precision;
use std::process::Command;
use std::time::Duration;

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
    /// Also time the bf16 trunk (`--precision bf16`; needs AMX-BF16 or AVX512-BF16) and PyTorch
    /// under `torch.autocast("cpu", dtype=torch.bfloat16)`.
    #[arg(long)]
    pub bf16: bool,
    /// Sleep this long before every timed call (both sides), so each starts from an idle
    /// machine: the cold start a person's one-off command pays.
    #[arg(long, default_value_t = 0)]
    pub pause_ms: u64,
    /// With `--bf16`: leading stages kept in f32 (0: bf16 everywhere; 2, the default of
    /// `--precision bf16`: the stem and layer1).
    #[arg(long, default_value_t = captioner::model::resnet::F32_STAGES_IN_BF16)]
    pub f32_stages: usize,
}

/// One PyTorch timing: batch, precision, images/s.
type TorchRow = (usize, Precision, f64);

/// PyTorch images/s per batch size, or why there is none.
fn pytorch(args: &Args, threads: usize) -> Result<Vec<TorchRow>, String> {
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
            .args(["--arch", &args.arch.to_string()])
            .args(["--pause-ms", &args.pause_ms.to_string()])
            .args(args.bf16.then_some("--bf16")),
    )?;
    lines
        .into_iter()
        .map(|v| {
            let precision = v["precision"].as_str().and_then(|p| p.parse().ok());
            match (v["batch"].as_u64(), precision, v["images_per_s"].as_f64()) {
                (Some(b), Some(p), Some(r)) => Ok((b as usize, p, r)),
                _ => Err(format!("unexpected line from the PyTorch script: {v}")),
            }
        })
        .collect()
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let threads = use_threads(args.threads);

    let dev = Device::Cpu;
    let sd = formula::state_dict(args.arch)?;
    let trunk = ResNetTrunk::from_state_dict(args.arch, &sd, &dev)?;
    let bf16 = if args.bf16 {
        let t = trunk
            .clone()
            .with_precision_from(Precision::Bf16, args.f32_stages)?;
        eprintln!(
            "bf16 kernel: {}, first {} stages in f32",
            t.bf16_kernel().map(|k| k.to_string()).unwrap_or_default(),
            args.f32_stages
        );
        Some(t)
    } else {
        None
    };
    let pause = Duration::from_millis(args.pause_ms);
    let timed =
        |f: &dyn Fn() -> anyhow::Result<()>, iters: usize| median_seconds_after(iters, pause, f);
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
        let ours = timed(
            &|| {
                trunk.forward(&x)?;
                Ok(())
            },
            args.iters,
        )?;
        let ours_bf16 = match &bf16 {
            Some(t) => Some(timed(
                &|| {
                    t.forward(&x)?;
                    Ok(())
                },
                args.iters,
            )?),
            None => None,
        };
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
        rows.push((b, ours, ours_bf16, nchw, stock));
    }
    let torch = if args.no_python {
        Err("skipped (--no-python)".to_string())
    } else {
        pytorch(&args, threads)
    };

    println!(
        "{} encoder, 224x224 {}, {threads} threads, median of {} iterations (images/s, higher is better)",
        args.arch,
        if bf16.is_some() {
            "f32 and bf16 (bf16 columns: from layer2 on unless --f32-stages says otherwise)"
        } else {
            "f32"
        },
        args.iters
    );
    let ips = |b: usize, s: f64| b as f64 / s;
    if args.pause_ms > 0 {
        println!("each timed call after {} ms idle", args.pause_ms);
    }
    let mut header = format!("{:>6} {:>12}", "batch", "captioner");
    if extra.is_some() {
        header.push_str(&format!(" {:>13} {:>13}", "folded-NCHW", "candle-stock"));
    }
    if torch.is_ok() {
        header.push_str(&format!(" {:>9} {:>17}", "pytorch", "captioner/pytorch"));
    }
    if bf16.is_some() {
        header.push_str(&format!(" {:>14} {:>10}", "captioner-bf16", "bf16/f32"));
        if torch.is_ok() {
            header.push_str(&format!(
                " {:>12} {:>16} {:>16}",
                "pytorch-bf16", "bf16/pytorch-f32", "bf16/pytorch-bf16"
            ));
        }
    }
    println!("{header}");
    let torch_at = |b: usize, p: Precision| -> anyhow::Result<Option<f64>> {
        match &torch {
            Ok(t) => Ok(Some(
                t.iter()
                    .find(|(tb, tp, _)| *tb == b && *tp == p)
                    .map(|x| x.2)
                    .context("PyTorch skipped a batch size")?,
            )),
            Err(_) => Ok(None),
        }
    };
    for (b, ours, ours_bf16, nchw, stock) in &rows {
        let mut line = format!("{b:>6} {:>12.2}", ips(*b, *ours));
        if let (Some(n), Some(s)) = (nchw, stock) {
            line.push_str(&format!(" {:>13.2} {:>13.2}", ips(*b, *n), ips(*b, *s)));
        }
        let torch_f32 = torch_at(*b, Precision::F32)?;
        if let Some(r) = torch_f32 {
            line.push_str(&format!(" {r:>9.2} {:>16.2}x", ips(*b, *ours) / r));
        }
        if let Some(o) = ours_bf16 {
            let v = ips(*b, *o);
            line.push_str(&format!(" {v:>14.2} {:>9.2}x", v / ips(*b, *ours)));
            if let (Some(rf), Some(rb)) = (torch_f32, torch_at(*b, Precision::Bf16)?) {
                line.push_str(&format!(" {rb:>12.2} {:>15.2}x {:>16.2}x", v / rf, v / rb));
            }
        }
        println!("{line}");
    }
    if let Err(why) = &torch {
        println!("PyTorch: not measured: {}", why.trim());
    }
    Ok(0)
}
