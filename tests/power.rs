//! Power caps end to end: a real `joulebench sweep` process changes the limit of a
//! fake NVML device kept in a state file, and is interrupted (SIGINT, SIGTERM) or
//! killed (SIGKILL) mid-sweep; the original limit must come back every time —
//! by the process itself, or by `joulebench power restore` after SIGKILL.

#![cfg(unix)]

mod common;
use common::text;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DEFAULT_MW: u64 = 300_000;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let f = Fixture { dir };
        std::fs::write(
            f.fake(),
            serde_json::json!({
                "name": "Fake GPU",
                "match_any": true,
                "min_limit_mw": 100_000,
                "max_limit_mw": 400_000,
                "default_limit_mw": DEFAULT_MW,
                "limit_mw": DEFAULT_MW,
            })
            .to_string(),
        )
        .unwrap();
        // Many points, so the sweep is still running when it is signalled.
        std::fs::write(
            f.dir.path().join("sweep.toml"),
            "precisions = [\"bf16\", \"f16\", \"f32\"]\nbatch_sizes = [1, 2, 3, 4]\npower_caps = [\"200\", \"150\"]\n\
             [[linear]]\nin_features = 1024\nout_features = 1024\nseq = 128\n\
             [[linear]]\nin_features = 2048\nout_features = 1024\nseq = 128\n\
             [protocol]\nidle_baseline_s = 0.5\n",
        )
        .unwrap();
        f
    }

    fn fake(&self) -> PathBuf {
        self.dir.path().join("fake-nvml.json")
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("r.jsonl")
    }

    fn limit_mw(&self) -> u64 {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(self.fake()).unwrap()).unwrap();
        v["limit_mw"].as_u64().unwrap()
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_joulebench"));
        c.args(args)
            .env("JOULEBENCH_FAKE_NVML", self.fake())
            .env("JOULEBENCH_STATE_DIR", self.state_dir())
            .env("JOULEBENCH_LOCK_DIR", self.dir.path().join("locks"))
            .env_remove("CI");
        c
    }

    fn sweep_args(&self, allow: bool) -> Vec<String> {
        let mut a: Vec<String> = ["sweep", "--backend", "sim", "--config"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.push(self.dir.path().join("sweep.toml").display().to_string());
        a.push("--out".into());
        a.push(self.out().display().to_string());
        if allow {
            a.push("--allow-power-changes".into());
        }
        a
    }

    fn spawn_sweep(&self) -> Child {
        let args = self.sweep_args(true);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.cmd(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Wait until the running sweep has capped the device and written a record.
    fn wait_until_capped(&self, child: &mut Child) {
        let start = Instant::now();
        loop {
            let records = std::fs::read_to_string(self.out())
                .map(|s| s.lines().count())
                .unwrap_or(0);
            if self.limit_mw() != DEFAULT_MW && records >= 1 {
                return;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("sweep ended ({status}) before it was signalled");
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "the sweep never capped the device"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn state_files(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.state_dir())
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default()
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: sending a signal to our own child process.
    let rc = unsafe { libc_kill(child.id() as i32, sig) };
    assert_eq!(rc, 0);
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

const SIGINT: i32 = 2;
const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;

fn interrupted_sweep_restores(sig: i32, code: i32) {
    let f = Fixture::new();
    let mut child = f.spawn_sweep();
    f.wait_until_capped(&mut child);
    signal(&child, sig);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(code), "{}", text(&out));
    assert_eq!(
        f.limit_mw(),
        DEFAULT_MW,
        "the original limit was not restored"
    );
    assert!(
        f.state_files().is_empty(),
        "state file left behind: {:?}",
        f.state_files()
    );
    // every finished record is intact
    for line in std::fs::read_to_string(f.out()).unwrap().lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("whole records only");
    }
}

#[test]
fn sigint_mid_sweep_restores_the_limit() {
    interrupted_sweep_restores(SIGINT, 130);
}

#[test]
fn sigterm_mid_sweep_restores_the_limit() {
    interrupted_sweep_restores(SIGTERM, 143);
}

#[test]
fn sigkill_leaves_a_state_file_that_power_restore_uses() {
    let f = Fixture::new();
    let mut child = f.spawn_sweep();
    f.wait_until_capped(&mut child);
    signal(&child, SIGKILL);
    child.wait().unwrap();
    assert_ne!(
        f.limit_mw(),
        DEFAULT_MW,
        "nothing can restore after SIGKILL"
    );
    assert_eq!(f.state_files().len(), 1);

    let status = f.cmd(&["power", "status"]).output().unwrap();
    assert!(status.status.success(), "{}", text(&status));
    assert!(
        text(&status).contains("pending restore of the power limit (to restore to 300 W)"),
        "{}",
        text(&status)
    );

    // a new capped sweep refuses to start while a restore is owed
    let args = f.sweep_args(true);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut resumed = args.clone();
    resumed.push("--resume");
    let o = f.cmd(&resumed).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("power restore"), "{}", text(&o));

    let o = f.cmd(&["power", "restore"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("restored"), "{}", text(&o));
    assert_eq!(f.limit_mw(), DEFAULT_MW);
    assert!(f.state_files().is_empty());

    // and the sweep then resumes and finishes, restoring on success
    let o = f.cmd(&resumed).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("restored to 300 W"), "{}", text(&o));
    assert_eq!(f.limit_mw(), DEFAULT_MW);
}

#[test]
fn caps_need_explicit_permission_and_a_valid_range() {
    let f = Fixture::new();
    let args = f.sweep_args(false);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = f.cmd(&args).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--allow-power-changes"), "{}", text(&o));

    let mut too_low = f.sweep_args(true);
    too_low.extend(["--power-caps".to_string(), "50".to_string()]);
    let too_low: Vec<&str> = too_low.iter().map(String::as_str).collect();
    let o = f.cmd(&too_low).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("outside the device's range"),
        "{}",
        text(&o)
    );

    assert_eq!(f.limit_mw(), DEFAULT_MW);
    assert!(!Path::new(&f.out()).exists());
    assert!(f.state_files().is_empty());
}

#[test]
fn a_dry_run_plans_caps_without_touching_the_device_or_writing_a_file() {
    let f = Fixture::new();
    let device_before = std::fs::read(f.fake()).unwrap();
    let mut args = f.sweep_args(true);
    args.push("--dry-run".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = f.cmd(&args).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("Dry run") && t.contains("│ 200 W "), "{t}");
    // the fake device keeps a history of every limit set: none was, not even a restore
    let fake = std::fs::read_to_string(f.fake()).unwrap();
    assert_eq!(
        fake.as_bytes(),
        &device_before[..],
        "the device was touched: {fake}"
    );
    assert!(!f.out().exists());
    assert!(f.state_files().is_empty());
    // the checks a run makes before anything changes still refuse: a cap out of range
    let mut too_low = f.sweep_args(true);
    too_low.extend(["--power-caps", "50", "--dry-run"].map(String::from));
    let too_low: Vec<&str> = too_low.iter().map(String::as_str).collect();
    let o = f.cmd(&too_low).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}
