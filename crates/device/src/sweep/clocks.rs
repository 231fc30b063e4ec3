//! A sweep's clocks against the device's before anything changes: the clock axes
//! resolved to clocks the GPU supports (a clock it lacks refused with the nearest
//! ones, a range snapped to them, a memory-clock axis only where there is more than
//! one memory clock), and clocks found locked by a killed run or another tool.

use super::error::SweepSetupError;
use crate::device::OpenDevice;
use joulebench_core::plan::SweepConfig;
use joulebench_core::ClockSpec;
use joulebench_energy::guard::{default_lock_dir, default_state_dir, found_clock_locks};

/// Replace the config's clock axes by the supported clocks they mean.
pub(crate) fn resolve(cfg: &mut SweepConfig, dev: &mut OpenDevice) -> Result<(), SweepSetupError> {
    let locks = |v: &[ClockSpec]| v.iter().any(|c| !c.is_default());
    let (sm, mem) = (locks(&cfg.sm_clocks), locks(&cfg.mem_clocks));
    if !sm && !mem {
        return Ok(());
    }
    let device = dev.backend.device().name.clone();
    let Some(control) = dev.clocks_mut() else {
        return Err(SweepSetupError::Clocks(format!(
            "{device} has no clock control, so its clocks cannot be locked (NVML GPUs and the \
             simulated device have one)"
        )));
    };
    let explicit = |specs: Vec<Option<u32>>| -> Vec<ClockSpec> {
        specs
            .into_iter()
            .map(|c| c.map_or(ClockSpec::Default, ClockSpec::Mhz))
            .collect()
    };
    if sm {
        let supported = control
            .supported_sm_clocks_mhz()
            .map_err(|source| SweepSetupError::ClockRead { what: "SM", source })?;
        let resolved = ClockSpec::resolve(&cfg.sm_clocks, &supported, "SM")
            .map_err(|e| SweepSetupError::Clocks(format!("SM clocks (--sm-clocks): {e}")))?;
        cfg.sm_clocks = explicit(resolved);
    }
    if mem {
        let supported =
            control
                .supported_mem_clocks_mhz()
                .map_err(|source| SweepSetupError::ClockRead {
                    what: "memory",
                    source,
                })?;
        if let [only] = supported.as_slice() {
            return Err(SweepSetupError::Clocks(format!(
                "{device} offers one memory clock ({only} MHz): there is no memory clock to sweep; \
                 drop --mem-clocks"
            )));
        }
        let resolved = ClockSpec::resolve(&cfg.mem_clocks, &supported, "memory")
            .map_err(|e| SweepSetupError::Clocks(format!("memory clocks (--mem-clocks): {e}")))?;
        cfg.mem_clocks = explicit(resolved);
    }
    Ok(())
}

/// Clocks are checked at the start the way the limit is: found locked (by a run
/// that was killed, or another tool), a sweep that would lock clocks itself is
/// refused — its restore resets to the default, a state it did not find — and any
/// other sweep is told so (the warning returned) and flags its points at default
/// clocks.
pub(crate) fn check_found_locks(
    dev: &mut OpenDevice,
    wants_clocks: bool,
) -> Result<Option<String>, SweepSetupError> {
    let Some(id) = dev.control_identity() else {
        return Ok(None);
    };
    let name = dev.backend.device().name.clone();
    let state_dir = default_state_dir();
    let Some(found) = found_clock_locks(
        dev.clocks_mut(),
        &id,
        state_dir.as_deref(),
        &default_lock_dir(),
    ) else {
        return Ok(None);
    };
    if wants_clocks {
        return Err(SweepSetupError::ClocksFoundLocked {
            device: name,
            found: found.describe(),
        });
    }
    let warning = format!(
        "{name}: {}, not at its default (see `joulebench power status`); points at default \
         clocks run at it and are flagged clocks-not-default, never used as the default-clock \
         baseline",
        found.describe()
    );
    dev.assume_found_clock_locks(found.locks);
    Ok(Some(warning))
}
