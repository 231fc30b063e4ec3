//! The driver's NVML through nvml-wrapper. NVML is loaded at run time, so a machine
//! without an NVIDIA driver builds and runs everything else; opening a device there
//! returns `NvmlError::Unavailable` with a reason a user can act on.

use super::{
    ClocksMhz, DeviceIdentity, DeviceMatch, NvmlDevice, NvmlError, PowerFieldsMw, PowerLimitsMw,
    ReferenceClocksMhz,
};
use nvml_wrapper::enum_wrappers::device::{Clock, PerformanceState, TemperatureSensor};
use nvml_wrapper::enums::device::GpuLockedClocksSetting;
use nvml_wrapper::enums::device::SampleValue;
use nvml_wrapper::error::NvmlError as WrapperError;
use nvml_wrapper::structs::device::FieldId;
use nvml_wrapper::sys_exports::field_id::{NVML_FI_DEV_POWER_AVERAGE, NVML_FI_DEV_POWER_INSTANT};
use nvml_wrapper::{Device, Nvml};
use std::sync::OnceLock;

/// Initialised once per process and never shut down: devices borrow it for the
/// life of the process, and nvmlInit is reference-counted by the driver anyway.
static NVML: OnceLock<Nvml> = OnceLock::new();

fn nvml() -> Result<&'static Nvml, NvmlError> {
    if let Some(n) = NVML.get() {
        return Ok(n);
    }
    let n = Nvml::init().map_err(|e| NvmlError::Unavailable(init_failure_reason(&e)))?;
    // Another thread may have won the race; its instance is as good as ours.
    let _ = NVML.set(n);
    NVML.get()
        .ok_or_else(|| NvmlError::Unavailable("NVML initialisation did not stick".into()))
}

/// Why NVML cannot be used on this machine, or `None` if it can.
pub fn nvml_unavailable_reason() -> Option<String> {
    match nvml() {
        Ok(_) => None,
        Err(NvmlError::Unavailable(r)) => Some(r),
        Err(e) => Some(e.to_string()),
    }
}

fn init_failure_reason(e: &WrapperError) -> String {
    match e {
        WrapperError::LibloadingError(inner) => format!(
            "the NVIDIA driver's NVML library could not be loaded ({inner}); \
             is the NVIDIA driver installed, and is this a machine with an NVIDIA GPU?"
        ),
        WrapperError::DriverNotLoaded => {
            "the NVIDIA kernel driver is not loaded (is there an NVIDIA GPU, and is the driver running?)".into()
        }
        WrapperError::NoPermission => {
            "NVML has no permission to talk to the NVIDIA driver (check /dev/nvidia* permissions)".into()
        }
        WrapperError::LibRmVersionMismatch => {
            "the NVML library and the NVIDIA kernel driver are different versions (reboot or reload the driver)".into()
        }
        WrapperError::FailedToLoadSymbol(s) => {
            format!("the NVML library is too old for joulebench (missing {s}); update the NVIDIA driver")
        }
        other => format!("NVML could not be initialised: {other}"),
    }
}

fn map_err(e: WrapperError) -> NvmlError {
    match e {
        WrapperError::NotSupported | WrapperError::FunctionNotFound => NvmlError::NotSupported,
        WrapperError::FailedToLoadSymbol(_) => NvmlError::NotSupported,
        WrapperError::NoPermission => NvmlError::NoPermission(
            "the driver refused (changing power limits needs root or CAP_SYS_ADMIN)".into(),
        ),
        WrapperError::GpuLost => NvmlError::GpuLost,
        WrapperError::NotFound => NvmlError::NotFound("the requested device".into()),
        WrapperError::InvalidArg => NvmlError::InvalidArgument("NVML rejected an argument".into()),
        WrapperError::Uninitialized | WrapperError::DriverNotLoaded => {
            NvmlError::Unavailable(e.to_string())
        }
        other => NvmlError::Failed(other.to_string()),
    }
}

fn optional<T>(r: Result<T, WrapperError>) -> Result<Option<T>, NvmlError> {
    super::optional(r.map_err(map_err))
}

/// One GPU as the driver sees it.
pub struct RealDevice {
    device: Device<'static>,
    /// NVML's spelling; a fresh handle for changes is fetched by it.
    uuid: String,
}

impl RealDevice {
    /// The driver's device that matches, by UUID or PCI bus id.
    pub fn open(wanted: &DeviceMatch) -> Result<Self, NvmlError> {
        open_real_device(wanted)
    }

    fn new(device: Device<'static>) -> Result<Self, NvmlError> {
        let uuid = device.uuid().map_err(map_err)?;
        Ok(RealDevice { device, uuid })
    }

    /// nvml-wrapper wants a mutable handle for changes; a fresh one for the same UUID
    /// keeps every read lock-free.
    fn mutable(&self) -> Result<Device<'static>, NvmlError> {
        nvml()?.device_by_uuid(self.uuid.as_str()).map_err(map_err)
    }
}

pub(crate) fn list_real_devices() -> Result<Vec<RealDevice>, NvmlError> {
    let nvml = nvml()?;
    let count = nvml.device_count().map_err(map_err)?;
    (0..count)
        .map(|i| {
            nvml.device_by_index(i)
                .map_err(map_err)
                .and_then(RealDevice::new)
        })
        .collect()
}

pub(crate) fn open_real_device(wanted: &DeviceMatch) -> Result<RealDevice, NvmlError> {
    if wanted.uuid.is_none() && wanted.pci_bus_id.is_none() {
        return Err(NvmlError::NotFound(
            "a device without a UUID or PCI bus id (NVML devices are never matched by index)"
                .into(),
        ));
    }
    for d in list_real_devices()? {
        if wanted.matches(&d.identity()?) {
            return Ok(d);
        }
    }
    Err(NvmlError::NotFound(wanted.to_string()))
}

impl NvmlDevice for RealDevice {
    fn identity(&self) -> Result<DeviceIdentity, NvmlError> {
        let d = &self.device;
        let nvml = nvml()?;
        Ok(DeviceIdentity {
            name: d.name().map_err(map_err)?,
            uuid: Some(self.uuid.clone()),
            pci_bus_id: optional(d.pci_info())?.map(|p| p.bus_id),
            architecture: optional(d.architecture())?.map(|a| a.to_string()),
            compute_capability: optional(d.cuda_compute_capability())?
                .map(|c| format!("{}.{}", c.major, c.minor)),
            driver_version: nvml.sys_driver_version().ok(),
            memory_bytes: d.memory_info().ok().map(|m| m.total),
            fake: false,
        })
    }

    fn total_energy_mj(&self) -> Result<u64, NvmlError> {
        self.device.total_energy_consumption().map_err(map_err)
    }

    fn power_usage_mw(&self) -> Result<u32, NvmlError> {
        self.device.power_usage().map_err(map_err)
    }

    fn power_fields_mw(&self) -> Result<PowerFieldsMw, NvmlError> {
        let ids = [
            FieldId(NVML_FI_DEV_POWER_INSTANT),
            FieldId(NVML_FI_DEV_POWER_AVERAGE),
        ];
        let values = self.device.field_values_for(&ids).map_err(map_err)?;
        let as_mw = |i: usize| -> Option<u32> {
            match values.get(i)?.as_ref().ok()?.value.as_ref().ok()? {
                SampleValue::U32(v) => Some(*v),
                SampleValue::U64(v) => u32::try_from(*v).ok(),
                SampleValue::I64(v) => u32::try_from(*v).ok(),
                SampleValue::F64(v) => (v.is_finite() && *v >= 0.0).then_some(*v as u32),
            }
        };
        Ok(PowerFieldsMw {
            instant_mw: as_mw(0),
            average_mw: as_mw(1),
        })
    }

    fn power_limits_mw(&self) -> Result<PowerLimitsMw, NvmlError> {
        let d = &self.device;
        let c = d.power_management_limit_constraints().map_err(map_err)?;
        Ok(PowerLimitsMw {
            min_mw: c.min_limit,
            max_mw: c.max_limit,
            default_mw: d.power_management_limit_default().map_err(map_err)?,
            current_mw: d.power_management_limit().map_err(map_err)?,
        })
    }

    fn set_power_limit_mw(&self, limit_mw: u32) -> Result<(), NvmlError> {
        // nvml-wrapper wants a mutable handle for changes; a fresh one for the same
        // UUID keeps every read lock-free.
        let mut d = nvml()?
            .device_by_uuid(self.uuid.as_str())
            .map_err(map_err)?;
        d.set_power_management_limit(limit_mw).map_err(map_err)
    }

    fn enforced_limit_mw(&self) -> Result<u32, NvmlError> {
        self.device.enforced_power_limit().map_err(map_err)
    }

    fn clocks_mhz(&self) -> Result<ClocksMhz, NvmlError> {
        Ok(ClocksMhz {
            sm_mhz: optional(self.device.clock_info(Clock::SM))?,
            mem_mhz: optional(self.device.clock_info(Clock::Memory))?,
        })
    }

    fn reference_clocks_mhz(&self) -> Result<ReferenceClocksMhz, NvmlError> {
        Ok(ReferenceClocksMhz {
            default_sm_mhz: optional(self.device.default_applications_clock(Clock::SM))?,
            max_sm_mhz: optional(self.device.max_clock_info(Clock::SM))?,
        })
    }

    fn temperature_c(&self) -> Result<u32, NvmlError> {
        self.device
            .temperature(TemperatureSensor::Gpu)
            .map_err(map_err)
    }

    fn throttle_reasons(&self) -> Result<u64, NvmlError> {
        self.device
            .current_throttle_reasons()
            .map(|r| r.bits())
            .map_err(map_err)
    }

    fn supported_sm_clocks_mhz(&self) -> Result<Vec<u32>, NvmlError> {
        // the graphics clocks the driver offers at the highest memory clock
        let mem = self.supported_mem_clocks_mhz()?;
        let top = mem.iter().copied().max().ok_or(NvmlError::NotSupported)?;
        self.device.supported_graphics_clocks(top).map_err(map_err)
    }

    fn supported_mem_clocks_mhz(&self) -> Result<Vec<u32>, NvmlError> {
        self.device.supported_memory_clocks().map_err(map_err)
    }

    fn set_locked_sm_clocks_mhz(&self, min_mhz: u32, max_mhz: u32) -> Result<(), NvmlError> {
        self.mutable()?
            .set_gpu_locked_clocks(GpuLockedClocksSetting::Numeric {
                min_clock_mhz: min_mhz,
                max_clock_mhz: max_mhz,
            })
            .map_err(map_err)
    }

    fn reset_locked_sm_clocks(&self) -> Result<(), NvmlError> {
        self.mutable()?.reset_gpu_locked_clocks().map_err(map_err)
    }

    fn set_locked_mem_clocks_mhz(&self, min_mhz: u32, max_mhz: u32) -> Result<(), NvmlError> {
        self.mutable()?
            .set_mem_locked_clocks(min_mhz, max_mhz)
            .map_err(map_err)
    }

    fn reset_locked_mem_clocks(&self) -> Result<(), NvmlError> {
        self.mutable()?.reset_mem_locked_clocks().map_err(map_err)
    }

    fn performance_state(&self) -> Result<Option<u32>, NvmlError> {
        use PerformanceState::*;
        let p = self.device.performance_state().map_err(map_err)?;
        Ok(match p {
            Zero => Some(0),
            One => Some(1),
            Two => Some(2),
            Three => Some(3),
            Four => Some(4),
            Five => Some(5),
            Six => Some(6),
            Seven => Some(7),
            Eight => Some(8),
            Nine => Some(9),
            Ten => Some(10),
            Eleven => Some(11),
            Twelve => Some(12),
            Thirteen => Some(13),
            Fourteen => Some(14),
            Fifteen => Some(15),
            Unknown => None,
        })
    }
}
