//! Parity of the soft-attention decoder (issue #14, item 3) with PyTorch, from the fixture
//! written by scripts/reference/attention_fixtures.py: logits, α, the loss and its two parts,
//! every gradient, three Adam steps with the tutorial's gradient clamp, evaluation logits, and
//! greedy decoding through the shared step. Weights, features and captions come from formulas
//! both sides compute.

use crate::common;
use candle_core::{Device, Tensor};
use captioner::decode::{beam_search, greedy, AttentionSteps, BeamOptions};
use captioner::model::attention::step::{initial_state, project_cells, step, word_gates, StepOut};
use captioner::model::attention::teacher::{backward, forward, PassOptions, TeacherBatch};
use captioner::model::attention::{AttentionDecoder, PARAMS};
use captioner::train::adam::{AdamConfig, BufferAdam};
use std::collections::HashMap;

const V: usize = 40;
const P: usize = 6;
const C: usize = 32;
const E: usize = 24;
const A: usize = 20;
const H: usize = 28;
const B: usize = 4;
const START: u32 = 1;
const END: u32 = 2;

fn formula(n: usize, seed: f64, scale: f64) -> Vec<f32> {
    (0..n)
        .map(|i| (scale * (0.5 + 0.731 * i as f64 + 1.3 * seed).sin()) as f32)
        .collect()
}

/// The decoder of the script's seed table.
fn decoder() -> AttentionDecoder {
    let (kc, kh, ka) = (
        1.0 / (C as f64).sqrt(),
        1.0 / (H as f64).sqrt(),
        1.0 / (A as f64).sqrt(),
    );
    let table: [(&str, &[usize], f64, f64); 19] = [
        ("attention.encoder_att.weight", &[A, C], 1.0, kc),
        ("attention.encoder_att.bias", &[A], 2.0, kc),
        ("attention.decoder_att.weight", &[A, H], 3.0, kh),
        ("attention.decoder_att.bias", &[A], 4.0, kh),
        ("attention.full_att.weight", &[1, A], 5.0, ka),
        ("attention.full_att.bias", &[1], 6.0, ka),
        ("embedding.weight", &[V, E], 7.0, 0.1),
        ("decode_step.weight_ih", &[4 * H, E + C], 8.0, kh),
        ("decode_step.weight_hh", &[4 * H, H], 9.0, kh),
        ("decode_step.bias_ih", &[4 * H], 10.0, kh),
        ("decode_step.bias_hh", &[4 * H], 11.0, kh),
        ("init_h.weight", &[H, C], 12.0, kc),
        ("init_h.bias", &[H], 13.0, kc),
        ("init_c.weight", &[H, C], 14.0, kc),
        ("init_c.bias", &[H], 15.0, kc),
        ("f_beta.weight", &[C, H], 16.0, kh),
        ("f_beta.bias", &[C], 17.0, kh),
        ("fc.weight", &[V, H], 18.0, kh),
        ("fc.bias", &[V], 19.0, kh),
    ];
    let map: HashMap<String, Tensor> = table
        .iter()
        .map(|&(name, shape, seed, scale)| {
            let n = shape.iter().product();
            let t = Tensor::from_vec(formula(n, seed, scale), shape, &Device::Cpu).unwrap();
            (format!("decoder.{name}"), t)
        })
        .collect();
    AttentionDecoder::from_tensors(&map, "decoder.").unwrap()
}

fn captions() -> Vec<Vec<u32>> {
    common::fixture_captions(V)
}

fn fixture() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(
        common::fixture("attention/parity.safetensors"),
        &Device::Cpu,
    )
    .unwrap()
}

fn f32s(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn f64_of(f: &HashMap<String, Tensor>, k: &str) -> f64 {
    f[k].to_vec1::<f64>().unwrap()[0]
}

/// Largest difference relative to the reference's largest magnitude (plus `floor`).
fn assert_close(what: &str, ours: &[f32], theirs: &[f32], rel: f32, floor: f32) {
    assert_eq!(ours.len(), theirs.len(), "{what}: lengths");
    let scale = theirs.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = ours
        .iter()
        .zip(theirs)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        diff <= rel * scale + floor,
        "{what}: max difference {diff:e} against max magnitude {scale:e}"
    );
}

/// Rows of a time-major pass in the reference's order (each step's captions in batch order).
fn reorder(values: &[f32], width: usize, order: &[usize]) -> Vec<f32> {
    order
        .iter()
        .flat_map(|&r| values[r * width..(r + 1) * width].iter().copied())
        .collect()
}

#[test]
fn attention_decoder_matches_pytorch_forward_backward_adam_and_greedy() {
    let f = fixture();
    let maps = formula(B * P * C, 50.0, 1.0);
    assert_eq!(maps, f32s(&f["features"]), "the features' formula");
    let caps = captions();
    let refs: Vec<&[u32]> = caps.iter().map(Vec::as_slice).collect();
    let batch = TeacherBatch {
        maps: &maps,
        cells: P,
        captions: &refs,
        start: START,
        end: END,
    };
    let opts = PassOptions {
        dropout: 0.0,
        alpha_c: 1.0,
    };
    let mut rng = rand::rng();
    let mut dec = decoder();

    let pass = forward(&dec, &batch, opts, &mut rng).unwrap();
    assert_eq!(pass.rows(), 20);
    let order = pass.batch_order();
    assert_close(
        "logits",
        &reorder(pass.logits(), V, &order),
        &f32s(&f["logits"]),
        1e-5,
        0.0,
    );
    assert_close(
        "alphas",
        &reorder(pass.alphas(), P, &order),
        &f32s(&f["alphas"]),
        1e-5,
        0.0,
    );
    for (ours, key) in [
        (pass.loss.ce, "ce"),
        (pass.loss.attention, "att_reg"),
        (pass.loss.total(), "loss"),
    ] {
        let theirs = f64_of(&f, key);
        assert!(
            (ours - theirs).abs() <= 1e-5 * theirs.abs(),
            "{key}: {ours} vs {theirs}"
        );
    }

    let grads = backward(&dec, &pass).unwrap();
    for ((_, name), g) in PARAMS.iter().zip(&grads) {
        let theirs = f32s(&f[&format!("grad.{name}")]);
        // full_att.bias's true gradient is zero (softmax ignores a shift): rounding only.
        let floor = if *name == "attention.full_att.bias" {
            1e-6
        } else {
            0.0
        };
        assert_close(&format!("grad.{name}"), g, &theirs, 1e-4, floor);
    }

    // Three Adam steps (lr 4e-4), each gradient clamped to [−5, 5] first.
    let cfg = AdamConfig {
        lr: 4e-4,
        ..AdamConfig::default()
    };
    let mut adam = BufferAdam::new(dec.zeros_like().iter().map(Vec::len), cfg);
    let expected = f[&"losses".to_string()].to_vec1::<f64>().unwrap();
    let mut losses = Vec::new();
    for _ in 0..3 {
        let pass = forward(&dec, &batch, opts, &mut rng).unwrap();
        losses.push(pass.loss.total());
        let mut grads = backward(&dec, &pass).unwrap();
        for g in &mut grads {
            for x in g.iter_mut() {
                *x = x.clamp(-5.0, 5.0);
            }
        }
        adam.step(dec.params_mut(), &grads).unwrap();
    }
    losses.push(forward(&dec, &batch, opts, &mut rng).unwrap().loss.total());
    for (ours, theirs) in losses.iter().zip(&expected) {
        assert!(
            (ours - theirs).abs() <= 1e-5 * theirs.abs(),
            "losses {losses:?} vs {expected:?}"
        );
    }
    let after = dec.tensors("").unwrap();
    for name in [
        "fc.bias",
        "decode_step.bias_hh",
        "attention.full_att.weight",
    ] {
        let ours = after.iter().find(|(n, _)| n == name).unwrap();
        assert_close(
            &format!("after.{name}"),
            &f32s(&ours.1),
            &f32s(&f[&format!("after.{name}")]),
            1e-4,
            0.0,
        );
    }

    // Evaluation: no dropout, the cross-entropy alone.
    let eval = forward(
        &dec,
        &batch,
        PassOptions {
            dropout: 0.0,
            alpha_c: 0.0,
        },
        &mut rng,
    )
    .unwrap();
    assert_close(
        "eval_logits",
        &reorder(eval.logits(), V, &eval.batch_order()),
        &f32s(&f["eval_logits"]),
        1e-4,
        0.0,
    );
    let eval_ce = f64_of(&f, "eval_ce");
    assert!((eval.loss.ce - eval_ce).abs() <= 1e-5 * eval_ce);

    // Greedy decoding of image 0 through the shared step.
    let a = &maps[..P * C];
    let att1 = project_cells(&dec, a, 1, P).unwrap();
    let (mut h, mut c, _) = initial_state(&dec, a, 1, P).unwrap();
    let (mut word, mut words, mut alphas) = (START, Vec::new(), Vec::new());
    let d = dec.dims();
    for k in 0..25 {
        let xw = word_gates(&dec, &[word]).unwrap();
        let (mut att2, mut alpha, mut ctx, mut gate, mut z, mut gates, mut c2, mut h2) = (
            vec![0.0; A],
            vec![0.0; P],
            vec![0.0; C],
            vec![0.0; C],
            vec![0.0; C],
            vec![0.0; 4 * H],
            vec![0.0; H],
            vec![0.0; H],
        );
        step(
            &dec,
            1,
            P,
            a,
            &att1,
            &h,
            &c,
            &xw,
            StepOut {
                att2: &mut att2,
                alpha: &mut alpha,
                context: &mut ctx,
                gate: &mut gate,
                z: &mut z,
                gates: &mut gates,
                c: &mut c2,
                h: &mut h2,
            },
        )
        .unwrap();
        let fc = dec.param(captioner::model::attention::Param::FcW);
        let fb = dec.param(captioner::model::attention::Param::FcB);
        let logits: Vec<f32> = (0..d.vocab)
            .map(|v| fb[v] + (0..H).map(|j| fc[v * H + j] * h2[j]).sum::<f32>())
            .collect();
        if k == 0 {
            assert_close(
                "greedy.logits_first",
                &logits,
                &f32s(&f["greedy.logits_first"]),
                1e-4,
                0.0,
            );
        }
        alphas.extend_from_slice(&alpha);
        (h, c) = (h2, c2);
        word = (0..V)
            .max_by(|&x, &y| logits[x].total_cmp(&logits[y]))
            .unwrap() as u32;
        if word == END {
            break;
        }
        words.push(word as i64);
    }
    assert_eq!(words, f["greedy.words"].to_vec1::<i64>().unwrap());
    assert_close(
        "greedy.alphas",
        &alphas,
        &f32s(&f["greedy.alphas"]),
        1e-4,
        0.0,
    );

    // The same through the decoding API: greedy search over AttentionSteps (image 0 of two, so
    // rows are selected by image), its maps replayed, and a beam of 1.
    let steps = AttentionSteps::new(&dec, maps[..2 * P * C].to_vec(), 2).unwrap();
    let decoded = greedy(&steps, 2).unwrap();
    let tokens: Vec<i64> = decoded[0].tokens.iter().map(|&t| t as i64).collect();
    assert_eq!(tokens, words);
    let replayed: Vec<f32> = steps.attention_of(0, &decoded[0].tokens).unwrap().concat();
    assert_close(
        "replayed alphas",
        &replayed,
        &f32s(&f["greedy.alphas"])[..replayed.len()],
        1e-4,
        0.0,
    );
    let beam1 = beam_search(
        &steps,
        2,
        BeamOptions {
            beam: 1,
            length_alpha: 0.0,
        },
    )
    .unwrap();
    assert_eq!(beam1[0].tokens, decoded[0].tokens);
    assert_eq!(beam1[1].tokens, decoded[1].tokens);
}
