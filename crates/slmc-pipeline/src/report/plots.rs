//! Line charts, drawn with plotters to inline SVG: axes with ticks and units, a legend, optional
//! point markers, a logarithmic y axis, and labelled vertical markers (stage boundaries).

use crate::PipelineError;
use plotters::coord::Shift;
use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

/// Colours of the series (Tableau 10), by index.
const PALETTE: [RGBColor; 10] = [
    RGBColor(0x4e, 0x79, 0xa7),
    RGBColor(0xf2, 0x8e, 0x2b),
    RGBColor(0xe1, 0x57, 0x59),
    RGBColor(0x76, 0xb7, 0xb2),
    RGBColor(0x59, 0xa1, 0x4f),
    RGBColor(0xed, 0xc9, 0x48),
    RGBColor(0xb0, 0x7a, 0xa1),
    RGBColor(0xff, 0x9d, 0xa7),
    RGBColor(0x9c, 0x75, 0x5f),
    RGBColor(0xba, 0xb0, 0xac),
];
const MARKER_GREY: RGBColor = RGBColor(0x80, 0x80, 0x80);
const FONT: &str = "sans-serif";
/// Pixels on the right of the plot for the legend (outside the data, so it hides nothing).
const LEGEND_WIDTH: u32 = 250;

/// One line of a chart.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Series {
    /// Legend text.
    pub label: String,
    /// `(x, y)` in axis units, in drawing order.
    pub points: Vec<(f64, f64)>,
    /// Palette index.
    pub color: usize,
    /// Whether to draw a dot at every point (always, for a single point).
    pub dots: bool,
}

/// A labelled vertical line (a stage boundary).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Marker {
    /// Position on the x axis.
    pub x: f64,
    /// Text beside the line, at the top.
    pub label: String,
}

/// How the y axis maps values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum YScale {
    /// Linear, from just below the smallest value to just above the largest.
    Linear,
    /// Logarithmic over whole decades (non-positive values are left out).
    Log,
}

/// A line chart.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Chart {
    /// Title above the plot.
    pub title: String,
    /// x axis description, with its unit.
    pub x_desc: String,
    /// y axis description, with its unit.
    pub y_desc: String,
    /// The lines.
    pub series: Vec<Series>,
    /// Vertical markers.
    pub markers: Vec<Marker>,
    /// The y axis.
    pub y_scale: YScale,
    /// The x values are integers (layer indices): one tick per integer, no fractions.
    pub integer_x: bool,
}

impl Chart {
    /// `label: points` for every series, `;`-separated (the figure's `data-series` attribute,
    /// which tests and scripts read).
    pub fn series_summary(&self) -> String {
        let parts: Vec<String> =
            self.series.iter().map(|s| format!("{}: {}", s.label, self.drawn(s).len())).collect();
        parts.join("; ")
    }

    /// The points of `s` that the y axis can show.
    fn drawn(&self, s: &Series) -> Vec<(f64, f64)> {
        s.points
            .iter()
            .copied()
            .filter(|&(x, y)| x.is_finite() && y.is_finite() && (self.y_scale == YScale::Linear || y > 0.0))
            .collect()
    }

    fn x_range(&self) -> (f64, f64) {
        let xs = self
            .series
            .iter()
            .flat_map(|s| self.drawn(s))
            .map(|p| p.0)
            .chain(self.markers.iter().map(|m| m.x));
        let (lo, hi) = min_max(xs).unwrap_or((0.0, 1.0));
        if self.integer_x {
            (lo - 0.5, hi + 0.5)
        } else if hi > lo {
            (lo, hi)
        } else {
            (lo - 0.5, hi + 0.5)
        }
    }

    fn y_range(&self) -> (f64, f64) {
        let ys = self.series.iter().flat_map(|s| self.drawn(s)).map(|p| p.1);
        match (min_max(ys), self.y_scale) {
            (None, YScale::Linear) => (0.0, 1.0),
            (None, YScale::Log) => (0.1, 1.0),
            (Some((lo, hi)), YScale::Linear) => {
                let pad = if hi > lo { (hi - lo) * 0.06 } else { lo.abs().max(1.0) * 0.1 };
                (lo - pad, hi + pad)
            }
            // Whole decades: the axis' ticks are at powers of ten and their multiples.
            (Some((lo, hi)), YScale::Log) => {
                let (a, b) = (lo.log10().floor(), hi.log10().ceil());
                // (Just below the lower power, so rounding cannot drop its tick.)
                (10f64.powf(a) * 0.999, 10f64.powf(if b > a { b } else { a + 1.0 }))
            }
        }
    }

    /// Draws the chart as a standalone SVG document of `width` × `height` pixels (it has a
    /// `viewBox`, so it scales).
    pub fn svg(&self, width: u32, height: u32) -> Result<String, PipelineError> {
        let mut out = String::new();
        {
            let root = SVGBackend::with_string(&mut out, (width, height)).into_drawing_area();
            root.fill(&WHITE).map_err(chart_err)?;
            let (plot, legend) = root.split_horizontally(width.saturating_sub(LEGEND_WIDTH));
            let (x0, x1) = self.x_range();
            let (y0, y1) = self.y_range();
            match self.y_scale {
                YScale::Linear => {
                    let mut chart =
                        self.builder(&plot).build_cartesian_2d(x0..x1, y0..y1).map_err(chart_err)?;
                    self.draw(&mut chart, (y0, y1))?;
                }
                YScale::Log => {
                    let mut chart = self
                        .builder(&plot)
                        .build_cartesian_2d(x0..x1, (y0..y1).log_scale())
                        .map_err(chart_err)?;
                    self.draw(&mut chart, (y0, y1))?;
                }
            }
            self.legend(&legend)?;
            root.present().map_err(chart_err)?;
        }
        Ok(out)
    }

    fn builder<'a, 'b>(
        &self,
        root: &'a DrawingArea<SVGBackend<'b>, Shift>,
    ) -> ChartBuilder<'a, 'b, SVGBackend<'b>> {
        let mut b = ChartBuilder::on(root);
        b.caption(&self.title, (FONT, 17)).margin(14).x_label_area_size(46).y_label_area_size(70);
        b
    }

    fn draw<'a, Y>(
        &self,
        chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, Y>>,
        (y0, y1): (f64, f64),
    ) -> Result<(), PipelineError>
    where
        Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
    {
        let integer_ticks = |x: &f64| {
            if (x - x.round()).abs() < 1e-6 { format!("{}", x.round()) } else { String::new() }
        };
        let log_ticks = |y: &f64| sci_tick(*y);
        let (x0, x1) = self.x_range();
        let mut mesh = chart.configure_mesh();
        mesh.x_desc(self.x_desc.as_str())
            .y_desc(self.y_desc.as_str())
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .max_light_lines(1)
            .light_line_style(RGBColor(0xf2, 0xf2, 0xf2))
            .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd));
        if self.integer_x {
            mesh.x_labels(((x1 - x0).round() as usize + 1).min(40)).x_label_formatter(&integer_ticks);
        }
        if self.y_scale == YScale::Log {
            mesh.y_label_formatter(&log_ticks);
        }
        mesh.draw().map_err(chart_err)?;

        for s in &self.series {
            let color = PALETTE[s.color % PALETTE.len()];
            let points = self.drawn(s);
            let style = color.stroke_width(2);
            chart.draw_series(LineSeries::new(points.clone(), style)).map_err(chart_err)?;
            if s.dots || points.len() == 1 {
                chart
                    .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                    .map_err(chart_err)?;
            }
        }
        for m in &self.markers {
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(m.x, y0), (m.x, y1)],
                    5,
                    4,
                    MARKER_GREY.stroke_width(1),
                ))
                .map_err(chart_err)?;
            let top = if self.y_scale == YScale::Log { y1 / 1.15 } else { y1 - (y1 - y0) * 0.03 };
            chart
                .draw_series(std::iter::once(Text::new(
                    format!(" {}", m.label),
                    (m.x, top),
                    (FONT, 12).into_font().color(&MARKER_GREY),
                )))
                .map_err(chart_err)?;
        }
        Ok(())
    }

    /// The legend: a sample of each series' line (and dot) with its label, top to bottom.
    fn legend(&self, area: &DrawingArea<SVGBackend<'_>, Shift>) -> Result<(), PipelineError> {
        let font = (FONT, 14).into_font().color(&BLACK);
        for (i, s) in self.series.iter().enumerate() {
            let color = PALETTE[s.color % PALETTE.len()];
            let y = 52 + 22 * i as i32;
            area.draw(&PathElement::new(vec![(6, y), (30, y)], color.stroke_width(2))).map_err(chart_err)?;
            if s.dots {
                area.draw(&Circle::new((18, y), 3, color.filled())).map_err(chart_err)?;
            }
            area.draw(&Text::new(s.label.clone(), (38, y - 7), font.clone())).map_err(chart_err)?;
        }
        Ok(())
    }
}

/// A log-axis tick: `1e-4`, or `2.5e-4` when one digit is not enough.
fn sci_tick(y: f64) -> String {
    let short = format!("{y:.0e}");
    match short.parse::<f64>() {
        Ok(v) if ((v - y) / y).abs() < 0.01 => short,
        _ => format!("{y:.1e}"),
    }
}

fn min_max(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

fn chart_err(e: impl std::fmt::Display) -> PipelineError {
    PipelineError::Chart(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(y_scale: YScale) -> Chart {
        Chart {
            title: "t".into(),
            x_desc: "x (units)".into(),
            y_desc: "y (units)".into(),
            series: vec![
                Series {
                    label: "a".into(),
                    points: vec![(1.0, 2.0), (2.0, 1.5), (3.0, 1.2)],
                    color: 0,
                    dots: false,
                },
                Series { label: "b".into(), points: vec![(3.0, 0.0)], color: 1, dots: true },
            ],
            markers: vec![Marker { x: 1.0, label: "stage 1".into() }],
            y_scale,
            integer_x: false,
        }
    }

    #[test]
    fn svg_has_every_series_the_axes_and_the_markers() {
        let c = chart(YScale::Linear);
        let svg = c.svg(600, 300).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("viewBox=\"0 0 600 300\""));
        let texts: Vec<&str> = svg.lines().map(str::trim).collect();
        for text in ["x (units)", "y (units)", "stage 1", "a", "b"] {
            assert!(texts.iter().any(|t| t.trim() == text), "{text} missing");
        }
        // The 3-point series is one polyline of 3 points; the single point is a dot.
        assert!(svg.lines().any(|l| l.contains("<polyline") && points(l) == 3));
        assert_eq!(c.series_summary(), "a: 3; b: 1");
        assert!(svg.contains("<circle"));
    }

    #[test]
    fn a_log_axis_leaves_out_non_positive_values() {
        let c = chart(YScale::Log);
        assert_eq!(c.series_summary(), "a: 3; b: 0");
        let svg = c.svg(600, 300).unwrap();
        assert!(svg.contains("<polyline"));
        assert_eq!(sci_tick(1e-4), "1e-4");
        assert_eq!(sci_tick(2.5e-4), "2.5e-4");
    }

    /// The x coordinates of every polyline.
    fn polyline_xs(svg: &str) -> Vec<Vec<f64>> {
        svg.split("<polyline")
            .skip(1)
            .map(|p| {
                let pts = p.split("points=\"").nth(1).unwrap();
                let pts = &pts[..pts.find('"').unwrap()];
                pts.split_whitespace().map(|xy| xy.split(',').next().unwrap().parse().unwrap()).collect()
            })
            .collect()
    }

    #[test]
    fn the_legend_is_beside_the_plot_not_on_it() {
        for scale in [YScale::Linear, YScale::Log] {
            let svg = chart(scale).svg(600, 300).unwrap();
            let left = f64::from(600 - LEGEND_WIDTH);
            let (legend, plot): (Vec<_>, Vec<_>) =
                polyline_xs(&svg).into_iter().partition(|xs| xs.iter().all(|&x| x > left));
            assert_eq!(legend.len(), 2, "{scale:?}: one sample per series");
            assert!(plot.iter().flatten().all(|&x| x <= left), "{scale:?}");
        }
    }

    fn points(line: &str) -> usize {
        line.split("points=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .map_or(0, |p| p.split_whitespace().count())
    }
}
