//! `captioner caption`: captions image files and folders (recursively), in batches, as text, JSONL or
//! CSV. A file that fails is reported by name and the others go on; the exit status is 1 if any failed.

use super::progress::Bars;
use anyhow::Context;
use captioner::data::walk::find_images;
use captioner::progress::{Progress, Unit};
use captioner::{CaptionOptions, Captioner};
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
    /// Image files, or folders searched recursively for images (by extension).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

/// Writes one result in the chosen format; errors (whose message names the file) of text and CSV go to stderr.
fn emit(
    out: &mut impl Write,
    format: Format,
    several: bool,
    image: &Path,
    result: Result<&str, &str>,
) -> anyhow::Result<()> {
    let name = image.display().to_string();
    match (format, result) {
        (Format::Jsonl, Ok(caption)) => writeln!(
            out,
            "{}",
            serde_json::json!({ "image": name, "caption": caption })
        )?,
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
    let (files, bad) = find_images(&args.paths);
    let device = captioner::device::default_device();
    let captioner = Captioner::load(&args.model, &device)
        .with_context(|| format!("cannot load the model {}", args.model.display()))?;
    let opts = CaptionOptions {
        beam: args.beam as usize,
        length_alpha: args.length_alpha,
        batch_size: args.batch_size.max(1),
    };
    let several = files.len() + bad.len() > 1;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if args.format == Format::Csv {
        writeln!(out, "image,caption")?;
    }
    let mut failed = 0usize;
    for (path, e) in &bad {
        emit(&mut out, args.format, several, path, Err(e))?;
        failed += 1;
    }
    let bars = Bars::new(several && !args.no_progress);
    let task = bars.task("caption", Some(files.len() as u64), Unit::Images);
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
        let written = bars.suspend(|| emit(&mut out, args.format, several, &files[i], r));
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
    if failed > 0 {
        eprintln!(
            "captioned {} of {} images; {failed} failed",
            files.len() + bad.len() - failed,
            files.len() + bad.len()
        );
        return Ok(1);
    }
    Ok(0)
}
