//! `captioner index`: captions every image under some folders into a library database, keeping
//! what is already there (see `captioner::library::index`). Ends with one summary line on stdout;
//! the exit status is 1 when an image or a sidecar failed.

use super::exit::UsageContext;
use super::progress::Bars;
use captioner::library::xmp::SidecarName;
use captioner::library::{index_library, Describer, IndexOptions, ModelId};
use captioner::progress::{Level, Progress};
use captioner::shard::Shard;
use captioner::{CaptionOptions, Captioner};
use std::path::{Path, PathBuf};

/// How sidecars are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum XmpName {
    /// `photo.jpg` → `photo.xmp` (ExifTool, Lightroom, digiKam).
    Base,
    /// `photo.jpg` → `photo.jpg.xmp` (darktable).
    Full,
}

/// Flags of `captioner index`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A run directory or a file written by `captioner export`.
    #[arg(long, value_name = "M")]
    pub model: PathBuf,
    /// The library database (SQLite), created if needed. With a shard, the shard writes
    /// FILE's stem + `.shard-I-of-N` + its extension instead (see `index-merge`).
    #[arg(long, value_name = "FILE")]
    pub db: PathBuf,
    /// Beam size; 1 is greedy decoding. The beam's other finished captions are kept and searched.
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub beam: u64,
    /// Length normalisation of beam search: scores are divided by length^A (0 = none).
    #[arg(long, value_name = "A", default_value_t = 0.0)]
    pub length_alpha: f32,
    /// Images per forward pass, and per committed transaction.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub batch_size: usize,
    /// Also write an XMP sidecar beside each image, with the caption as dc:description.
    #[arg(long)]
    pub xmp: bool,
    /// Sidecar names: `base` (photo.xmp) or `full` (photo.jpg.xmp).
    #[arg(long, value_enum, default_value = "base", requires = "xmp")]
    pub xmp_name: XmpName,
    /// Index only shard I of N (images by path relative to the folder).
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Shard count for a Kubernetes Indexed Job (JOB_COMPLETION_INDEX gives the index) or a Slurm
    /// array without SLURM_ARRAY_TASK_COUNT.
    #[arg(long, value_name = "N")]
    pub shards: Option<u32>,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Image files, or folders searched recursively for images (by extension).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

/// `lib.db` with shard 1/3 → `lib.shard-1-of-3.db`.
pub fn shard_db(db: &Path, shard: Shard) -> PathBuf {
    let stem = db
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "library".into());
    let name = match db.extension() {
        Some(ext) => format!(
            "{stem}.shard-{}-of-{}.{}",
            shard.index,
            shard.count,
            ext.to_string_lossy()
        ),
        None => format!("{stem}.shard-{}-of-{}", shard.index, shard.count),
    };
    db.with_file_name(name)
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let bars = Bars::new(!args.no_progress);
    let shard = Shard::resolve(args.shard.as_deref(), args.shards, |k| {
        std::env::var(k).ok()
    })?;
    let db = match shard {
        Some((s, source)) => {
            let db = shard_db(&args.db, s);
            bars.log(
                Level::Info,
                &format!("shard {s} (from {source}) into {}", db.display()),
            );
            db
        }
        None => args.db.clone(),
    };
    let model = ModelId::of(&args.model)
        .usage_context(|| format!("cannot read the model {}", args.model.display()))?;
    let opts = IndexOptions {
        caption: CaptionOptions {
            beam: args.beam as usize,
            length_alpha: args.length_alpha,
            batch_size: args.batch_size.max(1),
        },
        xmp: args.xmp.then_some(match args.xmp_name {
            XmpName::Base => SidecarName::Base,
            XmpName::Full => SidecarName::Full,
        }),
        shard: shard.map(|(s, _)| s),
    };
    let model_path = args.model.clone();
    let load = move || -> captioner::Result<Box<dyn Describer>> {
        let device = captioner::device::default_device();
        Ok(Box::new(Captioner::load(&model_path, &device)?))
    };
    let summary = index_library(&db, &args.paths, &model, &load, &opts, &bars)?;
    println!("{summary}");
    Ok(if summary.failed > 0 || summary.sidecars_failed > 0 {
        1
    } else {
        0
    })
}
