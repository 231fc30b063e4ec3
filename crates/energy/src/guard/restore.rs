//! The one restore. The guard (on every exit path) and `joulebench power restore`
//! (after an exit no handler could catch: SIGKILL, a power loss) put a GPU back the
//! same way: each locked clock domain reset, then the power limit, every step tried
//! whatever failed before it and verified where the device can say, every failure
//! reported, and the state file kept for exactly what is still owed. Also `power
//! status`: where a device's limit and clocks stand, and whether a restore is owed.

use super::lock::DeviceLock;
use super::state::{
    owner_status, read_state_file, remove_state_file, restore_command, state_file_for,
    write_state_file,
};
use super::{default_lock_dir, LockedClocks, OwnerStatus, PowerStateFile, SAME_LIMIT_W};
use joulebench_core::{
    ClockControl, ClockLocks, DeviceInfo, PowerControl, PowerError, PowerLimits,
};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What a restore did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RestoreReport {
    pub device: String,
    /// The limit as found before the first change (put back where `limit_restored`).
    pub restored_w: f64,
    /// Whether the limit was owed (changed) and is back; a run that only locked
    /// clocks leaves the limit alone.
    pub limit_restored: bool,
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

    /// "the power limit of X restored to 300 W; SM clocks reset to the default".
    pub fn describe(&self) -> String {
        if self.limit_restored {
            format!(
                "power limit of {} restored to {:.0} W{}",
                self.device,
                self.restored_w,
                self.clocks_note()
            )
        } else if self.clocks_reset.is_empty() {
            format!("nothing of {} was left to restore", self.device)
        } else {
            format!(
                "{}: {} clocks reset to the default",
                self.device,
                self.clocks_reset.join(" and ")
            )
        }
    }
}

/// What is owed on a device, as a state file records it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Owed {
    pub original_w: f64,
    pub limit: bool,
    pub clocks: LockedClocks,
}

impl Owed {
    pub(crate) fn of(state: &PowerStateFile) -> Owed {
        Owed {
            original_w: state.original_limit_w,
            limit: state.limit_owed,
            clocks: state.locked_clocks,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        !self.limit && !self.clocks.any()
    }

    /// `state` saying that only this is owed.
    pub(crate) fn apply(&self, state: &mut PowerStateFile) {
        state.limit_owed = self.limit;
        state.locked_clocks = self.clocks;
    }
}

/// One restore attempt: what came back, what failed, what is still owed.
pub(crate) struct Attempt {
    pub clocks_reset: Vec<String>,
    pub limit_restored: bool,
    pub was_w: Option<f64>,
    pub failures: Vec<String>,
    pub left: Owed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Domain {
    Sm,
    Mem,
}

impl Domain {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Domain::Sm => "SM",
            Domain::Mem => "memory",
        }
    }

    fn reset(self, c: &mut dyn ClockControl) -> Result<(), PowerError> {
        match self {
            Domain::Sm => c.reset_sm_clocks(),
            Domain::Mem => c.reset_mem_clocks(),
        }
    }

    fn locked(self, l: &ClockLocks) -> Option<(u32, u32)> {
        match self {
            Domain::Sm => l.sm_mhz,
            Domain::Mem => l.mem_mhz,
        }
    }

    fn owed(self, c: &LockedClocks) -> bool {
        match self {
            Domain::Sm => c.sm,
            Domain::Mem => c.mem,
        }
    }

    pub(crate) fn flag(self, c: &mut LockedClocks) -> &mut bool {
        match self {
            Domain::Sm => &mut c.sm,
            Domain::Mem => &mut c.mem,
        }
    }
}

/// Put back what `owed` names: each locked clock domain reset, then the limit —
/// every step tried whatever failed before it, each verified where the device can
/// say. `clocks` and `power` are the device's controls, or why one could not be
/// opened. `check_range`: a recorded limit this device cannot take is refused (a
/// state file written for another device), not applied.
pub(crate) fn attempt(
    device: &str,
    owed: Owed,
    clocks: Result<&mut dyn ClockControl, PowerError>,
    power: Result<&mut dyn PowerControl, PowerError>,
    check_range: bool,
) -> Attempt {
    let mut a = Attempt {
        clocks_reset: Vec::new(),
        limit_restored: false,
        was_w: None,
        failures: Vec::new(),
        left: owed,
    };
    let owed_domains: Vec<Domain> = [Domain::Sm, Domain::Mem]
        .into_iter()
        .filter(|d| d.owed(&owed.clocks))
        .collect();
    if !owed_domains.is_empty() {
        match clocks {
            Err(e) => a.failures.push(format!(
                "the {} clocks could not be reset: {e}",
                names(&owed_domains)
            )),
            Ok(c) => {
                for d in owed_domains {
                    match reset_and_verify(c, d) {
                        Ok(()) => {
                            *d.flag(&mut a.left.clocks) = false;
                            a.clocks_reset.push(d.name().to_string());
                        }
                        Err(why) => a.failures.push(why),
                    }
                }
            }
        }
    }
    if owed.limit {
        match power
            .and_then(|p| restore_limit(p, device, owed.original_w, check_range, &mut a.was_w))
        {
            Ok(()) => {
                a.left.limit = false;
                a.limit_restored = true;
            }
            Err(e) => a.failures.push(format!(
                "the power limit could not be restored to {:.0} W: {e}",
                owed.original_w
            )),
        }
    }
    a
}

fn names(domains: &[Domain]) -> String {
    domains
        .iter()
        .map(|d| d.name())
        .collect::<Vec<_>>()
        .join(" and ")
}

fn reset_and_verify(c: &mut dyn ClockControl, d: Domain) -> Result<(), String> {
    d.reset(c).map_err(|e| {
        format!(
            "the {} clocks could not be reset to the default: {e}",
            d.name()
        )
    })?;
    // verified where the device can say; NVML cannot read locked clocks back
    if let Some((lo, hi)) = c.clock_locks().ok().and_then(|l| d.locked(&l)) {
        return Err(format!(
            "the {} clocks still read locked at {lo}–{hi} MHz after the reset",
            d.name()
        ));
    }
    Ok(())
}

fn restore_limit(
    power: &mut dyn PowerControl,
    device: &str,
    original_w: f64,
    check_range: bool,
    was: &mut Option<f64>,
) -> Result<(), PowerError> {
    let limits = power.limits();
    if let Ok(l) = &limits {
        *was = Some(l.current_w);
        if check_range {
            // a file naming a limit this device cannot take is for another device, or damaged
            l.check(original_w).map_err(|e| {
                PowerError::Failed(format!(
                    "the recorded original limit does not fit this device ({e}); is it the device \
                     the state file was written for?"
                ))
            })?;
        }
    }
    let was_w = limits.as_ref().ok().map(|l| l.current_w);
    if was_w.is_none_or(|w| (w - original_w).abs() >= SAME_LIMIT_W) {
        power.set_limit_w(original_w)?;
    }
    let now_w = power.limits()?.current_w;
    if (now_w - original_w).abs() >= SAME_LIMIT_W.max(0.005 * original_w) {
        return Err(PowerError::LimitReadsWrong {
            device: device.to_string(),
            asked_w: original_w,
            reads_w: now_w,
        });
    }
    Ok(())
}

/// After an attempt: the state file removed when nothing is owed, else rewritten
/// to say exactly what still is (a failed rewrite keeps the older file, which owes
/// more — never less). The error names every failure.
pub(crate) fn settle(
    device: &str,
    path: &Path,
    state: &mut PowerStateFile,
    a: Attempt,
) -> Result<RestoreReport, PowerError> {
    let report = RestoreReport {
        device: device.to_string(),
        restored_w: state.original_limit_w,
        limit_restored: a.limit_restored,
        was_w: a.was_w,
        state_file: path.to_path_buf(),
        clocks_reset: a.clocks_reset,
    };
    a.left.apply(state);
    if a.failures.is_empty() && a.left.is_empty() {
        remove_state_file(path)?;
        return Ok(report);
    }
    let mut failures = a.failures;
    if let Err(e) = write_state_file(path, state) {
        failures.push(format!(
            "the state file could not be narrowed to what is owed: {e}"
        ));
    }
    Err(PowerError::RestoreIncomplete {
        device: device.to_string(),
        failures,
        state_file: Some(path.to_path_buf()),
    })
}

/// How `power restore` runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreOptions {
    /// Restore even though the process that wrote the file seems to run still (a
    /// reused pid), or ran on another host. A GPU whose lock another process holds
    /// is never restored, forced or not.
    pub force: bool,
    /// Where the per-GPU locks live; `None`: [`default_lock_dir`].
    pub lock_dir: Option<PathBuf>,
}

impl RestoreOptions {
    pub fn forced() -> RestoreOptions {
        RestoreOptions {
            force: true,
            lock_dir: None,
        }
    }
}

/// Restores what a state file records and removes the file. `open_device` opens the
/// power control for the recorded device (for NVML:
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
            "the state file also records locked clocks of {}, and no clock control was given to reset them",
            s.device.name
        )))
    })
}

/// [`restore_from_state_file_with`] for a state file that may record locked clocks
/// too: `open_clocks` opens the device's clock control (for NVML:
/// `nvml::open_clock_control_for_state`), called only when clocks are owed. Under
/// the GPU's lock: refused, naming the holder, while another process holds it.
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
    let mut state = read_state_file(path)?;
    if !options.force {
        match owner_status(&state) {
            status @ (OwnerStatus::Alive | OwnerStatus::Us) => {
                return Err(PowerError::OwnerRunning {
                    device: state.device.name.clone(),
                    pid: state.pid,
                    this_process: status == OwnerStatus::Us,
                    state_file: path.to_path_buf(),
                })
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
    let lock_dir = options.lock_dir.clone().unwrap_or_else(default_lock_dir);
    let mut lock = DeviceLock::acquire(&lock_dir, &state.device_info())?;
    let _busy = super::hooks::RestoreInProgress::begin(&format!(
        "{} of {} (state file {})",
        state.describe_owed(),
        state.device.name,
        path.display()
    ));
    // read again under the lock: a run that held it may have restored meanwhile
    if !path.exists() {
        return Err(PowerError::Unavailable(format!(
            "no restore is pending: {} was removed while waiting",
            path.display()
        )));
    }
    state = read_state_file(path)?;
    let owed = Owed::of(&state);
    let mut clocks = if owed.clocks.any() {
        Some(open_clocks(&state))
    } else {
        None
    };
    let mut power = if owed.limit {
        Some(open_device(&state))
    } else {
        None
    };
    let no = || PowerError::Unavailable("not needed".into());
    let a = attempt(
        &state.device.name,
        owed,
        match clocks.as_mut() {
            Some(Ok(c)) => Ok(c.as_mut()),
            Some(Err(e)) => Err(PowerError::Failed(e.to_string())),
            None => Err(no()),
        },
        match power.as_mut() {
            Some(Ok(p)) => Ok(p.as_mut()),
            Some(Err(e)) => Err(PowerError::Failed(e.to_string())),
            None => Err(no()),
        },
        true,
    );
    let device = state.device.name.clone();
    let result = settle(&device, path, &mut state, a);
    if result.is_ok() && lock.found_owed() == Some(path) {
        lock.set_owed(None);
    }
    result
}

/// A restore still owed for a device.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PendingRestore {
    pub path: PathBuf,
    pub state: PowerStateFile,
    pub owner: OwnerStatus,
    /// `joulebench power restore`, with the state directory where it is not the default.
    pub command: String,
}

impl PendingRestore {
    fn read(path: PathBuf) -> Result<PendingRestore, PowerError> {
        let state = read_state_file(&path)?;
        Ok(PendingRestore {
            owner: owner_status(&state),
            command: restore_command(&path),
            path,
            state,
        })
    }
}

/// Where a device's power limit and clocks stand.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PowerStatus {
    pub device: String,
    /// How the device is driven: "nvml", "amdsmi", "hwmon", or a fake's name.
    pub device_kind: String,
    /// Current, default and allowed (min–max) limits, watts.
    pub limits: Option<PowerLimits>,
    /// Why the limits could not be read.
    pub limits_error: Option<String>,
    pub enforced_w: Option<f64>,
    /// Which clocks are locked now, where the device can say.
    pub clock_locks: Option<ClockLocks>,
    pub pending_restore: Option<PendingRestore>,
    /// A state file exists but cannot be read.
    pub pending_restore_error: Option<String>,
    /// A restore owed from another state directory, as the GPU's lock file says.
    pub owed_elsewhere: Option<PendingRestore>,
    /// The process holding the GPU's lock now.
    pub holder: Option<String>,
}

impl PowerStatus {
    /// Whether the limit differs from the default with no restore owed for it.
    pub fn limit_off_default_unowed(&self) -> bool {
        let owed = |p: &Option<PendingRestore>| p.as_ref().is_some_and(|p| p.state.limit_owed);
        self.limits
            .is_some_and(|l| !joulebench_core::sweep::same_limit_w(l.current_w, l.default_w))
            && !owed(&self.pending_restore)
            && !owed(&self.owed_elsewhere)
    }
}

/// Where the device's limit and clocks stand, and any restore owed for it in
/// `state_dir` or (as the GPU's lock file in `lock_dir` says) in another.
pub fn power_status_of<'a>(
    control: Option<&'a mut (dyn PowerControl + 'a)>,
    clocks: Option<&'a mut (dyn ClockControl + 'a)>,
    device: &DeviceInfo,
    device_kind: &str,
    state_dir: &Path,
    lock_dir: &Path,
) -> PowerStatus {
    let (limits, limits_error, enforced_w) = match control {
        Some(c) => match c.limits() {
            Ok(l) => (Some(l), None, c.enforced_limit_w().ok()),
            Err(e) => (None, Some(e.to_string()), None),
        },
        None => (None, Some("no power-limit control".into()), None),
    };
    let path = state_file_for(state_dir, device);
    let (pending_restore, pending_restore_error) = if path.exists() {
        match PendingRestore::read(path.clone()) {
            Ok(p) => (Some(p), None),
            Err(e) => (None, Some(e.to_string())),
        }
    } else {
        (None, None)
    };
    let owed_elsewhere = DeviceLock::owed_state_file(lock_dir, device)
        .filter(|p| *p != path && p.exists())
        .and_then(|p| PendingRestore::read(p).ok());
    PowerStatus {
        device: device.name.clone(),
        device_kind: device_kind.to_string(),
        limits,
        limits_error,
        enforced_w,
        clock_locks: clocks.and_then(|c| c.clock_locks().ok()),
        pending_restore,
        pending_restore_error,
        owed_elsewhere,
        holder: DeviceLock::holder(lock_dir, device),
    }
}

/// [`power_status_of`] for a power control alone, with the default lock directory.
pub fn power_status(
    control: &mut dyn PowerControl,
    device: &DeviceInfo,
    state_dir: &Path,
) -> Result<PowerStatus, PowerError> {
    let status = power_status_of(
        Some(control),
        None,
        device,
        "",
        state_dir,
        &default_lock_dir(),
    );
    match (&status.limits, &status.limits_error) {
        (None, Some(e)) => Err(PowerError::Unavailable(e.clone())),
        _ => Ok(status),
    }
}
