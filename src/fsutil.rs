//! Small file-system helpers shared by every writer: atomic writes (temp file in the same folder,
//! then rename) so a crash never leaves a half-written checkpoint, cache or JSON file behind.
//! The temp file and the rename are `tempfile`'s ([`tempfile::NamedTempFile`] and its `persist`).

use crate::{Error, Result};
use std::io::Write;
use std::path::Path;
use tempfile::NamedTempFile;

/// A new empty temp file beside `path` (same folder, so `persist` is an atomic rename), named
/// `.<name>.tmp-XXXXXX` so a leftover from a kill -9 says which file it was.
fn temp_beside(path: &Path, dir: &Path) -> Result<NamedTempFile> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = format!(".{name}.tmp-");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix);
    // tempfile creates 0600 files; 0666 less the umask is what `File::create` gives, so the
    // written file (an exported model, a cache) stays as readable as before.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    builder.tempfile_in(dir).map_err(|e| Error::io(dir, e))
}

/// Whether `name` is that of a temp file [`write_atomic_with`] left behind (killed mid-write):
/// `.<name>.tmp-XXXXXX`.
pub fn is_temp_file_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(".tmp-")
}

/// Writes `bytes` to `path` atomically: a reader sees the old file or the new one, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |tmp| {
        let mut f = std::fs::File::create(tmp).map_err(|e| Error::io(tmp, e))?;
        f.write_all(bytes).map_err(|e| Error::io(tmp, e))
    })
}

/// Lets `write` produce the file at a temporary path (same folder as `path`), syncs it to disk,
/// then renames it over `path`. On error the temporary file is removed and `path` is untouched.
///
/// `write` gets a path, not a handle, because writers such as `candle_core::safetensors::save`
/// only take paths. It may even replace the file (safetensors does, by its own temp file and
/// rename), so the sync, the permissions and the rename all go by path; the permissions are reset
/// to those the temp file was created with (safetensors' own temp file is 0600).
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            dir
        }
        None => Path::new("."),
    };
    // On any early return below, dropping `tmp` deletes the temp file.
    let tmp = temp_beside(path, dir)?;
    let at_tmp = |e| Error::io(tmp.path(), e);
    let perms = tmp.as_file().metadata().map_err(at_tmp)?.permissions();
    write(tmp.path())?;
    let written = std::fs::File::open(tmp.path()).map_err(at_tmp)?;
    if written.metadata().map_err(at_tmp)?.permissions() != perms {
        written.set_permissions(perms).map_err(at_tmp)?;
    }
    // Synced before the rename, so after a power cut `path` is the old file or the whole new one.
    written.sync_all().map_err(at_tmp)?;
    drop(written);
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// Serialises `value` as pretty JSON and writes it atomically.
pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::format(path, format!("cannot serialise JSON: {e}")))?;
    write_atomic(path, text.as_bytes())
}

/// Reads and parses a JSON file, naming the file in any error.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::format(path, format!("invalid JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_write_leaves_old_file_and_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        write_atomic(&path, b"old").unwrap();
        let err = write_atomic_with(&path, |tmp| {
            std::fs::write(tmp, b"half").unwrap();
            Err(Error::Invalid("boom".into()))
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "temporary file left behind");
    }

    #[test]
    fn temp_file_is_beside_the_target_and_named_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("b.bin");
        let mut seen = None;
        write_atomic_with(&path, |tmp| {
            seen = Some(tmp.to_path_buf());
            std::fs::write(tmp, b"new").map_err(|e| Error::io(tmp, e))
        })
        .unwrap();
        let tmp = seen.unwrap();
        assert_eq!(
            tmp.parent(),
            path.parent(),
            "temp file not in the target's folder"
        );
        let name = tmp.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(".b.bin.tmp-"), "{name}");
        assert!(!tmp.exists());
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
    }

    /// safetensors writes its own temp file and renames it over the path it is given; the result
    /// must still land at `path`, with the permissions `File::create` would give, not 0600.
    #[test]
    fn a_writer_that_replaces_the_temp_file_still_lands() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let t = candle_core::Tensor::new(&[1f32, 2., 3.], &candle_core::Device::Cpu).unwrap();
        let map = std::collections::HashMap::from([("x".to_string(), t)]);
        write_atomic_with(&path, |tmp| {
            candle_core::safetensors::save(&map, tmp).map_err(Error::from)
        })
        .unwrap();
        let back = candle_core::safetensors::load(&path, &candle_core::Device::Cpu).unwrap();
        assert_eq!(back["x"].to_vec1::<f32>().unwrap(), [1., 2., 3.]);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let plain = dir.path().join("plain");
            std::fs::File::create(&plain).unwrap();
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), mode(&plain));
            write_atomic(&path, b"bytes").unwrap();
            assert_eq!(mode(&path), mode(&plain));
        }
    }
}
