//! `captioner caption`: captions image files and folders (recursively), in batches, as text, JSONL or
//! CSV. A file that fails is reported by name and the others go on; the exit status is 1 if any failed.
//!
//! `--shard I/N` (or a Slurm array / Kubernetes Indexed Job) captions only the images whose key
//! falls in shard I: the path relative to the folder argument it was found under, or the file
//! name of a file argument, so the partition is the same on every machine. With `--format jsonl`
//! the shards' outputs concatenated are the unsharded output's lines, in another order.

use super::exit::UsageContext;
use super::progress::Bars;
use super::shard_args::ShardArgs;
use anyhow::Context;
use captioner::data::walk::walk_images;
use captioner::progress::{Level, Progress, Unit};
use captioner::report::attention_png::write_attention_png;
use captioner::vision::decode::load_rgb;
use captioner::{CaptionOptions, Captioner, WordAttention};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One caption per line (`PATH<TAB>caption` when there are several images); errors on stderr.
    Text,
    /// One JSON object per line: `{"image", "caption"}`, or `{"image", "error"}` for a failure.
    Jsonl,
    /// CSV with the header `image,caption`; errors on stderr.
    Csv,
}

/// Flags of `captioner caption`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A run directory or a file written by `captioner export`.
    #[arg(long, value_name = "M")]
    pub model: PathBuf,
    /// Beam size; 1 is greedy decoding.
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub beam: u64,
    /// Length normalisation of beam search: scores are divided by length^A (0 = none).
    #[arg(long, value_name = "A", default_value_t = 0.0)]
    pub length_alpha: f32,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Images per forward pass.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub batch_size: usize,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
    #[command(flatten)]
    pub shard: ShardArgs,
    #[command(flatten)]
    pub precision: super::precision_arg::PrecisionArg,
    /// Attention models: write DIR/<image stem>.png, the image and one panel per word with
    /// where the model looked for it. Images whose stems collide (a/x.jpg, b/x.jpg) are named by
    /// their path below the folder they share instead (a__x.jpg.png, b__x.jpg.png).
    #[arg(long, value_name = "DIR")]
    pub attention_out: Option<PathBuf>,
    /// Image files, or folders searched recursively for images (by extension).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

/// An image named by the arguments, with its shard key.
struct Found {
    path: PathBuf,
    /// Where it is, independent of the machine: the path relative to the folder argument
    /// (`/`-separated), or the file name of a file argument.
    key: String,
}

fn key_of(path: &Path, root: Option<&Path>) -> String {
    let rel = root.and_then(|r| path.strip_prefix(r).ok());
    match rel {
        Some(rel) => rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/"),
        None => path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string()),
    }
}

/// Image files named by `paths`: files as given, folders walked recursively (sorted; the walk
/// `index` uses too), plus the paths that could not be read with their error.
fn collect_images(paths: &[PathBuf]) -> (Vec<Found>, Vec<(Found, String)>) {
    let mut files = Vec::new();
    let mut bad = Vec::new();
    for p in paths {
        if p.is_dir() {
            let walk = walk_images(p);
            files.extend(walk.images.into_iter().map(|f| Found {
                path: f.path,
                key: f.rel,
            }));
            bad.extend(walk.unreadable.into_iter().map(|(path, e)| {
                let key = key_of(&path, Some(p));
                (Found { path, key }, e)
            }));
        } else if p.exists() {
            files.push(Found {
                path: p.clone(),
                key: key_of(p, None),
            });
        } else {
            bad.push((
                Found {
                    path: p.clone(),
                    key: key_of(p, None),
                },
                format!("{}: no such file or directory", p.display()),
            ));
        }
    }
    (files, bad)
}

/// Writes one result in the chosen format; errors (whose message names the file) of text and CSV
/// go to stderr. An attention model's JSONL line also has `"grid": [h, w]` and `"attention"`,
/// one row of `h·w` weights per word.
fn emit(
    out: &mut impl Write,
    format: Format,
    several: bool,
    image: &Path,
    result: Result<&str, &str>,
    attention: Option<&WordAttention>,
) -> anyhow::Result<()> {
    let name = image.display().to_string();
    match (format, result) {
        (Format::Jsonl, Ok(caption)) => {
            let mut line = serde_json::json!({ "image": name, "caption": caption });
            if let Some(a) = attention {
                line["grid"] = serde_json::json!(a.grid);
                line["attention"] = serde_json::json!(a.weights);
            }
            writeln!(out, "{line}")?
        }
        (Format::Jsonl, Err(e)) => {
            writeln!(out, "{}", serde_json::json!({ "image": name, "error": e }))?
        }
        (Format::Csv, Ok(caption)) => {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record([name.as_str(), caption])?;
            out.write_all(&w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?)?;
        }
        (Format::Text, Ok(caption)) if several => writeln!(out, "{name}\t{caption}")?,
        (Format::Text, Ok(caption)) => writeln!(out, "{caption}")?,
        (Format::Text | Format::Csv, Err(e)) => eprintln!("error: {e}"),
    }
    Ok(())
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let shard = args.shard.resolve()?;
    let precision = args.precision.checked()?;
    let (mut found, mut bad) = collect_images(&args.paths);
    let listed = found.len() + bad.len();
    // Only for `--attention-out`: a million-image listing need not hold a second copy of its paths.
    let pictures = match &args.attention_out {
        Some(_) => picture_names(found.iter().map(|f| f.path.as_path())),
        None => HashMap::new(),
    };
    if let Some((s, _)) = shard {
        found.retain(|f| s.contains(&f.key));
        bad.retain(|(f, _)| s.contains(&f.key));
    }
    let files: Vec<PathBuf> = found.into_iter().map(|f| f.path).collect();
    let device = captioner::device::default_device();
    let captioner = Captioner::load(&args.model, &device)
        .usage_context(|| format!("cannot load the model {}", args.model.display()))?
        .with_precision(precision)?;
    let opts = CaptionOptions {
        beam: args.beam as usize,
        length_alpha: args.length_alpha,
        batch_size: args.batch_size.max(1),
    };
    // Counted before sharding, so every shard writes the lines an unsharded run would.
    let several = listed > 1;
    let mut out = super::output::Output::stdout();
    if args.format == Format::Csv {
        writeln!(out, "image,caption")?;
    }
    let mut failed = 0usize;
    for (f, e) in &bad {
        emit(&mut out, args.format, several, &f.path, Err(e), None)?;
        failed += 1;
    }
    let bars = Bars::new(several && !args.no_progress);
    if let Some((s, source)) = shard {
        bars.log(
            Level::Info,
            &format!(
                "caption: shard {s} (from {source}): {} of the {listed} images",
                files.len() + bad.len()
            ),
        );
    }
    let task = bars.task("caption", Some(files.len() as u64), Unit::Images);
    let attention_model = captioner.grid().is_some();
    if let Some(dir) = &args.attention_out {
        if !attention_model {
            return Err(super::exit::usage(format!(
                "--attention-out needs an attention model; {} has the lstm decoder",
                args.model.display()
            )));
        }
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if attention_model && (args.format == Format::Jsonl || args.attention_out.is_some()) {
        let failed_now = caption_attended(
            &captioner, &files, &opts, &args, &pictures, several, &mut out, &bars, &*task,
        )?;
        task.finish();
        out.flush()?;
        return finish(failed + failed_now, files.len() + bad.len());
    }
    let mut write_err = None;
    let mut internal = None;
    captioner.caption_paths_each(&files, &opts, |i, result| {
        let msg;
        let r: Result<&str, &str> = match &result {
            Ok(c) => Ok(c),
            // Not the image's fault: stop with the error rather than blame the file.
            Err(e) if e.is_internal() => {
                internal.get_or_insert(e.to_string());
                return;
            }
            Err(e) => {
                failed += 1;
                msg = e.to_string();
                Err(&msg)
            }
        };
        let written = bars.suspend(|| emit(&mut out, args.format, several, &files[i], r, None));
        if let Err(e) = written {
            write_err.get_or_insert(e);
        }
        task.advance(1);
    });
    task.finish();
    out.flush()?;
    if let Some(e) = write_err {
        return Err(e);
    }
    if let Some(e) = internal {
        anyhow::bail!("{e}");
    }
    finish(failed, files.len() + bad.len())
}

/// The exit status after `failed` of `total` images failed (said on stderr).
fn finish(failed: usize, total: usize) -> anyhow::Result<i32> {
    if failed > 0 {
        eprintln!(
            "captioned {} of {total} images; {failed} failed",
            total - failed
        );
        return Ok(1);
    }
    Ok(0)
}

/// Captions `files` with an attention model, keeping where each word looked: for the JSONL
/// fields and the `--attention-out` pictures. Batches of `opts.batch_size` images, as the plain
/// path. Returns how many images failed.
#[allow(clippy::too_many_arguments)]
fn caption_attended(
    captioner: &Captioner,
    files: &[PathBuf],
    opts: &CaptionOptions,
    args: &Args,
    pictures: &HashMap<PathBuf, String>,
    several: bool,
    out: &mut impl Write,
    bars: &Bars,
    task: &dyn captioner::progress::Task,
) -> anyhow::Result<usize> {
    let mut failed = 0;
    for chunk in files.chunks(opts.batch_size.max(1)) {
        let images: Vec<Result<image::RgbImage, captioner::Error>> =
            chunk.iter().map(|p| load_rgb(p)).collect();
        let good: Vec<image::RgbImage> = images
            .iter()
            .filter_map(|r| r.as_ref().ok().cloned())
            .collect();
        let mut attended = captioner.caption_images_attended(&good, opts)?.into_iter();
        for (path, image) in chunk.iter().zip(&images) {
            match image {
                Err(e) => {
                    failed += 1;
                    let msg = e.to_string();
                    bars.suspend(|| emit(out, args.format, several, path, Err(&msg), None))?;
                }
                Ok(img) => {
                    let a = attended
                        .next()
                        .ok_or_else(|| anyhow::anyhow!("internal: a caption went missing"))?;
                    bars.suspend(|| {
                        emit(
                            out,
                            args.format,
                            several,
                            path,
                            Ok(&a.caption),
                            a.attention.as_ref(),
                        )
                    })?;
                    if let (Some(dir), Some(att)) = (&args.attention_out, &a.attention) {
                        let name = pictures
                            .get(path)
                            .ok_or_else(|| anyhow::anyhow!("internal: no picture name"))?;
                        write_attention_png(img, &a.words, att, &dir.join(format!("{name}.png")))?;
                    }
                }
            }
            task.advance(1);
        }
    }
    Ok(failed)
}

/// The `--attention-out` picture name (without `.png`) of each listed image: its file stem, or,
/// where several listed images share a stem (a/x.jpg and b/x.jpg, or x.jpg and x.png), its path
/// below the folder they all share, `/` written `__` (`a__x.jpg`, `b__x.jpg`), so that no picture
/// overwrites another. Computed over the whole listing before sharding, so that shards writing
/// into one folder agree.
fn picture_names<'a>(paths: impl Iterator<Item = &'a Path>) -> HashMap<PathBuf, String> {
    let stem = |p: &Path| {
        p.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image".into())
    };
    let mut by_stem: HashMap<String, Vec<&Path>> = HashMap::new();
    for p in paths {
        let group = by_stem.entry(stem(p)).or_default();
        if !group.contains(&p) {
            group.push(p);
        }
    }
    let mut names = HashMap::new();
    for (stem, group) in by_stem {
        if group.len() == 1 {
            names.insert(group[0].to_path_buf(), stem);
            continue;
        }
        let parts: Vec<Vec<String>> = group
            .iter()
            .map(|p| {
                p.components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect()
            })
            .collect();
        // Components shared by every path, not counting the file name.
        let shortest = parts.iter().map(|p| p.len() - 1).min().unwrap_or(0);
        let shared = (0..shortest)
            .take_while(|&i| parts.iter().all(|p| p[i] == parts[0][i]))
            .count();
        for (p, comps) in group.iter().zip(&parts) {
            names.insert(p.to_path_buf(), comps[shared..].join("__"));
        }
    }
    names
}

#[cfg(test)]
mod picture_name_tests {
    use super::*;

    #[test]
    fn colliding_stems_are_named_by_their_path_below_the_shared_folder() {
        let paths = [
            "photos/2019/beach.jpg",
            "photos/2020/beach.jpg",
            "photos/2020/dog.jpg",
            "photos/cat.jpg",
            "photos/cat.png",
            "photos/2020/dog.jpg",
        ];
        let names = picture_names(paths.iter().map(Path::new));
        let name = |p: &str| names[Path::new(p)].as_str();
        assert_eq!(name("photos/2019/beach.jpg"), "2019__beach.jpg");
        assert_eq!(name("photos/2020/beach.jpg"), "2020__beach.jpg");
        assert_eq!(
            name("photos/2020/dog.jpg"),
            "dog",
            "listed twice, still one image"
        );
        assert_eq!(name("photos/cat.jpg"), "cat.jpg");
        assert_eq!(name("photos/cat.png"), "cat.png");
        assert_eq!(names.len(), 5);
        let mut all: Vec<&String> = names.values().collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 5, "every picture has its own name: {names:?}");
    }
}
