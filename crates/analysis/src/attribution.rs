//! Where a saving comes from (docs/ARCHITECTURE.md §7, "Attribution"): for a chosen
//! setting and its baseline, what each lever that differs saves and costs on its
//! own — measured against the setting that differs from the chosen one in that
//! lever alone, else against the baseline with that lever alone changed — and what
//! they save together. Savings of several levers do not add up: each is measured
//! with the others as chosen.

use crate::format::pct;
use crate::levers::{twin, Lever, LeverValues, Levered};
use crate::objective::Candidate;
use crate::significance::{beats, combined};

/// What a lever's figure was measured against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Against {
    /// The chosen setting with this lever at the baseline's value.
    ChosenWithout,
    /// The baseline with only this lever at the chosen value.
    BaselineWith,
    /// Neither was measured.
    NotMeasured,
}

/// One lever's own share of the advice.
#[derive(Clone, Debug, PartialEq)]
pub struct LeverEffect {
    pub lever: Lever,
    /// The baseline's value.
    pub from: String,
    /// The chosen value.
    pub to: String,
    /// Index of the setting compared with.
    pub against: Option<usize>,
    pub how: Against,
    /// 1 − E/E_against: the energy this lever alone saves.
    pub energy_saved: Option<f64>,
    /// T/T_against − 1: the time it alone costs.
    pub slowdown: Option<f64>,
    /// The combined relative uncertainty of the two energies compared.
    pub uncertainty: Option<f64>,
    /// A lock that did not bind: the clock the GPU ran at without it, MHz.
    pub unbound_clock_mhz: Option<f64>,
}

impl LeverEffect {
    /// Whether its saving beats the uncertainty (`None` where not measured).
    pub fn significant(&self) -> Option<bool> {
        Some(beats(self.energy_saved?, self.uncertainty?))
    }

    /// "precision bf16 → fp8-e4m3: +48.1% energy saved ±1.4%, -43.0% slowdown".
    pub fn describe(&self) -> String {
        let head = format!("{} {} → {}", self.lever.name(), self.from, self.to);
        if let Some(seen) = self.unbound_clock_mhz {
            return format!(
                "{head}: does not bind (the GPU ran at {seen:.0} MHz under its power limit)"
            );
        }
        match (self.energy_saved, self.slowdown, self.uncertainty) {
            (Some(e), Some(t), Some(u)) => format!(
                "{head}: {} energy saved ±{:.1}%, {} slowdown",
                pct(e),
                u * 100.0,
                pct(t)
            ),
            _ => format!("{head}: its own effect was not measured"),
        }
    }
}

/// Every lever's share, and the whole against the baseline.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Attribution {
    pub levers: Vec<LeverEffect>,
    /// Chosen against the baseline, all levers together.
    pub energy_saved: Option<f64>,
    pub slowdown: Option<f64>,
    pub uncertainty: Option<f64>,
}

impl Attribution {
    pub fn lever(&self, lever: Lever) -> Option<&LeverEffect> {
        self.levers.iter().find(|e| e.lever == lever)
    }
}

/// The attribution of `chosen` against `baseline` (an index, where measured) whose
/// lever values are `values` (those of the baseline, or what it names where it was
/// not measured), among `among`.
pub fn attribute<C: Candidate + Levered>(
    items: &[C],
    among: &[usize],
    chosen: usize,
    baseline: Option<usize>,
    values: &LeverValues,
    levers: &[Lever],
) -> Attribution {
    let c = &items[chosen];
    let compare = |a: usize, b: usize| {
        // a's effect over b: energy saved, slowdown, uncertainty
        let (x, y) = (&items[a], &items[b]);
        (
            1.0 - x.joules_per_unit() / y.joules_per_unit(),
            x.seconds_per_unit() / y.seconds_per_unit() - 1.0,
            combined(x.uncertainty().energy, y.uncertainty().energy),
        )
    };
    let mut effects = Vec::new();
    for &lever in levers {
        let (Some(from), Some(to)) = (values.get(&lever), c.lever_value(lever)) else {
            continue;
        };
        if *from == to {
            continue;
        }
        let unbound = (lever == Lever::Clock)
            .then(|| c.unbound_clock_mhz())
            .flatten();
        let without = twin(items, among, chosen, lever, from, levers);
        let with = baseline.and_then(|b| twin(items, among, b, lever, &to, levers));
        let (against, how, figures) = match (without, with) {
            (Some(j), _) => (Some(j), Against::ChosenWithout, Some(compare(chosen, j))),
            (None, Some(j)) => (
                Some(j),
                Against::BaselineWith,
                baseline.map(|b| compare(j, b)),
            ),
            (None, None) => (None, Against::NotMeasured, None),
        };
        effects.push(LeverEffect {
            lever,
            from: from.clone(),
            to,
            against,
            how,
            energy_saved: figures.map(|f| f.0),
            slowdown: figures.map(|f| f.1),
            uncertainty: figures.map(|f| f.2),
            unbound_clock_mhz: unbound,
        });
    }
    let together = baseline
        .filter(|&b| b != chosen)
        .map(|b| compare(chosen, b));
    let same = baseline == Some(chosen);
    Attribution {
        levers: effects,
        energy_saved: together.map(|t| t.0).or(same.then_some(0.0)),
        slowdown: together.map(|t| t.1).or(same.then_some(0.0)),
        uncertainty: together.map(|t| t.2),
    }
}
