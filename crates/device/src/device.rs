//! An opened device: its backend, meter and clock for anyone to use, and its power
//! and clock controls behind the guard wherever a change outlives the process (a real
//! or faked GPU). There, reads go to the device and a change is refused until the
//! guard is armed — [`OpenDevice::arm_guard`], the one way — which writes the state
//! file before the first change and restores on every exit path
//! (docs/ARCHITECTURE.md §6).

use crate::error::{OpenError, RestoreFailed};
use joulebench_core::sweep::DeviceSession;
use joulebench_core::{
    Backend, Clock, ClockControl, ClockLocks, DeviceInfo, EnergyMeter, PowerControl, PowerError,
    PowerLimits,
};
use joulebench_energy::attach::GuardTarget;
use joulebench_energy::guard::{
    default_state_dir, restore_command, GuardConfig, KnownClockLocks, PowerGuard, RestoreReport,
};
use std::sync::Arc;

pub struct OpenDevice {
    pub backend: Box<dyn Backend>,
    pub meter: Box<dyn EnergyMeter>,
    pub clock: Arc<dyn Clock>,
    /// Lines worth telling the user before the sweep (which meter, and why).
    pub notes: Vec<String>,
    controls: Controls,
}

/// A device's power and clock controls and, on a GPU whose state outlives the
/// process, the guard they change through.
#[derive(Default)]
pub(crate) struct Controls {
    /// Reads only where `guarded` (the guard changes); the simulated device's own.
    power: Option<Box<dyn PowerControl>>,
    clocks: Option<Box<dyn ClockControl>>,
    /// What the guard takes over when armed; gone once it is.
    target: Option<GuardTarget>,
    guard: Option<PowerGuard>,
    /// The GPU as the controls (and so state files and the per-GPU lock) name it;
    /// `None` on the simulated device, whose changes need no guard.
    guarded: Option<DeviceInfo>,
}

impl Controls {
    /// The simulated device's own controls: a change ends with the process.
    pub(crate) fn free(
        power: Option<Box<dyn PowerControl>>,
        clocks: Option<Box<dyn ClockControl>>,
    ) -> Controls {
        Controls {
            power,
            clocks,
            ..Controls::default()
        }
    }

    /// A GPU's controls: read-only until the guard takes `target` over. Without a
    /// target there is nothing to change, and the reads stay.
    pub(crate) fn guarded(
        power: Option<Box<dyn PowerControl>>,
        clocks: Option<Box<dyn ClockControl>>,
        target: Option<GuardTarget>,
    ) -> Controls {
        Controls {
            power: power.map(|p| Box::new(ReadOnly(p)) as Box<dyn PowerControl>),
            clocks: clocks.map(|c| Box::new(ReadOnly(c)) as Box<dyn ClockControl>),
            guarded: target.as_ref().map(|t| t.device.clone()),
            target,
            ..Controls::default()
        }
    }
}

impl OpenDevice {
    pub(crate) fn new(
        backend: Box<dyn Backend>,
        meter: Box<dyn EnergyMeter>,
        clock: Arc<dyn Clock>,
        notes: Vec<String>,
        controls: Controls,
    ) -> OpenDevice {
        OpenDevice {
            backend,
            meter,
            clock,
            notes,
            controls,
        }
    }

    /// The power control: the guard once armed; before that, on a GPU, one that
    /// reads and refuses changes.
    pub fn power_mut(&mut self) -> Option<&mut dyn PowerControl> {
        let c = &mut self.controls;
        match (&mut c.guard, &mut c.power) {
            (Some(g), _) => Some(g as &mut dyn PowerControl),
            (None, Some(p)) => Some(p.as_mut()),
            _ => None,
        }
    }

    /// The clock control: the guard's once armed; before that, on a GPU, one that
    /// reads and refuses locks. `None` where the clocks cannot be locked.
    pub fn clocks_mut(&mut self) -> Option<&mut dyn ClockControl> {
        match &mut self.controls.clocks {
            Some(c) => Some(c.as_mut()),
            None => None,
        }
    }

    /// The device's backend, meter, controls and clock, for the sweep runner.
    pub fn session(&mut self) -> DeviceSession<'_> {
        let c = &mut self.controls;
        DeviceSession {
            backend: self.backend.as_mut(),
            meter: self.meter.as_mut(),
            power: match (&mut c.guard, &mut c.power) {
                (Some(g), _) => Some(g as &mut dyn PowerControl),
                (None, Some(p)) => Some(p.as_mut()),
                _ => None,
            },
            clocks: match &mut c.clocks {
                Some(c) => Some(c.as_mut()),
                None => None,
            },
            clock: self.clock.as_ref(),
        }
    }

    /// The device as its power and clock controls (and so state files and the
    /// per-GPU lock) name it, where it has controls that change a real (or faked) GPU.
    pub fn control_identity(&self) -> Option<DeviceInfo> {
        self.controls.guarded.clone()
    }

    /// Whether changing this device's limit or clocks changes a real (or faked) GPU
    /// and so needs the user's permission (`--allow-power-changes`,
    /// `--allow-clock-changes`) and the guard.
    pub fn power_needs_permission(&self) -> bool {
        self.controls.guarded.is_some()
    }

    /// Put the guard in place before a sweep that caps the power or locks clocks:
    /// it takes the GPU's lock, refuses a GPU a restore is owed for, and from then
    /// on is the device's power (and clock) control. Changes the user did not allow
    /// are refused. Nothing to do on the simulated device, or once armed. Where
    /// arming fails (a restore owed, another process holding the GPU), open the
    /// device again to try again.
    pub fn arm_guard(
        &mut self,
        allow_power_changes: bool,
        allow_clock_changes: bool,
    ) -> Result<(), OpenError> {
        let c = &mut self.controls;
        if c.guard.is_some() {
            return Ok(());
        }
        if c.target.is_none() {
            return Ok(());
        }
        let dir = default_state_dir().ok_or(OpenError::NoStateDir)?;
        let Some(target) = c.target.take() else {
            return Ok(());
        };
        let has_clocks = target.clocks.is_some();
        let cfg = GuardConfig::new(target.device, target.device_kind, &dir, allow_power_changes)
            .with_clock_changes(allow_clock_changes);
        let guard = PowerGuard::new_with_clocks(target.control, target.clocks, cfg)?;
        if has_clocks {
            // every lock goes through the guard, which resets it
            c.clocks = Some(Box::new(guard.clock_handle()));
        }
        c.guard = Some(guard);
        Ok(())
    }

    /// Puts back the limit and clocks the guard found: `Ok(None)` where nothing was
    /// changed or no guard was armed. The guard stays (a later change arms it again)
    /// and holds the GPU's lock until the device is dropped, which restores too,
    /// reporting a failure as a `tracing` event; this says how it went.
    pub fn restore(&mut self) -> Result<Option<RestoreReport>, RestoreFailed> {
        let Some(guard) = self.controls.guard.as_mut() else {
            return Ok(None);
        };
        guard.restore().map_err(|source| RestoreFailed {
            source: Box::new(source),
            command: restore_command(&guard.state_path()),
        })
    }

    /// Clocks found locked when the sweep starts (by a run that was killed, or
    /// another tool): from now on "default clocks" means those, so points at them
    /// are flagged rather than passed off as the default.
    pub fn assume_found_clock_locks(&mut self, found: ClockLocks) {
        if let Some(c) = self.controls.clocks.take() {
            self.controls.clocks = Some(Box::new(KnownClockLocks::new(c, found)));
        }
    }
}

/// A GPU's control before the guard is armed: reads pass, changes are refused.
struct ReadOnly<T: ?Sized>(Box<T>);

fn not_armed() -> PowerError {
    PowerError::NotPermitted(
        "a GPU's power limit and clocks change only through its guard, which keeps the \
         originals to restore: arm it first (OpenDevice::arm_guard)"
            .into(),
    )
}

impl PowerControl for ReadOnly<dyn PowerControl> {
    fn limits(&mut self) -> Result<PowerLimits, PowerError> {
        self.0.limits()
    }
    fn set_limit_w(&mut self, _watts: f64) -> Result<(), PowerError> {
        Err(not_armed())
    }
    fn enforced_limit_w(&mut self) -> Result<f64, PowerError> {
        self.0.enforced_limit_w()
    }
}

impl ClockControl for ReadOnly<dyn ClockControl> {
    fn supported_sm_clocks_mhz(&mut self) -> Result<Vec<u32>, PowerError> {
        self.0.supported_sm_clocks_mhz()
    }
    fn supported_mem_clocks_mhz(&mut self) -> Result<Vec<u32>, PowerError> {
        self.0.supported_mem_clocks_mhz()
    }
    fn lock_sm_clocks_mhz(&mut self, _min_mhz: u32, _max_mhz: u32) -> Result<(), PowerError> {
        Err(not_armed())
    }
    fn reset_sm_clocks(&mut self) -> Result<(), PowerError> {
        Err(not_armed())
    }
    fn lock_mem_clocks_mhz(&mut self, _min_mhz: u32, _max_mhz: u32) -> Result<(), PowerError> {
        Err(not_armed())
    }
    fn reset_mem_clocks(&mut self) -> Result<(), PowerError> {
        Err(not_armed())
    }
    fn clock_locks(&mut self) -> Result<ClockLocks, PowerError> {
        self.0.clock_locks()
    }
}
