//! Where joules come from and the one place a machine's state changes: the NVML
//! meters, power-cap control with guaranteed restore, and the simulated device
//! (backend, meter and power control from one model). It knows no kernels.

pub mod guard;
pub mod identity;
pub mod monitor;
pub mod nvml;
pub mod poller;
pub mod sim;
