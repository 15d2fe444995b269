//! `captioner bench caption`: one 500×375 JPEG end to end (read, decode, preprocess, encode, decode
//! words), median ms for greedy and beam search, and the same for PyTorch in the same run when the
//! Python interpreter has torch and torchvision (scripts/reference/bench_caption.py).
//!
//! Weights are random (trunk from a formula, head and decoder from a seed), vocabulary 9000. endofseq is
//! suppressed on both sides so every caption is the full 25 words: both do the same amount of work.

use super::bench_common::{median, median_seconds, seconds_after, use_threads};
use super::bench_rounds::{json_floats, TorchRounds, SETTLE};
use anyhow::Context;
use candle_core::{Device, Tensor};
use captioner::decode::{beam_search, greedy, AttentionSteps, BeamOptions, LstmSteps, MAX_WORDS};
use captioner::model::attention::{AttentionDecoder, AttentionDims, Param};
use captioner::model::resnet::{formula, Arch, ResNetTrunk};
use captioner::model::CaptionModel;
use captioner::pool::in_pool;
use captioner::text::vocab::END;
use captioner::vision::decode::decode_rgb;
use captioner::vision::preprocess::{preprocess, IMAGE_SIZE};
use rand::SeedableRng;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const PYTORCH_SCRIPT: &str = include_str!("../../scripts/reference/bench_caption.py");

/// Flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Timed runs per mode (the median is reported).
    #[arg(long, default_value_t = 10)]
    pub iters: usize,
    /// Rounds: each mode timed on captioner, then on PyTorch, this many times over, so both
    /// sides run in the same minutes of a noisy machine.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Sleep this long before every timed caption (both sides), so each starts from an idle
    /// machine, as a one-off `caption` or a `serve` request after a quiet spell does.
    #[arg(long, default_value_t = 0)]
    pub pause_ms: u64,
    /// Threads for captioner and PyTorch; default: all cores.
    #[arg(long)]
    pub threads: Option<usize>,
    #[arg(long, default_value = "resnet50")]
    pub arch: Arch,
    /// Vocabulary size of the random decoder.
    #[arg(long, default_value_t = 9000)]
    pub vocab: usize,
    /// Beam size of the beam-search row.
    #[arg(long, default_value_t = 3)]
    pub beam: usize,
    /// Caption this JPEG instead of a generated 500×375 one.
    #[arg(long, value_name = "FILE")]
    pub image: Option<PathBuf>,
    /// Python interpreter for the PyTorch column.
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// Skip the PyTorch column.
    #[arg(long)]
    pub no_python: bool,
    /// The decoder: `lstm` (the seed's, embedding 256) or `attention` (the tutorial's
    /// soft-attention decoder over the 7×7 map, sizes 512, against its own inference loop).
    #[arg(long, value_enum, default_value = "lstm")]
    pub decoder: super::train::Decoder,
}

/// The random decoder being timed, endofseq suppressed.
enum Decoder {
    Lstm(CaptionModel),
    Attention(AttentionDecoder),
}

impl Decoder {
    /// What it reads of a normalised image `[1, 3, S, S]`: the pooled feature or the flat map.
    fn features(&self, trunk: &ResNetTrunk, x: &Tensor) -> anyhow::Result<Tensor> {
        Ok(match self {
            Decoder::Lstm(_) => trunk.forward(x)?,
            Decoder::Attention(_) => trunk.forward_map(x)?.flatten_all()?.unsqueeze(0)?,
        })
    }

    /// Words of the greedy caption of `f`.
    fn greedy(&self, f: &Tensor) -> anyhow::Result<usize> {
        Ok(in_pool(|| match self {
            Decoder::Lstm(m) => greedy(&LstmSteps::new(m, f)?, 1),
            Decoder::Attention(d) => {
                greedy(&AttentionSteps::new(d, f.flatten_all()?.to_vec1()?, 1)?, 1)
            }
        })?[0]
            .tokens
            .len())
    }

    /// Beam search of `f`.
    fn beam(&self, f: &Tensor, opts: BeamOptions) -> anyhow::Result<()> {
        in_pool(|| match self {
            Decoder::Lstm(m) => beam_search(&LstmSteps::new(m, f)?, 1, opts),
            Decoder::Attention(d) => beam_search(
                &AttentionSteps::new(d, f.flatten_all()?.to_vec1()?, 1)?,
                1,
                opts,
            ),
        })?;
        Ok(())
    }
}

/// A 500×375 JPEG with smooth gradients and texture, like a photo's size and entropy.
fn test_jpeg(path: &Path) -> anyhow::Result<()> {
    let img = image::RgbImage::from_fn(500, 375, |x, y| {
        let n = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)) % 37;
        image::Rgb([
            ((x * 255 / 500) as u8).wrapping_add(n as u8),
            ((y * 255 / 375) as u8).wrapping_add((n * 3) as u8),
            (((x + y) * 255 / 875) as u8) ^ (n as u8),
        ])
    });
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90).encode_image(&img)?;
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// Starts PyTorch's side (its model built), or says why there is none.
fn start_pytorch(args: &Args, image: &Path, threads: usize) -> Result<TorchRounds, String> {
    if args.no_python {
        return Err("skipped (--no-python)".to_string());
    }
    let probe = Command::new(&args.python)
        .args(["-c", "import torch, torchvision, PIL"])
        .output()
        .map_err(|e| format!("{}: {e}", args.python))?;
    if !probe.status.success() {
        return Err(format!(
            "{} cannot import torch, torchvision and PIL",
            args.python
        ));
    }
    let flags: Vec<String> = [
        ("--image", image.display().to_string()),
        ("--threads", threads.to_string()),
        ("--iters", args.iters.to_string()),
        ("--arch", args.arch.to_string()),
        ("--vocab", args.vocab.to_string()),
        ("--beam", args.beam.to_string()),
        ("--pause-ms", args.pause_ms.to_string()),
        (
            "--decoder",
            match args.decoder {
                super::train::Decoder::Lstm => "lstm",
                super::train::Decoder::Attention => "attention",
            }
            .to_string(),
        ),
    ]
    .into_iter()
    .flat_map(|(k, v)| [k.to_string(), v])
    .collect();
    TorchRounds::start(&args.python, PYTORCH_SCRIPT, &flags)
}

/// PyTorch's milliseconds per caption in `mode`.
fn pytorch_mode(t: &mut TorchRounds, mode: &str) -> Result<Vec<f64>, String> {
    let v = t.request(mode)?;
    let ms = json_floats(&v, "all_ms");
    if v["mode"].as_str() != Some(mode) || ms.is_empty() {
        return Err(format!("unexpected line from the PyTorch script: {v}"));
    }
    Ok(ms)
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let threads = use_threads(args.threads);
    if args.rounds == 0 {
        return Err(super::exit::usage("--rounds must be >= 1"));
    }
    let dir = tempfile_dir()?;
    let image = match &args.image {
        Some(p) => p.clone(),
        None => {
            let p = dir.join("bench-500x375.jpg");
            test_jpeg(&p)?;
            p
        }
    };

    let dev = Device::Cpu;
    let trunk = ResNetTrunk::from_state_dict(args.arch, &formula::state_dict(args.arch)?, &dev)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let model = if args.decoder == super::train::Decoder::Attention {
        let dims = AttentionDims {
            vocab: args.vocab,
            channels: trunk.feature_dim(),
            embed: 512,
            attention: 512,
            hidden: 512,
        };
        let mut dec = AttentionDecoder::new(dims, &mut rng);
        dec.params_mut()[Param::FcB as usize][END as usize] = -1e4;
        Decoder::Attention(dec)
    } else {
        let model = CaptionModel::new(trunk.feature_dim(), args.vocab, 256, 512, &mut rng, &dev)?;
        let mut bias = model.decoder.linear_bias.as_tensor().to_vec1::<f32>()?;
        bias[END as usize] = -1e4;
        model
            .decoder
            .linear_bias
            .set(&Tensor::from_vec(bias, args.vocab, &dev)?)?;
        Decoder::Lstm(model)
    };

    let features = |path: &Path| -> anyhow::Result<Tensor> {
        let bytes = std::fs::read(path)?;
        let rgb = decode_rgb(&bytes, path)?;
        let x = Tensor::from_vec(preprocess(&rgb), (1, 3, IMAGE_SIZE, IMAGE_SIZE), &dev)?;
        model.features(&trunk, &x)
    };
    let beam_opts = BeamOptions {
        beam: args.beam,
        length_alpha: 0.0,
    };
    let beam_name = format!("beam{}", args.beam);
    let modes = [("greedy", false), (beam_name.as_str(), true)];
    let mut torch = start_pytorch(&args, &image, threads);
    // Per mode, every timed call over all rounds (ms): captioner's and PyTorch's.
    let mut ours: [Vec<f64>; 2] = Default::default();
    let mut theirs: [Vec<f64>; 2] = Default::default();
    let mut words = 0;
    let pause = Duration::from_millis(args.pause_ms);
    for round in 0..args.rounds {
        for (i, &(mode, beam)) in modes.iter().enumerate() {
            std::thread::sleep(SETTLE);
            let mut ms: Vec<f64> = seconds_after(args.iters, pause, || {
                let f = features(&image)?;
                if beam {
                    model.beam(&f, beam_opts)
                } else {
                    // On a rayon worker, as `Captioner::decode_features` decodes (see
                    // `captioner::pool`).
                    words = model.greedy(&f)?;
                    Ok(())
                }
            })?
            .iter()
            .map(|s| s * 1e3)
            .collect();
            let mine = median(&mut ms.clone());
            let mut line = format!("round {}, {mode}: captioner {mine:.1} ms", round + 1);
            ours[i].append(&mut ms);
            if let Ok(t) = &mut torch {
                std::thread::sleep(SETTLE);
                match pytorch_mode(t, mode) {
                    Ok(mut ms) => {
                        let other = median(&mut ms.clone());
                        line.push_str(&format!(", pytorch {other:.1} ms, {:.2}x", other / mine));
                        theirs[i].append(&mut ms);
                    }
                    Err(e) => torch = Err(e),
                }
            }
            if args.rounds > 1 {
                println!("{line}");
            }
        }
    }
    // Where the time goes (captioner only).
    let bytes = std::fs::read(&image)?;
    let read_ms = median_ms(args.iters, || {
        std::fs::read(&image)?;
        Ok(())
    })?;
    let decode_ms = median_ms(args.iters, || {
        decode_rgb(&bytes, &image)?;
        Ok(())
    })?;
    let rgb = decode_rgb(&bytes, &image)?;
    let pre_ms = median_ms(args.iters, || {
        preprocess(&rgb);
        Ok(())
    })?;
    let x = Tensor::from_vec(preprocess(&rgb), (1, 3, IMAGE_SIZE, IMAGE_SIZE), &dev)?;
    let enc_ms = median_ms(args.iters, || {
        model.features(&trunk, &x)?;
        Ok(())
    })?;
    let f = model.features(&trunk, &x)?;
    let words_ms = median_ms(args.iters, || {
        model.greedy(&f)?;
        Ok(())
    })?;
    println!(
        "caption one {} end to end ({} trunk, {} decoder, vocabulary {}, {MAX_WORDS} words), \
         {threads} threads, median of {} rounds of {} runs (ms, lower is better)",
        match &args.image {
            Some(p) => p.display().to_string(),
            None => "generated 500x375 JPEG".to_string(),
        },
        args.arch,
        match model {
            Decoder::Lstm(_) => "lstm",
            Decoder::Attention(_) => "attention",
        },
        args.vocab,
        args.rounds,
        args.iters
    );
    if args.pause_ms > 0 {
        println!("each timed caption after {} ms idle", args.pause_ms);
    }
    let mut header = format!("{:>8} {:>10}", "mode", "captioner");
    if torch.is_ok() {
        header.push_str(&format!(" {:>9} {:>18}", "pytorch", "pytorch/captioner"));
    }
    println!("{header}");
    for (i, &(mode, _)) in modes.iter().enumerate() {
        let ms = median(&mut ours[i]);
        let mut line = format!("{mode:>8} {ms:>10.1}");
        if torch.is_ok() {
            let tms = median(&mut theirs[i]);
            line.push_str(&format!(" {tms:>9.1} {:>17.2}x", tms / ms));
        }
        println!("{line}");
    }
    println!(
        "captioner greedy by stage: read {read_ms:.2}, decode {decode_ms:.2}, preprocess {pre_ms:.2}, \
         encode {enc_ms:.1}, {words} words {words_ms:.1} ms"
    );
    if let Err(why) = &torch {
        println!("PyTorch: not measured: {}", why.trim());
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(0)
}

/// A fresh folder under the system's temp dir for the generated image.
fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("captioner-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// Median milliseconds of `iters` calls after one warm-up call.
fn median_ms(iters: usize, f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    Ok(median_seconds(iters, f)? * 1e3)
}
