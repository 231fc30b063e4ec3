//! Energy windows sized for the meter, for criterion's `iter_custom`: however few
//! iterations criterion asks for, the work runs back to back for at least
//! max(1 s, 10 meter updates) (docs/ARCHITECTURE.md §4.3) between two updates of the energy
//! counter, through the same window engine as `joulebench sweep`, and the energy
//! of the iterations asked for is returned. All time comes from the device's
//! [`Clock`], so the simulated device's windows pass in virtual time.

use joulebench_core::window::{Calibration, Window, WindowEngine, WindowError, WindowRules};
use joulebench_core::{Clock, EnergyMeter, MeterError, MeterSource, ProtocolConfig, RunTiming};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum BenchError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Meter(#[from] MeterError),
    #[error("the workload failed: {0}")]
    Workload(#[source] E),
    /// The meter stalled or went backwards while the work ran: the window is rejected.
    #[error("{0}")]
    UntrustedMeter(String),
}

impl<E: std::error::Error + 'static> From<WindowError<E>> for BenchError<E> {
    fn from(e: WindowError<E>) -> Self {
        match e {
            WindowError::Meter(m) => BenchError::Meter(m),
            WindowError::Work(w) => BenchError::Workload(w),
            e @ (WindowError::MeterStalled { .. }
            | WindowError::MeterBackwards { .. }
            | WindowError::MeterJumped { .. }) => BenchError::UntrustedMeter(e.to_string()),
        }
    }
}

/// How windows are sized. [`WindowConfig::default`] is the measurement protocol's.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowConfig {
    /// Shortest window in seconds; the window also lasts `min_counter_updates`
    /// updates of the meter.
    pub min_window_s: f64,
    pub min_counter_updates: u32,
    /// Device time one call of the workload should take (a block of iterations);
    /// windows are made of such blocks, run back to back.
    pub block_s: f64,
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
            virtual_pacing: None,
        }
    }
}

impl WindowConfig {
    /// Blocks of one iteration and windows of one counter update: checks that a
    /// bench runs (criterion's `--test`), not what it costs. Its windows are
    /// flagged short.
    pub fn smoke_test() -> WindowConfig {
        WindowConfig {
            min_window_s: 0.0,
            min_counter_updates: 0,
            block_s: 0.0,
            virtual_pacing: None,
        }
    }

    fn rules(&self) -> WindowRules {
        WindowRules {
            min_window_s: self.min_window_s,
            min_counter_updates: self.min_counter_updates,
        }
    }

    /// The window this config asks for on a meter updating every `update_period_s`.
    pub fn window_target_s(&self, update_period_s: f64) -> f64 {
        self.rules().target_s(update_period_s)
    }
}

/// The shortest window whose energy can be trusted: max(1 s, 10 meter updates).
pub fn min_trustworthy_window_s(update_period_s: f64) -> f64 {
    WindowRules::default().target_s(update_period_s)
}

/// A device's energy meter and clock, and the window rules, for `iter_custom`
/// routines. The workload is any `FnMut(iterations) -> Result<RunTiming, E>` that
/// runs that many iterations back to back and waits for them to finish — a
/// `PreparedKernel::run`, or your own code. Windows come from the one window
/// engine of `joulebench_core::window`: busy from before the opening counter
/// update to after the closing one, the work between them counted exactly.
pub struct EnergyBench {
    meter: Box<dyn EnergyMeter>,
    clock: Arc<dyn Clock>,
    config: WindowConfig,
    last_window: Option<Window>,
    short_windows: u64,
}

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
    pub fn last_window(&self) -> Option<&Window> {
        self.last_window.as_ref()
    }

    /// Windows so far that were shorter than max(1 s, 10 meter updates).
    pub fn short_windows(&self) -> u64 {
        self.short_windows
    }

    /// Shorter than max(1 s, 10 meter updates): not to be trusted.
    pub fn is_short(&self, window: &Window) -> bool {
        WindowRules::default().is_short(window.seconds, self.meter.update_period_s())
    }

    fn engine(&mut self) -> WindowEngine<'_> {
        WindowEngine::new(
            self.meter.as_mut(),
            self.clock.as_ref(),
            self.config.rules(),
        )
    }

    /// Find how many iterations make one block of about `block_s` of device time
    /// (doubling from one; this also warms the kernel up a little).
    pub fn calibrate<E, F>(&mut self, run: &mut F) -> Result<Calibration, BenchError<E>>
    where
        E: std::error::Error + 'static,
        F: FnMut(u64) -> Result<RunTiming, E>,
    {
        let block_s = self.config.block_s;
        Ok(self.engine().calibrate(run, block_s)?)
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
        let joules = window.joules_per_op(None).unwrap_or(0.0) * iterations as f64;
        if self.is_short(&window) {
            self.short_windows += 1;
        }
        self.last_window = Some(window);
        Ok(joules)
    }

    /// Measure one window of at least `min_iterations` iterations. A meter that
    /// cannot read energy is an error here (time is [`EnergyBench::device_time`]'s).
    pub fn window<E, F>(
        &mut self,
        min_iterations: u64,
        cal: &Calibration,
        run: &mut F,
    ) -> Result<Window, BenchError<E>>
    where
        E: std::error::Error + 'static,
        F: FnMut(u64) -> Result<RunTiming, E>,
    {
        self.check_meter()?;
        let mut engine = self.engine();
        let window = engine.window(run, cal.block_iterations, min_iterations as f64)?;
        engine.pause();
        Ok(window)
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
}
