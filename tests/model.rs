//! End-to-end tests of `joulebench model`: a small model's training step measured
//! and composed on the simulated device (resumed without measuring twice, plotted,
//! written to a settings file); the default plan of llama3-8b (under ten minutes by
//! its own estimate, savings against a measured baseline); llama3-70b, which does not
//! fit one GPU, and a layout that does; decode with the lever that binds; lavapipe
//! (where attention backward has no kernel and the step says so instead of
//! inventing a figure); and every impossible model or flag refused with exit code 2
//! before anything is measured.

mod common;
use common::{committed_settings_file, jb, records, refused, run, text, write};

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
            "--table",
            "full",
        ],
    );
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("Training step: energy per token by setting"),
        "{t}"
    );
    assert!(
        t.contains("Training memory of tiny per GPU on 1 GPU"),
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
    assert!(
        chosen[0]
            .coverage
            .starts_with("GEMMs and attention, forward and backward"),
        "{:?}",
        chosen[0].coverage
    );
    assert!(chosen[0].flop_per_token > 0.0 && chosen[0].mfu.is_some_and(|m| m > 0.0));
    let p = std::fs::read_dir(&plots).unwrap().count();
    assert_eq!(p, 2, "one plot as SVG and PNG");

    // the short table by default: the baseline, each precision's best, the front
    let o = sim_model(&out, &["--resume"]);
    let t = text(&o);
    assert!(
        t.contains("tiny on sim-h200 (simulated): the baseline, each precision's best and the Pareto front"),
        "{t}"
    );
    assert!(
        !t.contains("Training step: energy per token by setting"),
        "{t}"
    );
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

/// "about 4m 33s (at most 9m 4s) of device time" → (typical, bound) in seconds.
fn estimate_s(t: &str) -> (u64, u64) {
    let line = t
        .lines()
        .find(|l| l.starts_with("sweep: ") && l.contains("of device time"))
        .unwrap_or_else(|| panic!("no estimate in: {t}"));
    let secs = |s: &str| -> u64 {
        s.split_whitespace()
            .map(|p| {
                let (n, unit) =
                    p.split_at(p.find(|c: char| !c.is_ascii_digit()).unwrap_or(p.len()));
                let n: u64 = n.parse().unwrap_or(0);
                match unit.trim_end_matches([',', ')']) {
                    "h" => n * 3600,
                    "m" => n * 60,
                    "s" => n,
                    _ => 0,
                }
            })
            .sum()
    };
    let about = line
        .split("about ")
        .nth(1)
        .unwrap()
        .split(" (at most")
        .next()
        .unwrap();
    let most = line
        .split("(at most ")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    (secs(about), secs(most))
}

/// With no flags but the model, the plan measures the baseline and the settings most
/// likely to matter within ten minutes of device time by its own estimate (the
/// default protocol, the simulated H100 in virtual time), and reports savings
/// against the baseline it measured.
#[test]
fn the_default_llama3_8b_run_is_quick_and_saves_against_a_measured_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("llama.jsonl");
    let settings = dir.path().join("llama.toml");
    let o = jb()
        .args([
            "model",
            "--backend",
            "sim",
            "--preset",
            "llama3-8b",
            "--format",
            "markdown",
        ])
        // an 80 GB H100, where the vendor attention backward does not fit at
        // micro-batch 2
        .args(["--sim-profile", "sim-h100"])
        .arg("--out")
        .arg(&out)
        .args(["--emit", "toml"])
        .arg(&settings)
        .output()
        .unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let (typical, bound) = estimate_s(&t);
    assert!(
        typical < 600 && bound < 600,
        "{typical} s, at most {bound} s: {t}"
    );
    // bf16 and fp8, the vendor and our fused attention, micro-batches 1 and 2; the
    // unfused backward does not fit at 2 and the plan says what it took instead
    assert!(t.contains("8 settings"), "{t}");
    assert!(
        t.contains("plan: attention backward at micro-batch 2: sim-unfused-bwd cannot run here")
            && t.contains("sim-fused-bwd instead"),
        "{t}"
    );
    // the baseline was measured, and the choice saves energy against it
    let row = |first: &str| -> Vec<String> {
        t.lines()
            .map(|l| {
                l.split('|')
                    .map(|c| c.trim().to_string())
                    .collect::<Vec<_>>()
            })
            .find(|c| c.len() > 2 && c[1].contains(first))
            .unwrap_or_else(|| panic!("no row '{first}' in {t}"))
    };
    let baseline = row("baseline");
    assert_eq!(
        baseline[2..6],
        [
            "bf16",
            "1 (8192)",
            "default",
            "sim-vendor + sim-unfused / sim-unfused-bwd"
        ],
        "{baseline:?}"
    );
    let chosen = row("chosen");
    let header: Vec<&str> = t
        .lines()
        .find(|l| l.contains("| energy saved |"))
        .unwrap_or_else(|| panic!("{t}"))
        .split('|')
        .map(str::trim)
        .collect();
    let saved_at = header.iter().position(|h| *h == "energy saved").unwrap();
    let saved: f64 = chosen[saved_at].trim_end_matches('%').parse().unwrap();
    assert!(saved > 10.0, "{chosen:?}");
    // the memory estimate says the model does not fit one 80 GiB card, and the least
    // it needs
    assert!(
        t.contains("llama3-8b does not fit on 1 GPU of this card. The smallest layout that fits: TP 4 (4 GPUs)"),
        "{t}"
    );
    let file = std::fs::read_to_string(&settings).unwrap();
    assert!(file.contains("coverage = \"GEMMs and attention"), "{file}");
    assert!(file.contains("layout = \"1 GPU\""), "{file}");
}

/// llama3-70b on one 80 GiB GPU: it says it does not fit and how many GPUs it needs;
/// on that layout each GPU's share is what is measured.
#[test]
fn llama3_70b_needs_sixteen_gpus_and_each_measures_its_share() {
    let dir = tempfile::tempdir().unwrap();
    let fast: Vec<&str> = ["--micro-batches", "1", "--precisions", "bf16"]
        .into_iter()
        .chain(["--kernels", "sim-vendor,sim-fused,sim-fused-bwd"])
        .chain(FAST.iter().copied())
        .collect();
    let out = dir.path().join("one.jsonl");
    let o = jb()
        .args(["model", "--backend", "sim", "--preset", "llama3-70b"])
        .args(["--sim-profile", "sim-h100"])
        .args(&fast)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("warning: llama3-70b does not fit on 1 GPU of this card")
            && t.contains("the smallest layout that fits: TP 8 × PP 2 (16 GPUs) (--tensor-parallel 8 --pipeline-parallel 2)"),
        "{t}"
    );
    let out = dir.path().join("tp8pp2.jsonl");
    let o = jb()
        .args(["model", "--backend", "sim", "--preset", "llama3-70b"])
        .args(["--sim-profile", "sim-h100"])
        .args(["--tensor-parallel", "8", "--pipeline-parallel", "2"])
        .args(&fast)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(!t.contains("does not fit"), "{t}");
    assert!(
        t.contains("What each GPU of llama3-70b on TP 8 × PP 2 (16 GPUs) measures"),
        "{t}"
    );
    // 4.4 B parameters a GPU: 40 layers' and the vocabulary's, an eighth each
    assert!(
        t.contains("│ 1           │ 8.2 "),
        "8.2 GiB of weights per GPU: {t}"
    );
    // 8 of 64 query heads and 1 of 8 KV heads: the QKV projection is 1280 wide; 40
    // layers a stage
    assert!(
        t.lines().any(|l| l.contains("attn-qkv forward")
            && l.contains("matmul 8192x1280x8192 b1")
            && l.contains("│ 40 ")),
        "{t}"
    );
    let recs = records(&out);
    assert!(recs
        .iter()
        .any(|r| r["workload"]["op"] == "attention" && r["workload"]["heads"] == 8));
    assert!(
        t.contains("energy is that of the 16 GPUs of one model copy"),
        "{t}"
    );
}

/// Decode is memory-bound: the levers table says the cap does not bind there, and
/// what a lower SM clock saves.
#[test]
fn decode_says_which_lever_binds() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("decode.jsonl");
    let o = jb()
        .args([
            "model",
            "--backend",
            "sim",
            "--preset",
            "llama3-8b",
            "--inference",
        ])
        // an H100, where decode at 16 sequences draws under a 60% cap
        .args(["--sim-profile", "sim-h100"])
        .args(["--decode-batches", "16", "--precisions", "bf16"])
        .args(["--kernels", "sim-vendor,sim-fused"])
        .args(["--power-caps", "default,60%", "--sm-clocks", "default,1200"])
        .args(["--format", "csv"])
        .args(FAST)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let decode = t
        .lines()
        .find(|l| l.starts_with("decode (1152 cached),16,"))
        .unwrap_or_else(|| panic!("{t}"));
    // far under the cap: the cap changes nothing, and is never said to bind
    assert!(
        decode.contains("60% (420 W): no change (within 1%)"),
        "{decode}"
    );
    assert!(!decode.contains("— binds"), "{decode}");
    assert!(decode.contains("1200 MHz: -"), "{decode}");
    let prefill = t
        .lines()
        .find(|l| l.starts_with("prefill (1024 tokens),1,"))
        .unwrap_or_else(|| panic!("{t}"));
    assert!(prefill.contains("— binds"), "{prefill}");
    // joules per output token and per request, baseline and choice
    assert!(
        t.lines()
            .any(|l| l.starts_with("baseline,16,1152,bf16,default,default,")),
        "{t}"
    );
}

/// The worked examples of docs/model.md are what their committed records compose to: each
/// table row and note it shows is printed again by `--resume` from the results file,
/// measuring nothing.
#[test]
fn the_model_docs_examples_are_what_the_committed_results_give() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("docs/model.md")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (file, extra) in [
        ("model-llama3-8b.jsonl", &[][..]),
        (
            "infer-llama3-8b.jsonl",
            &[
                "--inference",
                "--power-caps",
                "default,60%",
                "--sm-clocks",
                "default,1200",
            ][..],
        ),
    ] {
        // never resume onto the committed file itself
        let copy = dir.path().join(file);
        std::fs::copy(root.join("results/sim").join(file), &copy).unwrap();
        let o = jb()
            .args(["model", "--backend", "sim", "--preset", "llama3-8b"])
            .args(extra)
            .args(["--format", "markdown", "--resume", "--out"])
            .arg(&copy)
            .output()
            .unwrap();
        let t = text(&o);
        assert!(o.status.success(), "{t}");
        assert!(t.contains("done: 0 measured"), "{t}");
        let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
        let shown: Vec<&str> = stdout
            .lines()
            .filter(|l| l.starts_with('|') || l.starts_with("> "))
            .map(|l| l.trim_end())
            .collect();
        assert!(shown.len() > 10, "{t}");
        for line in shown {
            assert!(
                readme.contains(line),
                "docs/model.md lacks, from {file}:\n{line}"
            );
        }
        // the plan's estimate, which the training example quotes
        if file == "model-llama3-8b.jsonl" {
            let estimate = t
                .split("(64 measured), ")
                .nth(1)
                .and_then(|s| s.split(" on sim-h200").next())
                .unwrap_or_else(|| panic!("no estimate printed: {t}"));
            let flat = readme.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(
                flat.contains(&format!("\"{estimate}\"")),
                "docs/model.md should quote the plan's estimate: \"{estimate}\""
            );
        }
    }
    // the kernel that replaces one that cannot run, as docs/model.md quotes it
    let o = jb()
        .args(["model", "--backend", "sim", "--sim-profile", "sim-h100"])
        .args(["--preset", "llama3-8b", "--dry-run"])
        .output()
        .unwrap();
    let plan = text(&o)
        .lines()
        .find(|l| l.starts_with("plan: attention backward at micro-batch 2:"))
        .unwrap_or_else(|| panic!("{}", text(&o)))
        .to_string();
    let (head, tail) = plan.split_once(" (").unwrap();
    let flat = readme.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains(&format!("`{head} (…); sim-fused-bwd instead`"))
            && tail.ends_with("); sim-fused-bwd instead"),
        "docs/model.md should quote: {plan}"
    );
}

/// The settings file of the training example is what its committed records give, and
/// docs/settings-file.md shows that file as it is (its header comments aside).
#[test]
fn the_documented_settings_file_is_what_the_committed_records_give() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let committed = committed_settings_file("model-llama3-8b", &["--preset", "llama3-8b"]);
    let docs = std::fs::read_to_string(root.join("docs/settings-file.md")).unwrap();
    let shown = docs
        .split("`results/sim/model-llama3-8b.toml` — **simulated**:\n\n```toml\n")
        .nth(1)
        .expect("docs/settings-file.md shows the file")
        .split("```")
        .next()
        .unwrap();
    let without_comments: String = committed
        .lines()
        .skip_while(|l| l.starts_with('#') || l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        shown, without_comments,
        "docs/settings-file.md's copy of the file"
    );
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
        with(&["--preset", "gpt2", "--baseline", "size=2"]),
        "unknown baseline key 'size'",
    );
    // flags the objective would ignore, and a bare slowdown over 1, are refused
    check(
        with(&["--preset", "gpt2", "--eta", "0.3"]),
        "--eta applies to --objective zeus only",
    );
    check(
        with(&["--preset", "gpt2", "--max-slowdown", "10"]),
        "write 10% for 10 percent",
    );
    check(
        with(&["--preset", "gpt2", "--emit", "yaml", "s.yaml"]),
        "toml, json or sh",
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
    check(
        with(&["--preset", "gpt2", "--tensor-parallel", "5"]),
        "tensor parallelism 5 must divide the 12 attention heads",
    );
    check(
        with(&["--preset", "gpt2", "--pipeline-parallel", "13"]),
        "13 pipeline stages for 12 layers",
    );
    check(
        with(&["--preset", "gpt2", "--zero-stage", "4"]),
        "--zero-stage 4",
    );
    check(
        with(&["--preset", "gpt2", "--table", "wide"]),
        "--table 'wide'",
    );
    check(
        with(&["--preset", "gpt2", "--inference", "--micro-batches", "2"]),
        "with --inference give --decode-batches",
    );
    check(
        with(&["--preset", "gpt2", "--inference", "--decode-batches", "0"]),
        "decode batch '0'",
    );
    check(
        with(&["--preset", "gpt2", "--prompt-len", "5"]),
        "--inference",
    );
    check(
        with(&["--preset", "gpt2", "--sm-clocks", "fast"]),
        "--sm-clocks",
    );
    // nothing was measured: no results file appeared
    assert!(!Path::new("results").join("m.jsonl").exists());
    let o = run(&["model", "--help"]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("--micro-batches"));
}
