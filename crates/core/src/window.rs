//! The one window engine (docs/ARCHITECTURE.md §4.3) behind the sweep's protocol, criterion's
//! `Energy` measurement and `EnergyMonitor`. A window opens and closes on updates
//! of the energy meter, and the device is busy for all of it: the work runs in
//! blocks back to back from before the opening update until after the closing one,
//! and the work done between the two updates is counted exactly, by where each
//! update falls inside the block that was running. There is no sleep and no idle
//! wait inside a window, so its average power is its energy over its own duration.

use crate::backend::RunTiming;
use crate::clock::Clock;
use crate::meter::{
    CounterUpdate, EnergyMeter, MeterError, MeterSource, Telemetry, TelemetrySample,
};
use crate::stats::median;
use serde::{Deserialize, Serialize};
use std::time::Duration;

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

impl WindowRules {
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
/// (docs/ARCHITECTURE.md §4.3, §4.5), each on by default. Only tests turn one off,
/// to show what it prevents; a measurement never does. The others are protocol
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
}

impl Default for Safeguards {
    fn default() -> Self {
        Safeguards {
            busy_lead_in: true,
            exact_counting: true,
            no_idle_inside: true,
            telemetry_during_work: true,
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
}

/// One measurement window. Records of schema 1 (windows with idle gaps, from
/// joulebench before the busy-window engine) read into the same type: their
/// `seconds` is the wall time of the whole window, gaps included, and they carry
/// `busy_s`, `gap_s` and one `telemetry` reading taken after the work.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// Iterations done between the opening and the closing update (fractional:
    /// the updates fall inside kernel runs).
    pub iterations: f64,
    /// From the opening to the closing update; for a time-only window, the wall
    /// time of its work.
    #[serde(alias = "wall_s")]
    pub seconds: f64,
    /// Device time (timestamps, CUDA events) of the counted iterations.
    pub device_s: Option<f64>,
    /// Energy between the two updates.
    pub joules: Option<f64>,
    /// How long the device had been busy when the window opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead_in_s: Option<f64>,
    /// Meter updates inside the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counter_updates: Option<u32>,
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
    /// Seconds per iteration: device time where measured, else the window's time.
    pub fn seconds_per_op(&self) -> f64 {
        let s = self.device_s.or(self.busy_s).unwrap_or(self.seconds);
        s / self.iterations
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

#[derive(Debug, thiserror::Error)]
pub enum WindowError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Meter(#[from] MeterError),
    #[error("the workload failed: {0}")]
    Work(#[source] E),
    /// The meter's reading did not change for many update periods while the device
    /// worked: a stuck counter, whose windows would read zero energy.
    /// `detail` is the meter's own account ([`EnergyMeter::fault_detail`]).
    #[error("the energy meter did not update for {waited_s:.2} s while the GPU worked (it updates every {period_s:.3} s): its readings cannot be trusted{}", suffix(.detail))]
    MeterStalled {
        waited_s: f64,
        period_s: f64,
        detail: Option<String>,
    },
    /// The reading went down while the device worked.
    #[error("the energy meter went backwards ({from_j:.3} J → {to_j:.3} J): {}", .detail.as_deref().unwrap_or("the counter was reset or wrapped unnoticed"))]
    MeterBackwards {
        from_j: f64,
        to_j: f64,
        detail: Option<String>,
    },
    /// The reading jumped forward by more than the device can draw over the time
    /// between its updates (a counter reset upwards, a misreport).
    #[error("the energy meter jumped by {step_j:.3e} J in one step, more than the device's {max_w:.0} W could draw in {seconds:.3} s: the window across it is rejected")]
    MeterJumped {
        step_j: f64,
        seconds: f64,
        max_w: f64,
    },
}

fn suffix(detail: &Option<String>) -> String {
    detail
        .as_deref()
        .map(|d| format!("; {d}"))
        .unwrap_or_default()
}

/// One `run` of the work, as the host saw it.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Block {
    start_s: f64,
    end_s: f64,
    iterations: u64,
    device_s: Option<f64>,
}

impl Block {
    /// The share of this block's work done between `a` and `b`, assuming the
    /// iterations of one block run at an even pace; with `exact` off, all of a
    /// block that overlaps the interval at all.
    fn share(&self, a: f64, b: f64, exact: bool) -> f64 {
        if !exact {
            return if self.end_s > a && self.start_s < b {
                1.0
            } else {
                0.0
            };
        }
        let len = self.end_s - self.start_s;
        if len <= 0.0 {
            return if self.start_s >= a && self.start_s < b {
                1.0
            } else {
                0.0
            };
        }
        ((b.min(self.end_s) - a.max(self.start_s)) / len).clamp(0.0, 1.0)
    }
}

/// Work that has run back to back since `started_s`, and what the meter saw meanwhile.
#[derive(Debug, Default)]
struct BusySpan {
    started_s: f64,
    blocks: Vec<Block>,
    updates: Vec<CounterUpdate>,
    /// The update that closed the previous window of this span: the next may open there.
    last_close: Option<CounterUpdate>,
}

/// Calibration of a workload: how many iterations make a block of about the
/// wanted length.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Calibration {
    pub block_iterations: u64,
    /// Seconds per iteration, as the last calibration block took.
    pub seconds_per_iteration: f64,
    /// The workload reports device time (timestamps, CUDA events), not only wall time.
    pub device_timer: bool,
}

/// Calibration stops growing blocks here, whatever the workload's speed.
const MAX_BLOCK_ITERATIONS: u64 = 1 << 32;

/// A window gives up waiting for the meter after this many update periods (and at
/// least this long), and calls the meter stalled.
const STALL_PERIODS: f64 = 5.0;
const STALL_MIN_S: f64 = 0.5;

/// Keeps a device busy and cuts windows out of its work (see the module comment).
pub struct WindowEngine<'a> {
    meter: &'a mut dyn EnergyMeter,
    clock: &'a dyn Clock,
    rules: WindowRules,
    span: Option<BusySpan>,
    telemetry: Vec<TelemetrySample>,
    last_reading: Option<CounterUpdate>,
    safeguards: Safeguards,
}

impl<'a> WindowEngine<'a> {
    pub fn new(meter: &'a mut dyn EnergyMeter, clock: &'a dyn Clock, rules: WindowRules) -> Self {
        WindowEngine {
            meter,
            clock,
            rules,
            span: None,
            telemetry: Vec::new(),
            last_reading: None,
            safeguards: Safeguards::default(),
        }
    }

    /// Turn safeguards off, to show in a test what each prevents.
    pub fn set_safeguards(&mut self, safeguards: Safeguards) {
        self.safeguards = safeguards;
    }

    pub fn has_energy(&self) -> bool {
        self.meter.source() != MeterSource::None && self.meter.update_period_s() > 0.0
    }

    pub fn update_period_s(&self) -> f64 {
        self.meter.update_period_s()
    }

    /// The window length the rules ask for on this meter.
    pub fn target_s(&self) -> f64 {
        let period = if self.has_energy() {
            self.meter.update_period_s()
        } else {
            0.0
        };
        self.rules.target_s(period)
    }

    pub fn rules(&self) -> WindowRules {
        self.rules
    }

    pub fn clock(&self) -> &dyn Clock {
        self.clock
    }

    pub fn meter(&mut self) -> &mut dyn EnergyMeter {
        self.meter
    }

    /// Seconds the device has been busy without a break, 0 when it is not.
    pub fn busy_for_s(&self) -> f64 {
        self.span
            .as_ref()
            .map(|s| self.clock.now_s() - s.started_s)
            .unwrap_or(0.0)
    }

    /// Telemetry sampled since `since_s` (readings are kept until the engine is dropped
    /// or [`WindowEngine::forget_telemetry_before`] is called).
    pub fn telemetry_since(&self, since_s: f64) -> impl Iterator<Item = &TelemetrySample> {
        self.telemetry.iter().filter(move |s| s.time_s >= since_s)
    }

    pub fn forget_telemetry_before(&mut self, time_s: f64) {
        self.telemetry.retain(|s| s.time_s >= time_s);
    }

    /// The work stopped (or will idle before it resumes): the next window needs a
    /// new lead-in.
    pub fn pause(&mut self) {
        self.span = None;
    }

    /// Find a block size of about `block_s` seconds, doubling from one iteration
    /// (and jumping towards the target, at most 16× at a time). The calibration
    /// blocks are part of the busy span.
    pub fn calibrate<E, F>(
        &mut self,
        run: &mut F,
        block_s: f64,
    ) -> Result<Calibration, WindowError<E>>
    where
        E: std::error::Error + 'static,
        F: FnMut(u64) -> Result<RunTiming, E>,
    {
        let mut batch = 1u64;
        loop {
            let (timing, wall) = self.run_block(run, batch)?;
            let seconds = timing.device_s.unwrap_or(wall).max(wall * 0.5);
            let cal = Calibration {
                block_iterations: batch,
                seconds_per_iteration: (seconds / batch as f64).max(1e-12),
                device_timer: timing.device_s.is_some(),
            };
            if seconds >= block_s || batch >= MAX_BLOCK_ITERATIONS {
                return Ok(cal);
            }
            let wanted = if seconds > 0.0 {
                (batch as f64 * 1.2 * block_s / seconds).ceil() as u64
            } else {
                batch.saturating_mul(16)
            };
            batch = wanted
                .clamp(batch.saturating_mul(2), batch.saturating_mul(16))
                .min(MAX_BLOCK_ITERATIONS);
        }
    }

    /// Run one block of `iterations` as part of the busy span; returns its timing
    /// and its wall time.
    pub fn run_block<E, F>(
        &mut self,
        run: &mut F,
        iterations: u64,
    ) -> Result<(RunTiming, f64), WindowError<E>>
    where
        E: std::error::Error + 'static,
        F: FnMut(u64) -> Result<RunTiming, E>,
    {
        let start_s = self.clock.now_s();
        if self.span.is_none() {
            self.span = Some(BusySpan {
                started_s: start_s,
                ..BusySpan::default()
            });
        }
        let timing = run(iterations).map_err(WindowError::Work)?;
        let end_s = self.clock.now_s();
        if let Some(span) = self.span.as_mut() {
            span.blocks.push(Block {
                start_s,
                end_s,
                iterations,
                device_s: timing.device_s,
            });
        }
        self.drain_meter()?;
        Ok((timing, end_s - start_s))
    }

    /// Take what the meter saw since the last call into the busy span.
    fn drain_meter(&mut self) -> Result<(), MeterError> {
        let updates = self.meter.take_updates()?;
        let telemetry = self.meter.take_telemetry()?;
        self.telemetry.extend(telemetry);
        if let Some(u) = updates.last() {
            self.last_reading = Some(*u);
        }
        if let Some(span) = self.span.as_mut() {
            let start = span.started_s;
            span.updates
                .extend(updates.into_iter().filter(|u| u.time_s >= start));
        }
        Ok(())
    }

    /// Measure one window of at least the target length and at least
    /// `min_iterations` iterations, running `run` in blocks of `block_iterations`.
    /// The work keeps running from before the opening update until after the
    /// closing one; a window that follows another in the same busy span opens on
    /// the update that closed it.
    pub fn window<E, F>(
        &mut self,
        run: &mut F,
        block_iterations: u64,
        min_iterations: f64,
    ) -> Result<Window, WindowError<E>>
    where
        E: std::error::Error + 'static,
        F: FnMut(u64) -> Result<RunTiming, E>,
    {
        let block = block_iterations.max(1);
        if !self.has_energy() {
            return self.time_only_window(run, block, min_iterations);
        }
        let period = self.meter.update_period_s();
        let target_s = self.target_s();
        let response_s = self.meter.response_s().max(period);
        let stall_s = (STALL_PERIODS * period).max(STALL_MIN_S);
        self.drain_meter()?;
        // Updates the work has already passed (during a warm-up, say) do not open
        // this window; the one that closed the previous window does.
        let open_after_s = self.clock.now_s();
        let mut last_change_s = open_after_s;
        let mut seen = self.span.as_ref().map(|s| s.updates.len()).unwrap_or(0);
        loop {
            // checked before a window is cut, so none ever spans a drop
            self.check_not_backwards()?;
            if let Some((open, close)) =
                self.find_window(open_after_s, response_s, target_s, min_iterations)
            {
                return Ok(self.close_window(open, close));
            }
            self.run_block(run, block)?;
            if !self.safeguards.no_idle_inside {
                // the gaps schema-1 windows had between their blocks, 10–30 ms
                let n = self.span.as_ref().map_or(0, |s| s.blocks.len()) as f64;
                let gap = 0.02 * (0.5 + (n * 0.618_034).fract());
                self.clock.sleep(Duration::from_secs_f64(gap));
            }
            self.check_not_backwards()?;
            let span = self.span.as_ref().expect("run_block starts a span");
            let now = self.clock.now_s();
            if span.updates.len() > seen {
                seen = span.updates.len();
                last_change_s = now;
            } else if now - last_change_s > stall_s {
                let waited_s = now - last_change_s;
                return Err(WindowError::MeterStalled {
                    waited_s,
                    period_s: period,
                    detail: self.meter.fault_detail(),
                });
            }
        }
    }

    /// A reading that went down inside the busy span rejects the window.
    fn check_not_backwards<E: std::error::Error + 'static>(
        &mut self,
    ) -> Result<(), WindowError<E>> {
        let Some(span) = self.span.as_ref() else {
            return Ok(());
        };
        if let Some(w) = span.updates.windows(2).find(|w| w[1].joules < w[0].joules) {
            let (from_j, to_j) = (w[0].joules, w[1].joules);
            return Err(WindowError::MeterBackwards {
                from_j,
                to_j,
                detail: self.meter.fault_detail(),
            });
        }
        // a step forward beyond what the device could draw since the last update is
        // as impossible as one backwards; the time allowed is generous (two update
        // periods and a quarter second more), since an update seen late shortens the
        // time between two stamps: the check is for absurd steps, not for close calls
        if let Some(max_w) = self.meter.max_power_w().filter(|w| *w > 0.0) {
            let period = self.meter.update_period_s();
            for w in span.updates.windows(2) {
                let step_j = w[1].joules - w[0].joules;
                let seconds = (w[1].time_s - w[0].time_s).max(0.0) + 2.0 * period + 0.25;
                if step_j > max_w * seconds {
                    return Err(WindowError::MeterJumped {
                        step_j,
                        seconds,
                        max_w,
                    });
                }
            }
        }
        Ok(())
    }

    /// The opening and closing updates of a window in the busy span so far, if the
    /// work has reached them.
    fn find_window(
        &self,
        open_after_s: f64,
        response_s: f64,
        target_s: f64,
        min_iterations: f64,
    ) -> Option<(CounterUpdate, CounterUpdate)> {
        let span = self.span.as_ref()?;
        let lead_in_s = if self.safeguards.busy_lead_in {
            response_s
        } else {
            0.0
        };
        let exact = self.safeguards.exact_counting;
        let open = match span.last_close {
            Some(c) => c,
            None => *span
                .updates
                .iter()
                .find(|u| u.time_s >= span.started_s + lead_in_s && u.time_s >= open_after_s)?,
        };
        let close = span.updates.iter().find(|u| {
            u.time_s >= open.time_s + target_s * 0.999
                && count(&span.blocks, open.time_s, u.time_s, exact).0 >= min_iterations
        })?;
        Some((open, *close))
    }

    fn close_window(&mut self, open: CounterUpdate, close: CounterUpdate) -> Window {
        let span = self
            .span
            .as_mut()
            .expect("a window closes inside a busy span");
        let (iterations, device_s) = count(
            &span.blocks,
            open.time_s,
            close.time_s,
            self.safeguards.exact_counting,
        );
        let updates = span
            .updates
            .iter()
            .filter(|u| u.time_s > open.time_s && u.time_s <= close.time_s)
            .count() as u32;
        let lead_in_s = open.time_s - span.started_s;
        span.blocks.retain(|b| b.end_s >= close.time_s);
        span.updates.retain(|u| u.time_s >= close.time_s);
        span.last_close = Some(close);
        let during = WindowTelemetry::of(
            self.telemetry
                .iter()
                .filter(|s| s.time_s >= open.time_s && s.time_s <= close.time_s)
                .map(|s| &s.telemetry),
        );
        // keep a minute of telemetry for warm-up's settling checks, no more
        self.telemetry.retain(|s| s.time_s >= close.time_s - 60.0);
        let during = if during.samples == 0 {
            // a meter without background sampling: one reading, taken as the work ends
            let now = self.meter.telemetry().unwrap_or_default();
            WindowTelemetry::of([&now])
        } else {
            during
        };
        Window {
            iterations,
            seconds: close.time_s - open.time_s,
            device_s,
            joules: Some(close.joules - open.joules),
            lead_in_s: Some(lead_in_s),
            counter_updates: Some(updates),
            during: Some(during),
            host_joules: self.meter.host_energy_between(open.time_s, close.time_s),
            ..Window::default()
        }
    }

    /// Without a meter: the window is the work itself, at least the target long.
    fn time_only_window<E, F>(
        &mut self,
        run: &mut F,
        block: u64,
        min_iterations: f64,
    ) -> Result<Window, WindowError<E>>
    where
        E: std::error::Error + 'static,
        F: FnMut(u64) -> Result<RunTiming, E>,
    {
        let target_s = self.target_s();
        let (mut iterations, mut device, mut device_ok) = (0u64, 0.0, true);
        let t0 = self.clock.now_s();
        let lead_in_s = self.busy_for_s();
        loop {
            let (timing, _) = self.run_block(run, block)?;
            iterations += block;
            match timing.device_s {
                Some(d) => device += d,
                None => device_ok = false,
            }
            if iterations as f64 >= min_iterations && self.clock.now_s() - t0 >= target_s {
                break;
            }
        }
        let t1 = self.clock.now_s();
        let during = WindowTelemetry::of(
            self.telemetry
                .iter()
                .filter(|s| s.time_s >= t0 && s.time_s <= t1)
                .map(|s| &s.telemetry),
        );
        if let Some(span) = self.span.as_mut() {
            span.blocks.clear();
        }
        Ok(Window {
            iterations: iterations as f64,
            seconds: t1 - t0,
            device_s: device_ok.then_some(device),
            joules: None,
            lead_in_s: Some(lead_in_s),
            counter_updates: None,
            during: (during.samples > 0).then_some(during),
            host_joules: self.meter.host_energy_between(t0, t1),
            ..Window::default()
        })
    }

    /// Let the device idle for `seconds` (between windows, never inside one).
    pub fn idle(&mut self, seconds: f64) {
        self.pause();
        if seconds > 0.0 {
            self.clock.sleep(Duration::from_secs_f64(seconds));
        }
    }
}

/// Iterations (and their device time) done between `a` and `b`.
fn count(blocks: &[Block], a: f64, b: f64, exact: bool) -> (f64, Option<f64>) {
    let mut iterations = 0.0;
    let mut device = Some(0.0);
    for blk in blocks {
        let share = blk.share(a, b, exact);
        if share > 0.0 {
            iterations += share * blk.iterations as f64;
            device = match (device, blk.device_s) {
                (Some(d), Some(x)) => Some(d + share * x),
                _ => None,
            };
        }
    }
    (iterations, device)
}

/// Energy between two moments from a meter's updates, each end interpolated
/// between the updates around it (for windows whose ends are not updates, such as
/// EnergyMonitor's). `None` if the updates do not bracket both ends.
pub fn energy_between(updates: &[CounterUpdate], a: f64, b: f64) -> Option<f64> {
    Some(energy_at(updates, b)? - energy_at(updates, a)?)
}

/// The cumulative reading at `t`: interpolated between the updates around it, or,
/// past the last update, extrapolated at the power of the last two.
pub fn energy_at_or_after_last(updates: &[CounterUpdate], t: f64) -> Option<f64> {
    match updates {
        [.., a, b] if t > b.time_s && b.time_s > a.time_s => {
            Some(b.joules + (t - b.time_s) * (b.joules - a.joules) / (b.time_s - a.time_s))
        }
        _ => energy_at(updates, t),
    }
}

/// The cumulative reading at `t`, interpolated between the updates around it.
pub fn energy_at(updates: &[CounterUpdate], t: f64) -> Option<f64> {
    let after = updates.iter().position(|u| u.time_s >= t)?;
    let hi = updates[after];
    if hi.time_s == t || after == 0 {
        return (hi.time_s == t).then_some(hi.joules);
    }
    let lo = updates[after - 1];
    let f = (t - lo.time_s) / (hi.time_s - lo.time_s);
    Some(lo.joules + f * (hi.joules - lo.joules))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meter::MeterSource;
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::sync::Mutex;

    /// A device in virtual time: `busy_w` while work runs, `idle_w` otherwise, a
    /// counter that updates every `period_s` with the exact energy so far.
    struct World {
        now: f64,
        energy: f64,
        next_tick: f64,
        period_s: f64,
        updates: Vec<CounterUpdate>,
    }

    impl World {
        fn advance(&mut self, dt: f64, w: f64) {
            let end = self.now + dt;
            while self.next_tick <= end {
                self.energy += w * (self.next_tick - self.now);
                self.now = self.next_tick;
                self.updates.push(CounterUpdate {
                    time_s: self.now,
                    joules: self.energy,
                });
                self.next_tick += self.period_s;
            }
            self.energy += w * (end - self.now);
            self.now = end;
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
            self.0
                .lock()
                .unwrap()
                .0
                .borrow_mut()
                .advance(d.as_secs_f64(), 50.0);
        }
    }
    struct FakeMeter(Shared);
    unsafe impl Send for FakeMeter {}
    impl EnergyMeter for FakeMeter {
        fn source(&self) -> MeterSource {
            MeterSource::Simulated
        }
        fn energy_j(&mut self) -> Result<f64, MeterError> {
            Ok(self.0 .0.borrow().updates.last().map_or(0.0, |u| u.joules))
        }
        fn update_period_s(&self) -> f64 {
            self.0 .0.borrow().period_s
        }
        fn take_updates(&mut self) -> Result<Vec<CounterUpdate>, MeterError> {
            Ok(std::mem::take(&mut self.0 .0.borrow_mut().updates))
        }
    }

    fn world(period_s: f64) -> Shared {
        Shared(Rc::new(RefCell::new(World {
            now: 0.0,
            energy: 0.0,
            next_tick: period_s,
            period_s,
            updates: Vec::new(),
        })))
    }

    /// 1 ms per iteration at 300 W, plus 20 µs of idle sync after each block.
    fn work(w: &Shared) -> impl FnMut(u64) -> Result<RunTiming, std::io::Error> + '_ {
        move |n| {
            let t = 1e-3 * n as f64;
            w.0.borrow_mut().advance(t, 300.0);
            w.0.borrow_mut().advance(20e-6, 50.0);
            Ok(RunTiming {
                wall_s: t + 20e-6,
                device_s: Some(t),
            })
        }
    }

    #[test]
    fn a_window_counts_the_work_between_two_updates_exactly() {
        let w = world(0.1);
        let clock = FakeClock(Mutex::new(w.clone()));
        let mut meter = FakeMeter(w.clone());
        let mut engine = WindowEngine::new(&mut meter, &clock, WindowRules::default());
        let mut run = work(&w);
        let win = engine.window(&mut run, 7, 0.0).unwrap();
        assert!(
            win.seconds >= 1.0 - 1e-9 && win.seconds < 1.0 + 0.1 + 1e-9,
            "{win:?}"
        );
        // 300 W × 1 ms per iteration; the idle syncs are 2% of a 7-iteration block
        let j = win.joules_per_op(None).unwrap();
        assert!((j - 0.3).abs() / 0.3 < 0.004, "{j} J per op");
        assert!(win.average_w(None).unwrap() <= 300.0 + 1e-9);
        assert!(win.lead_in_s.unwrap() >= 0.1 - 1e-9);
        assert_eq!(win.counter_updates, Some(10));
    }

    #[test]
    fn back_to_back_windows_share_their_boundary_update() {
        let w = world(0.1);
        let clock = FakeClock(Mutex::new(w.clone()));
        let mut meter = FakeMeter(w.clone());
        let mut engine = WindowEngine::new(&mut meter, &clock, WindowRules::default());
        let mut run = work(&w);
        let a = engine.window(&mut run, 50, 0.0).unwrap();
        let b = engine.window(&mut run, 50, 0.0).unwrap();
        assert_eq!(b.lead_in_s.unwrap(), a.lead_in_s.unwrap() + a.seconds);
        engine.idle(0.003);
        let c = engine.window(&mut run, 50, 0.0).unwrap();
        assert!(c.lead_in_s.unwrap() >= 0.1 - 1e-9 && c.lead_in_s.unwrap() < 0.25);
    }

    #[test]
    fn a_stuck_counter_is_an_error_not_zero_joules() {
        struct Stuck;
        impl EnergyMeter for Stuck {
            fn source(&self) -> MeterSource {
                MeterSource::NvmlCounter
            }
            fn energy_j(&mut self) -> Result<f64, MeterError> {
                Ok(5.0)
            }
            fn update_period_s(&self) -> f64 {
                0.1
            }
            fn take_updates(&mut self) -> Result<Vec<CounterUpdate>, MeterError> {
                Ok(Vec::new())
            }
        }
        let w = world(0.1);
        let clock = FakeClock(Mutex::new(w.clone()));
        let mut meter = Stuck;
        let mut engine = WindowEngine::new(&mut meter, &clock, WindowRules::default());
        let mut run = work(&w);
        let err = engine.window(&mut run, 10, 0.0).unwrap_err();
        assert!(matches!(err, WindowError::MeterStalled { .. }), "{err}");
        assert!(err.to_string().contains("did not update"), "{err}");
    }

    /// The world's meter with a host beside it that draws 80 W, and a counter
    /// that drops by 100 J once, at `drop_at_s`.
    struct HostAndDrop(Shared, f64);
    unsafe impl Send for HostAndDrop {}
    impl EnergyMeter for HostAndDrop {
        fn source(&self) -> MeterSource {
            MeterSource::Simulated
        }
        fn energy_j(&mut self) -> Result<f64, MeterError> {
            Ok(0.0)
        }
        fn update_period_s(&self) -> f64 {
            0.1
        }
        fn take_updates(&mut self) -> Result<Vec<CounterUpdate>, MeterError> {
            let drop_at = self.1;
            let mut ups = std::mem::take(&mut self.0 .0.borrow_mut().updates);
            for u in ups.iter_mut().filter(|u| u.time_s >= drop_at) {
                u.joules -= 100.0;
            }
            Ok(ups)
        }
        fn host_energy_between(&mut self, a: f64, b: f64) -> Option<f64> {
            Some(80.0 * (b - a))
        }
        fn fault_detail(&mut self) -> Option<String> {
            Some("the test counter dropped by 100 J".into())
        }
    }

    #[test]
    fn windows_carry_host_energy_and_a_drop_is_rejected_with_the_meters_reason() {
        let w = world(0.1);
        let clock = FakeClock(Mutex::new(w.clone()));
        let mut meter = HostAndDrop(w.clone(), 1e9);
        let mut engine = WindowEngine::new(&mut meter, &clock, WindowRules::default());
        let mut run = work(&w);
        let win = engine.window(&mut run, 7, 0.0).unwrap();
        let host = win.host_joules.unwrap();
        assert!((host - 80.0 * win.seconds).abs() < 1e-9, "{win:?}");
        drop(engine);

        let w = world(0.1);
        let clock = FakeClock(Mutex::new(w.clone()));
        let mut meter = HostAndDrop(w.clone(), 0.55);
        let mut engine = WindowEngine::new(&mut meter, &clock, WindowRules::default());
        let mut run = work(&w);
        let err = engine.window(&mut run, 7, 0.0).unwrap_err();
        assert!(matches!(err, WindowError::MeterBackwards { .. }), "{err}");
        assert!(err.to_string().contains("dropped by 100 J"), "{err}");
    }

    #[test]
    fn interpolation_between_updates() {
        let u = |t, j| CounterUpdate {
            time_s: t,
            joules: j,
        };
        let ups = [u(1.0, 10.0), u(2.0, 20.0), u(3.0, 40.0)];
        assert_eq!(energy_at(&ups, 1.5), Some(15.0));
        assert_eq!(energy_at(&ups, 2.5), Some(30.0));
        assert_eq!(energy_at(&ups, 3.0), Some(40.0));
        assert_eq!(energy_at(&ups, 0.5), None);
        assert_eq!(energy_at(&ups, 3.5), None);
        assert_eq!(energy_between(&ups, 1.5, 2.5), Some(15.0));
        assert_eq!(energy_at_or_after_last(&ups, 3.5), Some(50.0));
        assert_eq!(energy_at_or_after_last(&ups, 2.5), Some(30.0));
    }

    #[test]
    fn rules_size_windows_for_slow_meters() {
        let r = WindowRules::default();
        assert_eq!(r.target_s(0.1), 1.0);
        assert!((r.target_s(0.25) - 2.5).abs() < 1e-12);
        assert!(r.is_short(0.9, 0.1) && !r.is_short(0.99, 0.1));
    }
}
