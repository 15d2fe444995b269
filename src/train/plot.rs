//! `loss.png` and `loss.svg`: train and validation loss per epoch, with a title, labelled axes, tick
//! values, a legend and the best epoch marked. The text is drawn with DejaVu Sans embedded in the
//! binary (plotters' pure-Rust `ab_glyph` path), so a machine without fonts draws the same picture.

use crate::train::metrics_log::EpochMetrics;
use crate::{Error, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

const W: u32 = 640;
const H: u32 = 400;
/// The family name the embedded font is registered under; plotters looks fonts up by this name.
pub(crate) const FONT: &str = "sans-serif";
/// DejaVu Sans 2.37 (Bitstream Vera licence, see assets/fonts/DejaVuSans-LICENSE.txt).
static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

const TRAIN_COLOR: RGBColor = RGBColor(31, 119, 180);
const VAL_COLOR: RGBColor = RGBColor(214, 39, 40);
const BEST_COLOR: RGBColor = RGBColor(44, 160, 44);
const TEXT_COLOR: RGBColor = RGBColor(20, 20, 20);
const GRID_COLOR: RGBColor = RGBColor(225, 225, 225);

fn plot_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::format(path, format!("cannot draw the loss plot: {e}"))
}

/// Registers the embedded font with plotters, once per process. Without it every text element
/// fails with "FontUnavailable" (the `ab_glyph` feature has no system-font fallback).
pub(crate) fn register_font() -> std::result::Result<(), String> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, DEJAVU_SANS).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err("the embedded font is not a valid TrueType font".into())
    }
}

/// The title of a run's plot: its directory name and its decoder.
pub fn run_title(run_dir: &Path, embed: usize, hidden: usize) -> String {
    let name = run_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| run_dir.display().to_string());
    format!("{name}: LSTM decoder, embed {embed}, hidden {hidden}")
}

/// Where the plotting area (inside the axes) lies in the picture, in pixels; the tests use it to
/// look for text around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlotLayout {
    /// Columns of the plotting area.
    pub x: Range<i32>,
    /// Rows of the plotting area.
    pub y: Range<i32>,
}

/// Draws the loss curves of `history` into `path` (PNG) and beside it as `loss.svg` (same
/// picture, same name with the extension `svg`); both written atomically.
pub fn draw_loss(path: &Path, title: &str, history: &[EpochMetrics]) -> Result<()> {
    let (png, _) = render_png(title, history).map_err(|e| plot_err(path, e))?;
    crate::fsutil::write_atomic(path, &png)?;
    let svg_path = path.with_extension("svg");
    let svg = render_svg(title, history).map_err(|e| plot_err(&svg_path, e))?;
    crate::fsutil::write_atomic(&svg_path, svg.as_bytes())
}

/// The plot as PNG bytes, and where its plotting area lies.
pub fn render_png(
    title: &str,
    history: &[EpochMetrics],
) -> std::result::Result<(Vec<u8>, PlotLayout), String> {
    let mut buf = vec![0u8; (W * H * 3) as usize];
    let layout = {
        let root = BitMapBackend::with_buffer(&mut buf, (W, H)).into_drawing_area();
        let layout = draw(&root, title, history)?;
        root.present().map_err(|e| e.to_string())?;
        layout
    };
    let img = image::RgbImage::from_raw(W, H, buf).ok_or("buffer size")?;
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png)
        .map_err(|e| e.to_string())?;
    Ok((png.into_inner(), layout))
}

/// The plot as an SVG document (text as `<text>` elements, drawn by the viewer's sans-serif font).
pub fn render_svg(title: &str, history: &[EpochMetrics]) -> std::result::Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        draw(&root, title, history)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// Tick labels with as many decimals as the tick spacing needs (losses of 3.12 and 3.14 must not
/// both read "3.1").
fn decimals(span: f64, ticks: usize) -> usize {
    let step = span / ticks.max(1) as f64;
    if !(step.is_finite() && step > 0.0) {
        return 2;
    }
    (-step.log10().floor()).clamp(0.0, 6.0) as usize
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    history: &[EpochMetrics],
) -> std::result::Result<PlotLayout, String> {
    register_font()?;
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let values = history
        .iter()
        .flat_map(|m| [m.train_loss, m.val_loss])
        .filter(|v| v.is_finite());
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    let pad = ((hi - lo) * 0.08).max(1e-3);
    // The top ~30% stays free for the legend, so it never hides a point.
    let (y0, y1) = (lo - pad, hi + pad + (hi - lo + 2.0 * pad) * 0.45);
    let last = history.iter().map(|m| m.epoch).max().unwrap_or(1).max(1) as f64;
    // Half an epoch of room on either side keeps the first and last markers whole.
    let (x0, x1) = (0.5, last + 0.5);
    let y_ticks = 6;
    let dec = decimals(y1 - y0, y_ticks);

    let mut chart = ChartBuilder::on(root)
        .margin(16)
        .caption(title, (FONT, 22).into_font().color(&TEXT_COLOR))
        .x_label_area_size(48)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(e)?;
    let x_fmt = |x: &f64| {
        // Only whole epochs get a label: plotters may place ticks at 2.5 on short runs.
        if (x - x.round()).abs() < 1e-9 {
            format!("{}", x.round() as i64)
        } else {
            String::new()
        }
    };
    let y_fmt = |y: &f64| format!("{y:.dec$}");
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("loss")
        .x_labels((last as usize).clamp(2, 12))
        .y_labels(y_ticks)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .disable_x_mesh()
        .max_light_lines(0)
        .bold_line_style(GRID_COLOR)
        .axis_style(TEXT_COLOR)
        .label_style((FONT, 16).into_font().color(&TEXT_COLOR))
        .axis_desc_style((FONT, 18).into_font().color(&TEXT_COLOR))
        .draw()
        .map_err(e)?;

    let best = history
        .iter()
        .filter(|m| m.val_loss.is_finite())
        .min_by(|a, b| a.val_loss.total_cmp(&b.val_loss));
    if let Some(b) = best {
        // A vertical line through the best epoch, under the curves.
        let x = b.epoch as f64;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x, y0), (x, y1)],
                BEST_COLOR.mix(0.6).stroke_width(1),
            )))
            .map_err(e)?;
    }
    type Pick = fn(&EpochMetrics) -> f64;
    let series: [(&str, RGBColor, Pick); 2] = [
        ("train", TRAIN_COLOR, |m| m.train_loss),
        ("validation", VAL_COLOR, |m| m.val_loss),
    ];
    for (label, color, pick) in series {
        let pts: Vec<(f64, f64)> = history
            .iter()
            .map(|m| (m.epoch as f64, pick(m)))
            .filter(|p| p.1.is_finite())
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(e)?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))
            .map_err(e)?;
    }
    if let Some(b) = best {
        let label = format!(
            "best: epoch {}, validation {:.prec$}",
            b.epoch,
            b.val_loss,
            prec = (dec + 1).max(3)
        );
        chart
            .draw_series(std::iter::once(Circle::new(
                (b.epoch as f64, b.val_loss),
                7,
                BEST_COLOR.stroke_width(2),
            )))
            .map_err(e)?
            .label(label)
            .legend(|(x, y)| Circle::new((x + 10, y), 6, BEST_COLOR.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE)
        .border_style(GRID_COLOR)
        .label_font((FONT, 17).into_font().color(&TEXT_COLOR))
        .draw()
        .map_err(e)?;
    let (x, y) = chart.plotting_area().get_pixel_range();
    Ok(PlotLayout { x, y })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history() -> Vec<EpochMetrics> {
        let val = [4.1, 3.6, 3.35, 3.3, 3.32, 3.4];
        val.iter()
            .enumerate()
            .map(|(i, &v)| EpochMetrics {
                epoch: i + 1,
                train_loss: 4.6 - 0.3 * i as f64,
                val_loss: v,
                seconds: 1.0,
                tokens_per_s: 1.0,
                best: i == 3,
            })
            .collect()
    }

    /// Dark grey to black: text and axes, never the coloured lines, the grid or the background.
    fn dark(p: &image::Rgb<u8>) -> bool {
        p.0.iter().all(|&c| c < 110)
    }

    fn dark_in(img: &image::RgbImage, xs: Range<i32>, ys: Range<i32>) -> usize {
        let mut n = 0;
        for y in ys.clone() {
            for x in xs.clone() {
                if dark(img.get_pixel(x as u32, y as u32)) {
                    n += 1;
                }
            }
        }
        n
    }

    #[test]
    fn text_is_drawn_around_the_axes_and_in_the_legend() {
        let (png, layout) = render_png("run: LSTM decoder", &history()).unwrap();
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (W, H));
        let (px, py) = (layout.x.clone(), layout.y.clone());
        // Left of the y axis, clear of its tick marks: tick values and "loss".
        let left = dark_in(&img, 0..px.start - 8, py.clone());
        // Below the x axis, clear of its tick marks: epoch numbers and "epoch".
        let below = dark_in(&img, px.clone(), py.end + 8..H as i32);
        // Above the plotting area: the title.
        let above = dark_in(&img, px.clone(), 0..py.start - 2);
        // The legend sits in the upper right corner of the plotting area; its border is light grey,
        // the lines are coloured, so dark pixels there are its words.
        let legend = dark_in(&img, px.end - 300..px.end - 2, py.start + 2..py.start + 90);
        for (what, n) in [
            ("y tick values", left),
            ("x tick values", below),
            ("title", above),
            ("legend", legend),
        ] {
            assert!(n > 150, "{what}: only {n} dark pixels");
        }
        // The y tick labels are stacked: dark pixels on many separate rows, not one line.
        let rows_with_text = (py.start..py.end)
            .filter(|&y| dark_in(&img, 0..px.start - 8, y..y + 1) > 0)
            .count();
        assert!(rows_with_text > 40, "{rows_with_text} rows with y labels");
    }

    /// The content of every `<text>` element (plotters puts it on a line of its own).
    fn svg_texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| {
                let body = t.split_once('>')?.1;
                Some(body.split("</text>").next()?.trim().to_string())
            })
            .collect()
    }

    #[test]
    fn the_svg_holds_the_same_text() {
        let svg = render_svg("run: LSTM decoder", &history()).unwrap();
        let texts = svg_texts(&svg);
        assert!(svg.starts_with("<svg"), "{}", &svg[..60.min(svg.len())]);
        for text in [
            "run: LSTM decoder",
            "epoch",
            "loss",
            "train",
            "validation",
            "best: epoch 4, validation 3.300",
            "1",
            "6",
        ] {
            assert!(texts.iter().any(|t| t == text), "no {text} in {texts:?}");
        }
        // Tick values on the y axis too.
        assert!(
            texts.iter().filter(|t| t.contains('.')).count() >= 4,
            "{texts:?}"
        );
    }

    #[test]
    fn draw_loss_writes_png_and_svg_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("loss.png");
        draw_loss(&png, "t", &history()).unwrap();
        assert!(image::open(&png).is_ok());
        let svg = std::fs::read_to_string(dir.path().join("loss.svg")).unwrap();
        assert!(svg.contains("</svg>"));
        // One epoch, and no finite value at all, still draw.
        draw_loss(&png, "t", &history()[..1]).unwrap();
        let mut nan = history();
        for m in &mut nan {
            m.val_loss = f64::NAN;
        }
        draw_loss(&png, "t", &nan).unwrap();
        draw_loss(&png, "t", &[]).unwrap();
    }

    #[test]
    fn tick_decimals_follow_the_spacing() {
        assert_eq!(decimals(6.0, 6), 0);
        assert_eq!(decimals(0.6, 6), 1);
        assert_eq!(decimals(0.06, 6), 2);
        assert_eq!(decimals(f64::NAN, 6), 2);
    }
}
