//! Arranging an extracted archive in the target folder so that `train --data DIR` finds the
//! original layout (`Flicker8k_Dataset/`, `Flickr8k.token.txt`, ...), even when the archive
//! wraps it in an extra top folder.

use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// Moves the content of `extracted` into `dir` and returns the names moved. The content root is
/// the first folder, going down through lone subfolders, that holds every name of `expect`.
/// An existing entry of `dir` with the same name is replaced.
pub fn install(extracted: &Path, dir: &Path, expect: &[&str]) -> Result<Vec<String>> {
    let root = content_root(extracted, expect)?;
    let mut moved = Vec::new();
    for (name, from) in children(&root)? {
        let to = dir.join(&name);
        remove_any(&to)?;
        std::fs::rename(&from, &to).map_err(|e| Error::io(&to, e))?;
        moved.push(name);
    }
    moved.sort();
    Ok(moved)
}

fn content_root(extracted: &Path, expect: &[&str]) -> Result<PathBuf> {
    let mut root = extracted.to_path_buf();
    loop {
        if expect.iter().all(|n| root.join(n).exists()) {
            return Ok(root);
        }
        let kids = children(&root)?;
        match kids.as_slice() {
            [(name, only)] if only.is_dir() && !expect.contains(&name.as_str()) => {
                root = only.clone();
            }
            _ => {
                let found: Vec<_> = kids.into_iter().map(|(n, _)| n).collect();
                let missing: Vec<_> = expect.iter().filter(|n| !root.join(n).exists()).collect();
                return Err(Error::format(
                    extracted,
                    format!("archive lacks {missing:?} (found {found:?})"),
                ));
            }
        }
    }
}

/// The entries of `dir` as (name, path), sorted by name.
fn children(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        out.push((
            entry.file_name().to_string_lossy().into_owned(),
            entry.path(),
        ));
    }
    out.sort();
    Ok(out)
}

/// Removes a file or a folder tree at `path`, if there is one.
pub fn remove_any(path: &Path) -> Result<()> {
    let result = match std::fs::symlink_metadata(path) {
        Err(_) => return Ok(()),
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
    };
    result.map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_an_extra_top_folder_but_not_an_expected_one() {
        let tmp = tempfile::tempdir().unwrap();
        let ex = tmp.path().join("ex");
        std::fs::create_dir_all(ex.join("wrap/Flicker8k_Dataset")).unwrap();
        std::fs::write(ex.join("wrap/Flicker8k_Dataset/a.jpg"), b"x").unwrap();
        let dir = tmp.path().join("out");
        std::fs::create_dir_all(&dir).unwrap();
        let moved = install(&ex, &dir, &["Flicker8k_Dataset"]).unwrap();
        assert_eq!(moved, ["Flicker8k_Dataset"]);
        assert!(dir.join("Flicker8k_Dataset/a.jpg").is_file());

        let ex2 = tmp.path().join("ex2");
        std::fs::create_dir_all(ex2.join("other")).unwrap();
        let err = install(&ex2, &dir, &["Flickr8k.token.txt"]).unwrap_err();
        assert!(err.to_string().contains("Flickr8k.token.txt"), "{err}");
    }
}
