//! `joulebench power status|restore`: where each GPU's power limit stands, and the
//! restore path after a sweep was killed before it could restore the limit itself.

use crate::args::PowerCommand;
use crate::error::{runtime, usage, CliError};
use joulebench_core::PowerControl;
use joulebench_energy::guard::{
    check_state_dir, default_lock_dir, default_state_dir, pending_restores, power_status,
    restore_from_state_file_full, DeviceLock, RestoreOptions,
};
use joulebench_energy::nvml::{self, NvmlPowerControl};

pub fn run(cmd: &PowerCommand) -> Result<(), CliError> {
    let dir = default_state_dir()
        .ok_or_else(|| runtime("no state directory: set JOULEBENCH_STATE_DIR or HOME"))?;
    // a state file in a directory others can write may be planted: trust none there
    check_state_dir(&dir).map_err(usage)?;
    match cmd {
        PowerCommand::Status { json } => {
            let devices = nvml::list_devices().map_err(|e| runtime(format!("NVML: {e}")))?;
            let mut statuses = Vec::new();
            let mut holders = Vec::new();
            for dev in devices {
                let id = dev.identity().map_err(|e| runtime(format!("NVML: {e}")))?;
                holders.push(DeviceLock::holder(
                    &default_lock_dir(),
                    &id.to_device_info(),
                ));
                let mut control = NvmlPowerControl::new(dev.clone());
                let status = power_status(
                    &mut control as &mut dyn PowerControl,
                    &id.to_device_info(),
                    &dir,
                )
                .map_err(runtime)?;
                statuses.push(status);
            }
            if *json {
                crate::out::line(&serde_json::to_string_pretty(&statuses).map_err(runtime)?)?;
                return Ok(());
            }
            for (s, holder) in statuses.iter().zip(&holders) {
                let l = &s.limits;
                crate::out::line(&s.device.to_string())?;
                crate::out::line(&format!(
                    "  power limit: {:.0} W now (enforced {}), default {:.0} W, allowed {:.0}–{:.0} W",
                    l.current_w,
                    s.enforced_w.map(|w| format!("{w:.0} W")).unwrap_or_else(|| "unknown".into()),
                    l.default_w,
                    l.min_w,
                    l.max_w
                ))?;
                match (&s.pending_restore, &s.pending_restore_error) {
                    (Some(p), _) => crate::out::line(&format!(
                        "  pending restore to {:.0} W{} ({}; writer {:?}): run `joulebench power restore`",
                        p.state.original_limit_w,
                        match (p.state.locked_clocks.sm, p.state.locked_clocks.mem) {
                            (true, true) => " and locked SM and memory clocks to reset",
                            (true, false) => " and a locked SM clock to reset",
                            (false, true) => " and a locked memory clock to reset",
                            _ => "",
                        },
                        p.path.display(),
                        p.owner
                    ))?,
                    (None, Some(e)) => crate::out::line(&format!("  unreadable state file: {e}"))?,
                    _ => crate::out::line("  no pending restore")?,
                }
                if let Some(h) = holder {
                    crate::out::line(&format!("  being changed now by {h}"))?;
                }
                if s.pending_restore.is_none()
                    && !joulebench_core::sweep::same_limit_w(l.current_w, l.default_w)
                {
                    crate::out::line(&format!(
                        "  the limit is not the default and no restore in {} is owed for it: another \
                         tool, or a sweep with another state directory, changed it; sweeps at the cap \
                         \"default\" flag their points cap-not-default (`nvidia-smi -pl {:.0}` sets the \
                         default back)",
                        dir.display(),
                        l.default_w
                    ))?;
                }
            }
            Ok(())
        }
        PowerCommand::Restore { force } => {
            let pending = pending_restores(&dir);
            if pending.is_empty() {
                crate::out::line(&format!(
                    "nothing to restore: no power state file in {}",
                    dir.display()
                ))?;
                return Ok(());
            }
            let mut failures = Vec::new();
            for (path, state) in pending {
                if let Err(e) = state {
                    failures.push(format!("{}: {e}", path.display()));
                    continue;
                }
                match restore_from_state_file_full(
                    &path,
                    RestoreOptions { force: *force },
                    joulebench_energy::restore::open_power_control_for_state,
                    joulebench_energy::restore::open_clock_control_for_state,
                ) {
                    Ok(r) => crate::out::line(&format!(
                        "restored {} to {:.0} W{}{}",
                        r.device,
                        r.restored_w,
                        r.was_w
                            .map(|w| format!(" (was {w:.0} W)"))
                            .unwrap_or_default(),
                        r.clocks_note()
                    ))?,
                    Err(e) => failures.push(format!("{}: {e}", path.display())),
                }
            }
            if failures.is_empty() {
                Ok(())
            } else {
                Err(runtime(format!(
                    "could not restore every limit:\n  {}",
                    failures.join("\n  ")
                )))
            }
        }
    }
}
