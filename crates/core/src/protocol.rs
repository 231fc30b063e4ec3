//! The measurement protocol of docs/ARCHITECTURE.md §4, written once against the traits:
//! a warm-up that lasts until power and temperature have settled, then busy
//! windows from the one window engine (`crate::window`) until a named stop rule
//! (`crate::stop`) is met, telemetry sampled during the work, and validity flags
//! that tell a card at its power limit from a throttled one.

use crate::backend::{BackendError, PreparedKernel};
use crate::clock::Clock;
use crate::meter::{is_brake_reason, is_power_limit_reason, EnergyMeter, MeterError, MeterSource};
use crate::stats::{median, relative_spread, Stat};
use crate::stop::{FixedCount, RelativeSpread, StopProgress, StopReason, StopRule, StopRuleKind};
use crate::window::{Safeguards, WindowEngine, WindowError, WindowRules, WindowTelemetry};
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub use crate::window::{Range, Window};

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
    /// Settling is judged on the slopes of power and temperature over this many
    /// trailing seconds of telemetry.
    pub settle_window_s: f64,
    /// Settled when temperature changes by at most this many °C per second …
    pub settle_temp_c_per_s: f64,
    /// … and power by at most this fraction of itself per second.
    pub settle_power_per_s: f64,
    /// Shortest window in seconds; the window is also at least
    /// `min_counter_updates` updates of the energy meter.
    pub min_window_s: f64,
    pub min_counter_updates: u32,
    /// Between windows, let the device idle for a fraction of one iteration, at most
    /// one update period of the meter (never inside a window), so that windows start
    /// at different phases of the work
    /// against the power sensor; each window then opens only after the meter's
    /// response time of work. Off: windows follow each other on shared updates.
    pub phase_shift: bool,
    /// Which rule decides that a point has enough windows: `rel-spread` (until the
    /// spread is under `target_rel_spread`, within the window counts and budget)
    /// or `fixed-count` (exactly `min_windows`).
    pub stop_rule: StopRuleKind,
    /// Stop once the relative spread of J/FLOP across windows is under this.
    pub target_rel_spread: f64,
    pub min_windows: u32,
    pub max_windows: u32,
    /// Time budget per point (warm-up included), seconds; `min_windows` is always met.
    pub point_budget_s: f64,
}

impl Default for ProtocolConfig {
    fn default() -> Self {
        ProtocolConfig {
            idle_baseline_s: 3.0,
            warmup_s: 1.0,
            warmup_max_s: 30.0,
            settle_window_s: 3.0,
            settle_temp_c_per_s: 0.1,
            settle_power_per_s: 0.01,
            min_window_s: 1.0,
            min_counter_updates: 10,
            phase_shift: true,
            stop_rule: StopRuleKind::RelSpread,
            target_rel_spread: 0.01,
            min_windows: 3,
            max_windows: 20,
            point_budget_s: 60.0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("invalid protocol setting: {0}")]
    Config(String),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Meter(#[from] MeterError),
    /// The meter misbehaved during this point (stalled, went backwards): its
    /// windows are rejected, and the point is recorded as failed with the reason.
    #[error("{0}")]
    UntrustedMeter(String),
    /// The stop flag was raised (Ctrl-C): the point was abandoned between two blocks
    /// of work, and is not a measurement.
    #[error("interrupted before the point was measured")]
    Interrupted,
}

impl From<WindowError<BackendError>> for ProtocolError {
    fn from(e: WindowError<BackendError>) -> Self {
        match e {
            WindowError::Meter(m) => ProtocolError::Meter(m),
            WindowError::Work(b) => ProtocolError::Backend(b),
            e @ (WindowError::MeterStalled { .. }
            | WindowError::MeterBackwards { .. }
            | WindowError::MeterJumped { .. }) => ProtocolError::UntrustedMeter(e.to_string()),
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
        if self.warmup_max_s < self.warmup_s {
            return bad("warmup_max_s must be ≥ warmup_s".into());
        }
        for (name, x) in [
            ("settle_temp_c_per_s", self.settle_temp_c_per_s),
            ("settle_power_per_s", self.settle_power_per_s),
            ("target_rel_spread", self.target_rel_spread),
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

    pub fn stop_rule(&self) -> Box<dyn StopRule> {
        match self.stop_rule {
            StopRuleKind::RelSpread => Box::new(RelativeSpread {
                target: self.target_rel_spread,
                min_windows: self.min_windows,
                max_windows: self.max_windows,
                budget_s: self.point_budget_s,
            }),
            StopRuleKind::FixedCount => Box::new(FixedCount {
                windows: self.min_windows,
                target: self.target_rel_spread,
            }),
        }
    }

    /// The longest a point can take with these settings on a meter updating every
    /// `update_period_s` (excluding preparing and checking the kernel): warm-up at
    /// its bound, then windows until the budget or the window count stops them.
    pub fn point_bound_s(&self, update_period_s: f64) -> f64 {
        let per_window = self.window_target_s(update_period_s) + 2.0 * update_period_s;
        let windows_s = match self.stop_rule {
            StopRuleKind::RelSpread => (self.max_windows as f64 * per_window)
                .min((self.point_budget_s - self.warmup_max_s).max(0.0) + per_window)
                .max(self.min_windows as f64 * per_window),
            StopRuleKind::FixedCount => self.min_windows as f64 * per_window,
        };
        self.warmup_max_s + windows_s
    }

    /// The time a point usually takes: the shortest warm-up and `min_windows` windows.
    pub fn point_typical_s(&self, update_period_s: f64) -> f64 {
        let per_window = self.window_target_s(update_period_s) + 1.5 * update_period_s;
        self.warmup_s + self.min_windows as f64 * per_window
    }
}

/// How a record's windows were taken. Records of schema 1 do not say, and read
/// as `gapped`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WindowMethod {
    /// Schema 1: blocks separated by sleeps, a wait for the closing update after
    /// the work, idle power subtracted for those gaps and the rest divided by busy
    /// time. Biased high where the board stays above idle in the gaps.
    #[default]
    Gapped,
    /// Busy from before the opening counter update to after the closing one, the
    /// work between them counted exactly.
    Busy,
}

impl WindowMethod {
    pub fn name(self) -> &'static str {
        match self {
            WindowMethod::Gapped => "gapped",
            WindowMethod::Busy => "busy",
        }
    }

    pub fn meaning(self) -> &'static str {
        match self {
            WindowMethod::Gapped => "schema-1 windows with idle gaps inside, idle power subtracted for them (biased high: the board stays above idle in the gaps, and average power reads above the limit)",
            WindowMethod::Busy => "windows from one counter update to another with the GPU busy throughout, the work between the updates counted exactly",
        }
    }
}

/// Why a record's numbers deserve caution — or, for `power-limited`, what they
/// mean. Reports show flags; they never hide them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ValidityFlag {
    /// A window was shorter than max(1 s, 10 meter updates).
    ShortWindow,
    /// The spread of J/FLOP (or of time, without a meter) stayed above the target.
    HighSpread,
    /// A thermal, hardware-slowdown or power-brake throttle reason, or an SM clock
    /// under 75% of its default with no power-limit reason to explain it.
    Throttled,
    /// No energy meter: time only.
    NoEnergy,
    /// Measured on a CPU emulation of a GPU (lavapipe and the like).
    CpuEmulation,
    /// The enforced power limit differs from the one requested.
    CapNotEnforced,
    /// Information, not a caution: the card ran at its power limit (the normal
    /// operating point of heavy work), at the clock the telemetry shows.
    PowerLimited,
    /// The point asked for the default power limit, but the GPU's limit was not its
    /// default (a killed sweep or another tool left it capped): not a baseline.
    CapNotDefault,
    /// The point asked for the default clocks, but a clock was locked (a killed run
    /// or another tool left it locked): not a baseline.
    ClocksNotDefault,
    /// The average power exceeded the enforced limit by more than 3%: a
    /// self-check of the measurement that failed.
    AboveLimit,
    /// The warm-up reached its time bound before power and temperature settled.
    Unsettled,
}

impl ValidityFlag {
    pub fn name(self) -> &'static str {
        match self {
            ValidityFlag::ShortWindow => "short-window",
            ValidityFlag::HighSpread => "high-spread",
            ValidityFlag::Throttled => "throttled",
            ValidityFlag::NoEnergy => "no-energy",
            ValidityFlag::CpuEmulation => "cpu-emulation",
            ValidityFlag::CapNotEnforced => "cap-not-enforced",
            ValidityFlag::PowerLimited => "power-limited",
            ValidityFlag::CapNotDefault => "cap-not-default",
            ValidityFlag::ClocksNotDefault => "clocks-not-default",
            ValidityFlag::AboveLimit => "above-limit",
            ValidityFlag::Unsettled => "unsettled",
        }
    }

    pub fn meaning(self) -> &'static str {
        match self {
            ValidityFlag::ShortWindow => "a window was shorter than max(1 s, 10 energy-meter updates); its energy may be off by a sensor period",
            ValidityFlag::HighSpread => "the relative spread across windows stayed above the target within the time budget",
            ValidityFlag::Throttled => "a thermal, hardware-slowdown or power-brake throttle reason was active, or the SM clock fell under 75% of its default with no power limit to explain it",
            ValidityFlag::NoEnergy => "no energy meter on this device: time was measured, energy was not",
            ValidityFlag::CpuEmulation => "measured on a CPU emulation of a GPU (e.g. lavapipe): not a GPU's numbers",
            ValidityFlag::CapNotEnforced => "the enforced power limit differed from the requested cap",
            ValidityFlag::PowerLimited => "information, not a caution: the GPU ran at its power limit and lowered its clock to stay under it (NVML's sw-power-cap), the normal operating point of heavy work",
            ValidityFlag::CapNotDefault => "the point asked for the default power limit, but the GPU's limit differed from its default (a killed sweep or another tool left it capped); it is never used as the default-limit baseline",
            ValidityFlag::ClocksNotDefault => "the point asked for the default clocks, but a clock of the GPU was locked (a killed run or another tool left it locked); it is never used as the default-clock baseline",
            ValidityFlag::AboveLimit => "the average power was more than 3% above the enforced power limit: the energy or the time of this point is wrong",
            ValidityFlag::Unsettled => "the warm-up ended at its time bound before power and temperature settled; the numbers may drift with the GPU's temperature",
        }
    }

    /// Whether the flag asks for caution. `power-limited` is information.
    pub fn is_caution(self) -> bool {
        !matches!(self, ValidityFlag::PowerLimited)
    }

    /// "caution" or "information", as reports list it.
    pub fn kind(self) -> &'static str {
        if self.is_caution() {
            "caution"
        } else {
            "information"
        }
    }

    pub const ALL: [ValidityFlag; 11] = [
        ValidityFlag::ShortWindow,
        ValidityFlag::HighSpread,
        ValidityFlag::Throttled,
        ValidityFlag::NoEnergy,
        ValidityFlag::CpuEmulation,
        ValidityFlag::CapNotEnforced,
        ValidityFlag::PowerLimited,
        ValidityFlag::CapNotDefault,
        ValidityFlag::ClocksNotDefault,
        ValidityFlag::AboveLimit,
        ValidityFlag::Unsettled,
    ];
}

/// A point's medians and spreads (docs/ARCHITECTURE.md §4.6).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub seconds_per_op: Stat,
    pub tflops: f64,
    pub joules_per_op: Option<Stat>,
    pub joules_per_flop: Option<Stat>,
    /// Energy per op above the idle baseline (idle power × time per op subtracted).
    pub above_idle_joules_per_op: Option<f64>,
    /// Median over windows of each window's energy over its own duration.
    pub average_w: Option<f64>,
    /// The host's CPU and DRAM energy over the same windows, where a host meter
    /// (RAPL) read it for every window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostSummary>,
}

/// The host beside the GPU: what a node costs per FLOP, not only its GPU board.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostSummary {
    /// Host (CPU packages and DRAM) energy per FLOP.
    pub host_joules_per_flop: Stat,
    /// GPU and host together per FLOP; `None` where the GPU has no energy meter.
    pub gpu_and_host_joules_per_flop: Option<Stat>,
    /// Median over windows of the host's energy over the window's duration.
    pub host_average_w: f64,
}

impl Summary {
    pub fn picojoules_per_flop(&self) -> Option<f64> {
        self.joules_per_flop.map(|s| s.median * 1e12)
    }
}

/// What the point's telemetry came to: readings taken while the windows' work ran.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TelemetrySummary {
    pub sm_clock_mhz_median: Option<f64>,
    pub sm_clock_mhz_min: Option<u32>,
    pub mem_clock_mhz_median: Option<f64>,
    pub temperature_c_max: Option<u32>,
    pub throttle_reasons: Vec<String>,
    pub enforced_power_limit_w: Option<f64>,
    pub performance_state: Option<String>,
    /// Median power reading during the windows.
    #[serde(default)]
    pub power_w_median: Option<f64>,
    #[serde(default)]
    pub temperature_c_min: Option<u32>,
    /// Temperature when the warm-up began.
    #[serde(default)]
    pub temperature_warmup_start_c: Option<f64>,
    /// Temperature as the first window opened, and as the last one closed.
    #[serde(default)]
    pub temperature_start_c: Option<f64>,
    #[serde(default)]
    pub temperature_end_c: Option<f64>,
    /// Readings the summary is made of.
    #[serde(default)]
    pub samples: u32,
}

impl TelemetrySummary {
    /// The point's summary from its windows' summaries.
    pub fn of(windows: &[Window]) -> TelemetrySummary {
        let during: Vec<&WindowTelemetry> =
            windows.iter().filter_map(|w| w.during.as_ref()).collect();
        let medians = |f: &dyn Fn(&WindowTelemetry) -> Option<Range>| -> Vec<f64> {
            during
                .iter()
                .filter_map(|d| f(d))
                .map(|r| r.median)
                .collect()
        };
        let sm = medians(&|d| d.sm_clock_mhz);
        let mem = medians(&|d| d.mem_clock_mhz);
        let power = medians(&|d| d.power_w);
        let mut reasons: Vec<String> = during
            .iter()
            .flat_map(|d| d.throttle_reasons.iter().cloned())
            .collect();
        reasons.sort();
        reasons.dedup();
        let temps: Vec<Range> = during.iter().filter_map(|d| d.temperature_c).collect();
        TelemetrySummary {
            sm_clock_mhz_median: (!sm.is_empty()).then(|| median(&sm)),
            sm_clock_mhz_min: during
                .iter()
                .filter_map(|d| d.sm_clock_mhz)
                .map(|r| r.min.round() as u32)
                .min(),
            mem_clock_mhz_median: (!mem.is_empty()).then(|| median(&mem)),
            temperature_c_max: temps.iter().map(|r| r.max.round() as u32).max(),
            throttle_reasons: reasons,
            enforced_power_limit_w: during.iter().rev().find_map(|d| d.enforced_power_limit_w),
            performance_state: during
                .iter()
                .rev()
                .find_map(|d| d.performance_state.clone()),
            power_w_median: (!power.is_empty()).then(|| median(&power)),
            temperature_c_min: temps.iter().map(|r| r.min.round() as u32).min(),
            temperature_warmup_start_c: None,
            temperature_start_c: temps.first().map(|r| r.median),
            temperature_end_c: temps.last().map(|r| r.median),
            samples: during.iter().map(|d| d.samples).sum(),
        }
    }
}

/// Which rule stopped a point's windows, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StopOutcome {
    pub rule: String,
    pub reason: StopReason,
}

/// Everything the protocol measured for one point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// How the windows were taken (absent in schema-1 records: `gapped`).
    #[serde(default)]
    pub method: WindowMethod,
    pub warmup_s: f64,
    pub warmup_iterations: u64,
    /// Whether power and temperature settled before the warm-up's bound; `None`
    /// where the meter has no telemetry to judge by (and in schema-1 records).
    #[serde(default)]
    pub warmup_settled: Option<bool>,
    pub window_target_s: f64,
    pub windows: Vec<Window>,
    pub summary: Summary,
    pub telemetry: TelemetrySummary,
    pub flags: Vec<ValidityFlag>,
    #[serde(default)]
    pub stop: Option<StopOutcome>,
}

/// Idle power over a few seconds of rest, once per device per sweep.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct IdleBaseline {
    pub watts: f64,
    pub seconds: f64,
}

/// Idle power between the meter's updates over `seconds` of rest. The first
/// quarter (at least half a second) is let pass first, since a board stays above
/// idle for a while after work stops. A raised `stop` flag ends the rest early,
/// with no baseline.
pub fn measure_idle(
    meter: &mut dyn EnergyMeter,
    clock: &dyn Clock,
    seconds: f64,
    stop: Option<&AtomicBool>,
) -> Result<Option<IdleBaseline>, MeterError> {
    if meter.source() == MeterSource::None || seconds <= 0.0 || meter.update_period_s() <= 0.0 {
        return Ok(None);
    }
    let settle = (0.25 * seconds).max(0.5).min(seconds);
    if !sleep_unless_stopped(clock, settle, stop) {
        return Ok(None);
    }
    meter.take_updates()?;
    meter.take_telemetry()?;
    if !sleep_unless_stopped(clock, (seconds - settle).max(0.0), stop) {
        return Ok(None);
    }
    let updates = meter.take_updates()?;
    meter.take_telemetry()?;
    Ok(match (updates.first(), updates.last()) {
        (Some(a), Some(b)) if b.time_s > a.time_s => Some(IdleBaseline {
            watts: (b.joules - a.joules) / (b.time_s - a.time_s),
            seconds: b.time_s - a.time_s,
        }),
        _ => None,
    })
}

/// Sleep `seconds` in slices of at most 100 ms; false as soon as `stop` is raised.
fn sleep_unless_stopped(clock: &dyn Clock, seconds: f64, stop: Option<&AtomicBool>) -> bool {
    let mut left = seconds;
    while left > 0.0 {
        if stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
            return false;
        }
        let slice = left.min(0.1);
        clock.sleep(Duration::from_secs_f64(slice));
        left -= slice;
    }
    !stop.is_some_and(|s| s.load(Ordering::SeqCst))
}

/// Where the protocol gets its time and energy.
pub struct MeasureContext<'a> {
    pub meter: &'a mut dyn EnergyMeter,
    pub clock: &'a dyn Clock,
    pub config: &'a ProtocolConfig,
    pub idle: Option<IdleBaseline>,
    /// A power cap (or a locked clock) was requested for this point: a lower
    /// clock is then its purpose, not a sign of throttling.
    pub cap_requested: bool,
    /// Checked before every block of work: once raised (the first Ctrl-C), the
    /// point ends with [`ProtocolError::Interrupted`] within one block.
    pub stop: Option<&'a AtomicBool>,
}

/// A low-discrepancy fraction in [0, 1): successive gaps land at well-spread phases.
fn phase(n: u64) -> f64 {
    const GOLDEN: f64 = 0.618_033_988_749_894_9;
    (n as f64 * GOLDEN).fract()
}

/// The idle gap between windows is a fraction of one iteration, at most one update
/// period of the meter (a sensor period covers every phase of the work against it),
/// and at most this without a meter.
const MAX_PHASE_GAP_S: f64 = 0.005;

/// With telemetry during the work turned off, the reading is taken this long after
/// a window's work stops.
const AFTER_WORK_S: f64 = 0.002;

/// Blocks of about half a counter period (5–50 ms): short enough that little work
/// runs past a window's closing update, long enough that the host's syncs between
/// blocks are a negligible share of the time.
fn block_seconds(update_period_s: f64, target_s: f64) -> f64 {
    let base = if update_period_s > 0.0 {
        update_period_s / 2.0
    } else {
        target_s / 10.0
    };
    base.clamp(0.005, 0.05)
}

/// What the warm-up came to.
struct Warmup {
    seconds: f64,
    iterations: u64,
    settled: Option<bool>,
    temperature_start_c: Option<f64>,
}

/// Calibrate, then run the kernel until power and temperature have settled.
pub fn measure(
    kernel: &mut dyn PreparedKernel,
    flop: u64,
    ctx: &mut MeasureContext<'_>,
) -> Result<Measurement, ProtocolError> {
    measure_with_safeguards(kernel, flop, ctx, Safeguards::default())
}

/// [`measure`] with some of its safeguards off: for tests that show what each
/// safeguard prevents, never for a measurement.
pub fn measure_with_safeguards(
    kernel: &mut dyn PreparedKernel,
    flop: u64,
    ctx: &mut MeasureContext<'_>,
    safeguards: Safeguards,
) -> Result<Measurement, ProtocolError> {
    let stop = ctx.stop;
    let interrupted = Cell::new(false);
    let mut run = |n: u64| {
        if stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
            interrupted.set(true);
            return Err(BackendError::Device("interrupted".into()));
        }
        kernel.run(n)
    };
    let measured = measure_runs(&mut run, flop, ctx, safeguards);
    if interrupted.get() {
        return Err(ProtocolError::Interrupted);
    }
    measured
}

fn measure_runs<F>(
    run: &mut F,
    flop: u64,
    ctx: &mut MeasureContext<'_>,
    safeguards: Safeguards,
) -> Result<Measurement, ProtocolError>
where
    F: FnMut(u64) -> Result<crate::backend::RunTiming, BackendError>,
{
    let cfg = ctx.config;
    cfg.validate()?;
    let idle_w = ctx.idle.map(|i| i.watts);
    let clock = ctx.clock;
    let point_start = clock.now_s();
    let mut engine = WindowEngine::new(&mut *ctx.meter, clock, cfg.window_rules());
    engine.set_safeguards(safeguards);
    let has_energy = engine.has_energy();
    let period = if has_energy {
        engine.update_period_s()
    } else {
        0.0
    };
    let window_target_s = engine.target_s();
    // stale readings from before this point do not belong to it
    engine.meter().take_updates()?;
    engine.meter().take_telemetry()?;

    let cal = engine.calibrate(run, block_seconds(period, window_target_s))?;
    let warm = warm_up(&mut engine, run, cal.block_iterations, point_start, cfg)?;

    let rule = cfg.stop_rule();
    let mut windows: Vec<Window> = Vec::new();
    let mut values: Vec<f64> = Vec::new();
    let reason = loop {
        let mut w = engine.window(run, cal.block_iterations, 0.0)?;
        if !safeguards.telemetry_during_work {
            // as schema-1 windows did: one reading once the window's work has stopped
            engine.idle(AFTER_WORK_S);
            let reading = engine.meter().telemetry().unwrap_or_default();
            w.during = Some(WindowTelemetry::of([&reading]));
        }
        values.push(match w.joules_per_op(None) {
            Some(j) if has_energy => j / flop as f64,
            _ => w.seconds_per_op(),
        });
        let last_window_s = w.seconds;
        windows.push(w);
        let progress = StopProgress {
            values: &values,
            elapsed_s: clock.now_s() - point_start,
            last_window_s,
        };
        if let Some(reason) = rule.decide(&progress) {
            break reason;
        }
        if cfg.phase_shift {
            let max_gap = period.max(MAX_PHASE_GAP_S);
            let gap = phase(windows.len() as u64) * cal.seconds_per_iteration.min(max_gap);
            engine.idle(gap);
        }
    };
    engine.pause();
    drop(engine);

    let spread = relative_spread(&values);
    let summary = summarize(&windows, flop, idle_w);
    let mut telemetry = TelemetrySummary::of(&windows);
    telemetry.temperature_warmup_start_c = warm.temperature_start_c;
    let mut flags = Vec::new();
    if windows
        .iter()
        .any(|w| cfg.window_rules().is_short(w.seconds, period))
    {
        flags.push(ValidityFlag::ShortWindow);
    }
    if !rule.met_target(spread) {
        flags.push(ValidityFlag::HighSpread);
    }
    flags.extend(clock_flags(&windows, &summary, ctx.cap_requested));
    if !has_energy {
        flags.push(ValidityFlag::NoEnergy);
    }
    if warm.settled == Some(false) {
        flags.push(ValidityFlag::Unsettled);
    }
    flags.sort();
    Ok(Measurement {
        method: WindowMethod::Busy,
        warmup_s: warm.seconds,
        warmup_iterations: warm.iterations,
        warmup_settled: warm.settled,
        window_target_s,
        windows,
        summary,
        telemetry,
        flags,
        stop: Some(StopOutcome {
            rule: rule.name().to_string(),
            reason,
        }),
    })
}

fn warm_up<F>(
    engine: &mut WindowEngine<'_>,
    run: &mut F,
    block: u64,
    start_s: f64,
    cfg: &ProtocolConfig,
) -> Result<Warmup, ProtocolError>
where
    F: FnMut(u64) -> Result<crate::backend::RunTiming, BackendError>,
{
    let mut iterations = 0u64;
    let settled = loop {
        engine.run_block(run, block)?;
        iterations += block;
        let now = engine.clock().now_s();
        let elapsed = now - start_s;
        if elapsed < cfg.warmup_s {
            continue;
        }
        let settled = settle_check(engine, start_s, now, cfg);
        match settled {
            Some(true) | None => break settled,
            Some(false) if elapsed >= cfg.warmup_max_s => break settled,
            Some(false) => {}
        }
    };
    let temperature_start_c = engine
        .telemetry_since(start_s)
        .find_map(|s| s.telemetry.temperature_c)
        .map(f64::from);
    Ok(Warmup {
        seconds: engine.clock().now_s() - start_s,
        iterations,
        settled,
        temperature_start_c,
    })
}

/// Whether power and temperature have settled over the trailing settle window:
/// `None` when the meter reports no telemetry at all; `Some(false)` while there is
/// not yet a whole settle window of it.
fn settle_check(
    engine: &WindowEngine<'_>,
    start_s: f64,
    now_s: f64,
    cfg: &ProtocolConfig,
) -> Option<bool> {
    let all: Vec<_> = engine.telemetry_since(start_s).collect();
    if all.is_empty() {
        return None;
    }
    let from = now_s - cfg.settle_window_s;
    let recent: Vec<_> = all.iter().filter(|s| s.time_s >= from).collect();
    let span = match (recent.first(), recent.last()) {
        (Some(a), Some(b)) => b.time_s - a.time_s,
        _ => 0.0,
    };
    if recent.len() < 5 || span < 0.8 * cfg.settle_window_s || all[0].time_s > from {
        return Some(false);
    }
    let series = |f: &dyn Fn(&crate::meter::Telemetry) -> Option<f64>| -> Vec<(f64, f64)> {
        recent
            .iter()
            .filter_map(|s| f(&s.telemetry).map(|v| (s.time_s, v)))
            .collect()
    };
    let temp = series(&|t| t.temperature_c.map(f64::from));
    let power = series(&|t| t.power_w);
    let temp_ok = temp.len() < 5 || slope(&temp).abs() <= cfg.settle_temp_c_per_s;
    let power_ok = power.len() < 5 || {
        let mean = power.iter().map(|p| p.1).sum::<f64>() / power.len() as f64;
        mean <= 0.0 || slope(&power).abs() / mean <= cfg.settle_power_per_s
    };
    Some(temp_ok && power_ok)
}

/// Least-squares slope of y over t.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let (mt, my) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (t, y)| (a + t / n, b + y / n));
    let (mut sty, mut stt) = (0.0, 0.0);
    for (t, y) in points {
        sty += (t - mt) * (y - my);
        stt += (t - mt) * (t - mt);
    }
    if stt > 0.0 {
        sty / stt
    } else {
        0.0
    }
}

/// `power-limited`, `throttled` and `above-limit`, from the telemetry taken during
/// the windows and the windows' own average power.
fn clock_flags(windows: &[Window], summary: &Summary, cap_requested: bool) -> Vec<ValidityFlag> {
    let during: Vec<&WindowTelemetry> = windows.iter().filter_map(|w| w.during.as_ref()).collect();
    let limit = during.iter().rev().find_map(|d| d.enforced_power_limit_w);
    let at_limit_power = match (summary.average_w, limit) {
        (Some(w), Some(l)) if l > 0.0 => w >= 0.97 * l,
        _ => false,
    };
    let power_limited = at_limit_power
        || during
            .iter()
            .any(|d| d.throttle_reasons.iter().any(|r| is_power_limit_reason(r)));
    let brake = during
        .iter()
        .any(|d| d.throttle_reasons.iter().any(|r| is_brake_reason(r)));
    let slow = !cap_requested
        && !power_limited
        && during.iter().any(|d| {
            matches!((d.sm_clock_mhz, d.default_sm_clock_mhz),
                (Some(c), Some(def)) if def > 0 && c.median < 0.75 * def as f64)
        });
    let mut flags = Vec::new();
    if power_limited {
        flags.push(ValidityFlag::PowerLimited);
    }
    if brake || slow {
        flags.push(ValidityFlag::Throttled);
    }
    if let (Some(w), Some(l)) = (summary.average_w, limit) {
        if l > 0.0 && w > 1.03 * l {
            flags.push(ValidityFlag::AboveLimit);
        }
    }
    flags
}

pub fn summarize(windows: &[Window], flop: u64, idle_w: Option<f64>) -> Summary {
    let spo: Vec<f64> = windows.iter().map(Window::seconds_per_op).collect();
    let seconds_per_op = Stat::of(&spo);
    let jpo: Option<Vec<f64>> = windows.iter().map(|w| w.joules_per_op(idle_w)).collect();
    let joules_per_op = jpo.as_deref().map(Stat::of);
    let joules_per_flop = jpo
        .as_deref()
        .map(|v| Stat::of(&v.iter().map(|j| j / flop as f64).collect::<Vec<_>>()));
    let watts: Option<Vec<f64>> = windows.iter().map(|w| w.average_w(idle_w)).collect();
    let average_w = watts.filter(|w| !w.is_empty()).map(|w| median(&w));
    let above_idle = match (joules_per_op, idle_w) {
        (Some(j), Some(idle)) => Some(j.median - idle * seconds_per_op.median),
        _ => None,
    };
    Summary {
        tflops: flop as f64 / seconds_per_op.median / 1e12,
        seconds_per_op,
        joules_per_op,
        joules_per_flop,
        above_idle_joules_per_op: above_idle,
        average_w,
        host: summarize_host(windows, flop, idle_w),
    }
}

/// Host energy per FLOP, alone and with the GPU's, when every window has it.
fn summarize_host(windows: &[Window], flop: u64, idle_w: Option<f64>) -> Option<HostSummary> {
    let host: Vec<f64> = windows
        .iter()
        .map(|w| w.host_joules.filter(|j| j.is_finite()))
        .collect::<Option<_>>()?;
    if host.is_empty() || flop == 0 {
        return None;
    }
    let per_flop = |j: f64, w: &Window| j / w.iterations / flop as f64;
    let host_jpf: Vec<f64> = host
        .iter()
        .zip(windows)
        .map(|(j, w)| per_flop(*j, w))
        .collect();
    let both: Option<Vec<f64>> = host
        .iter()
        .zip(windows)
        .map(|(h, w)| {
            w.joules_per_op(idle_w)
                .map(|g| g / flop as f64 + per_flop(*h, w))
        })
        .collect();
    let watts: Vec<f64> = host
        .iter()
        .zip(windows)
        .filter(|(_, w)| w.seconds > 0.0)
        .map(|(h, w)| h / w.seconds)
        .collect();
    Some(HostSummary {
        host_joules_per_flop: Stat::of(&host_jpf),
        gpu_and_host_joules_per_flop: both.as_deref().map(Stat::of),
        host_average_w: if watts.is_empty() {
            0.0
        } else {
            median(&watts)
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::RunTiming;
    use crate::meter::{CounterUpdate, Telemetry, TelemetrySample};
    use crate::reference::CheckInputs;
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::sync::Mutex;

    /// A device in virtual time: work at `busy_w`, idle at `idle_w`, a counter that
    /// updates every `period_s`, telemetry every 50 ms with a temperature that
    /// approaches 60 °C with a time constant of `tau_s` while busy.
    struct World {
        now: f64,
        energy: f64,
        next_tick: f64,
        next_sample: f64,
        period_s: f64,
        idle_w: f64,
        temp_c: f64,
        tau_s: f64,
        updates: Vec<CounterUpdate>,
        samples: Vec<TelemetrySample>,
    }

    impl World {
        fn advance(&mut self, dt: f64, w: f64) {
            let end = self.now + dt;
            loop {
                let next = self.next_tick.min(self.next_sample).min(end);
                let h = next - self.now;
                self.energy += w * h;
                let target = if w > self.idle_w { 60.0 } else { 30.0 };
                self.temp_c = target + (self.temp_c - target) * (-h / self.tau_s).exp();
                self.now = next;
                if self.period_s > 0.0 && self.now >= self.next_tick {
                    self.updates.push(CounterUpdate {
                        time_s: self.now,
                        joules: self.energy,
                    });
                    self.next_tick += self.period_s;
                }
                if self.now >= self.next_sample {
                    self.samples.push(TelemetrySample {
                        time_s: self.now,
                        telemetry: Telemetry {
                            power_w: Some(w),
                            temperature_c: Some(self.temp_c.round() as u32),
                            ..Telemetry::default()
                        },
                    });
                    self.next_sample += 0.05;
                }
                if self.now >= end {
                    break;
                }
            }
        }
    }

    #[derive(Clone)]
    struct Shared(Rc<RefCell<World>>);
    struct FakeClock(Mutex<Shared>);
    unsafe impl Send for FakeClock {}
    unsafe impl Sync for FakeClock {}
    impl Clock for FakeClock {
        fn now_s(&self) -> f64 {
            self.0.lock().unwrap().0.borrow().now
        }
        fn sleep(&self, d: Duration) {
            let s = self.0.lock().unwrap();
            let idle = s.0.borrow().idle_w;
            s.0.borrow_mut().advance(d.as_secs_f64(), idle);
        }
    }
    struct FakeMeter(Shared);
    unsafe impl Send for FakeMeter {}
    impl EnergyMeter for FakeMeter {
        fn source(&self) -> MeterSource {
            MeterSource::Simulated
        }
        fn energy_j(&mut self) -> Result<f64, MeterError> {
            Ok(self.0 .0.borrow().energy)
        }
        fn update_period_s(&self) -> f64 {
            self.0 .0.borrow().period_s
        }
        fn take_updates(&mut self) -> Result<Vec<CounterUpdate>, MeterError> {
            Ok(std::mem::take(&mut self.0 .0.borrow_mut().updates))
        }
        fn take_telemetry(&mut self) -> Result<Vec<TelemetrySample>, MeterError> {
            Ok(std::mem::take(&mut self.0 .0.borrow_mut().samples))
        }
    }
    struct FakeKernel {
        world: Shared,
        seconds_per_iter: f64,
        busy_w: f64,
        noise: Vec<f64>,
        runs: usize,
    }
    impl PreparedKernel for FakeKernel {
        fn run_for_check(&mut self, _: &CheckInputs) -> Result<Vec<f32>, BackendError> {
            Ok(vec![])
        }
        fn run(&mut self, n: u64) -> Result<RunTiming, BackendError> {
            let f = self.noise[self.runs % self.noise.len()];
            self.runs += 1;
            // noise scales power: J/op varies, time per op does not
            let t = self.seconds_per_iter * n as f64;
            self.world.0.borrow_mut().advance(t, self.busy_w * f);
            Ok(RunTiming {
                wall_s: t,
                device_s: Some(t),
            })
        }
    }

    fn setup(period_s: f64, tau_s: f64, noise: Vec<f64>) -> (FakeClock, FakeMeter, FakeKernel) {
        let w = Shared(Rc::new(RefCell::new(World {
            now: 0.0,
            energy: 0.0,
            next_tick: period_s,
            next_sample: 0.05,
            period_s,
            idle_w: 50.0,
            temp_c: 30.0,
            tau_s,
            updates: Vec::new(),
            samples: Vec::new(),
        })));
        (
            FakeClock(Mutex::new(w.clone())),
            FakeMeter(w.clone()),
            FakeKernel {
                world: w,
                seconds_per_iter: 1e-3,
                busy_w: 300.0,
                noise,
                runs: 0,
            },
        )
    }

    const FLOP: u64 = 1_000_000_000;

    fn run_with(period_s: f64, tau_s: f64, noise: Vec<f64>, cfg: &ProtocolConfig) -> Measurement {
        let (clock, mut meter, mut kernel) = setup(period_s, tau_s, noise);
        let mut ctx = MeasureContext {
            meter: &mut meter,
            clock: &clock,
            config: cfg,
            idle: Some(IdleBaseline {
                watts: 50.0,
                seconds: 1.0,
            }),
            cap_requested: false,
            stop: None,
        };
        measure(&mut kernel, FLOP, &mut ctx).unwrap()
    }

    #[test]
    fn steady_work_stops_at_min_windows_with_exact_energy() {
        let cfg = ProtocolConfig::default();
        let m = run_with(0.1, 2.0, vec![1.0], &cfg);
        assert_eq!(m.windows.len(), cfg.min_windows as usize);
        assert!(m.flags.is_empty(), "{:?}", m.flags);
        assert_eq!(m.method, WindowMethod::Busy);
        // 300 W × 1 ms per op = 0.3 J/op, and every window's power is the work's
        let j = m.summary.joules_per_op.unwrap().median;
        assert!((j - 0.3).abs() / 0.3 < 1e-3, "joules per op {j}");
        assert!((m.summary.average_w.unwrap() - 300.0).abs() < 0.5);
        assert!(m.windows.iter().all(|w| w.seconds >= 1.0 - 1e-9));
        assert_eq!(m.stop.as_ref().unwrap().reason, StopReason::Converged);
    }

    #[test]
    fn window_spans_ten_counter_updates_when_they_are_slow() {
        let m = run_with(0.25, 2.0, vec![1.0], &ProtocolConfig::default());
        assert!((m.window_target_s - 2.5).abs() < 1e-9);
        assert!(
            m.windows.iter().all(|w| w.seconds >= 2.5 - 1e-9),
            "{:?}",
            m.windows[0]
        );
    }

    #[test]
    fn warm_up_lasts_until_temperature_settles_within_its_bound() {
        let cfg = ProtocolConfig::default();
        let slow = run_with(0.1, 8.0, vec![1.0], &cfg);
        assert_eq!(slow.warmup_settled, Some(true));
        // 30 → 60 °C with τ = 8 s: the slope is 0.1 °C/s after about 8·ln(37) ≈ 29 s
        assert!(
            slow.warmup_s > 15.0 && slow.warmup_s <= cfg.warmup_max_s,
            "{}",
            slow.warmup_s
        );
        let bounded = ProtocolConfig {
            warmup_max_s: 5.0,
            ..ProtocolConfig::default()
        };
        let m = run_with(0.1, 8.0, vec![1.0], &bounded);
        assert_eq!(m.warmup_settled, Some(false));
        assert!(m.warmup_s < 5.2, "{}", m.warmup_s);
        assert!(m.flags.contains(&ValidityFlag::Unsettled), "{:?}", m.flags);
        assert_eq!(m.telemetry.temperature_warmup_start_c, Some(30.0));
        assert!(m.telemetry.temperature_end_c.unwrap() > m.telemetry.temperature_start_c.unwrap());
    }

    #[test]
    fn noisy_work_runs_more_windows_and_is_flagged_when_it_cannot_settle() {
        let cfg = ProtocolConfig {
            max_windows: 8,
            ..ProtocolConfig::default()
        };
        // per-block power swings ±30% irregularly: J/FLOP per window varies by a few %
        let noise = (0..997u64)
            .map(|i| 0.7 + 0.6 * ((i * 7919 % 997) as f64 / 997.0))
            .collect();
        let m = run_with(0.1, 2.0, noise, &cfg);
        assert_eq!(m.windows.len(), 8);
        assert!(m.flags.contains(&ValidityFlag::HighSpread), "{:?}", m.flags);
        assert_eq!(m.stop.unwrap().reason, StopReason::WindowCount);
    }

    #[test]
    fn the_time_budget_stops_a_point_after_min_windows() {
        let cfg = ProtocolConfig {
            point_budget_s: 6.0,
            warmup_max_s: 2.0,
            max_windows: 50,
            ..ProtocolConfig::default()
        };
        let noise = (0..997u64)
            .map(|i| 0.7 + 0.6 * ((i * 7919 % 997) as f64 / 997.0))
            .collect();
        let m = run_with(0.1, 2.0, noise, &cfg);
        let total = m.warmup_s + m.windows.iter().map(|w| w.seconds).sum::<f64>();
        assert!(m.windows.len() >= cfg.min_windows as usize);
        assert!(
            total < cfg.point_budget_s + 1.5,
            "ran {total} s on a 6 s budget"
        );
    }

    #[test]
    fn fixed_count_takes_exactly_its_windows() {
        let cfg = ProtocolConfig {
            stop_rule: StopRuleKind::FixedCount,
            min_windows: 4,
            ..ProtocolConfig::default()
        };
        let m = run_with(0.1, 2.0, vec![1.0], &cfg);
        assert_eq!(m.windows.len(), 4);
        assert_eq!(m.stop.unwrap().rule, "fixed-count");
    }

    #[test]
    fn no_meter_measures_time_only_and_says_so() {
        let (clock, _m, mut kernel) = setup(0.1, 2.0, vec![1.0]);
        let mut none = crate::meter::NoMeter {
            reason: "no meter".into(),
        };
        let cfg = ProtocolConfig::default();
        let mut ctx = MeasureContext {
            meter: &mut none,
            clock: &clock,
            config: &cfg,
            idle: None,
            cap_requested: false,
            stop: None,
        };
        let m = measure(&mut kernel, FLOP, &mut ctx).unwrap();
        assert!(m.summary.joules_per_flop.is_none());
        assert!(m.flags.contains(&ValidityFlag::NoEnergy));
        assert_eq!(m.warmup_settled, None);
        assert!((m.summary.seconds_per_op.median - 1e-3).abs() < 1e-9);
    }

    #[test]
    fn a_card_at_its_power_limit_is_power_limited_not_throttled() {
        let d = |reasons: &[&str], clock: f64, limit: f64| WindowTelemetry {
            samples: 10,
            sm_clock_mhz: Range::of(&[clock]),
            default_sm_clock_mhz: Some(1980),
            throttle_reasons: reasons.iter().map(|s| s.to_string()).collect(),
            enforced_power_limit_w: Some(limit),
            ..WindowTelemetry::default()
        };
        let w = |t: WindowTelemetry| Window {
            iterations: 1.0,
            seconds: 1.0,
            joules: Some(690.0),
            during: Some(t),
            ..Window::default()
        };
        let s = summarize(&[w(d(&[], 1300.0, 700.0))], 1, None);
        let at_limit = [w(d(&["sw-power-cap"], 1290.0, 700.0))];
        assert_eq!(
            clock_flags(&at_limit, &s, false),
            vec![ValidityFlag::PowerLimited]
        );
        let hot = [w(d(
            &["sw-power-cap", "hw-thermal-slowdown"],
            1200.0,
            700.0,
        ))];
        assert_eq!(
            clock_flags(&hot, &s, false),
            vec![ValidityFlag::PowerLimited, ValidityFlag::Throttled]
        );
        // a low clock with no power reason and far under the limit is throttling
        let low = [w(d(&[], 900.0, 2000.0))];
        let s_low = summarize(&low, 1, None);
        assert_eq!(
            clock_flags(&low, &s_low, false),
            vec![ValidityFlag::Throttled]
        );
        assert!(clock_flags(&low, &s_low, true).is_empty());
        // the self-check: average power well above the enforced limit
        let over = [w(d(&["sw-power-cap"], 1290.0, 650.0))];
        let flags = clock_flags(&over, &summarize(&over, 1, None), false);
        assert!(flags.contains(&ValidityFlag::AboveLimit), "{flags:?}");
        assert!(!ValidityFlag::PowerLimited.is_caution() && ValidityFlag::Throttled.is_caution());
    }

    #[test]
    fn host_energy_is_summarised_alone_and_with_the_gpus_only_when_every_window_has_it() {
        let w = |host: Option<f64>| Window {
            iterations: 10.0,
            seconds: 2.0,
            joules: Some(600.0),
            host_joules: host,
            ..Window::default()
        };
        let s = summarize(&[w(Some(200.0)), w(Some(200.0))], 1000, None);
        let h = s.host.unwrap();
        // 200 J over 10 ops of 1000 FLOP; the GPU adds 600 J
        assert!((h.host_joules_per_flop.median - 0.02).abs() < 1e-12);
        assert!((h.gpu_and_host_joules_per_flop.unwrap().median - 0.08).abs() < 1e-12);
        assert!((h.host_average_w - 100.0).abs() < 1e-9);
        assert!(summarize(&[w(Some(200.0)), w(None)], 1000, None)
            .host
            .is_none());
        // an old record without host energy still reads, and writes no `host`
        let json = serde_json::to_value(summarize(&[w(None)], 1000, None)).unwrap();
        assert!(json.get("host").is_none(), "{json}");
        let back: Summary = serde_json::from_value(json).unwrap();
        assert!(back.host.is_none());
    }

    #[test]
    fn invalid_settings_are_refused() {
        for bad in [
            ProtocolConfig {
                min_windows: 1,
                ..ProtocolConfig::default()
            },
            ProtocolConfig {
                target_rel_spread: 0.0,
                ..ProtocolConfig::default()
            },
            ProtocolConfig {
                max_windows: 2,
                min_windows: 3,
                ..ProtocolConfig::default()
            },
            ProtocolConfig {
                warmup_s: 1e308,
                warmup_max_s: 1e308,
                ..ProtocolConfig::default()
            },
            ProtocolConfig {
                warmup_max_s: 0.5,
                ..ProtocolConfig::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_quick_protocol_bounds_its_points() {
        let cfg = ProtocolConfig {
            warmup_max_s: 4.0,
            max_windows: 4,
            point_budget_s: 8.0,
            ..ProtocolConfig::default()
        };
        let bound = cfg.point_bound_s(0.1);
        assert!(bound > 7.0 && bound < 13.0, "{bound}");
        assert!(cfg.point_typical_s(0.1) < bound);
    }
}
