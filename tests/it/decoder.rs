//! Parity of head + decoder + loss + Adam with PyTorch, from the fixture written by
//! scripts/reference/decoder_fixtures.py (weights, features and captions from shared formulas).

use crate::common::{self, max_abs, max_abs_diff};
use candle_core::{Device, Tensor};
use captioner::model::decoder::TeacherBatch;
use captioner::model::CaptionModel;
use captioner::train::adam::{Adam, AdamConfig};
use std::collections::HashMap;

const V: usize = 50;
const D: usize = 64;
const E: usize = 256;
const H: usize = 512;

fn formula(shape: &[usize], seed: f64, scale: f64) -> Tensor {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n)
        .map(|i| (scale * (0.5 + 0.731 * i as f64 + 1.3 * seed).sin()) as f32)
        .collect();
    Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
}

fn model() -> CaptionModel {
    let (kd, kh) = (1.0 / (D as f64).sqrt(), 1.0 / (H as f64).sqrt());
    let mut m: HashMap<String, Tensor> = HashMap::new();
    let mut put = |n: &str, t: Tensor| {
        m.insert(n.to_string(), t);
    };
    put("encoder.linear.weight", formula(&[E, D], 1.0, kd));
    put("encoder.linear.bias", formula(&[E], 2.0, kd));
    put(
        "encoder.bn.weight",
        (formula(&[E], 3.0, 0.5) + 1.0).unwrap(),
    );
    put("encoder.bn.bias", formula(&[E], 4.0, 0.1));
    put(
        "encoder.bn.running_mean",
        Tensor::zeros(E, candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    put(
        "encoder.bn.running_var",
        Tensor::ones(E, candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    put("decoder.embed.weight", formula(&[V, E], 5.0, 1.0));
    put("decoder.lstm.weight_ih_l0", formula(&[4 * H, E], 6.0, kh));
    put("decoder.lstm.weight_hh_l0", formula(&[4 * H, H], 7.0, kh));
    put("decoder.lstm.bias_ih_l0", formula(&[4 * H], 8.0, kh));
    put("decoder.lstm.bias_hh_l0", formula(&[4 * H], 9.0, kh));
    put("decoder.linear.weight", formula(&[V, H], 10.0, kh));
    put("decoder.linear.bias", formula(&[V], 11.0, kh));
    CaptionModel::from_tensors(&m).unwrap()
}

fn captions() -> Vec<Vec<u32>> {
    common::fixture_captions(V)
}

fn fixture() -> HashMap<String, Tensor> {
    let path = common::fixture("decoder/parity.safetensors");
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

/// The first rows of every parameter's gradient against torch's.
fn check_gradients(
    m: &CaptionModel,
    grads: &candle_core::backprop::GradStore,
    fx: &HashMap<String, Tensor>,
) {
    for (name, var) in m.vars() {
        let torch_name = name
            .replace("encoder.linear.", "linear_h.")
            .replace("encoder.", "")
            .replace("decoder.", "");
        let want = &fx[&format!("grad.{torch_name}")];
        let g = grads.get(var.as_tensor()).expect("no gradient");
        let rows = g.dims()[0];
        let got = g.reshape((rows, ())).unwrap().narrow(0, 0, 8).unwrap();
        let d = max_abs_diff(&got, want);
        let scale = max_abs(want);
        println!("grad {name}: max |diff| {d:e} (max |grad| {scale:e})");
        assert!(
            d <= 1e-5 + 1e-4 * scale,
            "gradient of {name} differs by {d}"
        );
    }
}

#[test]
fn head_decoder_loss_and_adam_match_pytorch() {
    let fx = fixture();
    let features = formula(&[4, D], 12.0, 1.0);
    assert!(
        max_abs_diff(&features, &fx["features"]) == 0.0,
        "feature formula differs"
    );
    let caps = captions();
    let refs: Vec<&[u32]> = caps.iter().map(|c| c.as_slice()).collect();
    let batch = TeacherBatch::new(&refs, &Device::Cpu).unwrap();
    assert_eq!(batch.tokens, 5 + 3 + 7 + 1 + 4);
    let mut m = model();

    let logits = m.logits(&features, &batch, true).unwrap();
    let d = max_abs_diff(&logits, &fx["train_logits"]);
    println!("train-mode logits max |diff| = {d:e}");
    assert!(d <= 1e-4, "logits differ by {d}");

    let expected: Vec<f64> = fx["losses"].to_vec1().unwrap();
    let mut opt = Adam::new(m.vars(), AdamConfig::default()).unwrap();
    for (k, want) in expected.iter().enumerate() {
        let loss = captioner::train::loss::batch_loss(&mut m, &features, &batch, true).unwrap();
        let got = loss.to_scalar::<f32>().unwrap() as f64;
        println!(
            "step {k}: loss {got:.7} torch {want:.7} diff {:e}",
            (got - want).abs()
        );
        let tol = if k == 0 { 1e-4 } else { 1e-5 };
        assert!((got - want).abs() <= tol, "loss {k}: {got} vs {want}");
        if k < 3 {
            let grads = loss.backward().unwrap();
            if k == 0 {
                check_gradients(&m, &grads, &fx);
            }
            opt.step(&grads).unwrap();
        }
    }
    let d = max_abs_diff(&m.head.running_mean, &fx["running_mean"]);
    assert!(d <= 1e-5, "running mean differs by {d}");
    let d = max_abs_diff(&m.head.running_var, &fx["running_var"]);
    assert!(d <= 1e-5, "running var differs by {d}");
    let d = max_abs_diff(
        m.decoder.lstm.bias_hh.as_tensor(),
        &fx["lstm_bias_hh_after"],
    );
    assert!(d <= 1e-6, "LSTM bias after 3 Adam steps differs by {d}");

    let logits = m.logits(&features, &batch, false).unwrap();
    let d = max_abs_diff(&logits, &fx["eval_logits"]);
    println!("eval-mode logits max |diff| = {d:e}");
    assert!(d <= 1e-4, "eval logits differ by {d}");
    let eval_loss = captioner::train::loss::cross_entropy(&logits, &batch.targets).unwrap();
    let want = fx["eval_loss"].to_vec1::<f64>().unwrap()[0];
    assert!((eval_loss.to_scalar::<f32>().unwrap() as f64 - want).abs() <= 1e-5);
}

/// Greedy and beam search use `step`; it must give the logits the teacher-forced forward gives.
#[test]
fn step_api_matches_teacher_forced_forward() {
    let mut m = model();
    let features = formula(&[4, D], 12.0, 1.0);
    let caps = captions();
    let refs: Vec<&[u32]> = caps.iter().map(|c| c.as_slice()).collect();
    let batch = TeacherBatch::new(&refs, &Device::Cpu).unwrap();
    let forced = m.logits(&features, &batch, false).unwrap();
    let image = m.head.forward(&features).unwrap();
    // Caption 2 (7 words): image step, then startofseq, w1..w7.
    let cap = &caps[2];
    let (_, mut state) = m
        .decoder
        .step(&image.narrow(0, 2, 1).unwrap(), None)
        .unwrap();
    let mut rows = Vec::new();
    let inputs: Vec<u32> = std::iter::once(1).chain(cap.iter().copied()).collect();
    for &tok in &inputs {
        let ids = Tensor::new(&[tok], &Device::Cpu).unwrap();
        let x = m.decoder.embed_tokens(&ids).unwrap();
        let (logits, s) = m.decoder.step(&x, Some(&state)).unwrap();
        rows.push(logits);
        state = s;
    }
    let stepped = Tensor::cat(&rows, 0).unwrap();
    // Caption 2's rows in the time-major real positions: at each t, the columns still running.
    let lens = [5usize, 3, 7, 1];
    let mut idx = Vec::new();
    let mut row = 0u32;
    for t in 0..=7 {
        for (b, &n) in lens.iter().enumerate() {
            if t <= n {
                if b == 2 {
                    idx.push(row);
                }
                row += 1;
            }
        }
    }
    let picked = forced
        .index_select(&Tensor::new(idx.as_slice(), &Device::Cpu).unwrap(), 0)
        .unwrap();
    let d = max_abs_diff(&stepped, &picked);
    assert!(
        d <= 1e-5,
        "step logits differ from teacher-forced ones by {d}"
    );
}
