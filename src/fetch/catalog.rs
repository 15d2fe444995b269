//! What each `captioner fetch` name downloads: public URLs, file names, checksums, and how an
//! archive is unpacked. Data, not code, so tests and mirrors can reuse the same machinery.

use crate::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// Something `captioner fetch` knows how to download.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Asset {
    /// torchvision ResNet-50 `IMAGENET1K_V2` weights (`resnet50-11ad3fa6.pth`).
    Resnet50,
    /// torchvision ResNet-50 `IMAGENET1K_V1` weights (`resnet50-0676ba61.pth`).
    Resnet50V1,
    /// Flickr8k images and text files (two zips from the jbrownlee/Datasets release).
    Flickr8k,
    /// Karpathy's caption_datasets.zip; only `dataset_flickr8k.json` is extracted.
    KarpathySplits,
}

impl Asset {
    /// Every asset, in the order the CLI lists them.
    pub const ALL: [Asset; 4] = [
        Asset::Resnet50,
        Asset::Resnet50V1,
        Asset::Flickr8k,
        Asset::KarpathySplits,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Asset::Resnet50 => "resnet50",
            Asset::Resnet50V1 => "resnet50-v1",
            Asset::Flickr8k => "flickr8k",
            Asset::KarpathySplits => "karpathy-splits",
        }
    }

    /// The files this asset is made of.
    pub fn remotes(self) -> Vec<Remote> {
        match self {
            Asset::Resnet50 => vec![Remote {
                url: "https://download.pytorch.org/models/resnet50-11ad3fa6.pth",
                checksum: Checksum::sha256(
                    "11ad3fa62ca79e40addfd354a8ec4b7c75143b3038b8d2a807fbc68deab379ca",
                ),
                unpack: None,
            }],
            Asset::Resnet50V1 => vec![Remote {
                url: "https://download.pytorch.org/models/resnet50-0676ba61.pth",
                checksum: Checksum::sha256(
                    "0676ba61b6795bbe1773cffd859882e5e297624d384b6993f7c9e683e722fb8a",
                ),
                unpack: None,
            }],
            Asset::Flickr8k => vec![
                Remote {
                    url: "https://github.com/jbrownlee/Datasets/releases/download/Flickr8k/Flickr8k_Dataset.zip",
                    checksum: Checksum::md5("f18a1e2920de5bd84dae7cf08ec78978"),
                    // Holds `Flicker8k_Dataset/*.jpg` (sic: the folder name is misspelt upstream)
                    // plus a `__MACOSX/` folder of resource forks.
                    unpack: Some(Unpack {
                        expect: &["Flicker8k_Dataset"],
                        only: None,
                    }),
                },
                Remote {
                    url: "https://github.com/jbrownlee/Datasets/releases/download/Flickr8k/Flickr8k_text.zip",
                    checksum: Checksum::md5("bf6c1abcb8e4a833b7f922104de18627"),
                    // Text files at the root: the token file, the split lists, ExpertAnnotations, ...
                    unpack: Some(Unpack {
                        expect: &[
                            "Flickr8k.token.txt",
                            "Flickr_8k.trainImages.txt",
                            "Flickr_8k.devImages.txt",
                            "Flickr_8k.testImages.txt",
                        ],
                        only: None,
                    }),
                },
            ],
            Asset::KarpathySplits => vec![Remote {
                url: "http://cs.stanford.edu/people/karpathy/deepimagesent/caption_datasets.zip",
                checksum: Checksum::md5("4fa8c08369d22fe16e41dc124bd1adc2"),
                // The zip also holds the COCO (~140 MB) and Flickr30k files; this project trains on
                // Flickr8k, so only its file is extracted. The zip stays in DIR for the others.
                unpack: Some(Unpack {
                    expect: &["dataset_flickr8k.json"],
                    only: Some(&["dataset_flickr8k.json"]),
                }),
            }],
        }
    }
}

impl fmt::Display for Asset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Asset {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Asset::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Asset::ALL.iter().map(|a| a.name()).collect();
                Error::Invalid(format!(
                    "unknown asset {s:?}; expected one of {}",
                    names.join(", ")
                ))
            })
    }
}

/// One downloadable file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// The public URL; its last path segment is the file name on disk.
    pub url: &'static str,
    /// What the complete file must hash to.
    pub checksum: Checksum,
    /// How to unpack it, if it is an archive.
    pub unpack: Option<Unpack>,
}

impl Remote {
    /// The file name the download is saved under (the URL's last segment).
    pub fn file_name(&self) -> &'static str {
        file_name_of(self.url)
    }

    /// The URL to download from: the public one, or the same file name under `mirror`.
    pub fn url_with_mirror(&self, mirror: Option<&str>) -> String {
        match mirror {
            Some(base) => format!("{}/{}", base.trim_end_matches('/'), self.file_name()),
            None => self.url.to_string(),
        }
    }
}

/// How an archive is unpacked into the target folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unpack {
    /// Names that must sit directly in the target folder afterwards; an extra top folder in the
    /// archive around them is stripped.
    pub expect: &'static [&'static str],
    /// Extract only entries with these file names (None: everything but `__MACOSX/`).
    pub only: Option<&'static [&'static str]>,
}

/// The last path segment of a URL (what the file is saved as).
pub fn file_name_of(url: &str) -> &str {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    path.rsplit('/').next().unwrap_or(path)
}

/// A file's expected digest, as lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checksum {
    /// A SHA-256 digest.
    Sha256(String),
    /// An MD5 digest.
    Md5(String),
}

impl Checksum {
    /// A SHA-256 checksum from its hex digest.
    pub fn sha256(hex: &str) -> Self {
        Checksum::Sha256(hex.to_ascii_lowercase())
    }

    /// An MD5 checksum from its hex digest.
    pub fn md5(hex: &str) -> Self {
        Checksum::Md5(hex.to_ascii_lowercase())
    }

    /// The algorithm's name, as written before the colon (`sha256:…`).
    pub fn algorithm(&self) -> &'static str {
        match self {
            Checksum::Sha256(_) => "sha256",
            Checksum::Md5(_) => "md5",
        }
    }

    /// The hex digest.
    pub fn hex(&self) -> &str {
        match self {
            Checksum::Sha256(h) | Checksum::Md5(h) => h,
        }
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm(), self.hex())
    }
}

impl FromStr for Checksum {
    type Err = Error;

    /// Parses `sha256:<64 hex>` or `md5:<32 hex>`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::Invalid(format!(
                "bad checksum {s:?}: expected sha256:<hex> or md5:<hex>"
            ))
        };
        let (algo, hex) = s.split_once(':').ok_or_else(bad)?;
        let len_ok = |n: usize| hex.len() == n && hex.chars().all(|c| c.is_ascii_hexdigit());
        match algo {
            "sha256" if len_ok(64) => Ok(Checksum::sha256(hex)),
            "md5" if len_ok(32) => Ok(Checksum::md5(hex)),
            _ => Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_keeps_the_file_name() {
        let r = &Asset::Resnet50.remotes()[0];
        assert_eq!(r.file_name(), "resnet50-11ad3fa6.pth");
        assert_eq!(
            r.url_with_mirror(Some("http://127.0.0.1:8080/files/")),
            "http://127.0.0.1:8080/files/resnet50-11ad3fa6.pth"
        );
        assert_eq!(r.url_with_mirror(None), r.url);
    }

    #[test]
    fn names_round_trip_and_checksums_parse() {
        for a in Asset::ALL {
            assert_eq!(a.name().parse::<Asset>().unwrap(), a);
            for r in a.remotes() {
                let text = r.checksum.to_string();
                assert_eq!(text.parse::<Checksum>().unwrap(), r.checksum);
            }
        }
        assert!("resnet".parse::<Asset>().is_err());
        assert!("md5:xyz".parse::<Checksum>().is_err());
        assert!("sha1:00".parse::<Checksum>().is_err());
    }
}
