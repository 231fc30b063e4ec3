//! Drawing: a chart described as data (series, axes, legend) and rendered the same
//! way to SVG and PNG with plotters. PNG text needs a font; a bundled DejaVu Sans is
//! registered with plotters' `ab_glyph` renderer, so no system font is needed.

use plotters::coord::combinators::{BindKeyPoints, LogCoord};
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const FONT_FAMILY: &str = "joulebench-sans";
static FONT_TTF: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

pub const WIDTH_PX: u32 = 1200;
pub const HEIGHT_PX: u32 = 720;
const LEGEND_WIDTH_PX: u32 = 250;
const TITLE_HEIGHT_PX: u32 = 84;

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("the bundled plot font could not be loaded")]
    Font,
    #[error("cannot create plot directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot draw {path}: {message}")]
    Draw { path: PathBuf, message: String },
}

fn font() -> Result<(), PlotError> {
    if register_fonts() {
        Ok(())
    } else {
        Err(PlotError::Font)
    }
}

/// Register the bundled font with plotters, under joulebench's own family and the
/// generic families other plotters users in the same program ask for (criterion's
/// HTML-report charts ask for "sans-serif"): with plotters' `ab_glyph` renderer,
/// which needs no system font, a family nobody registered fails to draw.
pub fn register_fonts() -> bool {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    *REGISTERED.get_or_init(|| {
        [FONT_FAMILY, "sans-serif", "serif", "monospace"]
            .iter()
            .all(|family| register_font(family, FontStyle::Normal, FONT_TTF).is_ok())
    })
}

fn text(size_px: u32) -> TextStyle<'static> {
    (FONT_FAMILY, size_px).into_font().color(&BLACK)
}

/// Where a chart's numbers come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataKind {
    Measured,
    /// All from the simulated device.
    Simulated,
    /// Measured and simulated devices side by side.
    Mixed,
}

impl DataKind {
    pub fn of(any_simulated: bool, any_measured: bool) -> DataKind {
        match (any_simulated, any_measured) {
            (true, true) => DataKind::Mixed,
            (true, false) => DataKind::Simulated,
            _ => DataKind::Measured,
        }
    }

    /// What the title starts with, in red.
    fn tag(self) -> Option<&'static str> {
        match self {
            DataKind::Measured => None,
            DataKind::Simulated => Some("SIMULATED DATA — "),
            DataKind::Mixed => Some("MIXED: SOME DEVICES SIMULATED — "),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Marker {
    None,
    Circle,
    Triangle,
    Square,
    Cross,
    /// A large hollow circle drawn around a point to single it out.
    Ring,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub points: Vec<(f64, f64)>,
    pub color: RGBColor,
    pub marker: Marker,
    /// Marker radius in pixels; a series drawn first with a larger marker stays
    /// visible as a rim when a later series lands on the same point.
    pub marker_px: i32,
    pub line: bool,
}

/// One line of the legend: what a colour or a marker means.
#[derive(Clone, Debug, PartialEq)]
pub struct LegendEntry {
    pub label: String,
    pub color: RGBColor,
    pub marker: Marker,
    pub line: bool,
}

/// A scatter or line chart.
#[derive(Clone, Debug, PartialEq)]
pub struct XyChart {
    /// First title line, e.g. "Energy vs time per FLOP".
    pub title: String,
    /// Second title line: device and workload.
    pub subtitle: String,
    /// Simulated or mixed data is named in red in front of the title.
    pub data: DataKind,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    pub legend: Vec<LegendEntry>,
    /// Categorical x: the label of x = 0, 1, 2…; None for a numeric axis.
    pub x_categories: Option<Vec<String>>,
    /// A line under the chart saying how each point was chosen.
    pub footnote: Option<String>,
}

/// Grouped bars: one group per category, one bar per series in each group.
#[derive(Clone, Debug, PartialEq)]
pub struct BarChart {
    pub title: String,
    pub subtitle: String,
    pub data: DataKind,
    pub y_label: String,
    pub categories: Vec<String>,
    /// (legend label, colour, one value per category).
    pub groups: Vec<(String, RGBColor, Vec<Option<f64>>)>,
    pub footnote: Option<String>,
}

/// The two files of one chart.
#[derive(Clone, Debug, PartialEq)]
pub struct PlotFiles {
    pub title: String,
    pub svg: PathBuf,
    pub png: PathBuf,
}

pub enum Chart {
    Xy(XyChart),
    Bars(BarChart),
}

impl Chart {
    fn title(&self) -> String {
        let (t, s, data) = match self {
            Chart::Xy(c) => (&c.title, &c.subtitle, c.data),
            Chart::Bars(c) => (&c.title, &c.subtitle, c.data),
        };
        format!("{}{t}: {s}", data.tag().unwrap_or(""))
    }
}

/// Write `dir/stem.svg` and `dir/stem.png`.
pub fn render(chart: &Chart, dir: &Path, stem: &str) -> Result<PlotFiles, PlotError> {
    font()?;
    std::fs::create_dir_all(dir).map_err(|source| PlotError::Dir {
        path: dir.into(),
        source,
    })?;
    let stem = short_file_stem(stem);
    let svg = dir.join(format!("{stem}.svg"));
    let png = dir.join(format!("{stem}.png"));
    let draw_err = |path: &Path, message: String| PlotError::Draw {
        path: path.into(),
        message,
    };
    {
        let root = SVGBackend::new(&svg, (WIDTH_PX, HEIGHT_PX)).into_drawing_area();
        draw(chart, &root).map_err(|m| draw_err(&svg, m))?;
        root.present().map_err(|e| draw_err(&svg, e.to_string()))?;
    }
    {
        let root = BitMapBackend::new(&png, (WIDTH_PX, HEIGHT_PX)).into_drawing_area();
        draw(chart, &root).map_err(|m| draw_err(&png, m))?;
        root.present().map_err(|e| draw_err(&png, e.to_string()))?;
    }
    Ok(PlotFiles {
        title: chart.title(),
        svg,
        png,
    })
}

type Area<DB> = DrawingArea<DB, Shift>;

fn e2s<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

fn draw<DB: DrawingBackend>(chart: &Chart, root: &Area<DB>) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(e2s)?;
    let (title, subtitle, data, footnote) = match chart {
        Chart::Xy(c) => (&c.title, &c.subtitle, c.data, &c.footnote),
        Chart::Bars(c) => (&c.title, &c.subtitle, c.data, &c.footnote),
    };
    let (head, body) = root.split_vertically(TITLE_HEIGHT_PX);
    draw_title(&head, title, subtitle, data)?;
    let body = match footnote {
        Some(note) => {
            let (body, foot) = body.split_vertically(HEIGHT_PX - TITLE_HEIGHT_PX - 34);
            foot.draw_text(note, &text(16).color(&RGBColor(70, 70, 70)), (20, 6))
                .map_err(e2s)?;
            body
        }
        None => body,
    };
    match chart {
        Chart::Xy(c) => draw_xy(c, &body),
        Chart::Bars(c) => draw_bars(c, &body),
    }
}

fn draw_title<DB: DrawingBackend>(
    head: &Area<DB>,
    title: &str,
    subtitle: &str,
    data: DataKind,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let mut x = 20;
    if let Some(tag) = data.tag() {
        let style = text(26).color(&RGBColor(190, 0, 0));
        head.draw_text(tag, &style, (x, 12)).map_err(e2s)?;
        x += head.estimate_text_size(tag, &style).map_err(e2s)?.0 as i32;
    }
    head.draw_text(title, &text(26), (x, 12)).map_err(e2s)?;
    head.draw_text(subtitle, &text(20).color(&RGBColor(50, 50, 50)), (20, 50))
        .map_err(e2s)?;
    Ok(())
}

fn padded(lo: f64, hi: f64, log: bool) -> (f64, f64) {
    if log {
        let (l, h) = (lo.log10(), hi.log10());
        let pad = ((h - l) * 0.08).max(0.02);
        (10f64.powf(l - pad), 10f64.powf(h + pad))
    } else {
        let pad = ((hi - lo) * 0.08).max(hi.abs() * 0.02).max(1e-12);
        (lo - pad, hi + pad)
    }
}

/// A log axis where values span more than a decade and are all positive.
fn wants_log(lo: f64, hi: f64) -> bool {
    lo > 0.0 && hi / lo > 10.0
}

fn bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .filter(|v| v.is_finite())
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
}

fn draw_xy<DB: DrawingBackend>(c: &XyChart, body: &Area<DB>) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let (plot, legend) = body.split_horizontally(WIDTH_PX - LEGEND_WIDTH_PX);
    draw_legend(&legend, &c.legend)?;
    let points = || c.series.iter().flat_map(|s| s.points.iter());
    let (Some((x0, x1)), Some((y0, y1))) =
        (bounds(points().map(|p| p.0)), bounds(points().map(|p| p.1)))
    else {
        return plot.draw_text("no data", &text(20), (40, 40)).map_err(e2s);
    };
    let x_log = c.x_categories.is_none() && wants_log(x0, x1);
    let y_log = wants_log(y0, y1);
    let (x0, x1) = match &c.x_categories {
        Some(cats) => (-0.5, cats.len() as f64 - 0.5),
        None => padded(x0, x1, x_log),
    };
    let (y0, y1) = padded(y0, y1, y_log);
    // Four coordinate types, one drawing routine.
    let lin = |a: f64, b: f64| RangedCoordf64::from(a..b);
    let log = |a: f64, b: f64| {
        let (bold, light) = log_grid(a, b);
        LogCoord::<f64>::from((a..b).log_scale())
            .with_key_points(bold)
            .with_light_points(light)
    };
    let logs = (x_log, y_log);
    match logs {
        (false, false) => xy_on(c, &plot, lin(x0, x1), lin(y0, y1), logs),
        (true, false) => xy_on(c, &plot, log(x0, x1), lin(y0, y1), logs),
        (false, true) => xy_on(c, &plot, lin(x0, x1), log(y0, y1), logs),
        (true, true) => xy_on(c, &plot, log(x0, x1), log(y0, y1), logs),
    }
}

/// A tick label: three significant digits at most, no trailing zeros ("0.8", "1250").
fn tick(v: f64) -> String {
    let s = crate::format::sig(v, 3);
    if s.contains('.') && !s.contains('e') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Grid of a log axis: 1, 2, 5 × 10ⁿ bold and labelled, the other integers × 10ⁿ
/// light. plotters' own key points start at the first power of ten inside the
/// range, which leaves an axis from 0.3 to 0.9 without a single label.
fn log_grid(lo: f64, hi: f64) -> (Vec<f64>, Vec<f64>) {
    let (mut bold, mut light) = (Vec::new(), Vec::new());
    if !(lo > 0.0 && hi > lo) {
        return (bold, light);
    }
    for exp in lo.log10().floor() as i32..=hi.log10().ceil() as i32 {
        for m in 1..10 {
            let v = m as f64 * 10f64.powi(exp);
            if v < lo || v > hi {
                continue;
            }
            if matches!(m, 1 | 2 | 5) {
                bold.push(v);
            } else {
                light.push(v);
            }
        }
    }
    (bold, light)
}

/// On a log axis only 1, 2 and 5 × 10ⁿ are labelled: every key point labelled
/// crowds the axis into unreadable overlaps.
fn log_tick(v: f64) -> String {
    if !(v.is_finite() && v > 0.0) {
        return String::new();
    }
    let mantissa = v / 10f64.powf(v.log10().floor());
    if [1.0, 2.0, 5.0, 10.0]
        .iter()
        .any(|m| (mantissa - m).abs() < 1e-6 * m)
    {
        tick(v)
    } else {
        String::new()
    }
}

fn xy_on<DB, X, Y>(
    c: &XyChart,
    area: &Area<DB>,
    x: X,
    y: Y,
    (x_log, y_log): (bool, bool),
) -> Result<(), String>
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .margin(16)
        .x_label_area_size(64)
        .y_label_area_size(96)
        .build_cartesian_2d(x, y)
        .map_err(e2s)?;
    let categories = c.x_categories.clone().unwrap_or_default();
    let x_fmt = |v: &f64| -> String {
        if c.x_categories.is_none() {
            return if x_log { log_tick(*v) } else { tick(*v) };
        }
        let i = v.round();
        if (v - i).abs() > 1e-6 || i < 0.0 {
            return String::new();
        }
        categories.get(i as usize).cloned().unwrap_or_default()
    };
    let y_fmt = |v: &f64| if y_log { log_tick(*v) } else { tick(*v) };
    let light = if x_log || y_log {
        RGBColor(255, 255, 255)
    } else {
        RGBColor(235, 235, 235)
    };
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(c.x_label.as_str())
        .y_desc(c.y_label.as_str())
        .axis_desc_style(text(20))
        .label_style(text(17))
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .light_line_style(light)
        .max_light_lines(1)
        .bold_line_style(RGBColor(215, 215, 215));
    if let Some(cats) = &c.x_categories {
        mesh.x_labels(cats.len().max(2) * 2 + 1);
    }
    mesh.draw().map_err(e2s)?;

    for s in &c.series {
        if s.line && s.points.len() > 1 {
            chart
                .draw_series(LineSeries::new(
                    s.points.iter().copied(),
                    s.color.stroke_width(2),
                ))
                .map_err(e2s)?;
        }
        draw_markers(&mut chart, &s.points, s.marker, s.marker_px, s.color)?;
    }
    Ok(())
}

fn draw_markers<DB, X, Y>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<X, Y>>,
    points: &[(f64, f64)],
    marker: Marker,
    r: i32,
    color: RGBColor,
) -> Result<(), String>
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let pts = points.iter().copied();
    match marker {
        Marker::None => Ok(()),
        Marker::Circle => chart
            .draw_series(pts.map(|p| Circle::new(p, r, color.filled())))
            .map(|_| ()),
        Marker::Triangle => chart
            .draw_series(pts.map(|p| TriangleMarker::new(p, r + 2, color.filled())))
            .map(|_| ()),
        Marker::Square => chart
            .draw_series(pts.map(|p| {
                EmptyElement::at(p)
                    + Rectangle::new([(1 - r, 1 - r), (r - 1, r - 1)], color.filled())
            }))
            .map(|_| ()),
        Marker::Cross => chart
            .draw_series(pts.map(|p| Cross::new(p, r, color.stroke_width(3))))
            .map(|_| ()),
        Marker::Ring => chart
            .draw_series(pts.map(|p| Circle::new(p, r.max(13), color.stroke_width(3))))
            .map(|_| ()),
    }
    .map_err(e2s)
}

/// The legend in its own column right of the chart, so it never hides a point.
fn draw_legend<DB: DrawingBackend>(area: &Area<DB>, entries: &[LegendEntry]) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let row_px = 28;
    for (i, e) in entries.iter().enumerate() {
        let y = 30 + i as i32 * row_px;
        let c = e.color;
        if e.line {
            area.draw(&PathElement::new(vec![(8, y), (40, y)], c.stroke_width(2)))
                .map_err(e2s)?;
        }
        let at = (24, y);
        match e.marker {
            Marker::None => Ok(()),
            Marker::Circle => area.draw(&Circle::new(at, 6, c.filled())),
            Marker::Triangle => area.draw(&TriangleMarker::new(at, 8, c.filled())),
            Marker::Square => area.draw(&Rectangle::new(
                [(at.0 - 5, y - 5), (at.0 + 5, y + 5)],
                c.filled(),
            )),
            Marker::Cross => area.draw(&Cross::new(at, 6, c.stroke_width(3))),
            Marker::Ring => area.draw(&Circle::new(at, 11, c.stroke_width(3))),
        }
        .map_err(e2s)?;
        area.draw_text(&e.label, &text(17), (50, y - 10))
            .map_err(e2s)?;
    }
    Ok(())
}

fn draw_bars<DB: DrawingBackend>(c: &BarChart, body: &Area<DB>) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let (plot, legend) = body.split_horizontally(WIDTH_PX - LEGEND_WIDTH_PX);
    let entries: Vec<LegendEntry> = c
        .groups
        .iter()
        .map(|(label, color, _)| LegendEntry {
            label: label.clone(),
            color: *color,
            marker: Marker::Square,
            line: false,
        })
        .collect();
    draw_legend(&legend, &entries)?;
    let y_max = bounds(c.groups.iter().flat_map(|g| g.2.iter().flatten().copied()))
        .map(|b| b.1)
        .unwrap_or(1.0);
    let n = c.categories.len().max(1);
    let mut chart = ChartBuilder::on(&plot)
        .margin(16)
        .x_label_area_size(64)
        .y_label_area_size(96)
        .build_cartesian_2d(-0.5..n as f64 - 0.5, 0.0..y_max * 1.15)
        .map_err(e2s)?;
    let x_fmt = |v: &f64| -> String {
        let i = v.round();
        if (v - i).abs() > 1e-6 || i < 0.0 {
            return String::new();
        }
        c.categories.get(i as usize).cloned().unwrap_or_default()
    };
    let y_fmt = |v: &f64| tick(*v);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n * 2 + 1)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .y_desc(c.y_label.as_str())
        .axis_desc_style(text(20))
        .label_style(text(17))
        .light_line_style(RGBColor(238, 238, 238))
        .max_light_lines(1)
        .bold_line_style(RGBColor(205, 205, 205))
        .draw()
        .map_err(e2s)?;
    let k = c.groups.len().max(1) as f64;
    let width = 0.8 / k;
    let label_values = c.categories.len() * c.groups.len() <= 24;
    for (g, (_, color, values)) in c.groups.iter().enumerate() {
        for (i, v) in values.iter().enumerate() {
            let left = i as f64 - 0.4 + g as f64 * width;
            let Some(v) = *v else {
                // an empty slot would read as zero energy
                let style = text(15).pos(Pos::new(HPos::Center, VPos::Bottom));
                chart
                    .draw_series(std::iter::once(Text::new(
                        "not measured",
                        (left + width * 0.46, 0.0),
                        style,
                    )))
                    .map_err(e2s)?;
                continue;
            };
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(left, 0.0), (left + width * 0.92, v)],
                    color.filled(),
                )))
                .map_err(e2s)?;
            if label_values {
                let style = text(15).pos(Pos::new(HPos::Center, VPos::Bottom));
                chart
                    .draw_series(std::iter::once(Text::new(
                        tick(v),
                        (left + width * 0.46, v),
                        style,
                    )))
                    .map_err(e2s)?;
            }
        }
    }
    Ok(())
}

/// Colours that stay apart on screen and in print (Tableau 10).
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// A file-name-safe form of a label: "sim-h100 (simulated)" → "sim-h100-simulated".
pub fn slug(s: &str) -> String {
    let mut out = String::new();
    for ch in s.chars() {
        if ch.is_ascii_alphanumeric() {
            out.push(ch.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

/// The longest file stem joulebench makes from names (a file system allows 255
/// bytes; a suffix and an extension still have to fit).
pub const MAX_FILE_STEM: usize = 96;

/// `stem`, or for a longer one its first part and a hash of the whole, so names
/// that differ only at their end still get different files.
pub fn short_file_stem(stem: &str) -> String {
    if stem.len() <= MAX_FILE_STEM {
        return stem.to_string();
    }
    let hash = stem.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let mut cut = MAX_FILE_STEM - 17;
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}-{hash:016x}", stem[..cut].trim_end_matches('-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_are_shortened_with_a_hash_that_keeps_them_apart() {
        let a = format!("energy-time_{}", "x".repeat(400));
        let b = format!("{a}y");
        let (sa, sb) = (short_file_stem(&a), short_file_stem(&b));
        assert!(
            sa.len() <= MAX_FILE_STEM && sb.len() <= MAX_FILE_STEM,
            "{sa}"
        );
        assert!(sa.starts_with("energy-time_xxx"));
        assert_ne!(sa, sb);
        assert_eq!(short_file_stem("short"), "short");
    }

    #[test]
    fn slugs_are_file_names() {
        assert_eq!(slug("sim-h100 (simulated)"), "sim-h100-simulated");
        assert_eq!(
            slug("linear mlp-up 4096→14336 seq 512"),
            "linear-mlp-up-4096-14336-seq-512"
        );
    }

    #[test]
    fn renders_svg_and_png_with_text() {
        let dir = tempfile::tempdir().unwrap();
        let chart = Chart::Xy(XyChart {
            title: "Energy vs power cap".into(),
            subtitle: "GPU A · matmul".into(),
            data: DataKind::Simulated,
            x_label: "power cap (W)".into(),
            y_label: "energy (pJ/FLOP)".into(),
            series: vec![Series {
                points: vec![(300.0, 0.8), (400.0, 0.9), (500.0, 1.0)],
                color: PALETTE[0],
                marker: Marker::Circle,
                marker_px: 6,
                line: true,
            }],
            legend: vec![LegendEntry {
                label: "bf16".into(),
                color: PALETTE[0],
                marker: Marker::Circle,
                line: true,
            }],
            x_categories: None,
            footnote: Some("each point: the best kernel".into()),
        });
        let files = render(&chart, dir.path(), "t").unwrap();
        let svg = std::fs::read_to_string(&files.svg).unwrap();
        assert!(
            svg.contains("SIMULATED DATA") && svg.contains("power cap (W)"),
            "{svg}"
        );
        // a PNG whose title row holds dark (text) pixels: the font rendered
        let png = std::fs::read(&files.png).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        let img = image_rows(&files.png);
        let dark_in_title = img
            .iter()
            .take(TITLE_HEIGHT_PX as usize)
            .flatten()
            .filter(|&&p| p < 100)
            .count();
        assert!(
            dark_in_title > 500,
            "title row has {dark_in_title} dark pixels"
        );
    }

    /// Grey levels of a PNG, row by row, through a bitmap backend read back.
    fn image_rows(path: &Path) -> Vec<Vec<u8>> {
        let data = std::fs::read(path).unwrap();
        let img = plotters_bitmap_decode(&data);
        img.chunks(WIDTH_PX as usize).map(|r| r.to_vec()).collect()
    }

    fn plotters_bitmap_decode(png: &[u8]) -> Vec<u8> {
        let img = image::load_from_memory(png).unwrap().to_luma8();
        img.into_raw()
    }
}
