//! The levers a setting is made of — precision, kernel, batch, power cap, locked
//! clock — and the rule that keeps advice honest about them (docs/ARCHITECTURE.md
//! §7): starting from the objective's best, every lever that differs from the
//! baseline goes back to the baseline's value unless keeping it saves more than the
//! uncertainty of the two figures compared. Ties keep the baseline: no lock, no
//! cap, the same precision.

use crate::objective::{fastest, score, score_uncertainty, Candidate, Objective};
use crate::significance::combined;
use std::collections::BTreeMap;

/// One thing a user sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Lever {
    Precision,
    Kernel,
    Batch,
    PowerCap,
    /// The locked SM clock (and memory clock, where locked).
    Clock,
}

impl Lever {
    /// Every lever of an op's setting, in the order notes name them.
    pub const ALL: [Lever; 5] = [
        Lever::Precision,
        Lever::Kernel,
        Lever::Batch,
        Lever::PowerCap,
        Lever::Clock,
    ];

    /// How tables name it.
    pub fn name(self) -> &'static str {
        match self {
            Lever::Precision => "precision",
            Lever::Kernel => "kernel",
            Lever::Batch => "batch",
            Lever::PowerCap => "power cap",
            Lever::Clock => "SM clock",
        }
    }

    /// How settings files name it (a framework-neutral key).
    pub fn key(self) -> &'static str {
        match self {
            Lever::Precision => "precision",
            Lever::Kernel => "kernel",
            Lever::Batch => "batch",
            Lever::PowerCap => "power_cap",
            Lever::Clock => "sm_clock",
        }
    }

    /// Levers a GPU has one of, whatever it runs.
    pub fn is_device_wide(self) -> bool {
        matches!(self, Lever::PowerCap | Lever::Clock)
    }
}

/// What each lever is set to, as text that compares equal for equal settings.
pub type LeverValues = BTreeMap<Lever, String>;

/// A candidate described lever by lever.
pub trait Levered {
    /// The lever's value; `None` for a lever this kind of setting does not have.
    fn lever_value(&self, lever: Lever) -> Option<String>;
    /// The physical board it ran on: comparisons prefer the same board.
    fn board(&self) -> &str;
    /// Where a clock was locked but the GPU ran below it on its own (a power limit
    /// held it down): the clock it ran at, MHz. Such a lock does not bind.
    fn unbound_clock_mhz(&self) -> Option<f64> {
        None
    }
}

impl<L: Levered + ?Sized> Levered for Box<L> {
    fn lever_value(&self, lever: Lever) -> Option<String> {
        (**self).lever_value(lever)
    }
    fn board(&self) -> &str {
        (**self).board()
    }
    fn unbound_clock_mhz(&self) -> Option<f64> {
        (**self).unbound_clock_mhz()
    }
}

/// Every lever value of `item`, for the levers in `levers`.
pub fn values_of<C: Levered>(item: &C, levers: &[Lever]) -> LeverValues {
    levers
        .iter()
        .filter_map(|&l| item.lever_value(l).map(|v| (l, v)))
        .collect()
}

/// The candidate among `among` equal to `items[of]` in every lever of `levers` but
/// `lever`, which is `value` — the setting that differs in that lever alone —
/// preferring one on the same board.
pub fn twin<C: Levered>(
    items: &[C],
    among: &[usize],
    of: usize,
    lever: Lever,
    value: &str,
    levers: &[Lever],
) -> Option<usize> {
    let base = &items[of];
    let matches = |j: usize| {
        let c = &items[j];
        c.lever_value(lever).as_deref() == Some(value)
            && levers
                .iter()
                .filter(|&&l| l != lever)
                .all(|&l| c.lever_value(l) == base.lever_value(l))
    };
    let found: Vec<usize> = among.iter().copied().filter(|&j| matches(j)).collect();
    found
        .iter()
        .copied()
        .find(|&j| items[j].board() == base.board())
        .or_else(|| found.first().copied())
}

/// A lever the significance rule put back to the baseline's value.
#[derive(Clone, Debug, PartialEq)]
pub struct Reverted {
    pub lever: Lever,
    /// The value the objective's best had.
    pub from: String,
    /// The baseline's value, kept.
    pub to: String,
    /// How much better (relative, by the objective's score) the lever made it.
    pub improvement: f64,
    /// What that score is ("energy", "Zeus cost").
    pub score: &'static str,
    /// The combined uncertainty it did not beat.
    pub uncertainty: f64,
    /// A lock that did not bind: the clock the GPU ran at under its power limit.
    pub unbound_clock_mhz: Option<f64>,
}

impl Reverted {
    /// "SM clock 1980 MHz dropped: it did not bind (the power limit held the clock at
    /// 1355 MHz)" or "precision f16 not taken: 0.1% better, within ±1.4%".
    pub fn note(&self) -> String {
        match (self.lever, self.unbound_clock_mhz) {
            (Lever::Clock, Some(seen)) => format!(
                "SM clock {} dropped: it did not bind (the GPU ran at {seen:.0} MHz under its power limit without it)",
                self.from
            ),
            _ => format!(
                "{} {} not taken, {} kept: its {} is {:.2}% lower, within the ±{:.1}% uncertainty",
                self.lever.name(),
                self.from,
                self.to,
                self.score,
                self.improvement * 100.0,
                self.uncertainty * 100.0
            ),
        }
    }
}

/// The advice after significance: the setting kept, and the levers put back.
#[derive(Clone, Debug, PartialEq)]
pub struct Settled {
    pub chosen: usize,
    pub reverted: Vec<Reverted>,
}

/// From the objective's best `raw` among `among`, put levers back to `baseline`'s
/// values one at a time while the setting that differs in that lever alone is
/// measured, allowed by the objective, and not beaten by more than the combined
/// uncertainty — neither by the current setting nor by `raw` (so the advice stays
/// within noise of the best). The cheapest reversion goes first. A lock that did
/// not bind is dropped whatever its figures say.
pub fn settle<C: Candidate + Levered>(
    items: &[C],
    among: &[usize],
    raw: usize,
    baseline: &LeverValues,
    levers: &[Lever],
    objective: Objective,
) -> Settled {
    settle_against(
        items,
        among,
        raw,
        baseline,
        levers,
        objective,
        fastest(items, among),
    )
}

/// [`settle`] with the slowdown budget counted from `fastest`.
pub fn settle_against<C: Candidate + Levered>(
    items: &[C],
    among: &[usize],
    raw: usize,
    baseline: &LeverValues,
    levers: &[Lever],
    objective: Objective,
    fastest: f64,
) -> Settled {
    let sc = |i: usize| score(objective, &items[i], fastest);
    let u = |i: usize| score_uncertainty(objective, &items[i]);
    let Some(raw_score) = sc(raw) else {
        return Settled {
            chosen: raw,
            reverted: Vec::new(),
        };
    };
    let mut chosen = raw;
    let mut reverted = Vec::new();
    while let Some(cur_score) = sc(chosen) {
        let mut best: Option<(Reverted, usize, f64)> = None;
        for &lever in levers {
            let (Some(to), Some(from)) = (baseline.get(&lever), items[chosen].lever_value(lever))
            else {
                continue;
            };
            if *to == from {
                continue;
            }
            let Some(j) = twin(items, among, chosen, lever, to, levers) else {
                continue;
            };
            let Some(js) = sc(j) else { continue };
            let improvement = 1.0 - cur_score / js;
            let uncertainty = combined(u(chosen), u(j));
            let vs_raw = 1.0 - raw_score / js;
            // a lock the GPU never reached changes nothing: dropped whatever the noise says
            let unbound = (lever == Lever::Clock)
                .then(|| items[chosen].unbound_clock_mhz())
                .flatten();
            if unbound.is_none() && (improvement > uncertainty || vs_raw > combined(u(raw), u(j))) {
                continue;
            }
            let rank = if unbound.is_some() {
                f64::NEG_INFINITY
            } else {
                improvement
            };
            if best.as_ref().is_none_or(|b| rank < b.2) {
                best = Some((
                    Reverted {
                        lever,
                        from,
                        to: to.clone(),
                        improvement,
                        score: objective.score_name(),
                        uncertainty,
                        unbound_clock_mhz: unbound,
                    },
                    j,
                    rank,
                ));
            }
        }
        match best {
            Some((r, j, _)) => {
                reverted.push(r);
                chosen = j;
            }
            None => break,
        }
    }
    Settled { chosen, reverted }
}
