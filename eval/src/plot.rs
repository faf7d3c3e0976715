//! SVG line charts for the evaluation's figures (plotters' SVG backend; text
//! is left to the viewer's fonts, so no font files are needed). The legend
//! sits in a panel right of the axes, so it never covers data; reference
//! values (the paper's) are marked points in black, with their own legend
//! entries.

use plotters::coord::Shift;
use plotters::prelude::*;
use std::error::Error;
use std::path::Path;

/// How a series is drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Look {
    /// A coloured line (with dots when it has few points).
    Line,
    /// Black marks of the given shape, unjoined: reference values.
    Marks(Mark),
    /// Black marks joined by a dashed line: a reference level.
    DashedMarks(Mark),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mark {
    Cross,
    Triangle,
    Square,
}

/// One named series.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub look: Look,
}

impl Series {
    pub fn line(name: impl Into<String>, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.into(),
            points,
            look: Look::Line,
        }
    }

    pub fn marks(name: impl Into<String>, points: Vec<(f64, f64)>, mark: Mark) -> Series {
        Series {
            name: name.into(),
            points,
            look: Look::Marks(mark),
        }
    }

    pub fn dashed(name: impl Into<String>, points: Vec<(f64, f64)>, mark: Mark) -> Series {
        Series {
            name: name.into(),
            points,
            look: Look::DashedMarks(mark),
        }
    }
}

/// Axes of a chart; `log_y` plots y on a log scale (values <= 0 are left out).
pub struct Chart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub log_y: bool,
}

/// An empirical CDF of `samples` as a series.
pub fn cdf(name: &str, samples: &[f64]) -> Series {
    let mut s: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
    s.sort_by(f64::total_cmp);
    let n = s.len().max(1) as f64;
    Series::line(
        name,
        s.iter()
            .enumerate()
            .map(|(i, &x)| (x, (i + 1) as f64 / n))
            .collect(),
    )
}

fn bounds(series: &[Series], log_y: bool) -> Option<(f64, f64, f64, f64)> {
    let pts = series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|p| p.0.is_finite() && p.1.is_finite() && (!log_y || p.1 > 0.0));
    let mut b: Option<(f64, f64, f64, f64)> = None;
    for &(x, y) in pts {
        b = Some(match b {
            None => (x, x, y, y),
            Some((x0, x1, y0, y1)) => (x0.min(x), x1.max(x), y0.min(y), y1.max(y)),
        });
    }
    let (x0, mut x1, mut y0, mut y1) = b?;
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if log_y {
        // Whole decades, so that every decade has its label, with room
        // below the lowest value and above the highest (a line on the frame
        // is hard to see); a hair beyond the decades, so that rounding in
        // plotters' tick placement keeps their labels.
        y0 = 10f64.powf((y0 / 1.3).log10().floor()) * 0.98;
        y1 = 10f64.powf((y1 * 1.2).log10().ceil()) * 1.02;
    } else {
        y0 = y0.min(0.0);
        y1 = if y1 <= y0 { y0 + 1.0 } else { y1 * 1.05 };
    }
    Some((x0, x1, y0, y1))
}

/// A tick label: whole numbers with thousands separators, fractions with
/// the digits they need (no "10.0" for 10).
fn tick(v: &f64) -> String {
    let v = *v;
    if v.abs() >= 1.0 && (v - v.round()).abs() < 1e-9 {
        let digits = format!("{:.0}", v.abs());
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if v < 0.0 {
            out.insert(0, '-');
        }
        out
    } else if v == 0.0 {
        "0".into()
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// The runs of `points` a line may join: on a log axis a value <= 0 cannot
/// be drawn, and the line breaks there rather than bridging the gap.
fn segments(points: &[(f64, f64)], log_y: bool) -> Vec<Vec<(f64, f64)>> {
    let mut out = vec![Vec::new()];
    for &p in points {
        if log_y && p.1 <= 0.0 {
            if out.last().is_some_and(|s| !s.is_empty()) {
                out.push(Vec::new());
            }
        } else if let Some(s) = out.last_mut() {
            s.push(p);
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

const PALETTE: [RGBColor; 9] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
];

/// Draws the marks of `$mark` at `$pts` (chart coordinates or pixels)
/// through `$draw`, which takes an iterator of elements.
macro_rules! marks {
    ($draw:expr, $mark:expr, $pts:expr) => {{
        let style = BLACK.stroke_width(2);
        let pts = $pts;
        match $mark {
            Mark::Cross => $draw(pts.map(|p| Cross::new(p, 6, style)).collect::<Vec<_>>()),
            Mark::Triangle => $draw(
                pts.map(|p| TriangleMarker::new(p, 7, style))
                    .collect::<Vec<_>>(),
            ),
            Mark::Square => $draw(
                pts.map(|p| EmptyElement::at(p) + Rectangle::new([(-5, -5), (5, 5)], style))
                    .collect::<Vec<_>>(),
            ),
        }
    }};
}

fn draw_all<DB: DrawingBackend, E>(
    area: &DrawingArea<DB, Shift>,
    elements: Vec<E>,
) -> Result<(), Box<dyn Error>>
where
    for<'b> &'b E: plotters::element::PointCollection<'b, (i32, i32)>,
    E: plotters::element::Drawable<DB>,
    DB::ErrorType: 'static,
{
    for e in &elements {
        area.draw(e)?;
    }
    Ok(())
}

/// The legend panel: one entry a line, the sample left of the name.
fn legend(area: &DrawingArea<SVGBackend, Shift>, series: &[Series]) -> Result<(), Box<dyn Error>> {
    let font = ("sans-serif", 15).into_font().color(&BLACK);
    let mut line_no = 0;
    for (i, s) in series.iter().enumerate() {
        let y = 30 + 26 * line_no as i32;
        match s.look {
            Look::Line => {
                let c = PALETTE[i % PALETTE.len()];
                area.draw(&PathElement::new(vec![(8, y), (38, y)], c.stroke_width(2)))?;
                area.draw(&Circle::new((23, y), 3, c.filled()))?;
            }
            Look::Marks(m) => marks!(|v: Vec<_>| draw_all(area, v), m, [(23, y)].into_iter())?,
            Look::DashedMarks(m) => {
                for x in [8, 28] {
                    area.draw(&PathElement::new(
                        vec![(x, y), (x + 8, y)],
                        BLACK.stroke_width(1),
                    ))?;
                }
                marks!(|v: Vec<_>| draw_all(area, v), m, [(23, y)].into_iter())?;
            }
        }
        // Long names wrap at a word, in the panel's width.
        let mut rows: Vec<String> = vec![String::new()];
        for word in s.name.split(' ') {
            let last = rows.last_mut().expect("one row");
            if !last.is_empty() && last.chars().count() + word.chars().count() > 36 {
                rows.push(word.to_string());
            } else {
                if !last.is_empty() {
                    last.push(' ');
                }
                last.push_str(word);
            }
        }
        for (r, text) in rows.iter().enumerate() {
            let ty = y - 8 + 18 * r as i32;
            area.draw(&Text::new(text.clone(), (46, ty), font.clone()))?;
        }
        line_no += rows.len();
    }
    Ok(())
}

/// Draws `series` into an SVG at `path`.
pub fn line_chart(path: &Path, chart: &Chart, series: &[Series]) -> Result<(), Box<dyn Error>> {
    let Some((x0, x1, y0, y1)) = bounds(series, chart.log_y) else {
        return Err(format!("{}: no data to plot", path.display()).into());
    };
    let root = SVGBackend::new(path, (1120, 580)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(chart.title, ("sans-serif", 22))?;
    let (axes, panel) = root.split_horizontally(780);
    let mut builder = ChartBuilder::on(&axes);
    builder
        .margin(14)
        .x_label_area_size(50)
        .y_label_area_size(80);
    macro_rules! draw {
        ($ctx:expr) => {{
            let mut ctx = $ctx;
            ctx.configure_mesh()
                .x_desc(chart.x_label)
                .y_desc(chart.y_label)
                .axis_desc_style(("sans-serif", 16))
                .label_style(("sans-serif", 13))
                .x_label_formatter(&tick)
                .y_label_formatter(&tick)
                .draw()?;
            for (i, s) in series.iter().enumerate() {
                let pts: Vec<(f64, f64)> = s
                    .points
                    .iter()
                    .copied()
                    .filter(|p| !chart.log_y || p.1 > 0.0)
                    .collect();
                match s.look {
                    Look::Line => {
                        let color = PALETTE[i % PALETTE.len()];
                        for seg in segments(&s.points, chart.log_y) {
                            if seg.len() == 1 {
                                // A point alone between gaps: a dot, or nothing shows.
                                ctx.draw_series(
                                    seg.iter().map(|&p| Circle::new(p, 2, color.filled())),
                                )?;
                            }
                            ctx.draw_series(LineSeries::new(seg, color.stroke_width(2)))?;
                        }
                        if pts.len() <= 30 {
                            ctx.draw_series(
                                pts.iter().map(|&p| Circle::new(p, 3, color.filled())),
                            )?;
                        }
                    }
                    Look::Marks(m) => {
                        marks!(|v| ctx.draw_series(v).map(|_| ()), m, pts.iter().copied())?;
                    }
                    Look::DashedMarks(m) => {
                        ctx.draw_series(DashedLineSeries::new(
                            pts.clone(),
                            6,
                            5,
                            BLACK.stroke_width(1),
                        ))?;
                        marks!(|v| ctx.draw_series(v).map(|_| ()), m, pts.iter().copied())?;
                    }
                }
            }
        }};
    }
    if chart.log_y {
        draw!(builder.build_cartesian_2d(x0..x1, (y0..y1).log_scale())?);
    } else {
        draw!(builder.build_cartesian_2d(x0..x1, y0..y1)?);
    }
    legend(&panel, series)?;
    root.present()?;
    Ok(())
}

/// One metric of a ratio chart: PIAS / baseline, and its goal if any
/// (`at_least`: the ratio must reach it; else stay under it).
pub struct Ratio {
    pub name: String,
    pub ratio: f64,
    pub goal: Option<(f64, bool)>,
}

/// A dot per metric on a log axis of the ratio (green: goal met, red:
/// missed, grey: no goal), the goal as a black triangle on the same row,
/// parity (1) as a dashed line.
pub fn ratio_chart(path: &Path, title: &str, rows: &[Ratio]) -> Result<(), Box<dyn Error>> {
    let finite: Vec<f64> = rows
        .iter()
        .flat_map(|r| [Some(r.ratio), r.goal.map(|g| g.0)])
        .flatten()
        .filter(|v| v.is_finite() && *v > 0.0)
        .chain([1.0])
        .collect();
    if rows.is_empty() || finite.is_empty() {
        return Err(format!("{}: no ratio to plot", path.display()).into());
    }
    let lo = finite.iter().copied().fold(f64::INFINITY, f64::min) / 2.0;
    let hi = finite.iter().copied().fold(0.0, f64::max) * 2.0;
    let n = rows.len();
    let height = 120 + 26 * n as u32;
    let root = SVGBackend::new(path, (1120, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 20))?;
    let names: Vec<String> = rows.iter().map(|r| r.name.clone()).collect();
    let mut ctx = ChartBuilder::on(&root)
        .margin(14)
        .x_label_area_size(50)
        .y_label_area_size(420)
        .build_cartesian_2d((lo..hi).log_scale(), -0.5f64..(n as f64 - 0.5))?;
    let label = |y: &f64| {
        let i = y.round();
        if (y - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
            names[names.len() - 1 - i as usize].clone()
        } else {
            String::new()
        }
    };
    ctx.configure_mesh()
        .x_desc("PIAS / Linux (log scale; 1 = parity)")
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 13))
        .x_label_formatter(&tick)
        .y_labels(n)
        .y_label_formatter(&label)
        .disable_y_mesh()
        .draw()?;
    ctx.draw_series(DashedLineSeries::new(
        [(1.0, -0.5), (1.0, n as f64 - 0.5)],
        6,
        4,
        BLACK.mix(0.5).stroke_width(1),
    ))?;
    let y_of = |i: usize| (n - 1 - i) as f64;
    for (i, r) in rows.iter().enumerate() {
        let met = r
            .goal
            .map(|(g, at_least)| if at_least { r.ratio >= g } else { r.ratio <= g });
        let color = match met {
            Some(true) => RGBColor(0x2c, 0xa0, 0x2c),
            Some(false) => RGBColor(0xd6, 0x27, 0x28),
            None => RGBColor(0x90, 0x90, 0x90),
        };
        if r.ratio.is_finite() && r.ratio > 0.0 {
            ctx.draw_series([Circle::new((r.ratio, y_of(i)), 6, color.filled())])?;
        }
        if let Some((g, _)) = r.goal {
            ctx.draw_series([TriangleMarker::new((g, y_of(i)), 7, BLACK.filled())])?;
        }
    }
    // The key, under the title.
    let key = "dot: PIAS / Linux (green: goal met, red: missed, grey: no goal); triangle: the goal";
    root.draw(&Text::new(key, (440, 4), ("sans-serif", 13)))?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_read_as_numbers() {
        assert_eq!(tick(&10_000.0), "10,000");
        assert_eq!(tick(&10.0), "10");
        assert_eq!(tick(&0.5), "0.5");
        assert_eq!(tick(&0.125), "0.125");
        assert_eq!(tick(&0.0), "0");
    }

    #[test]
    fn a_log_line_breaks_at_zeros() {
        let pts = [(1.0, 2.0), (2.0, 0.0), (3.0, 0.0), (4.0, 5.0), (5.0, 6.0)];
        assert_eq!(
            segments(&pts, true),
            vec![vec![(1.0, 2.0)], vec![(4.0, 5.0), (5.0, 6.0)]]
        );
        assert_eq!(segments(&pts, false), vec![pts.to_vec()]);
    }
}
