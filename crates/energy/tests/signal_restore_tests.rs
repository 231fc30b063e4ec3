//! Restores that need a real process to end: this test binary runs itself as a child
//! that caps the fake device (shared through its JSON state file, found through
//! JOULEBENCH_FAKE_NVML as the CLI would), and the parent sends it SIGINT, SIGTERM,
//! SIGHUP or SIGKILL. After SIGKILL a second child plays `joulebench power restore`.
#![cfg(unix)]

use joulebench_core::PowerControl;
use joulebench_energy::guard::{
    default_state_dir, read_state_file, restore_from_state_file, state_file_for, GuardConfig,
    PowerGuard,
};
use joulebench_energy::nvml::{
    open_device, open_power_control_for_state, DeviceMatch, FakeDevice, FakeState, NvmlDevice,
    NvmlPowerControl, FAKE_NVML_ENV,
};
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const MODE_ENV: &str = "JOULEBENCH_TEST_CHILD_MODE";

/// The child's side; does nothing in a normal test run.
#[test]
fn child_helper() {
    let Ok(mode) = std::env::var(MODE_ENV) else {
        return;
    };
    let state_dir = default_state_dir().expect("JOULEBENCH_STATE_DIR is set by the parent");
    match mode.as_str() {
        "cap-and-wait" => {
            // Found by its PCI bus id in CUDA's spelling, as the CLI will.
            let device = open_device(&DeviceMatch::pci_bus_id("0000:65:00.0")).unwrap();
            let info = device.identity().unwrap();
            let config =
                GuardConfig::new(info.to_device_info(), info.device_kind(), &state_dir, true);
            let mut guard =
                PowerGuard::new(Box::new(NvmlPowerControl::new(device)), config).unwrap();
            guard.set_limit_w(300.0).unwrap();
            println!("ARMED");
            std::thread::sleep(Duration::from_secs(60));
            println!("NOT KILLED");
        }
        "restore" => {
            let device = open_device(&DeviceMatch::pci_bus_id("00000000:65:00.0")).unwrap();
            let info = device.identity().unwrap().to_device_info();
            let path = state_file_for(&state_dir, &info);
            let report = restore_from_state_file(&path, open_power_control_for_state).unwrap();
            println!("RESTORED {:.0}", report.restored_w);
        }
        other => panic!("unknown child mode {other}"),
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    fake_path: std::path::PathBuf,
    state_dir: std::path::PathBuf,
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

fn spawn_child(s: &Setup, mode: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_helper", "--nocapture", "--test-threads=1"])
        .env(MODE_ENV, mode)
        .env(FAKE_NVML_ENV, &s.fake_path)
        .env("JOULEBENCH_STATE_DIR", &s.state_dir)
        .env("JOULEBENCH_LOCK_DIR", s.state_dir.join(".locks"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for `marker` on the child's stdout; returns everything read.
fn wait_for(child: &mut Child, marker: &'static str) -> String {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = String::new();
        let mut found = false;
        // Keeps draining after the marker: a closed pipe would fail the child's
        // later output.
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            seen.push_str(&line);
            seen.push('\n');
            if !found && line.trim_end().ends_with(marker) {
                found = true;
                let _ = tx.send(Ok(seen.clone()));
            }
        }
        if !found {
            let _ = tx.send(Err(seen));
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Ok(seen)) => seen,
        other => {
            let _ = child.kill();
            let _ = child.wait();
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("child never printed {marker}: {other:?}\nstderr: {err}")
        }
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args(["-s", sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -s {sig} failed");
}

fn limit_w(fake_path: &Path) -> f64 {
    FakeDevice::from_state_file(fake_path)
        .unwrap()
        .state()
        .unwrap()
        .limit_mw as f64
        / 1000.0
}

fn state_file(s: &Setup) -> std::path::PathBuf {
    let fake = FakeDevice::from_state_file(&s.fake_path).unwrap();
    state_file_for(&s.state_dir, &fake.identity().unwrap().to_device_info())
}

fn capped_child(s: &Setup) -> Child {
    let mut child = spawn_child(s, "cap-and-wait");
    wait_for(&mut child, "ARMED");
    assert_eq!(limit_w(&s.fake_path), 300.0);
    let st = read_state_file(&state_file(s)).unwrap();
    assert_eq!(st.original_limit_w, 700.0);
    assert_eq!(st.pid, child.id());
    child
}

fn finish(mut child: Child) -> (ExitStatus, String) {
    let status = child.wait().unwrap();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    (status, err)
}

fn assert_restored_on(sig: &str, exit_code: i32) {
    let s = setup();
    let child = capped_child(&s);
    signal(&child, sig);
    let (status, stderr) = finish(child);
    assert_eq!(
        status.code(),
        Some(exit_code),
        "{sig}: {status:?}\n{stderr}"
    );
    assert!(
        stderr.contains("restored the power limit of Fake H100 (fake NVML) to 700 W"),
        "{stderr}"
    );
    assert_eq!(limit_w(&s.fake_path), 700.0);
    assert!(!state_file(&s).exists());
}

#[test]
fn sigint_restores_and_exits_130() {
    assert_restored_on("INT", 130);
}

#[test]
fn sigterm_restores_and_exits_143() {
    assert_restored_on("TERM", 143);
}

#[test]
fn sighup_restores_and_exits_129() {
    assert_restored_on("HUP", 129);
}

#[test]
fn after_sigkill_power_restore_puts_the_limit_back() {
    let s = setup();
    let child = capped_child(&s);
    signal(&child, "KILL");
    let (status, _) = finish(child);
    assert_eq!(status.signal(), Some(9));
    // Nothing could run: the cap stays, and so does the state file.
    assert_eq!(limit_w(&s.fake_path), 300.0);
    assert!(state_file(&s).exists());

    let mut restorer = spawn_child(&s, "restore");
    let seen = wait_for(&mut restorer, "RESTORED 700");
    let (status, stderr) = finish(restorer);
    assert!(status.success(), "{seen}\n{stderr}");
    assert_eq!(limit_w(&s.fake_path), 700.0);
    assert!(!state_file(&s).exists());
    let history = FakeDevice::from_state_file(&s.fake_path)
        .unwrap()
        .state()
        .unwrap()
        .limit_history_mw;
    assert_eq!(history, [300_000, 700_000]);
}
