//! Two runs side by side, point by point (as nvbench's `nvbench_compare`): after a
//! driver update, a kernel change, or between two cards. A change counts only where
//! it is larger than both runs' uncertainty together, so noise never reads as a
//! regression, and regressions come first so CI can fail on them.

use crate::digest::{Devices, FlagSet, MaybeF64, Strings};
use crate::format::{pct, sig};
use crate::table::Table;
use joulebench_core::protocol::ValidityFlag;
use joulebench_core::record::Record;
use joulebench_core::stats::{median, relative_spread};
use joulebench_core::Precision;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

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
    let runs: Vec<DiffRun> = runs.iter().filter_map(|r| DiffRun::of(r, 0)).collect();
    uncertainty_of(&runs.iter().collect::<Vec<_>>())
}

/// [`point_uncertainty`] of the runs a diff kept.
fn uncertainty_of(runs: &[&DiffRun]) -> Option<Uncertainty> {
    if runs.is_empty() {
        return None;
    }
    if runs.len() > 1 {
        let spread = |f: &dyn Fn(&DiffRun) -> Option<f64>| {
            let v: Vec<f64> = runs.iter().filter_map(|r| f(r)).collect();
            (v.len() > 1).then(|| relative_spread(&v))
        };
        return Some(Uncertainty {
            joules_per_flop: spread(&|r| Some(r.joules_per_flop))?,
            tflops: spread(&|r| Some(r.tflops))?,
            average_w: spread(&|r| r.average_w.get()),
            source: UncertaintySource::RunToRun,
        });
    }
    let r = runs[0];
    Some(Uncertainty {
        joules_per_flop: r.joules_per_flop_spread,
        tflops: r.seconds_per_op_spread,
        average_w: r.window_w_spread.get(),
        source: UncertaintySource::WithinRun,
    })
}

/// One run of a point, as a diff keeps it.
#[derive(Clone, Debug)]
struct DiffRun {
    /// The record's place among those of its file.
    index: u32,
    joules_per_flop: f64,
    joules_per_flop_spread: f64,
    seconds_per_op_spread: f64,
    tflops: f64,
    average_w: MaybeF64,
    /// The spread of the windows' average power, where it had more than one.
    window_w_spread: MaybeF64,
    cautions: FlagSet,
    simulated: bool,
}

impl DiffRun {
    fn of(r: &Record, index: u32) -> Option<DiffRun> {
        let m = r.measurement.as_ref()?;
        let s = &m.summary;
        let j = s.joules_per_flop?;
        let window_watts: Vec<f64> = m
            .windows
            .iter()
            .filter_map(|w| w.joules.map(|j| j / w.seconds))
            .filter(|w| w.is_finite())
            .collect();
        let cautions: Vec<ValidityFlag> = r
            .flags_now()
            .into_iter()
            .filter(|f| f.is_caution())
            .collect();
        Some(DiffRun {
            index,
            joules_per_flop: j.median,
            joules_per_flop_spread: j.rel_spread,
            seconds_per_op_spread: s.seconds_per_op.rel_spread,
            tflops: s.tflops,
            average_w: MaybeF64::new(s.average_w),
            window_w_spread: MaybeF64::new(
                (window_watts.len() > 1).then(|| relative_spread(&window_watts)),
            ),
            cautions: FlagSet::of(&cautions),
            simulated: r.simulated,
        })
    }
}

/// One run's figures of a point.
#[derive(Clone, Debug, PartialEq)]
pub struct Side {
    pub device: Arc<str>,
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
    fn of(runs: &[&DiffRun], device: Arc<str>) -> Option<Side> {
        let uncertainty = uncertainty_of(runs)?;
        let med = |f: &dyn Fn(&DiffRun) -> Option<f64>| {
            let v: Vec<f64> = runs.iter().filter_map(|r| f(r)).collect();
            (!v.is_empty()).then(|| median(&v))
        };
        let flags: Vec<String> = runs
            .iter()
            .flat_map(|r| r.cautions.flags())
            .map(|f| f.name().to_string())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        Some(Side {
            device,
            simulated: runs.iter().any(|r| r.simulated),
            joules_per_flop: med(&|r| Some(r.joules_per_flop))?,
            tflops: med(&|r| Some(r.tflops))?,
            average_w: med(&|r| r.average_w.get()),
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
    pub workload: Arc<str>,
    pub kernel: Arc<str>,
    pub precision: Arc<str>,
    pub batch_size: u64,
    pub cap: Arc<str>,
    pub clocks: Arc<str>,
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
        if *self.cap != *"default" {
            s += &format!(" cap {}", self.cap);
        }
        if *self.clocks != *"default" {
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
    pub device: Arc<str>,
    pub workload: Arc<str>,
    pub kernel: Arc<str>,
    pub precision: Arc<str>,
    pub batch_size: u64,
    pub cap: Arc<str>,
    pub clocks: Arc<str>,
}

impl Unmatched {
    fn of(p: &Point, in_old: bool) -> Unmatched {
        let h = &p.head;
        Unmatched {
            in_old,
            device: p.device.clone(),
            workload: h.workload.clone(),
            kernel: h.kernel.clone(),
            precision: h.precision.clone(),
            batch_size: h.batch_size,
            cap: h.cap.clone(),
            clocks: h.clocks.clone(),
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

/// What a point is, without its device: its shape (group), kernel, precision,
/// batch, cap and clocks, as its first record gives them (string ids).
type HeadIds = (u32, u32, Precision, u64, u32, u32);

/// The fields of a point its first record gives, as tables show them.
#[derive(Clone, Debug)]
struct PointHead {
    workload: Arc<str>,
    kernel: Arc<str>,
    precision: Arc<str>,
    batch_size: u64,
    cap: Arc<str>,
    clocks: Arc<str>,
}

/// One device's runs of one point.
#[derive(Clone, Debug)]
struct Entry {
    device: u32,
    /// Its first record's place, and what that record says of the point.
    first: u32,
    head: HeadIds,
    runs: Vec<DiffRun>,
}

/// What a diff keeps of one run's records, read one at a time: per device and
/// point, the figures of each of its records with an energy figure.
#[derive(Clone, Debug, Default)]
pub struct DiffDigest {
    devices: Devices,
    strings: Strings,
    entries: Vec<Entry>,
    index: HashMap<(u32, HeadIds), u32>,
    /// Per device: the first record of it with an energy figure.
    first_with_energy: Vec<u32>,
    records: u32,
}

impl DiffDigest {
    pub fn of(records: &[Record]) -> DiffDigest {
        let mut d = DiffDigest::default();
        for r in records {
            d.push(r);
        }
        d
    }

    pub fn push(&mut self, r: &Record) {
        let index = self.records;
        self.records += 1;
        let device = self.devices.id(r);
        if self.first_with_energy.len() <= device as usize {
            self.first_with_energy.resize(device as usize + 1, u32::MAX);
        }
        if !r.has_energy() {
            return;
        }
        let Some(run) = DiffRun::of(r, index) else {
            return;
        };
        let first = &mut self.first_with_energy[device as usize];
        *first = (*first).min(index);
        let head = (
            self.strings.id(&r.group),
            self.strings.id(&r.kernel),
            r.precision,
            r.batch_size,
            self.strings.id(&r.power_cap.requested.to_string()),
            self.strings.id(&r.clocks.requested_label()),
        );
        let at = match self.index.get(&(device, head)) {
            Some(&at) => at as usize,
            None => {
                self.index.insert((device, head), self.entries.len() as u32);
                self.entries.push(Entry {
                    device,
                    first: index,
                    head,
                    runs: Vec::new(),
                });
                self.entries.len() - 1
            }
        };
        let runs = &mut self.entries[at].runs;
        runs.reserve_exact(1);
        runs.push(run);
    }

    /// How tables name each device of this run.
    fn labels(&self) -> Vec<Arc<str>> {
        let physical = self.devices.physical_keys();
        let labels = self.devices.labels(&physical);
        self.devices
            .seen
            .iter()
            .zip(&physical)
            .map(|(d, p)| Arc::from(labels.get(p).unwrap_or(&d.info.name).as_str()))
            .collect()
    }

    /// The devices with an energy figure, by label, in the order they first appear.
    fn devices(&self, labels: &[Arc<str>]) -> Vec<String> {
        let mut ids: Vec<usize> = (0..self.first_with_energy.len())
            .filter(|&i| self.first_with_energy[i] != u32::MAX)
            .collect();
        ids.sort_by_key(|&i| self.first_with_energy[i]);
        let mut out: Vec<String> = Vec::new();
        for i in ids {
            if !out.iter().any(|d| **d == *labels[i]) {
                out.push(labels[i].to_string());
            }
        }
        out
    }

    /// This run's points, each with its figures, its runs let go: what a diff
    /// matches against another run's (see [`diff_sides`]). Read one run, summarise
    /// it, then read the other: one run's records' figures are held at a time.
    pub fn summarise(self) -> DiffSide {
        let labels = self.labels();
        let devices = self.devices(&labels);
        DiffSide {
            devices,
            points: self.points(&labels),
        }
    }

    /// The points by "device | point", each with its figures: a device's entries
    /// of one point join (one GPU through two backends).
    fn points(self, labels: &[Arc<str>]) -> BTreeMap<String, Point> {
        let mut precisions: HashMap<Precision, Arc<str>> = HashMap::new();
        let mut points: BTreeMap<String, Point> = BTreeMap::new();
        for e in self.entries {
            let device = &labels[e.device as usize];
            let (workload, kernel, precision, batch_size, cap, clocks) = e.head;
            let key = format!(
                "{device} | {} {} {} batch {} cap {} clocks {}",
                self.strings.get(workload),
                self.strings.get(kernel),
                precision,
                batch_size,
                self.strings.get(cap),
                self.strings.get(clocks)
            );
            let mut head = || PointHead {
                workload: self.strings.shared(workload),
                kernel: self.strings.shared(kernel),
                precision: precisions
                    .entry(precision)
                    .or_insert_with(|| Arc::from(precision.to_string().as_str()))
                    .clone(),
                batch_size,
                cap: self.strings.shared(cap),
                clocks: self.strings.shared(clocks),
            };
            match points.get_mut(&key) {
                None => {
                    let point = Point {
                        device: device.clone(),
                        head: head(),
                        first: e.first,
                        runs: e.runs,
                        side: None,
                    };
                    points.insert(key, point);
                }
                Some(p) => {
                    // the point's device and fields are its first record's
                    if e.first < p.first {
                        p.first = e.first;
                        p.device = device.clone();
                        p.head = head();
                    }
                    p.runs.extend(e.runs);
                    p.runs.sort_by_key(|r| r.index);
                }
            }
        }
        // each point's figures made, its runs let go, in place
        for p in points.values_mut() {
            let runs = std::mem::take(&mut p.runs);
            let runs: Vec<&DiffRun> = runs.iter().collect();
            p.side = Side::of(&runs, p.device.clone());
        }
        // the runs are gone: their memory goes back before the other run is read
        joulebench_core::memory::give_back_freed();
        points
    }
}

/// A point of one run: its device (as the first of its records names it), what
/// it is, and its figures (none without an uncertainty).
struct Point {
    device: Arc<str>,
    head: PointHead,
    /// Its first record's place.
    first: u32,
    /// Its runs in record order, until its figures are made.
    runs: Vec<DiffRun>,
    side: Option<Side>,
}

/// One run of a diff, summarised: its devices with an energy figure, and its
/// points by "device | point".
pub struct DiffSide {
    devices: Vec<String>,
    points: BTreeMap<String, Point>,
}

impl DiffSide {
    /// The key of the point of `other` that `p` (at `key`) matches: the same key,
    /// or across devices the same point on the device `other` measured (a run whose
    /// points match across devices measured one device).
    fn counterpart(key: &str, p: &Point, other: &DiffSide, across_devices: bool) -> Option<String> {
        if !across_devices {
            return Some(key.to_string());
        }
        let device = &other.points.values().next()?.device;
        Some(format!("{device}{}", &key[p.device.len()..]))
    }
}

/// Match the points of `old` and `new`. Where each run measured one device, points
/// match across devices (two cards, or one card before and after a change);
/// otherwise only points of the same device match.
pub fn diff(old: &[Record], new: &[Record]) -> Diff {
    diff_digests(DiffDigest::of(old), DiffDigest::of(new))
}

/// [`diff`] of two runs' digests.
pub fn diff_digests(old: DiffDigest, new: DiffDigest) -> Diff {
    diff_sides(old.summarise(), new.summarise())
}

/// [`diff`] of two runs summarised ([`DiffDigest::summarise`]).
pub fn diff_sides(old: DiffSide, new: DiffSide) -> Diff {
    let across_devices = old.devices.len() <= 1 && new.devices.len() <= 1;
    let mut points = Vec::new();
    let mut unmatched = Vec::new();
    for (key, a) in &old.points {
        let b =
            DiffSide::counterpart(key, a, &new, across_devices).and_then(|k| new.points.get(&k));
        let Some(b) = b else {
            unmatched.push(Unmatched::of(a, true));
            continue;
        };
        let (Some(x), Some(y)) = (a.side.clone(), b.side.clone()) else {
            continue;
        };
        let h = &a.head;
        let power = match (
            x.average_w,
            y.average_w,
            x.uncertainty.average_w,
            y.uncertainty.average_w,
        ) {
            (Some(p), Some(q), up, uq) => {
                Some(Change::of(p, q, up.unwrap_or(0.0), uq.unwrap_or(0.0)))
            }
            _ => None,
        };
        points.push(PointDiff {
            workload: h.workload.clone(),
            kernel: h.kernel.clone(),
            precision: h.precision.clone(),
            batch_size: h.batch_size,
            cap: h.cap.clone(),
            clocks: h.clocks.clone(),
            energy: Change::of(
                x.joules_per_flop,
                y.joules_per_flop,
                x.uncertainty.joules_per_flop,
                y.uncertainty.joules_per_flop,
            ),
            throughput: Change::of(
                x.tflops,
                y.tflops,
                x.uncertainty.tflops,
                y.uncertainty.tflops,
            ),
            power,
            old: x,
            new: y,
        });
    }
    for (key, b) in &new.points {
        let a =
            DiffSide::counterpart(key, b, &old, across_devices).and_then(|k| old.points.get(&k));
        if a.is_none() {
            unmatched.push(Unmatched::of(b, false));
        }
    }
    let (old_devices, new_devices) = (old.devices, new.devices);
    drop((old.points, new.points));
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
    let mut t = diff_table_head(d, old_name, new_name);
    let width = t.headers.len();
    for row in diff_rows(d, width) {
        t.push(row);
    }
    t.drop_uninformative_columns(&DIFF_DROPPABLE);
    t
}

/// The columns a diff table drops where every row says the same.
pub const DIFF_DROPPABLE: [&str; 5] = ["device", "batch", "power cap", "clocks", "flags old / new"];

/// [`diff_table`]'s title, notes and headers, before its uniform columns are dropped.
pub fn diff_table_head(d: &Diff, old_name: &str, new_name: &str) -> Table {
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
    t
}

/// [`diff_table`]'s rows, one at a time (a fleet's campaign has one per setting),
/// before its uniform columns are dropped; `width`: the number of headers.
pub fn diff_rows(d: &Diff, width: usize) -> impl Iterator<Item = Vec<String>> + '_ {
    let matched = d.points.iter().map(|p| {
        let device = if p.old.device == p.new.device {
            p.old.device.to_string()
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
        vec![
            p.verdict().name().into(),
            device,
            p.workload.to_string(),
            p.kernel.to_string(),
            p.precision.to_string(),
            p.batch_size.to_string(),
            p.cap.to_string(),
            p.clocks.to_string(),
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
        ]
    });
    let unmatched = d.unmatched.iter().map(move |u| {
        let mut row = vec![
            if u.in_old {
                "only in old"
            } else {
                "only in new"
            }
            .to_string(),
            u.device.to_string(),
            u.workload.to_string(),
            u.kernel.to_string(),
            u.precision.to_string(),
            u.batch_size.to_string(),
            u.cap.to_string(),
            u.clocks.to_string(),
        ];
        row.resize(width, "–".into());
        row
    });
    matched.chain(unmatched)
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
        assert_eq!(
            &*d.points[0].precision, "bf16",
            "the regression comes first"
        );
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
            .map(|p| (&*p.precision, p.verdict()))
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
