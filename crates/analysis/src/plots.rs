//! The plots a review uses, built from records: per device and workload, energy
//! against time with the Pareto front, against power cap and against batch size;
//! and, for a comparison, devices side by side. Drawing itself is in `chart`.

use crate::chart::{
    render, slug, BarChart, Chart, DataKind, LegendEntry, Marker, PlotError, PlotFiles, Series,
    XyChart, PALETTE,
};
use crate::compare::{CapChoice, Ranking};
use crate::recommend::{recommend, Objective, Recommendation, Setting};
use joulebench_core::record::Record;
use joulebench_core::Precision;
use plotters::style::RGBColor;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const BLACK: RGBColor = RGBColor(0, 0, 0);
const GREY: RGBColor = RGBColor(90, 90, 90);
const ENERGY_AXIS: &str = "energy (pJ/FLOP)";

/// One colour per precision, the same in every plot.
pub fn precision_color(p: Precision) -> RGBColor {
    let i = Precision::ALL.iter().position(|&q| q == p).unwrap_or(0);
    PALETTE[i % PALETTE.len()]
}

const KERNEL_MARKERS: [Marker; 4] = [
    Marker::Circle,
    Marker::Triangle,
    Marker::Square,
    Marker::Cross,
];

fn precisions_in(settings: &[&Setting]) -> Vec<Precision> {
    settings
        .iter()
        .map(|s| s.precision)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn precision_legend(precisions: &[Precision], marker: Marker, line: bool) -> Vec<LegendEntry> {
    precisions
        .iter()
        .map(|&p| LegendEntry {
            label: p.to_string(),
            color: precision_color(p),
            marker,
            line,
        })
        .collect()
}

/// Marker radius of the `i`-th of `n` series: earlier ones larger, so where f16
/// and bf16 land on the same point the one drawn first shows as a rim.
fn rim_px(i: usize, n: usize) -> i32 {
    5 + 2 * n.saturating_sub(i + 1) as i32
}

fn subtitle(r: &Recommendation) -> String {
    let caveat = crate::recommend_table::plot_caveat(r.settings.iter(), &r.ours_only);
    format!("{} · {}{caveat}", r.device, r.workload)
}

/// Every valid setting of one device and workload: time per FLOP against energy per
/// FLOP, colour by precision, marker by kernel, the Pareto front joined, the choice ringed.
pub fn energy_time_chart(r: &Recommendation, objective: Objective) -> XyChart {
    let point = |s: &Setting| (s.seconds_per_flop * 1e15, s.picojoules_per_flop());
    let all: Vec<&Setting> = r.settings.iter().collect();
    let kernels: Vec<&str> = all
        .iter()
        .map(|s| s.kernel.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let marker_of = |k: &str| {
        KERNEL_MARKERS[kernels.iter().position(|&x| x == k).unwrap_or(0) % KERNEL_MARKERS.len()]
    };
    let precisions = precisions_in(&all);
    let mut series = Vec::new();
    for (i, &p) in precisions.iter().enumerate() {
        let marker_px = rim_px(i, precisions.len());
        for &k in &kernels {
            let points: Vec<(f64, f64)> = all
                .iter()
                .filter(|s| s.precision == p && s.kernel == k)
                .map(|s| point(s))
                .collect();
            if !points.is_empty() {
                series.push(Series {
                    points,
                    color: precision_color(p),
                    marker: marker_of(k),
                    marker_px,
                    line: false,
                });
            }
        }
    }
    series.push(Series {
        points: r.front.iter().map(|&i| point(&r.settings[i])).collect(),
        color: BLACK,
        marker: Marker::None,
        marker_px: 0,
        line: true,
    });
    series.push(Series {
        points: vec![point(r.chosen())],
        color: BLACK,
        marker: Marker::Ring,
        marker_px: 13,
        line: false,
    });

    let mut legend = precision_legend(&precisions, Marker::Circle, false);
    if kernels.len() > 1 {
        for &k in &kernels {
            legend.push(LegendEntry {
                label: k.to_string(),
                color: GREY,
                marker: marker_of(k),
                line: false,
            });
        }
    }
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
    XyChart {
        title: "Energy vs time per FLOP".into(),
        subtitle: subtitle(r),
        data: DataKind::of(r.simulated, !r.simulated),
        x_label: "time (ms per 10¹² FLOP)".into(),
        y_label: ENERGY_AXIS.into(),
        series,
        legend,
        x_categories: None,
        footnote: Some(format!(
            "Every valid setting (kernel, precision, batch, power cap); lower left is better. Ringed: {}.",
            objective.describe()
        )),
    }
}

/// The least energy per precision at each value of `axis`, over the other settings.
fn best_by<K: Ord + Copy>(
    settings: &[&Setting],
    axis: impl Fn(&Setting) -> Option<K>,
) -> BTreeMap<Precision, BTreeMap<K, f64>> {
    let mut out: BTreeMap<Precision, BTreeMap<K, f64>> = BTreeMap::new();
    for s in settings {
        let Some(k) = axis(s) else { continue };
        let e = out
            .entry(s.precision)
            .or_default()
            .entry(k)
            .or_insert(f64::INFINITY);
        *e = e.min(s.picojoules_per_flop());
    }
    out
}

/// Energy per FLOP against the power cap in watts, one line per precision; None
/// where fewer than two caps were measured.
pub fn cap_chart(r: &Recommendation) -> Option<XyChart> {
    let all: Vec<&Setting> = r.settings.iter().filter(|s| at_default_clocks(s)).collect();
    // watts as integer milliwatts: a map key that sorts
    let best = best_by(&all, |s| s.cap_w.map(|w| (w * 1000.0).round() as i64));
    let caps: BTreeSet<i64> = best.values().flat_map(|m| m.keys().copied()).collect();
    if caps.len() < 2 {
        return None;
    }
    let series = best
        .iter()
        .enumerate()
        .map(|(i, (&p, m))| Series {
            points: m.iter().map(|(&mw, &e)| (mw as f64 / 1000.0, e)).collect(),
            color: precision_color(p),
            marker: Marker::Circle,
            marker_px: rim_px(i, best.len()),
            line: true,
        })
        .collect();
    Some(XyChart {
        title: "Energy vs power cap".into(),
        subtitle: subtitle(r),
        data: DataKind::of(r.simulated, !r.simulated),
        x_label: "power cap (W)".into(),
        y_label: ENERGY_AXIS.into(),
        series,
        legend: precision_legend(
            &best.keys().copied().collect::<Vec<_>>(),
            Marker::Circle,
            true,
        ),
        x_categories: None,
        footnote: Some(
            "Each point: the least energy over kernels and batch sizes at that cap.".into(),
        ),
    })
}

/// Energy per FLOP against batch size at the default power limit, one line per
/// precision; None where fewer than two batch sizes were measured.
pub fn batch_chart(r: &Recommendation) -> Option<XyChart> {
    let at_default: Vec<&Setting> = r
        .settings
        .iter()
        .filter(|s| s.is_default_cap && at_default_clocks(s))
        .collect();
    let best = best_by(&at_default, |s| Some(s.batch_size));
    let batches: Vec<u64> = best
        .values()
        .flat_map(|m| m.keys().copied())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if batches.len() < 2 {
        return None;
    }
    let index = |b: u64| batches.iter().position(|&x| x == b).unwrap_or(0) as f64;
    let series = best
        .iter()
        .enumerate()
        .map(|(i, (&p, m))| Series {
            points: m.iter().map(|(&b, &e)| (index(b), e)).collect(),
            color: precision_color(p),
            marker: Marker::Circle,
            marker_px: rim_px(i, best.len()),
            line: true,
        })
        .collect();
    Some(XyChart {
        title: "Energy vs batch size".into(),
        subtitle: subtitle(r),
        data: DataKind::of(r.simulated, !r.simulated),
        x_label: "batch size".into(),
        y_label: ENERGY_AXIS.into(),
        series,
        legend: precision_legend(
            &best.keys().copied().collect::<Vec<_>>(),
            Marker::Circle,
            true,
        ),
        x_categories: Some(batches.iter().map(|b| b.to_string()).collect()),
        footnote: Some(
            "Each point: the least energy over kernels at the default power limit.".into(),
        ),
    })
}

/// Not locked: the power-cap and batch plots compare settings at the default clocks.
fn at_default_clocks(s: &Setting) -> bool {
    s.sm_clock_mhz.is_none() && s.mem_clock_mhz.is_none()
}

/// The least-energy setting per precision at each SM clock, at the default power
/// limit: the clock is the one telemetry saw (a locked clock's, or where the default
/// clocks settled).
fn best_by_clock(r: &Recommendation) -> BTreeMap<Precision, BTreeMap<u32, &Setting>> {
    let mut out: BTreeMap<Precision, BTreeMap<u32, &Setting>> = BTreeMap::new();
    for s in r.settings.iter().filter(|s| s.is_default_cap) {
        let Some(mhz) = s
            .sm_clock_seen_mhz
            .map(|m| m.round() as u32)
            .or(s.sm_clock_mhz)
        else {
            continue;
        };
        let e = out.entry(s.precision).or_default().entry(mhz).or_insert(s);
        if s.joules_per_flop < e.joules_per_flop {
            *e = s;
        }
    }
    out
}

/// Energy per FLOP and throughput against the SM clock, one line per precision;
/// None unless the sweep locked clocks and saw at least two.
pub fn clock_charts(r: &Recommendation) -> Option<(XyChart, XyChart)> {
    if !r.settings.iter().any(|s| s.sm_clock_mhz.is_some()) {
        return None;
    }
    let best = best_by_clock(r);
    let clocks: BTreeSet<u32> = best.values().flat_map(|m| m.keys().copied()).collect();
    if clocks.len() < 2 {
        return None;
    }
    let chart = |title: &str, y_label: &str, y: &dyn Fn(&Setting) -> f64| {
        XyChart {
        title: title.into(),
        subtitle: subtitle(r),
        data: DataKind::of(r.simulated, !r.simulated),
        x_label: "SM clock during the windows (MHz)".into(),
        y_label: y_label.into(),
        series: best
            .iter()
            .enumerate()
            .map(|(i, (&p, m))| Series {
                points: m.iter().map(|(&mhz, s)| (mhz as f64, y(s))).collect(),
                color: precision_color(p),
                marker: Marker::Circle,
                marker_px: rim_px(i, best.len()),
                line: true,
            })
            .collect(),
        legend: precision_legend(&best.keys().copied().collect::<Vec<_>>(), Marker::Circle, true),
        x_categories: None,
        footnote: Some(
            "Each point: the least energy over kernels and batch sizes at that clock, at the default power limit."
                .into(),
        ),
    }
    };
    Some((
        chart("Energy vs SM clock", ENERGY_AXIS, &|s| {
            s.picojoules_per_flop()
        }),
        chart("Throughput vs SM clock", "throughput (TFLOP/s)", &|s| {
            s.tflops
        }),
    ))
}

/// Write every report plot under `dir`: for each device and workload, energy vs
/// time, and where the sweep varied them, energy vs power cap, vs batch size, and
/// energy and throughput vs the SM clock.
pub fn report_plots(
    records: &[Record],
    objective: Objective,
    dir: &Path,
) -> Result<Vec<PlotFiles>, PlotError> {
    let mut files = Vec::new();
    for r in recommend(records, objective) {
        let base = format!("{}_{}", slug(&r.device), slug(&r.workload));
        files.push(render(
            &Chart::Xy(energy_time_chart(&r, objective)),
            dir,
            &format!("energy-time_{base}"),
        )?);
        if let Some(c) = cap_chart(&r) {
            files.push(render(&Chart::Xy(c), dir, &format!("energy-cap_{base}"))?);
        }
        if let Some(c) = batch_chart(&r) {
            files.push(render(&Chart::Xy(c), dir, &format!("energy-batch_{base}"))?);
        }
        if let Some((energy, throughput)) = clock_charts(&r) {
            files.push(render(
                &Chart::Xy(energy),
                dir,
                &format!("energy-clock_{base}"),
            )?);
            files.push(render(
                &Chart::Xy(throughput),
                dir,
                &format!("throughput-clock_{base}"),
            )?);
        }
    }
    Ok(files)
}

/// Devices side by side per workload: one bar per precision, the ranking's best setting.
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
            let groups: Vec<_> = rs
                .iter()
                .map(|r| {
                    let values = devices
                        .iter()
                        .map(|d| {
                            r.entries
                                .iter()
                                .find(|e| &e.device == d)
                                .map(|e| e.best.picojoules_per_flop())
                        })
                        .collect();
                    (
                        r.precision.to_string(),
                        precision_color(r.precision),
                        values,
                    )
                })
                .collect();
            let entries = || rs.iter().flat_map(|r| &r.entries);
            let data = DataKind::of(entries().any(|e| e.simulated), entries().any(|e| !e.simulated));
            let gaps = groups_have_gaps(&groups);
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
                categories: devices,
                groups,
                footnote: Some(format!(
                    "{}{}",
                    match cap {
                        CapChoice::Default => "Each bar: the device's best kernel and batch at its default power limit.",
                        CapChoice::Any => "Each bar: the device's best kernel, batch and power cap.",
                    },
                    if gaps { " n/a: not measured on that device." } else { "" }
                )),
            };
            (workload.to_string(), chart)
        })
        .collect()
}

fn groups_have_gaps(groups: &[(String, RGBColor, Vec<Option<f64>>)]) -> bool {
    groups.iter().any(|g| g.2.iter().any(Option::is_none))
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

    #[test]
    fn cap_chart_keeps_the_least_energy_per_cap_and_precision() {
        let recs = recommend(&records(), Objective::LeastEnergy);
        let c = cap_chart(&recs[0]).unwrap();
        // bf16: 560 W → 0.9, 700 W → min(1.0, 0.85); f16: one point at 560 W
        let bf16 = c
            .series
            .iter()
            .find(|s| s.color == precision_color(Precision::Bf16))
            .unwrap();
        let pts: Vec<(f64, f64)> = bf16
            .points
            .iter()
            .map(|&(w, e)| (w, (e * 1e3).round() / 1e3))
            .collect();
        assert_eq!(pts, vec![(560.0, 0.9), (700.0, 0.85)]);
        assert_eq!(c.series.len(), 2);
    }

    #[test]
    fn batch_chart_uses_the_default_cap_and_skips_a_single_batch() {
        let recs = recommend(&records(), Objective::LeastEnergy);
        let c = batch_chart(&recs[0]).unwrap();
        assert_eq!(c.x_categories, Some(vec!["1".to_string(), "4".to_string()]));
        assert_eq!(c.series.len(), 1, "f16 has no default-cap point");
        let recs = recommend(&records()[..3], Objective::LeastEnergy);
        assert!(batch_chart(&recs[0]).is_none());
    }

    #[test]
    fn energy_time_chart_marks_front_and_choice() {
        let recs = recommend(&records(), Objective::LeastEnergy);
        let c = energy_time_chart(&recs[0], Objective::LeastEnergy);
        let ring = c.series.iter().find(|s| s.marker == Marker::Ring).unwrap();
        assert_eq!(ring.points.len(), 1);
        assert!((ring.points[0].1 - 0.85).abs() < 1e-9);
        assert!(c.legend.iter().any(|l| l.label == "Pareto front"));
        assert_eq!(c.data, DataKind::Measured);
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
        // GPU A: time, cap, batch; sim-b: time only
        assert_eq!(files.len(), 4);
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
