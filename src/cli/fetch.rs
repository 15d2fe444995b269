//! `captioner fetch`: download pretrained weights and datasets (resumable, checksum-verified).

use anyhow::Context;
use captioner::fetch::{self as lib, Asset, Checksum, Downloaded, FetchOptions};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Test-only: path to a JSON object `{"<file name>": "md5:<hex>" | "sha256:<hex>"}` replacing the
/// catalog's checksums, so CLI tests can serve small stand-in files. Not for users.
const TEST_CHECKSUMS_ENV: &str = "CAPTIONER_FETCH_TEST_CHECKSUMS";

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum What {
    /// torchvision ResNet-50 IMAGENET1K_V2 weights (resnet50-11ad3fa6.pth, 98 MB).
    Resnet50,
    /// torchvision ResNet-50 IMAGENET1K_V1 weights (resnet50-0676ba61.pth, 98 MB).
    Resnet50V1,
    /// Flickr8k: Flicker8k_Dataset/*.jpg, Flickr8k.token.txt, Flickr_8k.*Images.txt (1.1 GB).
    Flickr8k,
    /// Karpathy's splits: dataset_flickr8k.json from caption_datasets.zip.
    KarpathySplits,
}

impl From<What> for Asset {
    fn from(w: What) -> Self {
        match w {
            What::Resnet50 => Asset::Resnet50,
            What::Resnet50V1 => Asset::Resnet50V1,
            What::Flickr8k => Asset::Flickr8k,
            What::KarpathySplits => Asset::KarpathySplits,
        }
    }
}

/// Flags of `captioner fetch`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to download.
    #[arg(value_enum)]
    what: What,
    /// Folder to download (and unpack) into; created if missing.
    #[arg(long)]
    dir: PathBuf,
    /// Base URL of a mirror holding the same files: it replaces scheme, host and path of every
    /// public URL and keeps the file name (`--mirror http://host/files` fetches
    /// `http://host/files/resnet50-11ad3fa6.pth`).
    #[arg(long, value_name = "URL")]
    mirror: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let asset = Asset::from(args.what);
    let opts = FetchOptions {
        mirror: args.mirror,
        checksum_overrides: test_checksum_overrides()?,
    };
    let report = lib::fetch(asset, &args.dir, &opts, &super::progress::Bars::new(true))?;
    for f in &report.files {
        let name = f.path.display();
        match &f.download {
            Downloaded::AlreadyThere => println!("{name}: already there"),
            Downloaded::Fetched {
                bytes,
                resumed_from: 0,
            } => {
                println!("{name}: downloaded {bytes} bytes, checksum ok")
            }
            Downloaded::Fetched {
                bytes,
                resumed_from,
            } => println!(
                "{name}: resumed at byte {resumed_from}, downloaded {bytes} more, checksum ok"
            ),
        }
        if !f.extracted.is_empty() {
            let into = args.dir.display();
            println!("  extracted into {into}: {}", f.extracted.join(", "));
        }
    }
    Ok(0)
}

fn test_checksum_overrides() -> anyhow::Result<BTreeMap<String, Checksum>> {
    let Some(path) = std::env::var_os(TEST_CHECKSUMS_ENV) else {
        return Ok(BTreeMap::new());
    };
    let raw: BTreeMap<String, String> =
        captioner::fsutil::read_json(PathBuf::from(path).as_path())?;
    eprintln!("warning: {TEST_CHECKSUMS_ENV} is set: using test checksums, not the published ones");
    raw.into_iter()
        .map(|(file, sum)| {
            let sum = sum
                .parse::<Checksum>()
                .with_context(|| format!("{TEST_CHECKSUMS_ENV}: entry {file:?}"))?;
            Ok((file, sum))
        })
        .collect()
}
