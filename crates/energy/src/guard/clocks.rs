//! Locked clocks through the guard: the same guarantees as the power limit. Before a
//! clock is first locked the state file on disk says so (written, or rewritten,
//! first), and every restore — finish, drop, panic, SIGINT/SIGTERM/SIGHUP, and
//! `joulebench power restore` after a SIGKILL — resets the clocks that were locked
//! to the device's defaults.

use super::{write_state_file, GuardInner, PowerGuard};
use joulebench_core::{ClockControl, PowerError};

/// What a user who did not ask for clock changes is told.
pub const CLOCK_CHANGES_NOT_ALLOWED: &str = "locking GPU clocks was not asked for; \
joulebench locks a GPU's clocks only with explicit permission (--allow-clock-changes), \
and resets them when it ends";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Domain {
    Sm,
    Mem,
}

impl Domain {
    fn name(self) -> &'static str {
        match self {
            Domain::Sm => "SM",
            Domain::Mem => "memory",
        }
    }
}

impl GuardInner {
    fn clock_control(&mut self) -> Result<&mut Box<dyn ClockControl>, PowerError> {
        let name = self.config.device.name.clone();
        self.clocks
            .as_mut()
            .ok_or_else(|| PowerError::Unavailable(format!("{name} has no clock control")))
    }

    fn lock_clock(&mut self, domain: Domain, min_mhz: u32, max_mhz: u32) -> Result<(), PowerError> {
        if let Some(why) = &self.closed {
            return Err(PowerError::Failed(format!(
                "the original clocks were already restored ({why}); no further changes"
            )));
        }
        self.clock_control()?;
        if !self.config.allow_clock_changes {
            return Err(PowerError::NotPermitted(CLOCK_CHANGES_NOT_ALLOWED.into()));
        }
        if self.armed.is_none() {
            let limits = self.control.limits()?;
            self.arm(&limits)?;
        }
        // the state file says the clock is locked before it is
        if let Some(armed) = self.armed.as_mut() {
            let flag = match domain {
                Domain::Sm => &mut armed.state.locked_clocks.sm,
                Domain::Mem => &mut armed.state.locked_clocks.mem,
            };
            if !*flag {
                *flag = true;
                write_state_file(&self.config.state_path, &armed.state)?;
            }
        }
        let control = self.clock_control()?;
        match domain {
            Domain::Sm => control.lock_sm_clocks_mhz(min_mhz, max_mhz),
            Domain::Mem => control.lock_mem_clocks_mhz(min_mhz, max_mhz),
        }
    }

    fn reset_clock(&mut self, domain: Domain) -> Result<(), PowerError> {
        let control = self.clock_control()?;
        match domain {
            Domain::Sm => control.reset_sm_clocks(),
            Domain::Mem => control.reset_mem_clocks(),
        }
    }

    /// Reset every clock `locked` names; which were reset ("SM", "memory").
    pub(super) fn reset_locked_clocks(
        &mut self,
        locked: super::LockedClocks,
    ) -> Result<Vec<String>, PowerError> {
        let mut reset = Vec::new();
        for (domain, was_locked) in [(Domain::Sm, locked.sm), (Domain::Mem, locked.mem)] {
            if was_locked {
                self.reset_clock(domain).map_err(|e| {
                    PowerError::Failed(format!(
                        "could not reset the {} clocks to the default: {e}",
                        domain.name()
                    ))
                })?;
                reset.push(domain.name().to_string());
            }
        }
        Ok(reset)
    }
}

/// Reads go to the device; a lock arms the guard and is allowed only with
/// `allow_clock_changes`; a reset is always allowed.
impl ClockControl for PowerGuard {
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
}

/// The guard's clock control as a handle of its own, so a sweep can hold it beside
/// the guard's power control. Dropping it restores nothing: the guard does.
pub struct GuardedClocks {
    shared: std::sync::Arc<super::GuardShared>,
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
}
