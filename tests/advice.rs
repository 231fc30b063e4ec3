//! End-to-end tests of the advice on the simulated device: a sweep over caps and
//! locked clocks, then `recommend` and its settings file and script — one cap and
//! clock per GPU, no lock advised that does not bind, notes that credit each lever
//! alone — the flags an objective would ignore refused, and every command ending
//! quietly when its output is closed.

mod common;
use common::{ok, records, refused};

use joulebench_analysis::settings_file::SettingsFile;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// sim-h100: a GEMM (bf16, fp8) and attention (fused, unfused) at two caps, the SM
/// clock at its default and locked at 1260 and 1980 MHz: 24 points.
fn sweep(dir: &Path) -> PathBuf {
    let out = dir.join("q.jsonl");
    ok(&[
        "sweep",
        "--backend",
        "sim",
        "--preset",
        "quick",
        "--kernels",
        "sim-vendor,sim-fused,sim-unfused",
        "--precisions",
        "bf16,fp8-e4m3",
        "--power-caps",
        "default,80%",
        "--sm-clocks",
        "default,1260,1980",
        "--out",
        s(&out),
    ]);
    out
}

#[test]
fn advice_from_a_cap_and_clock_sweep_gives_each_gpu_one_binding_setting() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let q = sweep(d);
    let recs = records(&q);
    for (objective, extra) in [
        ("within-slowdown", &[][..]),
        ("least-energy", &[][..]),
        ("zeus", &["--eta", "0.8"][..]),
    ] {
        let toml = d.join(format!("{objective}.toml"));
        let mut args = vec!["recommend", s(&q), "--objective", objective];
        args.extend(extra);
        args.extend(["--emit", "toml", s(&toml)]);
        let out = ok(&args);
        // a note about a clock speaks of what the clock alone did
        for note in out.lines().filter(|l| l.contains("below the maximum")) {
            assert!(note.contains("the clock alone saves"), "{note}");
        }
        let file = SettingsFile::read(&toml).unwrap();
        assert_eq!(file.devices.len(), 1, "{objective}");
        let dev = &file.devices[0];
        assert_eq!(file.settings.len(), 2);
        for st in &file.settings {
            assert_eq!(
                (&st.power_cap, st.sm_clock_mhz),
                (&dev.power_cap, dev.sm_clock_mhz),
                "{objective}: one cap and clock per GPU"
            );
        }
        // an advised lock binds for some workload: the GPU ran at it
        if let Some(lock) = dev.sm_clock_mhz {
            let binds = recs.iter().any(|r| {
                r["clocks"]["sm_requested_mhz"].as_u64() == Some(lock as u64)
                    && r["power_cap"]["requested"] == dev.power_cap.as_str()
                    && r["clocks"]["sm_seen_mhz_median"].as_f64().unwrap() >= lock as f64 * 0.98
            });
            assert!(binds, "{objective}: {lock} MHz advised but never reached");
        }
    }

    // the script: executable, nothing applied to a simulated GPU
    let script = d.join("apply.sh");
    ok(&["recommend", s(&q), "--emit", "sh", s(&script)]);
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(text.starts_with("#!/bin/sh\n"), "{text}");
    let o = Command::new("sh").arg(&script).output().unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("simulated device, nothing to apply"));
    let o = Command::new("sh")
        .arg(&script)
        .arg("undo")
        .output()
        .unwrap();
    assert!(o.status.success());

    // flags an objective would ignore, and a bare number over 1, are refused
    refused(
        &["recommend", s(&q), "--max-slowdown", "10"],
        "write 10% for 10 percent",
    );
    ok(&["recommend", s(&q), "--max-slowdown", "0.1"]);
    refused(
        &["recommend", s(&q), "--eta", "0.3"],
        "--eta applies to --objective zeus only",
    );
    refused(
        &["recommend", s(&q), "--max-power-w", "500"],
        "--max-power-w applies to --objective zeus only",
    );
    refused(
        &[
            "recommend",
            s(&q),
            "--objective",
            "energy-delay",
            "--max-slowdown",
            "5%",
        ],
        "--max-slowdown applies to --objective within-slowdown only",
    );
    refused(&["recommend", s(&q), "--noise-floor", "2"], "--noise-floor");
    let weights = d.join("w.toml");
    std::fs::write(&weights, "\"matmul 4096x4096x4096\" = 1\n").unwrap();
    refused(
        &["recommend", s(&q), "--weights", s(&weights)],
        "matmul 8192x8192x8192",
    );
    std::fs::write(&weights, "\"matmul 8192x8192x8192\" = 3\n").unwrap();
    let out = ok(&["recommend", s(&q), "--weights", s(&weights)]);
    assert!(out.contains("not in the mix (weight 0)"), "{out}");
}

/// Run joulebench with its standard output (or error) closed before it writes:
/// the exit status, and what it said on the other stream.
fn closed(args: &[&str], close_stderr: bool) -> (Option<i32>, String) {
    let mut cmd = common::jb();
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let said = if close_stderr {
        drop(child.stderr.take());
        let mut s = String::new();
        use std::io::Read;
        child.stdout.take().unwrap().read_to_string(&mut s).unwrap();
        s
    } else {
        drop(child.stdout.take());
        let mut s = String::new();
        use std::io::Read;
        child.stderr.take().unwrap().read_to_string(&mut s).unwrap();
        s
    };
    (child.wait().unwrap().code(), said)
}

#[test]
fn every_command_ends_quietly_when_its_reader_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let q = sweep(d);
    let merged = d.join("merged.jsonl");
    let fresh = d.join("fresh.jsonl");
    let model = d.join("model.jsonl");
    let cases: Vec<Vec<&str>> = vec![
        vec!["devices"],
        vec!["report", s(&q)],
        vec!["recommend", s(&q)],
        vec!["recommend", s(&q), "--format", "json"],
        vec!["compare", s(&q)],
        vec!["merge", s(&q), "--out", s(&merged)],
        vec!["power", "status"],
        vec![
            "sweep",
            "--backend",
            "sim",
            "--preset",
            "quick",
            "--kernels",
            "sim-vendor",
            "--precisions",
            "bf16",
            "--out",
            s(&fresh),
        ],
        vec![
            "model",
            "--backend",
            "sim",
            "--preset",
            "tiny",
            "--micro-batches",
            "1",
            "--precisions",
            "bf16",
            "--out",
            s(&model),
        ],
    ];
    for args in &cases {
        let (code, said) = closed(args, false);
        assert!(!said.contains("panicked"), "{args:?}: {said}");
        // 141: 128 + SIGPIPE, as a shell reports a pipe closed under a writer
        assert!(
            code.is_some_and(|c| [0, 141].contains(&c)),
            "{args:?}: exit {code:?}: {said}"
        );
    }
    // the sweep finished every point before its closing table met the closed pipe
    let points = records(&fresh).len();
    assert!(points > 0);
    // progress written to a closed stderr ends the sweep as SIGPIPE would, without a
    // panic, and keeps whatever it finished whole
    let again = d.join("again.jsonl");
    let (code, said) = closed(
        &[
            "sweep",
            "--backend",
            "sim",
            "--preset",
            "quick",
            "--kernels",
            "sim-vendor",
            "--precisions",
            "bf16",
            "--out",
            s(&again),
        ],
        true,
    );
    assert!(matches!(code, Some(0 | 141)), "{code:?}: {said}");
    assert!(!said.contains("panicked"), "{said}");
    if again.exists() {
        assert!(records(&again).len() <= points);
    }
}
