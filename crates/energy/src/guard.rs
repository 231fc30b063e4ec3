//! Power-cap changes with guaranteed restore (docs/ARCHITECTURE.md §6). [`PowerGuard`] wraps any
//! `PowerControl`: it refuses changes the user did not allow, writes a state file
//! before the first change, and puts the original limit back on every exit path —
//! an explicit `finish`/`restore`, `Drop` (error returns and panics that unwind), a
//! panic hook, and SIGINT / SIGTERM / SIGHUP. After a SIGKILL or a power loss, the
//! state file is what `joulebench power restore` reads ([`restore_from_state_file`]).

mod clocks;
mod hooks;
mod lock;
mod restore;
mod secure;
mod state;

pub use clocks::{GuardedClocks, CLOCK_CHANGES_NOT_ALLOWED};
pub use hooks::install_restore_hooks;
pub use lock::{default_lock_dir, lock_file_for, DeviceLock, LOCK_DIR_ENV};
pub use restore::restore_from_state_file_full;
pub use restore::{
    power_status, restore_from_state_file, restore_from_state_file_with, PendingRestore,
    PowerStatus, RestoreOptions, RestoreReport,
};
pub use state::{
    check_state_dir, default_state_dir, owner_status, pending_restores, read_state_file,
    remove_state_file, state_file_for, write_state_file, LockedClocks, OwnerStatus, PowerStateFile,
    StateDevice, STATE_DIR_ENV, STATE_FILE_SCHEMA,
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
/// succeeded (dropping it restores too, reporting failures on stderr).
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
    control: Box<dyn PowerControl>,
    /// The device's clock control, where it has one: locked clocks are reset with
    /// the limit.
    clocks: Option<Box<dyn ClockControl>>,
    config: GuardConfig,
    /// Held from the guard's creation to its end: no other process changes this GPU.
    _lock: DeviceLock,
    armed: Option<Armed>,
    /// Set once a signal or panic restored the limit: no change after that.
    closed: Option<String>,
}

struct Armed {
    original_w: f64,
    /// The thread that made the first change; a panic there restores.
    owner: ThreadId,
    /// What the state file on disk says (rewritten when a clock is first locked).
    state: PowerStateFile,
}

impl PowerGuard {
    /// Takes the GPU's lock (refused while another process holds it, whatever its
    /// state directory), then refuses at once when a state file for this device
    /// already exists: one was killed before it could restore, and the limit "as
    /// found" would be that run's cap.
    pub fn new(control: Box<dyn PowerControl>, config: GuardConfig) -> Result<Self, PowerError> {
        Self::new_with_clocks(control, None, config)
    }

    /// [`PowerGuard::new`] for a device whose clocks may be locked too: the guard is
    /// then also its `ClockControl`, and every restore resets the clocks it locked.
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
        check_no_pending(&config)?;
        let shared = Arc::new(GuardShared {
            inner: Mutex::new(GuardInner {
                control,
                clocks,
                config,
                _lock: lock,
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
        self.shared.lock().armed.as_ref().map(|a| a.original_w)
    }

    /// Puts the original limit back and removes the state file; `Ok(None)` when
    /// nothing was changed. Idempotent; later changes arm the guard again.
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
            eprintln!(
                "joulebench: could not restore the power limit of {}: {e}; \
                 run `joulebench power restore` (state kept in {})",
                inner.config.device.name,
                inner.config.state_path.display()
            );
        }
    }
}

fn check_no_pending(config: &GuardConfig) -> Result<(), PowerError> {
    let path = &config.state_path;
    if !path.exists() {
        return Ok(());
    }
    let state = read_state_file(path)?;
    Err(match owner_status(&state) {
        OwnerStatus::Us => PowerError::Failed(format!(
            "this process already changes the power limit of {} (state file {})",
            config.device.name,
            path.display()
        )),
        OwnerStatus::Alive => PowerError::Failed(format!(
            "joulebench process {} is changing the power limit of {} now (state file {}); \
             wait for it to finish",
            state.pid,
            config.device.name,
            path.display()
        )),
        _ => PowerError::Failed(format!(
            "a power-limit restore is pending for {}: process {} changed it from {:.0} W and \
             did not restore it; run `joulebench power restore` first (state file {})",
            config.device.name,
            state.pid,
            state.original_limit_w,
            path.display()
        )),
    })
}

impl GuardInner {
    fn set_limit_w(&mut self, watts: f64) -> Result<(), PowerError> {
        if let Some(why) = &self.closed {
            return Err(PowerError::Failed(format!(
                "the original power limit was already restored ({why}); no further changes"
            )));
        }
        let limits = self.control.limits()?;
        limits.check(watts)?;
        if (watts - limits.current_w).abs() < SAME_LIMIT_W {
            return Ok(());
        }
        if !self.config.allow_changes {
            return Err(PowerError::NotPermitted(CHANGES_NOT_ALLOWED.into()));
        }
        let first = self.armed.is_none();
        if first {
            self.arm(&limits)?;
        }
        let result = self.control.set_limit_w(watts);
        if result.is_err() && first {
            // Nothing changed (no right, a lost GPU): no restore is owed.
            let unchanged = self
                .control
                .limits()
                .is_ok_and(|l| (l.current_w - limits.current_w).abs() < SAME_LIMIT_W);
            if unchanged && remove_state_file(&self.config.state_path).is_ok() {
                self.armed = None;
            }
        }
        result
    }

    /// Before the first change: handlers in place, then the state file on disk.
    fn arm(&mut self, limits: &PowerLimits) -> Result<(), PowerError> {
        check_no_pending(&self.config)?;
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
        };
        write_state_file(&self.config.state_path, &state)?;
        self.armed = Some(Armed {
            original_w: limits.current_w,
            owner: std::thread::current().id(),
            state,
        });
        Ok(())
    }

    /// Locked clocks back to the default, then the original limit; the state file
    /// goes only when both are back.
    fn restore(&mut self) -> Result<Option<RestoreReport>, PowerError> {
        let Some(armed) = &self.armed else {
            return Ok(None);
        };
        let original_w = armed.original_w;
        let locked = armed.state.locked_clocks;
        // the clocks first, and the limit even if they fail: each is owed on its own
        let clocks = self.reset_locked_clocks(locked);
        let was_w = self.control.limits().ok().map(|l| l.current_w);
        if was_w.is_none_or(|w| (w - original_w).abs() >= SAME_LIMIT_W) {
            self.control.set_limit_w(original_w)?;
        }
        let now_w = self.control.limits()?.current_w;
        if (now_w - original_w).abs() >= SAME_LIMIT_W.max(0.005 * original_w) {
            return Err(PowerError::Failed(format!(
                "asked to restore {original_w:.0} W but the limit reads {now_w:.0} W"
            )));
        }
        let clocks_reset = clocks?;
        remove_state_file(&self.config.state_path)?;
        self.armed = None;
        Ok(Some(RestoreReport {
            device: self.config.device.name.clone(),
            restored_w: original_w,
            was_w,
            state_file: self.config.state_path.clone(),
            clocks_reset,
        }))
    }
}
