//! End-to-end tests of `joulebench model`: a small model's training step measured
//! and composed on the simulated device (resumed without measuring twice, plotted,
//! written to a settings file), on lavapipe (where attention backward has no kernel
//! and the step says so instead of inventing a figure), and every impossible model
//! or flag refused with exit code 2 before anything is measured.

mod common;
use common::{jb, records, refused, run, text, write};

use std::path::Path;

/// A quick protocol for the simulated device (its time is virtual anyway).
const FAST: &[&str] = &[
    "--idle-baseline-s",
    "0",
    "--warmup-s",
    "0.2",
    "--warmup-max-s",
    "0.2",
    "--min-window-s",
    "0.25",
    "--stop-rule",
    "fixed-count",
    "--min-windows",
    "2",
    "--max-windows",
    "2",
];

fn sim_model(out: &Path, extra: &[&str]) -> std::process::Output {
    let mut c = jb();
    c.args(["model", "--backend", "sim", "--preset", "tiny"])
        .args(["--micro-batches", "1,4", "--precisions", "bf16"])
        .args(["--power-caps", "default,80%"])
        .args([
            "--kernels",
            "sim-vendor,sim-fused,sim-fused-bwd,sim-unfused-bwd",
        ])
        .arg("--out")
        .arg(out)
        .args(FAST)
        .args(extra);
    c.output().expect("run joulebench")
}

#[test]
fn a_model_step_on_the_simulated_device_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tiny.jsonl");
    let plots = dir.path().join("plots");
    let settings = dir.path().join("settings.toml");
    let o = sim_model(
        &out,
        &[
            "--plots",
            plots.to_str().unwrap(),
            "--emit",
            "toml",
            settings.to_str().unwrap(),
        ],
    );
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("Training step: energy per token by setting"),
        "{t}"
    );
    assert!(
        t.contains("Recommended setting for tiny on sim-h200 (simulated)"),
        "{t}"
    );
    assert!(
        t.contains("SIMULATED DATA") && t.contains("Pareto front"),
        "{t}"
    );

    // every distinct op shape once per kernel, precision and cap: 12 GEMM shapes
    // (of 15) and attention forward, each with one kernel; attention backward with
    // two; for 2 micro-batches and 2 caps
    let recs = records(&out);
    assert_eq!(recs.len(), 2 * 2 * (12 + 1 + 2), "{t}");
    assert!(recs.iter().all(|r| r["simulated"] == true));
    let backward: Vec<&serde_json::Value> = recs
        .iter()
        .filter(|r| r["workload"]["op"] == "attention-backward")
        .collect();
    assert_eq!(backward.len(), 2 * 2 * 2);
    for r in &backward {
        assert_eq!(r["status"], "measured", "{r}");
        assert_eq!(r["verification"]["passed"], true);
        // 10·d per visible pair: 64·65/2 pairs, 2 heads, head_dim 64
        let flop = r["flop"].as_u64().unwrap();
        let batch = r["workload"]["batch"].as_u64().unwrap();
        assert_eq!(flop, 10 * 64 * (64 * 65 / 2) * 2 * batch);
    }

    // the settings file: the chosen step setting keyed by the model's name
    let s = joulebench_analysis::settings_file::SettingsFile::parse(
        &std::fs::read_to_string(&settings).unwrap(),
        joulebench_analysis::settings_file::SettingsFormat::Toml,
        &settings,
    )
    .unwrap();
    assert!(s.simulated && s.settings.is_empty());
    let chosen = &s.models["tiny"];
    assert_eq!(chosen.len(), 1);
    assert_eq!(chosen[0].device_model, "sim-h200 (simulated)");
    assert!(chosen[0].energy_j_per_token > 0.0 && chosen[0].tokens_per_second > 0.0);
    assert_eq!(chosen[0].precision, joulebench_core::Precision::Bf16);
    assert!([1, 4].contains(&chosen[0].micro_batch));
    assert_eq!(chosen[0].tokens_per_step, chosen[0].micro_batch * 64);
    let p = std::fs::read_dir(&plots).unwrap().count();
    assert_eq!(p, 2, "one plot as SVG and PNG");

    // --resume composes the same figures from the file and measures nothing again
    let o = sim_model(&out, &["--resume", "--format", "json"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("done: 0 measured"), "{}", text(&o));
    assert_eq!(records(&out).len(), recs.len());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json on stdout");
    let figures = v["settings"].as_array().unwrap();
    // 2 caps × 2 micro-batches × 2 backward kernels
    assert_eq!(figures.len(), 8);
    let same = figures.iter().any(|f| {
        let jpt = f["joules_per_step"].as_f64().unwrap() / f["tokens_per_step"].as_f64().unwrap();
        (jpt - chosen[0].energy_j_per_token).abs() < 1e-3 * jpt
            && f["setting"]["micro_batch"] == chosen[0].micro_batch
    });
    assert!(
        same,
        "the settings file's figure is one of the composed settings"
    );
    for f in figures {
        assert!(f["missing"].as_array().unwrap().is_empty(), "{f}");
    }
}

#[test]
fn a_model_step_on_lavapipe_says_what_is_missing_instead_of_inventing_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tiny-wgpu.jsonl");
    let o = jb()
        .args([
            "model",
            "--backend",
            "wgpu",
            "--preset",
            "tiny",
            "--micro-batches",
            "1",
        ])
        .args([
            "--precisions",
            "f32",
            "--kernels",
            "wgsl-tiled",
            "--format",
            "json",
        ])
        .arg("--out")
        .arg(&out)
        .args([
            "--warmup-s",
            "0",
            "--warmup-max-s",
            "0.05",
            "--min-window-s",
            "0.05",
        ])
        .args([
            "--stop-rule",
            "fixed-count",
            "--min-windows",
            "2",
            "--max-windows",
            "2",
        ])
        .output()
        .unwrap();
    let t = text(&o);
    if !o.status.success() && t.contains("wgpu") && std::env::var("CI").is_err() {
        eprintln!("skipped: no wgpu adapter here: {t}");
        return;
    }
    assert!(o.status.success(), "{t}");
    let recs = records(&out);
    let bwd: Vec<&serde_json::Value> = recs
        .iter()
        .filter(|r| r["workload"]["op"] == "attention-backward")
        .collect();
    assert_eq!(bwd.len(), 1);
    assert_eq!(bwd[0]["status"], "skipped");
    assert!(bwd[0]["reason"]
        .as_str()
        .unwrap()
        .contains("no attention-backward kernel"));
    // the forward ops ran for real on the CPU emulation
    let fwd = recs
        .iter()
        .find(|r| r["workload"]["op"] == "attention")
        .unwrap();
    assert_eq!(fwd["status"], "measured", "{fwd}");
    assert_eq!(fwd["verification"]["passed"], true);
    assert!(recs
        .iter()
        .filter(|r| r["workload"]["op"] == "matmul")
        .all(|r| r["status"] == "measured"));

    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json on stdout");
    let f = &v["settings"][0];
    assert!(
        f["joules_per_step"].is_null() && f["seconds_per_step"].is_null(),
        "{f}"
    );
    let missing = f["missing"].as_array().unwrap();
    assert_eq!(missing.len(), 1, "{f}");
    assert!(missing[0]["op"]
        .as_str()
        .unwrap()
        .starts_with("attention backward"));
    assert!(missing[0]["reason"]
        .as_str()
        .unwrap()
        .starts_with("skipped: the wgpu backend has no attention-backward kernel"));
    assert!(t.contains("No recommendation"), "{t}");
}

#[test]
fn impossible_models_and_flags_are_refused_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let model =
        |name: &str, body: &str| write(dir.path(), name, body).to_str().unwrap().to_string();
    let base = "name = \"m\"\nhidden_size = 768\nlayers = 2\nattention_heads = 12\nmlp_size = 3072\nvocab_size = 1000\nseq_len = 128\n";
    let sim = ["model", "--backend", "sim"];
    let with =
        |args: &[&str]| -> Vec<String> { sim.iter().chain(args).map(|s| s.to_string()).collect() };
    let check = |args: Vec<String>, expect: &str| {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(&a, expect);
    };
    let kv = model("kv.toml", &format!("{base}kv_heads = 5\n"));
    check(
        with(&["--config", &kv]),
        "kv_heads 5 must divide attention_heads 12",
    );
    let heads = model(
        "heads.toml",
        &base.replace("attention_heads = 12", "attention_heads = 7"),
    );
    check(
        with(&["--config", &heads]),
        "hidden_size 768 is not a multiple of attention_heads 7",
    );
    let zero = model("zero.toml", &base.replace("layers = 2", "layers = 0"));
    check(with(&["--config", &zero]), "layers is 0");
    let typo = model("typo.toml", &base.replace("mlp_size", "mlp_sise"));
    check(with(&["--config", &typo]), "unknown field `mlp_sise`");
    check(
        with(&["--config", "no-such-model.toml"]),
        "cannot read model config",
    );
    check(
        with(&["--preset", "llama9"]),
        "unknown model preset 'llama9'",
    );
    check(
        with(&["--preset", "llama3-70b", "--micro-batches", "100000"]),
        "llama3-70b at micro-batch 100000",
    );
    check(
        with(&["--preset", "gpt2", "--micro-batches", "0"]),
        "micro-batch '0'",
    );
    check(
        with(&["--preset", "gpt2", "--baseline", "batch=2"]),
        "unknown baseline key 'batch'",
    );
    check(
        with(&["--preset", "gpt2", "--kernels", "cublas"]),
        "unknown kernel 'cublas'",
    );
    check(with(&[]), "--preset");
    check(
        with(&["--preset", "gpt2", "--config", &kv]),
        "cannot be used with",
    );
    check(
        with(&["--preset", "gpt2", "--resume"]),
        "--resume needs --out",
    );
    // nothing was measured: no results file appeared
    assert!(!Path::new("results").join("m.jsonl").exists());
    let o = run(&["model", "--help"]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("--micro-batches"));
}
