//! `captioner bench train --decoder attention`: one training step of the soft-attention decoder
//! (batch 64 captions of 19 words = 20 steps, P cells of 2048 channels, embedding, attention and
//! hidden 512, dropout 0.5, the attention regulariser, gradients clamped to ±5, Adam) in ms/step,
//! beside the PyTorch tutorial's own step on the same shapes
//! (scripts/reference/bench_train_attention.py).

use super::bench_batch::{random_captions, BATCH, WORDS};
use super::bench_common::print_step_table;
use super::bench_rounds::{interleaved_steps, print_rounds, StepRounds, TorchRounds};
use super::bench_train::start_torch;
use captioner::model::attention::teacher::{backward, forward, PassOptions, TeacherBatch};
use captioner::model::attention::{AttentionDecoder, AttentionDims};
use captioner::text::{END, START};
use captioner::train::adam::{AdamConfig, BufferAdam};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

const PY_BENCH: &str = include_str!("../../scripts/reference/bench_train_attention.py");

const CHANNELS: usize = 2048;
const SIZE: usize = 512;

/// captioner's step, with its phases (forward with the loss, backward, clamp + Adam), and when
/// `torch` started PyTorch's, in alternating rounds.
fn bench_rounds(
    (rounds, steps): (usize, usize),
    vocab: usize,
    cells: usize,
    torch: Result<TorchRounds, String>,
) -> anyhow::Result<StepRounds> {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let dims = AttentionDims {
        vocab,
        channels: CHANNELS,
        embed: SIZE,
        attention: SIZE,
        hidden: SIZE,
    };
    let mut dec = AttentionDecoder::new(dims, &mut rng);
    let mut opt = BufferAdam::new(
        dec.zeros_like().iter().map(Vec::len),
        AdamConfig {
            lr: 4e-4,
            ..AdamConfig::default()
        },
    );
    let maps: Vec<f32> = (0..BATCH * cells * CHANNELS)
        .map(|_| rng.random_range(0.0..1.0))
        .collect();
    let caps = random_captions(&mut rng, vocab, &[WORDS; BATCH]);
    let refs: Vec<&[u32]> = caps.iter().map(Vec::as_slice).collect();
    let opts = PassOptions {
        dropout: 0.5,
        alpha_c: 1.0,
    };
    interleaved_steps(rounds, steps, torch, || {
        let t0 = Instant::now();
        let batch = TeacherBatch {
            maps: &maps,
            cells,
            captions: &refs,
            start: START,
            end: END,
        };
        let pass = forward(&dec, &batch, opts, &mut rng)?;
        let t1 = Instant::now();
        let mut grads = backward(&dec, &pass)?;
        let t2 = Instant::now();
        for g in &mut grads {
            for x in g.iter_mut() {
                *x = x.clamp(-5.0, 5.0);
            }
        }
        opt.step(dec.params_mut(), &grads)?;
        Ok([t0, t1, t2, Instant::now()])
    })
}

/// Runs the bench and prints its table.
pub fn run(
    threads: usize,
    (rounds, steps): (usize, usize),
    vocab: usize,
    cells: usize,
    python: Option<&String>,
) -> anyhow::Result<i32> {
    if cells == 0 {
        return Err(super::exit::usage("--cells must be >= 1"));
    }
    println!(
        "attention training step: batch {BATCH}, {} steps, vocab {vocab}, {cells} cells of \
         {CHANNELS}, embedding/attention/hidden {SIZE}, dropout 0.5, clamp 5, Adam; {threads} \
         threads, median of {rounds} rounds of {steps} steps per side",
        WORDS + 1
    );
    let flags: Vec<String> = [
        ("--threads", threads),
        ("--steps", steps),
        ("--vocab", vocab),
        ("--cells", cells),
    ]
    .iter()
    .flat_map(|(k, v)| [k.to_string(), v.to_string()])
    .collect();
    let torch = start_torch(python.map(String::as_str), PY_BENCH, &flags);
    let measured = bench_rounds((rounds, steps), vocab, cells, torch)?;
    let [total, fwd, bwd, adam] = measured.captioner;
    print_rounds(&measured.per_round);
    print_step_table(total, &measured.torch);
    println!(
        "captioner phases (ms): forward with loss {fwd:.1}, backward {bwd:.1}, clamp + adam {adam:.1}"
    );
    Ok(0)
}
