//! Locked clocks through the guard on the fake NVML device: the state file says a
//! clock is locked before it is, and every exit path resets it — finish, an error
//! return, a panic (in this process and in a child), SIGINT, SIGTERM and SIGHUP
//! (in a child), and a restore from the state file after a SIGKILL. No real GPU's
//! clocks are touched: the fake lives in memory or in a JSON file.

#![cfg(unix)]

mod common;

use common::{fake, fake_info, lock_dir, restore_options, taken_once_children_exec};
use joulebench_core::{ClockControl, PowerControl, PowerError};
use joulebench_energy::guard::{
    read_state_file, restore_from_state_file_full, restore_from_state_file_with, state_file_for,
    GuardConfig, PowerGuard, RestoreOptions, CLOCK_CHANGES_NOT_ALLOWED,
};
use joulebench_energy::nvml::{
    open_clock_control_for_state, open_device, open_power_control_for_state, DeviceMatch,
    FakeDevice, FakeState, NvmlClockControl, NvmlDevice, NvmlPowerControl, CLOCK_PERMISSION_HINT,
    DEVICE_KIND_FAKE, FAKE_NVML_ENV,
};
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

fn guard_with_clocks(f: &Arc<FakeDevice>, dir: &Path, allow_clocks: bool) -> PowerGuard {
    let config = GuardConfig::new(fake_info(f), DEVICE_KIND_FAKE, dir, false)
        .with_lock_dir(&lock_dir(dir))
        .with_clock_changes(allow_clocks);
    taken_once_children_exec(|| {
        PowerGuard::new_with_clocks(
            Box::new(NvmlPowerControl::new(f.clone())),
            Some(Box::new(NvmlClockControl::new(f.clone()))),
            config.clone(),
        )
    })
    .unwrap()
}

fn locked(f: &FakeDevice) -> Option<(u32, u32)> {
    f.state().unwrap().locked_sm_mhz
}

#[test]
fn a_locked_clock_is_in_the_state_file_first_and_reset_on_finish() {
    let dir = tempfile::tempdir().unwrap();
    let f = fake(FakeState::default());
    let path = state_file_for(dir.path(), &fake_info(&f));
    let g = guard_with_clocks(&f, dir.path(), true);
    assert_eq!(
        g.clock_handle().supported_sm_clocks_mhz().unwrap().last(),
        Some(&1980)
    );
    g.clock_handle().lock_sm_clocks_mhz(1200, 1200).unwrap();
    assert_eq!(locked(&f), Some((1200, 1200)));
    let s = read_state_file(&path).unwrap();
    assert!(s.locked_clocks.sm && !s.locked_clocks.mem);
    assert_eq!(s.original_limit_w, 700.0);
    // the telemetry sees the locked clock
    assert_eq!(f.clocks_mhz().unwrap().sm_mhz, Some(1200));
    g.clock_handle().lock_sm_clocks_mhz(900, 900).unwrap();
    let report = g.finish().unwrap().unwrap();
    assert_eq!(report.clocks_reset, ["SM"]);
    assert_eq!(locked(&f), None);
    assert!(!path.exists());
    assert_eq!(
        f.state().unwrap().clock_history,
        ["sm 1200-1200", "sm 900-900", "sm reset"]
    );
    // the limit was never touched
    assert!(f.state().unwrap().limit_history_mw.is_empty());
}

#[test]
fn an_error_return_and_a_panic_reset_the_clocks() {
    let dir = tempfile::tempdir().unwrap();
    let f = fake(FakeState::default());
    let result: Result<(), PowerError> = (|| {
        let g = guard_with_clocks(&f, dir.path(), true);
        g.clock_handle().lock_sm_clocks_mhz(1005, 1005)?;
        Err(PowerError::Failed("the sweep failed half-way".into()))
    })();
    assert!(result.is_err());
    assert_eq!(locked(&f), None);

    let caught = catch_unwind(AssertUnwindSafe(|| {
        let g = guard_with_clocks(&f, dir.path(), true);
        g.clock_handle().lock_sm_clocks_mhz(1005, 1005).unwrap();
        panic!("a kernel panicked with the clock locked");
    }));
    assert!(caught.is_err());
    assert_eq!(locked(&f), None);
    assert!(!state_file_for(dir.path(), &fake_info(&f)).exists());
}

#[test]
fn clocks_lock_only_when_allowed_and_the_driver_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let f = fake(FakeState::default());
    let path = state_file_for(dir.path(), &fake_info(&f));
    let g = guard_with_clocks(&f, dir.path(), false);
    match g.clock_handle().lock_sm_clocks_mhz(1200, 1200) {
        Err(PowerError::NotPermitted(m)) => assert_eq!(m, CLOCK_CHANGES_NOT_ALLOWED),
        other => panic!("{other:?}"),
    }
    assert!(!path.exists() && locked(&f).is_none());
    drop(g);

    f.update(|s| s.deny_clock_changes = true).unwrap();
    let g = guard_with_clocks(&f, dir.path(), true);
    match g.clock_handle().lock_sm_clocks_mhz(1200, 1200) {
        Err(PowerError::NotPermitted(m)) => assert_eq!(m, CLOCK_PERMISSION_HINT),
        other => panic!("{other:?}"),
    }
    f.update(|s| s.deny_clock_changes = false).unwrap();
    // a clock the device does not support is refused by it, and nothing stays locked
    assert!(g.clock_handle().lock_sm_clocks_mhz(1201, 1201).is_err());
    assert!(locked(&f).is_none());
    g.finish().unwrap();
    assert!(!path.exists());
}

#[test]
fn a_restore_from_the_state_file_resets_the_clocks_it_records() {
    let dir = tempfile::tempdir().unwrap();
    let f = fake(FakeState::default());
    let path = state_file_for(dir.path(), &fake_info(&f));
    let g = guard_with_clocks(&f, dir.path(), true);
    g.clock_handle().lock_sm_clocks_mhz(1200, 1200).unwrap();
    // what a SIGKILL leaves: the clock locked, the state file written, no restore
    std::mem::forget(g);
    assert!(path.exists() && locked(&f).is_some());
    let open_power =
        |_: &_| Ok(Box::new(NvmlPowerControl::new(f.clone())) as Box<dyn PowerControl>);
    // the forgotten guard still holds the GPU's lock: `power restore` is refused
    let e = restore_from_state_file_with(&path, restore_options(dir.path(), true), open_power)
        .unwrap_err();
    assert!(matches!(e, PowerError::Locked { .. }), "{e}");
    // this process wrote it (standing in for the killed sweep, whose lock went with
    // it: another lock directory here): forced. Without a clock control the restore
    // refuses rather than forget the clock.
    let forced = restore_options(&dir.path().join("after-the-kill"), true);
    let e = restore_from_state_file_with(&path, forced.clone(), open_power).unwrap_err();
    assert!(e.to_string().contains("locked clocks"), "{e}");
    assert!(path.exists() && locked(&f).is_some());
    let report = restore_from_state_file_full(&path, forced, open_power, |_| {
        Ok(Box::new(NvmlClockControl::new(f.clone())) as Box<dyn ClockControl>)
    })
    .unwrap();
    assert_eq!(report.clocks_reset, ["SM"]);
    assert_eq!(locked(&f), None);
    assert!(!path.exists());
}

// ---- real child processes, on a fake kept in a file ----

const MODE_ENV: &str = "JOULEBENCH_TEST_CLOCK_CHILD";

/// The child's side; does nothing in a normal test run.
#[test]
fn child_helper() {
    let Ok(mode) = std::env::var(MODE_ENV) else {
        return;
    };
    let state_dir = PathBuf::from(std::env::var("JOULEBENCH_STATE_DIR").unwrap());
    let device = open_device(&DeviceMatch::pci_bus_id("0000:65:00.0")).unwrap();
    let info = device.identity().unwrap();
    let config = GuardConfig::new(info.to_device_info(), info.device_kind(), &state_dir, false)
        .with_lock_dir(&state_dir.join(".locks"))
        .with_clock_changes(true);
    match mode.as_str() {
        "lock-and-wait" | "lock-and-panic" => {
            let guard = PowerGuard::new_with_clocks(
                Box::new(NvmlPowerControl::new(device.clone())),
                Some(Box::new(NvmlClockControl::new(device))),
                config,
            )
            .unwrap();
            guard.clock_handle().lock_sm_clocks_mhz(1200, 1200).unwrap();
            println!("LOCKED");
            if mode == "lock-and-panic" {
                panic!("a kernel panicked with the clock locked");
            }
            std::thread::sleep(Duration::from_secs(60));
            println!("NOT KILLED");
        }
        "restore" => {
            let path = state_file_for(&state_dir, &info.to_device_info());
            let report = restore_from_state_file_full(
                &path,
                RestoreOptions::default(),
                open_power_control_for_state,
                open_clock_control_for_state,
            )
            .unwrap();
            println!("RESET {}", report.clocks_reset.join(","));
        }
        other => panic!("unknown child mode {other}"),
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    fake_path: PathBuf,
    state_dir: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let fake_path = dir.path().join("fake-nvml.json");
    FakeDevice::create(&fake_path, FakeState::default()).unwrap();
    let state_dir = dir.path().join("state");
    Setup {
        _dir: dir,
        fake_path,
        state_dir,
    }
}

fn spawn(s: &Setup, mode: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_helper", "--nocapture", "--test-threads=1"])
        .env(MODE_ENV, mode)
        .env(FAKE_NVML_ENV, &s.fake_path)
        .env("JOULEBENCH_STATE_DIR", &s.state_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Reads the child's stdout until `marker`; the rest is drained in a thread.
fn wait_for(child: &mut Child, marker: &str) {
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().trim_end().ends_with(marker) {
            std::thread::spawn(move || lines.for_each(drop));
            return;
        }
    }
    let _ = child.kill();
    panic!("the child never printed {marker}");
}

fn finish(mut child: Child) -> (ExitStatus, String) {
    let status = child.wait().unwrap();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    (status, err)
}

fn fake_locked(s: &Setup) -> Option<(u32, u32)> {
    FakeDevice::from_state_file(&s.fake_path)
        .unwrap()
        .state()
        .unwrap()
        .locked_sm_mhz
}

fn state_file(s: &Setup) -> PathBuf {
    let fake = FakeDevice::from_state_file(&s.fake_path).unwrap();
    state_file_for(&s.state_dir, &fake.identity().unwrap().to_device_info())
}

fn assert_reset_on(sig: i32, code: i32) {
    let s = setup();
    let mut child = spawn(&s, "lock-and-wait");
    wait_for(&mut child, "LOCKED");
    assert_eq!(fake_locked(&s), Some((1200, 1200)));
    // SAFETY: a signal to our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
    let (status, stderr) = finish(child);
    assert_eq!(status.code(), Some(code), "{stderr}");
    assert!(stderr.contains("reset the SM clocks of"), "{stderr}");
    assert_eq!(fake_locked(&s), None);
    assert!(!state_file(&s).exists());
}

#[test]
fn sigint_sigterm_and_sighup_reset_the_clocks() {
    assert_reset_on(libc::SIGINT, 130);
    assert_reset_on(libc::SIGTERM, 143);
    assert_reset_on(libc::SIGHUP, 129);
}

#[test]
fn a_panic_in_a_child_resets_the_clocks() {
    let s = setup();
    let mut child = spawn(&s, "lock-and-panic");
    wait_for(&mut child, "LOCKED");
    let (status, stderr) = finish(child);
    assert!(!status.success(), "{stderr}");
    assert_eq!(fake_locked(&s), None, "{stderr}");
    assert!(!state_file(&s).exists());
}

#[test]
fn after_sigkill_the_state_file_resets_the_clocks() {
    let s = setup();
    let mut child = spawn(&s, "lock-and-wait");
    wait_for(&mut child, "LOCKED");
    // SAFETY: a signal to our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGKILL) }, 0);
    let (status, _) = finish(child);
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert_eq!(
        fake_locked(&s),
        Some((1200, 1200)),
        "nothing can reset after SIGKILL"
    );
    assert!(read_state_file(&state_file(&s)).unwrap().locked_clocks.sm);

    let mut restorer = spawn(&s, "restore");
    wait_for(&mut restorer, "RESET SM");
    let (status, stderr) = finish(restorer);
    assert!(status.success(), "{stderr}");
    assert_eq!(fake_locked(&s), None);
    assert!(!state_file(&s).exists());
}
