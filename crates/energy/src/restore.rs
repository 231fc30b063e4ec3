//! `joulebench power restore` for every kind of device a power state file can
//! name: it reopens the device the way the sweep that capped it did.

use crate::guard::PowerStateFile;
use crate::{amd, hwmon_power, nvml};
use joulebench_core::{ClockControl, PowerControl, PowerError};

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
