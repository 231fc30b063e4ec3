//! When a point has enough windows: named, pluggable rules in the manner of
//! nvbench's stopping criteria. The measuring loop owns the limits — the fewest and
//! most windows, the time budget — and a rule only judges whether the windows so
//! far have converged, so every rule stops within the same bounds, and every record
//! says which rule stopped it and why (docs/ARCHITECTURE.md §4.4).

use crate::stats::{mean, relative_spread};
use serde::{Deserialize, Serialize};

/// Why a point stopped taking windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopReason {
    /// The rule's target was met.
    Converged,
    /// The estimate stopped moving before the target was met: a noisy point ends
    /// early, its spread above the target (and flagged `high-spread`).
    EstimateStable,
    /// The most windows a point may take (or, for `fixed-count`, its count).
    WindowCount,
    /// Another window would have passed the point's time budget.
    TimeBudget,
}

impl StopReason {
    pub fn name(self) -> &'static str {
        match self {
            StopReason::Converged => "converged",
            StopReason::EstimateStable => "estimate-stable",
            StopReason::WindowCount => "window-count",
            StopReason::TimeBudget => "time-budget",
        }
    }
}

/// A convergence judge: it sees the watched metric of every window so far (J/FLOP,
/// or seconds per op without energy) and nothing of counts or time.
pub trait StopRule {
    /// The rule's name, as configs and records spell it.
    fn name(&self) -> &'static str;
    /// Whether the windows so far have converged (asked once the loop's minimum is met).
    fn converged(&self, values: &[f64]) -> bool;
    /// Whether these windows met the precision the rule stands for; a point that
    /// did not is flagged `high-spread`.
    fn met_target(&self, values: &[f64]) -> bool;
}

/// Converged when the relative spread (std/mean) is at most `target`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RelativeSpread {
    pub target: f64,
}

impl StopRule for RelativeSpread {
    fn name(&self) -> &'static str {
        "rel-spread"
    }
    fn converged(&self, values: &[f64]) -> bool {
        relative_spread(values) <= self.target
    }
    fn met_target(&self, values: &[f64]) -> bool {
        self.converged(values)
    }
}

/// Converged when the relative standard error of the mean (spread / √n) is at
/// most `target`: noisier points take more windows, each one narrowing the mean.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StandardError {
    pub target: f64,
}

/// The relative standard error of the mean.
pub fn relative_standard_error(values: &[f64]) -> f64 {
    relative_spread(values) / (values.len().max(1) as f64).sqrt()
}

impl StopRule for StandardError {
    fn name(&self) -> &'static str {
        "std-error"
    }
    fn converged(&self, values: &[f64]) -> bool {
        values.len() >= 2 && relative_standard_error(values) <= self.target
    }
    fn met_target(&self, values: &[f64]) -> bool {
        self.converged(values)
    }
}

/// Converged when the estimate (the mean so far) has stopped moving: over the
/// last `windows` windows it stayed within `tolerance` (relative) of where it is
/// now, or within its own standard error where that is larger — more windows of a
/// noisy point would not move it by more than its uncertainty, as nvbench's
/// `stdrel` stops once its noise has stopped changing. It judges no spread: the
/// spread is still reported against `target`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StableEstimate {
    pub tolerance: f64,
    pub windows: u32,
    /// The spread the point is judged against for `high-spread`.
    pub target: f64,
}

impl StopRule for StableEstimate {
    fn name(&self) -> &'static str {
        "stable-estimate"
    }
    fn converged(&self, values: &[f64]) -> bool {
        let k = self.windows.max(1) as usize;
        if values.len() < k + 2 {
            return false;
        }
        let now = mean(values);
        let within = self.tolerance.max(relative_standard_error(values));
        (values.len() - k..values.len()).all(|n| (mean(&values[..n]) / now - 1.0).abs() <= within)
    }
    fn met_target(&self, values: &[f64]) -> bool {
        relative_spread(values) <= self.target
    }
}

/// Never converged: the loop stops at its window count (for repeatable run
/// lengths); the spread is still judged against `target`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FixedCount {
    pub target: f64,
}

impl StopRule for FixedCount {
    fn name(&self) -> &'static str {
        "fixed-count"
    }
    fn converged(&self, _values: &[f64]) -> bool {
        false
    }
    fn met_target(&self, values: &[f64]) -> bool {
        relative_spread(values) <= self.target
    }
}

/// The limits the measuring loop enforces whatever the rule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StopLimits {
    pub min_windows: u32,
    pub max_windows: u32,
    /// Seconds from the point's start (warm-up included) that no window may pass.
    pub budget_s: f64,
}

/// What the loop sees after each window.
#[derive(Clone, Copy, Debug)]
pub struct StopProgress<'a> {
    /// The watched metric of every kept window so far.
    pub values: &'a [f64],
    /// Seconds since the point started, warm-up included.
    pub elapsed_s: f64,
    /// How long the last window took, to predict whether another fits the budget.
    pub last_window_s: f64,
}

/// The loop's decision after a window: the rule's verdict within the limits, and
/// the estimate-stability check that lets a noisy point end early (`also_stable`).
pub fn decide(
    rule: &dyn StopRule,
    also_stable: Option<&StableEstimate>,
    limits: &StopLimits,
    p: &StopProgress<'_>,
) -> Option<StopReason> {
    let n = p.values.len() as u32;
    if n < limits.min_windows {
        return None;
    }
    if rule.converged(p.values) {
        Some(StopReason::Converged)
    } else if also_stable.is_some_and(|s| s.converged(p.values)) {
        Some(StopReason::EstimateStable)
    } else if n >= limits.max_windows {
        Some(StopReason::WindowCount)
    } else if p.elapsed_s + p.last_window_s > limits.budget_s {
        Some(StopReason::TimeBudget)
    } else {
        None
    }
}

/// The stop rules a config can name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopRuleKind {
    /// [`RelativeSpread`] at the protocol's `target_rel_spread`.
    #[default]
    RelSpread,
    /// [`StandardError`] at the protocol's `target_std_error`.
    StdError,
    /// [`StableEstimate`] alone.
    StableEstimate,
    /// [`FixedCount`] of `min_windows` windows.
    FixedCount,
}

impl StopRuleKind {
    pub const ALL: [StopRuleKind; 4] = [
        StopRuleKind::RelSpread,
        StopRuleKind::StdError,
        StopRuleKind::StableEstimate,
        StopRuleKind::FixedCount,
    ];

    pub fn name(self) -> &'static str {
        match self {
            StopRuleKind::RelSpread => "rel-spread",
            StopRuleKind::StdError => "std-error",
            StopRuleKind::StableEstimate => "stable-estimate",
            StopRuleKind::FixedCount => "fixed-count",
        }
    }
}

impl std::str::FromStr for StopRuleKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        StopRuleKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown stop rule '{s}': expected {}",
                    StopRuleKind::ALL.map(|k| k.name()).join(", ")
                )
            })
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

    const LIMITS: StopLimits = StopLimits {
        min_windows: 3,
        max_windows: 5,
        budget_s: 10.0,
    };

    #[test]
    fn the_loop_owns_the_limits_and_the_rule_judges_convergence() {
        let r = RelativeSpread { target: 0.01 };
        let d = |v: &[f64], t: f64| decide(&r, None, &LIMITS, &p(v, t));
        assert_eq!(d(&[1.0, 1.0], 1.0), None);
        assert_eq!(d(&[1.0, 1.001, 0.999], 3.0), Some(StopReason::Converged));
        let noisy = [1.0, 1.1, 0.9];
        assert_eq!(d(&noisy, 3.0), None);
        assert_eq!(d(&noisy, 9.5), Some(StopReason::TimeBudget));
        assert_eq!(
            d(&[1.0, 1.1, 0.9, 1.1, 0.9], 5.0),
            Some(StopReason::WindowCount)
        );
        assert!(r.met_target(&[1.0, 1.001]) && !r.met_target(&noisy));
    }

    #[test]
    fn the_standard_error_narrows_with_more_windows() {
        let r = StandardError { target: 0.01 };
        // a 2% spread: not within 1% over 3 windows, within it over 5 or more
        let v: Vec<f64> = (0..9).map(|i| 1.0 + 0.0245 * [1.0, -1.0][i % 2]).collect();
        assert!(!r.converged(&v[..3]));
        assert!(r.converged(&v[..9]));
        assert!(!r.converged(&v[..1]));
    }

    #[test]
    fn a_noisy_point_ends_early_once_its_estimate_stops_moving_and_says_so() {
        let stable = StableEstimate {
            tolerance: 0.005,
            windows: 3,
            target: 0.01,
        };
        let spread = RelativeSpread { target: 0.01 };
        let limits = StopLimits {
            min_windows: 3,
            max_windows: 40,
            budget_s: 1e9,
        };
        // ±3% around 1, in an irregular order
        let v: Vec<f64> = (0..40u64)
            .map(|i| 1.0 + 0.03 * (((i * 7919) % 13) as f64 / 6.0 - 1.0))
            .collect();
        let stop = (3..=40)
            .find_map(|n| decide(&spread, Some(&stable), &limits, &p(&v[..n], 0.0)).map(|r| (n, r)))
            .unwrap();
        assert_eq!(stop.1, StopReason::EstimateStable, "{stop:?}");
        assert!(stop.0 < 10, "{stop:?}");
        assert!(!stable.met_target(&v[..stop.0]));
        // without the check it runs to the window count
        let without = (3..=40)
            .find_map(|n| decide(&spread, None, &limits, &p(&v[..n], 0.0)).map(|r| (n, r)))
            .unwrap();
        assert_eq!(without, (40, StopReason::WindowCount));
    }

    #[test]
    fn fixed_count_never_converges_and_rules_parse_by_name() {
        let r = FixedCount { target: 0.01 };
        assert!(!r.converged(&[1.0, 1.0, 1.0]));
        let limits = StopLimits {
            min_windows: 4,
            max_windows: 4,
            budget_s: 1e9,
        };
        assert_eq!(decide(&r, None, &limits, &p(&[1.0; 3], 0.0)), None);
        assert_eq!(
            decide(&r, None, &limits, &p(&[1.0; 4], 0.0)),
            Some(StopReason::WindowCount)
        );
        for k in StopRuleKind::ALL {
            assert_eq!(k.name().parse::<StopRuleKind>(), Ok(k));
        }
        assert!("stdrel".parse::<StopRuleKind>().is_err());
    }
}
