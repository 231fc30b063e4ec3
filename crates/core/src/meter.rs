//! Where joules come from. A meter exposes a cumulative energy reading (the NVML
//! counter, an integrating sampler, or the simulated device's model) and the
//! telemetry behind it; the protocol takes differences over its windows.

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
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
}

impl MeterSource {
    pub fn name(self) -> &'static str {
        match self {
            MeterSource::NvmlCounter => "nvml-counter",
            MeterSource::NvmlSampled => "nvml-sampled",
            MeterSource::Simulated => "simulated",
            MeterSource::None => "none",
        }
    }
}

/// Device state read once per window (DESIGN.md §4.5). Every field is optional:
/// a meter reports what its device exposes.
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

impl Telemetry {
    /// Throttle reasons that mean the clock was pulled down by heat or a power brake
    /// (a power cap the user asked for is not one of them).
    pub fn has_brake_reason(&self) -> bool {
        self.throttle_reasons.iter().any(|r| {
            r.contains("thermal") || r.contains("power-brake") || r.contains("hw-slowdown")
        })
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

pub trait EnergyMeter: Send {
    fn source(&self) -> MeterSource;
    /// Cumulative energy in joules since an arbitrary origin; only differences matter.
    fn energy_j(&mut self) -> Result<f64, MeterError>;
    /// How often the reading changes, in seconds (measured, where the meter can).
    fn update_period_s(&self) -> f64;
    /// Clocks, temperature, throttle reasons, enforced limit, now.
    fn telemetry(&mut self) -> Result<Telemetry, MeterError> {
        Ok(Telemetry::default())
    }
    /// In check mode, the agreement of the two meters since the last call.
    fn take_agreement(&mut self) -> Option<MeterAgreement> {
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
}
