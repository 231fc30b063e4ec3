//! The primary meter: NVML's total-energy counter (mJ, Volta and newer). Windows must
//! span many counter updates (docs/ARCHITECTURE.md §4.3), so the update period is measured when
//! the meter opens — it differs between parts and drivers — instead of assumed.

use super::{read_telemetry, NvmlDevice, NvmlError, ReferenceClocksMhz};
use crate::polled_meter::{Polled, PolledMeter};
use crate::poller::{PollConfig, PolledSource, Poller};
use joulebench_core::{MeterError, MeterSource, Telemetry};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How the update period is probed: poll the counter until it has changed
/// `changes` times, for at most `max_wait`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PeriodProbe {
    pub poll_interval: Duration,
    pub changes: u32,
    pub max_wait: Duration,
    /// Used when the counter changes fewer than twice within `max_wait`.
    pub fallback_s: f64,
}

impl Default for PeriodProbe {
    fn default() -> Self {
        PeriodProbe {
            poll_interval: Duration::from_millis(1),
            changes: 5,
            max_wait: Duration::from_secs(2),
            // NVML's documented ~100 ms.
            fallback_s: 0.1,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UpdatePeriod {
    pub seconds: f64,
    /// False when `seconds` is the fallback, not a measurement.
    pub measured: bool,
    pub changes_seen: u32,
}

/// Time between counter changes, averaged over up to `probe.changes` changes. The
/// first change is a boundary, not a period: timing starts there.
pub fn measure_update_period(
    device: &dyn NvmlDevice,
    probe: &PeriodProbe,
) -> Result<UpdatePeriod, NvmlError> {
    let start = Instant::now();
    let mut last = device.total_energy_mj()?;
    let mut change_times: Vec<Instant> = Vec::new();
    while change_times.len() < probe.changes as usize + 1 && start.elapsed() < probe.max_wait {
        std::thread::sleep(probe.poll_interval);
        let v = device.total_energy_mj()?;
        if v != last {
            change_times.push(Instant::now());
            last = v;
        }
    }
    let changes_seen = change_times.len().saturating_sub(1) as u32;
    match (change_times.first(), change_times.last()) {
        (Some(first), Some(last)) if changes_seen >= 1 => Ok(UpdatePeriod {
            seconds: last.duration_since(*first).as_secs_f64() / changes_seen as f64,
            measured: true,
            changes_seen,
        }),
        _ => Ok(UpdatePeriod {
            seconds: probe.fallback_s,
            measured: false,
            changes_seen,
        }),
    }
}

/// The counter as the poller reads it: mJ to J, and a counter that goes
/// backwards is an error (a driver reload or GPU reset restarts it; any window
/// across that would be wrong, so the meter stops rather than guess).
struct CounterSource {
    device: Arc<dyn NvmlDevice>,
    reference: ReferenceClocksMhz,
    last_mj: Option<u64>,
}

impl CounterSource {
    fn read_j(&mut self) -> Result<f64, MeterError> {
        let mj = self
            .device
            .total_energy_mj()
            .map_err(|e| e.into_meter_error("reading the NVML energy counter"))?;
        if let Some(prev) = self.last_mj {
            if mj < prev {
                return Err(MeterError::Read(format!(
                    "the NVML energy counter went backwards ({prev} mJ → {mj} mJ): the driver was reloaded or the GPU reset"
                )));
            }
        }
        self.last_mj = Some(mj);
        Ok(mj as f64 / 1000.0)
    }
}

impl PolledSource for CounterSource {
    fn energy_j(&mut self) -> Result<Option<f64>, MeterError> {
        self.read_j().map(Some)
    }

    fn telemetry(&mut self) -> Result<Telemetry, MeterError> {
        let power_w = current_power_w(self.device.as_ref());
        read_telemetry(self.device.as_ref(), &self.reference, power_w)
    }
}

/// NVML's energy counter, polled in a thread of its own (see `crate::poller`),
/// with telemetry sampled while the work runs.
pub type CounterMeter = PolledMeter<Counter>;

/// What [`CounterMeter`] is besides its poller.
pub struct Counter {
    device: Arc<dyn NvmlDevice>,
    period: UpdatePeriod,
    /// Twice the highest limit the board takes: a counter step implying more is
    /// rejected; `None` where the limits cannot be read.
    max_w: Option<f64>,
    reference: ReferenceClocksMhz,
    /// Read for [`EnergyMeter::energy_j`](joulebench_core::EnergyMeter::energy_j):
    /// the counter now, not the poller's last sight of it.
    direct: CounterSource,
}

impl CounterMeter {
    /// Opens the counter and measures its update period (under a second on a
    /// device whose counter updates every 100 ms; at most `PeriodProbe::max_wait`).
    pub fn open(device: Arc<dyn NvmlDevice>) -> Result<Self, MeterError> {
        Self::with_probe(device, &PeriodProbe::default())
    }

    pub fn with_probe(
        device: Arc<dyn NvmlDevice>,
        probe: &PeriodProbe,
    ) -> Result<Self, MeterError> {
        Self::with_polling(device, probe, PollConfig::default())
    }

    /// As [`CounterMeter::with_probe`], polling the counter and telemetry as `poll` says.
    pub fn with_polling(
        device: Arc<dyn NvmlDevice>,
        probe: &PeriodProbe,
        poll: PollConfig,
    ) -> Result<Self, MeterError> {
        let period = measure_update_period(device.as_ref(), probe)
            .map_err(|e| e.into_meter_error("NVML energy counter"))?;
        let reference = device.reference_clocks_mhz().unwrap_or_default();
        let source = |device: &Arc<dyn NvmlDevice>| CounterSource {
            device: device.clone(),
            reference,
            last_mj: None,
        };
        let poller = Poller::start("joulebench-nvml-counter", Box::new(source(&device)), poll)?;
        let max_w = device
            .power_limits_mw()
            .ok()
            .filter(|l| l.max_mw > 0)
            .map(|l| 2.0 * l.max_mw as f64 / 1000.0);
        let parts = Counter {
            direct: source(&device),
            device,
            period,
            max_w,
            reference,
        };
        Ok(PolledMeter::new(parts, poller))
    }

    pub fn update_period(&self) -> UpdatePeriod {
        self.parts().period
    }
}

impl Polled for Counter {
    fn source(&self) -> MeterSource {
        MeterSource::NvmlCounter
    }

    fn update_period_s(&self) -> f64 {
        self.period.seconds
    }

    fn telemetry(&mut self) -> Result<Telemetry, MeterError> {
        let power_w = current_power_w(self.device.as_ref());
        read_telemetry(self.device.as_ref(), &self.reference, power_w)
    }

    fn not_read_yet(&self) -> String {
        "the NVML energy counter was not read yet".into()
    }

    fn energy_j(&mut self, _poller: &Poller) -> Result<f64, MeterError> {
        self.direct.read_j()
    }

    fn max_power_w(&self) -> Option<f64> {
        self.max_w
    }
}

/// Instant power where the driver has the field, else nvmlDeviceGetPowerUsage.
pub(crate) fn current_power_w(device: &dyn NvmlDevice) -> Option<f64> {
    device
        .power_fields_mw()
        .ok()
        .and_then(|f| f.instant_mw)
        .or_else(|| device.power_usage_mw().ok())
        .map(|mw| mw as f64 / 1000.0)
}
