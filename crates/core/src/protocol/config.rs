//! The protocol's settings and their defaults (docs/ARCHITECTURE.md §4): one
//! configuration that the sweep, criterion's `EnergyBench` and `EnergyMonitor`
//! all read, so a window, a warm-up and a stop rule mean the same everywhere.

use super::ProtocolError;
use crate::stop::{
    FixedCount, RelativeSpread, StableEstimate, StandardError, StopLimits, StopRule, StopRuleKind,
};
use crate::window::WindowRules;
use serde::{Deserialize, Serialize};

/// Every knob of the protocol, with the defaults of docs/ARCHITECTURE.md §4. Settable from a
/// sweep config's `[protocol]` table and from `joulebench sweep` flags.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProtocolConfig {
    /// Idle power measured once per device per sweep, over this many seconds.
    pub idle_baseline_s: f64,
    /// The shortest warm-up, seconds: the kernel runs at least this long before
    /// the first window.
    pub warmup_s: f64,
    /// The longest warm-up, seconds. A point whose power and temperature have not
    /// settled by then is measured anyway and flagged `unsettled`.
    pub warmup_max_s: f64,
    /// Settling is judged on the slopes of power, of the work's pace and of
    /// temperature over this many trailing seconds at load — so it is also the
    /// least time at load before a point can be called settled. Long enough for a
    /// whole-degree temperature to show a slope of `settle_temp_c_per_s`.
    pub settle_window_s: f64,
    /// Settled when temperature changes by at most this many °C per second …
    pub settle_temp_c_per_s: f64,
    /// … power by at most this fraction of itself per second …
    pub settle_power_per_s: f64,
    /// … and the time per iteration by at most this fraction of itself per second
    /// (at the power limit, power stays put while the clock drifts with the die's
    /// temperature: the pace shows it).
    pub settle_pace_per_s: f64,
    /// Shortest window in seconds; the window is also at least
    /// `min_counter_updates` updates of the energy meter.
    pub min_window_s: f64,
    pub min_counter_updates: u32,
    /// Where an iteration lasts near a simple fraction of the meter's update period
    /// (½, ⅓, ¼ …, which would show the power sensor the same phases of the work in
    /// every period), let the device idle between windows for a fraction of one
    /// iteration, at most one update period (never inside a window), so that windows
    /// start at different phases of the work; each such window then opens only after
    /// the meter's response time of work. Other iterations, and with this off: windows
    /// follow each other on shared updates.
    pub phase_shift: bool,
    /// Which rule judges that a point's windows have converged: `rel-spread` (the
    /// spread under `target_rel_spread`), `std-error` (the standard error of the
    /// mean under `target_std_error`), `stable-estimate` (the estimate stopped
    /// moving) or `fixed-count` (exactly `min_windows`). The loop enforces the
    /// window counts and the budget whatever the rule.
    pub stop_rule: StopRuleKind,
    /// The relative spread of J/FLOP across windows a point aims at (and is flagged
    /// `high-spread` above).
    pub target_rel_spread: f64,
    /// The relative standard error of the mean `std-error` aims at.
    pub target_std_error: f64,
    /// Also stop when the estimate has stopped moving (within `stable_tolerance`, or
    /// its own standard error where larger, over the last `stable_windows` windows),
    /// so that a noisy point ends early, says so, and is flagged `high-spread`
    /// instead of running to its budget.
    pub stop_when_stable: bool,
    pub stable_tolerance: f64,
    pub stable_windows: u32,
    pub min_windows: u32,
    pub max_windows: u32,
    /// Time budget per point (warm-up included), seconds; `min_windows` is always met.
    pub point_budget_s: f64,
    /// Drop a window during which a thermal, hardware-slowdown or power-brake
    /// reason held the clock down (not the power limit: that is the normal operating
    /// point), let the device cool for `throttle_cooldown_s` — twice as long after
    /// each drop — and measure another; the record counts the windows dropped.
    /// Off (the default): such windows are kept and the point is flagged
    /// `throttled`.
    pub drop_throttled: bool,
    pub throttle_cooldown_s: f64,
}

impl Default for ProtocolConfig {
    fn default() -> Self {
        ProtocolConfig {
            idle_baseline_s: 3.0,
            warmup_s: 1.0,
            warmup_max_s: 60.0,
            settle_window_s: 10.0,
            settle_temp_c_per_s: 0.1,
            settle_power_per_s: 0.002,
            settle_pace_per_s: 0.0005,
            min_window_s: 1.0,
            min_counter_updates: 10,
            phase_shift: true,
            stop_rule: StopRuleKind::RelSpread,
            target_rel_spread: 0.01,
            target_std_error: 0.005,
            stop_when_stable: true,
            stable_tolerance: 0.003,
            stable_windows: 3,
            min_windows: 3,
            max_windows: 20,
            point_budget_s: 60.0,
            drop_throttled: false,
            throttle_cooldown_s: 1.0,
        }
    }
}

/// Longest duration any protocol setting may ask for: a day.
const MAX_SECONDS: f64 = 86_400.0;
const MAX_WINDOWS: u32 = 10_000;

impl ProtocolConfig {
    pub fn validate(&self) -> Result<(), ProtocolError> {
        let bad = |m: String| Err(ProtocolError::Config(m));
        let seconds = |name: &str, x: f64, positive: bool| -> Result<(), ProtocolError> {
            let ok = x.is_finite() && x <= MAX_SECONDS && if positive { x > 0.0 } else { x >= 0.0 };
            if ok {
                Ok(())
            } else {
                bad(format!(
                    "{name} = {x} must be {} and at most {MAX_SECONDS} s",
                    if positive { "> 0" } else { "≥ 0" }
                ))
            }
        };
        seconds("idle_baseline_s", self.idle_baseline_s, false)?;
        seconds("warmup_s", self.warmup_s, false)?;
        seconds("warmup_max_s", self.warmup_max_s, false)?;
        seconds("settle_window_s", self.settle_window_s, true)?;
        seconds("min_window_s", self.min_window_s, true)?;
        seconds("point_budget_s", self.point_budget_s, true)?;
        seconds("throttle_cooldown_s", self.throttle_cooldown_s, false)?;
        if self.warmup_max_s < self.warmup_s {
            return bad("warmup_max_s must be ≥ warmup_s".into());
        }
        for (name, x) in [
            ("settle_temp_c_per_s", self.settle_temp_c_per_s),
            ("settle_power_per_s", self.settle_power_per_s),
            ("settle_pace_per_s", self.settle_pace_per_s),
            ("target_rel_spread", self.target_rel_spread),
            ("target_std_error", self.target_std_error),
            ("stable_tolerance", self.stable_tolerance),
        ] {
            if !(x.is_finite() && x > 0.0) {
                return bad(format!("{name} must be > 0 (e.g. 0.01 for 1%)"));
            }
        }
        if self.min_counter_updates > MAX_WINDOWS {
            return bad(format!("min_counter_updates must be ≤ {MAX_WINDOWS}"));
        }
        if self.min_windows < 2 {
            return bad("min_windows must be ≥ 2 (a spread needs two windows)".into());
        }
        if self.max_windows < self.min_windows {
            return bad("max_windows must be ≥ min_windows".into());
        }
        if self.max_windows > MAX_WINDOWS {
            return bad(format!("max_windows must be ≤ {MAX_WINDOWS}"));
        }
        if self.stable_windows == 0 || self.stable_windows > MAX_WINDOWS {
            return bad(format!(
                "stable_windows must be between 1 and {MAX_WINDOWS}"
            ));
        }
        Ok(())
    }

    pub fn window_rules(&self) -> WindowRules {
        WindowRules {
            min_window_s: self.min_window_s,
            min_counter_updates: self.min_counter_updates,
        }
    }

    /// The window length this meter needs: max(min_window_s, min_counter_updates × period).
    pub fn window_target_s(&self, meter_update_period_s: f64) -> f64 {
        self.window_rules().target_s(meter_update_period_s)
    }

    /// The rule that judges convergence.
    pub fn stop_rule(&self) -> Box<dyn StopRule> {
        match self.stop_rule {
            StopRuleKind::RelSpread => Box::new(RelativeSpread {
                target: self.target_rel_spread,
            }),
            StopRuleKind::StdError => Box::new(StandardError {
                target: self.target_std_error,
            }),
            StopRuleKind::StableEstimate => Box::new(self.stable_estimate()),
            StopRuleKind::FixedCount => Box::new(FixedCount {
                target: self.target_rel_spread,
            }),
        }
    }

    /// The check that ends a noisy point once its estimate stops moving, where asked.
    pub fn stable_check(&self) -> Option<StableEstimate> {
        (self.stop_when_stable && self.stop_rule != StopRuleKind::FixedCount)
            .then(|| self.stable_estimate())
    }

    fn stable_estimate(&self) -> StableEstimate {
        StableEstimate {
            tolerance: self.stable_tolerance,
            windows: self.stable_windows,
            target: self.target_rel_spread,
        }
    }

    /// The limits the measuring loop enforces (a fixed count is its own maximum).
    pub fn stop_limits(&self) -> StopLimits {
        StopLimits {
            min_windows: self.min_windows,
            max_windows: match self.stop_rule {
                StopRuleKind::FixedCount => self.min_windows,
                _ => self.max_windows,
            },
            budget_s: match self.stop_rule {
                StopRuleKind::FixedCount => f64::INFINITY,
                _ => self.point_budget_s,
            },
        }
    }

    /// The longest a point can take with these settings on a meter updating every
    /// `update_period_s` (excluding preparing and checking the kernel): warm-up at
    /// its bound, then windows until the budget or the window count stops them.
    pub fn point_bound_s(&self, update_period_s: f64) -> f64 {
        let per_window = self.window_target_s(update_period_s) + 2.0 * update_period_s;
        let windows_s = match self.stop_rule {
            StopRuleKind::FixedCount => self.min_windows as f64 * per_window,
            _ => (self.max_windows as f64 * per_window)
                .min((self.point_budget_s - self.warmup_max_s).max(0.0) + per_window)
                .max(self.min_windows as f64 * per_window),
        };
        self.warmup_max_s + windows_s
    }

    /// The time a point usually takes: the warm-up a settling check needs and
    /// `min_windows` windows.
    pub fn point_typical_s(&self, update_period_s: f64) -> f64 {
        let per_window = self.window_target_s(update_period_s) + 1.5 * update_period_s;
        let warmup = self
            .warmup_s
            .max(self.settle_window_s.min(self.warmup_max_s));
        warmup + self.min_windows as f64 * per_window
    }
}
