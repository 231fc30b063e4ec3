//! When a point has enough windows: a named, pluggable piece (as nvbench's
//! stopping criteria are), so the protocol's loop stays the same whichever rule a
//! sweep chooses, and every record says which rule stopped it and why.

use crate::stats::relative_spread;
use serde::{Deserialize, Serialize};

/// What a stop rule sees after each window.
#[derive(Clone, Copy, Debug)]
pub struct StopProgress<'a> {
    /// The watched metric of every window so far (J/FLOP, or seconds per op without energy).
    pub values: &'a [f64],
    /// Seconds since the point started, warm-up included.
    pub elapsed_s: f64,
    /// How long the last window took, to predict whether another fits the budget.
    pub last_window_s: f64,
}

/// Why a point stopped taking windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopReason {
    /// The spread fell under the target.
    Converged,
    /// The rule's window count was reached.
    WindowCount,
    /// Another window would have passed the point's time budget.
    TimeBudget,
}

pub trait StopRule {
    /// The rule's name, as configs and records spell it.
    fn name(&self) -> &'static str;
    /// `Some(reason)` to stop now.
    fn decide(&self, progress: &StopProgress<'_>) -> Option<StopReason>;
    /// Whether a point that stopped for `reason` with this spread met its target.
    fn met_target(&self, spread: f64) -> bool;
}

/// Windows until the relative spread (std/mean) of the metric is under `target`,
/// at least `min_windows`, at most `max_windows`, within `budget_s`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RelativeSpread {
    pub target: f64,
    pub min_windows: u32,
    pub max_windows: u32,
    pub budget_s: f64,
}

impl StopRule for RelativeSpread {
    fn name(&self) -> &'static str {
        "rel-spread"
    }

    fn decide(&self, p: &StopProgress<'_>) -> Option<StopReason> {
        let n = p.values.len() as u32;
        if n < self.min_windows {
            return None;
        }
        if relative_spread(p.values) <= self.target {
            Some(StopReason::Converged)
        } else if n >= self.max_windows {
            Some(StopReason::WindowCount)
        } else if p.elapsed_s + p.last_window_s > self.budget_s {
            Some(StopReason::TimeBudget)
        } else {
            None
        }
    }

    fn met_target(&self, spread: f64) -> bool {
        spread <= self.target
    }
}

/// Exactly `windows` windows, whatever their spread (for repeatable run lengths);
/// the spread is still reported against `target`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FixedCount {
    pub windows: u32,
    pub target: f64,
}

impl StopRule for FixedCount {
    fn name(&self) -> &'static str {
        "fixed-count"
    }

    fn decide(&self, p: &StopProgress<'_>) -> Option<StopReason> {
        (p.values.len() as u32 >= self.windows).then_some(StopReason::WindowCount)
    }

    fn met_target(&self, spread: f64) -> bool {
        spread <= self.target
    }
}

/// The stop rules a config can name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopRuleKind {
    /// [`RelativeSpread`] with the protocol's target, window counts and budget.
    #[default]
    RelSpread,
    /// [`FixedCount`] of `min_windows` windows.
    FixedCount,
}

impl StopRuleKind {
    pub fn name(self) -> &'static str {
        match self {
            StopRuleKind::RelSpread => "rel-spread",
            StopRuleKind::FixedCount => "fixed-count",
        }
    }
}

impl std::str::FromStr for StopRuleKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "rel-spread" => Ok(StopRuleKind::RelSpread),
            "fixed-count" => Ok(StopRuleKind::FixedCount),
            _ => Err(format!(
                "unknown stop rule '{s}': expected rel-spread or fixed-count"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(values: &[f64], elapsed_s: f64) -> StopProgress<'_> {
        StopProgress {
            values,
            elapsed_s,
            last_window_s: 1.0,
        }
    }

    #[test]
    fn rel_spread_waits_for_min_windows_then_stops_on_the_first_limit() {
        let r = RelativeSpread {
            target: 0.01,
            min_windows: 3,
            max_windows: 5,
            budget_s: 10.0,
        };
        assert_eq!(r.decide(&p(&[1.0, 1.0], 1.0)), None);
        assert_eq!(
            r.decide(&p(&[1.0, 1.001, 0.999], 3.0)),
            Some(StopReason::Converged)
        );
        let noisy = [1.0, 1.1, 0.9];
        assert_eq!(r.decide(&p(&noisy, 3.0)), None);
        assert_eq!(r.decide(&p(&noisy, 9.5)), Some(StopReason::TimeBudget));
        assert_eq!(
            r.decide(&p(&[1.0, 1.1, 0.9, 1.1, 0.9], 5.0)),
            Some(StopReason::WindowCount)
        );
        assert!(r.met_target(0.005) && !r.met_target(0.02));
    }

    #[test]
    fn fixed_count_ignores_the_spread() {
        let r = FixedCount {
            windows: 4,
            target: 0.01,
        };
        assert_eq!(r.decide(&p(&[1.0, 1.0, 1.0], 1.0)), None);
        assert_eq!(
            r.decide(&p(&[1.0, 2.0, 1.0, 2.0], 1.0)),
            Some(StopReason::WindowCount)
        );
        assert_eq!(r.name(), "fixed-count");
        assert_eq!(
            "fixed-count".parse::<StopRuleKind>(),
            Ok(StopRuleKind::FixedCount)
        );
    }
}
