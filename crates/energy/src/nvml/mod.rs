//! NVML energy meters, telemetry and power control. Everything reaches the driver
//! through one narrow trait, [`NvmlDevice`], so the same meters and power control run
//! against the real driver or against a fake device whose state lives in a JSON file
//! (tests here, and the CLI's end-to-end tests across processes).

mod check;
mod clocks;
mod counter;
#[cfg(feature = "test-fakes")]
mod fake;
mod identity;
mod power;
mod real;
mod sampling;
mod telemetry;
mod throttle;

pub use crate::identity::{normalize_pci_bus_id, normalize_uuid, PciBusId};
pub use check::{Agreement, AgreementHandle, AgreementInterval, CheckMeter};
pub use clocks::{NvmlClockControl, CLOCK_PERMISSION_HINT};
pub use counter::{measure_update_period, CounterMeter, PeriodProbe, UpdatePeriod};
#[cfg(feature = "test-fakes")]
pub use fake::{FakeDevice, FakeState};
pub use identity::{DeviceIdentity, DeviceMatch};
pub use power::{NvmlPowerControl, PERMISSION_HINT};
pub use real::{nvml_unavailable_reason, RealDevice};
pub use sampling::{
    integrate_trapezoid_j, PowerReadingKind, PowerSample, SamplingConfig, SamplingMeter,
    TrapezoidIntegrator,
};
pub use telemetry::read_telemetry;
pub use throttle::{decode_throttle_reasons, throttle_reason_name, THROTTLE_REASON_BITS};

use crate::guard::PowerStateFile;
use joulebench_core::{EnergyMeter, MeterError, PowerControl, PowerError};
use std::str::FromStr;
use std::sync::Arc;

/// Set to the path of a fake device's JSON state file, and every `open_*` function
/// here opens that fake instead of the driver. For tests only: the fake exists in
/// builds with the `test-fakes` feature (every `cargo test` of the workspace), not in
/// a release binary, and records made on it carry the fake's name, "… (fake NVML)".
pub const FAKE_NVML_ENV: &str = "JOULEBENCH_FAKE_NVML";

/// `device_kind` written into a power state file, so a restore opens the same kind.
pub const DEVICE_KIND_NVML: &str = "nvml";
pub const DEVICE_KIND_FAKE: &str = "fake-nvml";

/// What an NVML call can fail with, reduced to what callers act on.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum NvmlError {
    /// NVML itself could not be loaded or initialised (no driver, no library).
    #[error("NVML is unavailable: {0}")]
    Unavailable(String),
    #[error("not supported by this device")]
    NotSupported,
    #[error("no permission: {0}")]
    NoPermission(String),
    #[error("the GPU is lost (it fell off the bus or needs a reset)")]
    GpuLost,
    #[error("no NVML device matches {0}")]
    NotFound(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("NVML call failed: {0}")]
    Failed(String),
}

impl NvmlError {
    /// The meter's view: a lost GPU or missing NVML ends the sweep (the runner stops
    /// on `MeterError` and keeps every finished record).
    pub fn into_meter_error(self, what: &str) -> MeterError {
        match self {
            NvmlError::Unavailable(_) | NvmlError::NotSupported | NvmlError::NotFound(_) => {
                MeterError::Unavailable(format!("{what}: {self}"))
            }
            _ => MeterError::Read(format!("{what}: {self}")),
        }
    }

    /// The power control's view; a missing right names the right.
    pub fn into_power_error(self, what: &str) -> PowerError {
        match self {
            NvmlError::NoPermission(_) => PowerError::NotPermitted(PERMISSION_HINT.to_string()),
            NvmlError::Unavailable(_) | NvmlError::NotSupported | NvmlError::NotFound(_) => {
                PowerError::Unavailable(format!("{what}: {self}"))
            }
            _ => PowerError::Failed(format!("{what}: {self}")),
        }
    }
}

/// The power-limit readings of one device, in milliwatts as NVML gives them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PowerLimitsMw {
    pub min_mw: u32,
    pub max_mw: u32,
    pub default_mw: u32,
    pub current_mw: u32,
}

impl PowerLimitsMw {
    pub fn to_watts(self) -> joulebench_core::PowerLimits {
        joulebench_core::PowerLimits {
            min_w: self.min_mw as f64 / 1000.0,
            max_w: self.max_mw as f64 / 1000.0,
            default_w: self.default_mw as f64 / 1000.0,
            current_w: self.current_mw as f64 / 1000.0,
        }
    }
}

/// Power as NVML's field values give it on newer drivers: instant, and averaged over
/// the sensor's window (1 s). `None` where the driver or device lacks the field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PowerFieldsMw {
    pub instant_mw: Option<u32>,
    pub average_mw: Option<u32>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClocksMhz {
    pub sm_mhz: Option<u32>,
    pub mem_mhz: Option<u32>,
}

/// The SM clocks a throttled clock is compared with (docs/ARCHITECTURE.md §4.5, the 75% rule).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReferenceClocksMhz {
    /// The default applications clock (datacenter parts; often equal to the max).
    pub default_sm_mhz: Option<u32>,
    /// The highest SM clock the device allows.
    pub max_sm_mhz: Option<u32>,
}

impl ReferenceClocksMhz {
    /// The clock the device runs at when nothing holds it back: the default
    /// applications clock where the device has one, else its max SM clock (as nvbench).
    pub fn unthrottled_sm_mhz(&self) -> Option<u32> {
        self.default_sm_mhz.or(self.max_sm_mhz)
    }
}

/// Everything joulebench asks of NVML, and nothing more. Implemented by the driver
/// ([`RealDevice`]) and by [`FakeDevice`]. Calls take `&self`: NVML is thread-safe,
/// and the sampling meter reads power from its own thread.
pub trait NvmlDevice: Send + Sync {
    fn identity(&self) -> Result<DeviceIdentity, NvmlError>;
    /// Energy since the driver loaded, mJ (Volta and newer); updates every ~100 ms.
    fn total_energy_mj(&self) -> Result<u64, NvmlError>;
    /// nvmlDeviceGetPowerUsage, mW: a 1 s average on Ampere and newer (except
    /// GA100), instant on older parts.
    fn power_usage_mw(&self) -> Result<u32, NvmlError>;
    /// Instant and averaged power from field values, where the driver has them.
    fn power_fields_mw(&self) -> Result<PowerFieldsMw, NvmlError>;
    fn power_limits_mw(&self) -> Result<PowerLimitsMw, NvmlError>;
    /// Needs root (or CAP_SYS_ADMIN) on Linux; `NoPermission` otherwise.
    fn set_power_limit_mw(&self, limit_mw: u32) -> Result<(), NvmlError>;
    /// The limit in force now (the lowest of all limiters, ours included).
    fn enforced_limit_mw(&self) -> Result<u32, NvmlError>;
    fn clocks_mhz(&self) -> Result<ClocksMhz, NvmlError>;
    fn reference_clocks_mhz(&self) -> Result<ReferenceClocksMhz, NvmlError>;
    fn temperature_c(&self) -> Result<u32, NvmlError>;
    /// Raw throttle-reason bits (nvmlClocksThrottleReason*); see [`decode_throttle_reasons`].
    fn throttle_reasons(&self) -> Result<u64, NvmlError>;
    /// P-state 0..=15, `None` when the driver reports it unknown.
    fn performance_state(&self) -> Result<Option<u32>, NvmlError>;

    /// The graphics (SM) clocks the device can be locked to, MHz (Volta and newer).
    fn supported_sm_clocks_mhz(&self) -> Result<Vec<u32>, NvmlError> {
        Err(NvmlError::NotSupported)
    }
    /// The memory clocks it can be locked to, MHz.
    fn supported_mem_clocks_mhz(&self) -> Result<Vec<u32>, NvmlError> {
        Err(NvmlError::NotSupported)
    }
    /// nvmlDeviceSetGpuLockedClocks; needs root.
    fn set_locked_sm_clocks_mhz(&self, _min_mhz: u32, _max_mhz: u32) -> Result<(), NvmlError> {
        Err(NvmlError::NotSupported)
    }
    /// nvmlDeviceResetGpuLockedClocks.
    fn reset_locked_sm_clocks(&self) -> Result<(), NvmlError> {
        Err(NvmlError::NotSupported)
    }
    /// nvmlDeviceSetMemoryLockedClocks (Ampere and newer); needs root.
    fn set_locked_mem_clocks_mhz(&self, _min_mhz: u32, _max_mhz: u32) -> Result<(), NvmlError> {
        Err(NvmlError::NotSupported)
    }
    /// nvmlDeviceResetMemoryLockedClocks.
    fn reset_locked_mem_clocks(&self) -> Result<(), NvmlError> {
        Err(NvmlError::NotSupported)
    }
    /// The locked (SM, memory) ranges now, MHz, where the device can say; NVML has no
    /// call that reads them back, the fake device has.
    fn locked_clocks_mhz(&self) -> Result<LockedClocksMhz, NvmlError> {
        Err(NvmlError::NotSupported)
    }
}

/// Locked clock ranges, MHz; `None`: at the default.
pub type LockedClocksMhz = (Option<(u32, u32)>, Option<(u32, u32)>);

/// `Ok(None)` for what a device simply lacks; everything else stays an error.
pub(crate) fn optional<T>(r: Result<T, NvmlError>) -> Result<Option<T>, NvmlError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(NvmlError::NotSupported) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The fake device named by `JOULEBENCH_FAKE_NVML`, if that variable is set (and
/// this build has the fake: the `test-fakes` feature).
#[cfg(feature = "test-fakes")]
pub fn open_fake_from_env() -> Option<Result<Arc<FakeDevice>, NvmlError>> {
    let path = std::env::var_os(FAKE_NVML_ENV)?;
    if path.is_empty() {
        return None;
    }
    Some(FakeDevice::from_state_file(std::path::PathBuf::from(path)).map(Arc::new))
}

/// Whether the fake device stands in for the driver: `JOULEBENCH_FAKE_NVML` is set
/// and this build has the fake (without the `test-fakes` feature the variable is
/// ignored).
pub fn fake_in_use() -> bool {
    cfg!(feature = "test-fakes") && std::env::var_os(FAKE_NVML_ENV).is_some_and(|p| !p.is_empty())
}

/// Every NVML device: the fake one when `JOULEBENCH_FAKE_NVML` is set, else the driver's.
pub fn list_devices() -> Result<Vec<Arc<dyn NvmlDevice>>, NvmlError> {
    #[cfg(feature = "test-fakes")]
    if let Some(fake) = open_fake_from_env() {
        return Ok(vec![fake? as Arc<dyn NvmlDevice>]);
    }
    Ok(real::list_real_devices()?
        .into_iter()
        .map(|d| Arc::new(d) as Arc<dyn NvmlDevice>)
        .collect())
}

/// The NVML device that is the given CUDA / wgpu device, found by UUID or PCI bus id
/// (never by index: NVML and CUDA can number devices differently). Honours
/// `JOULEBENCH_FAKE_NVML`.
pub fn open_device(wanted: &DeviceMatch) -> Result<Arc<dyn NvmlDevice>, NvmlError> {
    #[cfg(feature = "test-fakes")]
    if let Some(fake) = open_fake_from_env() {
        let fake = fake?;
        let id = fake.identity()?;
        if fake.matches_any()? || wanted.matches(&id) {
            return Ok(fake);
        }
        return Err(NvmlError::NotFound(format!(
            "{wanted} (the fake device in ${FAKE_NVML_ENV} is {})",
            id.describe()
        )));
    }
    Ok(Arc::new(real::open_real_device(wanted)?))
}

/// Which meter to build on an NVML device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MeterMode {
    /// The energy counter where the device has one, else the sampling meter.
    #[default]
    Auto,
    Counter,
    Sampled,
    /// Both over the same windows; the counter's numbers are recorded, their
    /// agreement is reported.
    Check,
}

impl FromStr for MeterMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(MeterMode::Auto),
            "counter" | "nvml-counter" => Ok(MeterMode::Counter),
            "sampled" | "sampling" | "nvml-sampled" => Ok(MeterMode::Sampled),
            "check" => Ok(MeterMode::Check),
            other => Err(format!(
                "meter '{other}' is not one of auto, counter, sampled, check"
            )),
        }
    }
}

/// A meter ready for the protocol, with what the CLI reports about it.
pub struct NvmlMeter {
    pub meter: Box<dyn EnergyMeter>,
    /// Present in check mode: the sampled-vs-counter agreement so far.
    pub agreement: Option<AgreementHandle>,
    /// Why `Auto` chose what it chose, or how the update period was found.
    pub note: Option<String>,
}

/// Build the meter `mode` asks for on `device`.
pub fn open_meter(
    device: Arc<dyn NvmlDevice>,
    mode: MeterMode,
    sampling: SamplingConfig,
) -> Result<NvmlMeter, MeterError> {
    let counter_note = |m: &CounterMeter| {
        let p = m.update_period();
        Some(if p.measured {
            format!(
                "energy counter updates every {:.0} ms (measured over {} changes)",
                p.seconds * 1e3,
                p.changes_seen
            )
        } else {
            format!(
                "energy counter update period not measurable; assuming {:.0} ms",
                p.seconds * 1e3
            )
        })
    };
    match mode {
        MeterMode::Counter => {
            let m = CounterMeter::open(device)?;
            let note = counter_note(&m);
            Ok(NvmlMeter {
                meter: Box::new(m),
                agreement: None,
                note,
            })
        }
        MeterMode::Sampled => Ok(NvmlMeter {
            meter: Box::new(SamplingMeter::start(device, sampling)?),
            agreement: None,
            note: None,
        }),
        MeterMode::Check => {
            let m = CheckMeter::open(device, sampling)?;
            let agreement = Some(m.agreement());
            let note = counter_note(m.counter());
            Ok(NvmlMeter {
                meter: Box::new(m),
                agreement,
                note,
            })
        }
        MeterMode::Auto => match device.total_energy_mj() {
            Ok(_) => open_meter(device, MeterMode::Counter, sampling),
            Err(NvmlError::NotSupported) => {
                let mut m = open_meter(device, MeterMode::Sampled, sampling)?;
                m.note = Some(
                    "this device has no energy counter; integrating sampled power instead".into(),
                );
                Ok(m)
            }
            Err(e) => Err(e.into_meter_error("reading the energy counter")),
        },
    }
}

/// Power control for the device a power state file names, for `joulebench power
/// restore`: the fake (through `JOULEBENCH_FAKE_NVML`) when the file was written on
/// the fake, else the driver's device with the recorded UUID / PCI bus id.
pub fn open_power_control_for_state(
    state: &PowerStateFile,
) -> Result<Box<dyn PowerControl>, PowerError> {
    Ok(Box::new(NvmlPowerControl::new(open_device_for_state(
        state,
    )?)))
}

/// Clock control for the device a state file names (its locked clocks are reset by
/// `joulebench power restore`), found as [`open_power_control_for_state`] finds it.
pub fn open_clock_control_for_state(
    state: &PowerStateFile,
) -> Result<Box<dyn joulebench_core::ClockControl>, PowerError> {
    Ok(Box::new(NvmlClockControl::new(open_device_for_state(
        state,
    )?)))
}

fn open_device_for_state(state: &PowerStateFile) -> Result<Arc<dyn NvmlDevice>, PowerError> {
    let wanted = DeviceMatch {
        uuid: state.device.uuid.clone(),
        pci_bus_id: state.device.pci_bus_id.clone(),
    };
    let device: Arc<dyn NvmlDevice> = match state.device_kind.as_str() {
        #[cfg(feature = "test-fakes")]
        DEVICE_KIND_FAKE => {
            let fake = open_fake_from_env()
                .ok_or_else(|| {
                    PowerError::Unavailable(format!(
                        "this state file was written on the fake NVML device; set {FAKE_NVML_ENV} to its state file"
                    ))
                })?
                .map_err(|e| e.into_power_error("opening the fake NVML device"))?;
            let id = fake
                .identity()
                .map_err(|e| e.into_power_error("reading the fake device"))?;
            if !wanted.matches(&id) {
                return Err(PowerError::Unavailable(format!(
                    "the fake device in ${FAKE_NVML_ENV} is {}, not the recorded {wanted}",
                    id.describe()
                )));
            }
            fake
        }
        DEVICE_KIND_NVML => Arc::new(
            real::open_real_device(&wanted)
                .map_err(|e| e.into_power_error("opening the recorded GPU"))?,
        ),
        #[cfg(not(feature = "test-fakes"))]
        DEVICE_KIND_FAKE => {
            return Err(PowerError::Unavailable(
                "this state file was written on the fake NVML device of a test build; restore it with a test build (the test-fakes feature)".into(),
            ))
        }
        other => {
            return Err(PowerError::Unavailable(format!(
                "this state file was written for a '{other}' device, which NVML cannot restore"
            )))
        }
    };
    Ok(device)
}
