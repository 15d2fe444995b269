//! Image files under folders: what `caption` and `index` accept as PATH arguments. Files are taken
//! as given; folders are walked recursively (symbolic links followed) and keep the files whose
//! name has an image extension ([`has_image_extension`]), sorted.

use crate::data::layout::has_image_extension;
use std::path::{Path, PathBuf};

/// An image found under a folder: the file, and its metadata as the walk saw it.
#[derive(Debug, Clone)]
pub struct FoundImage {
    /// The file (the folder's path joined with the file's relative path).
    pub path: PathBuf,
    /// The path relative to the folder that was walked, `/`-separated.
    pub rel: String,
}

/// What a walk of one folder found: images (sorted by path) and the paths that could not be read,
/// with the reason.
#[derive(Debug, Clone, Default)]
pub struct Walk {
    /// Image files, sorted.
    pub images: Vec<FoundImage>,
    /// Files or folders the walk could not read, with the error.
    pub unreadable: Vec<(PathBuf, String)>,
}

/// Walks `dir` recursively for image files.
pub fn walk_images(dir: &Path) -> Walk {
    let mut walk = Walk::default();
    for entry in walkdir::WalkDir::new(dir).follow_links(true) {
        match entry {
            Ok(e) if e.file_type().is_file() => {
                if has_image_extension(&e.file_name().to_string_lossy()) {
                    let rel = e
                        .path()
                        .strip_prefix(dir)
                        .unwrap_or(e.path())
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy())
                        .collect::<Vec<_>>()
                        .join("/");
                    walk.images.push(FoundImage {
                        path: e.into_path(),
                        rel,
                    });
                }
            }
            Ok(_) => {}
            Err(e) => {
                let path = e
                    .path()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| dir.into());
                walk.unreadable.push((path, e.to_string()));
            }
        }
    }
    walk.images.sort_by(|a, b| a.path.cmp(&b.path));
    walk
}

/// Image files named by `paths`: files as given, folders walked recursively (each folder's images
/// sorted), plus the paths that could not be read with their error.
pub fn find_images(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<(PathBuf, String)>) {
    let mut files = Vec::new();
    let mut bad = Vec::new();
    for p in paths {
        if p.is_dir() {
            let walk = walk_images(p);
            files.extend(walk.images.into_iter().map(|f| f.path));
            bad.extend(walk.unreadable);
        } else if p.exists() {
            files.push(p.clone());
        } else {
            bad.push((
                p.clone(),
                format!("{}: no such file or directory", p.display()),
            ));
        }
    }
    (files, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_are_walked_for_images_sorted_and_files_kept_as_given() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("b/c")).unwrap();
        for f in [
            "b/c/z.JPG",
            "a.png",
            "b/x.jpeg",
            "notes.txt",
            "b/.hidden.jpg.1",
        ] {
            std::fs::write(dir.path().join(f), b"x").unwrap();
        }
        let walk = walk_images(dir.path());
        let rels: Vec<&str> = walk.images.iter().map(|f| f.rel.as_str()).collect();
        assert_eq!(rels, ["a.png", "b/c/z.JPG", "b/x.jpeg"]);
        assert!(walk.unreadable.is_empty());
        let missing = dir.path().join("gone.jpg");
        let text = dir.path().join("notes.txt");
        let (files, bad) = find_images(&[text.clone(), dir.path().join("b"), missing.clone()]);
        assert_eq!(
            files[0], text,
            "a file named on the command line is kept as given"
        );
        assert_eq!(files.len(), 3);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].0, missing);
    }
}
