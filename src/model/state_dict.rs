//! Named tensors, read one at a time: a state_dict already in memory, or a `.safetensors` file
//! mapped into memory, whose tensors are copied out only when asked for.
//!
//! Why the mapped form exists: reading a 100 MB backbone whole, then copying every tensor out of
//! the buffer and keeping them all until the trunk is built, touches ~200 MB of fresh memory
//! before a single weight is folded. Mapped, the file's bytes are the page cache's own pages, and
//! the folding copies one tensor at a time and drops it. The peak resident size of a one-off
//! `captioner features` went from 310–349 MB to 271–290 MB (together with the binary's 4 KiB
//! pages, which removed the cold start's 2–3 s in the kernel; docs/performance.md).

use crate::{Error, Result};
use candle_core::safetensors::Load;
use candle_core::{DType, Device, Tensor};
use safetensors::tensor::{Metadata, TensorView};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Tensors by name, each read when asked for.
pub trait TensorSource {
    /// Every tensor's name.
    fn names(&self) -> Vec<String>;
    /// The shape of tensor `name`, without reading it.
    fn dims(&self, name: &str) -> Option<Vec<usize>>;
    /// Tensor `name` on the CPU, in the dtype it is stored in; `None` when there is none.
    fn tensor(&self, name: &str) -> Result<Option<Tensor>>;
}

impl TensorSource for HashMap<String, Tensor> {
    fn names(&self) -> Vec<String> {
        self.keys().cloned().collect()
    }

    fn dims(&self, name: &str) -> Option<Vec<usize>> {
        self.get(name).map(|t| t.dims().to_vec())
    }

    fn tensor(&self, name: &str) -> Result<Option<Tensor>> {
        Ok(self.get(name).cloned())
    }
}

/// The dtypes a `.safetensors` weights file may hold; each is loaded as it is (the model casts).
pub const SAFETENSORS_DTYPES: [DType; 7] = [
    DType::F32,
    DType::F16,
    DType::BF16,
    DType::F64,
    DType::I64,
    DType::U8,
    DType::U32,
];

/// A `.safetensors` file mapped into memory: its header parsed once, each tensor copied out when
/// asked for.
pub struct MappedSafetensors {
    path: PathBuf,
    map: memmap2::Mmap,
    /// Where the tensors' bytes begin in the file (after the length and the header).
    data_start: usize,
    meta: Metadata,
    /// Only the names under this prefix, with the prefix removed.
    prefix: String,
}

impl std::fmt::Debug for MappedSafetensors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedSafetensors")
            .field("path", &self.path)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl MappedSafetensors {
    /// Maps `path` and checks its header: every tensor's dtype one of [`SAFETENSORS_DTYPES`] and
    /// every byte range inside the file.
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the map lives only while a model loads (a fraction of a second); a file
        // truncated by another program in that window would fault, as with every mapped reader
        // of weights (safetensors', candle's). Nothing here writes through it.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let (header, meta) = safetensors::SafeTensors::read_metadata(&map).map_err(|e| {
            weights_err(
                path,
                format!("not a valid .safetensors file (truncated?): {e}"),
            )
        })?;
        for (name, info) in meta.tensors() {
            match DType::try_from(info.dtype) {
                Ok(dtype) if SAFETENSORS_DTYPES.contains(&dtype) => {}
                // candle would also load I16, I32, U16 and the 8/6/4-bit floats; a backbone never
                // holds those, so they are refused here by name rather than failing later.
                _ => {
                    return Err(weights_err(
                        path,
                        format!(
                            "tensor {name}: unsupported dtype {:?} (expected one of {:?})",
                            info.dtype, SAFETENSORS_DTYPES
                        ),
                    ))
                }
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            data_start: 8 + header,
            map,
            meta,
            prefix: String::new(),
        })
    }

    /// The same map, showing only the tensors whose names start with `prefix` (after any prefix
    /// it had), under their names without it.
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.prefix.push_str(prefix);
        self
    }

    /// The file's `__metadata__` strings.
    pub fn metadata(&self) -> HashMap<String, String> {
        self.meta.metadata().clone().unwrap_or_default()
    }

    /// Every tensor of the file under the prefix, copied out.
    pub fn load_all(&self) -> Result<HashMap<String, Tensor>> {
        self.load_where(|_| true)
    }

    /// The tensors under the prefix whose names pass `keep`, copied out (for the small parts of a
    /// model).
    pub fn load_where(&self, keep: impl Fn(&str) -> bool) -> Result<HashMap<String, Tensor>> {
        self.names()
            .into_iter()
            .filter(|n| keep(n))
            .map(|n| {
                let t = self.tensor(&n)?.ok_or_else(|| {
                    Error::Internal(format!("tensor {n} listed but not readable"))
                })?;
                Ok((n, t))
            })
            .collect()
    }

    fn full_name(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

impl TensorSource for MappedSafetensors {
    fn names(&self) -> Vec<String> {
        self.meta
            .tensors()
            .into_keys()
            .filter_map(|n| n.strip_prefix(&self.prefix).map(str::to_string))
            .collect()
    }

    fn dims(&self, name: &str) -> Option<Vec<usize>> {
        self.meta
            .info(&self.full_name(name))
            .map(|i| i.shape.clone())
    }

    fn tensor(&self, name: &str) -> Result<Option<Tensor>> {
        let full = self.full_name(name);
        let Some(info) = self.meta.info(&full) else {
            return Ok(None);
        };
        // `read_metadata` checked the offsets against the file's length.
        let (start, end) = info.data_offsets;
        let bytes = &self.map[self.data_start + start..self.data_start + end];
        let view = TensorView::new(info.dtype, info.shape.clone(), bytes)
            .map_err(|e| weights_err(&self.path, format!("tensor {full}: {e}")))?;
        let t = view
            .load(&Device::Cpu)
            .map_err(|e| weights_err(&self.path, format!("tensor {full}: {e}")))?;
        Ok(Some(t))
    }
}

fn weights_err(path: &Path, msg: impl Into<String>) -> Error {
    Error::Weights {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> HashMap<String, Tensor> {
        let x = Tensor::new(&[[1.5f32, -2.0], [0.25, 4.0]], &Device::Cpu).unwrap();
        HashMap::from([
            ("trunk.a".to_string(), x.clone()),
            ("trunk.b".to_string(), x.to_dtype(DType::F16).unwrap()),
            (
                "decoder.c".to_string(),
                Tensor::new(&[7i64, -1], &Device::Cpu).unwrap(),
            ),
        ])
    }

    #[test]
    fn a_mapped_file_reads_each_tensor_as_the_map_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let sd = sample();
        crate::model::weights::save_safetensors(&path, &sd).unwrap();
        let mapped = MappedSafetensors::open(&path).unwrap();
        let mut names = mapped.names();
        names.sort();
        assert_eq!(names, ["decoder.c", "trunk.a", "trunk.b"]);
        for (name, want) in &sd {
            let got = mapped.tensor(name).unwrap().unwrap();
            assert_eq!(got.dtype(), want.dtype(), "{name}");
            assert_eq!(mapped.dims(name).unwrap(), want.dims(), "{name}");
            let diff = (got.to_dtype(DType::F64).unwrap() - want.to_dtype(DType::F64).unwrap())
                .unwrap()
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap();
            assert_eq!(diff, 0.0, "{name}");
        }
        assert!(mapped.tensor("nope").unwrap().is_none());
        assert!(mapped.dims("nope").is_none());
    }

    #[test]
    fn a_prefix_shows_only_its_tensors_under_short_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        crate::model::weights::save_safetensors(&path, &sample()).unwrap();
        let trunk = MappedSafetensors::open(&path)
            .unwrap()
            .with_prefix("trunk.");
        let mut names = trunk.names();
        names.sort();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(trunk.dims("a").unwrap(), [2, 2]);
        assert!(trunk.tensor("decoder.c").unwrap().is_none());
        assert!(trunk.tensor("trunk.a").unwrap().is_none());
        assert_eq!(trunk.load_all().unwrap().len(), 2);
    }

    #[test]
    fn a_truncated_file_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        crate::model::weights::save_safetensors(&path, &sample()).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let err = MappedSafetensors::open(&path).unwrap_err();
        assert!(matches!(err, Error::Weights { .. }), "{err:?}");
        assert!(err.to_string().contains("w.safetensors"), "{err}");
        assert!(err.to_string().contains("truncated"), "{err}");
    }
}
