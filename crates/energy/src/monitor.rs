//! Energy of your own code, window by window: `begin_window("name")` …
//! `end_window("name")`, like Zeus's `ZeusMonitor`. Windows may nest and overlap,
//! since each one is only two moments on one shared counter. The monitor is the
//! window engine's interval window (`joulebench_core::window::IntervalMeter`,
//! docs/ARCHITECTURE.md §4.8): the counter's update times are fitted to its
//! regular period, each end is interpolated between the updates around it, and
//! `end_window` waits for the first update after the end (at most an update period,
//! on the device's clock) instead of guessing past the last one. What the monitor
//! cannot do is keep the device busy: the work between the calls is yours, and the
//! edges of a window — where the board's power rises, falls, and reaches the
//! counter late — are where its error comes from.
//!
//! # How short a window can be
//!
//! NVML's energy counter changes about every 100 ms, from a power sensor that on
//! A100/H100 sees only about a quarter of the time (Yang et al., SC'24), and it books
//! a change of power up to a period late. A window's error is therefore about a
//! period's worth of the power step at its edges, over its length: docs/kernel-developers.md's
//! "In your own code" table gives it, measured on the simulated H200 against its
//! true energy (`crates/energy/tests/monitor_truth_tests.rs`), for windows of 0.1 s,
//! 1 s and 10 s. A window shorter than [`EnergyMonitor::min_trustworthy_window_s`]
//! is still measured, but its [`Measurement`] carries [`ValidityFlag::ShortWindow`]
//! and `trustworthy: false`. To measure something short, run it many times back to
//! back inside one window and divide.
//!
//! The device must have finished the window's work when `end_window` is called:
//! wait for the queue or stream (every `PreparedKernel::run` does) before ending it.
//!
//! ```
//! use joulebench_energy::monitor::EnergyMonitor;
//! use joulebench_energy::sim::SimDevice;
//! use joulebench_core::{Backend, MatmulShape, Precision, Workload};
//!
//! let mut dev = SimDevice::open("sim-h100", 0, 42).map_err(|e| e.to_string())?;
//! let mut monitor = EnergyMonitor::new(Box::new(dev.meter), dev.clock.clone());
//! let w = Workload::Matmul(MatmulShape { batch: 1, m: 4096, n: 4096, k: 4096 });
//! let mut kernel = dev
//!     .backend
//!     .prepare("sim-vendor", Precision::Bf16, &w, 42)
//!     .map_err(|e| e.to_string())?;
//!
//! monitor.begin_window("training-step").map_err(|e| e.to_string())?;
//! kernel.run(50_000).map_err(|e| e.to_string())?;
//! let m = monitor.end_window("training-step").map_err(|e| e.to_string())?;
//! match (m.joules, m.average_watts) {
//!     (Some(j), Some(w)) if m.trustworthy => println!("{:.2} s, {j:.1} J, {w:.0} W", m.seconds),
//!     _ => println!("{:.2} s; energy not trustworthy: {:?}", m.seconds, m.flags),
//! }
//! # Ok::<(), String>(())
//! ```

use joulebench_core::protocol::ProtocolConfig;
use joulebench_core::window::{IntervalMeter, UpdateTimes, WindowEnds, WindowError};
use joulebench_core::{Clock, EnergyMeter, MeterError, MeterSource, ValidityFlag};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("no measurement window named '{0}' is open")]
    UnknownWindow(String),
    #[error("a measurement window named '{0}' is already open")]
    WindowAlreadyOpen(String),
    #[error(transparent)]
    Meter(#[from] MeterError),
    /// The counter stalled or went backwards: the window has no energy figure.
    #[error("{0}")]
    UntrustedMeter(String),
}

impl From<WindowError<Infallible>> for MonitorError {
    fn from(e: WindowError<Infallible>) -> Self {
        match e {
            WindowError::Meter(m) => MonitorError::Meter(m),
            WindowError::Work(never) => match never {},
            e => MonitorError::UntrustedMeter(e.to_string()),
        }
    }
}

/// The monitor's bound, in counter updates: its windows are trusted from
/// max(`min_window_s`, this many updates) up. Measured on the simulated H200
/// (docs/kernel-developers.md, "In your own code"): a window's error is about a period of the power
/// step at its two edges over its length.
pub const MONITOR_MIN_COUNTER_UPDATES: u32 = joulebench_core::window::INTERVAL_MIN_COUNTER_UPDATES;

/// What one window measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    pub name: String,
    /// Time between `begin_window` and `end_window`, from the device's clock.
    pub seconds: f64,
    /// Energy the meter counted over the window (the whole board, idle power
    /// included); `None` on a device without an energy meter.
    pub joules: Option<f64>,
    /// `joules / seconds`.
    pub average_watts: Option<f64>,
    pub meter_source: MeterSource,
    /// The shortest window whose energy the monitor trusts on this meter.
    pub min_trustworthy_window_s: f64,
    /// Both ends placed between the meter's updates around them. `false` when the
    /// meter had not updated before the window began (it had just opened: the
    /// start is extrapolated back), or when waiting for the update after the end
    /// was turned off (the end is extrapolated forward).
    pub interpolated: bool,
    /// How the ends sit on the counter's timeline.
    pub ends: WindowEnds,
    /// How long `end_window` waited for the update after the end.
    pub waited_s: f64,
    /// How the counter's update times were taken.
    pub update_times: UpdateTimes,
    /// [`ValidityFlag::ShortWindow`] for a window under `min_trustworthy_window_s`,
    /// [`ValidityFlag::NoEnergy`] without a meter.
    pub flags: Vec<ValidityFlag>,
    /// No flags: the energy is measured over a long enough window.
    pub trustworthy: bool,
}

/// Windows over one device's energy meter and clock.
pub struct EnergyMonitor {
    windows: IntervalMeter,
    open: HashMap<String, f64>,
}

impl EnergyMonitor {
    /// Monitor `meter` with `clock` (the device's own: the simulated device runs
    /// on a virtual clock) under the protocol's default window rules. A meter of
    /// source [`MeterSource::None`] is accepted: windows then measure time only.
    pub fn new(meter: Box<dyn EnergyMeter>, clock: Arc<dyn Clock>) -> EnergyMonitor {
        EnergyMonitor::with_config(meter, clock, &ProtocolConfig::default())
    }

    /// As [`EnergyMonitor::new`], with the window rules of `config` (the shortest
    /// window is the longer of its `min_window_s` and the monitor's own bound).
    pub fn with_config(
        meter: Box<dyn EnergyMeter>,
        clock: Arc<dyn Clock>,
        config: &ProtocolConfig,
    ) -> EnergyMonitor {
        let rules = config.window_rules().for_intervals();
        EnergyMonitor {
            windows: IntervalMeter::new(meter, clock, rules),
            open: HashMap::new(),
        }
    }

    /// With `false`, `end_window` returns at once and extrapolates the end from the
    /// last update (`interpolated: false`) instead of waiting for the next one.
    pub fn set_wait_for_update(&mut self, wait: bool) {
        self.windows.set_wait_for_update(wait);
    }

    /// Trust the meter's update times as observed (for tests that show what the
    /// fit to the counter's period does).
    pub fn set_grid_fit(&mut self, fit: bool) {
        self.windows.set_grid_fit(fit);
    }

    pub fn meter_source(&self) -> MeterSource {
        self.windows.meter_source()
    }

    /// The shortest window the monitor trusts on this meter:
    /// max(1 s, [`MONITOR_MIN_COUNTER_UPDATES`] updates) by default.
    pub fn min_trustworthy_window_s(&self) -> f64 {
        self.windows.min_window_s()
    }

    /// Names of the windows begun and not yet ended.
    pub fn open_windows(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.open.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// Start a window. Any number may be open at once, under distinct names.
    pub fn begin_window(&mut self, name: &str) -> Result<(), MonitorError> {
        if self.open.contains_key(name) {
            return Err(MonitorError::WindowAlreadyOpen(name.to_owned()));
        }
        if self.windows.has_energy() {
            // a meter that cannot read at all says so now, not at the end
            self.windows.check_meter()?;
        }
        let begin_s = self.windows.mark()?;
        self.open.insert(name.to_owned(), begin_s);
        Ok(())
    }

    /// End the window `name` and return what it measured, once the counter has
    /// updated after its end. An unknown name is an error, and leaves every open
    /// window open.
    pub fn end_window(&mut self, name: &str) -> Result<Measurement, MonitorError> {
        let begin_s = *self
            .open
            .get(name)
            .ok_or_else(|| MonitorError::UnknownWindow(name.to_owned()))?;
        let end_s = self.windows.clock().now_s();
        let measured = self.windows.measure(begin_s, end_s);
        self.open.remove(name);
        self.trim();
        let e = measured?;
        let seconds = e.seconds();
        let mut flags = Vec::new();
        if self.windows.has_energy() && self.windows.is_short(seconds) {
            flags.push(ValidityFlag::ShortWindow);
        }
        if e.joules.is_none() {
            flags.push(ValidityFlag::NoEnergy);
        }
        Ok(Measurement {
            name: name.to_owned(),
            seconds,
            joules: e.joules,
            average_watts: e.joules.filter(|_| seconds > 0.0).map(|j| j / seconds),
            meter_source: self.windows.meter_source(),
            min_trustworthy_window_s: self.min_trustworthy_window_s(),
            interpolated: e.joules.is_some() && e.ends == WindowEnds::Interpolated,
            ends: e.ends,
            waited_s: e.waited_s,
            update_times: self.windows.update_times(),
            trustworthy: flags.is_empty(),
            flags,
        })
    }

    /// Give the meter back (to hand it to the sweep protocol, say).
    pub fn into_meter(self) -> Box<dyn EnergyMeter> {
        self.windows.into_meter()
    }

    /// Forget updates no open window needs.
    fn trim(&mut self) {
        let oldest = self.open.values().copied().fold(f64::INFINITY, f64::min);
        let keep_from = if oldest.is_finite() {
            oldest
        } else {
            self.windows.clock().now_s()
        };
        self.windows.forget_before(keep_from);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::SimDevice;
    use joulebench_core::meter::{CounterUpdate, NoMeter};
    use std::time::Duration;

    /// The simulated H100 idles at 120 W; its counter reads whole mJ every 100 ms
    /// (an ideal one: no gain error, no late stamps, so idle energy is exact).
    fn sim() -> (EnergyMonitor, Arc<dyn Clock>) {
        let profile = crate::sim::profile("sim-h100")
            .expect("sim-h100 is a built-in profile")
            .with_imperfections(crate::sim::Imperfections::IDEAL);
        let dev = SimDevice::open_profile(profile, 0, 1);
        let clock: Arc<dyn Clock> = dev.clock;
        (
            EnergyMonitor::new(Box::new(dev.meter), clock.clone()),
            clock,
        )
    }

    fn idle(clock: &Arc<dyn Clock>, seconds: f64) {
        clock.sleep(Duration::from_secs_f64(seconds));
    }

    /// Idle energy over `seconds`: interpolated ends make it exact at idle (to a mJ).
    fn assert_idle_energy(m: &Measurement, seconds: f64) {
        assert!((m.seconds - seconds).abs() < 1e-9, "{m:?}");
        let j = m.joules.expect("the simulated device has a meter");
        assert!(m.interpolated, "{m:?}");
        assert!((j - 120.0 * seconds).abs() <= 0.01, "{m:?}");
    }

    #[test]
    fn nested_windows_measure_their_own_spans() {
        let (mut mon, clock) = sim();
        idle(&clock, 0.35);
        mon.begin_window("outer").unwrap();
        idle(&clock, 1.0);
        mon.begin_window("inner").unwrap();
        idle(&clock, 2.0);
        let inner = mon.end_window("inner").unwrap();
        idle(&clock, 0.5);
        let outer = mon.end_window("outer").unwrap();
        assert_idle_energy(&inner, 2.0);
        assert_idle_energy(&outer, 3.5 + inner.waited_s);
        assert!(outer.joules > inner.joules);
        assert!(mon.open_windows().is_empty());
    }

    #[test]
    fn overlapping_windows_end_in_any_order() {
        let (mut mon, clock) = sim();
        idle(&clock, 0.25);
        mon.begin_window("a").unwrap();
        idle(&clock, 1.5);
        mon.begin_window("b").unwrap();
        idle(&clock, 1.5);
        let a = mon.end_window("a").unwrap();
        idle(&clock, 1.5);
        let b = mon.end_window("b").unwrap();
        assert_idle_energy(&a, 3.0);
        assert_idle_energy(&b, 3.0 + a.waited_s);
        assert_eq!(a.meter_source, MeterSource::Simulated);
    }

    #[test]
    fn the_end_waits_for_the_next_update_or_says_it_did_not() {
        let (mut mon, clock) = sim();
        idle(&clock, 0.25);
        mon.begin_window("w").unwrap();
        idle(&clock, 1.23);
        let m = mon.end_window("w").unwrap();
        assert!(m.waited_s > 0.0 && m.waited_s <= 0.1, "{m:?}");
        assert_eq!(m.ends, WindowEnds::Interpolated);
        mon.set_wait_for_update(false);
        mon.begin_window("now").unwrap();
        idle(&clock, 1.23);
        let m = mon.end_window("now").unwrap();
        assert_eq!((m.waited_s, m.ends), (0.0, WindowEnds::EndExtrapolated));
        assert!(!m.interpolated);
    }

    #[test]
    fn unknown_and_duplicate_names_are_errors() {
        let (mut mon, _clock) = sim();
        assert!(matches!(
            mon.end_window("never-begun"),
            Err(MonitorError::UnknownWindow(n)) if n == "never-begun"
        ));
        mon.begin_window("w").unwrap();
        assert!(matches!(
            mon.begin_window("w"),
            Err(MonitorError::WindowAlreadyOpen(_))
        ));
        // the failed calls left "w" open and intact
        assert_eq!(mon.open_windows(), vec!["w"]);
        mon.end_window("w").unwrap();
        assert!(matches!(
            mon.end_window("w"),
            Err(MonitorError::UnknownWindow(_))
        ));
    }

    #[test]
    fn windows_under_the_bound_are_flagged() {
        let (mut mon, clock) = sim();
        let bound = mon.min_trustworthy_window_s();
        assert_eq!(bound, 0.1 * MONITOR_MIN_COUNTER_UPDATES as f64);
        mon.begin_window("short").unwrap();
        idle(&clock, 0.3 * bound);
        let short = mon.end_window("short").unwrap();
        assert_eq!(short.flags, vec![ValidityFlag::ShortWindow]);
        assert!(!short.trustworthy);
        mon.begin_window("long").unwrap();
        idle(&clock, bound);
        let long = mon.end_window("long").unwrap();
        assert!(long.flags.is_empty() && long.trustworthy, "{long:?}");
    }

    /// A meter that updates every 0.5 s needs 100 updates: 50 s.
    #[test]
    fn slow_meters_need_longer_windows() {
        struct Slow;
        impl EnergyMeter for Slow {
            fn source(&self) -> MeterSource {
                MeterSource::NvmlSampled
            }
            fn energy_j(&mut self) -> Result<f64, MeterError> {
                Ok(0.0)
            }
            fn update_period_s(&self) -> f64 {
                0.5
            }
            fn take_updates(&mut self) -> Result<Vec<CounterUpdate>, MeterError> {
                Ok(Vec::new())
            }
        }
        let (_, clock) = sim();
        let mon = EnergyMonitor::new(Box::new(Slow), clock.clone());
        assert_eq!(
            mon.min_trustworthy_window_s(),
            0.5 * MONITOR_MIN_COUNTER_UPDATES as f64
        );
    }

    #[test]
    fn a_stuck_counter_is_an_error_not_zero_joules() {
        let (_, clock) = sim();
        let mut mon = EnergyMonitor::new(
            Box::new(joulebench_core::meter_suite::StuckMeter),
            clock.clone(),
        );
        mon.begin_window("w").unwrap();
        idle(&clock, 2.0);
        let err = mon.end_window("w").unwrap_err();
        assert!(matches!(err, MonitorError::UntrustedMeter(_)), "{err}");
        assert!(err.to_string().contains("did not update"), "{err}");
        assert!(mon.open_windows().is_empty());
    }

    #[test]
    fn without_a_meter_time_is_measured_and_energy_is_not() {
        let (_, clock) = sim();
        let meter = NoMeter {
            reason: "no NVML".into(),
        };
        let mut mon = EnergyMonitor::new(Box::new(meter), clock.clone());
        mon.begin_window("w").unwrap();
        idle(&clock, 2.0);
        let m = mon.end_window("w").unwrap();
        assert!((m.seconds - 2.0).abs() < 1e-9);
        assert_eq!((m.joules, m.average_watts), (None, None));
        assert_eq!(m.flags, vec![ValidityFlag::NoEnergy]);
        assert!(!m.trustworthy);
    }
}
