//! Core's `PowerControl` over an NVML device. It only translates (watts ↔ milliwatts,
//! NVML errors ↔ `PowerError`); keeping the original limit and restoring it is the
//! guard's job (`crate::guard`), which wraps this.

use super::NvmlDevice;
use joulebench_core::{PowerControl, PowerError, PowerLimits};
use std::sync::Arc;

/// What a user without the right to change the limit is told.
pub const PERMISSION_HINT: &str = "changing the power limit needs root (or CAP_SYS_ADMIN); \
run joulebench as root, or have an administrator set the cap with `nvidia-smi -pl <watts>`";

pub struct NvmlPowerControl {
    device: Arc<dyn NvmlDevice>,
}

impl NvmlPowerControl {
    pub fn new(device: Arc<dyn NvmlDevice>) -> Self {
        NvmlPowerControl { device }
    }

    pub fn device(&self) -> &Arc<dyn NvmlDevice> {
        &self.device
    }
}

impl PowerControl for NvmlPowerControl {
    fn limits(&mut self) -> Result<PowerLimits, PowerError> {
        self.device
            .power_limits_mw()
            .map(|l| l.to_watts())
            .map_err(|e| e.into_power_error("reading the power limits"))
    }

    fn set_limit_w(&mut self, watts: f64) -> Result<(), PowerError> {
        // Checked here too: a value NVML would clamp or reject must not reach it.
        self.limits()?.check(watts)?;
        let limit_mw = (watts * 1000.0).round() as u32;
        self.device
            .set_power_limit_mw(limit_mw)
            .map_err(|e| e.into_power_error(&format!("setting the power limit to {watts:.0} W")))
    }

    fn enforced_limit_w(&mut self) -> Result<f64, PowerError> {
        self.device
            .enforced_limit_mw()
            .map(|mw| mw as f64 / 1000.0)
            .map_err(|e| e.into_power_error("reading the enforced power limit"))
    }
}
