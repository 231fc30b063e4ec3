//! Core's `PowerControl` over amdsmi's power cap (µW). It only translates; keeping
//! the original cap and restoring it on every exit path is the guard's job.

use super::AmdSmiDevice;
use joulebench_core::{PowerControl, PowerError, PowerLimits};
use std::sync::Arc;

pub struct AmdSmiPowerControl {
    device: Arc<dyn AmdSmiDevice>,
}

impl AmdSmiPowerControl {
    pub fn new(device: Arc<dyn AmdSmiDevice>) -> Self {
        AmdSmiPowerControl { device }
    }
}

impl PowerControl for AmdSmiPowerControl {
    fn limits(&mut self) -> Result<PowerLimits, PowerError> {
        self.device
            .power_cap_info()
            .map(|c| c.to_watts())
            .map_err(|e| e.into_power_error("reading the power cap"))
    }

    fn set_limit_w(&mut self, watts: f64) -> Result<(), PowerError> {
        self.limits()?.check(watts)?;
        let cap_uw = (watts * 1e6).round() as u64;
        self.device
            .set_power_cap_uw(cap_uw)
            .map_err(|e| e.into_power_error(&format!("setting the power cap to {watts:.0} W")))
    }

    fn enforced_limit_w(&mut self) -> Result<f64, PowerError> {
        self.device
            .power_cap_info()
            .map(|c| c.cap_uw as f64 / 1e6)
            .map_err(|e| e.into_power_error("reading the power cap"))
    }
}
