//! Where joules come from. A meter exposes a cumulative energy reading (the NVML
//! counter, an integrating sampler, or the simulated device's model), the times at
//! which that reading changed, and telemetry sampled while the work runs; the
//! window engine (`crate::window`) takes differences between two changes.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, thiserror::Error)]
pub enum MeterError {
    #[error("energy meter unavailable: {0}")]
    Unavailable(String),
    #[error("energy meter read failed: {0}")]
    Read(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MeterSource {
    /// NVML's total-energy counter (mJ, Volta and newer).
    NvmlCounter,
    /// NVML power readings integrated by a sampling thread.
    NvmlSampled,
    /// The simulated device's power model.
    Simulated,
    /// No meter for this device: time is measured, energy is not.
    None,
    /// amdsmi's energy accumulator (AMD GPUs; ticks of its reported resolution).
    AmdsmiCounter,
    /// A hwmon `energy1_input` counter (µJ): Intel GPUs under `xe` or `i915`.
    HwmonEnergy,
    /// A hwmon `power1_average` / `power1_input` reading (µW) integrated by a
    /// sampling thread: AMD GPUs under `amdgpu` without amdsmi.
    HwmonSampled,
    /// Linux powercap RAPL counters (`energy_uj`): the host's CPU packages and DRAM.
    Rapl,
}

impl MeterSource {
    pub fn name(self) -> &'static str {
        match self {
            MeterSource::NvmlCounter => "nvml-counter",
            MeterSource::NvmlSampled => "nvml-sampled",
            MeterSource::Simulated => "simulated",
            MeterSource::None => "none",
            MeterSource::AmdsmiCounter => "amdsmi-counter",
            MeterSource::HwmonEnergy => "hwmon-energy",
            MeterSource::HwmonSampled => "hwmon-sampled",
            MeterSource::Rapl => "rapl",
        }
    }
}

/// Device state at one moment (docs/ARCHITECTURE.md §4.5). Every field is optional: a meter
/// reports what its device exposes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Telemetry {
    pub sm_clock_mhz: Option<u32>,
    pub mem_clock_mhz: Option<u32>,
    /// The SM clock the device runs at when nothing holds it back (for the throttle check).
    pub default_sm_clock_mhz: Option<u32>,
    pub temperature_c: Option<u32>,
    /// Decoded throttle reasons, e.g. "sw-power-cap", "hw-thermal-slowdown".
    pub throttle_reasons: Vec<String>,
    pub enforced_power_limit_w: Option<f64>,
    pub performance_state: Option<String>,
    pub power_w: Option<f64>,
}

/// A throttle reason that means the clock was pulled down by heat, a hardware
/// slowdown or a power brake: a fault worth a caution, unlike the power limit.
pub fn is_brake_reason(reason: &str) -> bool {
    reason.contains("thermal") || reason.contains("power-brake") || reason.contains("hw-slowdown")
}

/// A throttle reason that means the card sat at its power limit (NVML's
/// `sw-power-cap`): the normal operating point of heavy work, not a fault.
pub fn is_power_limit_reason(reason: &str) -> bool {
    reason == "sw-power-cap"
}

impl Telemetry {
    /// Throttle reasons that mean the clock was pulled down by heat or a power brake
    /// (the power limit is not one of them).
    pub fn has_brake_reason(&self) -> bool {
        self.throttle_reasons.iter().any(|r| is_brake_reason(r))
    }
}

/// How two meters agreed over one point's windows, in check mode (the energy
/// counter against integrated power samples).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeterAgreement {
    pub intervals: usize,
    /// 100 − the median absolute difference, %: 100 means the two meters agree.
    pub agreement_pct: f64,
    /// Median of (sampled − counter) / counter, %: its sign says which reads higher.
    pub median_difference_pct: f64,
    pub worst_difference_pct: f64,
}

/// The meter's cumulative reading changed to `joules` at `time_s` (on the clock the
/// meter and the protocol share: [`crate::clock::monotonic_s`] for real devices).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CounterUpdate {
    pub time_s: f64,
    pub joules: f64,
}

/// The host (CPU and DRAM) meter a GPU meter carries beside it, as records name it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostMeterInfo {
    pub source: MeterSource,
    /// What it adds up, e.g. `["package-0", "package-1", "dram"]`.
    pub domains: Vec<String>,
    pub update_period_s: f64,
}

/// One telemetry reading and when it was taken.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TelemetrySample {
    pub time_s: f64,
    pub telemetry: Telemetry,
}

pub trait EnergyMeter: Send {
    fn source(&self) -> MeterSource;
    /// Cumulative energy in joules since an arbitrary origin; only differences matter.
    fn energy_j(&mut self) -> Result<f64, MeterError>;
    /// How often the reading changes, in seconds (measured, where the meter can).
    fn update_period_s(&self) -> f64;
    /// How long after a change of power the reading has fully caught up with it:
    /// one update period for a counter fed by its own sensor, the averaging window
    /// for a meter that integrates averaged power. A window opens only after the
    /// work has run this long, so the first update inside it sees work alone.
    fn response_s(&self) -> f64 {
        self.update_period_s()
    }
    /// Every change of the reading since the last call, oldest first, each with the
    /// time it happened (or was first seen, for a meter that polls). A meter without
    /// energy returns none.
    fn take_updates(&mut self) -> Result<Vec<CounterUpdate>, MeterError>;
    /// Telemetry sampled while the work ran, since the last call, oldest first.
    fn take_telemetry(&mut self) -> Result<Vec<TelemetrySample>, MeterError> {
        Ok(Vec::new())
    }
    /// Clocks, temperature, throttle reasons, enforced limit, now.
    fn telemetry(&mut self) -> Result<Telemetry, MeterError> {
        Ok(Telemetry::default())
    }
    /// In check mode, the agreement of the two meters since the last call.
    fn take_agreement(&mut self) -> Option<MeterAgreement> {
        None
    }
    /// Host (CPU and DRAM) energy between two moments on the meter's time line, in
    /// joules, for a meter that carries a host meter beside the device's. `None`:
    /// no host meter, or no host readings around both moments.
    fn host_energy_between(&mut self, _from_s: f64, _to_s: f64) -> Option<f64> {
        None
    }
    /// The host meter whose energy [`EnergyMeter::host_energy_between`] reports.
    fn host_meter(&self) -> Option<HostMeterInfo> {
        None
    }
    /// The most power the device could draw, watts: a counter step implying more
    /// over the time between two updates rejects the window, as a step backwards
    /// does. `None`: no bound known (no check).
    fn max_power_w(&self) -> Option<f64> {
        None
    }
    /// The meter's own account of why its reading misbehaved (a counter that went
    /// backwards without wrapping, one that stood still), for the message that
    /// rejects the window. `None` when it has nothing to add.
    fn fault_detail(&mut self) -> Option<String> {
        None
    }
}

/// A device without an energy meter: windows record time only.
pub struct NoMeter {
    pub reason: String,
}

impl EnergyMeter for NoMeter {
    fn source(&self) -> MeterSource {
        MeterSource::None
    }
    fn energy_j(&mut self) -> Result<f64, MeterError> {
        Err(MeterError::Unavailable(self.reason.clone()))
    }
    fn update_period_s(&self) -> f64 {
        0.0
    }
    fn take_updates(&mut self) -> Result<Vec<CounterUpdate>, MeterError> {
        Ok(Vec::new())
    }
}
