//! The chart (SVG, plotters): single-event fan-out p99 vs subscribers, and server RSS per
//! subscriber vs subscribers, per target and per connection shape (one stream per connection,
//! or multiplexed).

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

use crate::scenarios::{Record, TargetKind};

struct Series {
    label: String,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

/// Draws the chart into `path`.
pub fn draw(records: &[Record], path: &Path) -> Result<()> {
    let p99 = series(records, |r| r.get("p99_us").map(|us| us / 1000.0));
    let rss = series(records, |r| r.get("rss_per_sub_bytes").map(|b| b / 1000.0));
    let root = SVGBackend::new(path, (1200, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let (left, right) = root.split_horizontally(600);
    panel(&left, "Single-event fan-out p99 (ms)", &p99)?;
    panel(&right, "Server RSS per subscriber (KB)", &rss)?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

fn series(records: &[Record], value: impl Fn(&Record) -> Option<f64>) -> Vec<Series> {
    let mut out = Vec::new();
    for target in [
        TargetKind::Nchan,
        TargetKind::Relay,
        TargetKind::HyperMinimal,
    ] {
        for multiplexed in [false, true] {
            let mut points: Vec<(f64, f64)> = records
                .iter()
                .filter(|r| r.target == target && r.failure.is_none() && r.subscribers > 0)
                .filter(|r| match r.scenario.as_str() {
                    "sweep" => !multiplexed,
                    "multiplexed" | "big" => multiplexed,
                    _ => false,
                })
                .filter_map(|r| Some((r.subscribers as f64, value(r)?.max(0.001))))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (color, shape) = match (target, multiplexed) {
                (TargetKind::Nchan, false) => (RGBColor(200, 40, 40), "1 stream/conn"),
                (TargetKind::Nchan, true) => (RGBColor(240, 150, 40), "100 streams/conn"),
                (TargetKind::Relay, false) => (RGBColor(30, 80, 200), "1 stream/conn"),
                (TargetKind::Relay, true) => (RGBColor(40, 170, 170), "100 streams/conn"),
                (TargetKind::HyperMinimal, false) => (RGBColor(90, 90, 90), "1 stream/conn"),
                (TargetKind::HyperMinimal, true) => (RGBColor(160, 160, 160), "100 streams/conn"),
            };
            if !points.is_empty() {
                out.push(Series {
                    label: format!("{}, {shape}", target.name()),
                    color,
                    points,
                });
            }
        }
    }
    out
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    data: &[Series],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let all = || data.iter().flat_map(|s| s.points.iter());
    let x_max = all().map(|p| p.0).fold(1000.0, f64::max) * 1.5;
    let x_min = all().map(|p| p.0).fold(x_max, f64::min) / 1.5;
    // Headroom above the data for the legend (log scale).
    let y_max = all().map(|p| p.1).fold(0.01, f64::max) * 10.0;
    let y_min = all().map(|p| p.1).fold(y_max, f64::min) / 2.0;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((x_min..x_max).log_scale(), (y_min..y_max).log_scale())
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("subscribers (log scale)")
        .y_desc("log scale")
        .x_labels(8)
        .y_labels(8)
        .light_line_style(WHITE)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y}"))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    for s in data {
        let color = s.color;
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| anyhow!("{e}"))?
            .label(s.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(s.points.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(|e| anyhow!("{e}"))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
