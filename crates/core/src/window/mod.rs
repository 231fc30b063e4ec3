//! The one window engine (docs/ARCHITECTURE.md §4.3, §4.8) behind the sweep's
//! protocol, criterion's `Energy` measurement and `EnergyMonitor`. A busy window
//! opens and closes on updates of the energy meter, and the device is busy for all
//! of it: the work runs in blocks back to back from before the opening update until
//! after the closing one, and the work done between the two updates is interpolated
//! from the blocks' timings. Update times come from the counter's own rhythm
//! (`timeline`), not from when the meter's thread happened to see each change.
//! Windows around work the engine does not run (`interval`) share the timeline,
//! the rules and the meter checks.
//!
//! - `types`: the window, its rules and the safeguards tests can turn off;
//! - `timeline`: when the counter changed, fitted to its regular period;
//! - `blocks`: how long a block is, and how the work between updates is counted;
//! - `interval`: windows between two moments of the caller's choosing.

mod blocks;
mod interval;
mod timeline;
mod types;

pub use blocks::{aliases, block_seconds, non_aliasing_iterations};
pub use interval::{IntervalEnergy, IntervalMeter, WindowEnds};
pub use timeline::{
    energy_at, energy_at_or_after_last, energy_between, CounterTimeline, UpdateTimes,
};
pub use types::{
    Range, Safeguards, Window, WindowRules, WindowTelemetry, INTERVAL_MIN_COUNTER_UPDATES,
};

use crate::backend::RunTiming;
use crate::clock::Clock;
use crate::meter::{CounterUpdate, EnergyMeter, MeterError, MeterSource, TelemetrySample};
use blocks::{count, Block};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum WindowError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Meter(#[from] MeterError),
    #[error("the workload failed: {0}")]
    Work(#[source] E),
    /// The meter's reading did not change for many update periods while the device
    /// worked: a stuck counter, whose windows would read zero energy.
    /// `detail` is the meter's own account ([`EnergyMeter::fault_detail`]).
    #[error("the energy meter did not update for {waited_s:.2} s (it updates every {period_s:.3} s): its readings cannot be trusted{}", suffix(.detail))]
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

/// A step forward in `updates` beyond what a device drawing `max_w` could have spent
/// since the step before is as impossible as one backwards. The time allowed is
/// generous (two update periods and a quarter second more), since an update seen
/// late shortens the time between two stamps: the check is for absurd steps, not for
/// close calls.
pub(crate) fn check_no_jump<E: std::error::Error + 'static>(
    updates: &[CounterUpdate],
    max_w: Option<f64>,
    period_s: f64,
) -> Result<(), WindowError<E>> {
    let Some(max_w) = max_w.filter(|w| *w > 0.0) else {
        return Ok(());
    };
    for w in updates.windows(2) {
        let step_j = w[1].joules - w[0].joules;
        let seconds = (w[1].time_s - w[0].time_s).max(0.0) + 2.0 * period_s + 0.25;
        if step_j > max_w * seconds {
            return Err(WindowError::MeterJumped {
                step_j,
                seconds,
                max_w,
            });
        }
    }
    Ok(())
}

fn suffix(detail: &Option<String>) -> String {
    detail
        .as_deref()
        .map(|d| format!("; {d}"))
        .unwrap_or_default()
}

/// Work that has run back to back since `started_s`, and what the meter saw meanwhile.
#[derive(Debug, Default)]
struct BusySpan {
    started_s: f64,
    blocks: Vec<Block>,
    /// Updates seen during the span, at their fitted times.
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

/// Telemetry kept for the warm-up's settling checks: a minute.
const KEEP_TELEMETRY_S: f64 = 60.0;

/// What an engine remembers between windows: the counter's timeline (its fit needs
/// the history), the telemetry, and the busy span. An owner that builds an engine
/// per call (criterion's `EnergyBench`) keeps it with [`WindowEngine::into_state`]
/// and hands it back with [`WindowEngine::resume`].
#[derive(Debug, Default)]
pub struct EngineState {
    span: Option<BusySpan>,
    telemetry: Vec<TelemetrySample>,
    timeline: Option<CounterTimeline>,
}

/// Keeps a device busy and cuts windows out of its work (see the module comment).
pub struct WindowEngine<'a> {
    meter: &'a mut dyn EnergyMeter,
    clock: &'a dyn Clock,
    rules: WindowRules,
    state: EngineState,
    safeguards: Safeguards,
    /// Whether the workload's device time covers all of its work, so that idle time
    /// can be told from it.
    device_time_covers_work: bool,
}

impl<'a> WindowEngine<'a> {
    pub fn new(meter: &'a mut dyn EnergyMeter, clock: &'a dyn Clock, rules: WindowRules) -> Self {
        Self::resume(meter, clock, rules, EngineState::default())
    }

    /// An engine that carries on from `state` (see [`EngineState`]).
    pub fn resume(
        meter: &'a mut dyn EnergyMeter,
        clock: &'a dyn Clock,
        rules: WindowRules,
        state: EngineState,
    ) -> Self {
        WindowEngine {
            meter,
            clock,
            rules,
            state,
            safeguards: Safeguards::default(),
            device_time_covers_work: true,
        }
    }

    /// What the next engine on this meter should carry on from. The busy span ends:
    /// whatever happens until then is not this engine's work.
    pub fn into_state(mut self) -> EngineState {
        self.state.span = None;
        self.state
    }

    /// Turn safeguards off, to show in a test what each prevents.
    pub fn set_safeguards(&mut self, safeguards: Safeguards) {
        self.safeguards = safeguards;
        if let Some(t) = &self.state.timeline {
            if !safeguards.grid_fit && t.method() == UpdateTimes::GridFit {
                self.state.timeline = None;
            }
        }
    }

    pub fn safeguards(&self) -> Safeguards {
        self.safeguards
    }

    /// The workload does work its device time does not cover (an L2 flush before
    /// each timed kernel): idle time cannot be told from its timestamps.
    pub fn set_device_time_covers_work(&mut self, covers: bool) {
        self.device_time_covers_work = covers;
    }

    pub fn has_energy(&self) -> bool {
        self.meter.source() != MeterSource::None && self.meter.update_period_s() > 0.0
    }

    pub fn update_period_s(&self) -> f64 {
        self.meter.update_period_s()
    }

    /// How the windows' update times were taken so far.
    pub fn update_times(&self) -> UpdateTimes {
        self.state
            .timeline
            .as_ref()
            .map_or(UpdateTimes::AsObserved, |t| t.method())
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
        self.state
            .span
            .as_ref()
            .map(|s| self.clock.now_s() - s.started_s)
            .unwrap_or(0.0)
    }

    /// Telemetry sampled since `since_s` (readings are kept for a minute after the
    /// last window, or until [`WindowEngine::forget_telemetry_before`]).
    pub fn telemetry_since(&self, since_s: f64) -> impl Iterator<Item = &TelemetrySample> {
        self.state
            .telemetry
            .iter()
            .filter(move |s| s.time_s >= since_s)
    }

    pub fn forget_telemetry_before(&mut self, time_s: f64) {
        self.state.telemetry.retain(|s| s.time_s >= time_s);
    }

    /// The blocks of the current busy span since `since_s`: (end time, iterations,
    /// seconds per iteration by wall time), for the warm-up's pace check.
    pub fn block_pace_since(&self, since_s: f64) -> Vec<(f64, f64)> {
        self.state.span.as_ref().map_or_else(Vec::new, |s| {
            s.blocks
                .iter()
                .filter(|b| b.start_s >= since_s && b.iterations > 0 && b.end_s > b.start_s)
                .map(|b| (b.end_s, (b.end_s - b.start_s) / b.iterations as f64))
                .collect()
        })
    }

    /// The work stopped (or will idle before it resumes): the next window needs a
    /// new lead-in.
    pub fn pause(&mut self) {
        self.state.span = None;
    }

    /// Find a block size of about `block_s` seconds, doubling from one iteration
    /// (and jumping towards the target, at most 16× at a time), then moved off a
    /// length that aliases with the meter's period. The calibration blocks are part
    /// of the busy span.
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
            let mut cal = Calibration {
                block_iterations: batch,
                seconds_per_iteration: (seconds / batch as f64).max(1e-12),
                device_timer: timing.device_s.is_some(),
            };
            if seconds >= block_s || batch >= MAX_BLOCK_ITERATIONS {
                if self.safeguards.non_aliasing_blocks && self.has_energy() {
                    // the sensor sees the block's wall time, syncs included
                    let per_iteration = (wall / batch as f64).max(cal.seconds_per_iteration);
                    cal.block_iterations =
                        non_aliasing_iterations(batch, per_iteration, self.meter.update_period_s())
                            .min(MAX_BLOCK_ITERATIONS);
                }
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
        if self.state.span.is_none() {
            self.state.span = Some(BusySpan {
                started_s: start_s,
                ..BusySpan::default()
            });
        }
        let timing = run(iterations).map_err(WindowError::Work)?;
        let end_s = self.clock.now_s();
        if let Some(span) = self.state.span.as_mut() {
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

    /// Take what the meter saw since the last call: its updates onto the timeline
    /// (and into the busy span), its telemetry into the engine's memory.
    fn drain_meter(&mut self) -> Result<(), MeterError> {
        let updates = self.meter.take_updates()?;
        let telemetry = self.meter.take_telemetry()?;
        self.state.telemetry.extend(telemetry);
        if updates.is_empty() {
            return Ok(());
        }
        let period = self.meter.update_period_s();
        let fit = self.safeguards.grid_fit;
        let timeline = self
            .state
            .timeline
            .get_or_insert_with(|| CounterTimeline::new(period, fit));
        let fitted: Vec<CounterUpdate> = updates.into_iter().map(|u| timeline.push(u)).collect();
        if let Some(span) = self.state.span.as_mut() {
            let start = span.started_s;
            span.updates
                .extend(fitted.into_iter().filter(|u| u.time_s >= start));
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
        let mut seen = self
            .state
            .span
            .as_ref()
            .map(|s| s.updates.len())
            .unwrap_or(0);
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
                let n = self.state.span.as_ref().map_or(0, |s| s.blocks.len()) as f64;
                let gap = 0.02 * (0.5 + (n * 0.618_034).fract());
                self.clock.sleep(Duration::from_secs_f64(gap));
            }
            self.check_not_backwards()?;
            let span = self.state.span.as_ref().expect("run_block starts a span");
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
        let Some(span) = self.state.span.as_ref() else {
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
        check_no_jump(
            &span.updates,
            self.meter.max_power_w(),
            self.meter.update_period_s(),
        )
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
        let span = self.state.span.as_ref()?;
        let lead_in_s = if self.safeguards.busy_lead_in {
            response_s
        } else {
            0.0
        };
        let apportion = self.safeguards.exact_counting;
        let open = match span.last_close {
            Some(c) => c,
            None => *span
                .updates
                .iter()
                .find(|u| u.time_s >= span.started_s + lead_in_s && u.time_s >= open_after_s)?,
        };
        let close = span.updates.iter().find(|u| {
            u.time_s >= open.time_s + target_s * 0.999
                && count(&span.blocks, open.time_s, u.time_s, apportion).0 >= min_iterations
        })?;
        Some((open, *close))
    }

    fn close_window(&mut self, open: CounterUpdate, close: CounterUpdate) -> Window {
        let span = self
            .state
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
        let seconds = close.time_s - open.time_s;
        let during = self.telemetry_between(open.time_s, close.time_s);
        self.state
            .telemetry
            .retain(|s| s.time_s >= close.time_s - KEEP_TELEMETRY_S);
        let during = if during.samples == 0 {
            // a meter without background sampling: one reading, taken as the work ends
            let now = self.meter.telemetry().unwrap_or_default();
            WindowTelemetry::of([&now])
        } else {
            during
        };
        Window {
            iterations,
            seconds,
            device_s,
            joules: Some(close.joules - open.joules),
            lead_in_s: Some(lead_in_s),
            counter_updates: Some(updates),
            idle_share: self.idle_share(device_s, seconds),
            during: Some(during),
            host_joules: self.meter.host_energy_between(open.time_s, close.time_s),
            ..Window::default()
        }
    }

    fn telemetry_between(&self, from_s: f64, to_s: f64) -> WindowTelemetry {
        WindowTelemetry::of(
            self.state
                .telemetry
                .iter()
                .filter(|s| s.time_s >= from_s && s.time_s <= to_s)
                .map(|s| &s.telemetry),
        )
    }

    /// 1 − device time / window time, where the device's timestamps cover its work.
    fn idle_share(&self, device_s: Option<f64>, seconds: f64) -> Option<f64> {
        match device_s {
            Some(d) if self.device_time_covers_work && seconds > 0.0 => {
                Some((1.0 - d / seconds).max(0.0))
            }
            _ => None,
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
        let during = self.telemetry_between(t0, t1);
        if let Some(span) = self.state.span.as_mut() {
            span.blocks.clear();
        }
        let device_s = device_ok.then_some(device);
        Ok(Window {
            iterations: iterations as f64,
            seconds: t1 - t0,
            device_s,
            joules: None,
            lead_in_s: Some(lead_in_s),
            counter_updates: None,
            idle_share: self.idle_share(device_s, t1 - t0),
            during: (during.samples > 0).then_some(during),
            host_joules: self.meter.host_energy_between(t0, t1),
            ..Window::default()
        })
    }

    /// Let the device idle for `seconds` (between windows, never inside one).
    pub fn idle(&mut self, seconds: f64) -> Result<(), MeterError> {
        self.pause();
        if seconds > 0.0 {
            self.clock.sleep(Duration::from_secs_f64(seconds));
        }
        // what the meter saw meanwhile keeps the timeline's rhythm
        self.drain_meter()
    }
}

#[cfg(test)]
mod tests;
