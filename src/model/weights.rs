//! Weight files: `.pth` (torch zip-pickle, read safely by [`super::pth`]) and `.safetensors`,
//! the sha256 that identifies a backbone, and torchvision's hash-prefix check on file names.

use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
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
    verify_hash_prefix(path)?;
    let mut magic = [0u8; 9];
    let n = {
        let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        read_up_to(&mut f, &mut magic).map_err(|e| Error::io(path, e))?
    };
    if n >= 4 && &magic[..4] == b"PK\x03\x04" {
        return super::pth::load_pth(path);
    }
    if n >= 2 && magic[0] == 0x80 && magic[1] <= 5 {
        return Err(weights_err(
            path,
            "legacy (pre-1.6, non-zip) torch.save format is not supported; re-save it with \
             torch.save(torch.load(f), g) or convert it to .safetensors",
        ));
    }
    if n == 9 && magic[8] == b'{' {
        return load_safetensors(path);
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

fn load_safetensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| {
        weights_err(
            path,
            format!("not a valid .safetensors file (truncated?): {e}"),
        )
    })?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        use safetensors::Dtype as S;
        let dtype = match view.dtype() {
            S::F32 => DType::F32,
            S::F16 => DType::F16,
            S::BF16 => DType::BF16,
            S::F64 => DType::F64,
            S::I64 => DType::I64,
            S::U8 => DType::U8,
            S::U32 => DType::U32,
            other => {
                return Err(weights_err(
                    path,
                    format!("tensor {name}: unsupported dtype {other:?}"),
                ))
            }
        };
        let t = Tensor::from_raw_buffer(view.data(), dtype, view.shape(), &Device::Cpu)?;
        out.insert(name, t);
    }
    Ok(out)
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
}
