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
    Diamond,
    Plus,
    InvertedTriangle,
    /// A large hollow circle drawn around a point to single it out.
    Ring,
}

/// Shapes for series that must be told apart without colour (in print, or by a
/// reader who cannot tell two colours apart): each series gets a colour and a shape.
pub const SERIES_MARKERS: [Marker; 7] = [
    Marker::Circle,
    Marker::Triangle,
    Marker::Square,
    Marker::Diamond,
    Marker::Cross,
    Marker::InvertedTriangle,
    Marker::Plus,
];

/// The colour and shape of the `i`-th series: with 10 colours and 7 shapes, no two
/// of the first 70 series look alike.
pub fn series_style(i: usize) -> (RGBColor, Marker) {
    (
        PALETTE[i % PALETTE.len()],
        SERIES_MARKERS[i % SERIES_MARKERS.len()],
    )
}

/// The radius every data marker is drawn at: a size never encodes anything.
pub const MARKER_PX: i32 = 6;

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

/// Text written beside a data point, saying what setting it is ("60%", "1260 MHz").
#[derive(Clone, Debug, PartialEq)]
pub struct PointLabel {
    pub at: (f64, f64),
    pub text: String,
}

/// One panel of a [`PanelChart`]: its own y axis, series and point labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Panel {
    /// Written above the panel ("bf16", "energy").
    pub heading: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Drawn in order where they do not cover another label: the most important first.
    pub labels: Vec<PointLabel>,
}

/// Panels side by side and stacked, sharing one x axis quantity and one legend:
/// small multiples (one panel per precision), or energy above throughput.
#[derive(Clone, Debug, PartialEq)]
pub struct PanelChart {
    pub title: String,
    pub subtitle: String,
    pub data: DataKind,
    pub x_label: String,
    /// Categorical x: the label of x = 0, 1, 2…; None for a numeric axis.
    pub x_categories: Option<Vec<String>>,
    pub panels: Vec<Panel>,
    /// Panels per row.
    pub columns: usize,
    /// The same y range in every panel, so panels compare by eye.
    pub shared_y: bool,
    /// The same x range in every panel (panels stacked over one axis); otherwise
    /// each panel spans its own points.
    pub shared_x: bool,
    pub legend: Vec<LegendEntry>,
    /// Lines under the chart: how each point was chosen, what is left out.
    pub footnotes: Vec<String>,
}

impl From<&XyChart> for PanelChart {
    fn from(c: &XyChart) -> PanelChart {
        PanelChart {
            title: c.title.clone(),
            subtitle: c.subtitle.clone(),
            data: c.data,
            x_label: c.x_label.clone(),
            x_categories: c.x_categories.clone(),
            panels: vec![Panel {
                heading: String::new(),
                y_label: c.y_label.clone(),
                series: c.series.clone(),
                labels: Vec::new(),
            }],
            columns: 1,
            shared_y: false,
            shared_x: true,
            legend: c.legend.clone(),
            footnotes: c.footnote.iter().cloned().collect(),
        }
    }
}

/// One bar: a category's value (`None`: not measured) and text above it.
#[derive(Clone, Debug, PartialEq)]
pub struct Bar {
    pub category: String,
    pub value: Option<f64>,
    pub color: RGBColor,
    /// A second line above the value ("390 TFLOP/s").
    pub note: Option<String>,
}

/// One panel of bars with its own y axis.
#[derive(Clone, Debug, PartialEq)]
pub struct BarPanel {
    pub heading: String,
    pub bars: Vec<Bar>,
}

/// Bars in panels: one panel per precision, one bar per device, each panel on its
/// own scale so a slow precision does not squash the others.
#[derive(Clone, Debug, PartialEq)]
pub struct BarChart {
    pub title: String,
    pub subtitle: String,
    pub data: DataKind,
    pub y_label: String,
    pub panels: Vec<BarPanel>,
    pub columns: usize,
    pub legend: Vec<LegendEntry>,
    pub footnotes: Vec<String>,
}

/// What a chart says where it has no number: the same words in every plot.
pub const NOT_MEASURED: &str = "not measured";

/// The two files of one chart.
#[derive(Clone, Debug, PartialEq)]
pub struct PlotFiles {
    pub title: String,
    pub svg: PathBuf,
    pub png: PathBuf,
}

pub enum Chart {
    Xy(XyChart),
    Panels(PanelChart),
    Bars(BarChart),
}

/// Footnote lines wrapped to the width of the image.
fn wrap(lines: &[String]) -> Vec<String> {
    const MAX_CHARS: usize = 125;
    let mut out = Vec::new();
    for line in lines {
        let mut current = String::new();
        for word in line.split_whitespace() {
            if !current.is_empty() && current.chars().count() + 1 + word.chars().count() > MAX_CHARS
            {
                out.push(std::mem::take(&mut current));
            }
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(word);
        }
        if !current.is_empty() {
            out.push(current);
        }
    }
    out
}

const FOOTNOTE_LINE_PX: u32 = 22;

impl Chart {
    fn head(&self) -> (&str, &str, DataKind) {
        match self {
            Chart::Xy(c) => (&c.title, &c.subtitle, c.data),
            Chart::Panels(c) => (&c.title, &c.subtitle, c.data),
            Chart::Bars(c) => (&c.title, &c.subtitle, c.data),
        }
    }

    fn title(&self) -> String {
        let (t, s, data) = self.head();
        format!("{}{t}: {s}", data.tag().unwrap_or(""))
    }

    fn footnotes(&self) -> Vec<String> {
        let lines: Vec<String> = match self {
            Chart::Xy(c) => c.footnote.iter().cloned().collect(),
            Chart::Panels(c) => c.footnotes.clone(),
            Chart::Bars(c) => c.footnotes.clone(),
        };
        wrap(&lines)
    }

    /// Point labels may be left out where crowded: a line is kept free to say so.
    fn has_labels(&self) -> bool {
        matches!(self, Chart::Panels(c) if c.panels.iter().any(|p| !p.labels.is_empty()))
    }

    /// Rows of panels.
    fn rows(&self) -> usize {
        let (n, cols) = match self {
            Chart::Xy(_) => (1, 1),
            Chart::Panels(c) => (c.panels.len(), c.columns),
            Chart::Bars(c) => (c.panels.len(), c.columns),
        };
        n.max(1).div_ceil(cols.max(1))
    }

    /// The image height: one tall row, or rows of panels, and the footnotes.
    fn height_px(&self) -> u32 {
        let rows = self.rows() as u32;
        let body = if rows == 1 {
            HEIGHT_PX - TITLE_HEIGHT_PX - 34
        } else {
            rows * PANEL_ROW_PX
        };
        let lines = self.footnotes().len() + usize::from(self.has_labels());
        TITLE_HEIGHT_PX + body + 14 + FOOTNOTE_LINE_PX * lines as u32
    }
}

/// The height of a row of panels where there are several rows.
const PANEL_ROW_PX: u32 = 330;

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
    let size = (WIDTH_PX, chart.height_px());
    {
        let root = SVGBackend::new(&svg, size).into_drawing_area();
        draw(chart, &root).map_err(|m| draw_err(&svg, m))?;
        root.present().map_err(|e| draw_err(&svg, e.to_string()))?;
    }
    {
        let root = BitMapBackend::new(&png, size).into_drawing_area();
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
    let (title, subtitle, data) = chart.head();
    let (head, body) = root.split_vertically(TITLE_HEIGHT_PX);
    draw_title(&head, title, subtitle, data)?;
    let mut notes = chart.footnotes();
    let foot_px = 14 + FOOTNOTE_LINE_PX * (notes.len() + usize::from(chart.has_labels())) as u32;
    let (_, h) = body.dim_in_pixel();
    let (body, foot) = body.split_vertically(h.saturating_sub(foot_px));
    let left_out = match chart {
        Chart::Xy(c) => draw_panels(&PanelChart::from(c), &body)?,
        Chart::Panels(c) => draw_panels(c, &body)?,
        Chart::Bars(c) => {
            draw_bars(c, &body)?;
            0
        }
    };
    if left_out > 0 {
        notes.push(format!(
            "{left_out} point label(s) left out where they would cover another."
        ));
    }
    for (i, note) in notes.iter().enumerate() {
        foot.draw_text(
            note,
            &text(16).color(&RGBColor(70, 70, 70)),
            (20, 4 + i as i32 * FOOTNOTE_LINE_PX as i32),
        )
        .map_err(e2s)?;
    }
    Ok(())
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

/// An axis: its range and whether it is logarithmic.
#[derive(Clone, Copy)]
struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
}

fn axis_of(values: impl Iterator<Item = f64>, allow_log: bool) -> Option<Axis> {
    let (lo, hi) = bounds(values)?;
    let log = allow_log && wants_log(lo, hi);
    let (lo, hi) = padded(lo, hi, log);
    Some(Axis { lo, hi, log })
}

fn draw_panels<DB: DrawingBackend>(c: &PanelChart, body: &Area<DB>) -> Result<usize, String>
where
    DB::ErrorType: 'static,
{
    let (plots, legend) = body.split_horizontally(WIDTH_PX - LEGEND_WIDTH_PX);
    draw_legend(&legend, &c.legend)?;
    let all_points = || {
        c.panels
            .iter()
            .flat_map(|p| p.series.iter().flat_map(|s| s.points.iter()))
    };
    let x_of = |points: &mut dyn Iterator<Item = f64>| match &c.x_categories {
        Some(cats) => Some(Axis {
            lo: -0.5,
            hi: cats.len() as f64 - 0.5,
            log: false,
        }),
        None => axis_of(points, true),
    };
    let shared_x = if c.shared_x {
        x_of(&mut all_points().map(|p| p.0))
    } else {
        None
    };
    let shared_y = if c.shared_y {
        axis_of(all_points().map(|p| p.1), true)
    } else {
        None
    };
    let columns = c.columns.max(1);
    let rows = c.panels.len().max(1).div_ceil(columns);
    let areas = plots.split_evenly((rows, columns));
    let mut left_out = 0;
    for (panel, area) in c.panels.iter().zip(&areas) {
        let own = || panel.series.iter().flat_map(|s| s.points.iter());
        let x = shared_x.or_else(|| x_of(&mut own().map(|p| p.0)));
        let y = shared_y.or_else(|| axis_of(own().map(|p| p.1), true));
        let (Some(x), Some(y)) = (x, y) else {
            area.draw_text(
                &format!("{}: {NOT_MEASURED}", panel.heading),
                &text(18),
                (40, 40),
            )
            .map_err(e2s)?;
            continue;
        };
        left_out += draw_panel(c, panel, area, x, y)?;
    }
    Ok(left_out)
}

/// One panel on the coordinate types its axes need.
fn draw_panel<DB: DrawingBackend>(
    c: &PanelChart,
    panel: &Panel,
    area: &Area<DB>,
    x: Axis,
    y: Axis,
) -> Result<usize, String>
where
    DB::ErrorType: 'static,
{
    let lin = |a: Axis| RangedCoordf64::from(a.lo..a.hi);
    let log = |a: Axis| {
        let (bold, light) = log_grid(a.lo, a.hi);
        LogCoord::<f64>::from((a.lo..a.hi).log_scale())
            .with_key_points(bold)
            .with_light_points(light)
    };
    match (x.log, y.log) {
        (false, false) => panel_on(c, panel, area, lin(x), lin(y), (false, false)),
        (true, false) => panel_on(c, panel, area, log(x), lin(y), (true, false)),
        (false, true) => panel_on(c, panel, area, lin(x), log(y), (false, true)),
        (true, true) => panel_on(c, panel, area, log(x), log(y), (true, true)),
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

/// A label's box in pixels: left, top, right, bottom.
type PixelBox = (i32, i32, i32, i32);

fn overlaps(a: PixelBox, b: PixelBox) -> bool {
    a.0 < b.2 && b.0 < a.2 && a.1 < b.3 && b.1 < a.3
}

fn panel_on<DB, X, Y>(
    c: &PanelChart,
    panel: &Panel,
    area: &Area<DB>,
    x: X,
    y: Y,
    (x_log, y_log): (bool, bool),
) -> Result<usize, String>
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let small = c.panels.len() > 1;
    let mut builder = ChartBuilder::on(area);
    builder
        .margin(if small { 10 } else { 16 })
        .x_label_area_size(if small { 48 } else { 64 })
        .y_label_area_size(if small { 80 } else { 96 });
    if !panel.heading.is_empty() {
        builder.caption(&panel.heading, text(19));
    }
    let mut chart = builder.build_cartesian_2d(x, y).map_err(e2s)?;
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
        .y_desc(panel.y_label.as_str())
        .axis_desc_style(text(if small { 17 } else { 20 }))
        .label_style(text(if small { 15 } else { 17 }))
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .light_line_style(light)
        .max_light_lines(1)
        .bold_line_style(RGBColor(215, 215, 215));
    if small {
        mesh.x_labels(6).y_labels(6);
    }
    if let Some(cats) = &c.x_categories {
        mesh.x_labels(cats.len().max(2) * 2 + 1);
    }
    mesh.draw().map_err(e2s)?;

    for s in &panel.series {
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

    // labels beside their points, never over another label or a marker
    let style = text(14).color(&RGBColor(40, 40, 40));
    // every marker as (centre, radius): a label keeps clear of all but its own
    let markers: Vec<((i32, i32), i32)> = panel
        .series
        .iter()
        .filter(|s| s.marker != Marker::None)
        .flat_map(|s| {
            let r = if s.marker == Marker::Ring {
                s.marker_px.max(13) + 1
            } else {
                MARKER_PX
            };
            s.points.iter().map(move |p| (p, r))
        })
        .map(|(p, r)| (chart.backend_coord(p), r))
        .collect();
    let plot = chart.plotting_area();
    let ((left, right), (top, bottom)) = {
        let (x0, y0) = plot.get_base_pixel();
        let (w, h) = plot.dim_in_pixel();
        ((x0, x0 + w as i32), (y0, y0 + h as i32))
    };
    let mut placed: Vec<PixelBox> = Vec::new();
    let mut left_out = 0;
    for l in &panel.labels {
        let (w, h) = plot.estimate_text_size(&l.text, &style).map_err(e2s)?;
        let (w, h) = (w as i32, h as i32);
        let (px, py) = chart.backend_coord(&l.at);
        let own = |c: (i32, i32)| (c.0 - px).abs() <= 1 && (c.1 - py).abs() <= 1;
        let gap = markers
            .iter()
            .filter(|(c, _)| own(*c))
            .map(|(_, r)| *r)
            .max()
            .unwrap_or(MARKER_PX)
            + 3;
        let others: Vec<PixelBox> = markers
            .iter()
            .filter(|(c, _)| !own(*c))
            .map(|&((x, y), r)| (x - r, y - r, x + r, y + r))
            .collect();
        let candidates = [
            (gap, -h / 2),
            (gap, -h - 1),
            (gap, 1),
            (-gap - w, -h / 2),
            (-w / 2, -gap - h),
            (-w / 2, gap),
            (-gap - w, -h - 1),
            (-gap - w, 1),
        ];
        let spot = candidates.iter().find_map(|&(dx, dy)| {
            let b = (px + dx, py + dy, px + dx + w, py + dy + h);
            let inside = b.0 >= left && b.2 <= right && b.1 >= top && b.3 <= bottom;
            let free = !placed.iter().chain(&others).any(|&o| overlaps(b, o));
            (inside && free).then_some((dx, dy, b))
        });
        match spot {
            Some((dx, dy, b)) => {
                placed.push(b);
                plot.draw(
                    &(EmptyElement::at(l.at) + Text::new(l.text.clone(), (dx, dy), style.clone())),
                )
                .map_err(e2s)?;
            }
            None => left_out += 1,
        }
    }
    Ok(left_out)
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
    let filled = color.filled();
    match marker {
        Marker::None => Ok(()),
        Marker::Circle => chart
            .draw_series(pts.map(|p| Circle::new(p, r, filled)))
            .map(|_| ()),
        Marker::Triangle => chart
            .draw_series(pts.map(|p| TriangleMarker::new(p, r + 2, filled)))
            .map(|_| ()),
        Marker::Square => chart
            .draw_series(pts.map(|p| {
                EmptyElement::at(p) + Rectangle::new([(1 - r, 1 - r), (r - 1, r - 1)], filled)
            }))
            .map(|_| ()),
        Marker::Cross => chart
            .draw_series(pts.map(|p| Cross::new(p, r, color.stroke_width(3))))
            .map(|_| ()),
        Marker::Diamond => chart
            .draw_series(pts.map(|p| {
                let r = r + 1;
                EmptyElement::at(p) + Polygon::new(vec![(0, -r), (r, 0), (0, r), (-r, 0)], filled)
            }))
            .map(|_| ()),
        Marker::InvertedTriangle => chart
            .draw_series(pts.map(|p| {
                let r = r + 1;
                EmptyElement::at(p)
                    + Polygon::new(vec![(-r, -r * 2 / 3), (r, -r * 2 / 3), (0, r)], filled)
            }))
            .map(|_| ()),
        Marker::Plus => chart
            .draw_series(pts.map(|p| {
                EmptyElement::at(p)
                    + PathElement::new(vec![(-r, 0), (r, 0)], color.stroke_width(3))
                    + PathElement::new(vec![(0, -r), (0, r)], color.stroke_width(3))
            }))
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
        let r = MARKER_PX;
        match e.marker {
            Marker::None => Ok(()),
            Marker::Circle => area.draw(&Circle::new(at, r, c.filled())),
            Marker::Triangle => area.draw(&TriangleMarker::new(at, r + 2, c.filled())),
            Marker::Square => area.draw(&Rectangle::new(
                [(at.0 - r + 1, y - r + 1), (at.0 + r - 1, y + r - 1)],
                c.filled(),
            )),
            Marker::Cross => area.draw(&Cross::new(at, r, c.stroke_width(3))),
            Marker::Diamond => area.draw(&Polygon::new(
                vec![
                    (at.0, y - r - 1),
                    (at.0 + r + 1, y),
                    (at.0, y + r + 1),
                    (at.0 - r - 1, y),
                ],
                c.filled(),
            )),
            Marker::InvertedTriangle => {
                let r = r + 1;
                area.draw(&Polygon::new(
                    vec![
                        (at.0 - r, y - r * 2 / 3),
                        (at.0 + r, y - r * 2 / 3),
                        (at.0, y + r),
                    ],
                    c.filled(),
                ))
            }
            Marker::Plus => area
                .draw(&PathElement::new(
                    vec![(at.0 - r, y), (at.0 + r, y)],
                    c.stroke_width(3),
                ))
                .and_then(|_| {
                    area.draw(&PathElement::new(
                        vec![(at.0, y - r), (at.0, y + r)],
                        c.stroke_width(3),
                    ))
                }),
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
    let (plots, legend) = body.split_horizontally(WIDTH_PX - LEGEND_WIDTH_PX);
    draw_legend(&legend, &c.legend)?;
    let columns = c.columns.max(1);
    let rows = c.panels.len().max(1).div_ceil(columns);
    let areas = plots.split_evenly((rows, columns));
    let small = c.panels.len() > 1;
    for (panel, area) in c.panels.iter().zip(&areas) {
        let y_max = bounds(panel.bars.iter().filter_map(|b| b.value))
            .map(|b| b.1)
            .unwrap_or(1.0);
        let n = panel.bars.len().max(1);
        let mut chart = ChartBuilder::on(area)
            .margin(if small { 10 } else { 16 })
            .caption(&panel.heading, text(19))
            .x_label_area_size(if small { 40 } else { 64 })
            .y_label_area_size(if small { 80 } else { 96 })
            // room above the tallest bar for its two lines of text
            .build_cartesian_2d(-0.5..n as f64 - 0.5, 0.0..y_max * 1.3)
            .map_err(e2s)?;
        // side by side, panels are too narrow for the names: the legend gives them
        let x_fmt = |v: &f64| -> String {
            let i = v.round();
            if small || (v - i).abs() > 1e-6 || i < 0.0 {
                return String::new();
            }
            panel
                .bars
                .get(i as usize)
                .map(|b| b.category.clone())
                .unwrap_or_default()
        };
        let y_fmt = |v: &f64| tick(*v);
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n * 2 + 1)
            .y_labels(if small { 6 } else { 10 })
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .y_desc(c.y_label.as_str())
            .axis_desc_style(text(if small { 16 } else { 20 }))
            .label_style(text(if small { 14 } else { 17 }))
            .light_line_style(RGBColor(238, 238, 238))
            .max_light_lines(1)
            .bold_line_style(RGBColor(205, 205, 205))
            .draw()
            .map_err(e2s)?;
        let width = 0.7;
        for (i, b) in panel.bars.iter().enumerate() {
            let left = i as f64 - width / 2.0;
            let centre = i as f64;
            let Some(v) = b.value else {
                // an empty slot would read as zero energy
                let style = text(15).pos(Pos::new(HPos::Center, VPos::Bottom));
                chart
                    .draw_series(std::iter::once(Text::new(
                        NOT_MEASURED,
                        (centre, y_max * 0.02),
                        style,
                    )))
                    .map_err(e2s)?;
                continue;
            };
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(left, 0.0), (left + width, v)],
                    b.color.filled(),
                )))
                .map_err(e2s)?;
            let value_style = text(16).pos(Pos::new(HPos::Center, VPos::Bottom));
            let note_style = text(14)
                .color(&RGBColor(70, 70, 70))
                .pos(Pos::new(HPos::Center, VPos::Bottom));
            chart
                .draw_series(std::iter::once(
                    EmptyElement::at((centre, v))
                        + Text::new(crate::format::sig(v, 3), (0, -3), value_style),
                ))
                .map_err(e2s)?;
            if let Some(note) = &b.note {
                chart
                    .draw_series(std::iter::once(
                        EmptyElement::at((centre, v))
                            + Text::new(note.clone(), (0, -22), note_style),
                    ))
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
