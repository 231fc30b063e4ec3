//! Locked clocks through the guard: the same guarantees as the power limit. Before a
//! clock is first locked the state file on disk says so (written, or rewritten,
//! first), and every restore — finish, drop, panic, SIGINT/SIGTERM/SIGHUP, and
//! `joulebench power restore` after a SIGKILL — resets the clocks that were locked
//! to the device's defaults. The guard's clocks are reached through one handle,
//! [`GuardedClocks`].

use super::restore::Domain;
use super::{GuardInner, GuardShared, PowerGuard};
use joulebench_core::{ClockControl, ClockLocks, PowerError};
use std::sync::Arc;

/// What a user who did not ask for clock changes is told.
pub const CLOCK_CHANGES_NOT_ALLOWED: &str = "locking GPU clocks was not asked for; \
joulebench locks a GPU's clocks only with explicit permission (--allow-clock-changes), \
and resets them when it ends";

impl GuardInner {
    fn clock_control(&mut self) -> Result<&mut Box<dyn ClockControl>, PowerError> {
        let name = self.config.device.name.clone();
        self.clocks
            .as_mut()
            .ok_or_else(|| PowerError::Unavailable(format!("{name} has no clock control")))
    }

    fn lock_clock(&mut self, domain: Domain, min_mhz: u32, max_mhz: u32) -> Result<(), PowerError> {
        self.check_open()?;
        self.clock_control()?;
        if !self.config.allow_clock_changes {
            return Err(PowerError::NotPermitted(CLOCK_CHANGES_NOT_ALLOWED.into()));
        }
        if self.armed.is_none() {
            let limits = self.control.limits()?;
            self.arm(&limits)?;
        }
        // the state file says the clock is locked before it is
        self.update_state(|s| *domain.flag(&mut s.locked_clocks) = true)?;
        let control = self.clock_control()?;
        match domain {
            Domain::Sm => control.lock_sm_clocks_mhz(min_mhz, max_mhz),
            Domain::Mem => control.lock_mem_clocks_mhz(min_mhz, max_mhz),
        }
    }

    /// A reset asked for mid-run (a sweep going back to default clocks): allowed
    /// always, and what the state file owes follows it.
    fn reset_clock(&mut self, domain: Domain) -> Result<(), PowerError> {
        let control = self.clock_control()?;
        match domain {
            Domain::Sm => control.reset_sm_clocks(),
            Domain::Mem => control.reset_mem_clocks(),
        }?;
        self.update_state(|s| *domain.flag(&mut s.locked_clocks) = false)
    }
}

/// The guard's clock control as a handle of its own, so a sweep can hold it beside
/// the guard's power control. Reads go to the device; a lock arms the guard and is
/// allowed only with `allow_clock_changes`; a reset is always allowed. Dropping it
/// restores nothing: the guard does.
pub struct GuardedClocks {
    shared: Arc<GuardShared>,
}

impl PowerGuard {
    pub fn clock_handle(&self) -> GuardedClocks {
        GuardedClocks {
            shared: self.shared.clone(),
        }
    }
}

impl ClockControl for GuardedClocks {
    fn supported_sm_clocks_mhz(&mut self) -> Result<Vec<u32>, PowerError> {
        self.shared
            .lock()
            .clock_control()?
            .supported_sm_clocks_mhz()
    }

    fn supported_mem_clocks_mhz(&mut self) -> Result<Vec<u32>, PowerError> {
        self.shared
            .lock()
            .clock_control()?
            .supported_mem_clocks_mhz()
    }

    fn lock_sm_clocks_mhz(&mut self, min_mhz: u32, max_mhz: u32) -> Result<(), PowerError> {
        self.shared.lock().lock_clock(Domain::Sm, min_mhz, max_mhz)
    }

    fn reset_sm_clocks(&mut self) -> Result<(), PowerError> {
        self.shared.lock().reset_clock(Domain::Sm)
    }

    fn lock_mem_clocks_mhz(&mut self, min_mhz: u32, max_mhz: u32) -> Result<(), PowerError> {
        self.shared.lock().lock_clock(Domain::Mem, min_mhz, max_mhz)
    }

    fn reset_mem_clocks(&mut self) -> Result<(), PowerError> {
        self.shared.lock().reset_clock(Domain::Mem)
    }

    fn clock_locks(&mut self) -> Result<ClockLocks, PowerError> {
        self.shared.lock().clock_control()?.clock_locks()
    }
}
