//! `joulebench sweep --devices` end to end on a node of simulated GPUs: one worker
//! and one results file per GPU, the merged file, a GPU that fails while the others
//! finish, a stopped sweep resumed, and the flags refused before anything runs.

mod common;
use common::{jb, point_key, records, text, uuids, write, LONGER_SWEEP};

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// 2 kernels × 2 precisions × 2 caps of one matmul: a few seconds for three GPUs.
const TINY: &str = r#"
precisions = ["bf16", "f32"]
power_caps = ["default", "70%"]
[[matmul]]
m = 1024
n = 1024
k = 1024
[protocol]
idle_baseline_s = 0.5
"#;
const TINY_POINTS: usize = 8;

fn assert_each_point_once(recs: &[serde_json::Value]) {
    let keys: HashSet<String> = recs.iter().map(point_key).collect();
    assert_eq!(keys.len(), recs.len(), "a point appears twice");
}

fn sweep<'a>(cfg: &'a Path, out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "sweep",
        "--backend",
        "sim",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    a.extend_from_slice(extra);
    a
}

#[test]
fn three_simulated_gpus_one_worker_and_file_each_then_merged() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "sweep.toml", TINY);
    let out = dir.path().join("node.jsonl");
    let args = sweep(
        &cfg,
        &out,
        &[
            "--devices",
            "all",
            "--sim-devices",
            "3",
            "--sim-profile",
            "sim-h100,sim-a100,sim-l40s",
        ],
    );
    let o = jb().args(&args).output().unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("Recommended settings"), "{t}");

    let expected = ["SIM-sim-h100-0", "SIM-sim-a100-1", "SIM-sim-l40s-2"];
    let mut per_device = Vec::new();
    for (i, uuid) in expected.iter().enumerate() {
        let file = dir.path().join(format!("node.dev{i}.jsonl"));
        let recs = records(&file);
        assert_eq!(recs.len(), TINY_POINTS, "{}", file.display());
        // energy is attributed by UUID: each file holds its own GPU only
        assert_eq!(
            uuids(&recs),
            BTreeSet::from([uuid.to_string()]),
            "{}",
            file.display()
        );
        assert!(t.contains(&format!("dev{i} ")) && t.contains(uuid), "{t}");
        per_device.extend(
            std::fs::read_to_string(&file)
                .unwrap()
                .lines()
                .map(String::from),
        );
    }
    let merged = records(&out);
    assert_eq!(
        uuids(&merged),
        expected.iter().map(|s| s.to_string()).collect()
    );
    assert_each_point_once(&merged);
    // the merge concatenates the device files' records as they are
    let merged_lines: BTreeSet<String> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let device_lines: BTreeSet<String> = per_device.into_iter().collect();
    assert!(
        merged_lines == device_lines,
        "the merged file's lines are not the device files' lines"
    );
    assert!(merged.iter().all(|r| r["simulated"] == true));
    // every record keeps the command the user typed, not its worker's
    for r in &merged {
        let command = r["command"].as_str().unwrap();
        assert!(
            command.contains("--devices all") && !command.contains("--progress-lines"),
            "{command}"
        );
    }
}

#[test]
fn a_failing_gpu_does_not_stop_the_others_and_resume_adds_only_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "sweep.toml", TINY);
    let out = dir.path().join("node.jsonl");
    let o = jb()
        .args(sweep(
            &cfg,
            &out,
            &[
                "--devices",
                "all",
                "--sim-profile",
                "sim-h100,sim-z9,sim-l40s",
            ],
        ))
        .output()
        .unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("dev1: FAILED") && t.contains("unknown simulated device profile 'sim-z9'"),
        "{t}"
    );
    assert!(t.contains("1 of 3 devices failed"), "{t}");
    assert!(!t.contains("panicked"), "{t}");
    assert_eq!(
        records(&dir.path().join("node.dev0.jsonl")).len(),
        TINY_POINTS
    );
    assert_eq!(
        records(&dir.path().join("node.dev2.jsonl")).len(),
        TINY_POINTS
    );
    assert!(!dir.path().join("node.dev1.jsonl").exists());
    let merged = records(&out);
    assert_eq!(
        uuids(&merged),
        BTreeSet::from(["SIM-sim-h100-0".into(), "SIM-sim-l40s-2".into()])
    );
    let before = std::fs::read(&out).unwrap();

    // without --resume the existing files are refused and left alone
    let fixed = [
        "--devices",
        "all",
        "--sim-profile",
        "sim-h100,sim-a100,sim-l40s",
    ];
    let o = jb().args(sweep(&cfg, &out, &fixed)).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--resume"), "{}", text(&o));
    assert_eq!(std::fs::read(&out).unwrap(), before);

    let mut resumed = fixed.to_vec();
    resumed.push("--resume");
    let o = jb().args(sweep(&cfg, &out, &resumed)).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let after = std::fs::read(&out).unwrap();
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "finished records were rewritten"
    );
    let merged = records(&out);
    assert_eq!(merged.len(), 3 * TINY_POINTS);
    assert_eq!(uuids(&merged).len(), 3);
    assert_each_point_once(&merged);
}

#[test]
fn a_stopped_node_sweep_resumes_with_every_point_once() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "sweep.toml", LONGER_SWEEP);
    let out = dir.path().join("node.jsonl");
    let args = sweep(&cfg, &out, &["--devices", "0,1", "--sim-devices", "2"]);
    let mut child = jb()
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let dev0 = dir.path().join("node.dev0.jsonl");
    let start = Instant::now();
    while std::fs::read_to_string(&dev0)
        .map(|s| s.lines().count())
        .unwrap_or(0)
        < 3
    {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the workers wrote nothing"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the sweep finished before it could be stopped"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(128 + 15),
        "SIGTERM: every worker stops after its point"
    );
    let partial = records(&out);
    let full = records(&dir.path().join("node.dev0.jsonl")).len()
        + records(&dir.path().join("node.dev1.jsonl")).len();
    assert_eq!(
        partial.len(),
        full,
        "the merge holds what the workers finished"
    );
    assert!(
        partial.len() < 2 * 60,
        "stopped after {} points",
        partial.len()
    );

    let mut resumed = args.clone();
    resumed.push("--resume");
    let o = jb().args(&resumed).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let merged = records(&out);
    // per GPU: 2 kernels × 2 precisions × 5 caps for the matmul, × 2 batch sizes for the linear layer
    assert_eq!(merged.len(), 2 * 60);
    assert_each_point_once(&merged);
    assert_eq!(
        uuids(&merged),
        BTreeSet::from(["SIM-sim-h200-0".into(), "SIM-sim-h200-1".into()])
    );
}

#[test]
fn device_flags_are_checked_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "sweep.toml", TINY);
    let out = dir.path().join("never.jsonl");
    let refused = |extra: &[&str], expect: &str| {
        let o = jb().args(sweep(&cfg, &out, extra)).output().unwrap();
        let t = text(&o);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {t}");
        assert!(t.contains(expect), "{extra:?}: expected '{expect}' in {t}");
    };
    refused(
        &["--devices", "2", "--sim-devices", "2"],
        "this node has 2 simulated GPUs",
    );
    refused(&["--devices", "zero"], "--devices 'zero'");
    refused(
        &[
            "--devices",
            "all",
            "--sim-devices",
            "3",
            "--sim-profile",
            "sim-h100,sim-a100",
        ],
        "2 profiles for 3",
    );
    refused(
        &["--devices", "all", "--sim-devices", "0"],
        "--sim-devices must be ≥ 1",
    );
    refused(&["--sim-profile", "sim-h100,sim-a100"], "needs --devices");
    refused(&["--sim-devices", "2"], "--devices");
    refused(
        &["--devices", "all", "--precisions", "f64"],
        "unknown precision 'f64'",
    );
    assert!(!out.exists());
    assert!(
        std::fs::read_dir(dir.path()).unwrap().count() == 1,
        "only the config is there"
    );

    // an existing device file is refused without --resume, like an existing --out
    std::fs::write(dir.path().join("never.dev0.jsonl"), "").unwrap();
    refused(&["--devices", "0"], "--resume");
}
