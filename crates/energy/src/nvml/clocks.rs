//! Core's `ClockControl` over an NVML device: locked graphics (SM) and memory clocks.
//! It only translates; putting the default clocks back on every exit path is the
//! guard's job (`crate::guard`), which wraps this.

use super::{NvmlDevice, NvmlError};
use joulebench_core::{ClockControl, ClockLocks, PowerError};
use std::sync::Arc;

/// What a user without the right to lock clocks is told.
pub const CLOCK_PERMISSION_HINT: &str = "locking GPU clocks needs root (or CAP_SYS_ADMIN); \
run joulebench as root, or have an administrator lock them with `nvidia-smi -lgc <min>,<max>`";

pub struct NvmlClockControl {
    device: Arc<dyn NvmlDevice>,
}

impl NvmlClockControl {
    pub fn new(device: Arc<dyn NvmlDevice>) -> Self {
        NvmlClockControl { device }
    }
}

fn clock_error(e: NvmlError, what: &str) -> PowerError {
    match e {
        NvmlError::NoPermission(_) => PowerError::NotPermitted(CLOCK_PERMISSION_HINT.into()),
        other => other.into_power_error(what),
    }
}

fn sorted(mut v: Vec<u32>) -> Vec<u32> {
    v.sort_unstable();
    v.dedup();
    v
}

impl ClockControl for NvmlClockControl {
    fn supported_sm_clocks_mhz(&mut self) -> Result<Vec<u32>, PowerError> {
        self.device
            .supported_sm_clocks_mhz()
            .map(sorted)
            .map_err(|e| clock_error(e, "reading the supported SM clocks"))
    }

    fn supported_mem_clocks_mhz(&mut self) -> Result<Vec<u32>, PowerError> {
        self.device
            .supported_mem_clocks_mhz()
            .map(sorted)
            .map_err(|e| clock_error(e, "reading the supported memory clocks"))
    }

    fn lock_sm_clocks_mhz(&mut self, min_mhz: u32, max_mhz: u32) -> Result<(), PowerError> {
        self.device
            .set_locked_sm_clocks_mhz(min_mhz, max_mhz)
            .map_err(|e| {
                clock_error(
                    e,
                    &format!("locking the SM clock at {min_mhz}–{max_mhz} MHz"),
                )
            })
    }

    fn reset_sm_clocks(&mut self) -> Result<(), PowerError> {
        self.device
            .reset_locked_sm_clocks()
            .map_err(|e| clock_error(e, "resetting the SM clocks"))
    }

    fn lock_mem_clocks_mhz(&mut self, min_mhz: u32, max_mhz: u32) -> Result<(), PowerError> {
        self.device
            .set_locked_mem_clocks_mhz(min_mhz, max_mhz)
            .map_err(|e| {
                clock_error(
                    e,
                    &format!("locking the memory clock at {min_mhz}–{max_mhz} MHz"),
                )
            })
    }

    fn reset_mem_clocks(&mut self) -> Result<(), PowerError> {
        self.device
            .reset_locked_mem_clocks()
            .map_err(|e| clock_error(e, "resetting the memory clocks"))
    }

    fn clock_locks(&mut self) -> Result<ClockLocks, PowerError> {
        let (sm_mhz, mem_mhz) = self
            .device
            .locked_clocks_mhz()
            .map_err(|e| clock_error(e, "reading which clocks are locked"))?;
        Ok(ClockLocks { sm_mhz, mem_mhz })
    }
}
