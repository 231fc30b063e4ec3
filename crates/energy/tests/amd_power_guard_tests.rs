//! The power guard restores an AMD GPU's cap on every exit path as it does NVML's,
//! for both controls: amdsmi (the fake, shared through its JSON state file) and
//! amdgpu's hwmon `power1_cap` (a fixture tree under JOULEBENCH_SYSFS_ROOT). Success,
//! an error return and a panic in this process; SIGINT, SIGTERM and SIGHUP in a
//! child; and after SIGKILL a second child plays `joulebench power restore`.
#![cfg(unix)]

mod common;

use common::sysfs_fixture::SysfsFixture;
use joulebench_core::{PowerControl, PowerError};
use joulebench_energy::amd::{
    self, AmdSmiDevice, AmdSmiPowerControl, FakeAmdSmi, FakeAmdSmiState, FAKE_AMDSMI_ENV,
};
use joulebench_energy::guard::{
    default_state_dir, read_state_file, restore_from_state_file, restore_from_state_file_with,
    state_file_for, GuardConfig, PowerGuard, RestoreOptions, STATE_DIR_ENV,
};
use joulebench_energy::hwmon_power::{hwmon_device_info, HwmonPowerControl, DEVICE_KIND_HWMON};
use joulebench_energy::nvml::PciBusId;
use joulebench_energy::restore::open_power_control_for_state;
use joulebench_energy::sysfs::hwmon::{find_by_pci, AMDGPU};
use joulebench_energy::sysfs::{Sysfs, SYSFS_ROOT_ENV};
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const MODE_ENV: &str = "JOULEBENCH_TEST_CHILD_MODE";
const KIND_ENV: &str = "JOULEBENCH_TEST_CHILD_KIND";
const PCI: &str = "0000:03:00.0";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    AmdSmi,
    Hwmon,
}

/// Where the GPU's state lives: the fake's file, or the fixture tree.
struct Setup {
    kind: Kind,
    dir: tempfile::TempDir,
    _fixture: Option<SysfsFixture>,
    sysfs_root: PathBuf,
}

impl Setup {
    fn new(kind: Kind) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let fixture = SysfsFixture::new();
        fixture.amdgpu(4, PCI, 150_000_000, 300_000_000);
        FakeAmdSmi::create(dir.path().join("amd.json"), FakeAmdSmiState::default()).unwrap();
        let sysfs_root = fixture.root().to_path_buf();
        Setup {
            kind,
            dir,
            _fixture: Some(fixture),
            sysfs_root,
        }
    }

    fn fake_path(&self) -> PathBuf {
        self.dir.path().join("amd.json")
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn cap_w(&self) -> f64 {
        match self.kind {
            Kind::AmdSmi => {
                FakeAmdSmi::from_state_file(self.fake_path())
                    .unwrap()
                    .state()
                    .unwrap()
                    .cap_uw as f64
                    / 1e6
            }
            Kind::Hwmon => {
                let p = self.sysfs_root.join("sys/class/hwmon/hwmon4/power1_cap");
                std::fs::read_to_string(p)
                    .unwrap()
                    .trim()
                    .parse::<f64>()
                    .unwrap()
                    / 1e6
            }
        }
    }

    fn state_file(&self) -> PathBuf {
        state_file_for(
            &self.state_dir(),
            &open_guarded(self.kind, &self.env_fs()).1.device,
        )
    }

    fn env_fs(&self) -> Env {
        Env {
            fake: self.fake_path(),
            sysfs: self.sysfs_root.clone(),
        }
    }
}

struct Env {
    fake: PathBuf,
    sysfs: PathBuf,
}

/// The control and guard settings a sweep would build for this kind of GPU.
fn open_guarded(kind: Kind, env: &Env) -> (Box<dyn PowerControl>, GuardConfigParts) {
    match kind {
        Kind::AmdSmi => {
            let dev: std::sync::Arc<dyn AmdSmiDevice> =
                std::sync::Arc::new(FakeAmdSmi::from_state_file(&env.fake).unwrap());
            let id = dev.identity().unwrap();
            (
                Box::new(AmdSmiPowerControl::new(dev)),
                GuardConfigParts {
                    device: id.to_device_info(),
                    kind: id.device_kind().to_string(),
                },
            )
        }
        Kind::Hwmon => {
            let fs = Sysfs::at(&env.sysfs);
            let h = find_by_pci(&fs, &[AMDGPU], &PciBusId::parse(PCI).unwrap())
                .unwrap()
                .unwrap();
            (
                Box::new(HwmonPowerControl::new(&fs, &h).unwrap()),
                GuardConfigParts {
                    device: hwmon_device_info(&h),
                    kind: DEVICE_KIND_HWMON.to_string(),
                },
            )
        }
    }
}

struct GuardConfigParts {
    device: joulebench_core::DeviceInfo,
    kind: String,
}

fn guard(kind: Kind, env: &Env, state_dir: &Path) -> PowerGuard {
    common::taken_once_children_exec(|| {
        let (control, parts) = open_guarded(kind, env);
        let cfg = GuardConfig::new(parts.device, parts.kind, state_dir, true)
            .with_lock_dir(&state_dir.join(".locks"));
        PowerGuard::new(control, cfg)
    })
    .unwrap()
}

fn kind_from_env() -> Kind {
    match std::env::var(KIND_ENV).as_deref() {
        Ok("hwmon") => Kind::Hwmon,
        _ => Kind::AmdSmi,
    }
}

/// The child's side; does nothing in a normal test run.
#[test]
fn child_helper() {
    let Ok(mode) = std::env::var(MODE_ENV) else {
        return;
    };
    let kind = kind_from_env();
    let env = Env {
        fake: std::env::var_os(FAKE_AMDSMI_ENV).unwrap().into(),
        sysfs: std::env::var_os(SYSFS_ROOT_ENV).unwrap().into(),
    };
    let state_dir = default_state_dir().unwrap();
    match mode.as_str() {
        "cap-and-wait" => {
            let mut g = guard(kind, &env, &state_dir);
            g.set_limit_w(200.0).unwrap();
            println!("ARMED");
            std::thread::sleep(Duration::from_secs(60));
            println!("NOT KILLED");
        }
        "restore" => {
            // as `joulebench power restore` does: every kind through one opener
            let parts = open_guarded(kind, &env).1;
            let path = state_file_for(&state_dir, &parts.device);
            let report = restore_from_state_file(&path, open_power_control_for_state).unwrap();
            println!("RESTORED {:.0}", report.restored_w);
        }
        other => panic!("unknown child mode {other}"),
    }
}

fn spawn_child(s: &Setup, mode: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_helper", "--nocapture", "--test-threads=1"])
        .env(MODE_ENV, mode)
        .env(
            KIND_ENV,
            if s.kind == Kind::Hwmon {
                "hwmon"
            } else {
                "amdsmi"
            },
        )
        .env(FAKE_AMDSMI_ENV, s.fake_path())
        .env(SYSFS_ROOT_ENV, &s.sysfs_root)
        .env(STATE_DIR_ENV, s.state_dir())
        .env("JOULEBENCH_LOCK_DIR", s.state_dir().join(".locks"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_for(child: &mut Child, marker: &'static str) -> String {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = String::new();
        let mut found = false;
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

fn finish(mut child: Child) -> (std::process::ExitStatus, String) {
    let status = child.wait().unwrap();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    (status, err)
}

fn capped_child(s: &Setup) -> Child {
    let mut child = spawn_child(s, "cap-and-wait");
    wait_for(&mut child, "ARMED");
    assert_eq!(s.cap_w(), 200.0);
    let st = read_state_file(&s.state_file()).unwrap();
    assert_eq!(st.original_limit_w, 300.0);
    assert_eq!(st.pid, child.id());
    assert_eq!(st.device.pci_bus_id.as_deref(), Some(PCI));
    child
}

const KINDS: [Kind; 2] = [Kind::AmdSmi, Kind::Hwmon];

#[test]
fn success_error_and_panic_restore_the_original_cap() {
    for kind in KINDS {
        // success: finish() restores and reports
        let s = Setup::new(kind);
        let mut g = guard(kind, &s.env_fs(), &s.state_dir());
        g.set_limit_w(180.0).unwrap();
        assert_eq!(s.cap_w(), 180.0);
        assert!(s.state_file().exists());
        let r = g.finish().unwrap().unwrap();
        assert_eq!(r.restored_w, 300.0);
        assert_eq!(s.cap_w(), 300.0, "{kind:?}");
        assert!(!s.state_file().exists());

        // an error returned mid-sweep drops the guard on its way out
        let s = Setup::new(kind);
        let run = || -> Result<(), PowerError> {
            let mut g = guard(kind, &s.env_fs(), &s.state_dir());
            g.set_limit_w(150.0)?;
            assert_eq!(s.cap_w(), 150.0);
            Err(PowerError::Failed("a point failed".into()))
        };
        assert!(run().is_err());
        assert_eq!(s.cap_w(), 300.0, "{kind:?}");
        assert!(!s.state_file().exists());

        // a panic unwinds through the guard
        let s = Setup::new(kind);
        let env = s.env_fs();
        let dir = s.state_dir();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut g = guard(kind, &env, &dir);
            g.set_limit_w(120.0).unwrap();
            panic!("a kernel check blew up");
        }));
        assert!(caught.is_err());
        assert_eq!(s.cap_w(), 300.0, "{kind:?}");
        assert!(!s.state_file().exists());
    }
}

fn assert_restored_on(kind: Kind, sig: &str, code: i32) {
    let s = Setup::new(kind);
    let child = capped_child(&s);
    signal(&child, sig);
    let (status, stderr) = finish(child);
    assert_eq!(
        status.code(),
        Some(code),
        "{kind:?} {sig}: {status:?}\n{stderr}"
    );
    assert!(stderr.contains("restored the power limit of"), "{stderr}");
    assert!(stderr.contains("to 300 W"), "{stderr}");
    assert_eq!(s.cap_w(), 300.0);
    assert!(!s.state_file().exists());
}

#[test]
fn sigint_sigterm_and_sighup_restore_an_amd_cap() {
    for kind in KINDS {
        assert_restored_on(kind, "INT", 130);
        assert_restored_on(kind, "TERM", 143);
        assert_restored_on(kind, "HUP", 129);
    }
}

#[test]
fn after_sigkill_power_restore_puts_an_amd_cap_back() {
    for kind in KINDS {
        let s = Setup::new(kind);
        let child = capped_child(&s);
        signal(&child, "KILL");
        let (status, _) = finish(child);
        assert_eq!(status.signal(), Some(9));
        assert_eq!(s.cap_w(), 200.0, "nothing could run on SIGKILL");
        assert!(s.state_file().exists());
        let mut restorer = spawn_child(&s, "restore");
        let seen = wait_for(&mut restorer, "RESTORED 300");
        let (status, stderr) = finish(restorer);
        assert!(status.success(), "{seen}\n{stderr}");
        assert_eq!(s.cap_w(), 300.0, "{kind:?}");
        assert!(!s.state_file().exists());
        if kind == Kind::AmdSmi {
            let history = FakeAmdSmi::from_state_file(s.fake_path())
                .unwrap()
                .state()
                .unwrap()
                .cap_history_uw;
            assert_eq!(history, [200_000_000, 300_000_000]);
        }
    }
}

#[test]
fn a_state_file_names_how_to_reopen_its_device() {
    let s = Setup::new(Kind::AmdSmi);
    let child = capped_child(&s);
    let st = read_state_file(&s.state_file()).unwrap();
    assert_eq!(st.device_kind, amd::DEVICE_KIND_FAKE_AMDSMI);
    signal(&child, "KILL");
    finish(child);
    // a restore without the fake's file says what is missing, and keeps the file
    std::env::remove_var(FAKE_AMDSMI_ENV);
    let err = restore_from_state_file_with(
        &s.state_file(),
        RestoreOptions {
            force: false,
            lock_dir: Some(s.state_dir().join(".locks")),
        },
        open_power_control_for_state,
    )
    .unwrap_err();
    assert!(err.to_string().contains(FAKE_AMDSMI_ENV), "{err}");
    assert!(s.state_file().exists());
}
