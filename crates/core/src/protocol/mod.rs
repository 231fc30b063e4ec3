//! The measurement protocol of docs/ARCHITECTURE.md §4, written once against the traits:
//! a warm-up that lasts until the device has settled, then busy windows from the
//! one window engine (`crate::window`) until a named stop rule (`crate::stop`)
//! judges them converged within the loop's limits, telemetry sampled during the
//! work, and validity flags that tell a card at its power limit from a throttled one.
//!
//! - `config`: the settings and their defaults;
//! - `flags`: what each flag and window method means, in users' words;
//! - `summary`: medians, spreads and flags from the windows;
//! - `idle`: the idle baseline;
//! - `warmup`: the settling warm-up;
//! - this file: the measuring loop and the record of a point's measurement.

mod config;
mod flags;
mod idle;
mod summary;
mod warmup;

pub use config::ProtocolConfig;
pub use flags::{ValidityFlag, WindowMethod};
pub use idle::{measure_idle, IdleBaseline};
pub use summary::{summarize, HostSummary, Summary, TelemetrySummary, TimeBase};
pub use warmup::{warm_up, Warmup};

pub use crate::window::{Range, Window};

use crate::backend::{BackendError, PreparedKernel, RunTiming};
use crate::clock::Clock;
use crate::meter::{EnergyMeter, MeterError};
use crate::stop::{decide, StopProgress, StopReason};
use crate::window::{
    aliases, block_seconds, Safeguards, UpdateTimes, WindowEngine, WindowError, WindowTelemetry,
};
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

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
    /// Every window ran throttled (with `drop_throttled`): the point is recorded as
    /// failed with the count, never as a figure of a throttled device.
    #[error("{0}")]
    Throttled(String),
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

/// Which rule stopped a point's windows, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StopOutcome {
    pub rule: String,
    pub reason: StopReason,
}

/// Where work each iteration does besides the timed kernel (an L2 flush before
/// it, say) is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BesidesKernelPlacement {
    /// Inside the windows: in their energy and in their time, so in J/FLOP, TFLOP/s
    /// and average power alike; only device time (`device_tflops`) leaves it out.
    InWindow,
}

/// Work each iteration does besides the timed kernel, and where it is counted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BesidesKernel {
    /// What it is, e.g. "an L2 flush before every iteration".
    pub what: String,
    pub placement: BesidesKernelPlacement,
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
    /// How the windows' update times were taken: fitted to the counter's regular
    /// period, or as the meter's thread saw them (older records).
    #[serde(default)]
    pub update_times: UpdateTimes,
    /// Windows dropped because a thermal, hardware-slowdown or power-brake reason
    /// held the clock down while they ran (with `drop_throttled`), and the idle
    /// cool-down given after them, seconds.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub throttled_windows_dropped: u32,
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub cooldown_s: f64,
    /// Work besides the kernel in every iteration, where there is any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub besides_kernel: Option<BesidesKernel>,
}

fn is_zero_u32(x: &u32) -> bool {
    *x == 0
}

fn is_zero_f64(x: &f64) -> bool {
    *x == 0.0
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

/// A window whose device sat idle for more than this share of it is flagged.
pub const MAX_IDLE_SHARE: f64 = 0.01;

/// Each cool-down after a throttled window is this many times the last, up to
/// this many times the first.
const COOLDOWN_GROWTH: f64 = 2.0;
const COOLDOWN_MAX_FACTOR: f64 = 16.0;

/// Calibrate, warm up until the device has settled, then take windows until the
/// stop rule judges them converged within the loop's limits.
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
    let besides = kernel.work_besides_kernel().map(|what| BesidesKernel {
        what,
        placement: BesidesKernelPlacement::InWindow,
    });
    let mut run = |n: u64| {
        if stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
            interrupted.set(true);
            return Err(BackendError::Device("interrupted".into()));
        }
        kernel.run(n)
    };
    let measured = measure_runs(&mut run, flop, ctx, safeguards, besides);
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
    besides: Option<BesidesKernel>,
) -> Result<Measurement, ProtocolError>
where
    F: FnMut(u64) -> Result<RunTiming, BackendError>,
{
    let cfg = ctx.config;
    cfg.validate()?;
    let idle_w = ctx.idle.map(|i| i.watts);
    let clock = ctx.clock;
    let point_start = clock.now_s();
    let mut engine = WindowEngine::new(&mut *ctx.meter, clock, cfg.window_rules());
    engine.set_safeguards(safeguards);
    engine.set_device_time_covers_work(besides.is_none());
    let has_energy = engine.has_energy();
    let period = if has_energy {
        engine.update_period_s()
    } else {
        0.0
    };
    let window_target_s = engine.target_s();
    // stale telemetry from before this point does not belong to it; the counter's
    // updates are kept, for the rhythm of its timeline
    engine.meter().take_telemetry()?;

    let cal = engine.calibrate(run, block_seconds(period, window_target_s))?;
    let warm = warm_up(&mut engine, run, cal.block_iterations, point_start, cfg)?;

    // an iteration near a simple fraction of the sensor's period shows the sensor
    // the same phases of its work in every period: only then do windows need a
    // pause between them to start at other phases (and a new lead-in after it);
    // any other iteration already spreads its phases over each window's periods
    let resonant = !has_energy || aliases(cal.seconds_per_iteration, period);
    let rule = cfg.stop_rule();
    let stable = cfg.stable_check();
    let limits = cfg.stop_limits();
    let mut windows: Vec<Window> = Vec::new();
    let mut values: Vec<f64> = Vec::new();
    let (mut dropped, mut cooldown_s) = (0u32, 0.0);
    let mut next_cooldown_s = cfg.throttle_cooldown_s;
    let reason = loop {
        let mut w = engine.window(run, cal.block_iterations, 0.0)?;
        if !safeguards.telemetry_during_work {
            // as schema-1 windows did: one reading once the window's work has stopped
            engine.idle(AFTER_WORK_S)?;
            let reading = engine.meter().telemetry().unwrap_or_default();
            w.during = Some(WindowTelemetry::of([&reading]));
        }
        let last_window_s = w.seconds;
        let throttled = w.during.as_ref().is_some_and(WindowTelemetry::braked);
        if cfg.drop_throttled && throttled && dropped < cfg.max_windows {
            // as nvbench does: drop it as it happens and let the device recover,
            // longer each time
            dropped += 1;
            engine.idle(next_cooldown_s)?;
            cooldown_s += next_cooldown_s;
            next_cooldown_s = (next_cooldown_s * COOLDOWN_GROWTH)
                .min(cfg.throttle_cooldown_s * COOLDOWN_MAX_FACTOR);
            if clock.now_s() - point_start + last_window_s > limits.budget_s
                && windows.len() as u32 >= limits.min_windows
            {
                break StopReason::TimeBudget;
            }
            continue;
        }
        values.push(match w.joules_per_op(None) {
            Some(j) if has_energy => j / flop as f64,
            _ => w.seconds_per_op(),
        });
        windows.push(w);
        let progress = StopProgress {
            values: &values,
            elapsed_s: clock.now_s() - point_start,
            last_window_s,
        };
        if let Some(reason) = decide(rule.as_ref(), stable.as_ref(), &limits, &progress) {
            break reason;
        }
        if cfg.phase_shift && resonant {
            let max_gap = period.max(MAX_PHASE_GAP_S);
            let gap = phase(windows.len() as u64) * cal.seconds_per_iteration.min(max_gap);
            engine.idle(gap)?;
        }
    };
    let update_times = engine.update_times();
    engine.pause();
    drop(engine);
    if windows.is_empty() {
        return Err(ProtocolError::Throttled(format!(
            "every window ran throttled ({dropped} dropped, {cooldown_s:.1} s of cool-down): the device cannot run this point unthrottled"
        )));
    }

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
    if !rule.met_target(&values) {
        flags.push(ValidityFlag::HighSpread);
    }
    flags.extend(summary::clock_flags(&windows, &summary, ctx.cap_requested));
    if !has_energy {
        flags.push(ValidityFlag::NoEnergy);
    }
    if warm.settled == Some(false) {
        flags.push(ValidityFlag::Unsettled);
    }
    if windows
        .iter()
        .any(|w| w.idle_share.is_some_and(|s| s > MAX_IDLE_SHARE))
    {
        flags.push(ValidityFlag::IdleInWindow);
    }
    flags.sort();
    flags.dedup();
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
        update_times,
        throttled_windows_dropped: dropped,
        cooldown_s,
        besides_kernel: besides,
    })
}

#[cfg(test)]
mod tests;
