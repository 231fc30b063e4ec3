//! Locked clocks end to end. On the fake NVML device (a JSON file standing in for a
//! GPU: no real GPU's clocks are ever changed here) a `joulebench sweep` process
//! locks the SM clock and is interrupted, killed or fails mid-sweep; the default
//! clocks must come back every time — by the process itself, or by `joulebench
//! power restore` after SIGKILL. On the simulated device, whose energy per FLOP has
//! its minimum below the maximum clock, a clock sweep recommends such a clock and
//! says why.

#![cfg(unix)]

mod common;
use common::{jb, records, refused, run, text, write};

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

struct Gpu {
    dir: tempfile::TempDir,
}

impl Gpu {
    fn new() -> Gpu {
        let g = Gpu {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::write(
            g.fake(),
            serde_json::json!({
                "name": "Fake GPU",
                "match_any": true,
                "min_limit_mw": 100_000,
                "max_limit_mw": 400_000,
                "default_limit_mw": 300_000,
                "limit_mw": 300_000,
            })
            .to_string(),
        )
        .unwrap();
        // enough points that the sweep still runs when it is signalled
        write(
            g.dir.path(),
            "clocks.toml",
            "precisions = [\"bf16\", \"f16\", \"f32\"]\nbatch_sizes = [1, 2, 3, 4]\nsm_clocks = [1200, 900]\n\
             [[linear]]\nin_features = 1024\nout_features = 1024\nseq = 128\n\
             [[linear]]\nin_features = 2048\nout_features = 1024\nseq = 128\n\
             [protocol]\nidle_baseline_s = 0.5\n",
        );
        g
    }

    fn fake(&self) -> PathBuf {
        self.dir.path().join("fake-nvml.json")
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("r.jsonl")
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn fake_state(&self) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(self.fake()).unwrap()).unwrap()
    }

    fn locked(&self) -> Option<u64> {
        self.fake_state()["locked_sm_mhz"][1].as_u64()
    }

    fn clock_history(&self) -> Vec<String> {
        self.fake_state()["clock_history"]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    }

    fn state_files(&self) -> usize {
        std::fs::read_dir(self.state_dir())
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().starts_with("power-state-"))
                    .count()
            })
            .unwrap_or(0)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = jb();
        c.args(args)
            .env("JOULEBENCH_FAKE_NVML", self.fake())
            .env("JOULEBENCH_STATE_DIR", self.state_dir())
            .env("JOULEBENCH_LOCK_DIR", self.dir.path().join("locks"));
        c
    }

    fn sweep_args(&self, extra: &[&str]) -> Vec<String> {
        let cfg = self.dir.path().join("clocks.toml");
        let out = self.out();
        let mut a: Vec<String> = [
            "sweep",
            "--backend",
            "sim",
            "--config",
            s(&cfg),
            "--out",
            s(&out),
        ]
        .map(String::from)
        .to_vec();
        a.extend(extra.iter().map(|x| x.to_string()));
        a
    }

    fn run(&self, args: &[String]) -> Output {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.cmd(&args).output().unwrap()
    }

    fn spawn_locked_sweep(&self) -> Child {
        let args = self.sweep_args(&["--allow-clock-changes"]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = self
            .cmd(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while self.locked().is_none() || line_count(&self.out()) == 0 {
            if let Some(st) = child.try_wait().unwrap() {
                panic!("the sweep ended ({st}) before it was signalled");
            }
            assert!(start.elapsed() < Duration::from_secs(120), "never locked");
            std::thread::sleep(Duration::from_millis(2));
        }
        child
    }
}

fn line_count(p: &Path) -> usize {
    std::fs::read_to_string(p)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: a signal to our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

fn interrupted_sweep_resets(sig: i32, code: i32) {
    let gpu = Gpu::new();
    let child = gpu.spawn_locked_sweep();
    signal(&child, sig);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(code), "{}", text(&out));
    assert_eq!(
        gpu.locked(),
        None,
        "the clock stayed locked: {}",
        text(&out)
    );
    assert_eq!(
        gpu.clock_history().last().map(String::as_str),
        Some("sm reset")
    );
    assert_eq!(gpu.state_files(), 0);
    for r in records(&gpu.out()) {
        assert!(r["clocks"]["sm_requested_mhz"].is_u64(), "{r}");
    }
}

#[test]
fn sigint_mid_clock_sweep_resets_the_clocks() {
    interrupted_sweep_resets(libc::SIGINT, 130);
}

#[test]
fn sigterm_mid_clock_sweep_resets_the_clocks() {
    interrupted_sweep_resets(libc::SIGTERM, 143);
}

#[test]
fn sighup_mid_clock_sweep_resets_the_clocks() {
    interrupted_sweep_resets(libc::SIGHUP, 129);
}

#[test]
fn after_sigkill_power_restore_resets_the_clocks_and_a_locked_sweep_waits_for_it() {
    let gpu = Gpu::new();
    let mut child = gpu.spawn_locked_sweep();
    signal(&child, libc::SIGKILL);
    child.wait().unwrap();
    assert!(gpu.locked().is_some(), "nothing can reset after SIGKILL");
    assert_eq!(gpu.state_files(), 1);

    let o = gpu.cmd(&["power", "status"]).output().unwrap();
    assert!(
        text(&o).contains("pending restore of the SM clock (to reset)"),
        "{}",
        text(&o)
    );
    let resumed = gpu.sweep_args(&["--allow-clock-changes", "--resume"]);
    let o = gpu.run(&resumed);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("power restore"), "{}", text(&o));

    let o = gpu.cmd(&["power", "restore"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("SM clocks reset to the default"),
        "{}",
        text(&o)
    );
    assert_eq!(gpu.locked(), None);
    assert_eq!(gpu.state_files(), 0);

    let o = gpu.run(&resumed);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("SM clocks reset to the default"),
        "{}",
        text(&o)
    );
    assert_eq!(gpu.locked(), None);
    // 2 kernels × 3 precisions × 4 batch sizes × 2 layers × 2 clocks, each once
    assert_eq!(records(&gpu.out()).len(), 96);
}

#[test]
fn a_sweep_that_fails_mid_way_resets_the_clocks_on_its_way_out() {
    let gpu = Gpu::new();
    let args = gpu.sweep_args(&["--allow-clock-changes"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = gpu.cmd(&args);
    // the results file may grow to a few records: then every write fails (EFBIG)
    // SAFETY: between fork and exec, only async-signal-safe calls.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let l = libc::rlimit {
                rlim_cur: 16384,
                rlim_max: 16384,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &l) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let o = cmd.output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        !gpu.clock_history().is_empty(),
        "never locked: {}",
        text(&o)
    );
    assert_eq!(gpu.locked(), None, "{}", text(&o));
    assert_eq!(gpu.state_files(), 0);
}

#[test]
fn clocks_are_refused_before_anything_changes() {
    let gpu = Gpu::new();
    let o = gpu.run(&gpu.sweep_args(&[]));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--allow-clock-changes"), "{}", text(&o));
    let o = gpu.run(&gpu.sweep_args(&["--allow-clock-changes", "--sm-clocks", "default,1001"]));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("1001 MHz is not a SM clock") && text(&o).contains("nearest: 1005"),
        "{}",
        text(&o)
    );
    let o = gpu.run(&gpu.sweep_args(&["--allow-clock-changes", "--mem-clocks", "2619"]));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("offers one memory clock"), "{}", text(&o));
    refused(
        &["sweep", "--backend", "sim", "--sm-clocks", "fast"],
        "is not a clock in MHz",
    );
    assert!(gpu.clock_history().is_empty());
    assert!(!gpu.out().exists());
    assert_eq!(gpu.state_files(), 0);
}

#[test]
fn a_clock_sweep_on_the_simulated_device_recommends_a_clock_below_the_maximum_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "sim-clocks.toml",
        "precisions = [\"bf16\", \"f16\"]\nkernels = [\"sim-vendor\"]\npower_caps = [\"default\", \"80%\"]\n\
         sm_clocks = [\"default\", \"1200:1980:60\"]\n\
         [[matmul]]\nm = 4096\nn = 4096\nk = 4096\n[protocol]\nidle_baseline_s = 0.0\n",
    );
    let out = dir.path().join("r.jsonl");
    let o = run(&[
        "sweep",
        "--backend",
        "sim",
        "--config",
        s(&cfg),
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let recs = records(&out);
    // 2 precisions × 2 caps × (default + 14 locked clocks): caps and clocks in one sweep
    assert_eq!(recs.len(), 60);
    for r in &recs {
        let c = &r["clocks"];
        assert_eq!(c["sm_max_mhz"], 1980, "{c}");
        let seen = c["sm_seen_mhz_median"].as_f64().unwrap();
        if let Some(asked) = c["sm_requested_mhz"].as_f64() {
            // the clock seen is the one asked for, or lower where the cap holds it down
            assert!(seen <= asked + 0.5, "{c}");
        }
    }

    let settings = dir.path().join("settings.toml");
    let o = run(&[
        "recommend",
        s(&out),
        "--precisions",
        "bf16",
        "--emit",
        "toml",
        s(&settings),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("SM clock"), "{t}");
    assert!(t.contains("below the maximum 1980 MHz"), "{t}");
    let emitted = joulebench_analysis::settings_file::SettingsFile::read(&settings).unwrap();
    let chosen = emitted.settings[0].sm_clock_mhz.expect("a locked clock");
    assert!((900..1980).contains(&chosen), "{chosen}");

    let plots = dir.path().join("plots");
    let o = run(&["report", s(&out), "--plots", s(&plots)]);
    assert!(o.status.success(), "{}", text(&o));
    let names: Vec<String> = std::fs::read_dir(&plots)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    // energy above throughput against the clock, a file per precision
    let clock_svg = names
        .iter()
        .find(|n| n.starts_with("energy-clock_") && n.ends_with("_bf16.svg"))
        .unwrap_or_else(|| panic!("no bf16 clock plot: {names:?}"));
    let svg = std::fs::read_to_string(plots.join(clock_svg)).unwrap();
    assert!(
        svg.contains("throughput (TFLOP/s)") && svg.contains("sim-vendor"),
        "{clock_svg}"
    );
}
