//! AMD GPUs through amdsmi, loaded at run time as NVML is (no build-time
//! dependency): the energy accumulator, power, clocks, temperature, throttle status,
//! identity and power caps. Everything reaches the library through one narrow
//! trait, [`AmdSmiDevice`], so the meter and the power control run against the real
//! library or against a fake device whose state lives in a JSON file.

#[cfg(feature = "test-fakes")]
mod fake;
mod meter;
mod power;
mod smi;
mod throttle;

#[cfg(feature = "test-fakes")]
pub use fake::{FakeAmdSmi, FakeAmdSmiState};
pub use meter::{AmdSmiCounterMeter, AMDSMI_DROP_HINT};
pub use power::AmdSmiPowerControl;
pub use smi::{amdsmi_unavailable_reason, RealAmdSmi};
pub use throttle::{decode_indep_throttle_status, INDEP_THROTTLE_BITS};

use crate::guard::PowerStateFile;
use crate::nvml::{DeviceMatch, PciBusId};
use joulebench_core::{DeviceInfo, PowerControl, PowerError};
use std::sync::Arc;

/// Set to the path of a fake amdsmi device's JSON state file, and every `open_*`
/// function here opens that fake instead of the library. For tests only: records
/// made on it carry the fake's name, "… (fake amdsmi)".
pub const FAKE_AMDSMI_ENV: &str = "JOULEBENCH_FAKE_AMDSMI";

/// `device_kind` in a power state file, so a restore opens the same kind.
pub const DEVICE_KIND_AMDSMI: &str = "amdsmi";
pub const DEVICE_KIND_FAKE_AMDSMI: &str = "fake-amdsmi";

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum AmdSmiError {
    /// The library could not be loaded, is too old, or did not initialise.
    #[error("amdsmi is unavailable: {0}")]
    Unavailable(String),
    #[error("not supported by this device")]
    NotSupported,
    #[error("no permission: {0}")]
    NoPermission(String),
    #[error("no amdsmi device matches {0}")]
    NotFound(String),
    #[error("amdsmi call failed: {0}")]
    Failed(String),
}

impl AmdSmiError {
    pub fn into_meter_error(self, what: &str) -> joulebench_core::MeterError {
        use joulebench_core::MeterError;
        match self {
            AmdSmiError::Unavailable(_) | AmdSmiError::NotSupported | AmdSmiError::NotFound(_) => {
                MeterError::Unavailable(format!("{what}: {self}"))
            }
            _ => MeterError::Read(format!("{what}: {self}")),
        }
    }

    pub fn into_power_error(self, what: &str) -> PowerError {
        match self {
            AmdSmiError::NoPermission(_) => PowerError::NotPermitted(AMDSMI_PERMISSION_HINT.into()),
            AmdSmiError::Unavailable(_) | AmdSmiError::NotSupported | AmdSmiError::NotFound(_) => {
                PowerError::Unavailable(format!("{what}: {self}"))
            }
            _ => PowerError::Failed(format!("{what}: {self}")),
        }
    }
}

/// What a user without the right to change a power cap is told.
pub const AMDSMI_PERMISSION_HINT: &str = "changing an AMD GPU's power cap needs root; run \
joulebench as root, or have an administrator set it with `amd-smi set --power-cap <watts>`";

/// Who an amdsmi device is.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AmdIdentity {
    pub name: String,
    pub uuid: Option<String>,
    pub pci_bus_id: Option<PciBusId>,
    pub driver_version: Option<String>,
    /// The fake device of the tests, not a GPU.
    pub fake: bool,
}

impl AmdIdentity {
    pub fn to_device_info(&self) -> DeviceInfo {
        DeviceInfo {
            name: self.name.clone(),
            uuid: self.uuid.clone(),
            pci_bus_id: self.pci_bus_id.map(|p| p.to_string()),
            driver: self.driver_version.clone(),
            ..DeviceInfo::default()
        }
    }

    pub fn describe(&self) -> String {
        match (&self.uuid, &self.pci_bus_id) {
            (Some(u), Some(p)) => format!("{} ({u}, {p})", self.name),
            (None, Some(p)) => format!("{} ({p})", self.name),
            (Some(u), None) => format!("{} ({u})", self.name),
            (None, None) => self.name.clone(),
        }
    }

    pub fn device_kind(&self) -> &'static str {
        if self.fake {
            DEVICE_KIND_FAKE_AMDSMI
        } else {
            DEVICE_KIND_AMDSMI
        }
    }

    /// The PCI address decides (amdsmi's UUIDs are not the ones wgpu or CUDA print).
    pub fn matches(&self, wanted: &DeviceMatch) -> bool {
        match (&wanted.pci_bus_id, &self.pci_bus_id) {
            (Some(w), Some(p)) => PciBusId::parse(w).as_ref() == Some(p),
            _ => false,
        }
    }
}

/// amdsmi_get_energy_count: the accumulator, the µJ one tick is worth, and the
/// library's timestamp (ns).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EnergyCount {
    pub ticks: u64,
    pub resolution_uj: f64,
    pub timestamp_ns: u64,
}

/// amdsmi_get_power_cap_info, µW.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PowerCapInfoUw {
    pub cap_uw: u64,
    pub default_uw: u64,
    pub min_uw: u64,
    pub max_uw: u64,
}

impl PowerCapInfoUw {
    pub fn to_watts(self) -> joulebench_core::PowerLimits {
        let w = |uw: u64| uw as f64 / 1e6;
        joulebench_core::PowerLimits {
            min_w: w(self.min_uw),
            max_w: w(self.max_uw),
            default_w: w(self.default_uw),
            current_w: w(self.cap_uw),
        }
    }
}

/// Everything joulebench asks of amdsmi, and nothing more.
pub trait AmdSmiDevice: Send + Sync {
    fn identity(&self) -> Result<AmdIdentity, AmdSmiError>;
    fn energy_count(&self) -> Result<EnergyCount, AmdSmiError>;
    /// Current socket power, W, where the library reports it.
    fn power_w(&self) -> Result<Option<f64>, AmdSmiError>;
    /// The current GFX and memory clocks, MHz.
    fn clocks_mhz(&self) -> Result<(Option<u32>, Option<u32>), AmdSmiError>;
    /// Hotspot (junction) temperature, °C.
    fn temperature_c(&self) -> Result<Option<u32>, AmdSmiError>;
    /// gpu_metrics' ASIC-independent throttle bits (see [`decode_indep_throttle_status`]).
    fn throttle_status(&self) -> Result<Option<u64>, AmdSmiError>;
    fn power_cap_info(&self) -> Result<PowerCapInfoUw, AmdSmiError>;
    fn set_power_cap_uw(&self, cap_uw: u64) -> Result<(), AmdSmiError>;
}

/// The fake device named by `JOULEBENCH_FAKE_AMDSMI`, if that variable is set (in
/// builds with the `test-fakes` feature only).
#[cfg(feature = "test-fakes")]
pub fn open_fake_from_env() -> Option<Result<Arc<FakeAmdSmi>, AmdSmiError>> {
    let path = std::env::var_os(FAKE_AMDSMI_ENV).filter(|p| !p.is_empty())?;
    Some(FakeAmdSmi::from_state_file(std::path::PathBuf::from(path)).map(Arc::new))
}

/// Every amdsmi GPU: the fake one when `JOULEBENCH_FAKE_AMDSMI` is set, else the
/// library's.
pub fn list_devices() -> Result<Vec<Arc<dyn AmdSmiDevice>>, AmdSmiError> {
    #[cfg(feature = "test-fakes")]
    if let Some(fake) = open_fake_from_env() {
        return Ok(vec![fake? as Arc<dyn AmdSmiDevice>]);
    }
    Ok(smi::list_real_devices()?
        .into_iter()
        .map(|d| Arc::new(d) as Arc<dyn AmdSmiDevice>)
        .collect())
}

/// The amdsmi GPU at the wanted PCI address (never by index). Honours
/// `JOULEBENCH_FAKE_AMDSMI` and the fake's `match_any`.
pub fn open_device(wanted: &DeviceMatch) -> Result<Arc<dyn AmdSmiDevice>, AmdSmiError> {
    #[cfg(feature = "test-fakes")]
    if let Some(fake) = open_fake_from_env() {
        let fake = fake?;
        let id = fake.identity()?;
        if fake.matches_any()? || id.matches(wanted) {
            return Ok(fake);
        }
        return Err(AmdSmiError::NotFound(format!(
            "{wanted} (the fake device in ${FAKE_AMDSMI_ENV} is {})",
            id.describe()
        )));
    }
    for dev in smi::list_real_devices()? {
        if dev.identity().is_ok_and(|id| id.matches(wanted)) {
            return Ok(Arc::new(dev));
        }
    }
    Err(AmdSmiError::NotFound(wanted.to_string()))
}

/// Power control for the device a power state file names, for `joulebench power
/// restore`.
pub fn open_power_control_for_state(
    state: &PowerStateFile,
) -> Result<Box<dyn PowerControl>, PowerError> {
    let wanted = DeviceMatch {
        uuid: None,
        pci_bus_id: state.device.pci_bus_id.clone(),
    };
    let device = match state.device_kind.as_str() {
        #[cfg(feature = "test-fakes")]
        DEVICE_KIND_FAKE_AMDSMI => {
            let fake = open_fake_from_env()
                .ok_or_else(|| {
                    PowerError::Unavailable(format!(
                        "this state file was written on the fake amdsmi device; set {FAKE_AMDSMI_ENV} to its state file"
                    ))
                })?
                .map_err(|e| e.into_power_error("opening the fake amdsmi device"))?;
            let id = fake
                .identity()
                .map_err(|e| e.into_power_error("reading the fake device"))?;
            if !id.matches(&wanted) {
                return Err(PowerError::Unavailable(format!(
                    "the fake device in ${FAKE_AMDSMI_ENV} is {}, not the recorded {wanted}",
                    id.describe()
                )));
            }
            fake as Arc<dyn AmdSmiDevice>
        }
        DEVICE_KIND_AMDSMI => {
            open_device(&wanted).map_err(|e| e.into_power_error("opening the recorded GPU"))?
        }
        #[cfg(not(feature = "test-fakes"))]
        DEVICE_KIND_FAKE_AMDSMI => {
            return Err(PowerError::Unavailable(
                "this state file was written on the fake amdsmi device of a test build; restore it with a test build (the test-fakes feature)".into(),
            ))
        }
        other => {
            return Err(PowerError::Unavailable(format!(
                "this state file was written for a '{other}' device, which amdsmi cannot restore"
            )))
        }
    };
    Ok(Box::new(AmdSmiPowerControl::new(device)))
}
