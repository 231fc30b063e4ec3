//! What the end-to-end tests share: running the `joulebench` binary, reading what it
//! printed, and reading the records it wrote.

// Each test file uses its own subset.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The binary under test, with CI's "fail instead of skip" switched off.
pub fn jb() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_joulebench"));
    c.env_remove("CI");
    c
}

pub fn run(args: &[&str]) -> Output {
    jb().args(args).output().expect("run joulebench")
}

/// Stdout and stderr together.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Run a command that must succeed; its output.
pub fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(o.status.success(), "args {args:?}: {}", text(&o));
    text(&o)
}

/// Run a bad command: exit code 2, a message containing `expect`, no panic.
pub fn refused(args: &[&str], expect: &str) -> String {
    let o = run(args);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "args {args:?}: {t}");
    assert!(
        t.contains(expect),
        "args {args:?}: expected '{expect}' in: {t}"
    );
    assert!(!t.contains("panicked"), "{t}");
    t
}

pub fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

/// Every record of a JSONL results file.
pub fn records(p: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The records a killed writer left: every whole line. A kill in the middle of a
/// write can leave the start of a record without its line end, which readers skip
/// and `--resume` cuts off.
pub fn records_left(p: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// What makes a point one point: device, kernel, precision, workload, cap.
pub fn point_key(r: &serde_json::Value) -> String {
    format!(
        "{}|{}|{}|{}|{}",
        r["device"]["uuid"],
        r["kernel"],
        r["precision"],
        r["workload"],
        r["power_cap"]["requested"]
    )
}

pub fn uuids(recs: &[serde_json::Value]) -> BTreeSet<String> {
    recs.iter()
        .map(|r| r["device"]["uuid"].as_str().unwrap_or("").to_string())
        .collect()
}

/// 60 points of the simulated device: long enough to stop or cancel a sweep halfway.
pub const LONGER_SWEEP: &str = r#"
precisions = ["bf16", "f32"]
power_caps = ["default", "90%", "80%", "70%", "60%"]
batch_sizes = [1, 2]
[[matmul]]
m = 1024
n = 1024
k = 1024
[[linear]]
in_features = 1024
out_features = 4096
seq = 256
[protocol]
idle_baseline_s = 0.5
"#;
pub const LONGER_SWEEP_POINTS: usize = 60;

/// The committed settings file `results/sim/NAME.toml`, checked to be what
/// `joulebench model --backend sim MODEL_ARGS --resume --emit toml` gives again from
/// the committed records `results/sim/NAME.jsonl` (nothing measured: every point is
/// there), the records' path written as committed.
pub fn committed_settings_file(name: &str, model_args: &[&str]) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let committed = std::fs::read_to_string(root.join(format!("results/sim/{name}.toml")))
        .expect("the committed settings file");
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("model.jsonl");
    std::fs::copy(root.join(format!("results/sim/{name}.jsonl")), &records).unwrap();
    let emitted = dir.path().join("s.toml");
    let o = jb()
        .args(["model", "--backend", "sim"])
        .args(model_args)
        .args(["--resume", "--out"])
        .arg(&records)
        .args(["--emit", "toml"])
        .arg(&emitted)
        .output()
        .unwrap();
    assert!(
        o.status.success() && text(&o).contains("done: 0 measured"),
        "{}",
        text(&o)
    );
    let again = std::fs::read_to_string(&emitted).unwrap().replace(
        &records.display().to_string(),
        &format!("results/sim/{name}.jsonl"),
    );
    assert_eq!(
        again, committed,
        "the committed settings file is not what its records give"
    );
    committed
}
