//! One setting per GPU (docs/ARCHITECTURE.md §7): a GPU has one power limit and one
//! clock whatever it runs, so the advice for a device is one cap and one clock
//! chosen for its mix of workloads — equal shares of its time by default, or the
//! shares a weights file gives — with each workload's precision, kernel and batch
//! as its own recommendation chose them. The per-workload bests stay in the tables
//! as information.

use crate::attribution::{attribute, Attribution};
use crate::format::pct;
use crate::levers::{settle_against, Lever, LeverValues, Levered, Reverted};
use crate::objective::{choose_against, Candidate, Objective};
use crate::recommend::Recommendation;
use crate::significance::{combined, Uncertainty, UncertaintySource};
use std::collections::BTreeMap;

/// How a device's time is shared between its workloads.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mix {
    /// Workload → weight (any scale); empty: equal shares.
    weights: BTreeMap<String, f64>,
    /// Where the weights came from, for notes.
    source: Option<String>,
}

impl Mix {
    /// Equal time shares for every workload.
    pub fn equal() -> Mix {
        Mix::default()
    }

    /// A weights file: TOML, one `"workload" = share` per line (the workload as the
    /// tables name it, e.g. `"matmul 8192x8192x8192" = 3`), shares of the GPU's
    /// time at the baseline setting, on any scale. `source` names it in notes.
    pub fn parse(text: &str, source: &str) -> Result<Mix, String> {
        let table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut weights = BTreeMap::new();
        for (k, v) in table {
            let w = v
                .as_float()
                .or_else(|| v.as_integer().map(|i| i as f64))
                .ok_or_else(|| format!("weight of '{k}' is not a number"))?;
            if !(w.is_finite() && w >= 0.0) {
                return Err(format!("weight of '{k}' must be a number ≥ 0"));
            }
            weights.insert(k, w);
        }
        if weights.values().sum::<f64>() <= 0.0 {
            return Err("no workload has a weight above 0".into());
        }
        Ok(Mix {
            weights,
            source: Some(source.to_string()),
        })
    }

    /// Refuse names that are not among `workloads` (a typo would silently weigh 0).
    pub fn check(&self, workloads: &[&str]) -> Result<(), String> {
        for k in self.weights.keys() {
            if !workloads.contains(&k.as_str()) {
                return Err(format!(
                    "weights name '{k}', which was not measured; the workloads are: {}",
                    workloads
                        .iter()
                        .map(|w| format!("\"{w}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        Ok(())
    }

    fn weight(&self, workload: &str) -> f64 {
        if self.weights.is_empty() {
            1.0
        } else {
            self.weights.get(workload).copied().unwrap_or(0.0)
        }
    }

    pub fn describe(&self) -> String {
        match &self.source {
            None => "equal time shares".into(),
            Some(s) => format!("the time shares of {s}"),
        }
    }
}

/// One workload of a device's advice: its setting at the device's cap and clock.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceEntry {
    /// Index into the recommendations given to [`device_settings`].
    pub rec: usize,
    /// Index into that recommendation's settings.
    pub setting: usize,
    /// Its share of the device's time (normalised).
    pub share: f64,
    /// What each lever of it saves against the workload's baseline.
    pub attribution: Attribution,
}

/// One device's cap and clock and its workloads' settings under them.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceSetting {
    pub device: String,
    pub simulated: bool,
    /// As swept: "default", "80%", "300W".
    pub power_cap: String,
    pub power_cap_w: Option<f64>,
    pub default_limit_w: Option<f64>,
    /// The SM clock to lock; `None`: the default clocks.
    pub sm_clock_mhz: Option<u32>,
    pub mem_clock_mhz: Option<u32>,
    pub entries: Vec<DeviceEntry>,
    pub mix: String,
    /// The mix at this cap and clock against the mix at the baseline's (the default
    /// limit and clocks), each workload at its chosen precision, kernel and batch.
    pub energy_saved: Option<f64>,
    pub slowdown: Option<f64>,
    pub uncertainty: Option<f64>,
    /// The cap and clock levers the significance rule put back.
    pub reverted: Vec<Reverted>,
    pub notes: Vec<String>,
}

impl DeviceSetting {
    pub fn clock_label(&self) -> String {
        match (self.sm_clock_mhz, self.mem_clock_mhz) {
            (None, None) => "default".into(),
            (Some(sm), None) => format!("{sm} MHz"),
            (None, Some(mem)) => format!("default, mem {mem} MHz"),
            (Some(sm), Some(mem)) => format!("{sm} MHz, mem {mem} MHz"),
        }
    }

    pub fn cap_label(&self) -> String {
        match self.power_cap_w {
            Some(w) if self.power_cap != "default" => format!("{} ({w:.0} W)", self.power_cap),
            Some(w) => format!("default ({w:.0} W)"),
            None => self.power_cap.clone(),
        }
    }
}

/// The device's mix at one cap and clock.
struct MixPoint {
    cap: String,
    clock: String,
    /// Per workload (index into the device's recommendations): its setting.
    at: Vec<usize>,
    seconds: f64,
    joules: f64,
    uncertainty: Uncertainty,
    max_power_w: Option<f64>,
    /// The lock binds for no workload: the highest clock any ran at, MHz.
    unbound: Option<f64>,
}

impl Candidate for MixPoint {
    fn seconds_per_unit(&self) -> f64 {
        self.seconds
    }
    fn joules_per_unit(&self) -> f64 {
        self.joules
    }
    fn zeus_max_power_w(&self) -> Option<f64> {
        self.max_power_w
    }
    fn uncertainty(&self) -> Uncertainty {
        self.uncertainty
    }
}

impl Levered for MixPoint {
    fn lever_value(&self, lever: Lever) -> Option<String> {
        match lever {
            Lever::PowerCap => Some(self.cap.clone()),
            Lever::Clock => Some(self.clock.clone()),
            _ => None,
        }
    }
    fn board(&self) -> &str {
        ""
    }
    fn unbound_clock_mhz(&self) -> Option<f64> {
        self.unbound
    }
}

const DEVICE_LEVERS: [Lever; 2] = [Lever::PowerCap, Lever::Clock];

/// One setting per device of `recs`, in device order.
pub fn device_settings(
    recs: &[Recommendation],
    mix: &Mix,
    objective: Objective,
) -> Vec<DeviceSetting> {
    let mut devices: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, r) in recs.iter().enumerate() {
        devices.entry(r.device.as_str()).or_default().push(i);
    }
    devices
        .into_iter()
        .filter_map(|(device, idx)| {
            let weighted: Vec<usize> = idx
                .iter()
                .copied()
                .filter(|&i| mix.weight(&recs[i].workload) > 0.0)
                .collect();
            one_device(device, recs, &weighted, mix, objective)
        })
        .collect()
}

/// For workload `r`, its settings with the chosen precision, kernel and batch, by
/// (cap, clock): the ones on the chosen setting's board first.
fn by_cap_and_clock(r: &Recommendation) -> BTreeMap<(String, String), usize> {
    let c = r.chosen();
    let fixed = [Lever::Precision, Lever::Kernel, Lever::Batch];
    let mut out: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (j, s) in r.settings.iter().enumerate() {
        if fixed.iter().any(|&l| s.lever_value(l) != c.lever_value(l)) {
            continue;
        }
        let key = (
            s.lever_value(Lever::PowerCap).unwrap_or_default(),
            s.lever_value(Lever::Clock).unwrap_or_default(),
        );
        let replace = match out.get(&key) {
            Some(&k) => r.settings[k].board != c.board && s.board == c.board,
            None => true,
        };
        if replace {
            out.insert(key, j);
        }
    }
    out
}

fn one_device(
    device: &str,
    recs: &[Recommendation],
    idx: &[usize],
    mix: &Mix,
    objective: Objective,
) -> Option<DeviceSetting> {
    let first = recs.get(*idx.first()?)?;
    let total: f64 = idx.iter().map(|&i| mix.weight(&recs[i].workload)).sum();
    let shares: Vec<f64> = idx
        .iter()
        .map(|&i| mix.weight(&recs[i].workload) / total)
        .collect();
    let tables: Vec<BTreeMap<(String, String), usize>> =
        idx.iter().map(|&i| by_cap_and_clock(&recs[i])).collect();
    let mut common: Vec<(String, String)> = tables[0].keys().cloned().collect();
    common.retain(|k| tables.iter().all(|t| t.contains_key(k)));
    let base_key = (
        first
            .baseline_values
            .get(&Lever::PowerCap)
            .cloned()
            .unwrap_or_else(|| "default".into()),
        first
            .baseline_values
            .get(&Lever::Clock)
            .cloned()
            .unwrap_or_else(|| "default".into()),
    );
    // time shares are of the baseline's cap and clock where measured, else of
    // each workload's own choice: FLOP per second of the mix = share / s per FLOP
    let rate: Vec<f64> = idx
        .iter()
        .zip(&tables)
        .zip(&shares)
        .map(|((&i, t), &share)| {
            let r = &recs[i];
            let reference = t.get(&base_key).copied().unwrap_or(r.chosen);
            share / r.settings[reference].seconds_per_flop
        })
        .collect();
    let point = |key: &(String, String)| -> MixPoint {
        let at: Vec<usize> = tables.iter().map(|t| t[key]).collect();
        let mut seconds = 0.0;
        let mut joules = 0.0;
        let mut ue = 0.0;
        let mut ut = 0.0;
        let mut unbound: Option<f64> = Some(0.0);
        for ((&i, &j), &n) in idx.iter().zip(&at).zip(&rate) {
            let s = &recs[i].settings[j];
            seconds += n * s.seconds_per_flop;
            joules += n * s.joules_per_flop;
            // errors of one device's runs move together: weigh, do not add in quadrature
            ue += n * s.joules_per_flop * s.uncertainty.energy;
            ut += n * s.seconds_per_flop * s.uncertainty.time;
            unbound = match (unbound, s.unbound_clock()) {
                (Some(m), Some(seen)) => Some(m.max(seen)),
                _ => None,
            };
        }
        let s0 = &recs[idx[0]].settings[at[0]];
        MixPoint {
            cap: key.0.clone(),
            clock: key.1.clone(),
            at,
            seconds,
            joules,
            uncertainty: Uncertainty {
                energy: ue / joules,
                time: ut / seconds,
                source: UncertaintySource::Floor,
            },
            max_power_w: s0.default_limit_w.or(s0.average_w),
            unbound: unbound.filter(|_| s0.sm_clock_mhz.is_some()),
        }
    };
    let points: Vec<MixPoint> = common.iter().map(point).collect();
    let all: Vec<usize> = (0..points.len()).collect();
    let mut notes = Vec::new();
    // the budget of a slowdown is counted from each workload's own fastest setting
    let fastest: f64 = idx
        .iter()
        .zip(&rate)
        .map(|(&i, &n)| {
            n * recs[i]
                .settings
                .iter()
                .map(|s| s.seconds_per_flop)
                .fold(f64::INFINITY, f64::min)
        })
        .sum();
    let raw = choose_against(&points, &all, objective, fastest)
        .or_else(|| choose_against(&points, &all, Objective::LeastEnergy, fastest));
    let Some(raw) = raw else {
        notes.push(
            "no power cap and clock was measured for every workload with its chosen precision, kernel and batch: the default limit and clocks are kept"
                .into(),
        );
        return Some(DeviceSetting {
            device: device.to_string(),
            simulated: idx.iter().any(|&i| recs[i].simulated),
            power_cap: "default".into(),
            power_cap_w: first.chosen().default_limit_w,
            default_limit_w: first.chosen().default_limit_w,
            sm_clock_mhz: None,
            mem_clock_mhz: None,
            entries: Vec::new(),
            mix: mix.describe(),
            energy_saved: None,
            slowdown: None,
            uncertainty: None,
            reverted: Vec::new(),
            notes,
        });
    };
    if choose_against(&points, &all, objective, fastest).is_none() {
        notes.push(format!(
            "no cap and clock keeps the mix within the objective's slowdown of each workload's fastest setting; chosen by least energy instead ({})",
            objective.describe()
        ));
    }
    let values: LeverValues = [
        (Lever::PowerCap, base_key.0.clone()),
        (Lever::Clock, base_key.1.clone()),
    ]
    .into_iter()
    .collect();
    let settled = settle_against(
        &points,
        &all,
        raw,
        &values,
        &DEVICE_LEVERS,
        objective,
        fastest,
    );
    let p = &points[settled.chosen];
    let base_point = common.iter().position(|k| *k == base_key);
    let (energy_saved, slowdown, uncertainty) = match base_point {
        Some(b) => {
            let q = &points[b];
            (
                Some(1.0 - p.joules / q.joules),
                Some(p.seconds / q.seconds - 1.0),
                Some(combined(p.uncertainty.energy, q.uncertainty.energy)),
            )
        }
        None => (None, None, None),
    };
    let entries: Vec<DeviceEntry> = idx
        .iter()
        .zip(&p.at)
        .zip(&shares)
        .map(|((&i, &j), &share)| {
            let r = &recs[i];
            let among: Vec<usize> = (0..r.settings.len()).collect();
            DeviceEntry {
                rec: i,
                setting: j,
                share,
                attribution: attribute(
                    &r.settings,
                    &among,
                    j,
                    r.baseline,
                    &r.baseline_values,
                    &Lever::ALL,
                ),
            }
        })
        .collect();
    let s0 = &recs[idx[0]].settings[p.at[0]];
    // a lock that binds for no workload is not advised, even where its twin was not measured
    let unbound_everywhere = p.unbound.is_some();
    if unbound_everywhere {
        notes.push(format!(
            "the SM clock lock at {} binds for none of its workloads (the power limit holds the clock lower): not advised",
            p.clock
        ));
    } else if s0.sm_clock_mhz.is_some() {
        for e in &entries {
            let s = &recs[e.rec].settings[e.setting];
            if let Some(seen) = s.unbound_clock() {
                notes.push(format!(
                    "{}: the lock does not bind (the power limit holds it at {seen:.0} MHz); it binds for the others",
                    recs[e.rec].workload
                ));
            }
        }
    }
    for e in &entries {
        let r = &recs[e.rec];
        let own = r.chosen();
        let here = &r.settings[e.setting];
        let own_key = (
            own.lever_value(Lever::PowerCap).unwrap_or_default(),
            own.lever_value(Lever::Clock).unwrap_or_default(),
        );
        if own_key != (p.cap.clone(), p.clock.clone()) {
            notes.push(format!(
                "{} alone would run at cap {}, clock {} ({} energy, {} time against this setting)",
                r.workload,
                own.cap,
                own.clock_label(),
                pct(own.joules_per_flop / here.joules_per_flop - 1.0),
                pct(own.seconds_per_flop / here.seconds_per_flop - 1.0)
            ));
        }
    }
    let excluded: Vec<&str> = recs
        .iter()
        .filter(|r| r.device == device && !idx.iter().any(|&i| recs[i].workload == r.workload))
        .map(|r| r.workload.as_str())
        .collect();
    if !excluded.is_empty() {
        notes.push(format!(
            "not in the mix (weight 0): {}",
            excluded.join(", ")
        ));
    }
    Some(DeviceSetting {
        device: device.to_string(),
        simulated: idx.iter().any(|&i| recs[i].simulated),
        power_cap: s0.cap.clone(),
        power_cap_w: s0.cap_w,
        default_limit_w: s0.default_limit_w,
        sm_clock_mhz: s0.sm_clock_mhz.filter(|_| !unbound_everywhere),
        mem_clock_mhz: s0.mem_clock_mhz,
        entries,
        mix: format!(
            "{}: {}",
            mix.describe(),
            idx.iter()
                .zip(&shares)
                .map(|(&i, s)| format!("{} {:.0}%", recs[i].workload, s * 100.0))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        energy_saved,
        slowdown,
        uncertainty,
        reverted: settled.reverted,
        notes,
    })
}
