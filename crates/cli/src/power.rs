//! `joulebench power status|restore`: where each GPU's power limit and clocks stand
//! on every control joulebench drives (NVML, amdsmi, amdgpu's hwmon), and the
//! restore path after a run was killed before it could restore them itself. Both go
//! through the per-GPU lock: a GPU another live process holds is never restored.

use crate::args::PowerCommand;
use crate::error::{runtime, usage, CliError};
use crate::out::print as print_stdout;
use joulebench_energy::guard::{
    check_state_dir, default_lock_dir, default_state_dir, pending_restores, power_status_of,
    restore_from_state_file_full, PendingRestore, PowerStatus, RestoreOptions,
};
use joulebench_energy::restore::{
    open_clock_control_for_state, open_power_control_for_state, status_targets,
};
use serde::Serialize;
use std::fmt::Write;
use std::path::Path;

pub fn run(cmd: &PowerCommand) -> Result<(), CliError> {
    let dir = default_state_dir().ok_or_else(|| {
        usage("no state directory: set JOULEBENCH_STATE_DIR, or HOME to an absolute path")
    })?;
    // a state file in a directory others can write may be planted: trust none there
    check_state_dir(&dir).map_err(usage)?;
    match cmd {
        PowerCommand::Status { json } => status(&dir, *json),
        PowerCommand::Restore { force } => restore(&dir, *force),
    }
}

#[derive(Serialize)]
struct StatusReport {
    devices: Vec<PowerStatus>,
    /// State files in the state directory whose device was not found now.
    other_pending: Vec<PendingRestore>,
    /// State files that could not be read.
    unreadable: Vec<String>,
    /// Kinds of control not found, and why.
    missing: Vec<String>,
}

fn status(dir: &Path, json: bool) -> Result<(), CliError> {
    let lock_dir = default_lock_dir();
    let (targets, missing) = status_targets();
    let mut devices = Vec::new();
    for mut t in targets {
        devices.push(power_status_of(
            t.power
                .as_mut()
                .map(|p| p.as_mut() as &mut dyn joulebench_core::PowerControl),
            t.clocks
                .as_mut()
                .map(|c| c.as_mut() as &mut dyn joulebench_core::ClockControl),
            &t.device,
            &t.device_kind,
            dir,
            &lock_dir,
        ));
    }
    let shown: Vec<&Path> = devices
        .iter()
        .filter_map(|d| d.pending_restore.as_ref().map(|p| p.path.as_path()))
        .collect();
    let mut other_pending = Vec::new();
    let mut unreadable = Vec::new();
    for (path, state) in pending_restores(dir) {
        match state {
            Ok(_) if shown.contains(&path.as_path()) => {}
            Ok(state) => other_pending.push(PendingRestore {
                owner: joulebench_energy::guard::owner_status(&state),
                command: joulebench_energy::guard::restore_command(&path),
                path,
                state,
            }),
            Err(e) => unreadable.push(format!("{}: {e}", path.display())),
        }
    }
    let report = StatusReport {
        devices,
        other_pending,
        unreadable,
        missing,
    };
    if json {
        let text = serde_json::to_string_pretty(&report).map_err(runtime)?;
        return print_stdout(&format!("{text}\n"));
    }
    print_stdout(&describe(&report, dir))
}

fn describe(r: &StatusReport, dir: &Path) -> String {
    let mut out = String::new();
    if r.devices.is_empty() {
        let _ = writeln!(out, "no GPU whose power limit joulebench can read");
    }
    for s in &r.devices {
        let _ = writeln!(out, "{} ({})", s.device, s.device_kind);
        match (&s.limits, &s.limits_error) {
            (Some(l), _) => {
                let _ = writeln!(
                    out,
                    "  power limit: {:.0} W now (enforced {}), default {:.0} W, allowed {:.0}–{:.0} W",
                    l.current_w,
                    s.enforced_w
                        .map(|w| format!("{w:.0} W"))
                        .unwrap_or_else(|| "unknown".into()),
                    l.default_w,
                    l.min_w,
                    l.max_w
                );
            }
            (None, Some(e)) => {
                let _ = writeln!(out, "  power limit: cannot be read ({e})");
            }
            _ => {}
        }
        match &s.clock_locks {
            Some(c) if c.any() => {
                let _ = writeln!(out, "  clocks: locked ({})", c.describe());
            }
            Some(_) => {
                let _ = writeln!(out, "  clocks: at the default (not locked)");
            }
            None => {}
        }
        match (&s.pending_restore, &s.pending_restore_error) {
            (Some(p), _) => {
                let _ = writeln!(out, "  {}", pending_line(p));
            }
            (None, Some(e)) => {
                let _ = writeln!(out, "  unreadable state file: {e}");
            }
            _ => {
                let _ = writeln!(out, "  no pending restore in {}", dir.display());
            }
        }
        if let Some(p) = &s.owed_elsewhere {
            let _ = writeln!(
                out,
                "  owed from another state directory: {}",
                pending_line(p)
            );
        }
        if let Some(h) = &s.holder {
            let _ = writeln!(out, "  being changed now by {h}");
        }
        if s.limit_off_default_unowed() {
            if let Some(l) = &s.limits {
                let _ = writeln!(
                    out,
                    "  the limit is not the default and no restore is owed for it: another tool, or a \
                     run whose state file is gone, changed it; sweeps at the cap \"default\" flag their \
                     points cap-not-default (the default is {:.0} W)",
                    l.default_w
                );
            }
        }
        let clocks_owed =
            |p: &Option<PendingRestore>| p.as_ref().is_some_and(|p| p.state.locked_clocks.any());
        if s.clock_locks.is_some_and(|c| c.any())
            && !clocks_owed(&s.pending_restore)
            && !clocks_owed(&s.owed_elsewhere)
        {
            let _ = writeln!(
                out,
                "  the clocks are locked and no restore is owed for them: another tool, or a run \
                 whose state file is gone, locked them; sweeps at default clocks flag their points \
                 clocks-not-default (`nvidia-smi -rgc` resets them)"
            );
        }
    }
    for p in &r.other_pending {
        let _ = writeln!(
            out,
            "{} (not found now)\n  {}",
            p.state.device.name,
            pending_line(p)
        );
    }
    for u in &r.unreadable {
        let _ = writeln!(out, "unreadable state file: {u}");
    }
    for m in &r.missing {
        let _ = writeln!(out, "not available: {m}");
    }
    out
}

/// "pending restore of the power limit (to restore to 300 W) (state file; writer
/// gone): run `joulebench power restore`".
fn pending_line(p: &PendingRestore) -> String {
    format!(
        "pending restore of {} ({}; writer {:?}): run `{}`",
        p.state.describe_owed(),
        p.path.display(),
        p.owner,
        p.command
    )
}

fn restore(dir: &Path, force: bool) -> Result<(), CliError> {
    let pending = pending_restores(dir);
    if pending.is_empty() {
        return print_stdout(&format!(
            "nothing to restore: no power state file in {}\n",
            dir.display()
        ));
    }
    let mut failures = Vec::new();
    let mut refusals = 0;
    for (path, state) in pending {
        if let Err(e) = state {
            failures.push(format!("{}: {e}", path.display()));
            continue;
        }
        match restore_from_state_file_full(
            &path,
            RestoreOptions {
                force,
                lock_dir: None,
            },
            open_power_control_for_state,
            open_clock_control_for_state,
        ) {
            Ok(r) => print_stdout(&format!(
                "restored: {}{}\n",
                r.describe(),
                r.was_w
                    .filter(|_| r.limit_restored)
                    .map(|w| format!(" (was {w:.0} W)"))
                    .unwrap_or_default()
            ))?,
            Err(e) => {
                if e.is_refusal() {
                    refusals += 1;
                }
                failures.push(format!("{}: {e}", path.display()))
            }
        }
    }
    if failures.is_empty() {
        return Ok(());
    }
    let message = format!("could not restore everything:\n  {}", failures.join("\n  "));
    // every failure a refusal (a GPU another process holds): the user's call, not a fault
    if refusals == failures.len() {
        Err(usage(message))
    } else {
        Err(runtime(message))
    }
}
