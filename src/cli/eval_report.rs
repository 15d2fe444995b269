//! `eval --report DIR` and the demo's report: turns an [`Evaluation`] into the library's
//! report input, writes it and prints where it is.

use anyhow::Context;
use captioner::pipeline::Evaluation;
use captioner::report::{write_report, ReportImage, ReportInput};
use std::path::Path;

/// Writes the report of `ev` into `dir` and prints its path on stderr; `model` is what was evaluated (a run
/// directory gets its loss curve on the page), `part` the part of the split, `beam` the beam size.
pub fn write(
    dir: &Path,
    ev: &Evaluation,
    model: &Path,
    part: &str,
    beam: u64,
) -> anyhow::Result<()> {
    let images = ev
        .hyps
        .iter()
        .map(|(name, caption)| ReportImage {
            name: name.clone(),
            path: ev.paths.get(name).cloned().unwrap_or_default(),
            caption: caption.clone(),
            references: ev.refs.get(name).cloned().unwrap_or_default(),
        })
        .collect();
    let model_name = model.file_name().map_or_else(
        || model.display().to_string(),
        |n| n.to_string_lossy().into(),
    );
    let input = ReportInput {
        title: format!("captioner evaluation: {model_name}, {part} split"),
        decoding: if beam > 1 {
            format!("beam {beam}")
        } else {
            "greedy".to_string()
        },
        scores: &ev.scores,
        images,
        run_dir: model.is_dir().then_some(model),
    };
    let summary = write_report(dir, &input)
        .with_context(|| format!("cannot write the report into {}", dir.display()))?;
    for (name, why) in &summary.unreadable {
        eprintln!("warning: report: no thumbnail for {name}: {why}");
    }
    // On stderr: stdout is for the scores (`eval --json` prints one JSON object there).
    eprintln!(
        "wrote the report {} ({} images, {:.1} MB)",
        summary.index.display(),
        summary.images,
        summary.bytes as f64 / 1e6
    );
    Ok(())
}
