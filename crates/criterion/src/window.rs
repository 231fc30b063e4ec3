//! Energy windows sized for the meter, for criterion's `iter_custom`: however few
//! iterations criterion asks for, the work runs back to back for at least
//! max(1 s, 10 meter updates) (DESIGN.md §4), starting and ending on an update of
//! the energy counter, and the energy of the iterations asked for is returned.
//! All time comes from the device's [`Clock`], so the simulated device's windows
//! pass in virtual time.

use joulebench_core::{Clock, EnergyMeter, MeterError, MeterSource, ProtocolConfig, RunTiming};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum BenchError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Meter(#[from] MeterError),
    #[error("the workload failed: {0}")]
    Workload(#[source] E),
}

/// How windows are sized. [`WindowConfig::default`] is the measurement protocol's.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowConfig {
    /// Shortest window in seconds; the window also lasts `min_counter_updates`
    /// updates of the meter.
    pub min_window_s: f64,
    pub min_counter_updates: u32,
    /// Device time one call of the workload should take (a block of iterations);
    /// windows are made of such blocks.
    pub block_s: f64,
    /// Start and end each window on an update of the energy counter.
    pub align_to_counter: bool,
    pub counter_poll_s: f64,
    /// For a virtual clock (the simulated device): real seconds to spend per
    /// second of the device clock. criterion sizes its samples by wall time, so
    /// without pacing it takes virtual work for free and asks for windows of
    /// hours; with 0.03 it sees a device 33× faster than real time, and each sample
    /// is about one window. `None` on a real clock.
    pub virtual_pacing: Option<f64>,
}

impl Default for WindowConfig {
    fn default() -> Self {
        let p = ProtocolConfig::default();
        WindowConfig {
            min_window_s: p.min_window_s,
            min_counter_updates: p.min_counter_updates,
            block_s: 0.01,
            align_to_counter: p.align_to_counter,
            counter_poll_s: p.counter_poll_s,
            virtual_pacing: None,
        }
    }
}

impl WindowConfig {
    /// One block of one iteration, read without alignment: checks that a bench
    /// runs (criterion's `--test`), not what it costs. Its windows are flagged short.
    pub fn smoke_test() -> WindowConfig {
        WindowConfig {
            min_window_s: 0.0,
            min_counter_updates: 0,
            block_s: 0.0,
            align_to_counter: false,
            counter_poll_s: 0.001,
            virtual_pacing: None,
        }
    }

    /// The window this config asks for on a meter updating every `update_period_s`.
    pub fn window_target_s(&self, update_period_s: f64) -> f64 {
        self.min_window_s
            .max(self.min_counter_updates as f64 * update_period_s)
    }
}

/// The shortest window whose energy can be trusted: max(1 s, 10 meter updates).
pub fn min_trustworthy_window_s(update_period_s: f64) -> f64 {
    WindowConfig::default().window_target_s(update_period_s)
}

/// How many iterations one call of the workload runs, found by
/// [`EnergyBench::calibrate`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Calibration {
    pub block_iterations: u64,
    /// Device-clock seconds per iteration, as the last calibration block took.
    pub seconds_per_iteration: f64,
    /// The workload reports device time (timestamps, CUDA events), not only wall time.
    pub device_timer: bool,
}

/// One energy window.
#[derive(Clone, Debug, PartialEq)]
pub struct EnergyWindow {
    /// Iterations inside the window (fractional: the closing counter update falls
    /// inside a block, and half of that block is counted).
    pub iterations: f64,
    /// Device-clock seconds from the opening to the closing counter update.
    pub seconds: f64,
    pub joules: f64,
    /// Both ends fell on counter updates. An unaligned window's energy is off by
    /// up to one update period's worth at each end.
    pub aligned: bool,
    /// Shorter than max(1 s, 10 meter updates): not to be trusted.
    pub short: bool,
}

impl EnergyWindow {
    pub fn joules_per_iteration(&self) -> f64 {
        if self.iterations > 0.0 {
            self.joules / self.iterations
        } else {
            0.0
        }
    }

    pub fn average_watts(&self) -> f64 {
        if self.seconds > 0.0 {
            self.joules / self.seconds
        } else {
            0.0
        }
    }
}

/// A device's energy meter and clock, and the window rules, for `iter_custom`
/// routines. The workload is any `FnMut(iterations) -> Result<RunTiming, E>` that
/// runs that many iterations back to back and waits for them to finish — a
/// `PreparedKernel::run`, or your own code.
pub struct EnergyBench {
    meter: Box<dyn EnergyMeter>,
    clock: Arc<dyn Clock>,
    config: WindowConfig,
    last_window: Option<EnergyWindow>,
    short_windows: u64,
}

/// Calibration stops doubling here, whatever the workload's speed.
const MAX_BLOCK_ITERATIONS: u64 = 1 << 32;

impl EnergyBench {
    pub fn new(meter: Box<dyn EnergyMeter>, clock: Arc<dyn Clock>, config: WindowConfig) -> Self {
        EnergyBench {
            meter,
            clock,
            config,
            last_window: None,
            short_windows: 0,
        }
    }

    pub fn config(&self) -> &WindowConfig {
        &self.config
    }

    pub fn meter_source(&self) -> MeterSource {
        self.meter.source()
    }

    pub fn update_period_s(&self) -> f64 {
        self.meter.update_period_s()
    }

    /// The window length this bench's config asks for on its meter.
    pub fn window_target_s(&self) -> f64 {
        self.config.window_target_s(self.meter.update_period_s())
    }

    /// Whether energy can be measured at all: a reading, or the meter's reason why not.
    pub fn check_meter(&mut self) -> Result<(), MeterError> {
        self.meter.energy_j().map(|_| ())
    }

    /// The last window measured by [`EnergyBench::joules`].
    pub fn last_window(&self) -> Option<&EnergyWindow> {
        self.last_window.as_ref()
    }

    /// Windows so far that were shorter than max(1 s, 10 meter updates).
    pub fn short_windows(&self) -> u64 {
        self.short_windows
    }

    /// Find how many iterations make one block of about `block_s` of device time
    /// (doubling from one; this also warms the kernel up a little).
    pub fn calibrate<E, F>(&mut self, run: &mut F) -> Result<Calibration, BenchError<E>>
    where
        E: std::error::Error + 'static,
        F: FnMut(u64) -> Result<RunTiming, E>,
    {
        let mut batch = 1u64;
        loop {
            let t0 = self.clock.now_s();
            let timing = run(batch).map_err(BenchError::Workload)?;
            let elapsed = (self.clock.now_s() - t0).max(0.0);
            let seconds = timing.device_s.unwrap_or(timing.wall_s).max(elapsed * 0.5);
            let cal = Calibration {
                block_iterations: batch,
                seconds_per_iteration: seconds / batch as f64,
                device_timer: timing.device_s.is_some(),
            };
            if seconds >= self.config.block_s || batch >= MAX_BLOCK_ITERATIONS {
                return Ok(cal);
            }
            // jump towards the target, but at most 16× at once
            let wanted = if seconds > 0.0 {
                (batch as f64 * 1.2 * self.config.block_s / seconds).ceil() as u64
            } else {
                batch.saturating_mul(16)
            };
            batch = wanted
                .clamp(batch.saturating_mul(2), batch.saturating_mul(16))
                .min(MAX_BLOCK_ITERATIONS);
        }
    }

    /// Time of `iterations` iterations, run in calibrated blocks: device time where
    /// the workload reports it, else its wall time. For criterion's `WallTime`
    /// measurement in `iter_custom`.
    pub fn device_time<E, F>(
        &mut self,
        iterations: u64,
        cal: &Calibration,
        run: &mut F,
    ) -> Result<Duration, BenchError<E>>
    where
        E: std::error::Error + 'static,
        F: FnMut(u64) -> Result<RunTiming, E>,
    {
        let pace = self.pace_start();
        let mut seconds = 0.0;
        let mut left = iterations;
        while left > 0 {
            let n = left.min(cal.block_iterations.max(1));
            let t = run(n).map_err(BenchError::Workload)?;
            seconds += t.device_s.unwrap_or(t.wall_s);
            left -= n;
        }
        self.pace(pace);
        Ok(Duration::from_secs_f64(seconds.max(0.0)))
    }

    /// Energy of `iterations` iterations, in joules, for criterion's `iter_custom`
    /// with [`crate::Energy`]: one window of at least `iterations` iterations and at
    /// least the window target, whose joules per iteration are scaled to
    /// `iterations`.
    pub fn joules<E, F>(
        &mut self,
        iterations: u64,
        cal: &Calibration,
        run: &mut F,
    ) -> Result<f64, BenchError<E>>
    where
        E: std::error::Error + 'static,
        F: FnMut(u64) -> Result<RunTiming, E>,
    {
        let pace = self.pace_start();
        let window = self.window(iterations, cal, run)?;
        self.pace(pace);
        let joules = window.joules_per_iteration() * iterations as f64;
        if window.short {
            self.short_windows += 1;
        }
        self.last_window = Some(window);
        Ok(joules)
    }

    /// Measure one window of at least `min_iterations` iterations.
    pub fn window<E, F>(
        &mut self,
        min_iterations: u64,
        cal: &Calibration,
        run: &mut F,
    ) -> Result<EnergyWindow, BenchError<E>>
    where
        E: std::error::Error + 'static,
        F: FnMut(u64) -> Result<RunTiming, E>,
    {
        let period = self.meter.update_period_s();
        let target_s = self.window_target_s();
        let align = self.config.align_to_counter && period > 0.0;
        let block = cal.block_iterations.max(1);

        let (e0, opening_aligned) = if align {
            self.await_counter_update(period)?
        } else {
            (self.meter.energy_j()?, false)
        };
        let t0 = self.clock.now_s();
        let mut iterations = 0u64;
        loop {
            run(block).map_err(BenchError::Workload)?;
            iterations += block;
            if iterations >= min_iterations && self.clock.now_s() - t0 >= target_s {
                break;
            }
        }

        // Keep the device busy in short blocks until the counter moves: the closing
        // update then falls inside the last of them, half of which is counted.
        let mut closing = None;
        if align {
            let tail = (block / 8).max(1);
            let e_before = self.meter.energy_j()?;
            let deadline = self.clock.now_s() + 3.0 * period;
            loop {
                let tb = self.clock.now_s();
                run(tail).map_err(BenchError::Workload)?;
                let ta = self.clock.now_s();
                let e = self.meter.energy_j()?;
                if e != e_before {
                    closing = Some((e, iterations as f64 + tail as f64 * 0.5, 0.5 * (tb + ta)));
                    iterations += tail;
                    break;
                }
                iterations += tail;
                if ta >= deadline {
                    break;
                }
            }
        }
        let (e1, counted, t1, closing_aligned) = match closing {
            Some((e, n, t)) => (e, n, t, true),
            None => (
                self.meter.energy_j()?,
                iterations as f64,
                self.clock.now_s(),
                false,
            ),
        };
        let seconds = t1 - t0;
        Ok(EnergyWindow {
            iterations: counted,
            seconds,
            joules: e1 - e0,
            aligned: opening_aligned && closing_aligned,
            short: seconds < 0.98 * min_trustworthy_window_s(period),
        })
    }

    fn pace_start(&self) -> (Instant, f64) {
        (Instant::now(), self.clock.now_s())
    }

    /// Sleep until `virtual_pacing` real seconds per clock second have passed.
    fn pace(&self, (real0, clock0): (Instant, f64)) {
        let Some(ratio) = self.config.virtual_pacing else {
            return;
        };
        let wanted = (self.clock.now_s() - clock0) * ratio;
        let spent = real0.elapsed().as_secs_f64();
        if wanted.is_finite() && wanted > spent {
            std::thread::sleep(Duration::from_secs_f64(wanted - spent));
        }
    }

    /// Poll the meter until its reading changes; give up after three update periods.
    fn await_counter_update(&mut self, period_s: f64) -> Result<(f64, bool), MeterError> {
        let first = self.meter.energy_j()?;
        let deadline = self.clock.now_s() + 3.0 * period_s;
        let poll = Duration::from_secs_f64(self.config.counter_poll_s.max(1e-6));
        loop {
            self.clock.sleep(poll);
            let e = self.meter.energy_j()?;
            if e != first {
                return Ok((e, true));
            }
            if self.clock.now_s() >= deadline {
                return Ok((e, false));
            }
        }
    }
}
