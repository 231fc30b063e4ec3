//! Intel GPUs: the `xe` and `i915` drivers' hwmon `energy1_input` counter (µJ; its
//! power is the counter's rate of change, since neither driver reports power as
//! such), found by the GPU's PCI address.

use crate::hwmon_meter::{CounterProbe, HwmonEnergyMeter};
use crate::nvml::PciBusId;
use crate::sysfs::hwmon::{find_by_pci, HwmonDevice, I915, XE};
use crate::sysfs::{Sysfs, SysfsError};
use joulebench_core::MeterError;

pub const INTEL_DRIVERS: [&str; 2] = [XE, I915];

/// The Intel GPU's hwmon directory at `pci`, if it has an energy counter.
pub fn find(fs: &Sysfs, pci: &PciBusId) -> Result<Option<HwmonDevice>, SysfsError> {
    Ok(find_by_pci(fs, &INTEL_DRIVERS, pci)?.filter(|h| h.has("energy1_input")))
}

pub fn open_meter(fs: &Sysfs, hwmon: &HwmonDevice) -> Result<HwmonEnergyMeter, MeterError> {
    HwmonEnergyMeter::open(fs, hwmon, CounterProbe::default())
}
