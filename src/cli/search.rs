//! `captioner search`: the library's images whose captions match the words of a query, best
//! first (BM25), or with `--all` every captioned image (an alt-text export). Nothing found prints
//! nothing and exits 0.

use super::exit::UsageContext;
use captioner::library::{Hit, Library};
use std::io::Write;
use std::path::PathBuf;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `PATH<TAB>SCORE<TAB>caption` (`PATH<TAB>caption` with --all).
    Text,
    /// One JSON object per line: `{"image", "caption", "score"}` (no score with --all).
    Jsonl,
    /// CSV with the header `image,caption,score` (`image,caption` with --all).
    Csv,
}

/// Flags of `captioner search`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The library database written by `captioner index`.
    #[arg(long, value_name = "FILE")]
    pub db: PathBuf,
    /// Most results shown.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub limit: usize,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// List every captioned image (by path) instead of searching.
    #[arg(long, conflicts_with = "query")]
    pub all: bool,
    /// Words to look for (all of them; "dogs running" finds "a dog runs"). Any characters are
    /// taken as words, never as search syntax.
    #[arg(value_name = "QUERY", required_unless_present = "all")]
    pub query: Vec<String>,
}

fn write_hit(
    out: &mut impl Write,
    format: Format,
    hit: &Hit,
    with_score: bool,
    first: bool,
) -> anyhow::Result<()> {
    let score = hit.score;
    match format {
        Format::Text if with_score => writeln!(out, "{}\t{score:.4}\t{}", hit.path, hit.caption)?,
        Format::Text => writeln!(out, "{}\t{}", hit.path, hit.caption)?,
        Format::Jsonl if with_score => writeln!(
            out,
            "{}",
            serde_json::json!({ "image": hit.path, "caption": hit.caption, "score": score })
        )?,
        Format::Jsonl => writeln!(
            out,
            "{}",
            serde_json::json!({ "image": hit.path, "caption": hit.caption })
        )?,
        Format::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            if first {
                if with_score {
                    w.write_record(["image", "caption", "score"])?;
                } else {
                    w.write_record(["image", "caption"])?;
                }
            }
            if with_score {
                w.write_record([hit.path.as_str(), &hit.caption, &score.to_string()])?;
            } else {
                w.write_record([hit.path.as_str(), &hit.caption])?;
            }
            out.write_all(&w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?)?;
        }
    }
    Ok(())
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let library = Library::open(&args.db)
        .usage_context(|| format!("--db {}: not a usable library", args.db.display()))?;
    let mut out = super::output::Output::stdout();
    let mut first = true;
    if args.all {
        let mut failed = None;
        library.all(|hit| {
            if failed.is_none() {
                if let Err(e) = write_hit(&mut out, args.format, &hit, false, first) {
                    failed = Some(e);
                }
                first = false;
            }
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
    } else {
        let page = library.search(&args.query.join(" "), args.limit, 0)?;
        for hit in &page.hits {
            write_hit(&mut out, args.format, hit, true, first)?;
            first = false;
        }
    }
    out.flush()?;
    Ok(0)
}
