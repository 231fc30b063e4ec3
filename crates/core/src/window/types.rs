//! What a window is and the rules it follows (docs/ARCHITECTURE.md §4.3): its
//! length rule, the safeguards tests may turn off, and the window itself with the
//! telemetry taken while its work ran — the parts every caller of the engine shares.

use crate::meter::Telemetry;
use crate::stats::median;
use serde::{Deserialize, Serialize};

/// How long a window must last to be trusted: at least `min_window_s` and at least
/// `min_counter_updates` updates of the meter (max(1 s, 10 updates) by default).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WindowRules {
    pub min_window_s: f64,
    pub min_counter_updates: u32,
}

impl Default for WindowRules {
    fn default() -> Self {
        WindowRules {
            min_window_s: 1.0,
            min_counter_updates: 10,
        }
    }
}

/// Windows around work the engine does not run (`EnergyMonitor`, criterion's
/// `Energy::reading`) are trusted from this many counter updates: their edges, where
/// board power steps and reaches the counter up to a period late, err by about a
/// period of the step over the window's length (docs/ARCHITECTURE.md §4.8).
pub const INTERVAL_MIN_COUNTER_UPDATES: u32 = 100;

impl WindowRules {
    /// These rules for interval windows: at least [`INTERVAL_MIN_COUNTER_UPDATES`].
    pub fn for_intervals(self) -> WindowRules {
        WindowRules {
            min_counter_updates: self.min_counter_updates.max(INTERVAL_MIN_COUNTER_UPDATES),
            ..self
        }
    }

    /// The window length a meter updating every `update_period_s` needs.
    pub fn target_s(&self, update_period_s: f64) -> f64 {
        self.min_window_s
            .max(self.min_counter_updates as f64 * update_period_s.max(0.0))
    }

    /// A window this long cannot be trusted on such a meter (2% tolerance for
    /// where the closing update falls).
    pub fn is_short(&self, seconds: f64, update_period_s: f64) -> bool {
        seconds < 0.98 * self.target_s(update_period_s)
    }
}

/// The safeguards of the window engine and the protocol around it
/// (docs/ARCHITECTURE.md §4.2, §4.3, §4.5), each on by default. Only tests turn one
/// off, to show what it prevents; a measurement never does. The others are protocol
/// settings: `phase_shift`, and the settling warm-up (`warmup_max_s`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Safeguards {
    /// A window opens only once the work has run the meter's response time, so that
    /// the sensor behind its first update saw work alone. Off: it opens on the first
    /// update after the work starts.
    pub busy_lead_in: bool,
    /// The work between two updates is counted by where each update falls inside
    /// its block. Off: every block that overlaps the window counts whole.
    pub exact_counting: bool,
    /// Nothing idles inside a window. Off: the host sleeps 10–30 ms between the
    /// blocks of a window, as schema-1 windows did.
    pub no_idle_inside: bool,
    /// Telemetry is sampled while the window's work runs. Off: one reading, taken
    /// after the window's work has stopped, as schema-1 windows took it.
    pub telemetry_during_work: bool,
    /// Update times come from the counter's own rhythm: each observed time is fitted
    /// to the regular grid the counter changes on. Off: each observation is trusted
    /// as it was stamped, however late the polling thread saw it.
    pub grid_fit: bool,
    /// A block's length is kept away from simple fractions of the counter's period
    /// (½, ⅓, ¼, 1, 3⁄2 …), so its syncs do not fall at one phase of the sensor's
    /// slice in every period. Off: the block is whatever calibration found.
    pub non_aliasing_blocks: bool,
    /// The warm-up judges settling by the slopes of power and of the work's pace
    /// over a minimum time at load, which whole-degree temperatures cannot fool.
    /// Off: by the slope of the whole-degree temperature alone, as before.
    pub settle_by_power_and_pace: bool,
}

impl Default for Safeguards {
    fn default() -> Self {
        Safeguards {
            busy_lead_in: true,
            exact_counting: true,
            no_idle_inside: true,
            telemetry_during_work: true,
            grid_fit: true,
            non_aliasing_blocks: true,
            settle_by_power_and_pace: true,
        }
    }
}

/// A median with the smallest and largest value seen.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Range {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Range {
    pub fn of(xs: &[f64]) -> Option<Range> {
        if xs.is_empty() {
            return None;
        }
        Some(Range {
            median: median(xs),
            min: xs.iter().cloned().fold(f64::INFINITY, f64::min),
            max: xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
        })
    }
}

/// Telemetry sampled while a window's work ran, summarised.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowTelemetry {
    /// Readings the summary is made of (0: the meter had no telemetry).
    pub samples: u32,
    pub power_w: Option<Range>,
    pub sm_clock_mhz: Option<Range>,
    pub mem_clock_mhz: Option<Range>,
    pub temperature_c: Option<Range>,
    /// Every throttle reason seen in any reading, sorted.
    pub throttle_reasons: Vec<String>,
    pub enforced_power_limit_w: Option<f64>,
    /// The SM clock the device runs at when nothing holds it back.
    pub default_sm_clock_mhz: Option<u32>,
    pub performance_state: Option<String>,
}

impl WindowTelemetry {
    pub fn of<'a>(readings: impl IntoIterator<Item = &'a Telemetry>) -> WindowTelemetry {
        let readings: Vec<&Telemetry> = readings.into_iter().collect();
        let range = |f: &dyn Fn(&Telemetry) -> Option<f64>| {
            Range::of(&readings.iter().filter_map(|t| f(t)).collect::<Vec<_>>())
        };
        let mut reasons: Vec<String> = readings
            .iter()
            .flat_map(|t| t.throttle_reasons.iter().cloned())
            .collect();
        reasons.sort();
        reasons.dedup();
        WindowTelemetry {
            samples: readings.len() as u32,
            power_w: range(&|t| t.power_w),
            sm_clock_mhz: range(&|t| t.sm_clock_mhz.map(f64::from)),
            mem_clock_mhz: range(&|t| t.mem_clock_mhz.map(f64::from)),
            temperature_c: range(&|t| t.temperature_c.map(f64::from)),
            throttle_reasons: reasons,
            enforced_power_limit_w: readings.iter().rev().find_map(|t| t.enforced_power_limit_w),
            default_sm_clock_mhz: readings.iter().rev().find_map(|t| t.default_sm_clock_mhz),
            performance_state: readings
                .iter()
                .rev()
                .find_map(|t| t.performance_state.clone()),
        }
    }

    /// A thermal, hardware-slowdown or power-brake reason held the clock down (the
    /// power limit is not one of them).
    pub fn braked(&self) -> bool {
        self.throttle_reasons
            .iter()
            .any(|r| crate::meter::is_brake_reason(r))
    }
}

/// One measurement window. Records of schema 1 (windows with idle gaps, from
/// joulebench before the busy-window engine) read into the same type: their
/// `seconds` is the wall time of the whole window, gaps included, and they carry
/// `busy_s`, `gap_s` and one `telemetry` reading taken after the work.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// Iterations done between the opening and the closing update (fractional:
    /// the updates fall inside kernel runs, and each block's iterations are
    /// apportioned by time).
    pub iterations: f64,
    /// From the opening to the closing update; for a time-only window, the wall
    /// time of its work. Every figure of the window (J/FLOP, TFLOP/s, average
    /// power) is over this one interval.
    #[serde(alias = "wall_s")]
    pub seconds: f64,
    /// Device time (timestamps, CUDA events) of the counted iterations: the kernels'
    /// own time, without what the host did between them.
    pub device_s: Option<f64>,
    /// Energy between the two updates.
    pub joules: Option<f64>,
    /// How long the device had been busy when the window opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead_in_s: Option<f64>,
    /// Meter updates inside the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counter_updates: Option<u32>,
    /// The share of the window the device sat idle, from its own timestamps:
    /// 1 − device time / window time. `None` where device time does not cover all
    /// the window's work (no timestamps, or work outside the timed kernel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_share: Option<f64>,
    /// Telemetry sampled while the window's work ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub during: Option<WindowTelemetry>,
    /// Schema 1 only: wall time spent running blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub busy_s: Option<f64>,
    /// Schema 1 only: idle time inside the window, removed at idle power.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap_s: Option<f64>,
    /// Schema 1 only: one reading taken after the window's work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<Telemetry>,
    /// The host's CPU and DRAM energy over the same interval, where the meter
    /// carries a host meter (RAPL) beside the device's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_joules: Option<f64>,
}

impl Window {
    /// Seconds per iteration over the window's own interval: the time base every
    /// figure of the window shares. (Schema-1 windows, whose interval held idle
    /// gaps, keep the device or busy time they were summarised with.)
    pub fn seconds_per_op(&self) -> f64 {
        if self.busy_s.is_some() {
            return self.device_s.or(self.busy_s).unwrap_or(self.seconds) / self.iterations;
        }
        self.seconds / self.iterations
    }

    /// Device time per iteration, where the device timed its work.
    pub fn device_seconds_per_op(&self) -> Option<f64> {
        self.device_s.map(|d| d / self.iterations)
    }

    /// Joules per iteration. A schema-1 window had its gaps' energy removed at
    /// idle power (`idle_w`), as it was recorded.
    pub fn joules_per_op(&self, idle_w: Option<f64>) -> Option<f64> {
        let gap_j = self.gap_s.unwrap_or(0.0) * idle_w.unwrap_or(0.0);
        self.joules.map(|j| (j - gap_j) / self.iterations)
    }

    /// Energy over the window's own duration.
    pub fn average_w(&self, idle_w: Option<f64>) -> Option<f64> {
        match (self.joules, self.busy_s) {
            // schema 1: what it reported, energy less idle gaps over busy time
            (Some(_), Some(busy)) => self
                .joules_per_op(idle_w)
                .map(|j| j * self.iterations / busy),
            (Some(j), None) if self.seconds > 0.0 => Some(j / self.seconds),
            _ => None,
        }
    }
}
