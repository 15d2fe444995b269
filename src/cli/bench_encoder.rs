//! `captioner bench encoder`: ResNet images/s at batch 1 and 16 for captioner's folded trunk,
//! candle's stock path (conv2d + batch_norm), and PyTorch eager in the same run when `python3`
//! has torch and torchvision. Weights are formula weights: speed does not depend on the values.
//! `--bf16` adds captioner's bf16 trunk and PyTorch under bf16 autocast; `--pause-ms` starts every
//! timed call from an idle machine, as a one-off `caption` or `features --batch-size 1` does.

use super::bench_common::{median, median_seconds, seconds_after, use_threads};
use super::bench_rounds::{json_floats, TorchRounds, SETTLE};
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
    /// Timed iterations per batch size and round (the median of all rounds' is reported).
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    /// Rounds: each batch size timed on captioner, then on PyTorch, this many times over, so
    /// both sides run in the same minutes of a noisy machine.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
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

/// Starts PyTorch's side (its model built), or says why there is none.
fn start_pytorch(args: &Args, threads: usize) -> Result<TorchRounds, String> {
    if args.no_python {
        return Err("skipped (--no-python)".to_string());
    }
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
    let mut flags = vec![
        "--threads".to_string(),
        threads.to_string(),
        "--iters".into(),
        args.iters.to_string(),
        "--arch".into(),
        args.arch.to_string(),
        "--pause-ms".into(),
        args.pause_ms.to_string(),
    ];
    if args.bf16 {
        flags.push("--bf16".into());
    }
    TorchRounds::start(&args.python, PYTORCH_SCRIPT, &flags)
}

/// PyTorch's seconds per call at batch `b`, f32 then (when `bf16`) bf16.
fn pytorch_batch(t: &mut TorchRounds, b: usize, bf16: bool) -> Result<[Vec<f64>; 2], String> {
    let f32s = seconds_of(t.request(&b.to_string())?, b, "f32")?;
    let bf16s = if bf16 {
        seconds_of(t.line()?, b, "bf16")?
    } else {
        Vec::new()
    };
    Ok([f32s, bf16s])
}

/// The seconds per call of one line of the PyTorch script, which must be for batch `b` and
/// `precision`.
fn seconds_of(v: serde_json::Value, b: usize, precision: &str) -> Result<Vec<f64>, String> {
    if v["batch"].as_u64() != Some(b as u64) || v["precision"].as_str() != Some(precision) {
        return Err(format!("unexpected line from the PyTorch script: {v}"));
    }
    Ok(json_floats(&v, "ms").iter().map(|ms| ms / 1e3).collect())
}

/// Every timed call at one batch size, in seconds, over all rounds.
#[derive(Default)]
struct BatchTimes {
    ours: Vec<f64>,
    ours_bf16: Vec<f64>,
    /// The folded NCHW graph and candle's stock path (first round only).
    nchw: Option<f64>,
    stock: Option<f64>,
    torch: Vec<f64>,
    torch_bf16: Vec<f64>,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let threads = use_threads(args.threads);
    if args.rounds == 0 {
        return Err(super::exit::usage("--rounds must be >= 1"));
    }

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
    let extra = if args.compare_candle {
        let nchw = ResNetTrunk::with_layout(args.arch, &sd, &dev, TrunkLayout::Nchw)?;
        let stock = ResNet::new(args.arch, VarBuilder::from_tensors(sd, DType::F32, &dev))?;
        Some((nchw, stock))
    } else {
        None
    };
    let inputs = args
        .batches
        .iter()
        .map(|&b| Tensor::randn(0f32, 1.0, (b, 3, 224, 224), &dev))
        .collect::<candle_core::Result<Vec<_>>>()?;
    let mut torch = start_pytorch(&args, threads);
    let mut times: Vec<BatchTimes> = args.batches.iter().map(|_| Default::default()).collect();
    let ips = |b: usize, s: f64| b as f64 / s;
    for round in 0..args.rounds {
        for ((&b, x), t) in args.batches.iter().zip(&inputs).zip(&mut times) {
            std::thread::sleep(SETTLE);
            let mut ours = seconds_after(args.iters, pause, || {
                trunk.forward(x)?;
                Ok(())
            })?;
            let mine = ips(b, median(&mut ours.clone()));
            let mut line = format!(
                "round {}, batch {b}: captioner {mine:.2} images/s",
                round + 1
            );
            t.ours.append(&mut ours);
            if let Some(t16) = &bf16 {
                t.ours_bf16.extend(seconds_after(args.iters, pause, || {
                    t16.forward(x)?;
                    Ok(())
                })?);
            }
            if let (Some((nchw, stock)), 0) = (&extra, round) {
                t.nchw = Some(median_seconds(args.iters, || {
                    nchw.forward(x)?;
                    Ok(())
                })?);
                t.stock = Some(median_seconds(args.iters.min(3), || {
                    stock.features_t(x, false)?;
                    Ok(())
                })?);
            }
            if let Ok(py) = &mut torch {
                std::thread::sleep(SETTLE);
                match pytorch_batch(py, b, bf16.is_some()) {
                    Ok([mut f32s, mut bf16s]) => {
                        let theirs = ips(b, median(&mut f32s.clone()));
                        line.push_str(&format!(
                            ", pytorch {theirs:.2} images/s, {:.2}x",
                            mine / theirs
                        ));
                        t.torch.append(&mut f32s);
                        t.torch_bf16.append(&mut bf16s);
                    }
                    Err(e) => torch = Err(e),
                }
            }
            if args.rounds > 1 {
                println!("{line}");
            }
        }
    }
    let torch_ok = torch.is_ok();

    println!(
        "{} encoder, 224x224 {}, {threads} threads, median of {} rounds of {} iterations (images/s, higher is better)",
        args.arch,
        if bf16.is_some() {
            "f32 and bf16 (bf16 columns: from layer2 on unless --f32-stages says otherwise)"
        } else {
            "f32"
        },
        args.rounds,
        args.iters
    );
    if args.pause_ms > 0 {
        println!("each timed call after {} ms idle", args.pause_ms);
    }
    let mut header = format!("{:>6} {:>12}", "batch", "captioner");
    if extra.is_some() {
        header.push_str(&format!(" {:>13} {:>13}", "folded-NCHW", "candle-stock"));
    }
    if torch_ok {
        header.push_str(&format!(" {:>9} {:>17}", "pytorch", "captioner/pytorch"));
    }
    if bf16.is_some() {
        header.push_str(&format!(" {:>14} {:>10}", "captioner-bf16", "bf16/f32"));
        if torch_ok {
            header.push_str(&format!(
                " {:>12} {:>16} {:>16}",
                "pytorch-bf16", "bf16/pytorch-f32", "bf16/pytorch-bf16"
            ));
        }
    }
    println!("{header}");
    for (&b, t) in args.batches.iter().zip(&mut times) {
        let ours = ips(b, median(&mut t.ours));
        let mut line = format!("{b:>6} {ours:>12.2}");
        if let (Some(n), Some(s)) = (t.nchw, t.stock) {
            line.push_str(&format!(" {:>13.2} {:>13.2}", ips(b, n), ips(b, s)));
        }
        let torch_f32 = (torch_ok && !t.torch.is_empty()).then(|| ips(b, median(&mut t.torch)));
        if let Some(r) = torch_f32 {
            line.push_str(&format!(" {r:>9.2} {:>16.2}x", ours / r));
        }
        if !t.ours_bf16.is_empty() {
            let v = ips(b, median(&mut t.ours_bf16));
            line.push_str(&format!(" {v:>14.2} {:>9.2}x", v / ours));
            if let (Some(rf), false) = (torch_f32, t.torch_bf16.is_empty()) {
                let rb = ips(b, median(&mut t.torch_bf16));
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
