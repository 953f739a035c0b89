//! PNG line charts of latency against rate, drawn with plotters from a JSON description that
//! the run script writes: `{"title", "xLabel", "yLabel", "series": [{"name", "color", "dashed",
//! "points": [[x, y], …]}]}`. Series that share a `color` belong to one system (its p50 dashed,
//! its p99 solid); only named series get a legend entry. Both axes are logarithmic (rates and
//! latencies span decades). This module draws; it does not measure or choose what to plot.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use plotters::prelude::*;
use plotters::style::register_font;
use serde::Deserialize;

/// Options of `peers plot`.
#[derive(Args, Debug)]
pub struct PlotArgs {
    /// The chart's JSON description.
    #[arg(long)]
    pub input: PathBuf,
    /// The PNG to write.
    #[arg(long)]
    pub output: PathBuf,
    /// A TrueType font for the labels (Debian's fonts-dejavu-core).
    #[arg(
        long,
        default_value = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
    )]
    pub font: PathBuf,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Chart {
    title: String,
    x_label: String,
    y_label: String,
    series: Vec<Series>,
}

#[derive(Deserialize)]
struct Series {
    /// Legend text; `None` for a series drawn without a legend entry.
    name: Option<String>,
    /// Index into the palette: one per system.
    color: usize,
    /// Dashed (a system's p50) rather than solid (its p99).
    #[serde(default)]
    dashed: bool,
    points: Vec<(f64, f64)>,
}

/// Draws the chart `args.input` describes into `args.output`.
pub fn draw(args: &PlotArgs) -> Result<()> {
    let chart: Chart = serde_json::from_slice(&std::fs::read(&args.input)?)
        .with_context(|| format!("reading {}", args.input.display()))?;
    let font = std::fs::read(&args.font)
        .with_context(|| format!("reading the font {}", args.font.display()))?;
    // plotters keeps fonts for the whole process; this one-shot command never frees it.
    if register_font(
        "sans-serif",
        FontStyle::Normal,
        Box::leak(font.into_boxed_slice()),
    )
    .is_err()
    {
        bail!("{} is not a usable TrueType font", args.font.display());
    }
    let (x_range, y_range) = ranges(&chart)?;
    let root = BitMapBackend::new(&args.output, (1100, 680)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut context = ChartBuilder::on(&root)
        .caption(&chart.title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(x_range.log_scale(), y_range.log_scale())?;
    context
        .configure_mesh()
        .x_desc(&chart.x_label)
        .y_desc(&chart.y_label)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y}"))
        .label_style(("sans-serif", 14))
        .draw()?;
    for series in &chart.series {
        let color = Palette99::pick(series.color).stroke_width(2);
        let points = series.points.iter().copied();
        let drawn = if series.dashed {
            context.draw_series(DashedLineSeries::new(points, 6, 4, color.stroke_width(1)))?
        } else {
            context.draw_series(LineSeries::new(points, color))?
        };
        if let Some(name) = &series.name {
            drawn
                .label(name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
        }
        context.draw_series(
            series
                .points
                .iter()
                .map(|&p| Circle::new(p, 3, color.filled())),
        )?;
    }
    context
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    root.present()?;
    Ok(())
}

/// Axis ranges covering every point, with some room; log axes need positive bounds.
fn ranges(chart: &Chart) -> Result<(std::ops::Range<f64>, std::ops::Range<f64>)> {
    let points = || chart.series.iter().flat_map(|s| s.points.iter());
    // `headroom` above the highest point keeps the legend (upper left) off the data.
    let bounds = |values: Vec<f64>, headroom: f64| {
        let low = values.iter().copied().fold(f64::INFINITY, f64::min);
        let high = values.iter().copied().fold(0.0, f64::max);
        (low.max(1e-3) / 1.5)..(high.max(low) * headroom)
    };
    if points().next().is_none() {
        bail!("the chart has no points");
    }
    Ok((
        bounds(points().map(|p| p.0).collect(), 1.5),
        bounds(points().map(|p| p.1).collect(), 6.0),
    ))
}
