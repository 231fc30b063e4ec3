//! Recommendations (docs/ARCHITECTURE.md §7), the selection half: for each device
//! and workload, every valid setting compared per FLOP (a group spans batch sizes,
//! and a bigger batch does more work per op), their Pareto front, the setting the
//! objective picks — kept only as far as each lever's saving beats the noise — the
//! best setting of each precision beside it (precision is a numerics decision, not
//! only an energy one), and what each lever changed from the baseline saves on its
//! own. The tables that show them are in `crate::recommend_table`.

use crate::attribution::{attribute, Attribution};
use crate::baseline::BatchDefault;
use crate::digest::{Head, SettingsDigest};
use crate::levers::{settle, values_of, Lever, LeverValues, Reverted};
use crate::objective::{choose_in, pareto_front};
use crate::significance::NoiseFloor;
use joulebench_core::record::Record;
use joulebench_core::Precision;
use std::collections::BTreeMap;

pub use crate::baseline::BaselineSpec;
pub use crate::devices::{device_labels, physical_keys, same_device};
pub use crate::objective::{choose, Objective};
pub use crate::setting::Setting;

/// What one recommendation covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupBy {
    /// One physical (or simulated) device: its UUID or PCI id tells two boards apart.
    Device,
    /// One device model (its name): boards of the same model on several machines are
    /// pooled, which is what a launcher that only knows the GPU's name can use.
    Model,
}

/// How recommendations are made besides the objective.
#[derive(Clone, Debug, PartialEq)]
pub struct RecommendOptions {
    pub by: GroupBy,
    pub baseline: BaselineSpec,
    pub noise: NoiseFloor,
}

impl Default for RecommendOptions {
    fn default() -> Self {
        RecommendOptions {
            by: GroupBy::Device,
            baseline: BaselineSpec::default(),
            noise: NoiseFloor::default(),
        }
    }
}

/// The recommendation for one device and workload.
#[derive(Clone, Debug, PartialEq)]
pub struct Recommendation {
    pub device: String,
    pub simulated: bool,
    pub workload: String,
    /// Every setting measured, each in a box of its own: a campaign's settings move
    /// between groupings without being copied (see [`MadeSettings`]).
    pub settings: Vec<Box<Setting>>,
    /// The advice: the objective's best with every lever that does not beat the
    /// noise put back to the baseline's value.
    pub chosen: usize,
    /// The objective's best before that.
    pub best: usize,
    pub front: Vec<usize>,
    /// What the user runs today (see [`BaselineSpec`]), if measured.
    pub baseline: Option<usize>,
    /// The baseline's value of each lever (as named, where it was not measured).
    pub baseline_values: LeverValues,
    /// The objective's choice within each precision, in precision order.
    pub per_precision: Vec<usize>,
    /// Levers of the best that the advice put back, and why.
    pub reverted: Vec<Reverted>,
    /// What each lever of the advice saves on its own, and together.
    pub attribution: Attribution,
    /// Precisions measured with none of the vendor's kernels: their rows speak for
    /// our kernels only.
    pub ours_only: Vec<Precision>,
}

impl Recommendation {
    pub fn chosen(&self) -> &Setting {
        &self.settings[self.chosen]
    }

    pub fn baseline(&self) -> Option<&Setting> {
        self.baseline.map(|i| &*self.settings[i])
    }

    /// 1 − E_chosen / E_baseline (per FLOP), if a baseline was measured.
    pub fn energy_saved(&self) -> Option<f64> {
        self.energy_saved_of(self.chosen)
    }

    /// T_chosen / T_baseline − 1 (per FLOP), if a baseline was measured.
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

    /// Setting `i`'s precision was measured with none of the vendor's kernels.
    pub fn is_ours_only(&self, i: usize) -> bool {
        self.ours_only.contains(&self.settings[i].precision)
    }

    /// Notes a reader needs beside the figures: levers put back, a lock that did not bind.
    pub fn significance_notes(&self) -> Vec<String> {
        let mut notes: Vec<String> = self.reverted.iter().map(|r| r.note()).collect();
        if let Some(seen) = self.chosen().unbound_clock() {
            notes.push(format!(
                "the SM clock lock at {} did not bind (the GPU ran at {seen:.0} MHz under its power limit): it is not advised",
                self.chosen().clock_label()
            ));
        }
        notes
    }
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

/// [`recommend`] with a choice of grouping and baseline.
pub fn recommend_with(
    records: &[Record],
    objective: Objective,
    by: GroupBy,
    baseline: &BaselineSpec,
) -> Vec<Recommendation> {
    recommend_opts(
        records,
        objective,
        &RecommendOptions {
            by,
            baseline: baseline.clone(),
            ..RecommendOptions::default()
        },
    )
}

/// Every recommendation. With [`GroupBy::Model`] the baseline is looked for on the
/// chosen setting's own board first, then on any board of the model.
pub fn recommend_opts(
    records: &[Record],
    objective: Objective,
    opts: &RecommendOptions,
) -> Vec<Recommendation> {
    recommend_digest(&SettingsDigest::of(records), objective, opts)
}

/// [`recommend_opts`] of the records a digest has taken in (its runs left in it).
pub fn recommend_digest(
    digest: &SettingsDigest,
    objective: Objective,
    opts: &RecommendOptions,
) -> Vec<Recommendation> {
    let physical = digest.physical_keys();
    let mut made = MadeSettings::default();
    for (head, runs) in digest.setting_runs() {
        let setting = Setting::from_parts(digest, head, &runs, opts.noise);
        made.add(setting, head, &physical);
    }
    recommend_made(digest, &mut made, objective, opts)
}

/// Every setting of a digest made once, in the digest's order, with its device
/// and workload (ids in the digest): what [`recommend_made`] groups, as often as
/// asked, without the runs they were made from. The recommendations borrow the
/// settings, box and all, and give them back ([`MadeSettings::give_back`]), so a
/// setting is never held twice nor copied: a campaign's 200 000 settings moved out
/// of their boxes into each group's vector and back would leave the boxes' memory
/// in pieces too small for anything else, and the process's memory would grow by
/// what they hold.
#[derive(Debug, Default)]
pub struct MadeSettings {
    /// Each in a box of its own (in the place its runs left); `None` where its runs
    /// made none, or while a recommendation holds it.
    settings: Vec<Option<Box<Setting>>>,
    /// Each one's (device, workload) ids, and whether it is simulated.
    of: Vec<(u32, u32, bool)>,
    /// Which settings each recommendation made last holds, in its order.
    lent: Vec<Vec<u32>>,
}

/// Make every setting of `digest` ([`Setting::from_parts`], as [`recommend_digest`]
/// does), letting go of each one's runs once it is made: a campaign's runs and its
/// settings are never held together.
pub fn make_settings(digest: &mut SettingsDigest, noise: NoiseFloor) -> MadeSettings {
    let physical = digest.physical_keys();
    let mut made = MadeSettings::default();
    for i in 0..digest.settings() {
        let (head, runs) = digest.take_setting_runs(i);
        let setting = {
            let runs: Vec<&crate::digest::Run> = runs.iter().collect();
            Setting::from_parts(digest, &head, &runs, noise)
        };
        drop(runs);
        made.add(setting, &head, &physical);
    }
    // the runs are gone: their memory goes back, it fits nothing made from here on
    joulebench_core::memory::give_back_freed();
    made
}

/// [`recommend_digest`], letting go of each setting's runs as it is made
/// ([`make_settings`]): a campaign's runs and its settings are never held
/// together. What else needs the runs takes it first (the repeats table:
/// [`crate::repeats::Repeats::of`]).
pub fn recommend_taking(
    digest: &mut SettingsDigest,
    objective: Objective,
    opts: &RecommendOptions,
) -> Vec<Recommendation> {
    let mut made = make_settings(digest, opts.noise);
    recommend_made(digest, &mut made, objective, opts)
}

impl MadeSettings {
    /// The next setting of the digest (if its runs made one), on its board
    /// (`physical`: the digest's physical keys).
    fn add(&mut self, setting: Option<Setting>, head: &Head, physical: &[String]) {
        self.settings.push(setting.map(|mut s| {
            s.board = physical[head.device as usize].clone();
            Box::new(s)
        }));
        self.of.push((head.device, head.group, head.simulated));
    }

    /// Take back the settings `recs` (the last [`recommend_made`] of these) hold.
    pub fn give_back(&mut self, recs: Vec<Recommendation>) {
        for (rec, members) in recs.into_iter().zip(std::mem::take(&mut self.lent)) {
            for (s, i) in rec.settings.into_iter().zip(members) {
                self.settings[i as usize] = Some(s);
            }
        }
    }
}

/// [`recommend_digest`] of settings made once ([`make_settings`]); `opts.noise` was
/// given to [`make_settings`]. The recommendations hold the settings until given
/// back.
pub fn recommend_made(
    digest: &SettingsDigest,
    made: &mut MadeSettings,
    objective: Objective,
    opts: &RecommendOptions,
) -> Vec<Recommendation> {
    let physical = digest.physical_keys();
    let mut groups: BTreeMap<(String, String), Vec<u32>> = BTreeMap::new();
    for (i, &(device, group, _)) in made.of.iter().enumerate() {
        if made.settings[i].is_none() {
            continue;
        }
        let device = match opts.by {
            GroupBy::Device => physical[device as usize].clone(),
            GroupBy::Model => digest.device(device).info.name.clone(),
        };
        groups
            .entry((device, digest.string(group).to_string()))
            .or_default()
            .push(i as u32);
    }
    let labels = digest.device_labels();
    let mut recs = Vec::new();
    made.lent.clear();
    for ((key, workload), members) in groups {
        let simulated = members.iter().any(|&i| made.of[i as usize].2);
        let settings: Vec<Box<Setting>> = members
            .iter()
            .filter_map(|&i| made.settings[i as usize].take())
            .collect();
        let device = match opts.by {
            GroupBy::Device => labels.get(&key).cloned().unwrap_or(key),
            GroupBy::Model => key,
        };
        match select_or_back(
            device,
            simulated,
            workload,
            settings,
            objective,
            &opts.baseline,
        ) {
            Ok(rec) => {
                recs.push(rec);
                made.lent.push(members);
            }
            Err(settings) => {
                for (s, i) in settings.into_iter().zip(members) {
                    made.settings[i as usize] = Some(s);
                }
            }
        }
    }
    recs
}

/// Precisions none of whose settings is a vendor kernel.
fn ours_only(settings: &[Box<Setting>]) -> Vec<Precision> {
    let mut out: Vec<Precision> = settings
        .iter()
        .map(|s| s.precision)
        .filter(|&p| !settings.iter().any(|s| s.precision == p && s.vendor))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The baseline's lever values: the measured baseline's, else what the spec names
/// (and the defaults it always has: bf16 unless named, the default cap and clocks).
fn baseline_values(spec: &BaselineSpec, measured: Option<&Setting>) -> LeverValues {
    if let Some(b) = measured {
        return values_of(b, &Lever::ALL);
    }
    let mut v = LeverValues::new();
    v.insert(
        Lever::Precision,
        spec.precision.unwrap_or(Precision::Bf16).to_string(),
    );
    v.insert(
        Lever::PowerCap,
        spec.cap
            .map(|c| c.to_string())
            .unwrap_or_else(|| "default".into()),
    );
    v.insert(Lever::Clock, "default".into());
    if let Some(k) = spec
        .kernels
        .as_ref()
        .filter(|k| k.len() == 1 && k[0] != "vendor")
    {
        v.insert(Lever::Kernel, k[0].clone());
    }
    if let Some(b) = spec.batch {
        v.insert(Lever::Batch, b.to_string());
    }
    v
}

/// The recommendation for one device and workload: the objective's choice among
/// `settings`, or the settings given back where it chooses none. The settings come
/// boxed and stay so: moved between groupings, never copied (see `MadeSettings`).
#[allow(clippy::vec_box)]
fn select_or_back(
    device: String,
    simulated: bool,
    workload: String,
    settings: Vec<Box<Setting>>,
    objective: Objective,
    spec: &BaselineSpec,
) -> Result<Recommendation, Vec<Box<Setting>>> {
    let all: Vec<usize> = (0..settings.len()).collect();
    let ours_only = ours_only(&settings);
    // a precision measured with our kernels only is never chosen over one the
    // vendor's kernels were measured at: its figure speaks for our kernel
    let covered: Vec<usize> = all
        .iter()
        .copied()
        .filter(|&i| !ours_only.contains(&settings[i].precision))
        .collect();
    let pool = if covered.is_empty() {
        all.clone()
    } else {
        covered
    };
    let Some(best) = choose_in(&settings, &pool, objective) else {
        return Err(settings);
    };
    let near = BatchDefault::Near(settings[best].batch_size);
    let on_board: Vec<usize> = all
        .iter()
        .copied()
        .filter(|&i| settings[i].board == settings[best].board)
        .collect();
    let baseline = spec
        .find(&settings, &on_board, near)
        .or_else(|| spec.find(&settings, &all, near));
    let values = baseline_values(spec, baseline.map(|b| &*settings[b]));
    let settled = settle(&settings, &pool, best, &values, &Lever::ALL, objective);
    let chosen = settled.chosen;
    let per_precision = per_precision(&settings, chosen, &values, objective);
    let attribution = attribute(&settings, &all, chosen, baseline, &values, &Lever::ALL);
    Ok(Recommendation {
        device,
        simulated,
        workload,
        front: pareto_front(&settings),
        settings,
        chosen,
        best,
        baseline,
        baseline_values: values,
        per_precision,
        reverted: settled.reverted,
        attribution,
        ours_only,
    })
}

/// The objective's choice within each precision (with the same significance rule,
/// the precision held), in precision order; the overall choice stands for its own.
fn per_precision(
    settings: &[Box<Setting>],
    chosen: usize,
    values: &LeverValues,
    objective: Objective,
) -> Vec<usize> {
    let mut precisions: Vec<Precision> = settings.iter().map(|s| s.precision).collect();
    precisions.sort();
    precisions.dedup();
    let levers: Vec<Lever> = Lever::ALL
        .into_iter()
        .filter(|&l| l != Lever::Precision)
        .collect();
    precisions
        .into_iter()
        .filter_map(|p| {
            if settings[chosen].precision == p {
                return Some(chosen);
            }
            let among: Vec<usize> = (0..settings.len())
                .filter(|&i| settings[i].precision == p)
                .collect();
            let best = choose_in(settings, &among, objective)?;
            Some(settle(settings, &among, best, values, &levers, objective).chosen)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recommend_table::{pareto_table, recommendation_table};
    use crate::significance::{Uncertainty, UncertaintySource};

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
            uncertainty: Uncertainty {
                energy: 0.01,
                time: 0.01,
                source: UncertaintySource::Floor,
            },
            meter_agreement_pct: None,
            board: "GPU A".into(),
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
        assert!(pareto_front::<Setting>(&[]).is_empty());
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
        // 0.5 + 350/600 = 1.083, 0.45 + 350/560 = 1.075, 0.4 + 350/400 = 1.275: the
        // 80% cap is best by 0.7%, within the ±1.4% of the two figures, so the
        // advice keeps the baseline's default limit
        let zeus = |eta| Objective::ZeusCost {
            eta,
            max_power_w: None,
        };
        let recs = recommend(&v, zeus(0.5));
        assert_eq!(recs[0].settings[recs[0].best].cap, "80%");
        assert_eq!(pick(&v, zeus(0.5)).0, "default");
        assert_eq!(recs[0].reverted[0].lever, Lever::PowerCap);
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
            note.contains("below the maximum 1980 MHz")
                && note.contains("the clock alone saves +15.0% energy"),
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
        assert_eq!(choose::<Setting>(&[], Objective::LeastEnergy), None);
    }
}
