//! Where joules come from and the one place a machine's state changes: the NVML,
//! amdsmi, hwmon (AMD and Intel GPUs) and RAPL (host CPU and DRAM) meters, power-cap
//! control with guaranteed restore, the simulated device (backend, meter and
//! power control from one model), and a whole program's energy under guarded
//! settings (`run`). It knows no kernels.

pub mod amd;
pub mod attach;
#[cfg(feature = "test-fakes")]
mod fake_store;
pub mod guard;
pub mod host;
pub mod hwmon_meter;
pub mod hwmon_power;
pub mod identity;
pub mod intel;
pub mod monitor;
pub mod nvml;
pub mod polled_meter;
pub mod poller;
pub mod rapl;
pub mod restore;
#[cfg(unix)]
pub mod run;
pub mod sim;
pub mod survey;
pub mod sysfs;
pub mod wrapping_counter;
