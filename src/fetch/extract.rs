//! Zip extraction into a fresh folder: `__MACOSX/` resource forks are skipped, and an archive
//! with any entry that would land outside the folder (`../x`, `/etc/x`, symlinks) is refused
//! before a single file is written.

use crate::{Error, Result};
use std::fs::File;
use std::path::{Component, Path, PathBuf};

/// Extracts `archive` into `into` (created if missing). With `only`, just the entries whose file
/// name is listed. Returns the number of files written.
pub fn extract_zip(archive: &Path, into: &Path, only: Option<&[&str]>) -> Result<usize> {
    let bad = |msg: String| Error::format(archive, msg);
    let file = File::open(archive).map_err(|e| Error::io(archive, e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| bad(format!("not a zip archive: {e}")))?;

    // First pass: decide what to write and refuse the whole archive if one entry is unsafe.
    let mut plan: Vec<(usize, PathBuf, bool)> = Vec::new();
    for i in 0..zip.len() {
        let entry = zip
            .by_index_raw(i)
            .map_err(|e| bad(format!("entry {i}: {e}")))?;
        let name = entry.name().to_string();
        let Some(rel) = entry.enclosed_name().and_then(|p| plain_relative(&p)) else {
            return Err(bad(format!(
                "refusing entry {name:?}: its path leaves the target folder"
            )));
        };
        if entry.is_symlink() {
            return Err(bad(format!(
                "refusing entry {name:?}: symbolic links are not extracted"
            )));
        }
        if rel.components().any(|c| c.as_os_str() == "__MACOSX") {
            continue;
        }
        let wanted = only.is_none_or(|names| {
            rel.file_name()
                .is_some_and(|f| names.iter().any(|n| f == *n))
        });
        if wanted || (entry.is_dir() && only.is_none()) {
            plan.push((i, rel, entry.is_dir()));
        }
    }

    std::fs::create_dir_all(into).map_err(|e| Error::io(into, e))?;
    let mut files = 0;
    for (i, rel, is_dir) in plan {
        let target = into.join(&rel);
        if is_dir {
            std::fs::create_dir_all(&target).map_err(|e| Error::io(&target, e))?;
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let mut entry = zip
            .by_index(i)
            .map_err(|e| bad(format!("entry {}: {e}", rel.display())))?;
        let mut out = File::create(&target).map_err(|e| Error::io(&target, e))?;
        std::io::copy(&mut entry, &mut out)
            .map_err(|e| bad(format!("entry {}: {e}", rel.display())))?;
        files += 1;
    }
    Ok(files)
}

/// `p` without `.` components, if it has only plain names: no root, no `..` (stricter than
/// `enclosed_name`, which accepts `a/../b`), and not empty.
fn plain_relative(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_relative_paths() {
        let ok = |s: &str| plain_relative(Path::new(s));
        assert_eq!(ok("a/b.jpg"), Some(PathBuf::from("a/b.jpg")));
        assert_eq!(ok("./a/b.jpg"), Some(PathBuf::from("a/b.jpg")));
        assert_eq!(ok("../a"), None);
        assert_eq!(ok("a/../../b"), None);
        assert_eq!(ok("a/../b"), None);
        assert_eq!(ok("/a"), None);
        assert_eq!(ok("./"), None);
    }
}
