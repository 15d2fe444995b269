//! `captioner bench train`: the seed's training step (batch 64 captions of Flickr8k's lengths, or
//! all `--words` long; the LSTM sees the image step + startofseq + the words; vocab 9000, feature
//! 2048 → head → decoder, loss, backward, Adam) in ms/step, and PyTorch's on the same batch and
//! thread count when `python3` has torch.

use super::bench_batch::{
    caption_lengths, describe, lengths_flag, random_captions, Lengths, BATCH,
};
use super::bench_common::{print_step_table, use_threads};
use super::bench_rounds::{interleaved_steps, print_rounds, StepRounds, TorchRounds};
use candle_core::{Device, Tensor};
use captioner::model::decoder::TeacherBatch;
use captioner::model::CaptionModel;
use captioner::train::adam::{Adam, AdamConfig};
use captioner::train::teacher_step;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

const PY_BENCH: &str = include_str!("../../scripts/reference/bench_train.py");

/// Flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Threads for both sides (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Timed steps per round and side (after 2 warm-up steps).
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Rounds: captioner's steps, then PyTorch's, this many times over, so both sides run in the
    /// same minutes of a noisy machine.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Python interpreter with torch for the side-by-side run.
    #[arg(long, default_value = "python3")]
    python: String,
    /// Skip the PyTorch run.
    #[arg(long)]
    no_python: bool,
    /// Vocabulary size (the seed's Flickr8k vocabulary has about 9000 words; a synth corpus ~60).
    #[arg(long, default_value_t = VOCAB)]
    vocab: usize,
    /// The decoder: `lstm` (the seed's step) or `attention` (the soft-attention decoder's step,
    /// against the PyTorch tutorial's own training step).
    #[arg(long, value_enum, default_value = "lstm")]
    decoder: super::train::Decoder,
    /// Feature-map cells of the attention decoder (7×7 for ResNet-50 at 224).
    #[arg(long, default_value_t = 49)]
    cells: usize,
    /// Every caption this many words long (no padding for either side; the bench before the
    /// lengths were drawn from Flickr8k used 19). Default: 64 lengths drawn from Flickr8k's
    /// captions, padded to the longest as a real batch is (the LSTM decoder only).
    #[arg(long)]
    words: Option<usize>,
}

const VOCAB: usize = 9000;
const FEATURE: usize = 2048;

/// captioner's step (and, when `torch` started, PyTorch's) in alternating rounds.
fn bench_rounds(
    rounds: usize,
    steps: usize,
    vocab: usize,
    lengths: &[usize],
    torch: Result<TorchRounds, String>,
) -> anyhow::Result<StepRounds> {
    let dev = Device::Cpu;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut model = CaptionModel::new(FEATURE, vocab, 256, 512, &mut rng, &dev)?;
    let mut opt = Adam::new(model.vars(), AdamConfig::default())?;
    let feats: Vec<f32> = (0..BATCH * FEATURE)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let feats = Tensor::from_vec(feats, (BATCH, FEATURE), &dev)?;
    let caps = random_captions(&mut rng, vocab, lengths);
    let refs: Vec<&[u32]> = caps.iter().map(|c| c.as_slice()).collect();
    interleaved_steps(rounds, steps, torch, || {
        let t0 = Instant::now();
        let batch = TeacherBatch::new(&refs, &dev)?;
        let pass = teacher_step::forward(&mut model, &feats, &batch)?;
        let t1 = Instant::now();
        let grads = pass.backward(&model)?;
        let t2 = Instant::now();
        opt.step(&grads)?;
        Ok([t0, t1, t2, Instant::now()])
    })
}

/// PyTorch's side of a step bench, started (its model built and warmed up) unless skipped.
pub(super) fn start_torch(
    python: Option<&str>,
    script: &str,
    args: &[String],
) -> Result<TorchRounds, String> {
    match python {
        None => Err("skipped (--no-python)".to_string()),
        Some(python) => TorchRounds::start(python, script, args),
    }
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let threads = use_threads(args.threads);
    // `use_threads` makes `--threads 0` one thread.
    if args.steps == 0 || args.rounds == 0 || args.vocab < 5 || args.words == Some(0) {
        return Err(super::exit::usage(
            "--steps, --rounds and --words must be >= 1, --vocab >= 5",
        ));
    }
    let vocab = args.vocab;
    if args.decoder == super::train::Decoder::Attention {
        if args.words.is_some() {
            return Err(super::exit::usage(
                "--words is for the LSTM decoder's bench (the attention bench's captions are all \
                 19 words)",
            ));
        }
        return super::bench_train_attention::run(
            threads,
            (args.rounds, args.steps),
            vocab,
            args.cells,
            if args.no_python {
                None
            } else {
                Some(&args.python)
            },
        );
    }
    let kind = args.words.map_or(Lengths::Flickr8k, Lengths::Fixed);
    // Its own seed, so the batch's lengths do not depend on the model's draws.
    let lengths = caption_lengths(&mut ChaCha8Rng::seed_from_u64(19), kind);
    println!(
        "training step: {}, {} LSTM steps, vocab {vocab}, feature {FEATURE}, Adam; \
         {threads} threads, median of {} rounds of {} steps per side",
        describe(&lengths, kind),
        lengths[0] + 2,
        args.rounds,
        args.steps
    );
    let flags = [
        "--threads".to_string(),
        threads.to_string(),
        "--steps".into(),
        args.steps.to_string(),
        "--vocab".into(),
        vocab.to_string(),
        "--lengths".into(),
        lengths_flag(&lengths),
    ];
    let python = (!args.no_python).then_some(args.python.as_str());
    let torch = start_torch(python, PY_BENCH, &flags);
    let measured = bench_rounds(args.rounds, args.steps, vocab, &lengths, torch)?;
    let [total, fwd, bwd, adam] = measured.captioner;
    print_rounds(&measured.per_round);
    print_step_table(total, &measured.torch);
    println!(
        "captioner phases (ms): forward with loss {fwd:.1}, backward {bwd:.1}, adam {adam:.1}"
    );
    Ok(0)
}
