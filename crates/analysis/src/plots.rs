//! The plots a review uses, built from records: per device and workload, energy
//! against time with the Pareto front (a panel per precision), and energy above
//! throughput against power cap, SM clock and batch size (a file per precision, a
//! line per kernel); for a comparison, devices side by side, a panel per precision.
//! Each kernel keeps one colour and one marker; nothing is a minimum across kernels.
//! Drawing itself is in `chart`.

use crate::chart::{
    render, series_style, slug, Bar, BarChart, BarPanel, Chart, DataKind, LegendEntry, Marker,
    Panel, PanelChart, PlotError, PlotFiles, PointLabel, Series, MARKER_PX, NOT_MEASURED, PALETTE,
};
use crate::compare::{CapChoice, Ranking};
use crate::digest::SettingsDigest;
use crate::format::sig;
use crate::recommend::{recommend_digest, Objective, RecommendOptions, Recommendation, Setting};
use joulebench_core::record::Record;
use joulebench_core::Precision;
use plotters::style::RGBColor;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const BLACK: RGBColor = RGBColor(0, 0, 0);
const ENERGY_AXIS: &str = "energy (pJ/FLOP)";
const THROUGHPUT_AXIS: &str = "throughput (TFLOP/s)";

/// One colour per precision, the same in every plot.
pub fn precision_color(p: Precision) -> RGBColor {
    let i = Precision::ALL.iter().position(|&q| q == p).unwrap_or(0);
    PALETTE[i % PALETTE.len()]
}

fn subtitle(r: &Recommendation) -> String {
    let caveat = crate::recommend_table::plot_caveat(r.settings.iter().map(|s| &**s), &r.ours_only);
    format!("{} · {}{caveat}", r.device, r.workload)
}

fn precisions_of(r: &Recommendation) -> Vec<Precision> {
    r.settings
        .iter()
        .map(|s| s.precision)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Each kernel of a recommendation with its colour and marker, by name: the same
/// in every plot of that device and workload.
fn kernel_styles(r: &Recommendation) -> BTreeMap<String, (RGBColor, Marker)> {
    r.settings
        .iter()
        .map(|s| s.kernel.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .enumerate()
        .map(|(i, k)| (k, series_style(i)))
        .collect()
}

/// Which parts of a setting besides kernel and precision vary among `settings`:
/// those a point's label names.
#[derive(Clone, Copy, Debug, Default)]
struct Varies {
    cap: bool,
    clock: bool,
    batch: bool,
}

impl Varies {
    fn of<'a>(settings: impl Iterator<Item = &'a Setting> + Clone) -> Varies {
        let distinct = |f: &dyn Fn(&Setting) -> String| {
            settings.clone().map(f).collect::<BTreeSet<_>>().len() > 1
        };
        Varies {
            cap: distinct(&|s| s.cap.clone()),
            clock: distinct(&|s| s.clock_label()),
            batch: distinct(&|s| s.batch_size.to_string()),
        }
    }

    fn any(self) -> bool {
        self.cap || self.clock || self.batch
    }

    /// "60% cap · 1260 MHz · b4": the parts that vary.
    fn label(self, s: &Setting) -> String {
        let mut parts = Vec::new();
        if self.cap {
            parts.push(format!("{} cap", s.cap));
        }
        if self.clock {
            parts.push(match s.sm_clock_mhz {
                Some(mhz) => format!("{mhz} MHz"),
                None => "unlocked".into(),
            });
        }
        if self.batch {
            parts.push(format!("b{}", s.batch_size));
        }
        parts.join(" · ")
    }

    fn describe(self) -> String {
        let mut parts = Vec::new();
        if self.cap {
            parts.push("power cap");
        }
        if self.clock {
            parts.push("locked SM clock");
        }
        if self.batch {
            parts.push("batch (b)");
        }
        parts.join(", ")
    }
}

fn kernel_legend(styles: &BTreeMap<String, (RGBColor, Marker)>, line: bool) -> Vec<LegendEntry> {
    styles
        .iter()
        .map(|(k, &(color, marker))| LegendEntry {
            label: k.clone(),
            color,
            marker,
            line,
        })
        .collect()
}

/// Up to this many settings, energy against time is one panel with every point
/// labelled (its precision among them); more, and each precision gets a panel of
/// its own, labelled on its Pareto front and at the choice.
const ONE_PANEL_UP_TO: usize = 16;

/// Every valid setting of one device and workload, time per FLOP against energy per
/// FLOP: a colour and marker per kernel, the Pareto front joined, the choice ringed,
/// every point labelled with what sets it apart (precision, power cap, clock,
/// batch). Many settings of several precisions get a panel per precision, each with
/// its own front.
pub fn energy_time_chart(r: &Recommendation, objective: Objective) -> PanelChart {
    let point = |s: &Setting| (s.seconds_per_flop * 1e15, s.picojoules_per_flop());
    let styles = kernel_styles(r);
    let varies = Varies::of(r.settings.iter().map(|s| &**s));
    let precisions = precisions_of(r);
    let one_panel = precisions.len() == 1 || r.settings.len() <= ONE_PANEL_UP_TO;
    let groups: Vec<Option<Precision>> = if one_panel {
        vec![None]
    } else {
        precisions.iter().copied().map(Some).collect()
    };
    let name_precision = one_panel && precisions.len() > 1;
    let label_of = |s: &Setting| {
        let parts = varies.label(s);
        match (name_precision, parts.is_empty()) {
            (true, true) => s.precision.to_string(),
            (true, false) => format!("{} · {parts}", s.precision),
            (false, _) => parts,
        }
    };
    let mut labelled_all = true;
    let panels = groups
        .iter()
        .map(|&group| {
            let idx: Vec<usize> = (0..r.settings.len())
                .filter(|&i| group.is_none_or(|p| r.settings[i].precision == p))
                .collect();
            let mine: Vec<Setting> = idx.iter().map(|&i| (*r.settings[i]).clone()).collect();
            let front: Vec<usize> = crate::objective::pareto_front(&mine)
                .into_iter()
                .map(|j| idx[j])
                .collect();
            let mut series: Vec<Series> = styles
                .iter()
                .filter_map(|(k, &(color, marker))| {
                    let points: Vec<(f64, f64)> =
                        mine.iter().filter(|s| &s.kernel == k).map(point).collect();
                    (!points.is_empty()).then_some(Series {
                        points,
                        color,
                        marker,
                        marker_px: MARKER_PX,
                        line: false,
                    })
                })
                .collect();
            series.push(Series {
                points: front.iter().map(|&i| point(&r.settings[i])).collect(),
                color: BLACK,
                marker: Marker::None,
                marker_px: 0,
                line: true,
            });
            if idx.contains(&r.chosen) {
                series.push(Series {
                    points: vec![point(r.chosen())],
                    color: BLACK,
                    marker: Marker::Ring,
                    marker_px: 13,
                    line: false,
                });
            }
            // the choice first, then the front (cheapest first), then the rest
            let mut order = idx.clone();
            order.sort_by(|&a, &b| {
                let rank = |i: usize| (i != r.chosen, !front.contains(&i));
                rank(a).cmp(&rank(b)).then(
                    r.settings[a]
                        .joules_per_flop
                        .total_cmp(&r.settings[b].joules_per_flop),
                )
            });
            if idx.len() > ONE_PANEL_UP_TO {
                labelled_all = false;
                order.retain(|i| *i == r.chosen || front.contains(i));
            }
            let labels = if varies.any() || name_precision {
                order
                    .iter()
                    .map(|&i| PointLabel {
                        at: point(&r.settings[i]),
                        text: label_of(&r.settings[i]),
                    })
                    .collect()
            } else {
                Vec::new()
            };
            Panel {
                heading: group.map(|p| p.to_string()).unwrap_or_default(),
                y_label: ENERGY_AXIS.into(),
                series,
                labels,
            }
        })
        .collect::<Vec<_>>();

    let mut legend = kernel_legend(&styles, false);
    legend.push(LegendEntry {
        label: "Pareto front".into(),
        color: BLACK,
        marker: Marker::None,
        line: true,
    });
    legend.push(LegendEntry {
        label: "recommended".into(),
        color: BLACK,
        marker: Marker::Ring,
        line: false,
    });
    let mut footnotes = vec![format!(
        "Every valid setting, a colour and marker per kernel; lower left is better. {} Ringed: {}.",
        if one_panel {
            "The line joins the Pareto front."
        } else {
            "One panel per precision, each on its own scale; the line joins each precision's Pareto front."
        },
        objective.describe()
    )];
    let mut named = Vec::new();
    if name_precision {
        named.push("precision".to_string());
    }
    if varies.any() {
        named.push(varies.describe());
    }
    if !named.is_empty() {
        footnotes.push(format!(
            "Points labelled with their {}{}.",
            named.join(", "),
            if labelled_all {
                ""
            } else {
                " (where many, the front's and the choice's; the cap and clock plots label every point)"
            }
        ));
    }
    PanelChart {
        title: "Energy vs time per FLOP".into(),
        subtitle: subtitle(r),
        data: DataKind::of(r.simulated, !r.simulated),
        x_label: "time (ms per 10¹² FLOP)".into(),
        x_categories: None,
        columns: if panels.len() > 1 { 2 } else { 1 },
        panels,
        shared_y: false,
        shared_x: false,
        legend,
        footnotes,
    }
}

/// A setting's line in a chart against one axis: its kernel, and its batch where
/// several batches share the chart.
fn line_key(s: &Setting, by_batch: bool) -> String {
    if by_batch {
        format!("{}, batch {}", s.kernel, s.batch_size)
    } else {
        s.kernel.clone()
    }
}

/// Energy above throughput against one axis for one precision: a line per kernel
/// (and batch, where several were measured), each point labelled by `label`.
/// `None` where fewer than two values of the axis were measured.
struct AxisChart<'a> {
    title: &'a str,
    kind: &'a str,
    x_label: String,
    /// x of a setting; `None` leaves it out.
    x: &'a dyn Fn(&Setting) -> Option<f64>,
    label: Option<&'a dyn Fn(&Setting) -> String>,
    categories: Option<Vec<String>>,
    /// Which settings the chart compares (the other axes held at their defaults).
    keep: &'a dyn Fn(&Setting) -> bool,
    held: &'a str,
    /// A line per batch too where several were measured (not where batch is the axis).
    split_batches: bool,
}

fn axis_chart(r: &Recommendation, p: Precision, a: &AxisChart<'_>) -> Option<PanelChart> {
    let settings: Vec<&Setting> = r
        .settings
        .iter()
        .map(|s| &**s)
        .filter(|s| s.precision == p && (a.keep)(s) && (a.x)(s).is_some())
        .collect();
    let xs: BTreeSet<i64> = settings
        .iter()
        .filter_map(|s| (a.x)(s))
        .map(|x| (x * 1000.0).round() as i64)
        .collect();
    if xs.len() < 2 {
        return None;
    }
    let by_batch = a.split_batches
        && settings
            .iter()
            .map(|s| s.batch_size)
            .collect::<BTreeSet<_>>()
            .len()
            > 1;
    let kernel_style = kernel_styles(r);
    let keys: Vec<String> = settings
        .iter()
        .map(|s| line_key(s, by_batch))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let style_of = |i: usize, key: &str| match kernel_style.get(key) {
        Some(&s) if !by_batch => s,
        _ => series_style(i),
    };
    let mut energy = Vec::new();
    let mut throughput = Vec::new();
    let mut labels = Vec::new();
    let mut legend = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let (color, marker) = style_of(i, key);
        let mut line: Vec<&Setting> = settings
            .iter()
            .copied()
            .filter(|s| &line_key(s, by_batch) == key)
            .collect();
        line.sort_by(|x, y| (a.x)(x).unwrap_or(0.0).total_cmp(&(a.x)(y).unwrap_or(0.0)));
        let xy = |y: &dyn Fn(&Setting) -> f64| -> Vec<(f64, f64)> {
            line.iter()
                .map(|s| ((a.x)(s).unwrap_or(0.0), y(s)))
                .collect()
        };
        energy.push(Series {
            points: xy(&|s| s.picojoules_per_flop()),
            color,
            marker,
            marker_px: MARKER_PX,
            line: true,
        });
        throughput.push(Series {
            points: xy(&|s| s.tflops),
            color,
            marker,
            marker_px: MARKER_PX,
            line: true,
        });
        if let Some(label) = a.label {
            labels.extend(line.iter().map(|s| PointLabel {
                at: ((a.x)(s).unwrap_or(0.0), s.picojoules_per_flop()),
                text: label(s),
            }));
        }
        legend.push(LegendEntry {
            label: key.clone(),
            color,
            marker,
            line: true,
        });
    }
    Some(PanelChart {
        title: a.title.into(),
        subtitle: format!("{} · {p}", subtitle(r)),
        data: DataKind::of(r.simulated, !r.simulated),
        x_label: a.x_label.clone(),
        x_categories: a.categories.clone(),
        panels: vec![
            Panel {
                heading: "energy: lower is better".into(),
                y_label: ENERGY_AXIS.into(),
                series: energy,
                labels,
            },
            Panel {
                heading: "throughput: what the energy costs in time".into(),
                y_label: THROUGHPUT_AXIS.into(),
                series: throughput,
                labels: Vec::new(),
            },
        ],
        columns: 1,
        shared_y: false,
        shared_x: true,
        legend,
        footnotes: vec![format!(
            "One line per kernel{} {}, every point measured (no minimum over kernels). {}",
            if by_batch { " and batch" } else { "" },
            a.held,
            a.kind
        )],
    })
}

/// Not locked: the power-cap and batch plots compare settings at the default clocks.
fn at_default_clocks(s: &Setting) -> bool {
    s.sm_clock_mhz.is_none() && s.mem_clock_mhz.is_none()
}

/// Energy and throughput against the power cap in watts, per precision with two or
/// more caps measured; each point labelled with the cap as asked ("80%").
pub fn cap_charts(r: &Recommendation) -> Vec<(Precision, PanelChart)> {
    let x = |s: &Setting| s.cap_w;
    let label = |s: &Setting| s.cap.clone();
    let keep = |s: &Setting| at_default_clocks(s);
    precisions_of(r)
        .into_iter()
        .filter_map(|p| {
            let c = axis_chart(
                r,
                p,
                &AxisChart {
                    title: "Energy and throughput vs power cap",
                    kind: "Each point labelled with the cap asked for.",
                    x_label: "power cap (W)".into(),
                    x: &x,
                    label: Some(&label),
                    categories: None,
                    keep: &keep,
                    held: "at the default clocks",
                    split_batches: true,
                },
            )?;
            Some((p, c))
        })
        .collect()
}

/// Energy and throughput against the SM clock seen during the windows, at the
/// default power limit, per precision with two or more clocks; None unless the
/// sweep locked clocks. Each point labelled with the clock asked for.
pub fn clock_charts(r: &Recommendation) -> Vec<(Precision, PanelChart)> {
    if !r.settings.iter().any(|s| s.sm_clock_mhz.is_some()) {
        return Vec::new();
    }
    let x = |s: &Setting| s.sm_clock_seen_mhz.or(s.sm_clock_mhz.map(f64::from));
    let label = |s: &Setting| match s.sm_clock_mhz {
        Some(mhz) => format!("lock {mhz}"),
        None => "default".into(),
    };
    let keep = |s: &Setting| s.is_default_cap;
    precisions_of(r)
        .into_iter()
        .filter_map(|p| {
            let c = axis_chart(
                r,
                p,
                &AxisChart {
                    title: "Energy and throughput vs SM clock",
                    kind: "x: the SM clock seen while it ran (a power limit can hold it under a lock); \
                           each point labelled with the clock asked for.",
                    x_label: "SM clock during the windows (MHz)".into(),
                    x: &x,
                    label: Some(&label),
                    categories: None,
                    keep: &keep,
                    held: "at the default power limit",
                    split_batches: true,
                },
            )?;
            Some((p, c))
        })
        .collect()
}

/// Energy and throughput against batch size at the default power limit and clocks,
/// per precision with two or more batch sizes.
pub fn batch_charts(r: &Recommendation) -> Vec<(Precision, PanelChart)> {
    let batches: Vec<u64> = r
        .settings
        .iter()
        .filter(|s| s.is_default_cap && at_default_clocks(s))
        .map(|s| s.batch_size)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let categories: Vec<String> = batches.iter().map(|b| b.to_string()).collect();
    let x = |s: &Setting| {
        batches
            .iter()
            .position(|&b| b == s.batch_size)
            .map(|i| i as f64)
    };
    let keep = |s: &Setting| s.is_default_cap && at_default_clocks(s);
    precisions_of(r)
        .into_iter()
        .filter_map(|p| {
            let c = axis_chart(
                r,
                p,
                &AxisChart {
                    title: "Energy and throughput vs batch size",
                    kind: "",
                    x_label: "batch size".into(),
                    x: &x,
                    label: None,
                    categories: Some(categories.clone()),
                    keep: &keep,
                    held: "at the default power limit and clocks",
                    split_batches: false,
                },
            )?;
            Some((p, c))
        })
        .collect()
}

/// Write every report plot under `dir`: for each device and workload, energy vs
/// time, and where the sweep varied them, energy and throughput vs power cap, SM
/// clock and batch size (a file per precision).
pub fn report_plots(
    records: &[Record],
    objective: Objective,
    dir: &Path,
) -> Result<Vec<PlotFiles>, PlotError> {
    report_plots_digest(&SettingsDigest::of(records), objective, dir)
}

/// [`report_plots`] of the records a digest took in.
pub fn report_plots_digest(
    digest: &SettingsDigest,
    objective: Objective,
    dir: &Path,
) -> Result<Vec<PlotFiles>, PlotError> {
    let mut files = Vec::new();
    for r in recommend_digest(digest, objective, &RecommendOptions::default()) {
        let base = format!("{}_{}", slug(&r.device), slug(&r.workload));
        files.push(render(
            &Chart::Panels(energy_time_chart(&r, objective)),
            dir,
            &format!("energy-time_{base}"),
        )?);
        for (kind, charts) in [
            ("cap", cap_charts(&r)),
            ("clock", clock_charts(&r)),
            ("batch", batch_charts(&r)),
        ] {
            for (p, c) in charts {
                files.push(render(
                    &Chart::Panels(c),
                    dir,
                    &format!("energy-{kind}_{base}_{}", slug(p.name())),
                )?);
            }
        }
    }
    Ok(files)
}

/// Devices side by side per workload: a panel per precision on its own scale, a bar
/// per device (its best setting, throughput written above it), "not measured" where
/// a device has no valid record of that precision.
pub fn compare_charts(rankings: &[Ranking], cap: CapChoice) -> Vec<(String, BarChart)> {
    let mut by_workload: BTreeMap<&str, Vec<&Ranking>> = BTreeMap::new();
    for r in rankings {
        by_workload.entry(r.workload.as_str()).or_default().push(r);
    }
    by_workload
        .into_iter()
        .map(|(workload, rs)| {
            let mut devices: Vec<String> = Vec::new();
            for e in rs.iter().flat_map(|r| &r.entries) {
                if !devices.contains(&e.device) {
                    devices.push(e.device.clone());
                }
            }
            let color = |i: usize| PALETTE[i % PALETTE.len()];
            let panels: Vec<BarPanel> = rs
                .iter()
                .map(|r| BarPanel {
                    heading: r.precision.to_string(),
                    bars: devices
                        .iter()
                        .enumerate()
                        .map(|(i, d)| {
                            let e = r.entries.iter().find(|e| &e.device == d);
                            Bar {
                                category: d.clone(),
                                value: e.map(|e| e.best.picojoules_per_flop()),
                                color: color(i),
                                note: e.map(|e| format!("{} TFLOP/s", sig(e.best.tflops, 3))),
                            }
                        })
                        .collect(),
                })
                .collect();
            let gaps = panels
                .iter()
                .any(|p| p.bars.iter().any(|b| b.value.is_none()));
            let entries = || rs.iter().flat_map(|r| &r.entries);
            let data = DataKind::of(
                entries().any(|e| e.simulated),
                entries().any(|e| !e.simulated),
            );
            let mut footnotes = vec![format!(
                "{} Above each bar: its energy and its throughput.{}",
                match cap {
                    CapChoice::Default =>
                        "Each bar: the device's best kernel and batch at its default power limit.",
                    CapChoice::Any =>
                        "Each bar: the device's best kernel, batch, power cap and clock.",
                },
                if panels.len() > 1 {
                    " Each panel on its own scale."
                } else {
                    ""
                }
            )];
            if gaps {
                footnotes.push(format!(
                    "{NOT_MEASURED}: no valid record of that device at that precision."
                ));
            }
            let chart = BarChart {
                title: "Devices compared by energy per FLOP".into(),
                subtitle: format!(
                    "{workload}{}",
                    crate::recommend_table::plot_caveat(
                        entries().map(|e| &e.best),
                        &rs.iter()
                            .filter(|r| r.entries.iter().any(|e| e.ours_only))
                            .map(|r| r.precision)
                            .collect::<Vec<_>>()
                    )
                ),
                data,
                y_label: format!("{ENERGY_AXIS}, lower is better"),
                columns: if panels.len() > 1 { 2 } else { 1 },
                panels,
                legend: devices
                    .iter()
                    .enumerate()
                    .map(|(i, d)| LegendEntry {
                        label: d.clone(),
                        color: color(i),
                        marker: Marker::Square,
                        line: false,
                    })
                    .collect(),
                footnotes,
            };
            (workload.to_string(), chart)
        })
        .collect()
}

/// Write the comparison plots under `dir`.
pub fn compare_plots(
    rankings: &[Ranking],
    cap: CapChoice,
    dir: &Path,
) -> Result<Vec<PlotFiles>, PlotError> {
    compare_charts(rankings, cap)
        .into_iter()
        .map(|(workload, chart)| {
            render(
                &Chart::Bars(chart),
                dir,
                &format!("compare_{}", slug(&workload)),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::compare;
    use crate::recommend::recommend;
    use crate::testutil::rec;

    fn records() -> Vec<Record> {
        let mut v = vec![
            rec("GPU A", false, Precision::Bf16, "default", 600.0, 1.0),
            rec("GPU A", false, Precision::Bf16, "80%", 560.0, 0.9),
            rec("GPU A", false, Precision::F16, "80%", 550.0, 0.95),
            rec("GPU A", false, Precision::Bf16, "default", 650.0, 0.85),
        ];
        v[3].batch_size = 4;
        v[3].workload = v[3].workload.with_batch(4);
        v
    }

    fn points_of(c: &PanelChart, panel: usize, key: &str) -> Vec<(f64, f64)> {
        let i = c
            .legend
            .iter()
            .position(|l| l.label == key)
            .unwrap_or_else(|| panic!("{key} in {:?}", c.legend));
        c.panels[panel].series[i]
            .points
            .iter()
            .map(|&(x, y)| (x, (y * 1e3).round() / 1e3))
            .collect()
    }

    #[test]
    fn cap_chart_draws_every_point_of_each_kernel_and_batch_with_throughput() {
        let recs = recommend(&records(), Objective::LeastEnergy);
        let charts = cap_charts(&recs[0]);
        // bf16 has two caps; f16 one, so no chart
        assert_eq!(charts.len(), 1);
        let (p, c) = &charts[0];
        assert_eq!(*p, Precision::Bf16);
        // two batches: a line per kernel and batch, never the least of them
        assert_eq!(
            points_of(c, 0, "k, batch 1"),
            vec![(560.0, 0.9), (700.0, 1.0)]
        );
        assert_eq!(points_of(c, 0, "k, batch 4"), vec![(700.0, 0.85)]);
        // the throughput panel below, on the same x
        assert_eq!(c.panels[1].y_label, THROUGHPUT_AXIS);
        assert_eq!(
            points_of(c, 1, "k, batch 1"),
            vec![(560.0, 560.0), (700.0, 600.0)]
        );
        // caps named on the points
        let labels: Vec<&str> = c.panels[0].labels.iter().map(|l| l.text.as_str()).collect();
        assert!(
            labels.contains(&"80%") && labels.contains(&"default"),
            "{labels:?}"
        );
    }

    #[test]
    fn clock_chart_keeps_each_kernel_its_own_line() {
        // two kernels at two clocks: the cheaper kernel changes between clocks, and
        // a minimum across kernels would jump from one to the other
        let mut v = Vec::new();
        for (kernel, mhz, pj) in [
            ("cublas", 1200, 1.00),
            ("cublas", 1800, 1.30),
            ("ours", 1200, 1.10),
            ("ours", 1800, 1.20),
        ] {
            let mut r = rec("GPU A", false, Precision::Bf16, "default", 500.0, pj);
            r.kernel = kernel.into();
            r.clocks.sm_requested_mhz = Some(mhz);
            r.clocks.sm_seen_mhz_median = Some(mhz as f64);
            v.push(r);
        }
        let recs = recommend(&v, Objective::LeastEnergy);
        let charts = clock_charts(&recs[0]);
        assert_eq!(charts.len(), 1);
        let c = &charts[0].1;
        assert_eq!(
            points_of(c, 0, "cublas"),
            vec![(1200.0, 1.0), (1800.0, 1.3)]
        );
        assert_eq!(points_of(c, 0, "ours"), vec![(1200.0, 1.1), (1800.0, 1.2)]);
        // a colour and a marker per kernel
        assert_ne!(c.legend[0].marker, c.legend[1].marker);
        assert_ne!(c.legend[0].color, c.legend[1].color);
        let labels: Vec<&str> = c.panels[0].labels.iter().map(|l| l.text.as_str()).collect();
        assert!(labels.contains(&"lock 1800"), "{labels:?}");
    }

    #[test]
    fn batch_chart_uses_the_default_cap_and_skips_a_single_batch() {
        let recs = recommend(&records(), Objective::LeastEnergy);
        let charts = batch_charts(&recs[0]);
        assert_eq!(charts.len(), 1, "f16 has no default-cap point");
        let c = &charts[0].1;
        assert_eq!(c.x_categories, Some(vec!["1".to_string(), "4".to_string()]));
        // batch is the axis: a line per kernel, not per batch
        let lines: Vec<&str> = c.legend.iter().map(|l| l.label.as_str()).collect();
        assert_eq!(lines, ["k"]);
        let recs = recommend(&records()[..3], Objective::LeastEnergy);
        assert!(batch_charts(&recs[0]).is_empty());
    }

    #[test]
    fn energy_time_chart_labels_every_point_and_marks_front_and_choice() {
        let recs = recommend(&records(), Objective::LeastEnergy);
        let c = energy_time_chart(&recs[0], Objective::LeastEnergy);
        // four settings: one panel, each point named by precision, cap and batch
        assert_eq!(c.panels.len(), 1);
        let ring: Vec<&Series> = c.panels[0]
            .series
            .iter()
            .filter(|s| s.marker == Marker::Ring)
            .collect();
        assert_eq!(ring.len(), 1);
        assert!((ring[0].points[0].1 - 0.85).abs() < 1e-9);
        assert!(c.legend.iter().any(|l| l.label == "Pareto front"));
        let labels: Vec<&str> = c.panels[0].labels.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(
            labels[0], "bf16 · default cap · b4",
            "the choice is labelled first"
        );
        assert!(labels.contains(&"f16 · 80% cap · b1"), "{labels:?}");
        assert_eq!(labels.len(), 4);
        // one marker size for every data point
        assert!(c.panels[0]
            .series
            .iter()
            .filter(|s| !matches!(s.marker, Marker::Ring | Marker::None))
            .all(|s| s.marker_px == MARKER_PX));
        assert_eq!(c.data, DataKind::Measured);
    }

    #[test]
    fn many_settings_of_several_precisions_get_a_panel_each() {
        let mut v = Vec::new();
        for (p, base) in [(Precision::Bf16, 1.0), (Precision::F32, 10.0)] {
            // each cap slower and costlier than the one before: one point on the front
            for i in 0..20 {
                let cap = format!("{}%", 50 + i * 2);
                v.push(rec(
                    "GPU A",
                    false,
                    p,
                    &cap,
                    100.0 - i as f64,
                    base + i as f64 * 0.01,
                ));
            }
        }
        let recs = recommend(&v, Objective::LeastEnergy);
        let c = energy_time_chart(&recs[0], Objective::LeastEnergy);
        let headings: Vec<&str> = c.panels.iter().map(|p| p.heading.as_str()).collect();
        assert_eq!(headings, ["f32", "bf16"]);
        // labelled where it matters: each panel's front and the choice
        let counts: Vec<usize> = c.panels.iter().map(|p| p.labels.len()).collect();
        assert_eq!(counts, [1, 1]);
        assert!(c.footnotes.iter().any(|f| f.contains("where many")));
    }

    #[test]
    fn compare_panels_per_precision_and_say_not_measured() {
        let mut v = records();
        v.push(rec("GPU B", false, Precision::Bf16, "default", 500.0, 0.7));
        let rankings = compare(&v, CapChoice::Any);
        let charts = compare_charts(&rankings, CapChoice::Any);
        let c = &charts[0].1;
        let headings: Vec<&str> = c.panels.iter().map(|p| p.heading.as_str()).collect();
        assert_eq!(headings, ["f16", "bf16"]);
        let f16 = &c.panels[0];
        let missing = f16.bars.iter().find(|b| b.category == "GPU B").unwrap();
        assert_eq!(missing.value, None);
        assert!(c.footnotes.iter().any(|f| f.starts_with(NOT_MEASURED)));
        let bf16 = &c.panels[1].bars;
        assert!(bf16
            .iter()
            .all(|b| b.note.as_deref().is_some_and(|n| n.ends_with("TFLOP/s"))));
    }

    #[test]
    fn writes_report_and_compare_plots() {
        let dir = tempfile::tempdir().unwrap();
        let mut v = records();
        v.push(rec(
            "sim-b (simulated)",
            true,
            Precision::Bf16,
            "default",
            500.0,
            0.7,
        ));
        let files = report_plots(&v, Objective::LeastEnergy, dir.path()).unwrap();
        // GPU A: time, cap (bf16), batch (bf16); sim-b: time only
        assert_eq!(files.len(), 4, "{files:?}");
        for f in &files {
            assert!(std::fs::metadata(&f.png).unwrap().len() > 1000);
            assert!(std::fs::metadata(&f.svg).unwrap().len() > 1000);
        }
        assert!(
            files[3].title.starts_with("SIMULATED DATA"),
            "{}",
            files[3].title
        );
        let rankings = compare(&v, CapChoice::Default);
        let files = compare_plots(&rankings, CapChoice::Default, dir.path()).unwrap();
        assert_eq!(files.len(), 1);
        let svg = std::fs::read_to_string(&files[0].svg).unwrap();
        assert!(
            svg.contains("GPU A")
                && svg.contains("sim-b (simulated)")
                && svg.contains("MIXED: SOME DEVICES SIMULATED")
        );
    }
}
