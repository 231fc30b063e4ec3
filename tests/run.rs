//! `joulebench run -- CMD` end to end on the fake NVML GPU, whose energy counter
//! advances in real time at the power it draws (its demand, capped by its limit):
//! a program's energy and its phases; a cap applied for the program's duration and
//! restored after it — when it succeeds, when it fails, when joulebench is sent one
//! or two signals (which reach the program first), and by `power restore` after a
//! SIGKILL; a second run or sweep on the GPU refused while one holds it; settings
//! refused before the program starts; the program's status and output passed
//! through. Programs last under a second.

#![cfg(unix)]

mod common;
#[path = "../crates/energy/tests/common/sysfs_fixture.rs"]
mod sysfs_fixture;
use common::{committed_settings_file, jb, text};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const DEFAULT_MW: u64 = 300_000;
/// What the fake GPU would draw uncapped: above its 300 W default, so a cap binds.
const DEMAND_MW: u64 = 350_000;

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
                "uuid": "GPU-11111111-2222-3333-4444-555555555555",
                "match_any": true,
                "min_limit_mw": 100_000,
                "max_limit_mw": 400_000,
                "default_limit_mw": DEFAULT_MW,
                "limit_mw": DEFAULT_MW,
                "power_demand_mw": DEMAND_MW,
            })
            .to_string(),
        )
        .unwrap();
        g
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn file(&self, name: &str) -> PathBuf {
        self.path().join(name)
    }

    fn fake(&self) -> PathBuf {
        self.file("fake-nvml.json")
    }

    fn state_dir(&self) -> PathBuf {
        self.file("state")
    }

    fn device(&self) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(self.fake()).unwrap()).unwrap()
    }

    fn limit_mw(&self) -> u64 {
        self.device()["limit_mw"].as_u64().unwrap()
    }

    fn history(&self) -> Vec<u64> {
        self.device()["limit_history_mw"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_u64()).collect())
            .unwrap_or_default()
    }

    fn state_files(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.state_dir())
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default()
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = jb();
        c.args(args)
            .current_dir(self.path())
            .env("JOULEBENCH_FAKE_NVML", self.fake())
            .env("JOULEBENCH_STATE_DIR", self.state_dir())
            .env("JOULEBENCH_LOCK_DIR", self.file("locks"));
        c
    }

    /// `joulebench run --out r.jsonl <flags> -- sh -c <script>`.
    fn run_args<'a>(&self, flags: &[&'a str], script: &'a str) -> Vec<&'a str> {
        let mut a = vec!["run", "--out", "r.jsonl"];
        a.extend_from_slice(flags);
        a.extend(["--", "sh", "-c", script]);
        a
    }

    fn run(&self, flags: &[&str], script: &str) -> Output {
        self.cmd(&self.run_args(flags, script)).output().unwrap()
    }

    fn spawn(&self, flags: &[&str], script: &str) -> Child {
        self.cmd(&self.run_args(flags, script))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// The records of r.jsonl: the run's, then the GPU's.
    fn records(&self) -> (serde_json::Value, serde_json::Value) {
        let recs = common::records(&self.file("r.jsonl"));
        assert_eq!(recs.len(), 2, "one record for the run and one for its GPU");
        assert_eq!(recs[0]["scope"], "run");
        assert_eq!(recs[1]["scope"], "gpu");
        (recs[0].clone(), recs[1].clone())
    }

    /// Until `name` exists (the program says it is ready).
    fn wait_for(&self, name: &str, child: &mut Child) {
        let start = Instant::now();
        while !self.file(name).exists() {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                use std::io::Read;
                let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
                panic!("joulebench ended ({status}) before the program was ready: {err}");
            }
            assert!(start.elapsed() < Duration::from_secs(30), "never ready");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn num(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: a signal to our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

/// Within `tolerance` (a fraction) of `expected`.
fn close(value: f64, expected: f64, tolerance: f64) -> bool {
    (value - expected).abs() <= tolerance * expected.abs()
}

#[test]
fn a_programs_energy_is_the_power_it_drew_over_its_time_and_report_reads_it() {
    let g = Gpu::new();
    let o = g.run(&[], "sleep 0.6");
    assert!(o.status.success(), "{}", text(&o));
    let (run, gpu) = g.records();
    let seconds = num(&gpu["seconds"]);
    assert!((0.58..1.0).contains(&seconds), "{seconds}");
    // at its default limit the fake draws 300 W
    assert!(close(num(&gpu["average_w"]), 300.0, 0.03), "{gpu}");
    assert!(close(num(&gpu["joules"]), 300.0 * seconds, 0.03), "{gpu}");
    assert_eq!(run["joules"], gpu["joules"]);
    assert_eq!(gpu["program"]["exit_code"], 0);
    assert_eq!(gpu["meter"], "nvml-counter");
    assert_eq!(gpu["settings"]["power_cap"], "default");
    assert!(gpu["telemetry"]["samples"].as_u64().unwrap() >= 5, "{gpu}");
    assert!(gpu["peak_w"]
        .as_f64()
        .is_some_and(|w| close(w, 300.0, 0.01)));
    // nothing was changed, nothing is owed
    assert!(g.history().is_empty() && g.state_files().is_empty());
    // `report` reads run records and shows them
    let o = g.cmd(&["report", "r.jsonl"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("Run of `sh -c sleep 0.6`"),
        "{}",
        text(&o)
    );
    // readers of kernel points skip them, and say so
    let o = g.cmd(&["recommend", "r.jsonl"]).output().unwrap();
    assert!(text(&o).contains("`joulebench run` record"), "{}", text(&o));
}

#[test]
fn a_file_of_run_records_and_kernel_points_is_merged_and_reported_as_both() {
    let g = Gpu::new();
    let o = g.run(&[], "sleep 0.2");
    assert!(o.status.success(), "{}", text(&o));
    // the program's run between kernel points, as one results file can hold them
    let run_line = std::fs::read_to_string(g.file("r.jsonl")).unwrap();
    // the run's whole record and its GPU's
    assert_eq!(run_line.lines().count(), 2, "{run_line}");
    let points = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("results/sim/sim-h200-quick.jsonl"),
    )
    .unwrap();
    let points: Vec<&str> = points.lines().collect();
    let (before, after) = points.split_at(points.len() / 2);
    let mixed = format!("{}\n{run_line}{}\n", before.join("\n"), after.join("\n"));
    std::fs::write(g.file("m.jsonl"), &mixed).unwrap();

    // merge keeps every kernel point, in order, and says which line it skipped
    let o = g
        .cmd(&["merge", "--out", "merged.jsonl", "m.jsonl"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let skipped = format!(
        "skipped 2 `joulebench run` record(s) (line {}, {})",
        before.len() + 1,
        before.len() + 2
    );
    assert!(text(&o).contains(&skipped), "{}", text(&o));
    let merged = std::fs::read_to_string(g.file("merged.jsonl")).unwrap();
    let merged: Vec<serde_json::Value> = merged
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let expected: Vec<serde_json::Value> = points
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(merged, expected);

    // report shows the points' table and, after it, the run's own tables
    for format in ["table", "markdown"] {
        let o = g
            .cmd(&["report", "--format", format, "m.jsonl"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{format}: {}", text(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        let status = format!("{} records: {} measured", points.len(), points.len());
        let at_points = out.find(&status);
        let at_run = out.find("Run of `sh -c sleep 0.2`");
        assert!(
            matches!((at_points, at_run), (Some(p), Some(r)) if p < r),
            "{format}: {out}"
        );
        // shown, not skipped
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!err.contains("skipped"), "{format}: {err}");
    }
}

#[test]
fn the_hosts_energy_is_measured_beside_the_gpus_over_the_same_time() {
    use sysfs_fixture::{Counter, SysfsFixture, Ticker, TWO_SOCKETS};
    let g = Gpu::new();
    let fx = SysfsFixture::new();
    let files = fx.rapl(&TWO_SOCKETS, 1_000_000);
    // the packages and their DRAM at 60 + 15 W a socket: 150 W (core and psys are
    // inside them and not counted)
    let counters = files
        .iter()
        .zip(TWO_SOCKETS.iter())
        .filter(|(_, z)| z.name.starts_with("package") || z.name == "dram")
        .map(|(p, z)| Counter {
            path: p.clone(),
            watts: if z.name == "dram" { 15.0 } else { 60.0 },
            max_uj: z.max_energy_range_uj,
        })
        .collect();
    let _ticking = Ticker::start(counters, Duration::from_millis(5));
    let o = g
        .cmd(&g.run_args(&[], PHASES))
        .env("JOULEBENCH_SYSFS_ROOT", fx.root())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let (run, gpu) = g.records();
    assert_eq!(
        run["host_meter"]["domains"],
        serde_json::json!(["package-0", "dram", "package-1", "dram"])
    );
    // the fixture's counters are written by a thread of this test every 5 ms, which a
    // loaded machine delays: the energy is its power within a fifth
    let seconds = num(&run["seconds"]);
    assert!(
        close(num(&run["host_joules"]), 150.0 * seconds, 0.2),
        "{run}"
    );
    let phases = run["phases"].as_array().unwrap();
    let in_phases: f64 = phases.iter().map(|p| num(&p["host_joules"])).sum();
    assert!(phases.iter().all(|p| num(&p["host_joules"]) > 0.0), "{run}");
    assert!(in_phases <= num(&run["host_joules"]) + 1e-6, "{run}");
    // the host's energy is the run's, not a GPU's
    assert!(gpu.get("host_joules").is_none());
    assert!(text(&o).contains("host CPU+DRAM (RAPL"), "{}", text(&o));
}

/// A training program's shape: a warm-up, then steps that report their tokens.
const PHASES: &str = "echo warmup > \"$JOULEBENCH_PHASE_FIFO\"; sleep 0.3; \
    echo train > \"$JOULEBENCH_PHASE_FIFO\"; \
    for i in 1 2 3; do sleep 0.2; echo 'tokens 1000' > \"$JOULEBENCH_PHASE_FIFO\"; done; \
    echo end > \"$JOULEBENCH_PHASE_FIFO\"; sleep 0.1";

#[test]
fn marked_phases_get_their_own_energy_time_and_energy_per_token() {
    let g = Gpu::new();
    let o = g.run(&[], PHASES);
    assert!(o.status.success(), "{}", text(&o));
    let (run, gpu) = g.records();
    for rec in [&run, &gpu] {
        let phases = rec["phases"].as_array().unwrap();
        assert_eq!(phases.len(), 2, "{rec}");
        let (warm, train) = (&phases[0], &phases[1]);
        assert_eq!(
            (warm["name"].as_str(), warm["warmup"].as_bool()),
            (Some("warmup"), Some(true))
        );
        assert_eq!(
            (train["name"].as_str(), train["warmup"].as_bool()),
            (Some("train"), Some(false))
        );
        // as long as the program slept, and what starting `sleep` takes on a busy machine
        assert!((0.3..0.6).contains(&num(&warm["seconds"])), "{warm}");
        assert!((0.6..1.2).contains(&num(&train["seconds"])), "{train}");
        for p in [warm, train] {
            assert!(
                close(num(&p["joules"]), 300.0 * num(&p["seconds"]), 0.05),
                "{p}"
            );
        }
        assert_eq!(train["tokens"], 3000);
        assert!(warm["tokens"].is_null());
        assert!(close(
            num(&train["joules_per_token"]),
            num(&train["joules"]) / 3000.0,
            1e-9
        ));
        // the steady state is the training phase, the warm-up left out
        let steady = &rec["steady"];
        assert_eq!(steady["phases"], serde_json::json!(["train"]));
        assert_eq!(steady["joules"], train["joules"]);
        assert_eq!(steady["tokens"], 3000);
        // the phases are inside the run, and the time after `end` in none of them
        assert!(num(&warm["seconds"]) + num(&train["seconds"]) < num(&rec["seconds"]) - 0.05);
    }
    assert_eq!(run["tokens"], 3000);
}

#[test]
fn output_patterns_mark_phases_while_the_output_passes_through_unchanged() {
    let g = Gpu::new();
    let script = "printf '== warmup ==\\n'; sleep 0.3; printf '== train ==\\n'; sleep 0.3; \
        printf 'step 1 tokens=512 loss \\377 2.5\\n'; printf 'to stderr\\n' >&2; \
        printf 'step 2 tokens=512\\nno newline at the end'";
    let o = g.run(
        &[
            "--phase-pattern",
            "^== (\\w+) ==",
            "--tokens-pattern",
            "tokens=(\\d+)",
        ],
        script,
    );
    assert!(o.status.success(), "{}", text(&o));
    let direct = Command::new("sh").args(["-c", script]).output().unwrap();
    assert_eq!(o.stdout, direct.stdout, "stdout changed on its way through");
    assert!(o.stderr.starts_with(b"to stderr\n") || text(&o).contains("to stderr\n"));
    let (run, _) = g.records();
    let phases = run["phases"].as_array().unwrap();
    assert_eq!(phases.len(), 2, "{run}");
    assert_eq!(phases[1]["name"], "train");
    assert_eq!(phases[1]["tokens"], 1024);
    assert_eq!(run["tokens"], 1024);
}

#[test]
fn a_cap_is_applied_for_the_programs_duration_and_restored_after_it() {
    let g = Gpu::new();
    let o = g.run(
        &["--power-cap", "200", "--allow-power-changes"],
        "cp \"$JOULEBENCH_FAKE_NVML\" during.json; sleep 0.5",
    );
    assert!(o.status.success(), "{}", text(&o));
    let during: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(g.file("during.json")).unwrap()).unwrap();
    assert_eq!(during["limit_mw"], 200_000, "the program ran uncapped");
    assert_eq!(g.limit_mw(), DEFAULT_MW, "the limit was not restored");
    assert_eq!(g.history(), vec![200_000, DEFAULT_MW]);
    assert!(g.state_files().is_empty(), "{:?}", g.state_files());
    let (_, gpu) = g.records();
    assert!(close(num(&gpu["average_w"]), 200.0, 0.03), "{gpu}");
    assert_eq!(gpu["settings"]["power_cap_w"], 200.0);
    assert_eq!(gpu["settings"]["restored"], true);
    assert_eq!(gpu["settings"]["source"], "the cap from --power-cap");
    assert!(text(&o).contains("restored"), "{}", text(&o));
}

#[test]
fn a_failing_program_gets_its_status_passed_on_and_the_cap_restored() {
    let g = Gpu::new();
    let o = g.run(
        &["--power-cap", "200", "--allow-power-changes"],
        "echo out; echo err >&2; sleep 0.2; exit 7",
    );
    assert_eq!(o.status.code(), Some(7), "{}", text(&o));
    assert_eq!(
        o.stdout, b"out\n",
        "joulebench wrote on the program's stdout"
    );
    assert!(String::from_utf8_lossy(&o.stderr).starts_with("err\n") || text(&o).contains("err\n"));
    assert_eq!(g.limit_mw(), DEFAULT_MW);
    assert!(g.state_files().is_empty());
    let (run, _) = g.records();
    assert_eq!(run["program"]["exit_code"], 7);
    // a program killed by a signal: 128 + the signal, as a shell says
    let o = g.run(
        &["--power-cap", "200", "--allow-power-changes"],
        "sleep 0.2; kill -9 $$",
    );
    assert_eq!(o.status.code(), Some(137), "{}", text(&o));
    assert_eq!(g.limit_mw(), DEFAULT_MW);
    assert!(g.state_files().is_empty());
}

/// A program that, on SIGINT or SIGTERM, keeps a copy of the GPU's state as it is
/// then and exits 5.
const TRAPS: &str = "trap 'cp \"$JOULEBENCH_FAKE_NVML\" at-signal.json; exit 5' INT TERM; \
    touch ready; i=0; while [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; exit 9";

fn signalled_run_restores_after_the_program(signals: &[i32]) {
    let g = Gpu::new();
    let mut child = g.spawn(&["--power-cap", "200", "--allow-power-changes"], TRAPS);
    g.wait_for("ready", &mut child);
    for &s in signals {
        signal(&child, s);
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(5),
        "the program's status: {}",
        text(&o)
    );
    let at: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(g.file("at-signal.json")).unwrap()).unwrap();
    assert_eq!(
        at["limit_mw"], 200_000,
        "restored before the program had ended"
    );
    assert_eq!(g.limit_mw(), DEFAULT_MW, "not restored after it");
    assert!(g.state_files().is_empty(), "{:?}", g.state_files());
    let (run, _) = g.records();
    assert_eq!(run["program"]["exit_code"], 5);
    assert!(
        run["program"]["signals"][0]
            .as_str()
            .unwrap()
            .contains("passed on"),
        "{run}"
    );
}

#[test]
fn sigint_reaches_the_program_and_the_cap_is_restored_after_it_ends() {
    signalled_run_restores_after_the_program(&[libc::SIGINT]);
}

#[test]
fn sigterm_reaches_the_program_and_the_cap_is_restored_after_it_ends() {
    signalled_run_restores_after_the_program(&[libc::SIGTERM]);
}

#[test]
fn two_quick_signals_still_wait_for_the_program_then_restore() {
    signalled_run_restores_after_the_program(&[libc::SIGTERM, libc::SIGTERM]);
    signalled_run_restores_after_the_program(&[libc::SIGINT, libc::SIGTERM]);
}

#[test]
fn after_sigkill_the_program_ends_and_power_restore_puts_the_cap_back() {
    let g = Gpu::new();
    let mut child = g.spawn(
        &["--power-cap", "200", "--allow-power-changes"],
        "echo $$ > pid; touch ready; i=0; while [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done",
    );
    g.wait_for("ready", &mut child);
    signal(&child, libc::SIGKILL);
    child.wait().unwrap();
    assert_eq!(g.limit_mw(), 200_000, "nothing can restore after SIGKILL");
    assert_eq!(g.state_files().len(), 1);
    // the program does not run on unmeasured under the cap
    let pid = std::fs::read_to_string(g.file("pid")).unwrap();
    let proc_dir = PathBuf::from(format!("/proc/{}", pid.trim()));
    let start = Instant::now();
    while proc_dir.exists() && start.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!proc_dir.exists(), "the program outlived joulebench");
    let o = g.cmd(&["power", "restore"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(g.limit_mw(), DEFAULT_MW);
    assert!(g.state_files().is_empty());
}

#[test]
fn a_second_run_or_capped_sweep_on_the_gpu_is_refused_while_a_run_holds_it() {
    let g = Gpu::new();
    let mut first = g.spawn(
        &["--power-cap", "200", "--allow-power-changes"],
        "touch ready; while [ ! -e go ]; do sleep 0.02; done",
    );
    g.wait_for("ready", &mut first);
    let o = g
        .cmd(&[
            "run",
            "--out",
            "second.jsonl",
            "--power-cap",
            "150",
            "--allow-power-changes",
            "--",
            "touch",
            "second-ran",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("is being changed by"), "{}", text(&o));
    assert!(!g.file("second-ran").exists(), "the second program ran");
    let o = g
        .cmd(&[
            "sweep",
            "--backend",
            "sim",
            "--preset",
            "quick",
            "--power-caps",
            "150",
            "--allow-power-changes",
            "--out",
            "sweep.jsonl",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("is being changed by"), "{}", text(&o));
    assert_eq!(
        g.history(),
        vec![200_000],
        "another process changed the GPU"
    );
    std::fs::write(g.file("go"), "").unwrap();
    let o = first.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(g.limit_mw(), DEFAULT_MW);
}

#[test]
fn settings_the_gpu_cannot_take_are_refused_before_the_program_starts() {
    let g = Gpu::new();
    let refused = |flags: &[&str], expect: &str| {
        let o = g.run(flags, "touch ran");
        assert_eq!(o.status.code(), Some(2), "{flags:?}: {}", text(&o));
        assert!(text(&o).contains(expect), "{flags:?}: {}", text(&o));
        assert!(!g.file("ran").exists(), "{flags:?}: the program ran");
        assert!(g.history().is_empty(), "{flags:?}: the GPU was changed");
        let clocks = g.device()["clock_history"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(clocks.is_empty(), "{flags:?}: a clock was locked");
        assert!(g.state_files().is_empty());
        assert!(
            !g.file("r.jsonl").exists(),
            "{flags:?}: an empty results file was left"
        );
    };
    refused(
        &["--power-cap", "50", "--allow-power-changes"],
        "outside the device's range",
    );
    refused(&["--power-cap", "200"], "--allow-power-changes");
    refused(
        &["--sm-clocks", "1234", "--allow-clock-changes"],
        "not a SM clock this GPU supports",
    );
    refused(&["--sm-clocks", "1410"], "--allow-clock-changes");
    // a settings file with no entry for this GPU
    let settings = g.file("s.toml");
    std::fs::write(
        &settings,
        "format = \"joulebench-settings\"\nversion = 1\ngenerated_by = \"t\"\nobjective = \"o\"\n\
         simulated = false\n[[device]]\ndevice_model = \"Other GPU\"\nsimulated = false\n\
         vendor = \"nvidia\"\npower_cap = \"80%\"\n",
    )
    .unwrap();
    refused(
        &["--settings", "s.toml", "--allow-power-changes"],
        "no [[device]] entry for Fake GPU",
    );
    // and a program that is not there
    let o = g
        .cmd(&[
            "run",
            "--power-cap",
            "200",
            "--allow-power-changes",
            "--",
            "no-such-program-x",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("not found"), "{}", text(&o));
    assert!(g.history().is_empty());
}

#[test]
fn a_clock_is_locked_for_the_program_and_reset_after_it() {
    let g = Gpu::new();
    let o = g.run(
        &["--sm-clocks", "1410", "--allow-clock-changes"],
        "cp \"$JOULEBENCH_FAKE_NVML\" during.json",
    );
    assert!(o.status.success(), "{}", text(&o));
    let during: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(g.file("during.json")).unwrap()).unwrap();
    assert_eq!(during["locked_sm_mhz"], serde_json::json!([1410, 1410]));
    assert!(
        g.device()["locked_sm_mhz"].is_null(),
        "the clock is still locked"
    );
    assert_eq!(
        g.device()["clock_history"],
        serde_json::json!(["sm 1410-1410", "sm reset"])
    );
    assert!(g.state_files().is_empty());
}

/// A table row's cells, trimmed.
fn cells(row: &str) -> Vec<String> {
    row.trim()
        .trim_matches('|')
        .split('|')
        .map(|c| c.trim().to_string())
        .collect()
}

/// A cell as a number: "570.4", "+1238.8%" (as 1 + the fraction), "–" none.
fn cell_number(cell: &str) -> Option<f64> {
    match cell.strip_suffix('%') {
        Some(p) => p.parse::<f64>().ok().map(|x| 1.0 + x / 100.0),
        None => cell.parse().ok(),
    }
}

/// The loop of docs/run.md: the settings file is what the committed model records give, and the
/// report of the run is what docs/run.md shows — counts, clocks, the prediction and every
/// word exactly, power within 3%, what depends on how long a `sleep` takes within 40%.
#[test]
fn the_documented_run_loop_is_what_its_commands_print() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("docs/run.md")).unwrap();
    let loop_part = &readme[readme
        .find("## The whole loop, on the simulated and fake devices")
        .expect("docs/run.md has the loop")..];
    let dir = tempfile::tempdir().unwrap();

    // the prediction: the committed settings file, again from the committed records
    let committed = committed_settings_file(
        "model-gpt2-clocks",
        &[
            "--preset",
            "gpt2",
            "--sm-clocks",
            "default,1200",
            "--objective",
            "least-energy",
        ],
    );
    let excerpt = loop_part
        .split("```toml\n")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    for line in excerpt.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            committed.lines().any(|c| c == line),
            "not in the settings file: {line}"
        );
    }

    // the run, on the fake GPU docs/run.md describes
    let fake_json = loop_part
        .split("echo '")
        .nth(1)
        .unwrap()
        .split("' > fake.json")
        .next()
        .unwrap();
    let fake = dir.path().join("fake.json");
    std::fs::write(&fake, fake_json).unwrap();
    let o = jb()
        .current_dir(root)
        .env("JOULEBENCH_FAKE_NVML", &fake)
        .env("JOULEBENCH_STATE_DIR", dir.path().join("state"))
        .env("JOULEBENCH_LOCK_DIR", dir.path().join("locks"))
        .args([
            "run",
            "--settings",
            "results/sim/model-gpt2-clocks.toml",
            "--allow-clock-changes",
        ])
        .args(["--format", "markdown", "--out"])
        .arg(dir.path().join("run.jsonl"))
        .args(["--", "sh", "examples/fake_training.sh"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let printed = String::from_utf8_lossy(&o.stderr).into_owned();
    let shown = loop_part
        .split("<!-- run-loop-output -->\n")
        .nth(1)
        .unwrap()
        .split("<!-- /run-loop-output -->")
        .next()
        .unwrap();
    let mut headers: Vec<String> = Vec::new();
    let mut rows = 0;
    for line in shown.lines() {
        if line.starts_with("> run ") || line.trim().is_empty() {
            continue; // the run's id, host and command line are this run's own
        }
        if let Some(title) = line.strip_prefix("### ") {
            // "Run of `…`: exit 0, 0.8133 s": all but the time
            let stem = title.rsplit_once(", ").map_or(title, |(a, _)| a);
            assert!(
                printed.contains(&format!("### {stem}")),
                "not printed: {line}\n{printed}"
            );
            continue;
        }
        if !line.starts_with('|') {
            assert!(
                printed.lines().any(|p| p == line),
                "not printed: {line}\n{printed}"
            );
            continue;
        }
        let want = cells(line);
        if want.iter().all(|c| c.chars().all(|ch| ch == '-')) {
            continue;
        }
        if want
            .iter()
            .any(|c| c.ends_with("(W)") || c == "phase" || c == "predicted")
        {
            assert!(printed.contains(line), "not printed: {line}\n{printed}");
            headers = want;
            continue;
        }
        let got = printed
            .lines()
            .filter(|p| p.starts_with('|'))
            .map(cells)
            .find(|c| c.len() == want.len() && c[0] == want[0])
            .unwrap_or_else(|| panic!("no row {} printed:\n{printed}", want[0]));
        rows += 1;
        for ((w, g), header) in want.iter().zip(&got).zip(&headers) {
            let tolerance = match header.as_str() {
                "spans" | "tokens" | "SM clock (MHz, mean)" | "predicted" => 0.0,
                "avg power (W)" | "peak power (W)" => 0.03,
                _ => 0.40,
            };
            match (cell_number(w), cell_number(g)) {
                (Some(w_n), Some(g_n)) => assert!(
                    (g_n - w_n).abs() <= tolerance * w_n.abs() + 1e-9,
                    "{header} of {}: docs {w}, printed {g}",
                    want[0]
                ),
                _ => assert_eq!(w, g, "{header} of {}", want[0]),
            }
        }
    }
    assert!(rows >= 6, "{rows} rows compared");
}

#[test]
fn a_recommend_settings_file_gives_the_board_it_names_its_cap_and_clock() {
    let g = Gpu::new();
    // as `recommend --emit toml` writes it: one [[device]], no [[model.…]] to compare with
    std::fs::write(
        g.file("advice.toml"),
        "format = \"joulebench-settings\"\nversion = 1\ngenerated_by = \"joulebench\"\n\
         objective = \"least energy within 10% of the fastest\"\nsimulated = false\n\
         [[device]]\ndevice_model = \"Another model\"\nsimulated = false\nvendor = \"nvidia\"\n\
         uuids = [\"GPU-11111111-2222-3333-4444-555555555555\"]\npower_cap = \"250W\"\n\
         sm_clock_mhz = 1410\n",
    )
    .unwrap();
    let o = g.run(
        &[
            "--settings",
            "advice.toml",
            "--allow-power-changes",
            "--allow-clock-changes",
        ],
        "cp \"$JOULEBENCH_FAKE_NVML\" during.json; sleep 0.3",
    );
    assert!(o.status.success(), "{}", text(&o));
    let during: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(g.file("during.json")).unwrap()).unwrap();
    assert_eq!(during["limit_mw"], 250_000);
    assert_eq!(during["locked_sm_mhz"], serde_json::json!([1410, 1410]));
    assert_eq!(g.limit_mw(), DEFAULT_MW);
    assert!(g.device()["locked_sm_mhz"].is_null());
    assert!(g.state_files().is_empty());
    let (run, gpu) = g.records();
    // the entry that lists this board's UUID, whatever model it names
    assert!(
        gpu["settings"]["source"]
            .as_str()
            .unwrap()
            .contains("(this board)"),
        "{gpu}"
    );
    assert!(
        run.get("prediction").is_none(),
        "a recommend file predicts no program"
    );
}
