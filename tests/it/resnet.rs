//! ResNet parity with torchvision (fixtures from scripts/reference/resnet_fixtures.py) and
//! weight-file loading: real torch.save files, safetensors, hash prefixes, refusals.

use crate::common;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use captioner::model::resnet::{formula, Arch, ResNet, ResNetTrunk, TrunkLayout};
use captioner::model::weights::{load_state_dict, save_safetensors, sha256_file};
use captioner::Error;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    common::fixture(&format!("resnet/{name}"))
}

fn reference() -> serde_json::Value {
    let text = std::fs::read_to_string(fixture("features.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn rows(v: &serde_json::Value) -> Vec<Vec<f32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect()
}

/// Asserts max |a - b| <= 1e-3 · max |b| over all images and cosine >= 0.999 per image.
fn assert_close(what: &str, got: &Tensor, want: &[Vec<f32>]) {
    let got = got.to_vec2::<f32>().unwrap();
    assert_eq!(got.len(), want.len(), "{what}: batch size");
    let max_ref = want.iter().flatten().fold(0f32, |m, v| m.max(v.abs()));
    assert!(max_ref > 0.0);
    let mut max_diff = 0f32;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.len(), w.len(), "{what}: feature length");
        let dot: f64 = g.iter().zip(w).map(|(a, b)| *a as f64 * *b as f64).sum();
        let ng: f64 = g.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
        let nw: f64 = w.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
        let cos = dot / (ng * nw);
        assert!(cos >= 0.999, "{what}: image {i} cosine {cos}");
        for (a, b) in g.iter().zip(w) {
            max_diff = max_diff.max((a - b).abs());
        }
    }
    eprintln!(
        "{what}: max abs diff {max_diff:.3e}, max |ref| {max_ref:.3}, ratio {:.2e}",
        max_diff / max_ref
    );
    assert!(
        max_diff <= 1e-3 * max_ref,
        "{what}: max abs diff {max_diff}"
    );
}

fn input(reference: &serde_json::Value) -> Tensor {
    let inp = &reference["input"];
    let shape: Vec<usize> = inp["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(shape[1], 3);
    assert_eq!(shape[2], shape[3]);
    assert_eq!(inp["lo"].as_f64(), Some(-2.0));
    formula::input(inp["name"].as_str().unwrap(), shape[0], shape[2]).unwrap()
}

fn parity(arch: Arch, stock_too: bool) {
    let r = reference();
    let want = rows(&r[arch.to_string()]["features"]);
    assert_eq!(
        r[arch.to_string()]["state_dict_len"].as_u64(),
        Some(arch.param_shapes().len() as u64),
        "torchvision and captioner disagree on the parameter list"
    );
    let x = input(&r);
    let sd = formula::state_dict(arch).unwrap();
    let dev = Device::Cpu;
    let trunk = ResNetTrunk::from_state_dict(arch, &sd, &dev).unwrap();
    assert_eq!(trunk.layout(), TrunkLayout::Nhwc);
    let f = trunk.forward(&x).unwrap();
    assert_eq!(f.dims(), [2, arch.feature_dim()]);
    assert_close(&format!("{arch} folded NHWC"), &f, &want);

    let nchw = ResNetTrunk::with_layout(arch, &sd, &dev, TrunkLayout::Nchw).unwrap();
    assert_close(
        &format!("{arch} folded NCHW"),
        &nchw.forward(&x).unwrap(),
        &want,
    );

    if stock_too {
        let vb = VarBuilder::from_tensors(sd, DType::F32, &dev);
        let net = ResNet::new(arch, vb).unwrap();
        let f = net.features_t(&x, false).unwrap();
        assert_close(&format!("{arch} stock candle"), &f, &want);
        // fc is loaded and matches torchvision's logits too.
        let logits = net.logits(&f).unwrap().unwrap().narrow(1, 0, 10).unwrap();
        let want_logits = rows(&r[arch.to_string()]["logits_first10"]);
        assert_close(&format!("{arch} fc logits"), &logits, &want_logits);
    }
}

#[test]
fn resnet18_matches_torchvision() {
    parity(Arch::ResNet18, true);
}

#[test]
fn resnet50_matches_torchvision() {
    parity(Arch::ResNet50, false);
}

#[test]
fn resnet18_safetensors_round_trip_and_checks() {
    let dir = tempfile::tempdir().unwrap();
    let sd = formula::state_dict(Arch::ResNet18).unwrap();
    let plain = dir.path().join("resnet18.safetensors");
    save_safetensors(&plain, &sd).unwrap();

    let x = formula::input("safetensors-input", 1, 64).unwrap();
    let direct = ResNetTrunk::from_state_dict(Arch::ResNet18, &sd, &Device::Cpu).unwrap();
    let loaded = ResNetTrunk::load(&plain, Arch::ResNet18, &Device::Cpu).unwrap();
    let a = direct.forward(&x).unwrap().to_vec2::<f32>().unwrap();
    let b = loaded.forward(&x).unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(a, b);

    // Wrong architecture: names the missing keys, the shape mismatches, and what the file is.
    let err = ResNetTrunk::load(&plain, Arch::ResNet50, &Device::Cpu).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Weights { .. }), "{msg}");
    assert!(msg.contains("resnet18.safetensors"), "{msg}");
    assert!(msg.contains("not resnet50 weights"), "{msg}");
    assert!(msg.contains("missing layer1.0.conv3.weight"), "{msg}");
    assert!(
        msg.contains("shape mismatch layer1.0.conv1.weight"),
        "{msg}"
    );
    assert!(msg.contains("holds resnet18 weights"), "{msg}");
    let err = ResNetTrunk::load(&plain, Arch::ResNet34, &Device::Cpu).unwrap_err();
    assert!(
        err.to_string().contains("missing layer1.2.conv1.weight"),
        "{err}"
    );

    // torchvision's hash prefix: a right one loads, a wrong one is refused.
    let sha = sha256_file(&plain).unwrap();
    assert_eq!(sha.len(), 64);
    let good = dir
        .path()
        .join(format!("resnet18-{}.safetensors", &sha[..8]));
    std::fs::copy(&plain, &good).unwrap();
    assert_eq!(load_state_dict(&good).unwrap().len(), sd.len());
    let wrong_prefix = if sha.starts_with("00") { "11" } else { "00" };
    let bad = dir
        .path()
        .join(format!("resnet18-{wrong_prefix}{}.safetensors", &sha[2..8]));
    std::fs::copy(&plain, &bad).unwrap();
    let msg = load_state_dict(&bad).unwrap_err().to_string();
    assert!(msg.contains("sha256") && msg.contains(&sha), "{msg}");

    // Truncated safetensors.
    let bytes = std::fs::read(&plain).unwrap();
    let cut = dir.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_state_dict(&cut).unwrap_err();
    assert!(matches!(err, Error::Weights { .. }), "{err}");
    assert!(err.to_string().contains("cut.safetensors"), "{err}");
}

#[test]
fn small_torch_save_file_loads_with_exact_values() {
    let sd = load_state_dict(&fixture("small.pth")).unwrap();
    let mut names: Vec<_> = sd.keys().cloned().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "bn.num_batches_tracked",
            "bn.running_var",
            "conv.weight",
            "half.weight",
            "param",
            "transposed"
        ]
    );
    let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let conv = &sd["conv.weight"];
    assert_eq!(conv.dims(), [4, 3, 3, 3]);
    assert_eq!(flat(conv), formula::values("conv.weight", 108, -1.0, 1.0));
    assert_eq!(
        flat(&sd["bn.running_var"]),
        formula::values("bn.running_var", 4, 0.5, 1.5)
    );
    assert_eq!(flat(&sd["param"]), formula::values("param", 3, -1.0, 1.0));
    let half = &sd["half.weight"];
    assert_eq!(half.dtype(), DType::F16);
    let want: Vec<half::f16> = formula::values("half.weight", 30, -1.0, 1.0)
        .into_iter()
        .map(half::f16::from_f32)
        .collect();
    assert_eq!(
        half.flatten_all().unwrap().to_vec1::<half::f16>().unwrap(),
        want
    );
    // Saved as the transpose of a [6, 5] tensor: element [i][j] is storage[j * 5 + i].
    let t = &sd["transposed"];
    assert_eq!(t.dims(), [5, 6]);
    let storage = formula::values("transposed", 30, -1.0, 1.0);
    let got = t.to_vec2::<f32>().unwrap();
    for (i, row) in got.iter().enumerate() {
        for (j, v) in row.iter().enumerate() {
            assert_eq!(*v, storage[j * 5 + i], "[{i}][{j}]");
        }
    }
    let n = &sd["bn.num_batches_tracked"];
    assert_eq!(n.dtype(), DType::I64);
    assert_eq!(n.to_scalar::<i64>().unwrap(), 7);
}

#[test]
fn pickle_calling_os_system_is_refused() {
    let marker = Path::new("/tmp/captioner_pwned");
    let _ = std::fs::remove_file(marker);
    let path = fixture("evil.pth");
    let err = load_state_dict(&path).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Weights { .. }), "{msg}");
    assert!(msg.contains("evil.pth"), "{msg}");
    assert!(msg.contains("posix.system"), "{msg}");
    assert!(msg.contains("refusing"), "{msg}");
    assert!(!marker.exists());
}

/// A zip shaped like torch.save's, with the given pickle as `archive/data.pkl`.
fn write_torch_zip(path: &Path, pickle: &[u8]) {
    let f = std::fs::File::create(path).unwrap();
    let mut z = zip::ZipWriter::new(f);
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    z.start_file("archive/data.pkl", opts).unwrap();
    z.write_all(pickle).unwrap();
    z.finish().unwrap();
}

#[test]
fn pickle_calling_builtins_eval_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("eval.pth");
    // {'w': eval("__import__('os')")} in protocol 2.
    let mut p = b"\x80\x02}q\x00X\x01\x00\x00\x00wq\x01cbuiltins\neval\nq\x02".to_vec();
    let arg = b"__import__('os')";
    p.push(b'X');
    p.extend_from_slice(&(arg.len() as u32).to_le_bytes());
    p.extend_from_slice(arg);
    p.extend_from_slice(b"\x85q\x03Rq\x04s.");
    write_torch_zip(&path, &p);
    let msg = load_state_dict(&path).unwrap_err().to_string();
    assert!(
        msg.contains("eval.pth") && msg.contains("builtins.eval"),
        "{msg}"
    );
}

#[test]
fn broken_and_foreign_files_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("small.pth")).unwrap();
    let cut = dir.path().join("cut.pth");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let err = load_state_dict(&cut).unwrap_err();
    assert!(matches!(err, Error::Weights { .. }), "{err}");
    assert!(err.to_string().contains("cut.pth"), "{err}");

    let text = dir.path().join("notes.pth");
    std::fs::write(&text, "these are not weights\n").unwrap();
    let msg = load_state_dict(&text).unwrap_err().to_string();
    assert!(msg.contains("not a weights file"), "{msg}");

    let missing = dir.path().join("absent.safetensors");
    assert!(matches!(
        load_state_dict(&missing).unwrap_err(),
        Error::Io { .. }
    ));

    let other: HashMap<String, Tensor> = HashMap::from([(
        "encoder.weight".to_string(),
        Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap(),
    )]);
    let foreign = dir.path().join("foreign.safetensors");
    save_safetensors(&foreign, &other).unwrap();
    let msg = ResNetTrunk::load(&foreign, Arch::ResNet18, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("missing conv1.weight"), "{msg}");
    assert!(msg.contains("unexpected encoder.weight"), "{msg}");
}
