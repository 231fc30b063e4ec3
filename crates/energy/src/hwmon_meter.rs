//! GPU meters read from the kernel's hwmon files (Documentation/hwmon/sysfs-interface):
//! the `energy1_input` counter in µJ where the driver has one (Intel's `xe` and
//! `i915`), else `power1_input` or `power1_average` in µW sampled and integrated
//! (`amdgpu` without amdsmi). Both poll in a thread of their own (`crate::poller`).

use crate::nvml::TrapezoidIntegrator;
use crate::polled_meter::{Polled, PolledMeter};
use crate::poller::{PollConfig, PolledSource, Poller};
use crate::sysfs::hwmon::HwmonDevice;
use crate::sysfs::{Sysfs, SysfsError};
use crate::wrapping_counter::{
    measure_change_period, CounterHealth, WrappingCounter, MAX_PLAUSIBLE_W,
};
use joulebench_core::clock::monotonic_s;
use joulebench_core::{MeterError, MeterSource, Telemetry};
use std::time::Duration;

/// How long a counter is watched for changes when a meter opens.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CounterProbe {
    pub poll_every: Duration,
    pub changes: u32,
    pub max_wait: Duration,
}

impl Default for CounterProbe {
    fn default() -> Self {
        CounterProbe {
            poll_every: Duration::from_millis(1),
            changes: 5,
            max_wait: Duration::from_secs(2),
        }
    }
}

fn meter_error(e: SysfsError) -> MeterError {
    match e {
        SysfsError::PermissionDenied { path } => MeterError::Unavailable(format!(
            "{}: permission denied; run as root or grant read access to it",
            path.display()
        )),
        SysfsError::Missing { .. } => MeterError::Unavailable(e.to_string()),
        e => MeterError::Read(e.to_string()),
    }
}

/// Clocks, temperature and the power limit from the same hwmon directory.
#[derive(Clone, Debug)]
pub(crate) struct HwmonTelemetry {
    fs: Sysfs,
    hwmon: HwmonDevice,
}

impl HwmonTelemetry {
    pub(crate) fn new(fs: &Sysfs, hwmon: &HwmonDevice) -> Self {
        HwmonTelemetry {
            fs: fs.clone(),
            hwmon: hwmon.clone(),
        }
    }

    /// What the directory reports now; missing files stay empty.
    pub(crate) fn read(&self, power_w: Option<f64>) -> Telemetry {
        let read = |name: &str| self.fs.read_u64(&self.hwmon.attr(name)).ok();
        // junction (amdgpu temp2) or package (xe temp2) before edge / card (temp1)
        let temp_mc = read("temp2_input").or_else(|| read("temp1_input"));
        let limit_uw = read("power1_cap").or_else(|| read("power1_max"));
        Telemetry {
            sm_clock_mhz: read("freq1_input").map(|hz| (hz / 1_000_000) as u32),
            mem_clock_mhz: read("freq2_input").map(|hz| (hz / 1_000_000) as u32),
            temperature_c: temp_mc.map(|mc| (mc / 1000) as u32),
            enforced_power_limit_w: limit_uw.filter(|uw| *uw > 0).map(|uw| uw as f64 / 1e6),
            power_w,
            ..Telemetry::default()
        }
    }
}

// ---------------------------------------------------------------- energy1_input

struct EnergySource {
    fs: Sysfs,
    hwmon: HwmonDevice,
    counter: WrappingCounter,
    telemetry: HwmonTelemetry,
    /// The last telemetry reading's (time, joules): power is the energy between two.
    last: Option<(f64, f64)>,
}

impl PolledSource for EnergySource {
    fn energy_j(&mut self) -> Result<Option<f64>, MeterError> {
        let uj = self
            .fs
            .read_u64(&self.hwmon.attr("energy1_input"))
            .map_err(meter_error)?;
        self.counter.update(uj, monotonic_s());
        Ok(self.counter.joules())
    }

    fn telemetry(&mut self) -> Result<Telemetry, MeterError> {
        let now = (monotonic_s(), self.counter.joules().unwrap_or(0.0));
        let power_w = self
            .last
            .filter(|(t, _)| now.0 > *t)
            .map(|(t, j)| (now.1 - j) / (now.0 - t))
            // across a drop the rate means nothing
            .filter(|w| *w >= 0.0);
        self.last = Some(now);
        Ok(self.telemetry.read(power_w))
    }
}

/// A hwmon `energy1_input` counter (µJ, 64-bit): Intel GPUs under `xe` or `i915`.
pub type HwmonEnergyMeter = PolledMeter<HwmonEnergy>;

/// What [`HwmonEnergyMeter`] is besides its poller.
pub struct HwmonEnergy {
    hwmon: HwmonDevice,
    period_s: f64,
    /// The most the board can draw: twice its highest power limit the driver
    /// names, else [`MAX_PLAUSIBLE_W`].
    max_w: f64,
    health: CounterHealth,
    telemetry: HwmonTelemetry,
}

impl HwmonEnergyMeter {
    /// Reads the counter, measures how often it changes, and starts polling it. A
    /// counter that never changes while watched is refused: its windows would read
    /// zero joules.
    pub fn open(fs: &Sysfs, hwmon: &HwmonDevice, probe: CounterProbe) -> Result<Self, MeterError> {
        let path = hwmon.attr("energy1_input");
        let what = format!("energy1_input of {}", hwmon.describe());
        let period = measure_change_period(
            || fs.read_u64(&path),
            probe.poll_every,
            probe.changes,
            probe.max_wait,
        )
        .map_err(meter_error)?
        .ok_or_else(|| {
            MeterError::Unavailable(format!(
                "{what} stood still for {:.1} s: it cannot measure energy",
                probe.max_wait.as_secs_f64()
            ))
        })?;
        let max_w = board_max_w(fs, hwmon);
        let counter = WrappingCounter::new(what, u64::MAX, 1e-6).with_max_plausible_w(max_w);
        let health = counter.health();
        let telemetry = HwmonTelemetry::new(fs, hwmon);
        let source = EnergySource {
            fs: fs.clone(),
            hwmon: hwmon.clone(),
            counter,
            telemetry: telemetry.clone(),
            last: None,
        };
        let poller = Poller::start(
            "joulebench-hwmon-energy",
            Box::new(source),
            PollConfig::default(),
        )?;
        let parts = HwmonEnergy {
            hwmon: hwmon.clone(),
            period_s: period,
            max_w,
            health,
            telemetry,
        };
        Ok(PolledMeter::new(parts, poller))
    }

    pub fn hwmon(&self) -> &HwmonDevice {
        &self.parts().hwmon
    }
}

impl Polled for HwmonEnergy {
    fn source(&self) -> MeterSource {
        MeterSource::HwmonEnergy
    }
    fn update_period_s(&self) -> f64 {
        self.period_s
    }
    fn telemetry(&mut self) -> Result<Telemetry, MeterError> {
        Ok(self.telemetry.read(None))
    }
    fn fault_detail(&mut self) -> Option<String> {
        self.health.fault_detail(2.0 * self.period_s)
    }
    fn not_read_yet(&self) -> String {
        "energy1_input not read yet".into()
    }
    fn max_power_w(&self) -> Option<f64> {
        Some(self.max_w)
    }
}

/// Twice the highest power limit the hwmon directory names (`power1_cap_max`,
/// `power1_max`, `power1_crit`, µW): a board draws that for no counter interval.
/// Without one, [`MAX_PLAUSIBLE_W`].
fn board_max_w(fs: &Sysfs, hwmon: &HwmonDevice) -> f64 {
    ["power1_cap_max", "power1_max", "power1_crit", "power2_crit"]
        .iter()
        .filter_map(|f| fs.read_u64(&hwmon.attr(f)).ok())
        .filter(|uw| *uw > 0)
        .max()
        .map(|uw| (2.0 * uw as f64 / 1e6).min(MAX_PLAUSIBLE_W))
        .unwrap_or(MAX_PLAUSIBLE_W)
}

// ------------------------------------------------------- power1_input / _average

/// Which hwmon power reading a sampled meter integrates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HwmonPowerReading {
    /// `power1_input`: instantaneous power, µW.
    Input,
    /// `power1_average`: averaged by the firmware, µW.
    Average,
}

impl HwmonPowerReading {
    pub fn file(self) -> &'static str {
        match self {
            HwmonPowerReading::Input => "power1_input",
            HwmonPowerReading::Average => "power1_average",
        }
    }
}

struct PowerSource {
    fs: Sysfs,
    hwmon: HwmonDevice,
    reading: HwmonPowerReading,
    integ: TrapezoidIntegrator,
    telemetry: HwmonTelemetry,
}

impl PolledSource for PowerSource {
    fn energy_j(&mut self) -> Result<Option<f64>, MeterError> {
        let uw = self
            .fs
            .read_u64(&self.hwmon.attr(self.reading.file()))
            .map_err(meter_error)?;
        self.integ.add(monotonic_s(), uw as f64 / 1e6);
        Ok(Some(self.integ.energy_j()))
    }

    fn telemetry(&mut self) -> Result<Telemetry, MeterError> {
        let power_w = self.integ.last_sample().map(|(_, w)| w);
        Ok(self.telemetry.read(power_w))
    }
}

/// `power1_input` (else `power1_average`) sampled every `interval` and integrated
/// (trapezoid): AMD GPUs under `amdgpu` where amdsmi is not there.
pub type HwmonSampledMeter = PolledMeter<HwmonSampled>;

/// What [`HwmonSampledMeter`] is besides its poller.
pub struct HwmonSampled {
    hwmon: HwmonDevice,
    /// Twice the board's highest power limit: a sample implying more is rejected.
    max_w: f64,
    reading: HwmonPowerReading,
    interval: Duration,
    telemetry: HwmonTelemetry,
}

impl HwmonSampledMeter {
    pub fn open(fs: &Sysfs, hwmon: &HwmonDevice, interval: Duration) -> Result<Self, MeterError> {
        if interval.is_zero() {
            return Err(MeterError::Unavailable(
                "the sampling interval must be greater than zero".into(),
            ));
        }
        let reading = [HwmonPowerReading::Input, HwmonPowerReading::Average]
            .into_iter()
            .find(|r| hwmon.has(r.file()))
            .ok_or_else(|| {
                MeterError::Unavailable(format!(
                    "{} has neither power1_input nor power1_average",
                    hwmon.describe()
                ))
            })?;
        fs.read_u64(&hwmon.attr(reading.file()))
            .map_err(meter_error)?;
        let telemetry = HwmonTelemetry::new(fs, hwmon);
        let source = PowerSource {
            fs: fs.clone(),
            hwmon: hwmon.clone(),
            reading,
            integ: TrapezoidIntegrator::new(),
            telemetry: telemetry.clone(),
        };
        let poller = Poller::start(
            "joulebench-hwmon-power",
            Box::new(source),
            PollConfig {
                energy_every: interval,
                telemetry_every: Duration::from_millis(50).max(interval),
            },
        )?;
        let parts = HwmonSampled {
            hwmon: hwmon.clone(),
            max_w: board_max_w(fs, hwmon),
            reading,
            interval,
            telemetry,
        };
        Ok(PolledMeter::new(parts, poller))
    }

    pub fn reading(&self) -> HwmonPowerReading {
        self.parts().reading
    }

    pub fn hwmon(&self) -> &HwmonDevice {
        &self.parts().hwmon
    }
}

impl Polled for HwmonSampled {
    fn source(&self) -> MeterSource {
        MeterSource::HwmonSampled
    }
    fn max_power_w(&self) -> Option<f64> {
        Some(self.max_w)
    }
    fn update_period_s(&self) -> f64 {
        self.interval.as_secs_f64()
    }
    /// The firmware's average trails a change of power by its averaging window
    /// (about a second on amdgpu); an instant reading by one sampling interval.
    fn response_s(&self) -> f64 {
        match self.reading {
            HwmonPowerReading::Input => self.interval.as_secs_f64(),
            HwmonPowerReading::Average => self.interval.as_secs_f64().max(1.0),
        }
    }
    fn telemetry(&mut self) -> Result<Telemetry, MeterError> {
        let power_w = self
            .telemetry
            .fs
            .read_u64(&self.hwmon.attr(self.reading.file()))
            .ok()
            .map(|uw| uw as f64 / 1e6);
        Ok(self.telemetry.read(power_w))
    }
    fn not_read_yet(&self) -> String {
        "power not sampled yet".into()
    }
}
