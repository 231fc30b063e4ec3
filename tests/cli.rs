//! End-to-end tests of the `joulebench` binary on the simulated device: a sweep,
//! its report and recommendation, a sweep killed and resumed, and every kind of
//! bad input (exit code 2, a clear message, nothing already written lost).

mod common;
use common::{jb, point_key, records, records_left, refused, run, text, write};

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A small sweep: 2 matmul shapes × 2 kernels × 2 precisions × 3 caps, and attention.
const SMALL: &str = r#"
precisions = ["bf16", "f32"]
power_caps = ["default", "80%", "60%"]
[[matmul]]
m = 1024
n = 1024
k = 1024
[[matmul]]
m = 2048
n = 2048
k = 2048
[[attention]]
heads = 8
seq_q = 1024
head_dim = 128
causal = true
[protocol]
idle_baseline_s = 1.0
"#;

#[test]
fn sweep_report_recommend_on_the_simulated_device() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "small.toml", SMALL);
    let out = dir.path().join("r.jsonl");
    let o = run(&[
        "sweep",
        "--backend",
        "sim",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("Recommended settings"), "{t}");
    assert!(t.contains("SIMULATED DATA"), "{t}");

    let recs = records(&out);
    // matmul: 2 shapes × 2 kernels × 2 precisions × 3 caps; attention: 2 kernels × bf16 × 3 caps,
    // and f32 attention is recorded as skipped with its reason
    assert_eq!(recs.len(), 2 * 2 * 2 * 3 + 2 * 2 * 3);
    for r in &recs {
        assert_eq!(r["simulated"], true);
        assert_eq!(r["schema"], 2);
        match r["status"].as_str().unwrap() {
            "measured" => {
                assert!(r["verification"]["passed"].as_bool().unwrap());
                let m = &r["measurement"]["summary"];
                assert!(m["joules_per_flop"]["median"].as_f64().unwrap() > 0.0);
                assert!(m["tflops"].as_f64().unwrap() > 0.0);
            }
            "skipped" => assert!(
                r["reason"].as_str().unwrap().contains("f16 and bf16 only"),
                "{r}"
            ),
            s => panic!("unexpected status {s}: {r}"),
        }
    }
    // a lower cap: lower power, longer time, on the same kernel/precision/shape
    let find = |cap: &str| {
        recs.iter()
            .find(|r| {
                r["kernel"] == "sim-vendor"
                    && r["precision"] == "bf16"
                    && r["workload"]["m"] == 2048
                    && r["power_cap"]["requested"] == cap
            })
            .unwrap()["measurement"]["summary"]
            .clone()
    };
    let (full, capped) = (find("default"), find("60%"));
    assert!(capped["average_w"].as_f64() < full["average_w"].as_f64());
    assert!(
        capped["seconds_per_op"]["median"].as_f64() > full["seconds_per_op"]["median"].as_f64()
    );

    for fmt in ["table", "markdown", "csv", "json"] {
        let o = run(&["report", out.to_str().unwrap(), "--format", fmt]);
        assert!(o.status.success(), "{fmt}: {}", text(&o));
        assert!(text(&o).contains("sim-vendor"));
    }
    let o = run(&["recommend", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("Pareto front") && t.contains("energy (pJ/FLOP)") && t.contains("SIMULATED"),
        "{t}"
    );
    let o = run(&[
        "recommend",
        out.to_str().unwrap(),
        "--precisions",
        "f32",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let rows = v["recommendations"]["rows"].as_array().unwrap();
    assert!(!rows.is_empty() && rows.iter().all(|r| r["precision"] == "f32"));
}

#[test]
fn a_killed_sweep_resumes_without_losing_or_repeating_a_point() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "small.toml", SMALL);
    let out = dir.path().join("r.jsonl");
    let args = [
        "sweep",
        "--backend",
        "sim",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];

    let mut child = jb()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        let n = std::fs::read_to_string(&out)
            .map(|s| s.lines().count())
            .unwrap_or(0);
        if n >= 5 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "sweep wrote nothing"
        );
        if child.try_wait().unwrap().is_some() {
            panic!("sweep finished before it could be killed");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = std::fs::read(&out).unwrap();
    let n_before = records_left(&out).len();
    assert!(
        (5..36).contains(&n_before),
        "killed after {n_before} points"
    );

    // without --resume the file is refused and left alone
    let o = jb().args(args).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--resume"));
    assert_eq!(std::fs::read(&out).unwrap(), before);

    let mut resumed: Vec<&str> = args.to_vec();
    resumed.push("--resume");
    let o = jb().args(&resumed).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("already there"), "{}", text(&o));
    let after = std::fs::read(&out).unwrap();
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "finished records were rewritten"
    );
    let recs = records(&out);
    assert_eq!(recs.len(), 36);
    let mut keys: Vec<String> = recs.iter().map(point_key).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 36, "a point was measured twice");

    // resuming a finished file measures nothing more
    let o = jb().args(&resumed).output().unwrap();
    assert!(o.status.success());
    assert_eq!(records(&out).len(), 36);
}

#[test]
fn bad_shapes_and_names_are_refused_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("never.jsonl");
    let o = out.to_str().unwrap();
    let zero = write(d, "zero.toml", "[[matmul]]\nm = 0\nn = 64\nk = 64\n");
    refused(
        &[
            "sweep",
            "--backend",
            "sim",
            "--config",
            zero.to_str().unwrap(),
            "--out",
            o,
        ],
        "dimension m is 0",
    );
    let absurd = write(
        d,
        "absurd.toml",
        "[[matmul]]\nm = 1099511627776\nn = 64\nk = 64\n",
    );
    refused(
        &[
            "sweep",
            "--backend",
            "sim",
            "--config",
            absurd.to_str().unwrap(),
            "--out",
            o,
        ],
        "exceeds the largest accepted dimension",
    );
    let overflow = write(
        d,
        "overflow.toml",
        "batch_sizes = [256]\n[[attention]]\nheads = 256\nseq_q = 16777216\nhead_dim = 1\n",
    );
    refused(
        &[
            "sweep",
            "--backend",
            "sim",
            "--config",
            overflow.to_str().unwrap(),
            "--out",
            o,
        ],
        "overflows",
    );
    let typo = write(d, "typo.toml", "precisons = [\"f32\"]\n");
    refused(
        &[
            "sweep",
            "--backend",
            "sim",
            "--config",
            typo.to_str().unwrap(),
            "--out",
            o,
        ],
        "precisons",
    );
    refused(&["sweep", "--backend", "quantum", "--out", o], "quantum");
    refused(
        &[
            "sweep",
            "--backend",
            "sim",
            "--precisions",
            "f64",
            "--out",
            o,
        ],
        "unknown precision 'f64'",
    );
    refused(
        &["sweep", "--backend", "sim", "--kernels", "nope", "--out", o],
        "unknown kernel 'nope'",
    );
    refused(
        &[
            "sweep",
            "--backend",
            "sim",
            "--batch-sizes",
            "0",
            "--out",
            o,
        ],
        "batch size",
    );
    refused(
        &[
            "sweep",
            "--backend",
            "sim",
            "--sim-profile",
            "sim-z9",
            "--out",
            o,
        ],
        "unknown simulated device profile",
    );
    refused(
        &[
            "sweep",
            "--backend",
            "sim",
            "--power-caps",
            "5000",
            "--out",
            o,
        ],
        "outside the device's range",
    );
    refused(
        &[
            "sweep",
            "--backend",
            "sim",
            "--power-caps",
            "lots",
            "--out",
            o,
        ],
        "power cap 'lots'",
    );
    refused(
        &[
            "sweep",
            "--backend",
            "sim",
            "--min-windows",
            "1",
            "--out",
            o,
        ],
        "min_windows",
    );
    refused(
        &["recommend", "--max-slowdown", "fast", o],
        "--max-slowdown",
    );
    assert!(
        !out.exists(),
        "a refused sweep must not create its results file"
    );
}

#[test]
fn unwritable_output_is_refused_before_measuring() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "plain-file", "x");
    let under_file = file.join("r.jsonl");
    refused(
        &[
            "sweep",
            "--backend",
            "sim",
            "--out",
            under_file.to_str().unwrap(),
        ],
        "cannot write",
    );
    refused(
        &[
            "sweep",
            "--backend",
            "sim",
            "--out",
            dir.path().to_str().unwrap(),
        ],
        "is a directory",
    );
    refused(
        &["sweep", "--backend", "sim", "--resume"],
        "--resume needs --out",
    );
}

#[test]
fn corrupt_and_foreign_results_files_name_the_line_and_stay_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "tiny.toml", "precisions = [\"bf16\"]\nkernels = [\"sim-vendor\"]\n[[matmul]]\nm = 512\nn = 512\nk = 512\n[protocol]\nidle_baseline_s = 0.5\n");
    let good = dir.path().join("good.jsonl");
    let o = run(&[
        "sweep",
        "--backend",
        "sim",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        good.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let record = std::fs::read_to_string(&good).unwrap();
    let record = record.lines().next().unwrap();

    let corrupt = write(
        dir.path(),
        "corrupt.jsonl",
        &format!("{record}\n{record}\n{{\"schema\": 1, \"oops\n"),
    );
    let before = std::fs::read(&corrupt).unwrap();
    refused(&["report", corrupt.to_str().unwrap()], "corrupt.jsonl:3");
    refused(&["recommend", corrupt.to_str().unwrap()], "corrupt.jsonl:3");
    refused(
        &[
            "sweep",
            "--backend",
            "sim",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            corrupt.to_str().unwrap(),
            "--resume",
        ],
        "corrupt.jsonl:3",
    );
    assert_eq!(std::fs::read(&corrupt).unwrap(), before);

    let foreign = write(
        dir.path(),
        "v999.jsonl",
        &format!("{}\n", record.replacen("\"schema\":2", "\"schema\":999", 1)),
    );
    let before = std::fs::read(&foreign).unwrap();
    refused(&["report", foreign.to_str().unwrap()], "schema version 999");
    refused(
        &[
            "sweep",
            "--backend",
            "sim",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            foreign.to_str().unwrap(),
            "--resume",
        ],
        "schema version 999",
    );
    assert_eq!(std::fs::read(&foreign).unwrap(), before);

    let not_ours = write(dir.path(), "other.jsonl", "{\"hello\": 1}\n");
    refused(
        &["report", not_ours.to_str().unwrap()],
        "not a joulebench record",
    );
    refused(
        &["report", dir.path().join("missing.jsonl").to_str().unwrap()],
        "cannot read",
    );
    let empty = write(dir.path(), "empty.jsonl", "");
    refused(&["recommend", empty.to_str().unwrap()], "no records");
}

#[test]
fn devices_explains_itself_in_text_and_json() {
    let o = run(&["devices"]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("sim: available") && t.contains("sim-h200") && t.contains("sim-h100"),
        "{t}"
    );
    let o = run(&["devices", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("devices --json is JSON");
    assert!(v
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["name"] == "sim" && s["available"] == true));
    for s in v.as_array().unwrap() {
        if s["available"] == false {
            assert!(s["reason"].as_str().is_some_and(|r| !r.is_empty()), "{s}");
        }
    }
}

#[test]
fn the_example_config_is_valid() {
    let cfg = joulebench_core::plan::SweepConfig::from_toml_file(Path::new("examples/sweep.toml"))
        .unwrap();
    assert!(!cfg.workloads().unwrap().is_empty());
    assert_eq!(cfg.protocol, joulebench_core::ProtocolConfig::default());
}

#[test]
fn help_is_there_for_every_command() {
    for cmd in ["devices", "sweep", "report", "recommend"] {
        let o = run(&[cmd, "--help"]);
        assert!(o.status.success());
        assert!(String::from_utf8_lossy(&o.stdout).len() > 200);
    }
    let o = run(&[]);
    assert_eq!(o.status.code(), Some(2));
    let _ = std::io::stdout().flush();
}

#[test]
fn repeats_are_shuffled_resumable_and_reported_with_their_run_to_run_spread() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "r.toml",
        "kernels = [\"sim-vendor\"]\nprecisions = [\"bf16\", \"f32\"]\n[[matmul]]\nm = 2048\nn = 2048\nk = 2048\n[[matmul]]\nm = 1024\nn = 1024\nk = 1024\n[protocol]\nidle_baseline_s = 0.5\n",
    );
    let out = dir.path().join("r.jsonl");
    let sweep = |extra: &[&str]| {
        let mut args = vec![
            "sweep",
            "--backend",
            "sim",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--repeat",
            "3",
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let o = sweep(&[]);
    assert!(o.status.success(), "{}", text(&o));
    let recs = records(&out);
    assert_eq!(recs.len(), 4 * 3);
    let repeats: Vec<u64> = recs.iter().map(|r| r["repeat"].as_u64().unwrap()).collect();
    assert!(repeats.iter().all(|r| (1..=3).contains(r)));
    assert_ne!(
        repeats,
        [1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3],
        "shuffled, not in rounds"
    );
    // each point three times, with the same inputs each time
    let mut seeds = std::collections::BTreeMap::new();
    for r in &recs {
        seeds
            .entry(point_key(r))
            .or_insert_with(Vec::new)
            .push(r["seed"].as_u64().unwrap());
    }
    assert_eq!(seeds.len(), 4);
    assert!(seeds
        .values()
        .all(|s| s.len() == 3 && s.iter().all(|x| *x == s[0])));

    // resuming a finished repeat sweep measures nothing again
    let o = sweep(&["--resume"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("12 already there"), "{}", text(&o));
    assert_eq!(records(&out).len(), 12);

    let report = text(&run(&["report", out.to_str().unwrap()]));
    assert!(report.contains("Run-to-run spread"), "{report}");
    assert!(report.contains("spread between runs"), "{report}");
    // priced, the report makes its recommendations of the runs and lets them go:
    // the repeats table is kept first, every point's row with its three runs
    for args in [
        &["report", "--price-per-kwh", "0.2", "--currency", "EUR"][..],
        &["report", "--format", "markdown"][..],
    ] {
        let mut args = args.to_vec();
        args.push(out.to_str().unwrap());
        let report = text(&run(&args));
        let at = report
            .find("Run-to-run spread")
            .unwrap_or_else(|| panic!("{args:?}: no repeats table in {report}"));
        // the table's lines, up to the first line after it that is not the table's
        let table: Vec<&str> = report[at..]
            .lines()
            .skip_while(|l| !l.starts_with(['|', '│']))
            .take_while(|l| l.starts_with(['|', '│', '├', '╰', '╭']))
            .collect();
        let cells = |l: &str| -> Vec<String> {
            l.split(['|', '│']).map(|c| c.trim().to_string()).collect()
        };
        let runs = cells(table[0]).iter().position(|c| c == "runs").unwrap();
        let rows = table[1..]
            .iter()
            .filter(|l| l.starts_with(['|', '│']))
            .filter(|l| cells(l).get(runs).is_some_and(|c| c == "3"))
            .count();
        assert_eq!(rows, 4, "{args:?}: {}", &report[at..]);
    }
    refused(
        &["sweep", "--backend", "sim", "--repeat", "0"],
        "--repeat 0 must be between 1 and 100",
    );
}

#[test]
fn schema_1_records_are_read_and_marked_gapped() {
    let file =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("results/h200-2026-11-29/h200-energy.jsonl");
    let o = run(&["report", file.to_str().unwrap()]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("16 measured"), "{t}");
    assert!(t.contains("gapped"), "{t}");
    let o = run(&["recommend", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("NVIDIA H200"));
}

#[test]
fn exit_codes_follow_the_kind_of_failure_and_help_lists_them() {
    // a device that is not there: 1, with the reason (no driver, or no such GPU)
    let o = run(&["sweep", "--backend", "cuda", "--cuda-device", "99"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("CUDA"), "{}", text(&o));
    // bad input: 2
    let o = run(&["sweep", "--backend", "sim", "--baseline", "kernel"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--baseline"), "{}", text(&o));
    let help = text(&run(&["--help"]));
    for code in ["Exit codes", "2 bad input", "3 a file", "128+N"] {
        assert!(help.contains(code), "{code} missing from --help: {help}");
    }
}

#[test]
fn dry_runs_show_the_plan_and_measure_change_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("never.jsonl");
    let o = run(&[
        "sweep",
        "--backend",
        "sim",
        "--preset",
        "quick",
        "--power-caps",
        "default,80%",
        "--sm-clocks",
        "default,1200",
        "--out",
        out.to_str().unwrap(),
        "--dry-run",
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    for part in [
        "Dry run: nothing is measured",
        "80% (560 W)",
        "SM 1200 MHz",
        "measured",
        "a new file",
        "power limit and clocks",
    ] {
        assert!(t.contains(part), "missing {part:?} in {t}");
    }
    assert!(!out.exists(), "a dry run wrote its results file");
    // no closing recommendation: nothing was measured
    assert!(!t.contains("Recommended"), "{t}");

    // an existing file continued with --resume: what is already there is skipped
    let done = dir.path().join("done.jsonl");
    let sweep = |extra: &[&str]| {
        let mut a = vec![
            "sweep",
            "--backend",
            "sim",
            "--preset",
            "quick",
            "--ops",
            "attention",
            "--power-caps",
            "default",
            "--out",
            done.to_str().unwrap(),
        ];
        a.extend(extra);
        run(&a)
    };
    assert!(sweep(&[]).status.success());
    let before = std::fs::read(&done).unwrap();
    let o = sweep(&["--resume", "--dry-run"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("already in the results file"), "{t}");
    assert_eq!(std::fs::read(&done).unwrap(), before, "the file changed");

    // model plans its step's points the same way
    let o = run(&[
        "model",
        "--backend",
        "sim",
        "--preset",
        "tiny",
        "--micro-batches",
        "1",
        "--out",
        out.to_str().unwrap(),
        "--dry-run",
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("Dry run") && t.contains("distinct op points"),
        "{t}"
    );
    assert!(!out.exists());
}

#[cfg(unix)]
#[test]
fn devices_keeps_what_the_drivers_print_while_probed_off_the_terminal() {
    // Mesa and EGL print "error: XDG_RUNTIME_DIR is invalid or not set in the
    // environment." while probed without a runtime directory, as on a server as root
    let o = jb()
        .arg("devices")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("JOULEBENCH_SHOW_DRIVER_OUTPUT")
        .output()
        .unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        !t.lines().any(|l| l.starts_with("error: XDG_RUNTIME_DIR")),
        "driver noise reached the terminal:\n{t}"
    );
}

#[test]
fn inputs_are_a_sweep_axis_each_record_names_and_compared_only_among_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "inputs.toml",
        "kernels = [\"sim-vendor\"]\nprecisions = [\"bf16\"]\n[[matmul]]\nm = 4096\nn = 4096\nk = 4096\n[protocol]\nidle_baseline_s = 0.0\nwarmup_max_s = 4.0\n",
    );
    let out = dir.path().join("inputs.jsonl");
    let o = run(&[
        "sweep",
        "--backend",
        "sim",
        "--config",
        cfg.to_str().unwrap(),
        "--inputs",
        "normal,zeros,sparse:90%",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let recs = records(&out);
    let by = |inputs: &str| {
        let r = recs
            .iter()
            .find(|r| r["inputs"] == inputs)
            .unwrap_or_else(|| panic!("no {inputs} record"));
        let s = &r["measurement"]["summary"];
        (
            r["group"].as_str().unwrap().to_string(),
            s["joules_per_flop"]["median"].as_f64().unwrap(),
            s["tflops"].as_f64().unwrap(),
        )
    };
    let (normal_group, normal_j, normal_t) = by("normal");
    let (zeros_group, zeros_j, zeros_t) = by("zeros");
    let (sparse_group, sparse_j, _) = by("sparse:90%");
    assert_eq!(recs.len(), 3);
    assert_eq!(normal_group, "matmul 4096x4096x4096");
    assert_eq!(zeros_group, "matmul 4096x4096x4096, zeros inputs");
    assert!(
        sparse_group.ends_with("sparse:90% inputs"),
        "{sparse_group}"
    );
    // at the power limit zeros buy clock: less energy per FLOP, more FLOP/s
    assert!(
        zeros_j < 0.8 * normal_j && zeros_t > normal_t,
        "{zeros_j} {zeros_t}"
    );
    assert!(sparse_j < normal_j && sparse_j > zeros_j);
    // the recommendation never ranks zeros against normal inputs
    let t = text(&o);
    assert!(t.contains("zeros inputs"), "{t}");
    refused(
        &[
            "sweep",
            "--backend",
            "sim",
            "--config",
            cfg.to_str().unwrap(),
            "--inputs",
            "gaussian",
            "--out",
            dir.path().join("never.jsonl").to_str().unwrap(),
        ],
        "unknown input distribution 'gaussian'",
    );
}
