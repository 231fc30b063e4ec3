//! What "best" means, once for every level of advice: an op's settings compared
//! per FLOP (`recommend`) and a training step's per token (`model`) are both
//! candidates with a time, an energy and an uncertainty per unit of work, and one
//! Pareto front, one scoring and one choice serve both (docs/ARCHITECTURE.md §7).

use crate::significance::{combined, Uncertainty};

/// What "best" means.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Objective {
    /// Fewest joules per unit of work, whatever the time.
    LeastEnergy,
    /// Fewest joules among candidates at most `max_slowdown` (0.1 = 10%) slower
    /// than the fastest.
    WithinSlowdown { max_slowdown: f64 },
    /// Smallest energy × delay.
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

    /// What the score is, for notes: "energy", "energy × delay", "Zeus cost".
    pub fn score_name(&self) -> &'static str {
        match self {
            Objective::LeastEnergy | Objective::WithinSlowdown { .. } => "energy",
            Objective::EnergyDelay => "energy × delay",
            Objective::ZeusCost { .. } => "Zeus cost",
        }
    }
}

/// One measured choice: time and energy per unit of work (FLOP, token), and how
/// sure those figures are.
pub trait Candidate {
    /// Seconds per unit; infinite where unknown.
    fn seconds_per_unit(&self) -> f64;
    /// Joules per unit; infinite where unknown.
    fn joules_per_unit(&self) -> f64;
    /// P_max of the Zeus cost where the objective names none: the device's default
    /// power limit, else the candidate's average power.
    fn zeus_max_power_w(&self) -> Option<f64>;
    fn uncertainty(&self) -> Uncertainty;
}

/// A boxed candidate is the candidate (recommendations hold settings in the boxes
/// they were made in, so moving them between groups copies no setting).
impl<C: Candidate + ?Sized> Candidate for Box<C> {
    fn seconds_per_unit(&self) -> f64 {
        (**self).seconds_per_unit()
    }
    fn joules_per_unit(&self) -> f64 {
        (**self).joules_per_unit()
    }
    fn zeus_max_power_w(&self) -> Option<f64> {
        (**self).zeus_max_power_w()
    }
    fn uncertainty(&self) -> Uncertainty {
        (**self).uncertainty()
    }
}

/// The fastest time among `among`.
pub fn fastest<C: Candidate>(items: &[C], among: &[usize]) -> f64 {
    among
        .iter()
        .map(|&i| items[i].seconds_per_unit())
        .fold(f64::INFINITY, f64::min)
}

/// The objective's score of `c` (lower is better); `None` where the objective rules
/// it out (too slow for its slowdown budget against `fastest`).
pub fn score<C: Candidate>(objective: Objective, c: &C, fastest: f64) -> Option<f64> {
    let (t, e) = (c.seconds_per_unit(), c.joules_per_unit());
    let s = match objective {
        Objective::LeastEnergy => e,
        Objective::WithinSlowdown { max_slowdown } => {
            if t > fastest * (1.0 + max_slowdown) * (1.0 + 1e-12) {
                return None;
            }
            e
        }
        Objective::EnergyDelay => e * t,
        Objective::ZeusCost { eta, max_power_w } => {
            let p_max = max_power_w.or_else(|| c.zeus_max_power_w()).unwrap_or(0.0);
            eta * e + (1.0 - eta) * p_max * t
        }
    };
    s.is_finite().then_some(s)
}

/// The relative uncertainty of `c`'s score.
pub fn score_uncertainty<C: Candidate>(objective: Objective, c: &C) -> f64 {
    let u = c.uncertainty();
    match objective {
        Objective::LeastEnergy | Objective::WithinSlowdown { .. } => u.energy,
        Objective::EnergyDelay => combined(u.energy, u.time),
        Objective::ZeusCost { eta, max_power_w } => {
            let p_max = max_power_w.or_else(|| c.zeus_max_power_w()).unwrap_or(0.0);
            let e = eta * c.joules_per_unit();
            let t = (1.0 - eta) * p_max * c.seconds_per_unit();
            if e + t > 0.0 {
                combined(e * u.energy, t * u.time) / (e + t)
            } else {
                u.energy
            }
        }
    }
}

/// Indices (of `among`) no other candidate beats on both time and energy, fastest
/// first. Identical candidates are all kept.
pub fn pareto_front_in<C: Candidate>(items: &[C], among: &[usize]) -> Vec<usize> {
    let te = |i: usize| (items[i].seconds_per_unit(), items[i].joules_per_unit());
    let dominated = |i: usize| {
        let (t, e) = te(i);
        among.iter().any(|&o| {
            let (ot, oe) = te(o);
            ot <= t && oe <= e && (ot < t || oe < e)
        })
    };
    let mut idx: Vec<usize> = among.iter().copied().filter(|&i| !dominated(i)).collect();
    idx.sort_by(|&a, &b| te(a).0.total_cmp(&te(b).0));
    idx
}

/// [`pareto_front_in`] over every item.
pub fn pareto_front<C: Candidate>(items: &[C]) -> Vec<usize> {
    let all: Vec<usize> = (0..items.len()).collect();
    pareto_front_in(items, &all)
}

/// The index (of `among`) the objective prefers, ties to the faster; `None` when
/// none qualifies. This is the raw best: significance (crate::levers::settle)
/// decides how much of it the advice keeps.
pub fn choose_in<C: Candidate>(
    items: &[C],
    among: &[usize],
    objective: Objective,
) -> Option<usize> {
    choose_against(items, among, objective, fastest(items, among))
}

/// [`choose_in`] with the slowdown budget counted from `fastest` (a reference the
/// caller knows, such as each workload's own fastest setting of a mix).
pub fn choose_against<C: Candidate>(
    items: &[C],
    among: &[usize],
    objective: Objective,
    fastest: f64,
) -> Option<usize> {
    among
        .iter()
        .filter_map(|&i| score(objective, &items[i], fastest).map(|s| (i, s)))
        .min_by(|a, b| {
            a.1.total_cmp(&b.1).then(
                items[a.0]
                    .seconds_per_unit()
                    .total_cmp(&items[b.0].seconds_per_unit()),
            )
        })
        .map(|(i, _)| i)
}

/// [`choose_in`] over every item.
pub fn choose<C: Candidate>(items: &[C], objective: Objective) -> Option<usize> {
    let all: Vec<usize> = (0..items.len()).collect();
    choose_in(items, &all, objective)
}
