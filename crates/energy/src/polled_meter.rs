//! One `EnergyMeter` for every meter whose readings come from a [`Poller`] (the NVML
//! counter, amdsmi's accumulator, hwmon's counter and power readings, RAPL): the
//! updates and telemetry the window engine takes are the poller's, the same way for
//! all of them. What differs — the source, the update period, telemetry read now,
//! why a counter misbehaved — each meter says through [`Polled`].

use crate::poller::Poller;
use joulebench_core::meter::{CounterUpdate, TelemetrySample};
use joulebench_core::{EnergyMeter, MeterError, MeterSource, Telemetry};

/// What a polled meter says about itself; its readings are the poller's.
pub trait Polled: Send + 'static {
    fn source(&self) -> MeterSource;
    /// How often the polled reading changes, seconds.
    fn update_period_s(&self) -> f64;
    /// See [`EnergyMeter::response_s`].
    fn response_s(&self) -> f64 {
        self.update_period_s()
    }
    /// Clocks, temperature, throttle reasons, enforced limit, now.
    fn telemetry(&mut self) -> Result<Telemetry, MeterError>;
    /// See [`EnergyMeter::fault_detail`].
    fn fault_detail(&mut self) -> Option<String> {
        None
    }
    /// See [`EnergyMeter::max_power_w`].
    fn max_power_w(&self) -> Option<f64> {
        None
    }
    /// What [`EnergyMeter::energy_j`] says before the poller's first reading.
    fn not_read_yet(&self) -> String;
    /// The cumulative energy now: by default the poller's latest reading. It takes
    /// no updates from the poller, so the window engine still sees every change.
    fn energy_j(&mut self, poller: &Poller) -> Result<f64, MeterError> {
        if let Some(e) = poller.error() {
            return Err(e);
        }
        poller
            .latest()
            .map(|u| u.joules)
            .ok_or_else(|| MeterError::Unavailable(self.not_read_yet()))
    }
}

/// A meter polled in a thread of its own (see the module comment).
pub struct PolledMeter<P> {
    parts: P,
    poller: Poller,
}

impl<P: Polled> PolledMeter<P> {
    pub(crate) fn new(parts: P, poller: Poller) -> Self {
        PolledMeter { parts, poller }
    }

    /// What this meter is beyond its poller.
    pub(crate) fn parts(&self) -> &P {
        &self.parts
    }
}

impl<P: Polled> EnergyMeter for PolledMeter<P> {
    fn source(&self) -> MeterSource {
        self.parts.source()
    }
    fn energy_j(&mut self) -> Result<f64, MeterError> {
        self.parts.energy_j(&self.poller)
    }
    fn update_period_s(&self) -> f64 {
        self.parts.update_period_s()
    }
    fn response_s(&self) -> f64 {
        self.parts.response_s()
    }
    fn take_updates(&mut self) -> Result<Vec<CounterUpdate>, MeterError> {
        self.poller.take_updates()
    }
    fn take_telemetry(&mut self) -> Result<Vec<TelemetrySample>, MeterError> {
        Ok(self.poller.take_telemetry())
    }
    fn telemetry(&mut self) -> Result<Telemetry, MeterError> {
        self.parts.telemetry()
    }
    fn fault_detail(&mut self) -> Option<String> {
        self.parts.fault_detail()
    }
    fn max_power_w(&self) -> Option<f64> {
        self.parts.max_power_w()
    }
}
