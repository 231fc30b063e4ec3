//! `joulebench power restore` and `power status` for every kind of device joulebench
//! drives: a state file's device reopened the way the sweep that changed it opened
//! it, and every device of every control listed.

use crate::guard::PowerStateFile;
use crate::sysfs::hwmon::{list_gpu_hwmons, AMDGPU};
use crate::sysfs::Sysfs;
use crate::{amd, hwmon_power, nvml};
use joulebench_core::{ClockControl, DeviceInfo, PowerControl, PowerError};

/// The clock control of the device `state` recorded, to reset the clocks a killed
/// sweep locked (NVML devices; others lock no clocks).
pub fn open_clock_control_for_state(
    state: &PowerStateFile,
) -> Result<Box<dyn ClockControl>, PowerError> {
    match state.device_kind.as_str() {
        nvml::DEVICE_KIND_NVML | nvml::DEVICE_KIND_FAKE => nvml::open_clock_control_for_state(state),
        other => Err(PowerError::Unavailable(format!(
            "this state file records locked clocks of a '{other}' device, whose clocks this joulebench cannot reset"
        ))),
    }
}

/// The power control of the device `state` recorded, by its `device_kind`.
pub fn open_power_control_for_state(
    state: &PowerStateFile,
) -> Result<Box<dyn PowerControl>, PowerError> {
    match state.device_kind.as_str() {
        nvml::DEVICE_KIND_NVML | nvml::DEVICE_KIND_FAKE => nvml::open_power_control_for_state(state),
        amd::DEVICE_KIND_AMDSMI | amd::DEVICE_KIND_FAKE_AMDSMI => {
            amd::open_power_control_for_state(state)
        }
        hwmon_power::DEVICE_KIND_HWMON => hwmon_power::open_power_control_for_state(state),
        other => Err(PowerError::Unavailable(format!(
            "this state file was written for a '{other}' device, which this joulebench cannot reopen"
        ))),
    }
}

/// A device whose power limit (and clocks) joulebench can drive, for `joulebench
/// power status`.
pub struct StatusTarget {
    pub device: DeviceInfo,
    /// As state files name it: "nvml", "amdsmi", "hwmon", or a fake's name.
    pub device_kind: String,
    pub power: Option<Box<dyn PowerControl>>,
    pub clocks: Option<Box<dyn ClockControl>>,
}

/// Every device of every control joulebench drives — NVML, amdsmi, and amdgpu's
/// hwmon `power1_cap` where amdsmi does not already cover the GPU — and, for each
/// kind found missing, why.
pub fn status_targets() -> (Vec<StatusTarget>, Vec<String>) {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    match nvml::list_devices() {
        Ok(devices) => {
            for dev in devices {
                match dev.identity() {
                    Ok(id) => found.push(StatusTarget {
                        device: id.to_device_info(),
                        device_kind: id.device_kind().to_string(),
                        power: Some(Box::new(nvml::NvmlPowerControl::new(dev.clone()))),
                        clocks: Some(Box::new(nvml::NvmlClockControl::new(dev.clone()))),
                    }),
                    Err(e) => missing.push(format!("NVML: a device could not be read: {e}")),
                }
            }
        }
        Err(e) => missing.push(format!("NVML: {e}")),
    }
    let mut amd_pci: Vec<String> = Vec::new();
    match amd::list_devices() {
        Ok(devices) => {
            for dev in devices {
                match dev.identity() {
                    Ok(id) => {
                        let device = id.to_device_info();
                        amd_pci.extend(device.pci_bus_id.iter().map(|p| normalize_pci(p)));
                        found.push(StatusTarget {
                            device,
                            device_kind: id.device_kind().to_string(),
                            power: Some(Box::new(amd::AmdSmiPowerControl::new(dev.clone()))),
                            clocks: None,
                        });
                    }
                    Err(e) => missing.push(format!("amdsmi: a device could not be read: {e}")),
                }
            }
        }
        Err(e) => missing.push(format!("amdsmi: {e}")),
    }
    let fs = Sysfs::from_env();
    match list_gpu_hwmons(&fs, &[AMDGPU]) {
        Ok(hwmons) => {
            for h in hwmons {
                let Some(control) = hwmon_power::HwmonPowerControl::new(&fs, &h) else {
                    continue;
                };
                let device = control.device_info();
                let pci = device.pci_bus_id.as_deref().map(normalize_pci);
                if pci.is_some_and(|p| amd_pci.contains(&p)) {
                    continue; // amdsmi drives this GPU's cap already
                }
                found.push(StatusTarget {
                    device,
                    device_kind: hwmon_power::DEVICE_KIND_HWMON.to_string(),
                    power: Some(Box::new(control)),
                    clocks: None,
                });
            }
        }
        Err(e) => missing.push(format!("hwmon: {e}")),
    }
    (found, missing)
}

fn normalize_pci(p: &str) -> String {
    crate::identity::normalize_pci_bus_id(p).unwrap_or_else(|| p.to_ascii_lowercase())
}
