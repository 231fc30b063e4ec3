//! Core's `PowerControl` over amdgpu's hwmon `power1_cap` (µW; `power1_cap_min`,
//! `power1_cap_max` and, on newer kernels, `power1_cap_default` beside it), for AMD
//! GPUs without amdsmi. It only translates; the guard (`crate::guard`) keeps the
//! original cap and restores it.

use crate::guard::PowerStateFile;
use crate::nvml::PciBusId;
use crate::sysfs::hwmon::{find_by_pci, HwmonDevice, AMDGPU};
use crate::sysfs::{Sysfs, SysfsError};
use joulebench_core::{DeviceInfo, PowerControl, PowerError, PowerLimits};

/// `device_kind` in a power state file written for a hwmon `power1_cap`.
pub const DEVICE_KIND_HWMON: &str = "hwmon";

/// What a user without the right to write `power1_cap` is told.
pub const HWMON_PERMISSION_HINT: &str = "writing power1_cap needs root; run joulebench as root, \
or have an administrator set the cap (e.g. `echo <microwatts> > .../hwmon/hwmonN/power1_cap`)";

pub struct HwmonPowerControl {
    fs: Sysfs,
    hwmon: HwmonDevice,
}

fn power_error(e: SysfsError, what: &str) -> PowerError {
    match e {
        SysfsError::PermissionDenied { .. } => {
            PowerError::NotPermitted(HWMON_PERMISSION_HINT.into())
        }
        SysfsError::Missing { .. } => PowerError::Unavailable(format!("{what}: {e}")),
        e => PowerError::Failed(format!("{what}: {e}")),
    }
}

impl HwmonPowerControl {
    /// `None` where the directory has no `power1_cap`.
    pub fn new(fs: &Sysfs, hwmon: &HwmonDevice) -> Option<HwmonPowerControl> {
        hwmon.has("power1_cap").then(|| HwmonPowerControl {
            fs: fs.clone(),
            hwmon: hwmon.clone(),
        })
    }

    /// The device as power state files record it.
    pub fn device_info(&self) -> DeviceInfo {
        hwmon_device_info(&self.hwmon)
    }

    fn read_uw(&self, name: &str) -> Result<u64, PowerError> {
        self.fs
            .read_u64(&self.hwmon.attr(name))
            .map_err(|e| power_error(e, &format!("reading {name}")))
    }
}

/// A hwmon GPU as records and state files name it: found again by its PCI address.
pub fn hwmon_device_info(hwmon: &HwmonDevice) -> DeviceInfo {
    DeviceInfo {
        name: hwmon.describe(),
        uuid: hwmon.unique_id.clone(),
        pci_bus_id: hwmon.pci_bus_id.map(|p| p.to_string()),
        ..DeviceInfo::default()
    }
}

impl PowerControl for HwmonPowerControl {
    fn limits(&mut self) -> Result<PowerLimits, PowerError> {
        let current = self.read_uw("power1_cap")?;
        let max = self.read_uw("power1_cap_max")?;
        let min = self
            .fs
            .read_u64_if_present(&self.hwmon.attr("power1_cap_min"))
            .map_err(|e| power_error(e, "reading power1_cap_min"))?
            .unwrap_or(0);
        // older kernels have no power1_cap_default; the board's maximum stands in
        let default = self
            .fs
            .read_u64_if_present(&self.hwmon.attr("power1_cap_default"))
            .map_err(|e| power_error(e, "reading power1_cap_default"))?
            .unwrap_or(max);
        let w = |uw: u64| uw as f64 / 1e6;
        Ok(PowerLimits {
            min_w: w(min),
            max_w: w(max),
            default_w: w(default),
            current_w: w(current),
        })
    }

    fn set_limit_w(&mut self, watts: f64) -> Result<(), PowerError> {
        self.limits()?.check(watts)?;
        let uw = (watts * 1e6).round() as u64;
        self.fs
            .write_u64(&self.hwmon.attr("power1_cap"), uw)
            .map_err(|e| power_error(e, &format!("setting power1_cap to {watts:.0} W")))
    }

    fn enforced_limit_w(&mut self) -> Result<f64, PowerError> {
        Ok(self.read_uw("power1_cap")? as f64 / 1e6)
    }
}

/// For `joulebench power restore`: the amdgpu hwmon directory at the recorded PCI
/// address, under `$JOULEBENCH_SYSFS_ROOT` when set.
pub fn open_power_control_for_state(
    state: &PowerStateFile,
) -> Result<Box<dyn PowerControl>, PowerError> {
    let pci = state
        .device
        .pci_bus_id
        .as_deref()
        .and_then(PciBusId::parse)
        .ok_or_else(|| {
            PowerError::Unavailable(format!(
                "the state file for {} records no PCI address to find its hwmon directory by",
                state.device.name
            ))
        })?;
    let fs = Sysfs::from_env();
    let hwmon = find_by_pci(&fs, &[AMDGPU], &pci)
        .map_err(|e| {
            PowerError::Unavailable(format!("looking for the amdgpu hwmon of {pci}: {e}"))
        })?
        .ok_or_else(|| {
            PowerError::Unavailable(format!(
                "no amdgpu hwmon directory for {pci} under {}",
                fs.path("/sys/class/hwmon").display()
            ))
        })?;
    HwmonPowerControl::new(&fs, &hwmon)
        .map(|c| Box::new(c) as Box<dyn PowerControl>)
        .ok_or_else(|| PowerError::Unavailable(format!("{} has no power1_cap", hwmon.describe())))
}
