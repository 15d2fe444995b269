//! The spatial feature file, `CACHE/spatial.safetensors`: one tensor `spatial` of shape
//! `[N, P, C]` in f16, the trunk's last feature map before the pool (`P = h·w` cells in
//! row-major order), rows in the order of `images.json`.
//!
//! A Flickr8k-sized file is 1.6 GB and a COCO-sized one 25 GB, so neither side ever holds it
//! whole: the merge writes it row by row into a file of known size (the safetensors header is
//! written here by hand, because the `safetensors` crate serialises a tensor only from one
//! buffer holding all of it), and readers map it into memory and copy out the rows they need.

use crate::{Error, Result};
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The spatial feature file's name in a cache directory.
pub const SPATIAL_FILE: &str = "spatial.safetensors";
/// The tensor's name inside it (and inside a chunk's rows file).
pub const SPATIAL_TENSOR: &str = "spatial";

/// Bytes of one f16 value.
const F16_BYTES: usize = 2;

/// A spatial feature file, memory-mapped: rows are read from the page cache on demand.
pub struct SpatialFeatures {
    path: PathBuf,
    map: memmap2::Mmap,
    /// Offset of the first row in the file.
    start: usize,
    rows: usize,
    cells: usize,
    dim: usize,
}

impl std::fmt::Debug for SpatialFeatures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpatialFeatures")
            .field("path", &self.path)
            .field("shape", &[self.rows, self.cells, self.dim])
            .finish()
    }
}

impl SpatialFeatures {
    /// Maps `path` and checks that it holds one f16 tensor `spatial` of rank 3.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the cache's files are replaced only by rename, never written in place, so the
        // mapped inode does not change under the map.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let (header, meta) = safetensors::SafeTensors::read_metadata(&map).map_err(|e| {
            Error::format(path, format!("not a readable spatial feature file: {e}"))
        })?;
        let info = meta
            .info(SPATIAL_TENSOR)
            .ok_or_else(|| Error::format(path, "no tensor named `spatial`"))?;
        let [rows, cells, dim] = info.shape[..] else {
            return Err(Error::format(
                path,
                format!("`spatial` has shape {:?}, expected [N, P, C]", info.shape),
            ));
        };
        if info.dtype != safetensors::Dtype::F16 {
            return Err(Error::format(
                path,
                format!("`spatial` is {:?}, expected F16", info.dtype),
            ));
        }
        Ok(Self {
            path: path.to_path_buf(),
            map,
            start: 8 + header + info.data_offsets.0,
            rows,
            cells,
            dim,
        })
    }

    /// Rows N.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether the file has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Grid cells P per row.
    pub fn cells(&self) -> usize {
        self.cells
    }

    /// Channels C per cell.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The file it maps.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Row `i`'s raw little-endian f16 bytes, `P·C·2` of them.
    pub fn row_bytes(&self, i: usize) -> &[u8] {
        let n = self.cells * self.dim * F16_BYTES;
        &self.map[self.start + i * n..self.start + (i + 1) * n]
    }

    /// Row `i` as f32 into `out` (`P·C` values).
    pub fn row_to(&self, i: usize, out: &mut [f32]) {
        for (o, b) in out
            .iter_mut()
            .zip(self.row_bytes(i).chunks_exact(F16_BYTES))
        {
            *o = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
        }
    }

    /// Row `i` as f32 `[P·C]`, appended to `out`.
    pub fn row_into(&self, i: usize, out: &mut Vec<f32>) {
        out.extend(
            self.row_bytes(i)
                .chunks_exact(F16_BYTES)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()),
        );
    }
}

/// f32 values as little-endian f16 bytes (round to nearest even).
pub fn f16_bytes(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
        .collect()
}

/// A spatial feature file being written at a temporary path: the header first, then rows at
/// any position, in any order.
pub struct SpatialWriter {
    file: File,
    path: PathBuf,
    start: u64,
    row_bytes: usize,
    rows: usize,
}

impl SpatialWriter {
    /// Creates `path` sized for `rows` rows of `cells × dim` f16 values.
    pub fn create(path: &Path, rows: usize, cells: usize, dim: usize) -> Result<Self> {
        let row_bytes = cells * dim * F16_BYTES;
        let total = rows * row_bytes;
        let mut header = format!(
            r#"{{"{SPATIAL_TENSOR}":{{"dtype":"F16","shape":[{rows},{cells},{dim}],"data_offsets":[0,{total}]}}}}"#
        )
        .into_bytes();
        // The format allows trailing spaces in the header; padding to 8 bytes aligns the data.
        while header.len() % 8 != 0 {
            header.push(b' ');
        }
        let io = |e| Error::io(path, e);
        let mut file = File::create(path).map_err(io)?;
        file.write_all(&(header.len() as u64).to_le_bytes())
            .map_err(io)?;
        file.write_all(&header).map_err(io)?;
        let start = 8 + header.len() as u64;
        file.set_len(start + total as u64).map_err(io)?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
            start,
            row_bytes,
            rows,
        })
    }

    /// Writes row `i` (`cells·dim` f16 values as little-endian bytes).
    pub fn write_row(&mut self, i: usize, bytes: &[u8]) -> Result<()> {
        if i >= self.rows || bytes.len() != self.row_bytes {
            return Err(Error::Internal(format!(
                "spatial row {i} of {} bytes for a file of {} rows of {} bytes",
                bytes.len(),
                self.rows,
                self.row_bytes
            )));
        }
        let io = |e| Error::io(&self.path, e);
        self.file
            .seek(SeekFrom::Start(self.start + (i * self.row_bytes) as u64))
            .map_err(io)?;
        self.file.write_all(bytes).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_written_in_any_order_read_back_through_the_safetensors_crate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SPATIAL_FILE);
        let (rows, cells, dim) = (3, 2, 5);
        let row = |i: usize| -> Vec<f32> {
            (0..cells * dim)
                .map(|k| (i * 100 + k) as f32 * 0.25)
                .collect()
        };
        let mut w = SpatialWriter::create(&path, rows, cells, dim).unwrap();
        for i in [2, 0, 1] {
            w.write_row(i, &f16_bytes(&row(i))).unwrap();
        }
        assert!(w.write_row(3, &f16_bytes(&row(0))).is_err());
        assert!(w.write_row(0, &f16_bytes(&row(0)[1..])).is_err());
        drop(w);

        // The crate's own reader agrees with the hand-written header.
        let t = candle_core::safetensors::load(&path, &candle_core::Device::Cpu).unwrap();
        let t = &t[SPATIAL_TENSOR];
        assert_eq!(t.dims(), &[rows, cells, dim]);
        assert_eq!(t.dtype(), candle_core::DType::F16);
        let all = t
            .to_dtype(candle_core::DType::F32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let expected: Vec<f32> = (0..rows).flat_map(row).collect();
        assert_eq!(all, expected);

        let s = SpatialFeatures::open(&path).unwrap();
        assert_eq!((s.len(), s.cells(), s.dim()), (rows, cells, dim));
        let mut out = Vec::new();
        s.row_into(1, &mut out);
        assert_eq!(out, row(1));
    }

    #[test]
    fn a_file_without_the_tensor_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.safetensors");
        let t =
            candle_core::Tensor::zeros((2, 3), candle_core::DType::F16, &candle_core::Device::Cpu)
                .unwrap();
        candle_core::safetensors::save(
            &std::collections::HashMap::from([("other".to_string(), t)]),
            &path,
        )
        .unwrap();
        let err = SpatialFeatures::open(&path).unwrap_err().to_string();
        assert!(
            err.contains("x.safetensors") && err.contains("`spatial`"),
            "{err}"
        );
        std::fs::write(&path, b"garbage").unwrap();
        let err = SpatialFeatures::open(&path).unwrap_err().to_string();
        assert!(err.contains("x.safetensors"), "{err}");
    }
}
