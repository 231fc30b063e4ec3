//! Energy windows sized for the meter, for criterion's `iter_custom`: however few
//! iterations criterion asks for, the work runs back to back through the sweep's
//! window engine, under the sweep's protocol settings (docs/ARCHITECTURE.md §4): its
//! block length, its settling warm-up, its window rule — so `cargo bench` and
//! `joulebench sweep` measure a point the same way. All time comes from the
//! device's [`Clock`], so the simulated device's windows pass in virtual time.

use criterion::Bencher;
use joulebench_core::protocol::{warm_up, ProtocolConfig, ProtocolError, Warmup};
use joulebench_core::window::{
    block_seconds, Calibration, EngineState, Window, WindowEngine, WindowError, WindowRules,
};
use joulebench_core::{BackendError, Clock, EnergyMeter, MeterError, MeterSource, RunTiming};
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
    #[error("invalid protocol setting: {0}")]
    Config(String),
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

/// How windows are taken: the protocol's settings, and the pacing of a virtual
/// clock. [`WindowConfig::default`] is the sweep's default protocol.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WindowConfig {
    /// The settings a sweep would use: window rule, block length, warm-up.
    pub protocol: ProtocolConfig,
    /// For a virtual clock (the simulated device): real seconds to spend per
    /// second of the device clock. criterion sizes its samples by wall time, so
    /// without pacing it takes virtual work for free and asks for windows of
    /// hours; with 0.03 it sees a device 33× faster than real time, and each sample
    /// is about one window. `None` on a real clock.
    pub virtual_pacing: Option<f64>,
}

impl WindowConfig {
    /// The sweep's protocol settings `protocol`.
    pub fn of(protocol: ProtocolConfig) -> WindowConfig {
        WindowConfig {
            protocol,
            virtual_pacing: None,
        }
    }

    /// Windows of one counter update and no warm-up: checks that a bench runs
    /// (criterion's `--test`), not what it costs. Its windows are flagged short
    /// against the protocol's default rule.
    pub fn smoke_test() -> WindowConfig {
        WindowConfig::of(ProtocolConfig {
            warmup_s: 0.0,
            warmup_max_s: 0.0,
            min_window_s: 1e-6,
            min_counter_updates: 0,
            ..ProtocolConfig::default()
        })
    }

    fn rules(&self) -> WindowRules {
        self.protocol.window_rules()
    }

    /// The window this config asks for on a meter updating every `update_period_s`.
    pub fn window_target_s(&self, update_period_s: f64) -> f64 {
        self.rules().target_s(update_period_s)
    }
}

/// The shortest window whose energy can be trusted under the protocol's default
/// rule: max(1 s, 10 meter updates).
pub fn min_trustworthy_window_s(update_period_s: f64) -> f64 {
    WindowRules::default().target_s(update_period_s)
}

/// A failed window is measured again this many times before the sample fails.
pub const WINDOW_ATTEMPTS: u32 = 3;

/// A device's energy meter and clock, and the protocol's window rules, for
/// `iter_custom` routines. The workload is any `FnMut(iterations) -> Result<RunTiming, E>`
/// that runs that many iterations back to back and waits for them to finish — a
/// `PreparedKernel::run`, or your own code. Windows come from the one window
/// engine of `joulebench_core::window`: busy from before the opening counter
/// update to after the closing one, the work between them interpolated from the
/// blocks' timings, the update times fitted to the counter's period.
pub struct EnergyBench {
    meter: Box<dyn EnergyMeter>,
    clock: Arc<dyn Clock>,
    config: WindowConfig,
    state: Option<EngineState>,
    last_window: Option<Window>,
    windows: Vec<Window>,
    short_windows: u64,
    failed_windows: u64,
    warmup: Option<Warmup>,
}

impl EnergyBench {
    pub fn new(meter: Box<dyn EnergyMeter>, clock: Arc<dyn Clock>, config: WindowConfig) -> Self {
        EnergyBench {
            meter,
            clock,
            config,
            state: None,
            last_window: None,
            windows: Vec::new(),
            short_windows: 0,
            failed_windows: 0,
            warmup: None,
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
        if self.meter.source() == MeterSource::None {
            // a meter of no energy that still reads is no meter either
            return self.meter.energy_j().and_then(|_| {
                Err(MeterError::Unavailable(
                    "this device has no energy meter".into(),
                ))
            });
        }
        self.meter.energy_j().map(|_| ())
    }

    /// The last window measured by [`EnergyBench::joules`].
    pub fn last_window(&self) -> Option<&Window> {
        self.last_window.as_ref()
    }

    /// Every window [`EnergyBench::joules`] measured since the last call: criterion's
    /// samples, to summarise as the sweep does (`joulebench_core::protocol::summarize`).
    pub fn take_windows(&mut self) -> Vec<Window> {
        std::mem::take(&mut self.windows)
    }

    /// What the warm-up of the last calibration came to.
    pub fn warmup(&self) -> Option<&Warmup> {
        self.warmup.as_ref()
    }

    /// Windows so far that were shorter than the config's window rule.
    pub fn short_windows(&self) -> u64 {
        self.short_windows
    }

    /// Windows that failed (the meter stalled or went backwards) and were measured
    /// again: skipped, never a sample.
    pub fn failed_windows(&self) -> u64 {
        self.failed_windows
    }

    /// Shorter than the config's window rule (max(1 s, 10 meter updates) by default).
    pub fn is_short(&self, window: &Window) -> bool {
        self.config
            .rules()
            .is_short(window.seconds, self.meter.update_period_s())
    }

    fn engine(&mut self) -> WindowEngine<'_> {
        let rules = self.config.rules();
        let state = self.state.take().unwrap_or_default();
        WindowEngine::resume(self.meter.as_mut(), self.clock.as_ref(), rules, state)
    }

    /// Find how many iterations make one block of the protocol's length (about
    /// 0.38 of a counter period, kept off simple fractions of it), then warm up as a
    /// sweep does: until power, pace and temperature have settled.
    pub fn calibrate<E, F>(&mut self, run: &mut F) -> Result<Calibration, BenchError<E>>
    where
        E: std::error::Error + 'static,
        F: FnMut(u64) -> Result<RunTiming, E>,
    {
        self.config
            .protocol
            .validate()
            .map_err(|e| BenchError::Config(e.to_string()))?;
        let period = if self.meter.source() == MeterSource::None {
            0.0
        } else {
            self.meter.update_period_s()
        };
        let block_s = block_seconds(period, self.window_target_s());
        let protocol = self.config.protocol.clone();
        let pace = self.pace_start();
        let start_s = self.clock.now_s();
        let mut engine = self.engine();
        let cal = engine.calibrate(run, block_s);
        let cal = match cal {
            Ok(c) => c,
            Err(e) => {
                self.state = Some(engine.into_state());
                return Err(e.into());
            }
        };
        // the protocol's warm-up runs a `BackendError` workload: carry the
        // caller's error through it and give it back as it was
        let mut failure: Option<E> = None;
        let warm = {
            let mut adapted = |n: u64| {
                run(n).map_err(|e| {
                    let message = e.to_string();
                    failure = Some(e);
                    BackendError::Device(message)
                })
            };
            warm_up(
                &mut engine,
                &mut adapted,
                cal.block_iterations,
                start_s,
                &protocol,
            )
        };
        self.state = Some(engine.into_state());
        self.pace(pace);
        match warm {
            Ok(w) => self.warmup = Some(w),
            Err(e) => {
                return Err(match (failure, e) {
                    (Some(w), _) => BenchError::Workload(w),
                    (None, ProtocolError::Meter(m)) => BenchError::Meter(m),
                    (None, e) => BenchError::UntrustedMeter(e.to_string()),
                })
            }
        }
        Ok(cal)
    }

    /// Time of `iterations` iterations, run in calibrated blocks: device time where
    /// the workload reports it, else its wall time. For criterion's `WallTime`
    /// measurement in `iter_custom`; the energy windows' own time is
    /// [`Window::seconds_per_op`].
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
    /// `iterations`. A window whose energy cannot be measured is an error, never
    /// a number.
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
        let window = self.window(iterations, cal, run);
        self.pace(pace);
        let window = window?;
        let per_op = window.joules_per_op(None).ok_or_else(|| {
            BenchError::Meter(MeterError::Unavailable(
                "the window has no energy: the meter gave time only".into(),
            ))
        })?;
        if self.is_short(&window) {
            self.short_windows += 1;
        }
        self.windows.push(window.clone());
        self.last_window = Some(window);
        Ok(per_op * iterations as f64)
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
        let window = engine.window(run, cal.block_iterations, min_iterations as f64);
        self.state = Some(engine.into_state());
        Ok(window?)
    }

    /// The routine of a `Criterion<Energy>` benchmark: each sample is one window
    /// (see [`EnergyBench::joules`]). criterion cannot skip a sample, so a window
    /// whose energy cannot be measured is measured again (up to
    /// [`WINDOW_ATTEMPTS`] times, each failure counted by
    /// [`EnergyBench::failed_windows`]); if every attempt fails, the benchmark
    /// stops with the meter's error as a panic criterion reports — never a sample
    /// of 0 J. Check the meter first ([`EnergyBench::check_meter`]) so a device
    /// without one never gets here.
    pub fn iter_joules<E, F>(
        &mut self,
        b: &mut Bencher<'_, crate::Energy>,
        cal: &Calibration,
        run: &mut F,
    ) where
        E: std::error::Error + 'static,
        F: FnMut(u64) -> Result<RunTiming, E>,
    {
        b.iter_custom(|iterations| {
            let mut last: Option<BenchError<E>> = None;
            for _ in 0..WINDOW_ATTEMPTS {
                match self.joules(iterations, cal, run) {
                    Ok(j) => return j,
                    Err(e @ BenchError::UntrustedMeter(_)) => {
                        self.failed_windows += 1;
                        tracing::warn!("energy window skipped and measured again: {e}");
                        last = Some(e);
                    }
                    Err(e) => {
                        last = Some(e);
                        break;
                    }
                }
            }
            let why = last.map_or_else(|| "no window was measured".to_owned(), |e| e.to_string());
            panic!("no energy sample: {why}");
        });
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
