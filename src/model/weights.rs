//! Weight files: `.pth` (torch zip-pickle, read safely by [`super::pth`]) and `.safetensors`,
//! the sha256 that identifies a backbone, and torchvision's hash-prefix check on file names.

use super::state_dict::{MappedSafetensors, TensorSource};
use crate::{Error, Result};
use candle_core::Tensor;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

fn weights_err(path: &Path, msg: impl Into<String>) -> Error {
    Error::Weights {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// The sha256 of a file as lowercase hex, read in chunks so a 100 MB file is never held whole.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// torchvision names its files `<name>-<first hex digits of sha256>.pth`; returns those digits.
pub fn hash_prefix_in_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let stem = name.split('.').next()?;
    let (_, suffix) = stem.rsplit_once('-')?;
    let is_hex = suffix
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    (is_hex && (8..=64).contains(&suffix.len())).then(|| suffix.to_string())
}

/// When the file name carries a hash prefix, checks the file's sha256 starts with it.
/// Returns the full sha256 when it was computed.
pub fn verify_hash_prefix(path: &Path) -> Result<Option<String>> {
    let Some(prefix) = hash_prefix_in_name(path) else {
        return Ok(None);
    };
    let sha = sha256_file(path)?;
    if !sha.starts_with(&prefix) {
        return Err(weights_err(
            path,
            format!(
                "sha256 is {sha}, but the file name says it starts with {prefix}: \
                 the file is corrupt or incomplete (download it again)"
            ),
        ));
    }
    Ok(Some(sha))
}

/// Loads every tensor of a `.pth` or `.safetensors` file (recognised by content, not by name),
/// in the dtype it was saved with, on the CPU. Checks torchvision's hash prefix first.
pub fn load_state_dict(path: &Path) -> Result<HashMap<String, Tensor>> {
    match open_state_dict(path)? {
        WeightsFile::Pth(sd) => Ok(sd),
        WeightsFile::Safetensors(mapped) => mapped.load_all(),
    }
}

/// A weights file opened for reading: a `.pth` is read whole (a zip of pickles), a
/// `.safetensors` is mapped and read one tensor at a time.
#[derive(Debug)]
pub enum WeightsFile {
    /// Every tensor of a `.pth`.
    Pth(HashMap<String, Tensor>),
    /// A mapped `.safetensors`.
    Safetensors(MappedSafetensors),
}

impl WeightsFile {
    /// Its tensors, read on demand.
    pub fn source(&self) -> &dyn TensorSource {
        match self {
            Self::Pth(sd) => sd,
            Self::Safetensors(m) => m,
        }
    }
}

/// Opens a `.pth` or `.safetensors` file (recognised by content, not by name) after checking
/// torchvision's hash prefix.
pub fn open_state_dict(path: &Path) -> Result<WeightsFile> {
    verify_hash_prefix(path)?;
    let mut magic = [0u8; 9];
    let n = {
        let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        read_up_to(&mut f, &mut magic).map_err(|e| Error::io(path, e))?
    };
    if n >= 4 && &magic[..4] == b"PK\x03\x04" {
        return Ok(WeightsFile::Pth(super::pth::load_pth(path)?));
    }
    if n >= 2 && magic[0] == 0x80 && magic[1] <= 5 {
        return Err(weights_err(
            path,
            "legacy (pre-1.6, non-zip) torch.save format is not supported; re-save it with \
             torch.save(torch.load(f), g) or convert it to .safetensors",
        ));
    }
    if n == 9 && magic[8] == b'{' {
        return Ok(WeightsFile::Safetensors(MappedSafetensors::open(path)?));
    }
    Err(weights_err(
        path,
        "not a weights file: neither a PyTorch zip checkpoint (.pth) nor .safetensors",
    ))
}

fn read_up_to(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let k = f.read(&mut buf[n..])?;
        if k == 0 {
            break;
        }
        n += k;
    }
    Ok(n)
}

/// Writes tensors as `.safetensors`, e.g. formula weights for tests and benches.
pub fn save_safetensors(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<()> {
    crate::fsutil::write_atomic_with(path, |tmp| {
        candle_core::safetensors::save(tensors, tmp)
            .map_err(|e| weights_err(path, format!("writing safetensors: {e}")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn hash_prefix_follows_torchvision_names() {
        let p = |s: &str| hash_prefix_in_name(Path::new(s));
        assert_eq!(p("resnet50-11ad3fa6.pth").as_deref(), Some("11ad3fa6"));
        assert_eq!(p("/m/resnet50-0676ba61.pth").as_deref(), Some("0676ba61"));
        assert_eq!(p("resnet-18.pth"), None); // too short to be a hash
        assert_eq!(p("resnet50.pth"), None);
        assert_eq!(p("my-backbone.safetensors"), None); // not hex
        assert_eq!(p("resnet50-11AD3FA6.pth"), None); // torchvision writes lowercase
    }

    #[test]
    fn sha256_of_a_known_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abc.bin");
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(
            sha256_file(&path).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn safetensors_keep_their_dtypes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let x = Tensor::new(&[[1.5f32, -2.0], [0.25, 4.0]], &Device::Cpu).unwrap();
        let tensors = HashMap::from([
            ("f32".to_string(), x.clone()),
            ("f16".to_string(), x.to_dtype(DType::F16).unwrap()),
            ("bf16".to_string(), x.to_dtype(DType::BF16).unwrap()),
            (
                "i64".to_string(),
                Tensor::new(&[7i64, -1], &Device::Cpu).unwrap(),
            ),
            ("u8".to_string(), Tensor::new(&[3u8], &Device::Cpu).unwrap()),
        ]);
        save_safetensors(&path, &tensors).unwrap();
        let back = load_state_dict(&path).unwrap();
        assert_eq!(back.len(), tensors.len());
        for (name, t) in &tensors {
            assert_eq!(back[name].dtype(), t.dtype(), "{name}");
            assert_eq!(back[name].dims(), t.dims(), "{name}");
            let a = back[name]
                .to_dtype(DType::F64)
                .unwrap()
                .flatten_all()
                .unwrap();
            let b = t.to_dtype(DType::F64).unwrap().flatten_all().unwrap();
            assert_eq!(
                a.to_vec1::<f64>().unwrap(),
                b.to_vec1::<f64>().unwrap(),
                "{name}"
            );
        }
    }

    #[test]
    fn truncated_safetensors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.safetensors");
        let x = Tensor::zeros((64, 64), DType::F32, &Device::Cpu).unwrap();
        save_safetensors(&path, &HashMap::from([("x".to_string(), x)])).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
        let err = load_state_dict(&path).unwrap_err().to_string();
        assert!(
            err.contains("cut.safetensors") && err.contains("truncated"),
            "{err}"
        );
    }

    #[test]
    fn unsupported_dtype_names_the_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("odd.safetensors");
        let x = Tensor::new(&[1i32, 2], &Device::Cpu).unwrap();
        save_safetensors(&path, &HashMap::from([("counts".to_string(), x)])).unwrap();
        let err = load_state_dict(&path).unwrap_err().to_string();
        assert!(
            err.contains("odd.safetensors") && err.contains("tensor counts") && err.contains("I32"),
            "{err}"
        );
    }
}
