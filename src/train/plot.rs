//! `loss.png`: train (blue) and validation (red) loss per epoch. Drawn without text so no system
//! font is needed; the numbers are in `metrics.jsonl`.

use crate::train::metrics_log::EpochMetrics;
use crate::{Error, Result};
use plotters::prelude::*;
use std::path::Path;

const W: u32 = 640;
const H: u32 = 400;

fn plot_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::format(path, format!("cannot draw the loss plot: {e}"))
}

/// Draws the loss curves of `history` into `path` (PNG, written atomically).
pub fn draw_loss(path: &Path, history: &[EpochMetrics]) -> Result<()> {
    let mut buf = vec![0u8; (W * H * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
        let values = history
            .iter()
            .flat_map(|m| [m.train_loss, m.val_loss])
            .filter(|v| v.is_finite());
        let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
        let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
        let pad = ((hi - lo) * 0.05).max(1e-3);
        let last = history.last().map(|m| m.epoch).unwrap_or(1).max(2) as f64;
        let mut chart = ChartBuilder::on(&root)
            .margin(20)
            .build_cartesian_2d(1.0..last, (lo - pad)..(hi + pad))
            .map_err(|e| plot_err(path, e))?;
        let grid = RGBColor(220, 220, 220);
        for k in 0..=4 {
            let y = lo - pad + (hi - lo + 2.0 * pad) * k as f64 / 4.0;
            chart
                .draw_series(LineSeries::new([(1.0, y), (last, y)], grid))
                .map_err(|e| plot_err(path, e))?;
        }
        for (color, pick) in [
            (
                BLUE,
                (|m: &EpochMetrics| m.train_loss) as fn(&EpochMetrics) -> f64,
            ),
            (RED, |m: &EpochMetrics| m.val_loss),
        ] {
            let pts: Vec<(f64, f64)> = history.iter().map(|m| (m.epoch as f64, pick(m))).collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(|e| plot_err(path, e))?;
            chart
                .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))
                .map_err(|e| plot_err(path, e))?;
        }
        root.present().map_err(|e| plot_err(path, e))?;
    }
    let img = image::RgbImage::from_raw(W, H, buf).ok_or_else(|| plot_err(path, "buffer size"))?;
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png)
        .map_err(|e| plot_err(path, e))?;
    crate::fsutil::write_atomic(path, png.get_ref())
}
