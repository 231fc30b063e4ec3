//! The power guard on the fake NVML device: every in-process restore path (finish,
//! error return, panic, drop), the state file, restoring from it, and every refusal
//! that must happen before anything changes.

mod common;

use common::{fake, fake_info, guard_on, limit_w, lock_dir, restore_options};
use joulebench_core::{PowerCap, PowerControl, PowerError, PowerLimits};
use joulebench_energy::guard::{
    power_status, read_state_file, resolve_caps, restore_from_state_file_with, state_file_for,
    write_state_file, GuardConfig, OwnerStatus, PowerGuard, PowerStateFile, StateDevice,
    CHANGES_NOT_ALLOWED, STATE_FILE_SCHEMA,
};
use joulebench_energy::nvml::{FakeDevice, FakeState, NvmlPowerControl, DEVICE_KIND_FAKE};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::Arc;

fn state_path(dir: &Path, f: &FakeDevice) -> std::path::PathBuf {
    state_file_for(dir, &fake_info(f))
}

#[test]
fn success_path_restores_and_removes_the_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = fake(FakeState::default());
    let mut g = guard_on(&f, dir.path(), true);
    let path = state_path(dir.path(), &f);

    g.set_limit_w(300.0).unwrap();
    assert_eq!(limit_w(&f), 300.0);
    assert_eq!(g.enforced_limit_w().unwrap(), 300.0);
    assert_eq!(g.original_limit_w(), Some(700.0));

    // The state file exists while the cap is on, and says how to undo it.
    let s = read_state_file(&path).unwrap();
    assert_eq!(s.schema, STATE_FILE_SCHEMA);
    assert_eq!(s.original_limit_w, 700.0);
    assert_eq!(s.default_limit_w, 700.0);
    assert_eq!((s.min_limit_w, s.max_limit_w), (200.0, 700.0));
    assert_eq!(s.pid, std::process::id());
    assert_eq!(s.device_kind, DEVICE_KIND_FAKE);
    assert_eq!(s.device.uuid, fake_info(&f).uuid);
    assert_eq!(s.device.pci_bus_id.as_deref(), Some("0000:65:00.0"));
    assert!(s.written_unix_s > 1.6e9);
    assert_eq!(joulebench_energy::guard::owner_status(&s), OwnerStatus::Us);

    g.set_limit_w(250.0).unwrap();
    // The original stays the limit as first found, not the previous cap.
    assert_eq!(read_state_file(&path).unwrap().original_limit_w, 700.0);

    let report = g.finish().unwrap().unwrap();
    assert_eq!(report.restored_w, 700.0);
    assert_eq!(report.was_w, Some(250.0));
    assert_eq!(limit_w(&f), 700.0);
    assert!(!path.exists());
    assert_eq!(
        f.state().unwrap().limit_history_mw,
        [300_000, 250_000, 700_000]
    );
}

fn sweep_that_fails(g: &mut PowerGuard) -> Result<(), PowerError> {
    g.set_limit_w(300.0)?;
    Err(PowerError::Failed("the sweep failed half-way".into()))
}

#[test]
fn an_error_return_restores_through_drop() {
    let dir = tempfile::tempdir().unwrap();
    let f = fake(FakeState::default());
    let path = state_path(dir.path(), &f);
    let result = (|| {
        let mut g = guard_on(&f, dir.path(), true);
        sweep_that_fails(&mut g)?;
        g.finish().map(|_| ())
    })();
    assert!(result.is_err());
    assert_eq!(limit_w(&f), 700.0);
    assert!(!path.exists());
}

#[test]
fn a_panic_that_unwinds_restores() {
    let dir = tempfile::tempdir().unwrap();
    let f = fake(FakeState::default());
    let path = state_path(dir.path(), &f);
    let caught = catch_unwind(AssertUnwindSafe(|| {
        let mut g = guard_on(&f, dir.path(), true);
        g.set_limit_w(300.0).unwrap();
        assert_eq!(limit_w(&f), 300.0);
        panic!("a kernel panicked mid-sweep");
    }));
    assert!(caught.is_err());
    assert_eq!(limit_w(&f), 700.0);
    assert!(!path.exists());
}

#[test]
fn the_panic_hook_restores_a_guard_that_outlives_the_panic_and_closes_it() {
    let dir = tempfile::tempdir().unwrap();
    let f = fake(FakeState::default());
    let path = state_path(dir.path(), &f);
    let mut g = guard_on(&f, dir.path(), true);
    let caught = catch_unwind(AssertUnwindSafe(|| {
        g.set_limit_w(300.0).unwrap();
        panic!("caught higher up, with the guard still alive");
    }));
    assert!(caught.is_err());
    // Restored by the hook, before any Drop ran.
    assert_eq!(limit_w(&f), 700.0);
    assert!(!path.exists());
    let refused = g.set_limit_w(250.0).unwrap_err();
    assert!(
        refused.to_string().contains("already restored"),
        "{refused}"
    );
    assert_eq!(limit_w(&f), 700.0);
    assert!(g.finish().unwrap().is_none());
}

#[test]
fn restore_is_idempotent_and_the_guard_can_arm_again() {
    let dir = tempfile::tempdir().unwrap();
    let f = fake(FakeState::default());
    let path = state_path(dir.path(), &f);
    let mut g = guard_on(&f, dir.path(), true);
    assert!(g.restore().unwrap().is_none());
    g.set_limit_w(400.0).unwrap();
    assert!(g.restore().unwrap().is_some());
    assert!(g.restore().unwrap().is_none());
    g.set_limit_w(350.0).unwrap();
    assert!(path.exists());
    drop(g);
    assert_eq!(limit_w(&f), 700.0);
    assert!(!path.exists());
}

#[test]
fn caps_outside_the_device_range_are_refused_before_anything_changes() {
    let dir = tempfile::tempdir().unwrap();
    let f = fake(FakeState::default());
    let path = state_path(dir.path(), &f);
    let mut g = guard_on(&f, dir.path(), true);
    for bad in [150.0, 701.0, f64::NAN, -5.0] {
        let e = g.set_limit_w(bad).unwrap_err();
        assert!(matches!(e, PowerError::OutOfRange { .. }), "{bad}: {e}");
    }
    assert!(!path.exists());
    assert!(f.state().unwrap().limit_history_mw.is_empty());

    let limits = g.limits().unwrap();
    let caps = PowerCap::parse_list("default, 300, 50%, 200:300:50").unwrap();
    assert_eq!(
        resolve_caps(&caps, &limits).unwrap(),
        [700.0, 300.0, 350.0, 200.0, 250.0, 300.0]
    );
    let e = resolve_caps(&PowerCap::parse_list("300, 100").unwrap(), &limits).unwrap_err();
    assert!(e.to_string().contains("200–700 W"), "{e}");
    let e = resolve_caps(&PowerCap::parse_list("120%").unwrap(), &limits).unwrap_err();
    assert!(matches!(e, PowerError::OutOfRange { .. }));
}

#[test]
fn changes_are_refused_without_permission_to_make_them() {
    let dir = tempfile::tempdir().unwrap();
    let f = fake(FakeState::default());
    let path = state_path(dir.path(), &f);
    let mut g = guard_on(&f, dir.path(), false);
    assert!(!g.changes_allowed());
    match g.set_limit_w(300.0) {
        Err(PowerError::NotPermitted(m)) => {
            assert_eq!(m, CHANGES_NOT_ALLOWED);
            assert!(m.contains("--allow-power-changes"));
        }
        other => panic!("expected NotPermitted, got {other:?}"),
    }
    // Asking for the limit already in force changes nothing and needs no permission.
    g.set_limit_w(700.0).unwrap();
    assert!(!path.exists());
    assert_eq!(limit_w(&f), 700.0);
    assert!(f.state().unwrap().limit_history_mw.is_empty());
}

#[test]
fn a_user_without_root_is_told_which_right_is_missing_and_nothing_is_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    let f = fake(FakeState {
        deny_set_limit: true,
        ..Default::default()
    });
    let path = state_path(dir.path(), &f);
    let mut g = guard_on(&f, dir.path(), true);
    match g.set_limit_w(300.0) {
        Err(PowerError::NotPermitted(m)) => {
            assert!(m.contains("root (or CAP_SYS_ADMIN)"), "{m}");
        }
        other => panic!("expected NotPermitted, got {other:?}"),
    }
    assert_eq!(limit_w(&f), 700.0);
    // Nothing changed, so no restore is owed and no state file remains.
    assert!(!path.exists());
    assert!(g.original_limit_w().is_none());
    assert!(g.finish().unwrap().is_none());
}

fn stale_state(f: &FakeDevice, pid: u32, original_w: f64) -> PowerStateFile {
    PowerStateFile {
        schema: STATE_FILE_SCHEMA,
        device: StateDevice::of(&fake_info(f)),
        device_kind: DEVICE_KIND_FAKE.into(),
        original_limit_w: original_w,
        default_limit_w: 700.0,
        min_limit_w: 200.0,
        max_limit_w: 700.0,
        pid,
        process_start_ticks: None,
        boot_id: None,
        host: None,
        written_unix_s: 1.7e9,
        locked_clocks: Default::default(),
        limit_owed: true,
    }
}

/// A pid no process has (Linux pids stay below 2^22).
const DEAD_PID: u32 = 4_000_000_000;

fn open_fake(
    f: &Arc<FakeDevice>,
) -> impl FnOnce(&PowerStateFile) -> Result<Box<dyn PowerControl>, PowerError> + '_ {
    move |_s| Ok(Box::new(NvmlPowerControl::new(f.clone())) as Box<dyn PowerControl>)
}

#[test]
fn after_a_kill_the_state_file_restores_the_original_limit() {
    let dir = tempfile::tempdir().unwrap();
    // What a SIGKILLed run leaves: the device capped, the state file in place.
    let f = fake(FakeState {
        limit_mw: 300_000,
        ..Default::default()
    });
    let path = state_path(dir.path(), &f);
    write_state_file(&path, &stale_state(&f, DEAD_PID, 700.0)).unwrap();

    // A new run refuses to start from the capped limit "as found".
    let config = GuardConfig::new(fake_info(&f), DEVICE_KIND_FAKE, dir.path(), true)
        .with_lock_dir(&lock_dir(dir.path()));
    let e = PowerGuard::new(Box::new(NvmlPowerControl::new(f.clone())), config)
        .err()
        .unwrap();
    assert!(e.to_string().contains("joulebench power restore"), "{e}");

    let status = power_status(
        &mut NvmlPowerControl::new(f.clone()),
        &fake_info(&f),
        dir.path(),
    )
    .unwrap();
    assert_eq!(
        status.limits.unwrap(),
        PowerLimits {
            min_w: 200.0,
            max_w: 700.0,
            default_w: 700.0,
            current_w: 300.0
        }
    );
    let pending = status.pending_restore.unwrap();
    assert_eq!(pending.owner, OwnerStatus::Gone);
    assert_eq!(pending.state.original_limit_w, 700.0);

    let report =
        restore_from_state_file_with(&path, restore_options(dir.path(), false), open_fake(&f))
            .unwrap();
    assert_eq!((report.restored_w, report.was_w), (700.0, Some(300.0)));
    assert_eq!(limit_w(&f), 700.0);
    assert!(!path.exists());

    let again =
        restore_from_state_file_with(&path, restore_options(dir.path(), false), open_fake(&f))
            .unwrap_err();
    assert!(
        again.to_string().contains("no restore is pending"),
        "{again}"
    );
    let status = power_status(
        &mut NvmlPowerControl::new(f.clone()),
        &fake_info(&f),
        dir.path(),
    )
    .unwrap();
    assert!(status.pending_restore.is_none());
}

#[test]
fn restore_refuses_while_the_writer_runs_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let f = fake(FakeState {
        limit_mw: 300_000,
        ..Default::default()
    });
    let path = state_path(dir.path(), &f);
    // This test process stands in for a sweep still running.
    let mut s = stale_state(&f, std::process::id(), 700.0);
    s.process_start_ticks = None;
    write_state_file(&path, &s).unwrap();
    let e = restore_from_state_file_with(&path, restore_options(dir.path(), false), open_fake(&f))
        .unwrap_err();
    assert!(e.to_string().contains("still runs"), "{e}");
    assert_eq!(limit_w(&f), 300.0);
    let config = GuardConfig::new(fake_info(&f), DEVICE_KIND_FAKE, dir.path(), true)
        .with_lock_dir(&lock_dir(dir.path()));
    assert!(PowerGuard::new(Box::new(NvmlPowerControl::new(f.clone())), config).is_err());

    restore_from_state_file_with(&path, restore_options(dir.path(), true), open_fake(&f)).unwrap();
    assert_eq!(limit_w(&f), 700.0);
    assert!(!path.exists());
}

#[test]
fn a_state_file_for_another_device_is_not_applied() {
    let dir = tempfile::tempdir().unwrap();
    let f = fake(FakeState {
        limit_mw: 300_000,
        ..Default::default()
    });
    let path = state_path(dir.path(), &f);
    write_state_file(&path, &stale_state(&f, DEAD_PID, 900.0)).unwrap();
    let e = restore_from_state_file_with(&path, restore_options(dir.path(), false), open_fake(&f))
        .unwrap_err();
    assert!(e.to_string().contains("does not fit this device"), "{e}");
    assert_eq!(limit_w(&f), 300.0);
    assert!(
        path.exists(),
        "the state file is kept when nothing was restored"
    );

    std::fs::write(&path, "{ not json").unwrap();
    let e = restore_from_state_file_with(&path, restore_options(dir.path(), false), open_fake(&f))
        .unwrap_err();
    assert!(e.to_string().contains("damaged"), "{e}");
}

#[test]
fn a_device_lost_mid_sweep_is_an_error_and_the_restore_stays_owed() {
    let dir = tempfile::tempdir().unwrap();
    let f = fake(FakeState::default());
    let path = state_path(dir.path(), &f);
    let mut g = guard_on(&f, dir.path(), true);
    g.set_limit_w(300.0).unwrap();
    f.update(|s| s.lost = true).unwrap();
    let e = g.set_limit_w(250.0).unwrap_err();
    assert!(matches!(e, PowerError::Failed(_)), "{e}");
    assert!(e.to_string().contains("lost"), "{e}");
    assert!(g.enforced_limit_w().is_err());
    // The restore cannot happen on a lost device; the state file says what is owed.
    assert!(g.restore().is_err());
    drop(g);
    assert!(path.exists());

    // The GPU comes back (a reset); `power restore` finishes the job.
    f.update(|s| s.lost = false).unwrap();
    restore_from_state_file_with(&path, restore_options(dir.path(), true), open_fake(&f)).unwrap();
    assert_eq!(limit_w(&f), 700.0);
    assert!(!path.exists());
}

#[test]
fn two_guards_on_one_device_in_one_process_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let f = fake(FakeState::default());
    let mut g1 = guard_on(&f, dir.path(), true);
    g1.set_limit_w(300.0).unwrap();
    let config = GuardConfig::new(fake_info(&f), DEVICE_KIND_FAKE, dir.path(), true)
        .with_lock_dir(&lock_dir(dir.path()));
    let e = PowerGuard::new(Box::new(NvmlPowerControl::new(f.clone())), config)
        .err()
        .unwrap();
    // the GPU's lock is held: the second guard names the process that holds it
    let me = format!("joulebench process {}", std::process::id());
    assert!(e.to_string().contains(&me), "{e}");
    g1.finish().unwrap();
}
