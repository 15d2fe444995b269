//! Helpers shared by several test modules: the `captioner` binary and its usual steps (a synth
//! corpus, a random backbone, a feature cache), fixture paths, weight and tensor comparisons, and
//! the pixel-bomb PNG.

use candle_core::{DType, Device, Tensor};
use captioner::model::CaptionModel;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `captioner` binary built for these tests.
pub fn exe() -> Command {
    Command::new(env!("CARGO_BIN_EXE_captioner"))
}

/// Runs `cmd`, reads the first line of its stdout and then closes the pipe, as `| head -1` does;
/// returns that line and the finished command (its stderr captured).
pub fn first_line_then_close(mut cmd: Command) -> (String, Output) {
    use std::io::{BufRead, BufReader};
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    // The reader, and with it the pipe's only read end, is dropped at the end of this statement.
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    (first, child.wait_with_output().unwrap())
}

/// Asserts that a finished command succeeded; returns its stdout.
pub fn ok(out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {stdout}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs `cmd` to the end and asserts that it succeeded.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("captioner runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `captioner synth --images N --out OUT` (the default seed).
pub fn synth(out: &Path, images: usize) {
    run_ok(
        exe()
            .args(["synth", "--images", &images.to_string(), "--out"])
            .arg(out),
    );
}

/// `captioner init-backbone --arch resnet18`: a random ResNet-18, with `seed` or the default one.
pub fn init_resnet18(out: &Path, seed: Option<u64>) {
    let mut cmd = exe();
    cmd.args(["init-backbone", "--arch", "resnet18"]);
    if let Some(seed) = seed {
        cmd.args(["--seed", &seed.to_string()]);
    }
    run_ok(cmd.arg("--out").arg(out));
}

/// `captioner features` for a ResNet-18 backbone, without a progress bar, plus `extra` flags.
pub fn features_cmd(data: &Path, backbone: &Path, cache: &Path, extra: &[&str]) -> Command {
    let mut c = exe();
    c.arg("features")
        .arg("--data")
        .arg(data)
        .arg("--backbone")
        .arg(backbone)
        .arg("--cache")
        .arg(cache)
        .args(["--arch", "resnet18", "--no-progress"])
        .args(extra);
    c
}

/// `tests/fixtures/<rel>`, wherever the tests run from.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// Every tensor of a caption model file, flattened, sorted by name.
pub fn model_tensors(path: &Path) -> Vec<(String, Vec<f32>)> {
    let m = CaptionModel::load(path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut t: Vec<(String, Vec<f32>)> = m
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.flatten_all().unwrap().to_vec1().unwrap()))
        .collect();
    t.sort_by(|a, b| a.0.cmp(&b.0));
    t
}

/// Every tensor of any safetensors file, flattened to f32, sorted by name.
pub fn file_tensors(path: &Path) -> Vec<(String, Vec<f32>)> {
    let map = candle_core::safetensors::load(path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut t: Vec<(String, Vec<f32>)> = map
        .into_iter()
        .map(|(n, t)| {
            let v = t.to_dtype(candle_core::DType::F32).unwrap();
            (n, v.flatten_all().unwrap().to_vec1().unwrap())
        })
        .collect();
    t.sort_by(|a, b| a.0.cmp(&b.0));
    t
}

/// Largest |a - b| over two [`model_tensors`] lists with the same names.
pub fn max_diff(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f32 {
    assert_eq!(a.len(), b.len());
    let mut d = 0f32;
    for ((na, va), (nb, vb)) in a.iter().zip(b) {
        assert_eq!(na, nb);
        for (x, y) in va.iter().zip(vb) {
            d = d.max((x - y).abs());
        }
    }
    d
}

/// Largest |x| of a tensor of any float type.
pub fn max_abs(a: &Tensor) -> f32 {
    a.to_dtype(DType::F32)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Largest |a - b| of two tensors of the same shape (any float types).
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    let a = a.to_dtype(DType::F32).unwrap();
    let b = b.to_dtype(DType::F32).unwrap();
    max_abs(&(a - b).unwrap())
}

/// A PNG header claiming `w`x`h` pixels followed by an empty data chunk: no pixels at all.
pub fn pixel_bomb_png(w: u32, h: u32) -> Vec<u8> {
    let mut png = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    png.extend_from_slice(&0u32.to_be_bytes());
    png.extend_from_slice(b"IDAT");
    png.extend_from_slice(&crc32(b"IDAT").to_be_bytes());
    png
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The parity fixtures' captions (scripts/reference/decoder_fixtures.py and
/// attention_fixtures.py): lengths 5, 3, 7, 1 of word ids from 3 to `vocab - 1`.
pub fn fixture_captions(vocab: usize) -> Vec<Vec<u32>> {
    [5usize, 3, 7, 1]
        .iter()
        .enumerate()
        .map(|(b, &n)| {
            (0..n)
                .map(|k| (3 + (7 * b + 3 * k) % (vocab - 3)) as u32)
                .collect()
        })
        .collect()
}
