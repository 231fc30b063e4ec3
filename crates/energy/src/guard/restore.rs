//! `joulebench power restore` and `power status`: the way back after an exit no
//! handler could catch (SIGKILL, a power loss, a kernel panic), and a look at where a
//! device's limit stands and whether a restore is owed.

use super::state::{owner_status, read_state_file, remove_state_file, state_file_for};
use super::{OwnerStatus, PowerStateFile, SAME_LIMIT_W};
use joulebench_core::{ClockControl, DeviceInfo, PowerControl, PowerError, PowerLimits};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What a restore did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RestoreReport {
    pub device: String,
    pub restored_w: f64,
    /// The limit just before the restore, where it could be read.
    pub was_w: Option<f64>,
    pub state_file: PathBuf,
    /// The clocks that were locked and are back at the default ("SM", "memory").
    pub clocks_reset: Vec<String>,
}

impl RestoreReport {
    /// "; SM clocks reset to the default", or nothing where no clock was locked.
    pub fn clocks_note(&self) -> String {
        if self.clocks_reset.is_empty() {
            String::new()
        } else {
            format!(
                "; {} clocks reset to the default",
                self.clocks_reset.join(" and ")
            )
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RestoreOptions {
    /// Restore even though the process that wrote the file still runs (or ran on
    /// another host).
    pub force: bool,
}

/// Restores the limit a state file recorded and removes the file. `open_device`
/// opens the power control for the recorded device (for NVML:
/// `nvml::open_power_control_for_state`). Refuses while the writing process still
/// runs: it restores the limit itself when it ends.
pub fn restore_from_state_file<F>(path: &Path, open_device: F) -> Result<RestoreReport, PowerError>
where
    F: FnOnce(&PowerStateFile) -> Result<Box<dyn PowerControl>, PowerError>,
{
    restore_from_state_file_with(path, RestoreOptions::default(), open_device)
}

pub fn restore_from_state_file_with<F>(
    path: &Path,
    options: RestoreOptions,
    open_device: F,
) -> Result<RestoreReport, PowerError>
where
    F: FnOnce(&PowerStateFile) -> Result<Box<dyn PowerControl>, PowerError>,
{
    restore_from_state_file_full(path, options, open_device, |s| {
        Err(PowerError::Unavailable(format!(
            "{} also records locked clocks of {}, and no clock control was given to reset them",
            path.display(),
            s.device.name
        )))
    })
}

/// [`restore_from_state_file_with`] for a state file that may record locked clocks
/// too: `open_clocks` opens the device's clock control (for NVML:
/// `nvml::open_clock_control_for_state`), called only when clocks were locked. The
/// clocks are reset first, then the limit; the file goes only when both are back.
pub fn restore_from_state_file_full<F, G>(
    path: &Path,
    options: RestoreOptions,
    open_device: F,
    open_clocks: G,
) -> Result<RestoreReport, PowerError>
where
    F: FnOnce(&PowerStateFile) -> Result<Box<dyn PowerControl>, PowerError>,
    G: FnOnce(&PowerStateFile) -> Result<Box<dyn ClockControl>, PowerError>,
{
    if !path.exists() {
        return Err(PowerError::Unavailable(format!(
            "no restore is pending: {} does not exist",
            path.display()
        )));
    }
    let state = read_state_file(path)?;
    if !options.force {
        match owner_status(&state) {
            OwnerStatus::Alive | OwnerStatus::Us => {
                return Err(PowerError::Failed(format!(
                    "process {} that changed the power limit of {} still runs; it restores the \
                     limit when it ends (SIGINT or SIGTERM it), or force the restore",
                    state.pid, state.device.name
                )))
            }
            OwnerStatus::OtherHost => {
                return Err(PowerError::Failed(format!(
                    "{} was written on host {}; restore it there, or force the restore",
                    path.display(),
                    state.host.as_deref().unwrap_or("?")
                )))
            }
            OwnerStatus::Gone | OwnerStatus::Unknown => {}
        }
    }
    let mut clocks_reset = Vec::new();
    if state.locked_clocks.any() {
        let mut clocks = open_clocks(&state)?;
        if state.locked_clocks.sm {
            clocks.reset_sm_clocks()?;
            clocks_reset.push("SM".to_string());
        }
        if state.locked_clocks.mem {
            clocks.reset_mem_clocks()?;
            clocks_reset.push("memory".to_string());
        }
    }
    let mut control = open_device(&state)?;
    let limits = control.limits()?;
    // A file naming a limit this device cannot take is for another device, or damaged.
    limits.check(state.original_limit_w).map_err(|e| {
        PowerError::Failed(format!(
            "the recorded original limit does not fit this device ({e}); is {} the device it was written for?",
            state.device.name
        ))
    })?;
    let was_w = limits.current_w;
    if (was_w - state.original_limit_w).abs() >= SAME_LIMIT_W {
        control.set_limit_w(state.original_limit_w)?;
    }
    let now_w = control.limits()?.current_w;
    if (now_w - state.original_limit_w).abs() >= SAME_LIMIT_W.max(0.005 * state.original_limit_w) {
        return Err(PowerError::Failed(format!(
            "asked to restore {:.0} W but the limit reads {now_w:.0} W; the state file is kept",
            state.original_limit_w
        )));
    }
    remove_state_file(path)?;
    Ok(RestoreReport {
        device: state.device.name.clone(),
        restored_w: state.original_limit_w,
        was_w: Some(was_w),
        state_file: path.to_path_buf(),
        clocks_reset,
    })
}

/// A restore still owed for a device.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PendingRestore {
    pub path: PathBuf,
    pub state: PowerStateFile,
    pub owner: OwnerStatus,
}

/// Where a device's power limit stands.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PowerStatus {
    pub device: String,
    /// Current, default and allowed (min–max) limits, watts.
    pub limits: PowerLimits,
    pub enforced_w: Option<f64>,
    pub pending_restore: Option<PendingRestore>,
    /// A state file exists but cannot be read.
    pub pending_restore_error: Option<String>,
}

pub fn power_status(
    control: &mut dyn PowerControl,
    device: &DeviceInfo,
    state_dir: &Path,
) -> Result<PowerStatus, PowerError> {
    let limits = control.limits()?;
    let enforced_w = control.enforced_limit_w().ok();
    let path = state_file_for(state_dir, device);
    let (pending_restore, pending_restore_error) = if path.exists() {
        match read_state_file(&path) {
            Ok(state) => (
                Some(PendingRestore {
                    owner: owner_status(&state),
                    path,
                    state,
                }),
                None,
            ),
            Err(e) => (None, Some(e.to_string())),
        }
    } else {
        (None, None)
    };
    Ok(PowerStatus {
        device: device.name.clone(),
        limits,
        enforced_w,
        pending_restore,
        pending_restore_error,
    })
}
