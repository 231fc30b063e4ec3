//! Recommendations (DESIGN.md §7): for each device and workload, the Pareto front
//! over (time, energy) of every valid setting, the setting an objective picks, and
//! the best setting of each precision beside it (precision is a numerics decision,
//! not only an energy one) — each with energy saved and slowdown against a baseline
//! the user names: what they run today (by default the vendor kernel at bf16 at
//! the default power limit).
//!
//! Settings are compared per FLOP (seconds/FLOP, joules/FLOP), because a workload
//! group spans batch sizes and a bigger batch does more work per op.

use crate::format::{opt, pct, sig};
use crate::repeats::{group_settings, RunSpread};
use crate::table::Table;
use joulebench_core::identity::same_physical_device;
use joulebench_core::protocol::ValidityFlag;
use joulebench_core::record::Record;
use joulebench_core::stats::median;
use joulebench_core::Precision;
use std::collections::BTreeMap;

/// What "best" means.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Objective {
    /// Fewest joules per FLOP, whatever the time.
    LeastEnergy,
    /// Fewest joules per FLOP among settings at most `max_slowdown` (0.1 = 10%)
    /// slower than the fastest valid setting.
    WithinSlowdown { max_slowdown: f64 },
    /// Smallest energy × delay (J/FLOP × s/FLOP).
    EnergyDelay,
    /// Zeus's cost η·E + (1−η)·P_max·T; η = 1 is least energy, η = 0 least time.
    /// `max_power_w`: P_max, by default the device's default power limit.
    ZeusCost { eta: f64, max_power_w: Option<f64> },
}

impl Objective {
    pub fn describe(&self) -> String {
        match self {
            Objective::LeastEnergy => "least energy".into(),
            Objective::WithinSlowdown { max_slowdown } => {
                format!(
                    "least energy within {:.0}% of the fastest",
                    max_slowdown * 100.0
                )
            }
            Objective::EnergyDelay => "least energy × delay".into(),
            Objective::ZeusCost { eta, .. } => {
                format!("least Zeus cost η·E + (1−η)·P_max·T, η = {eta}")
            }
        }
    }
}

/// One measured setting, normalised per FLOP.
#[derive(Clone, Debug, PartialEq)]
pub struct Setting {
    pub kernel: String,
    /// A vendor library's kernel (cuBLAS, cuBLASLt), not one of ours.
    pub vendor: bool,
    pub backend: String,
    pub precision: Precision,
    pub batch_size: u64,
    /// "default", "80%", "300W" as requested.
    pub cap: String,
    /// Watts the cap meant (requested, else enforced).
    pub cap_w: Option<f64>,
    pub is_default_cap: bool,
    /// The locked SM clock, MHz; `None`: the default clocks.
    pub sm_clock_mhz: Option<u32>,
    /// The locked memory clock, MHz; `None`: the default.
    pub mem_clock_mhz: Option<u32>,
    /// The SM clock seen while it ran (median), MHz.
    pub sm_clock_seen_mhz: Option<f64>,
    /// The device's highest SM clock, MHz, where the records say.
    pub sm_clock_max_mhz: Option<u32>,
    pub seconds_per_flop: f64,
    pub joules_per_flop: f64,
    pub tflops: f64,
    pub average_w: Option<f64>,
    /// Flags that ask for caution (every record's, for repeats).
    pub flags: Vec<String>,
    /// The card sat at its power limit: information, not a caution.
    pub power_limited: bool,
    pub default_limit_w: Option<f64>,
    /// Index of the (first) record this setting came from, in the slice given to
    /// [`recommend`]: how a caller finds its source file and device.
    pub record: usize,
    /// Runs of this setting (`--repeat`) and how much they agree.
    pub runs: usize,
    pub run_to_run_spread: Option<f64>,
}

impl Setting {
    /// `index`: the record's position in the caller's slice (see [`Setting::record`]).
    pub fn from_record(r: &Record, index: usize) -> Option<Setting> {
        Setting::from_runs(&[r], index)
    }

    /// One setting from its repeats (all records of one setting key): medians of
    /// their medians, every caution flag any of them carries.
    pub fn from_runs(runs: &[&Record], first_index: usize) -> Option<Setting> {
        let r = *runs.first()?;
        let measured: Vec<&Record> = runs.iter().copied().filter(|r| r.has_energy()).collect();
        if measured.is_empty() {
            return None;
        }
        let med = |f: &dyn Fn(&Record) -> Option<f64>| -> Option<f64> {
            let v: Vec<f64> = measured.iter().filter_map(|r| f(r)).collect();
            (!v.is_empty()).then(|| median(&v))
        };
        let spread = RunSpread::of(&measured)?;
        let seconds_per_op = med(&|r| Some(r.measurement.as_ref()?.summary.seconds_per_op.median))?;
        let mut flags: Vec<ValidityFlag> = measured
            .iter()
            .flat_map(|r| r.flags_now())
            .filter(|f| f.is_caution())
            .collect();
        flags.sort();
        flags.dedup();
        Some(Setting {
            kernel: r.kernel.clone(),
            vendor: r.vendor_kernel,
            backend: r.backend.clone(),
            precision: r.precision,
            batch_size: r.batch_size,
            cap: r.power_cap.requested.to_string(),
            cap_w: r.power_cap.requested_w.or(r.power_cap.enforced_w),
            // a "default" point run at a limit that was not the default is no baseline
            is_default_cap: r.power_cap.requested.is_default()
                && !measured.iter().any(|r| {
                    r.flags.contains(&ValidityFlag::CapNotDefault)
                        || r.flags.contains(&ValidityFlag::ClocksNotDefault)
                }),
            sm_clock_mhz: r.clocks.sm_requested_mhz,
            mem_clock_mhz: r.clocks.mem_requested_mhz,
            sm_clock_seen_mhz: med(&|r| r.clocks.sm_seen_mhz_median),
            sm_clock_max_mhz: r.clocks.sm_max_mhz,
            seconds_per_flop: seconds_per_op / r.flop as f64,
            joules_per_flop: spread.joules_per_flop,
            tflops: r.flop as f64 / seconds_per_op / 1e12,
            average_w: med(&|r| r.measurement.as_ref()?.summary.average_w),
            flags: flags.iter().map(|f| f.name().to_string()).collect(),
            power_limited: measured
                .iter()
                .any(|r| r.flags_now().contains(&ValidityFlag::PowerLimited)),
            default_limit_w: r.power_cap.default_w,
            record: first_index,
            runs: spread.runs,
            run_to_run_spread: spread.run_to_run,
        })
    }

    pub fn picojoules_per_flop(&self) -> f64 {
        self.joules_per_flop * 1e12
    }

    pub fn cap_label(&self) -> String {
        match self.cap_w {
            Some(w) if self.cap != format!("{w}W") => format!("{} ({w:.0} W)", self.cap),
            Some(w) => format!("{w:.0} W"),
            None => self.cap.clone(),
        }
    }

    /// "cublas bf16", "cublas bf16 b4" (the batch where it is not 1).
    pub fn label(&self) -> String {
        if self.batch_size == 1 {
            format!("{} {}", self.kernel, self.precision)
        } else {
            format!("{} {} b{}", self.kernel, self.precision, self.batch_size)
        }
    }

    /// "default" or "1410 MHz" (with the memory clock where it was locked).
    pub fn clock_label(&self) -> String {
        match (self.sm_clock_mhz, self.mem_clock_mhz) {
            (None, None) => "default".into(),
            (Some(sm), None) => format!("{sm} MHz"),
            (None, Some(mem)) => format!("default, mem {mem} MHz"),
            (Some(sm), Some(mem)) => format!("{sm} MHz, mem {mem} MHz"),
        }
    }
}

/// What every row is compared with: the setting the user runs today. Unset parts
/// are free; the baseline always runs at the default power limit and clocks.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BaselineSpec {
    pub kernel: Option<String>,
    pub precision: Option<Precision>,
    pub batch_size: Option<u64>,
}

impl BaselineSpec {
    /// "kernel=cublas,precision=bf16" (keys kernel, precision, batch).
    pub fn parse(s: &str) -> Result<BaselineSpec, String> {
        let mut spec = BaselineSpec::default();
        for item in s.split(',').map(str::trim).filter(|x| !x.is_empty()) {
            let (key, value) = item.split_once('=').ok_or_else(|| {
                format!("baseline '{item}' is not key=value (kernel=…, precision=…, batch=…)")
            })?;
            let value = value.trim();
            match key.trim() {
                "kernel" => spec.kernel = Some(value.to_string()),
                "precision" => {
                    spec.precision = Some(value.parse().map_err(|e| format!("baseline: {e}"))?)
                }
                "batch" | "batch_size" => {
                    spec.batch_size =
                        Some(value.parse().map_err(|_| {
                            format!("baseline batch '{value}' is not a whole number")
                        })?)
                }
                other => {
                    return Err(format!(
                        "unknown baseline key '{other}': expected kernel, precision or batch"
                    ))
                }
            }
        }
        Ok(spec)
    }

    pub fn is_default(&self) -> bool {
        *self == BaselineSpec::default()
    }

    /// How tables and settings files name it.
    pub fn describe(&self) -> String {
        if self.is_default() {
            return "the vendor kernel at bf16 at the default power limit and clocks (else the first valid setting)".into();
        }
        let mut parts = Vec::new();
        if let Some(k) = &self.kernel {
            parts.push(k.clone());
        }
        if let Some(p) = self.precision {
            parts.push(p.to_string());
        }
        if let Some(b) = self.batch_size {
            parts.push(format!("batch {b}"));
        }
        format!("{} at the default power limit and clocks", parts.join(" "))
    }

    fn matches(&self, s: &Setting) -> bool {
        s.is_default_cap
            && s.sm_clock_mhz.is_none()
            && s.mem_clock_mhz.is_none()
            && self.kernel.as_ref().is_none_or(|k| *k == s.kernel)
            && self.precision.is_none_or(|p| p == s.precision)
            && self.batch_size.is_none_or(|b| b == s.batch_size)
    }

    /// The baseline among `settings`: the named one at the default limit (the same
    /// batch as `near` where measured, else the smallest); with nothing named, the
    /// vendor kernel at bf16, else the first valid setting at the default limit.
    /// `None` when no setting at the default limit matches.
    fn find(&self, settings: &[Setting], near: &Setting) -> Option<usize> {
        let pick = |candidates: Vec<usize>| -> Option<usize> {
            candidates
                .iter()
                .copied()
                .find(|&i| settings[i].batch_size == near.batch_size)
                .or_else(|| {
                    candidates
                        .iter()
                        .copied()
                        .min_by_key(|&i| settings[i].batch_size)
                })
        };
        let named: Vec<usize> = (0..settings.len())
            .filter(|&i| self.matches(&settings[i]))
            .collect();
        if !self.is_default() {
            return pick(named);
        }
        let vendor_bf16: Vec<usize> = named
            .iter()
            .copied()
            .filter(|&i| settings[i].vendor && settings[i].precision == Precision::Bf16)
            .collect();
        pick(vendor_bf16).or_else(|| named.first().copied())
    }
}

/// Indices of the settings no other setting beats on both time and energy.
/// Identical settings are all kept.
pub fn pareto_front(settings: &[Setting]) -> Vec<usize> {
    let dominated = |i: usize| {
        let (a, b) = (&settings[i], settings);
        b.iter().any(|o| {
            o.seconds_per_flop <= a.seconds_per_flop
                && o.joules_per_flop <= a.joules_per_flop
                && (o.seconds_per_flop < a.seconds_per_flop
                    || o.joules_per_flop < a.joules_per_flop)
        })
    };
    let mut idx: Vec<usize> = (0..settings.len()).filter(|&i| !dominated(i)).collect();
    idx.sort_by(|&x, &y| {
        settings[x]
            .seconds_per_flop
            .total_cmp(&settings[y].seconds_per_flop)
    });
    idx
}

/// Pick the index of the setting `objective` prefers; None for an empty slice.
pub fn choose(settings: &[Setting], objective: Objective) -> Option<usize> {
    let fastest = settings
        .iter()
        .map(|s| s.seconds_per_flop)
        .fold(f64::INFINITY, f64::min);
    let score = |s: &Setting| -> Option<f64> {
        match objective {
            Objective::LeastEnergy => Some(s.joules_per_flop),
            Objective::WithinSlowdown { max_slowdown } => (s.seconds_per_flop
                <= fastest * (1.0 + max_slowdown) * (1.0 + 1e-12))
                .then_some(s.joules_per_flop),
            Objective::EnergyDelay => Some(s.joules_per_flop * s.seconds_per_flop),
            Objective::ZeusCost { eta, max_power_w } => {
                let p_max = max_power_w
                    .or(s.default_limit_w)
                    .or(s.average_w)
                    .unwrap_or(0.0);
                Some(eta * s.joules_per_flop + (1.0 - eta) * p_max * s.seconds_per_flop)
            }
        }
    };
    // ties: the faster setting wins
    settings
        .iter()
        .enumerate()
        .filter_map(|(i, s)| score(s).map(|v| (i, v)))
        .min_by(|a, b| {
            a.1.total_cmp(&b.1).then(
                settings[a.0]
                    .seconds_per_flop
                    .total_cmp(&settings[b.0].seconds_per_flop),
            )
        })
        .map(|(i, _)| i)
}

/// The recommendation for one device and workload.
#[derive(Clone, Debug, PartialEq)]
pub struct Recommendation {
    pub device: String,
    pub simulated: bool,
    pub workload: String,
    pub settings: Vec<Setting>,
    pub chosen: usize,
    pub front: Vec<usize>,
    /// What the user runs today (see [`BaselineSpec`]), if measured.
    pub baseline: Option<usize>,
    /// The objective's choice within each precision measured, in precision order.
    pub per_precision: Vec<usize>,
}

impl Recommendation {
    pub fn chosen(&self) -> &Setting {
        &self.settings[self.chosen]
    }

    pub fn baseline(&self) -> Option<&Setting> {
        self.baseline.map(|i| &self.settings[i])
    }

    /// 1 − E_chosen / E_baseline.
    pub fn energy_saved(&self) -> Option<f64> {
        self.energy_saved_of(self.chosen)
    }

    /// T_chosen / T_baseline − 1.
    pub fn slowdown(&self) -> Option<f64> {
        self.slowdown_of(self.chosen)
    }

    /// 1 − E / E_baseline for setting `i`.
    pub fn energy_saved_of(&self, i: usize) -> Option<f64> {
        self.baseline()
            .map(|b| 1.0 - self.settings[i].joules_per_flop / b.joules_per_flop)
    }

    /// T / T_baseline − 1 for setting `i`.
    pub fn slowdown_of(&self, i: usize) -> Option<f64> {
        self.baseline()
            .map(|b| self.settings[i].seconds_per_flop / b.seconds_per_flop - 1.0)
    }
}

/// What one recommendation covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupBy {
    /// One physical (or simulated) device: its UUID or PCI id tells two boards apart.
    Device,
    /// One device model (its name): boards of the same model on several machines are
    /// pooled, which is what a launcher that only knows the GPU's name can use.
    Model,
}

/// Group valid records by device and workload and pick a setting in each, against
/// the default baseline.
pub fn recommend(records: &[Record], objective: Objective) -> Vec<Recommendation> {
    recommend_by(records, objective, GroupBy::Device)
}

/// [`recommend`] with a choice of grouping, against the default baseline.
pub fn recommend_by(records: &[Record], objective: Objective, by: GroupBy) -> Vec<Recommendation> {
    recommend_with(records, objective, by, &BaselineSpec::default())
}

/// [`recommend`] with a choice of grouping and baseline. With [`GroupBy::Model`]
/// the baseline is looked for on the chosen setting's own board first, then on
/// any board of the model.
pub fn recommend_with(
    records: &[Record],
    objective: Objective,
    by: GroupBy,
    baseline: &BaselineSpec,
) -> Vec<Recommendation> {
    let mut groups: BTreeMap<(String, String), (bool, Vec<Setting>)> = BTreeMap::new();
    let physical = physical_keys(records);
    for runs in group_settings(records) {
        let i = runs[0];
        let r = &records[i];
        let rs: Vec<&Record> = runs.iter().map(|&j| &records[j]).collect();
        if let Some(s) = Setting::from_runs(&rs, i) {
            let device = match by {
                GroupBy::Device => physical[i].clone(),
                GroupBy::Model => r.device.name.clone(),
            };
            let e = groups
                .entry((device, r.group.clone()))
                .or_insert((r.simulated, Vec::new()));
            e.0 |= r.simulated;
            e.1.push(s);
        }
    }
    let labels = device_labels(records);
    groups
        .into_iter()
        .filter_map(|((key, workload), (simulated, settings))| {
            let device = match by {
                GroupBy::Device => labels.get(&key).cloned().unwrap_or(key),
                GroupBy::Model => key,
            };
            let chosen = choose(&settings, objective)?;
            let front = pareto_front(&settings);
            let c = &settings[chosen];
            let on_board: Vec<Setting> = settings
                .iter()
                .filter(|s| same_device(&records[s.record], &records[c.record]))
                .cloned()
                .collect();
            let baseline = baseline
                .find(&on_board, c)
                .and_then(|i| settings.iter().position(|s| s.record == on_board[i].record))
                .or_else(|| baseline.find(&settings, c));
            let per_precision = per_precision(&settings, objective);
            Some(Recommendation {
                device,
                simulated,
                workload,
                settings,
                chosen,
                front,
                baseline,
                per_precision,
            })
        })
        .collect()
}

/// The objective's choice within each precision, in precision order.
fn per_precision(settings: &[Setting], objective: Objective) -> Vec<usize> {
    let mut precisions: Vec<Precision> = settings.iter().map(|s| s.precision).collect();
    precisions.sort();
    precisions.dedup();
    precisions
        .into_iter()
        .filter_map(|p| {
            let idx: Vec<usize> = (0..settings.len())
                .filter(|&i| settings[i].precision == p)
                .collect();
            let subset: Vec<Setting> = idx.iter().map(|&i| settings[i].clone()).collect();
            choose(&subset, objective).map(|j| idx[j])
        })
        .collect()
}

fn same_device(a: &Record, b: &Record) -> bool {
    same_physical_device(&a.device, &b.device)
}

/// One key per physical GPU for every record: records of one GPU made through
/// several backends (CUDA names it by UUID, Vulkan by PCI address) share it; the
/// key chosen is the one with a UUID where any record has it.
pub fn physical_keys(records: &[Record]) -> Vec<String> {
    let mut devices: Vec<&joulebench_core::DeviceInfo> = Vec::new();
    for r in records {
        if !devices.iter().any(|d| d.key() == r.device.key()) {
            devices.push(&r.device);
        }
    }
    // devices with a UUID first, so they name their group
    devices.sort_by_key(|d| d.uuid.is_none());
    records
        .iter()
        .map(|r| {
            devices
                .iter()
                .find(|d| same_physical_device(d, &r.device))
                .map(|d| d.key())
                .unwrap_or_else(|| r.device.key())
        })
        .collect()
}

/// How tables name a device: its name, or name and UUID where two physical devices
/// share a name. Every record's own key and its physical device's key map to the
/// label, so one GPU seen through two backends has one label.
pub fn device_labels(records: &[Record]) -> BTreeMap<String, String> {
    let physical = physical_keys(records);
    let mut by_name: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for (r, key) in records.iter().zip(&physical) {
        by_name
            .entry(r.device.name.clone())
            .or_default()
            .insert(key.clone());
    }
    let mut labels = BTreeMap::new();
    for (name, keys) in by_name {
        let unique = keys.len() == 1;
        for key in keys {
            labels.insert(key.clone(), if unique { name.clone() } else { key });
        }
    }
    for (r, key) in records.iter().zip(&physical) {
        if let Some(label) = labels.get(key).cloned() {
            labels.insert(r.device.key(), label);
        }
    }
    labels
}

const SIMULATED_NOTE: &str =
    "SIMULATED DATA: these figures come from joulebench's model device, not from a measurement.";

/// The recommendation table: per device and workload, the best setting of each
/// precision (the objective's overall choice marked `*`), each against the
/// baseline. Columns that would say the same on every row (no power caps swept,
/// one batch size, no flags, no repeats) are left out, and a note says what they
/// would have said.
pub fn recommendation_table(recs: &[Recommendation], objective: Objective) -> Table {
    recommendation_table_with(recs, objective, &BaselineSpec::default())
}

/// [`recommendation_table`], naming `baseline` in its notes.
pub fn recommendation_table_with(
    recs: &[Recommendation],
    objective: Objective,
    baseline: &BaselineSpec,
) -> Table {
    let mut t = Table::new(
        format!("Recommended settings ({})", objective.describe()),
        &[
            "device",
            "workload",
            "",
            "precision",
            "kernel",
            "batch",
            "power cap",
            "energy (pJ/FLOP)",
            "throughput (TFLOP/s)",
            "avg power (W)",
            "energy saved",
            "slowdown",
            "baseline",
            "runs",
            "run-to-run spread",
            "flags",
        ],
    );
    if recs.iter().any(|r| r.simulated) {
        t.notes.push(SIMULATED_NOTE.into());
    }
    t.notes.push(format!(
        "One row per precision: its best setting by the objective; * marks the objective's choice over every precision. Energy saved and slowdown are against the baseline, {}.",
        baseline.describe()
    ));
    let clock_notes: Vec<String> = recs.iter().filter_map(clock_note).collect();
    if !clock_notes.is_empty() {
        t.notes.extend(clock_notes);
        t.notes.push(
            "Why a lower clock: dynamic power grows as f·V², and above the voltage knee V rises with f, so energy per FLOP falls as the clock comes down, until the fixed (idle and static) power of the longer run outweighs it."
                .into(),
        );
    }
    if recs
        .iter()
        .any(|r| r.per_precision.iter().any(|&i| r.settings[i].power_limited))
    {
        t.notes.push(
            "flags list cautions only. Settings that ran at the GPU's power limit (power-limited, with the clock it settled at) are the normal operating point of heavy work, not a caution."
                .into(),
        );
    }
    for r in recs {
        let base = r.baseline().map(|b| {
            format!(
                "{}: {} pJ/FLOP, {} TFLOP/s",
                b.label(),
                sig(b.picojoules_per_flop(), 3),
                sig(b.tflops, 3)
            )
        });
        for &i in &r.per_precision {
            let c = &r.settings[i];
            t.push(vec![
                r.device.clone(),
                r.workload.clone(),
                if i == r.chosen { "*".into() } else { "".into() },
                c.precision.to_string(),
                c.kernel.clone(),
                c.batch_size.to_string(),
                c.cap_label(),
                sig(c.picojoules_per_flop(), 3),
                sig(c.tflops, 3),
                opt(c.average_w, 3),
                r.energy_saved_of(i).map(pct).unwrap_or_else(|| "–".into()),
                r.slowdown_of(i).map(pct).unwrap_or_else(|| "–".into()),
                if r.baseline == Some(i) {
                    "(this is the baseline)".into()
                } else {
                    base.clone().unwrap_or_else(|| "not measured".into())
                },
                c.runs.to_string(),
                c.run_to_run_spread
                    .map(|s| pct(s).trim_start_matches('+').to_string())
                    .unwrap_or_else(|| "–".into()),
                c.flags.join(" "),
            ]);
        }
    }
    let clock_rows: Vec<&Setting> = recs
        .iter()
        .flat_map(|r| r.per_precision.iter().map(move |&i| &r.settings[i]))
        .collect();
    add_clock_column(&mut t, 7, clock_rows.into_iter());
    t.drop_uninformative_columns(&[
        "batch",
        "power cap",
        "runs",
        "run-to-run spread",
        "flags",
        "",
    ]);
    t
}

/// Where any setting locked a clock, an "SM clock" column at `at` (after the power
/// cap), `settings` giving each row's.
fn add_clock_column<'a>(t: &mut Table, at: usize, settings: impl Iterator<Item = &'a Setting>) {
    let settings: Vec<&Setting> = settings.collect();
    if !settings
        .iter()
        .any(|s| s.sm_clock_mhz.is_some() || s.mem_clock_mhz.is_some())
    {
        return;
    }
    t.headers.insert(at, "SM clock".into());
    for (row, s) in t.rows.iter_mut().zip(settings) {
        row.insert(at, s.clock_label());
    }
}

/// Why a locked clock below the maximum was chosen: what it saves and costs.
fn clock_note(r: &Recommendation) -> Option<String> {
    let c = r.chosen();
    let locked = c.sm_clock_mhz?;
    let max = c.sm_clock_max_mhz.filter(|&m| locked < m)?;
    let against = r
        .baseline()
        .map(|b| {
            format!(
                " ({} energy saved, {} slowdown against the default clocks)",
                pct(1.0 - c.joules_per_flop / b.joules_per_flop),
                pct(c.seconds_per_flop / b.seconds_per_flop - 1.0)
            )
        })
        .unwrap_or_default();
    Some(format!(
        "{} on {}: the SM clock locked at {locked} MHz, below the maximum {max} MHz{against}.",
        r.workload, r.device
    ))
}

/// The Pareto front of each device and workload, fastest first; `*` marks the choice.
pub fn pareto_table(recs: &[Recommendation]) -> Table {
    let mut t = Table::new(
        "Pareto front over (time, energy): no other setting is both faster and cheaper",
        &[
            "device",
            "workload",
            "",
            "kernel",
            "precision",
            "batch",
            "power cap",
            "energy (pJ/FLOP)",
            "throughput (TFLOP/s)",
            "avg power (W)",
        ],
    );
    if recs.iter().any(|r| r.simulated) {
        t.notes.push(SIMULATED_NOTE.into());
    }
    for r in recs {
        for &i in &r.front {
            let s = &r.settings[i];
            t.push(vec![
                r.device.clone(),
                r.workload.clone(),
                if i == r.chosen { "*".into() } else { "".into() },
                s.kernel.clone(),
                s.precision.to_string(),
                s.batch_size.to_string(),
                s.cap_label(),
                sig(s.picojoules_per_flop(), 3),
                sig(s.tflops, 3),
                opt(s.average_w, 3),
            ]);
        }
    }
    let rows = recs
        .iter()
        .flat_map(|r| r.front.iter().map(move |&i| &r.settings[i]));
    add_clock_column(&mut t, 7, rows);
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(kernel: &str, cap: &str, t: f64, e: f64) -> Setting {
        Setting {
            kernel: kernel.into(),
            precision: Precision::Bf16,
            batch_size: 1,
            cap: cap.into(),
            cap_w: None,
            is_default_cap: cap == "default",
            sm_clock_mhz: None,
            mem_clock_mhz: None,
            sm_clock_seen_mhz: None,
            sm_clock_max_mhz: None,
            seconds_per_flop: t,
            joules_per_flop: e,
            tflops: 1e-12 / t,
            average_w: Some(e / t),
            flags: vec![],
            power_limited: false,
            default_limit_w: Some(700.0),
            record: 0,
            vendor: false,
            backend: "test".into(),
            runs: 1,
            run_to_run_spread: None,
        }
    }

    fn sample() -> Vec<Setting> {
        vec![
            s("k", "default", 1.00, 10.0), // fastest
            s("k", "80%", 1.05, 8.5),      // 5% slower, cheaper
            s("k", "60%", 1.25, 7.0),      // cheapest
            s("k", "70%", 1.30, 9.0),      // dominated by 60%
        ]
    }

    #[test]
    fn front_excludes_dominated_points() {
        assert_eq!(pareto_front(&sample()), vec![0, 1, 2]);
    }

    #[test]
    fn front_keeps_ties_and_single_points() {
        let v = vec![s("a", "default", 1.0, 5.0), s("b", "default", 1.0, 5.0)];
        assert_eq!(pareto_front(&v), vec![0, 1]);
        assert_eq!(pareto_front(&v[..1]), vec![0]);
        // same time, more energy: dominated
        let w = vec![s("a", "default", 1.0, 5.0), s("b", "default", 1.0, 6.0)];
        assert_eq!(pareto_front(&w), vec![0]);
        // same energy, slower: dominated; the front comes back fastest first
        let x = vec![s("slow", "60%", 2.0, 5.0), s("fast", "default", 1.0, 5.0)];
        assert_eq!(pareto_front(&x), vec![1]);
        assert!(pareto_front(&[]).is_empty());
    }

    fn records() -> Vec<Record> {
        use crate::testutil::rec;
        vec![
            rec("GPU A", false, Precision::Bf16, "default", 600.0, 1.0),
            rec("GPU A", false, Precision::Bf16, "80%", 560.0, 0.9),
            rec("GPU A", false, Precision::Bf16, "60%", 400.0, 0.8),
        ]
    }

    /// (chosen cap, energy saved, slowdown) of the one recommendation.
    fn pick(records: &[Record], objective: Objective) -> (String, f64, f64) {
        let recs = recommend(records, objective);
        assert_eq!(recs.len(), 1);
        let r = &recs[0];
        (
            r.chosen().cap.clone(),
            r.energy_saved().unwrap(),
            r.slowdown().unwrap(),
        )
    }

    #[test]
    fn recommend_on_records_reports_saving_and_slowdown_against_the_default_cap() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        let v = records();
        let (cap, saved, slower) = pick(&v, Objective::LeastEnergy);
        assert_eq!(cap, "60%");
        assert!(close(saved, 0.2) && close(slower, 0.5), "{saved} {slower}");
        let (cap, saved, slower) = pick(&v, Objective::WithinSlowdown { max_slowdown: 0.10 });
        assert_eq!(cap, "80%");
        assert!(close(saved, 0.1) && close(slower, 600.0 / 560.0 - 1.0));
        // E·T per FLOP ∝ 1.0/600, 0.9/560, 0.8/400: the 80% cap
        assert_eq!(pick(&v, Objective::EnergyDelay).0, "80%");
        // Zeus, η = 0.5 and P_max = the 700 W default limit, in pJ/FLOP:
        // 0.5 + 350/600 = 1.083, 0.45 + 350/560 = 1.075, 0.4 + 350/400 = 1.275
        let zeus = |eta| Objective::ZeusCost {
            eta,
            max_power_w: None,
        };
        assert_eq!(pick(&v, zeus(0.5)).0, "80%");
        assert_eq!(pick(&v, zeus(1.0)).0, "60%");
        let (cap, saved, slower) = pick(&v, zeus(0.0));
        assert_eq!(cap, "default");
        assert!(close(saved, 0.0) && close(slower, 0.0));
    }

    #[test]
    fn without_a_default_cap_point_there_is_no_baseline() {
        let v = records()[1..].to_vec();
        let recs = recommend(&v, Objective::LeastEnergy);
        assert_eq!(recs[0].baseline, None);
        assert_eq!(recs[0].energy_saved(), None);
        assert!(recommendation_table(&recs, Objective::LeastEnergy).rows[0]
            .contains(&"not measured".to_string()));
    }

    #[test]
    fn boards_are_apart_per_device_and_pooled_per_model() {
        let mut v = records();
        v[2].device.uuid = Some("GPU-second-board".into());
        let per_device = recommend_by(&v, Objective::LeastEnergy, GroupBy::Device);
        assert_eq!(per_device.len(), 2);
        // two boards of one name are told apart by their UUID
        assert!(
            per_device.iter().all(|r| r.device.contains("GPU A [")),
            "{per_device:?}"
        );
        let per_model = recommend_by(&v, Objective::LeastEnergy, GroupBy::Model);
        assert_eq!(per_model.len(), 1);
        assert_eq!(per_model[0].device, "GPU A");
        assert_eq!(per_model[0].chosen().cap, "60%");
        // its baseline is the default-cap point of the other board of the model
        assert_eq!(
            per_model[0].baseline().map(|b| b.cap.as_str()),
            Some("default")
        );
    }

    #[test]
    fn a_locked_clock_is_a_column_and_an_explained_choice_and_never_the_baseline() {
        let mut v = records();
        // the same kernel at the default cap, its SM clock locked at 1200 of 1980 MHz
        let mut locked =
            crate::testutil::rec("GPU A", false, Precision::Bf16, "default", 580.0, 0.85);
        locked.clocks.sm_requested_mhz = Some(1200);
        locked.clocks.sm_max_mhz = Some(1980);
        v.push(locked);
        let recs = recommend(&v, Objective::WithinSlowdown { max_slowdown: 0.10 });
        let r = &recs[0];
        assert_eq!(r.chosen().sm_clock_mhz, Some(1200));
        // the baseline is the default cap at the default clocks, not the locked point
        let b = r.baseline().unwrap();
        assert_eq!((b.cap.as_str(), b.sm_clock_mhz), ("default", None));
        let t = recommendation_table(&recs, Objective::LeastEnergy);
        let col = t.headers.iter().position(|h| h == "SM clock").unwrap();
        let chosen_row = match t.headers.iter().position(|h| h.is_empty()) {
            Some(star) => t.rows.iter().find(|row| row[star] == "*").unwrap(),
            None => &t.rows[0],
        };
        assert_eq!(chosen_row[col], "1200 MHz");
        let note = t
            .notes
            .iter()
            .find(|n| n.contains("locked at 1200 MHz"))
            .unwrap();
        assert!(
            note.contains("below the maximum 1980 MHz") && note.contains("+15.0% energy saved"),
            "{note}"
        );
        let p = pareto_table(&recs);
        assert_eq!(p.headers[7], "SM clock");
        // without locked clocks the tables keep their columns
        let plain = recommendation_table(
            &recommend(&records(), Objective::LeastEnergy),
            Objective::LeastEnergy,
        );
        assert!(!plain.headers.contains(&"SM clock".to_string()));
    }

    #[test]
    fn each_objective_has_its_known_answer() {
        let v = sample();
        assert_eq!(choose(&v, Objective::LeastEnergy), Some(2));
        assert_eq!(
            choose(&v, Objective::WithinSlowdown { max_slowdown: 0.10 }),
            Some(1)
        );
        assert_eq!(
            choose(&v, Objective::WithinSlowdown { max_slowdown: 0.0 }),
            Some(0)
        );
        assert_eq!(
            choose(&v, Objective::WithinSlowdown { max_slowdown: 0.25 }),
            Some(2)
        );
        // E·D: 10, 8.925, 8.75, 11.7
        assert_eq!(choose(&v, Objective::EnergyDelay), Some(2));
        // η = 1 is least energy, η = 0 least time
        assert_eq!(
            choose(
                &v,
                Objective::ZeusCost {
                    eta: 1.0,
                    max_power_w: None
                }
            ),
            Some(2)
        );
        assert_eq!(
            choose(
                &v,
                Objective::ZeusCost {
                    eta: 0.0,
                    max_power_w: None
                }
            ),
            Some(0)
        );
        // η = 0.5, P_max = 10: cost = 0.5E + 5T → 10, 9.5, 9.75, 11.0
        assert_eq!(
            choose(
                &v,
                Objective::ZeusCost {
                    eta: 0.5,
                    max_power_w: Some(10.0)
                }
            ),
            Some(1)
        );
        assert_eq!(choose(&[], Objective::LeastEnergy), None);
    }
}
