//! Which hwmon directory is which GPU. Each `/sys/class/hwmon/hwmonN` names its
//! driver in `name` (`amdgpu`, `xe`, `i915`) and links to its PCI device through
//! `device`, whose target ends in the PCI address: that address, never the hwmon
//! number (which changes from boot to boot), is how a meter finds its GPU.

use super::{Sysfs, SysfsError};
use crate::nvml::PciBusId;
use std::path::{Path, PathBuf};

/// The GPU drivers whose hwmon files joulebench reads.
pub const AMDGPU: &str = "amdgpu";
pub const XE: &str = "xe";
pub const I915: &str = "i915";

/// One hwmon directory of a GPU driver.
#[derive(Clone, Debug, PartialEq)]
pub struct HwmonDevice {
    pub dir: PathBuf,
    /// The contents of `name`: the driver.
    pub driver: String,
    /// From where `device` links to; `None` where it does not end in a PCI address.
    pub pci_bus_id: Option<PciBusId>,
    /// `device/vendor`: 0x1002 AMD, 0x8086 Intel.
    pub vendor_id: Option<u32>,
    /// `device/product_name` where the driver has it (amdgpu, some boards).
    pub product_name: Option<String>,
    /// `device/unique_id` where the driver has it (amdgpu, some boards).
    pub unique_id: Option<String>,
}

impl HwmonDevice {
    pub fn attr(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn has(&self, name: &str) -> bool {
        self.attr(name).exists()
    }

    pub fn vendor(&self) -> &'static str {
        match self.driver.as_str() {
            AMDGPU => "AMD",
            XE | I915 => "Intel",
            _ => "unknown vendor",
        }
    }

    /// "AMD Instinct MI210 (amdgpu, 0000:03:00.0)".
    pub fn describe(&self) -> String {
        let name = self
            .product_name
            .clone()
            .unwrap_or_else(|| format!("{} GPU", self.vendor()));
        match &self.pci_bus_id {
            Some(p) => format!("{name} ({}, {p})", self.driver),
            None => format!("{name} ({})", self.driver),
        }
    }

    pub fn hwmon_name(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// Every hwmon directory whose driver is one of `drivers`. A machine without
/// `/sys/class/hwmon` is an error that says so.
pub fn list_gpu_hwmons(fs: &Sysfs, drivers: &[&str]) -> Result<Vec<HwmonDevice>, SysfsError> {
    let class = fs.path("/sys/class/hwmon");
    let mut found = Vec::new();
    for dir in fs.list(&class, "hwmon")? {
        let Ok(driver) = fs.read_string(&dir.join("name")) else {
            continue;
        };
        if !drivers.contains(&driver.as_str()) {
            continue;
        }
        found.push(describe_dir(fs, &dir, driver));
    }
    Ok(found)
}

fn describe_dir(fs: &Sysfs, dir: &Path, driver: String) -> HwmonDevice {
    let device = dir.join("device");
    let pci_bus_id = fs.link_name(&device).and_then(|n| PciBusId::parse(&n));
    let text = |name: &str| {
        fs.read_string(&device.join(name))
            .ok()
            .filter(|s| !s.is_empty())
    };
    HwmonDevice {
        dir: dir.to_path_buf(),
        driver,
        pci_bus_id,
        vendor_id: text("vendor")
            .and_then(|v| u32::from_str_radix(v.trim_start_matches("0x"), 16).ok()),
        product_name: text("product_name"),
        unique_id: text("unique_id"),
    }
}

/// The hwmon directory of the GPU at `pci`, among `drivers`.
pub fn find_by_pci(
    fs: &Sysfs,
    drivers: &[&str],
    pci: &PciBusId,
) -> Result<Option<HwmonDevice>, SysfsError> {
    Ok(list_gpu_hwmons(fs, drivers)?
        .into_iter()
        .find(|h| h.pci_bus_id.as_ref() == Some(pci)))
}
