//! Power-cap and clock changes with guaranteed restore (docs/ARCHITECTURE.md §6).
//! [`PowerGuard`] wraps any `PowerControl` (and the device's `ClockControl`): it
//! refuses changes the user did not allow, takes the GPU's lock, writes a state
//! file before the first change, and puts back what it changed on every exit path —
//! an explicit `finish`/`restore`, `Drop` (error returns and panics that unwind), a
//! panic hook, and SIGINT / SIGTERM / SIGHUP, however many arrive. After a SIGKILL
//! or a power loss, the state file is what `joulebench power restore` reads
//! ([`restore_from_state_file`]); both restore through one function
//! (`restore::attempt`).

mod clocks;
mod found;
mod hooks;
mod lock;
mod restore;
mod secure;
mod state;

pub use clocks::{GuardedClocks, CLOCK_CHANGES_NOT_ALLOWED};
pub use found::{found_clock_locks, FoundClockLocks, KnownClockLocks};
pub use hooks::{
    forward_signals, install_restore_hooks, signal_name, stop_on_signals, RestoreInProgress,
    SignalForwarding, SignalOrigin, StopSignal, RESTORE_WAIT,
};
pub use lock::{default_lock_dir, lock_file_for, DeviceLock, LOCK_DIR_ENV};
pub use restore::{
    power_status, power_status_of, restore_from_state_file, restore_from_state_file_full,
    restore_from_state_file_with, PendingRestore, PowerStatus, RestoreOptions, RestoreReport,
};
pub use state::{
    check_state_dir, default_state_dir, owner_status, pending_restores, read_state_file,
    remove_state_file, restore_command, state_file_for, write_state_file, LockedClocks,
    OwnerStatus, PowerStateFile, StateDevice, STATE_DIR_ENV, STATE_FILE_SCHEMA,
};

use joulebench_core::{ClockControl, DeviceInfo, PowerCap, PowerControl, PowerError, PowerLimits};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::ThreadId;

/// What a user who did not ask for power changes is told.
pub const CHANGES_NOT_ALLOWED: &str = "changing the power limit was not asked for; \
joulebench changes a GPU's power limit only with explicit permission (--allow-power-changes), \
and restores it when it ends";

/// Two limits closer than this are the same limit (NVML works in whole milliwatts;
/// drivers round to a few hundred).
const SAME_LIMIT_W: f64 = 0.5;

#[derive(Clone, Debug, PartialEq)]
pub struct GuardConfig {
    /// The device whose limit changes; written into the state file.
    pub device: DeviceInfo,
    /// How `power restore` opens it again: `nvml::DEVICE_KIND_NVML`,
    /// `nvml::DEVICE_KIND_FAKE`, or another control's name.
    pub device_kind: String,
    pub state_path: PathBuf,
    /// Where the per-GPU lock is taken: the same for every state directory.
    pub lock_dir: PathBuf,
    /// Without it every change is refused with `PowerError::NotPermitted`.
    pub allow_changes: bool,
    /// The same for locking clocks (`--allow-clock-changes`).
    pub allow_clock_changes: bool,
}

impl GuardConfig {
    /// The state file goes to `state_file_for(state_dir, &device)`, the lock to
    /// [`default_lock_dir`].
    pub fn new(
        device: DeviceInfo,
        device_kind: impl Into<String>,
        state_dir: &Path,
        allow_changes: bool,
    ) -> Self {
        let state_path = state_file_for(state_dir, &device);
        GuardConfig {
            device,
            device_kind: device_kind.into(),
            state_path,
            lock_dir: default_lock_dir(),
            allow_changes,
            allow_clock_changes: false,
        }
    }

    /// The same, allowing (or not) locked clocks.
    pub fn with_clock_changes(mut self, allow: bool) -> Self {
        self.allow_clock_changes = allow;
        self
    }

    /// The same, with the per-GPU lock taken in `dir`.
    pub fn with_lock_dir(mut self, dir: &Path) -> Self {
        self.lock_dir = dir.to_path_buf();
        self
    }
}

/// Every cap in watts on a device with these limits, or the first one it cannot take.
/// Call before anything changes (core's runner does the same per plan point).
pub fn resolve_caps(caps: &[PowerCap], limits: &PowerLimits) -> Result<Vec<f64>, PowerError> {
    caps.iter()
        .map(|c| {
            let w = c.resolve_w(limits);
            limits.check(w).map(|_| w)
        })
        .collect()
}

/// Wraps a `PowerControl`; see the module docs. Install it as the sweep's power
/// control, and call [`PowerGuard::finish`] at the end to learn whether the restore
/// succeeded (dropping it restores too, reporting a failure as a `tracing` event).
pub struct PowerGuard {
    shared: Arc<GuardShared>,
}

pub(crate) struct GuardShared {
    inner: Mutex<GuardInner>,
}

impl GuardShared {
    fn lock(&self) -> MutexGuard<'_, GuardInner> {
        // A panic inside the power control must not stop the restore that follows it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(crate) struct GuardInner {
    /// Names this guard's entry in what the signal thread says is owed.
    id: u64,
    control: Box<dyn PowerControl>,
    /// The device's clock control, where it has one: locked clocks are reset with
    /// the limit.
    clocks: Option<Box<dyn ClockControl>>,
    config: GuardConfig,
    /// Held from the guard's creation to its end: no other process changes this GPU.
    /// Let go when the guard is dropped, whoever else still holds the shared state.
    lock: Option<DeviceLock>,
    armed: Option<Armed>,
    /// Set once a signal or panic restored the GPU: no change after that.
    closed: Option<String>,
}

struct Armed {
    /// The thread that made the first change; a panic there restores.
    owner: ThreadId,
    /// What the state file on disk says is owed.
    state: PowerStateFile,
}

impl PowerGuard {
    /// Takes the GPU's lock (refused with [`PowerError::Locked`] while another
    /// process holds it, whatever its state directory), then refuses at once with
    /// [`PowerError::RestorePending`] when a restore is owed for this device — in
    /// this state directory, or in another as the GPU's lock file says: the limit or
    /// clocks "as found" would be that run's, and restoring them would set a state
    /// this run never set.
    pub fn new(control: Box<dyn PowerControl>, config: GuardConfig) -> Result<Self, PowerError> {
        Self::new_with_clocks(control, None, config)
    }

    /// [`PowerGuard::new`] for a device whose clocks may be locked too: the guard is
    /// then also its `ClockControl` (through [`PowerGuard::clock_handle`]), and every
    /// restore resets the clocks it locked.
    pub fn new_with_clocks(
        control: Box<dyn PowerControl>,
        clocks: Option<Box<dyn ClockControl>>,
        config: GuardConfig,
    ) -> Result<Self, PowerError> {
        // a state directory others could plant links or files in is refused now,
        // before the sweep starts, not at its first change
        if let Some(dir) = config
            .state_path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            secure::private_dir(dir, "state directory", STATE_DIR_ENV)?;
        }
        let lock = DeviceLock::acquire(&config.lock_dir, &config.device)?;
        check_no_pending(&config, &config.state_path)?;
        if let Some(elsewhere) = lock.found_owed().filter(|p| *p != config.state_path) {
            check_no_pending(&config, elsewhere)?;
        }
        let shared = Arc::new(GuardShared {
            inner: Mutex::new(GuardInner {
                id: hooks::next_id(),
                control,
                clocks,
                config,
                lock: Some(lock),
                armed: None,
                closed: None,
            }),
        });
        hooks::register(&shared);
        Ok(PowerGuard { shared })
    }

    pub fn changes_allowed(&self) -> bool {
        self.shared.lock().config.allow_changes
    }

    pub fn state_path(&self) -> PathBuf {
        self.shared.lock().config.state_path.clone()
    }

    /// The limit found before the first change, while a restore is owed.
    pub fn original_limit_w(&self) -> Option<f64> {
        self.shared
            .lock()
            .armed
            .as_ref()
            .map(|a| a.state.original_limit_w)
    }

    /// Puts back everything changed and removes the state file; `Ok(None)` when
    /// nothing was changed. Every step is tried; a failure leaves the state file
    /// saying what is still owed ([`PowerError::RestoreIncomplete`]). Idempotent;
    /// later changes arm the guard again.
    pub fn restore(&mut self) -> Result<Option<RestoreReport>, PowerError> {
        self.shared.lock().restore()
    }

    /// Restores and reports: the success path's last word.
    pub fn finish(mut self) -> Result<Option<RestoreReport>, PowerError> {
        self.restore()
    }
}

impl PowerControl for PowerGuard {
    fn limits(&mut self) -> Result<PowerLimits, PowerError> {
        self.shared.lock().control.limits()
    }

    fn set_limit_w(&mut self, watts: f64) -> Result<(), PowerError> {
        self.shared.lock().set_limit_w(watts)
    }

    fn enforced_limit_w(&mut self) -> Result<f64, PowerError> {
        self.shared.lock().control.enforced_limit_w()
    }
}

impl Drop for PowerGuard {
    fn drop(&mut self) {
        let mut inner = self.shared.lock();
        if let Err(e) = inner.restore() {
            // No caller is left to return this to; the state file stays for `power restore`.
            hooks::say(
                hooks::Level::Error,
                &format!("{e}; run `{}`", restore_command(&inner.config.state_path)),
            );
        }
        // the state file speaks for what is owed now; no restore is left in this process
        hooks::set_owed(inner.id, None);
        // the GPU's lock goes with the guard, not with the last thread that looked at it
        // (a signal or panic handler may hold the shared state a moment longer)
        inner.closed = Some("dropped".into());
        inner.lock = None;
    }
}

/// A pending restore in the state file at `path` refuses the guard.
fn check_no_pending(config: &GuardConfig, path: &Path) -> Result<(), PowerError> {
    if !path.exists() {
        return Ok(());
    }
    let state = read_state_file(path)?;
    if !state.owes_anything() {
        return Ok(());
    }
    Err(match owner_status(&state) {
        status @ (OwnerStatus::Us | OwnerStatus::Alive) => PowerError::OwnerRunning {
            device: config.device.name.clone(),
            pid: state.pid,
            this_process: status == OwnerStatus::Us,
            state_file: path.to_path_buf(),
        },
        _ => PowerError::RestorePending {
            device: config.device.name.clone(),
            pid: state.pid,
            what: state.describe_owed(),
            state_file: path.to_path_buf(),
            command: restore_command(path),
        },
    })
}

impl GuardInner {
    fn check_open(&self) -> Result<(), PowerError> {
        match &self.closed {
            Some(why) => Err(PowerError::AlreadyRestored { why: why.clone() }),
            None => Ok(()),
        }
    }

    fn set_limit_w(&mut self, watts: f64) -> Result<(), PowerError> {
        self.check_open()?;
        let limits = self.control.limits()?;
        limits.check(watts)?;
        if (watts - limits.current_w).abs() < SAME_LIMIT_W {
            return Ok(());
        }
        if !self.config.allow_changes {
            return Err(PowerError::NotPermitted(CHANGES_NOT_ALLOWED.into()));
        }
        let first = !self.armed.as_ref().is_some_and(|a| a.state.limit_owed);
        if first {
            // the state file owes the limit before it changes
            self.arm(&limits)?;
            self.update_state(|s| {
                s.original_limit_w = limits.current_w;
                s.limit_owed = true;
            })?;
        }
        let result = self.control.set_limit_w(watts);
        if result.is_err() && first {
            // Nothing changed (no right, a lost GPU): no limit is owed.
            let unchanged = self
                .control
                .limits()
                .is_ok_and(|l| (l.current_w - limits.current_w).abs() < SAME_LIMIT_W);
            if unchanged {
                let _ = self.update_state(|s| s.limit_owed = false);
                self.disarm_if_nothing_owed();
            }
        }
        result
    }

    /// A state file that owes nothing (a first change that did not happen) goes.
    fn disarm_if_nothing_owed(&mut self) {
        if self
            .armed
            .as_ref()
            .is_some_and(|a| !a.state.owes_anything())
            && remove_state_file(&self.config.state_path).is_ok()
        {
            self.armed = None;
            if let Some(l) = &mut self.lock {
                l.set_owed(None);
            }
            self.publish();
        }
    }

    /// Before the first change: handlers in place, then the state file on disk
    /// (owing nothing yet; each change says what it owes before it is made).
    fn arm(&mut self, limits: &PowerLimits) -> Result<(), PowerError> {
        if self.armed.is_some() {
            return Ok(());
        }
        check_no_pending(&self.config, &self.config.state_path)?;
        install_restore_hooks()?;
        let state = PowerStateFile {
            schema: STATE_FILE_SCHEMA,
            device: StateDevice::of(&self.config.device),
            device_kind: self.config.device_kind.clone(),
            original_limit_w: limits.current_w,
            default_limit_w: limits.default_w,
            min_limit_w: limits.min_w,
            max_limit_w: limits.max_w,
            pid: std::process::id(),
            process_start_ticks: state::process_start_ticks(std::process::id()),
            boot_id: state::boot_id(),
            host: state::hostname(),
            written_unix_s: state::now_unix_s(),
            locked_clocks: LockedClocks::default(),
            limit_owed: false,
        };
        write_state_file(&self.config.state_path, &state)?;
        self.armed = Some(Armed {
            owner: std::thread::current().id(),
            state,
        });
        if let Some(l) = &mut self.lock {
            l.set_owed(Some(&self.config.state_path));
        }
        self.publish();
        Ok(())
    }

    /// Change what the state file says is owed, on disk first.
    fn update_state(&mut self, change: impl FnOnce(&mut PowerStateFile)) -> Result<(), PowerError> {
        let Some(armed) = self.armed.as_mut() else {
            return Ok(());
        };
        let mut next = armed.state.clone();
        change(&mut next);
        if next != armed.state {
            write_state_file(&self.config.state_path, &next)?;
            armed.state = next;
        }
        self.publish();
        Ok(())
    }

    /// Tell the signal thread what this guard owes now.
    fn publish(&self) {
        let owed = self
            .armed
            .as_ref()
            .filter(|a| a.state.owes_anything())
            .map(|a| {
                format!(
                    "{} of {} (state file {}; `{}`)",
                    a.state.describe_owed(),
                    self.config.device.name,
                    self.config.state_path.display(),
                    restore_command(&self.config.state_path)
                )
            });
        hooks::set_owed(self.id, owed);
    }

    /// Locked clocks back to the default, then the original limit, each tried
    /// whatever failed before it; the state file goes only when all are back.
    fn restore(&mut self) -> Result<Option<RestoreReport>, PowerError> {
        let Some(armed) = self.armed.as_mut() else {
            return Ok(None);
        };
        let owed = restore::Owed::of(&armed.state);
        let attempt = restore::attempt(
            &self.config.device.name,
            owed,
            match self.clocks.as_mut() {
                Some(c) => Ok(c.as_mut()),
                None => Err(PowerError::Unavailable(format!(
                    "{} has no clock control",
                    self.config.device.name
                ))),
            },
            Ok(self.control.as_mut()),
            false,
        );
        let name = self.config.device.name.clone();
        let result = restore::settle(&name, &self.config.state_path, &mut armed.state, attempt);
        if result.is_ok() {
            self.armed = None;
            if let Some(l) = &mut self.lock {
                l.set_owed(None);
            }
        }
        self.publish();
        result.map(Some)
    }
}
