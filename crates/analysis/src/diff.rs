//! Two runs side by side, point by point (as nvbench's `nvbench_compare`): after a
//! driver update, a kernel change, or between two cards. A change counts only where
//! it is larger than both runs' uncertainty together, so noise never reads as a
//! regression, and regressions come first so CI can fail on them.

use crate::format::{pct, sig};
use crate::recommend::{device_labels, physical_keys};
use crate::table::Table;
use joulebench_core::record::Record;
use joulebench_core::stats::{median, relative_spread};
use std::collections::{BTreeMap, BTreeSet};

/// Where a side's uncertainty comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UncertaintySource {
    /// The spread between repeats of the point (`sweep --repeat N`).
    RunToRun,
    /// The spread across the windows of one run: it understates the real
    /// uncertainty, which repeats measure.
    WithinRun,
}

/// Relative uncertainty of one point's figures (a fraction: 0.01 is ±1%).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Uncertainty {
    pub joules_per_flop: f64,
    pub tflops: f64,
    pub average_w: Option<f64>,
    pub source: UncertaintySource,
}

/// The relative uncertainty of a point measured by `runs` (its repeats): the
/// run-to-run spread where it was repeated, the spread within its run otherwise.
/// One small function on purpose: every significance verdict of a diff goes through it.
pub fn point_uncertainty(runs: &[&Record]) -> Option<Uncertainty> {
    let summaries: Vec<_> = runs
        .iter()
        .filter_map(|r| r.measurement.as_ref().map(|m| (m, &m.summary)))
        .filter(|(_, s)| s.joules_per_flop.is_some())
        .collect();
    if summaries.is_empty() {
        return None;
    }
    if summaries.len() > 1 {
        let spread = |f: &dyn Fn(&joulebench_core::protocol::Summary) -> Option<f64>| {
            let v: Vec<f64> = summaries.iter().filter_map(|(_, s)| f(s)).collect();
            (v.len() > 1).then(|| relative_spread(&v))
        };
        return Some(Uncertainty {
            joules_per_flop: spread(&|s| s.joules_per_flop.map(|j| j.median))?,
            tflops: spread(&|s| Some(s.tflops))?,
            average_w: spread(&|s| s.average_w),
            source: UncertaintySource::RunToRun,
        });
    }
    let (m, s) = summaries[0];
    let window_watts: Vec<f64> = m
        .windows
        .iter()
        .filter_map(|w| w.joules.map(|j| j / w.seconds))
        .filter(|w| w.is_finite())
        .collect();
    Some(Uncertainty {
        joules_per_flop: s.joules_per_flop.map(|j| j.rel_spread)?,
        tflops: s.seconds_per_op.rel_spread,
        average_w: (window_watts.len() > 1).then(|| relative_spread(&window_watts)),
        source: UncertaintySource::WithinRun,
    })
}

/// One run's figures of a point.
#[derive(Clone, Debug, PartialEq)]
pub struct Side {
    pub device: String,
    pub simulated: bool,
    pub joules_per_flop: f64,
    pub tflops: f64,
    pub average_w: Option<f64>,
    pub runs: usize,
    pub uncertainty: Uncertainty,
    /// Caution flags of any of its records.
    pub flags: Vec<String>,
}

impl Side {
    fn of(runs: &[&Record], device: String) -> Option<Side> {
        let uncertainty = point_uncertainty(runs)?;
        let med = |f: &dyn Fn(&Record) -> Option<f64>| {
            let v: Vec<f64> = runs.iter().filter_map(|r| f(r)).collect();
            (!v.is_empty()).then(|| median(&v))
        };
        let mut flags: Vec<String> = runs
            .iter()
            .flat_map(|r| r.flags_now())
            .filter(|f| f.is_caution())
            .map(|f| f.name().to_string())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        flags.dedup();
        Some(Side {
            device,
            simulated: runs.iter().any(|r| r.simulated),
            joules_per_flop: med(&|r| {
                r.measurement
                    .as_ref()?
                    .summary
                    .joules_per_flop
                    .map(|j| j.median)
            })?,
            tflops: med(&|r| Some(r.measurement.as_ref()?.summary.tflops))?,
            average_w: med(&|r| r.measurement.as_ref()?.summary.average_w),
            runs: runs.len(),
            uncertainty,
            flags,
        })
    }
}

/// The change of one figure from the old run to the new.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Change {
    /// new / old − 1.
    pub relative: f64,
    /// Both runs' relative uncertainties added: a change within it is noise.
    pub noise: f64,
}

impl Change {
    fn of(old: f64, new: f64, old_u: f64, new_u: f64) -> Change {
        Change {
            relative: new / old - 1.0,
            noise: old_u + new_u,
        }
    }

    pub fn significant(&self) -> bool {
        self.relative.abs() > self.noise
    }
}

/// What a point's changes add up to. Order: how a diff lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// Significantly more energy per FLOP or less throughput, nothing better.
    Regression,
    /// One of the two better, the other worse, both significantly.
    Mixed,
    /// Significantly less energy per FLOP or more throughput, nothing worse.
    Improvement,
    /// Every change within the runs' uncertainty.
    Same,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Regression => "REGRESSION",
            Verdict::Mixed => "mixed",
            Verdict::Improvement => "improved",
            Verdict::Same => "same",
        }
    }
}

/// A point measured in both runs.
#[derive(Clone, Debug, PartialEq)]
pub struct PointDiff {
    pub workload: String,
    pub kernel: String,
    pub precision: String,
    pub batch_size: u64,
    pub cap: String,
    pub clocks: String,
    pub old: Side,
    pub new: Side,
    pub energy: Change,
    pub throughput: Change,
    pub power: Option<Change>,
}

impl PointDiff {
    /// "matmul 8192x8192x8192 cublas bf16", with batch, cap and clocks where not the defaults.
    pub fn label(&self) -> String {
        let mut s = format!("{} {} {}", self.workload, self.kernel, self.precision);
        if self.batch_size != 1 {
            s += &format!(" batch {}", self.batch_size);
        }
        if self.cap != "default" {
            s += &format!(" cap {}", self.cap);
        }
        if self.clocks != "default" {
            s += &format!(" clocks {}", self.clocks);
        }
        s
    }

    /// How much worse the point got, as a fraction (0 where it did not): more
    /// energy per FLOP or less throughput, whichever is larger, counted only where
    /// significant.
    pub fn regression(&self) -> f64 {
        let energy = if self.energy.significant() {
            self.energy.relative.max(0.0)
        } else {
            0.0
        };
        // throughput falling by x% is a regression of x%
        let throughput = if self.throughput.significant() {
            (-self.throughput.relative).max(0.0)
        } else {
            0.0
        };
        energy.max(throughput)
    }

    fn improvement(&self) -> bool {
        (self.energy.significant() && self.energy.relative < 0.0)
            || (self.throughput.significant() && self.throughput.relative > 0.0)
    }

    pub fn verdict(&self) -> Verdict {
        match (self.regression() > 0.0, self.improvement()) {
            (true, false) => Verdict::Regression,
            (true, true) => Verdict::Mixed,
            (false, true) => Verdict::Improvement,
            (false, false) => Verdict::Same,
        }
    }
}

/// A point of one run that the other has not measured (or not with energy).
#[derive(Clone, Debug, PartialEq)]
pub struct Unmatched {
    pub in_old: bool,
    pub device: String,
    pub workload: String,
    pub kernel: String,
    pub precision: String,
    pub batch_size: u64,
    pub cap: String,
    pub clocks: String,
}

impl Unmatched {
    fn of(r: &Record, device: &str, in_old: bool) -> Unmatched {
        Unmatched {
            in_old,
            device: device.to_string(),
            workload: r.group.clone(),
            kernel: r.kernel.clone(),
            precision: r.precision.to_string(),
            batch_size: r.batch_size,
            cap: r.power_cap.requested.to_string(),
            clocks: r.clocks.requested_label(),
        }
    }
}

/// The whole diff: matched points, regressions first, and what matched nothing.
#[derive(Clone, Debug, PartialEq)]
pub struct Diff {
    pub points: Vec<PointDiff>,
    pub unmatched: Vec<Unmatched>,
    pub old_devices: Vec<String>,
    pub new_devices: Vec<String>,
    /// Points are matched across devices (each run measured one device).
    pub across_devices: bool,
}

impl Diff {
    /// Points whose significant regression exceeds `threshold` (0.02 for 2%).
    pub fn regressions_beyond(&self, threshold: f64) -> Vec<&PointDiff> {
        self.points
            .iter()
            .filter(|p| p.regression() > threshold)
            .collect()
    }

    pub fn count(&self, v: Verdict) -> usize {
        self.points.iter().filter(|p| p.verdict() == v).count()
    }
}

/// What a point is, without its device: kernel, precision, shape, batch, cap, clocks.
fn point_label(r: &Record) -> String {
    format!(
        "{} {} {} batch {} cap {} clocks {}",
        r.group,
        r.kernel,
        r.precision,
        r.batch_size,
        r.power_cap.requested,
        r.clocks.requested_label()
    )
}

struct Grouped {
    /// match key → (device label, the point's records)
    points: BTreeMap<String, (String, Vec<usize>)>,
    devices: Vec<String>,
}

fn group(records: &[Record], with_device: bool) -> Grouped {
    let labels = device_labels(records);
    let physical = physical_keys(records);
    let mut points: BTreeMap<String, (String, Vec<usize>)> = BTreeMap::new();
    let mut devices: Vec<String> = Vec::new();
    for (i, r) in records.iter().enumerate() {
        if !r.has_energy() {
            continue;
        }
        let device = labels
            .get(&physical[i])
            .cloned()
            .unwrap_or_else(|| r.device.name.clone());
        if !devices.contains(&device) {
            devices.push(device.clone());
        }
        let key = if with_device {
            format!("{device} | {}", point_label(r))
        } else {
            point_label(r)
        };
        points.entry(key).or_insert((device, Vec::new())).1.push(i);
    }
    Grouped { points, devices }
}

fn devices_of(records: &[Record]) -> Vec<String> {
    group(records, false).devices
}

/// Match the points of `old` and `new`. Where each run measured one device, points
/// match across devices (two cards, or one card before and after a change);
/// otherwise only points of the same device match.
pub fn diff(old: &[Record], new: &[Record]) -> Diff {
    let (old_devices, new_devices) = (devices_of(old), devices_of(new));
    let across_devices = old_devices.len() <= 1 && new_devices.len() <= 1;
    let (o, n) = (group(old, !across_devices), group(new, !across_devices));
    let mut points = Vec::new();
    let mut unmatched = Vec::new();
    for (key, (device, idx)) in &o.points {
        let Some((new_device, new_idx)) = n.points.get(key) else {
            unmatched.push(Unmatched::of(&old[idx[0]], device, true));
            continue;
        };
        let old_runs: Vec<&Record> = idx.iter().map(|&i| &old[i]).collect();
        let new_runs: Vec<&Record> = new_idx.iter().map(|&i| &new[i]).collect();
        let (Some(a), Some(b)) = (
            Side::of(&old_runs, device.clone()),
            Side::of(&new_runs, new_device.clone()),
        ) else {
            continue;
        };
        let r = old_runs[0];
        let power = match (
            a.average_w,
            b.average_w,
            a.uncertainty.average_w,
            b.uncertainty.average_w,
        ) {
            (Some(x), Some(y), ux, uy) => {
                Some(Change::of(x, y, ux.unwrap_or(0.0), uy.unwrap_or(0.0)))
            }
            _ => None,
        };
        points.push(PointDiff {
            workload: r.group.clone(),
            kernel: r.kernel.clone(),
            precision: r.precision.to_string(),
            batch_size: r.batch_size,
            cap: r.power_cap.requested.to_string(),
            clocks: r.clocks.requested_label(),
            energy: Change::of(
                a.joules_per_flop,
                b.joules_per_flop,
                a.uncertainty.joules_per_flop,
                b.uncertainty.joules_per_flop,
            ),
            throughput: Change::of(
                a.tflops,
                b.tflops,
                a.uncertainty.tflops,
                b.uncertainty.tflops,
            ),
            power,
            old: a,
            new: b,
        });
    }
    for (key, (device, idx)) in &n.points {
        if !o.points.contains_key(key) {
            unmatched.push(Unmatched::of(&new[idx[0]], device, false));
        }
    }
    // regressions first, the worst on top; then mixed, improvements, the same
    points.sort_by(|a, b| {
        a.verdict()
            .cmp(&b.verdict())
            .then(b.regression().total_cmp(&a.regression()))
            .then(a.energy.relative.total_cmp(&b.energy.relative))
    });
    Diff {
        points,
        unmatched,
        old_devices,
        new_devices,
        across_devices,
    }
}

/// A relative change with enough digits that a significant one never reads "+0.0%".
fn change_pct(x: f64) -> String {
    if x != 0.0 && x.abs() < 0.001 {
        format!("{:+.2}%", x * 100.0)
    } else {
        pct(x)
    }
}

fn change_cell(c: &Change) -> String {
    if c.significant() {
        change_pct(c.relative)
    } else {
        format!("{} (noise)", change_pct(c.relative))
    }
}

/// The diff as one table: a row per matched point (regressions first), then each
/// point only one run has.
pub fn diff_table(d: &Diff, old_name: &str, new_name: &str) -> Table {
    let mut t = Table::new(
        format!("Changes from {old_name} (old) to {new_name} (new), regressions first"),
        &[
            "status",
            "device",
            "workload",
            "kernel",
            "precision",
            "batch",
            "power cap",
            "clocks",
            "energy old (pJ/FLOP)",
            "energy new (pJ/FLOP)",
            "energy change",
            "throughput old (TFLOP/s)",
            "throughput new (TFLOP/s)",
            "throughput change",
            "avg power old (W)",
            "avg power new (W)",
            "avg power change",
            "noise (energy, ±)",
            "flags old / new",
        ],
    );
    let sim = d.points.iter().any(|p| p.old.simulated || p.new.simulated);
    if sim {
        t.notes.push(
            "SIMULATED DATA: some or all figures come from joulebench's model device, not from a measurement."
                .into(),
        );
    }
    if d.across_devices && d.old_devices != d.new_devices {
        t.notes.push(format!(
            "Two devices: old {} against new {}; points match by kernel, precision, shape, batch, cap and clocks.",
            d.old_devices.join(", "),
            d.new_devices.join(", ")
        ));
    }
    t.notes.push(format!(
        "{} matched points: {} regressions, {} mixed, {} improved, {} the same within noise; {} only in one run.",
        d.points.len(),
        d.count(Verdict::Regression),
        d.count(Verdict::Mixed),
        d.count(Verdict::Improvement),
        d.count(Verdict::Same),
        d.unmatched.len()
    ));
    let within = d.points.iter().any(|p| {
        p.old.uncertainty.source == UncertaintySource::WithinRun
            || p.new.uncertainty.source == UncertaintySource::WithinRun
    });
    t.notes.push(format!(
        "A change is significant only beyond both runs' uncertainty added (the noise column, for energy); \
         \"(noise)\" marks one within it. Uncertainty is the run-to-run spread where a point was repeated (sweep --repeat){}. \
         A regression is more energy per FLOP or less throughput; average power is shown, not judged.",
        if within {
            ", else the spread within its one run, which understates it"
        } else {
            ""
        }
    ));
    for p in &d.points {
        let device = if p.old.device == p.new.device {
            p.old.device.clone()
        } else {
            format!("{} → {}", p.old.device, p.new.device)
        };
        let flags = |s: &Side| {
            if s.flags.is_empty() {
                "–".to_string()
            } else {
                s.flags.join(" ")
            }
        };
        t.push(vec![
            p.verdict().name().into(),
            device,
            p.workload.clone(),
            p.kernel.clone(),
            p.precision.clone(),
            p.batch_size.to_string(),
            p.cap.clone(),
            p.clocks.clone(),
            sig(p.old.joules_per_flop * 1e12, 3),
            sig(p.new.joules_per_flop * 1e12, 3),
            change_cell(&p.energy),
            sig(p.old.tflops, 3),
            sig(p.new.tflops, 3),
            change_cell(&p.throughput),
            p.old.average_w.map_or("–".into(), |w| sig(w, 3)),
            p.new.average_w.map_or("–".into(), |w| sig(w, 3)),
            p.power.as_ref().map_or("–".into(), change_cell),
            change_pct(p.energy.noise)
                .trim_start_matches('+')
                .to_string(),
            format!("{} / {}", flags(&p.old), flags(&p.new)),
        ]);
    }
    for u in &d.unmatched {
        let mut row = vec![
            if u.in_old {
                "only in old"
            } else {
                "only in new"
            }
            .to_string(),
            u.device.clone(),
            u.workload.clone(),
            u.kernel.clone(),
            u.precision.clone(),
            u.batch_size.to_string(),
            u.cap.clone(),
            u.clocks.clone(),
        ];
        row.resize(t.headers.len(), "–".into());
        t.push(row);
    }
    t.drop_uninformative_columns(&["device", "batch", "power cap", "clocks", "flags old / new"]);
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::rec;
    use joulebench_core::Precision;

    /// A record whose J/FLOP and time have `spread` across its windows.
    fn point(device: &str, p: Precision, tflops: f64, pj: f64, spread: f64) -> Record {
        let mut r = rec(device, false, p, "default", tflops, pj);
        if let Some(m) = r.measurement.as_mut() {
            if let Some(j) = m.summary.joules_per_flop.as_mut() {
                j.rel_spread = spread;
            }
            m.summary.seconds_per_op.rel_spread = spread;
        }
        r
    }

    #[test]
    fn a_change_counts_only_beyond_both_runs_noise() {
        // 1% noise each side: 3% more energy is a regression, 1.5% is noise
        let old = vec![
            point("A", Precision::Bf16, 600.0, 1.00, 0.01),
            point("A", Precision::F16, 600.0, 1.00, 0.01),
        ];
        let new = vec![
            point("A", Precision::Bf16, 600.0, 1.03, 0.01),
            point("A", Precision::F16, 600.0, 1.015, 0.01),
        ];
        let d = diff(&old, &new);
        assert_eq!(d.points.len(), 2);
        assert_eq!(d.points[0].precision, "bf16", "the regression comes first");
        assert_eq!(d.points[0].verdict(), Verdict::Regression);
        assert!((d.points[0].regression() - 0.03).abs() < 1e-9);
        assert_eq!(d.points[1].verdict(), Verdict::Same);
        assert_eq!(d.regressions_beyond(0.02).len(), 1);
        assert_eq!(d.regressions_beyond(0.05).len(), 0);
    }

    #[test]
    fn throughput_lost_is_a_regression_and_gained_an_improvement() {
        let old = vec![
            point("A", Precision::Bf16, 600.0, 1.0, 0.001),
            point("A", Precision::F16, 600.0, 1.0, 0.001),
            point("A", Precision::F32, 60.0, 10.0, 0.001),
        ];
        let new = vec![
            point("A", Precision::Bf16, 540.0, 1.0, 0.001),
            point("A", Precision::F16, 660.0, 0.95, 0.001),
            point("A", Precision::F32, 66.0, 10.5, 0.001),
        ];
        let d = diff(&old, &new);
        let v: Vec<(&str, Verdict)> = d
            .points
            .iter()
            .map(|p| (p.precision.as_str(), p.verdict()))
            .collect();
        assert_eq!(
            v,
            [
                ("bf16", Verdict::Regression),
                ("f32", Verdict::Mixed),
                ("f16", Verdict::Improvement)
            ]
        );
        assert!((d.points[0].regression() - 0.10).abs() < 1e-9);
    }

    #[test]
    fn repeats_give_run_to_run_noise() {
        let mut old: Vec<Record> = [1.00, 1.04, 0.96]
            .iter()
            .map(|&pj| point("A", Precision::Bf16, 600.0, pj, 0.001))
            .collect();
        for (i, r) in old.iter_mut().enumerate() {
            r.repeat = Some(i as u32 + 1);
        }
        let u = point_uncertainty(&old.iter().collect::<Vec<_>>()).unwrap();
        assert_eq!(u.source, UncertaintySource::RunToRun);
        assert!((u.joules_per_flop - 0.04).abs() < 1e-9, "{u:?}");
        // 3% more energy is within 4% + 0.1% of noise
        let new = vec![point("A", Precision::Bf16, 600.0, 1.03, 0.001)];
        let d = diff(&old, &new);
        assert_eq!(d.points[0].verdict(), Verdict::Same);
    }

    #[test]
    fn two_cards_match_across_devices_and_unmatched_points_are_listed() {
        let old = vec![
            point("H100", Precision::Bf16, 600.0, 1.2, 0.001),
            point("H100", Precision::Fp8E4m3, 900.0, 0.7, 0.001),
        ];
        let new = vec![
            point("H200", Precision::Bf16, 660.0, 1.1, 0.001),
            point("H200", Precision::F32, 60.0, 12.0, 0.001),
        ];
        let d = diff(&old, &new);
        assert!(d.across_devices);
        assert_eq!(d.points.len(), 1);
        assert_eq!(d.points[0].verdict(), Verdict::Improvement);
        assert_eq!(d.unmatched.len(), 2);
        let t = diff_table(&d, "h100.jsonl", "h200.jsonl");
        let status: Vec<&str> = t.rows.iter().map(|r| r[0].as_str()).collect();
        assert_eq!(status, ["improved", "only in old", "only in new"]);
        assert!(t.notes.iter().any(|n| n.contains("Two devices")), "{t:?}");
        let col = t.headers.iter().position(|h| h == "device").unwrap();
        assert_eq!(t.rows[0][col], "H100 → H200");
    }
}
