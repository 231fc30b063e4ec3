//! A device's meter with the host's RAPL meter beside it, so each window records
//! what the node spent, not only the GPU board. The window engine still follows the
//! device's meter alone; the host's energy over each window is interpolated from
//! RAPL's own readings at the window's two ends (`EnergyMeter::host_energy_between`).

use crate::rapl::{RaplError, RaplMeter};
use crate::sysfs::Sysfs;
use joulebench_core::meter::{CounterUpdate, MeterAgreement, TelemetrySample};
use joulebench_core::window::{energy_at, energy_at_or_after_last};
use joulebench_core::{EnergyMeter, HostMeterInfo, MeterError, MeterSource, Telemetry};
use std::collections::VecDeque;

/// Host readings kept for interpolation: longer than any window and its lead-in.
const KEEP_S: f64 = 300.0;

/// A window's end may lie this far past the last host reading and still be
/// extrapolated at the host's latest power (RAPL updates about every millisecond, so
/// this is a few readings late at most, under 1% of a one-second window).
const EXTRAPOLATE_S: f64 = 0.02;

/// How long a window's end waits for the host's polling thread to read past it: on
/// a loaded host that thread runs late, while RAPL itself has the reading.
const CATCH_UP: std::time::Duration = std::time::Duration::from_millis(100);

/// See the module comment.
pub struct HostMeter {
    device: Box<dyn EnergyMeter>,
    host: RaplMeter,
    readings: VecDeque<CounterUpdate>,
    /// Why host energy stopped, once it has.
    host_error: Option<String>,
}

impl HostMeter {
    pub fn new(device: Box<dyn EnergyMeter>, host: RaplMeter) -> HostMeter {
        HostMeter {
            device,
            host,
            readings: VecDeque::new(),
            host_error: None,
        }
    }

    /// Why host energy stopped mid-run, if it did.
    pub fn host_error(&self) -> Option<&str> {
        self.host_error.as_deref()
    }

    fn drain_host(&mut self) {
        if self.host_error.is_some() {
            return;
        }
        match self.host.take_updates() {
            Ok(ups) => self.readings.extend(ups),
            Err(e) => {
                // host energy is a side figure: the GPU's measurement goes on without it
                self.host_error = Some(e.to_string());
                self.readings.clear();
            }
        }
        if let Some(last) = self.readings.back().map(|u| u.time_s) {
            while self
                .readings
                .front()
                .is_some_and(|u| u.time_s < last - KEEP_S)
            {
                self.readings.pop_front();
            }
        }
    }
}

/// Wraps `device` with the host's RAPL meter when RAPL can be read; otherwise hands
/// `device` back with the reason, for the user to read.
pub fn with_host_energy(
    device: Box<dyn EnergyMeter>,
    fs: &Sysfs,
) -> (Box<dyn EnergyMeter>, Result<String, RaplError>) {
    match RaplMeter::open(fs) {
        Ok(host) => {
            let note = format!("host energy: RAPL ({})", host.describe());
            (Box::new(HostMeter::new(device, host)), Ok(note))
        }
        Err(e) => (device, Err(e)),
    }
}

impl EnergyMeter for HostMeter {
    fn source(&self) -> MeterSource {
        self.device.source()
    }
    fn energy_j(&mut self) -> Result<f64, MeterError> {
        self.device.energy_j()
    }
    fn update_period_s(&self) -> f64 {
        self.device.update_period_s()
    }
    fn response_s(&self) -> f64 {
        self.device.response_s()
    }
    fn take_updates(&mut self) -> Result<Vec<CounterUpdate>, MeterError> {
        self.drain_host();
        self.device.take_updates()
    }
    fn take_telemetry(&mut self) -> Result<Vec<TelemetrySample>, MeterError> {
        self.device.take_telemetry()
    }
    fn telemetry(&mut self) -> Result<Telemetry, MeterError> {
        self.device.telemetry()
    }
    fn take_agreement(&mut self) -> Option<MeterAgreement> {
        self.device.take_agreement()
    }
    fn fault_detail(&mut self) -> Option<String> {
        self.device.fault_detail()
    }
    fn max_power_w(&self) -> Option<f64> {
        self.device.max_power_w()
    }
    fn host_meter(&self) -> Option<HostMeterInfo> {
        Some(self.host.info())
    }

    fn host_energy_between(&mut self, from_s: f64, to_s: f64) -> Option<f64> {
        self.drain_host();
        let deadline = std::time::Instant::now() + CATCH_UP;
        while self.host_error.is_none()
            && self.readings.back().is_none_or(|u| u.time_s < to_s)
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(2));
            self.drain_host();
        }
        let readings = self.readings.make_contiguous();
        let a = energy_at(readings, from_s)?;
        let b = match energy_at(readings, to_s) {
            Some(b) => b,
            None if readings.last()?.time_s >= to_s - EXTRAPOLATE_S => {
                energy_at_or_after_last(readings, to_s)?
            }
            None => return None,
        };
        // a drop inside the interval makes it worthless, as for the GPU's counter
        let dropped = readings
            .windows(2)
            .any(|w| w[1].time_s > from_s && w[0].time_s < to_s && w[1].joules < w[0].joules);
        (!dropped && b >= a).then_some(b - a)
    }
}
