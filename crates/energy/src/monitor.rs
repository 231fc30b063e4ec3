//! Energy of your own code, window by window: `begin_window("name")` …
//! `end_window("name")`, like Zeus's `ZeusMonitor`. Windows may nest and overlap,
//! since each one is only two points on one shared counter. The energy at the start
//! is interpolated between the meter's updates around it, the energy at the end
//! extrapolated from the last update at the power of the last update period (so
//! `end_window` never waits for the meter), and a window follows the same length
//! rule as the sweep's (`joulebench_core::window`, the one window engine). What
//! the monitor cannot do is keep the device busy: the work between the calls is yours.
//!
//! # How short a window can be
//!
//! NVML's energy counter changes about every 100 ms, and on A100/H100 the power
//! sensor behind it sees only about a quarter of the time (Yang et al., SC'24), so a
//! window of a few hundred milliseconds can be wrong by up to 65%. A window is
//! trustworthy only if it lasts at least **max(1 s, 10 meter updates)**
//! ([`EnergyMonitor::min_trustworthy_window_s`], docs/ARCHITECTURE.md §4.3). Shorter windows are
//! still measured, but their [`Measurement`] carries [`ValidityFlag::ShortWindow`]
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
//! kernel.run(20_000).map_err(|e| e.to_string())?;
//! let m = monitor.end_window("training-step").map_err(|e| e.to_string())?;
//! assert!(m.trustworthy && m.joules.is_some());
//! println!("{:.2} s, {:.1} J, {:.0} W", m.seconds, m.joules.unwrap_or(0.0), m.average_watts.unwrap_or(0.0));
//! # Ok::<(), String>(())
//! ```

use joulebench_core::meter::CounterUpdate;
use joulebench_core::window::{energy_at, energy_at_or_after_last, WindowRules};
use joulebench_core::{Clock, EnergyMeter, MeterError, MeterSource, ValidityFlag};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("no measurement window named '{0}' is open")]
    UnknownWindow(String),
    #[error("a measurement window named '{0}' is already open")]
    WindowAlreadyOpen(String),
    #[error(transparent)]
    Meter(#[from] MeterError),
}

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
    /// The shortest window whose energy can be trusted on this meter.
    pub min_trustworthy_window_s: f64,
    /// The ends were placed between the meter's updates (interpolated at the start,
    /// extrapolated at the end). When the meter had not updated before the window
    /// began (it was just opened), the raw readings at both ends are used instead,
    /// off by up to an update each.
    pub interpolated: bool,
    /// [`ValidityFlag::ShortWindow`] for a window under `min_trustworthy_window_s`,
    /// [`ValidityFlag::NoEnergy`] without a meter.
    pub flags: Vec<ValidityFlag>,
    /// No flags: the energy is measured over a long enough window.
    pub trustworthy: bool,
}

#[derive(Clone, Copy, Debug)]
struct WindowStart {
    seconds: f64,
    raw_joules: Option<f64>,
}

/// Windows over one device's energy meter and clock.
pub struct EnergyMonitor {
    meter: Box<dyn EnergyMeter>,
    clock: Arc<dyn Clock>,
    rules: WindowRules,
    open: HashMap<String, WindowStart>,
    /// The meter's updates since shortly before the oldest open window began.
    timeline: Vec<CounterUpdate>,
}

impl EnergyMonitor {
    /// Monitor `meter` with `clock` (the device's own: the simulated device runs
    /// on a virtual clock). A meter of source [`MeterSource::None`] is accepted:
    /// windows then measure time only.
    pub fn new(meter: Box<dyn EnergyMeter>, clock: Arc<dyn Clock>) -> EnergyMonitor {
        EnergyMonitor {
            meter,
            clock,
            rules: WindowRules::default(),
            open: HashMap::new(),
            timeline: Vec::new(),
        }
    }

    pub fn meter_source(&self) -> MeterSource {
        self.meter.source()
    }

    /// max(1 s, 10 × the meter's update period): docs/ARCHITECTURE.md §4.3's rule, the same one
    /// the sweep's windows follow.
    pub fn min_trustworthy_window_s(&self) -> f64 {
        self.rules.target_s(self.meter.update_period_s())
    }

    /// Names of the windows begun and not yet ended.
    pub fn open_windows(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.open.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    fn has_energy(&self) -> bool {
        self.meter.source() != MeterSource::None
    }

    /// Start a window. Any number may be open at once, under distinct names.
    pub fn begin_window(&mut self, name: &str) -> Result<(), MonitorError> {
        if self.open.contains_key(name) {
            return Err(MonitorError::WindowAlreadyOpen(name.to_owned()));
        }
        let raw_joules = if self.has_energy() {
            self.drain()?;
            Some(self.meter.energy_j()?)
        } else {
            None
        };
        let seconds = self.clock.now_s();
        self.open.insert(
            name.to_owned(),
            WindowStart {
                seconds,
                raw_joules,
            },
        );
        Ok(())
    }

    /// End the window `name` and return what it measured. An unknown name is an
    /// error, and leaves every open window open.
    pub fn end_window(&mut self, name: &str) -> Result<Measurement, MonitorError> {
        let start = *self
            .open
            .get(name)
            .ok_or_else(|| MonitorError::UnknownWindow(name.to_owned()))?;
        let end_s = self.clock.now_s();
        let seconds = end_s - start.seconds;
        let (joules, interpolated) = match start.raw_joules {
            None => (None, false),
            Some(raw_start) => {
                let raw_end = self.meter.energy_j()?;
                self.drain()?;
                match (
                    energy_at(&self.timeline, start.seconds),
                    energy_at_or_after_last(&self.timeline, end_s),
                ) {
                    (Some(a), Some(b)) => (Some(b - a), true),
                    _ => (Some(raw_end - raw_start), false),
                }
            }
        };
        self.open.remove(name);
        self.trim();
        let min_window_s = self.min_trustworthy_window_s();
        let mut flags = Vec::new();
        if self.rules.is_short(seconds, self.meter.update_period_s()) {
            flags.push(ValidityFlag::ShortWindow);
        }
        if joules.is_none() {
            flags.push(ValidityFlag::NoEnergy);
        }
        Ok(Measurement {
            name: name.to_owned(),
            seconds,
            joules,
            average_watts: joules.filter(|_| seconds > 0.0).map(|j| j / seconds),
            meter_source: self.meter.source(),
            min_trustworthy_window_s: min_window_s,
            interpolated,
            trustworthy: flags.is_empty(),
            flags,
        })
    }

    /// Give the meter back (to hand it to the sweep protocol, say).
    pub fn into_meter(self) -> Box<dyn EnergyMeter> {
        self.meter
    }

    fn drain(&mut self) -> Result<(), MeterError> {
        self.timeline.extend(self.meter.take_updates()?);
        Ok(())
    }

    /// Forget updates no open window needs: keep from the last one before the
    /// oldest open window began.
    fn trim(&mut self) {
        let oldest = self
            .open
            .values()
            .map(|w| w.seconds)
            .fold(f64::INFINITY, f64::min);
        let keep_from = self
            .timeline
            .iter()
            .rposition(|u| u.time_s <= oldest)
            .unwrap_or(self.timeline.len().saturating_sub(1));
        self.timeline.drain(..keep_from);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::SimDevice;
    use joulebench_core::meter::NoMeter;
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
        assert_idle_energy(&outer, 3.5);
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
        assert_idle_energy(&b, 3.0);
        assert_eq!(a.meter_source, MeterSource::Simulated);
        assert!(a.trustworthy && b.trustworthy, "{a:?} {b:?}");
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
    fn short_windows_are_flagged() {
        let (mut mon, clock) = sim();
        assert_eq!(mon.min_trustworthy_window_s(), 1.0);
        mon.begin_window("short").unwrap();
        idle(&clock, 0.3);
        let short = mon.end_window("short").unwrap();
        assert_eq!(short.flags, vec![ValidityFlag::ShortWindow]);
        assert!(!short.trustworthy);
        mon.begin_window("long").unwrap();
        idle(&clock, 1.0);
        let long = mon.end_window("long").unwrap();
        assert!(long.flags.is_empty() && long.trustworthy, "{long:?}");
    }

    /// A meter that updates every 0.5 s needs 10 updates: 5 s.
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
        let mut mon = EnergyMonitor::new(Box::new(Slow), clock.clone());
        assert_eq!(mon.min_trustworthy_window_s(), 5.0);
        mon.begin_window("w").unwrap();
        idle(&clock, 2.0);
        assert_eq!(
            mon.end_window("w").unwrap().flags,
            vec![ValidityFlag::ShortWindow]
        );
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

    #[test]
    fn average_power_follows_the_work() {
        use joulebench_core::{Backend, MatmulShape, Precision, Workload};
        let mut dev = SimDevice::open("sim-h100", 0, 7).unwrap();
        let w = Workload::Matmul(MatmulShape {
            batch: 1,
            m: 8192,
            n: 8192,
            k: 8192,
        });
        let mut mon = EnergyMonitor::new(Box::new(dev.meter), dev.clock.clone());
        let mut k = dev
            .backend
            .prepare("sim-vendor", Precision::Bf16, &w, 1)
            .unwrap();
        mon.begin_window("busy").unwrap();
        k.run(2000).unwrap();
        let m = mon.end_window("busy").unwrap();
        let watts = m.average_watts.unwrap();
        // a large bf16 GEMM runs the model at its 700 W limit, far above idle
        assert!(m.seconds > 1.0 && watts > 600.0 && watts < 710.0, "{m:?}");
    }
}
