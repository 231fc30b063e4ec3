//! End-to-end tests of the reporting commands on two simulated device profiles:
//! compare (ranking, cost and carbon columns, plots), merge (duplicates, schema,
//! mixed simulated and real data, existing output), report --format markdown
//! with plots, and the settings file of recommend --emit read back.

mod common;
use common::{ok, refused, run, text};

use joulebench_analysis::settings_file::{SettingsFile, SETTINGS_FORMAT, SETTINGS_VERSION};
use std::path::{Path, PathBuf};

/// A small sweep with two caps and two batch sizes of a linear layer.
const CONFIG: &str = r#"
precisions = ["bf16", "f32"]
batch_sizes = [1, 2]
power_caps = ["default", "70%"]
[[matmul]]
m = 1024
n = 1024
k = 1024
[[linear]]
name = "mlp"
in_features = 1024
out_features = 4096
seq = 128
[protocol]
idle_baseline_s = 0.5
"#;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Sweep the simulated device with `profile` into `dir/<profile>.jsonl`.
fn sweep(dir: &Path, profile: &str) -> PathBuf {
    let cfg = dir.join("cfg.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let out = dir.join(format!("{profile}.jsonl"));
    ok(&[
        "sweep",
        "--backend",
        "sim",
        "--sim-profile",
        profile,
        "--config",
        s(&cfg),
        "--out",
        s(&out),
    ]);
    out
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

/// A copy of a simulated results file that claims to be a real GPU's.
fn fake_real(src: &Path, dst: &Path) {
    let body: String = lines(src)
        .iter()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["simulated"] = false.into();
            v["device"]["simulated"] = false.into();
            v["device"]["name"] = "Real GPU".into();
            v["device"]["uuid"] = "GPU-real".into();
            format!("{v}\n")
        })
        .collect();
    std::fs::write(dst, body).unwrap();
}

fn assert_plot_files(dir: &Path, expect_at_least: usize) -> Vec<PathBuf> {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let pngs: Vec<&PathBuf> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    let svgs: Vec<&PathBuf> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "svg"))
        .collect();
    assert!(
        pngs.len() >= expect_at_least && pngs.len() == svgs.len(),
        "{files:?}"
    );
    for p in pngs {
        let b = std::fs::read(p).unwrap();
        assert!(
            b.len() > 5000 && &b[1..4] == b"PNG",
            "{} is not a drawn PNG",
            p.display()
        );
    }
    for p in svgs {
        let t = std::fs::read_to_string(p).unwrap();
        assert!(
            t.contains("<svg") && t.contains("SIMULATED DATA"),
            "{}",
            p.display()
        );
    }
    files
}

#[test]
fn compare_ranks_two_simulated_devices_with_cost_carbon_and_plots() {
    let dir = tempfile::tempdir().unwrap();
    let h100 = sweep(dir.path(), "sim-h100");
    let a100 = sweep(dir.path(), "sim-a100");
    let t = ok(&["compare", s(&h100), s(&a100)]);
    assert!(
        t.contains("sim-h100 (simulated)") && t.contains("sim-a100 (simulated)"),
        "{t}"
    );
    assert!(
        t.contains("SIMULATED DATA") && t.contains("default power limit"),
        "{t}"
    );

    let o = run(&[
        "compare",
        s(&h100),
        s(&a100),
        "--format",
        "csv",
        "--price-per-kwh",
        "0.20",
        "--currency",
        "EUR",
        "--grid-gco2-per-kwh",
        "300",
        "--pue",
        "1.1",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let csv = String::from_utf8(o.stdout).unwrap();
    let mut rows = csv
        .lines()
        .map(|l| l.split(',').map(String::from).collect::<Vec<_>>());
    let header = rows.next().unwrap();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("{name} in {header:?}"))
    };
    let rows: Vec<Vec<String>> = rows.collect();
    // one row per device in each workload × precision, rank 1 the least energy
    assert_eq!(rows.len(), 2 * 2 * 2, "{csv}");
    for pair in rows.chunks(2) {
        assert_eq!(
            (pair[0][col("rank")].as_str(), pair[1][col("rank")].as_str()),
            ("1", "2")
        );
        let e = |r: &Vec<String>| r[col("energy (pJ/FLOP)")].parse::<f64>().unwrap();
        assert!(e(&pair[0]) <= e(&pair[1]));
        assert!(pair
            .iter()
            .all(|r| r[col("setting")].starts_with("default")));
        for r in pair {
            // kWh per 10¹⁸ FLOP = pJ/FLOP × 10⁻¹² × 10¹⁸ / 3.6×10⁶ × PUE; cost and CO₂e follow
            let kwh = r[col("energy at PUE 1.10 (kWh per 10¹⁸ FLOP)")]
                .parse::<f64>()
                .unwrap();
            assert!((kwh - e(r) * 1e6 / 3.6e6 * 1.1).abs() / kwh < 0.01, "{r:?}");
            let cost = r[col("cost (EUR per 10¹⁸ FLOP)")].parse::<f64>().unwrap();
            assert!((cost - kwh * 0.20).abs() / cost < 0.01, "{r:?}");
            let kg = r[col("CO₂e (kg per 10¹⁸ FLOP)")].parse::<f64>().unwrap();
            assert!((kg - kwh * 0.300).abs() / kg < 0.01, "{r:?}");
            assert!(r[col("throughput (TFLOP/s)")].parse::<f64>().unwrap() > 0.0);
        }
        // what the table leaves out: a committee's 13 columns, not 17
        assert!(!header.iter().any(|h| h == "efficiency (GFLOP/J)"));
    }

    // --cap any lets a capped setting win where it costs less energy
    let any = ok(&[
        "compare",
        s(&h100),
        s(&a100),
        "--cap",
        "any",
        "--format",
        "csv",
    ]);
    assert!(any.contains("70%"), "{any}");

    let plots = dir.path().join("cmp-plots");
    ok(&["compare", s(&h100), s(&a100), "--plots", s(&plots)]);
    assert_plot_files(&plots, 2);
    refused(
        &[
            "compare",
            s(&h100),
            "--price-per-kwh=-1",
            "--currency",
            "USD",
        ],
        "--price-per-kwh",
    );
    // a cost is never shown without its currency
    refused(
        &["compare", s(&h100), "--price-per-kwh", "0.2"],
        "--currency",
    );
    refused(&["compare", s(&h100), "--pue", "0.8"], "--pue");
}

/// The committed H200 records, as a reviewer reports them.
fn h200_files() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("results/h200-2026-11-29");
    ["h200-energy.jsonl", "h200-wgpu.jsonl", "h200-meter.jsonl"]
        .iter()
        .map(|f| dir.join(f).display().to_string())
        .collect()
}

#[test]
fn the_report_of_the_h200_records_prices_them_and_names_the_driver() {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("review.md");
    let mut args: Vec<String> = vec!["report".into()];
    args.extend(h200_files());
    args.extend(
        [
            "--format",
            "markdown",
            "--price-per-kwh",
            "0.12",
            "--currency",
            "USD",
            "--grid-gco2-per-kwh",
            "380",
            "--pue",
            "1.25",
            "--out",
            s(&md),
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&args);
    let doc = std::fs::read_to_string(&md).unwrap();
    for part in [
        "| 580.159.04 (CUDA 13.0) |",
        "## Cost and carbon",
        "energy at PUE 1.25 (kWh per 10¹⁸ FLOP)",
        "cost (USD per 10¹⁸ FLOP)",
        "CO₂e (kg per 10¹⁸ FLOP)",
        "throughput (TFLOP/s)",
        "joulebench sweep --backend cuda --config h200-energy.toml --out h200-energy.jsonl",
    ] {
        assert!(doc.contains(part), "missing {part:?}");
    }
    assert!(
        !doc.contains("for (CUDA"),
        "the old driver reading is shown"
    );
    // the cost row of the fp8 GEMM: 0.608 pJ/FLOP → 0.1689 kWh × 1.25 = 0.211 kWh,
    // × 0.12 USD = 0.0253 USD, × 380 g = 0.0802 kg
    let row = doc
        .lines()
        .find(|l| {
            l.contains("matmul 8192x8192x8192") && l.contains("cublaslt-fp8") && l.contains("0.211")
        })
        .unwrap_or_else(|| panic!("no fp8 cost row in {doc}"));
    assert!(row.contains("0.0253") && row.contains("0.0802"), "{row}");
}

#[test]
fn the_report_gives_energy_per_token_where_model_records_are() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("results/sim/model-llama3-8b.jsonl");
    let t = ok(&[
        "report",
        s(&file),
        "--format",
        "markdown",
        "--price-per-kwh",
        "0.12",
        "--currency",
        "USD",
    ]);
    assert!(t.contains("Energy per token of a training step"), "{t}");
    assert!(t.contains("cost (USD per 10⁶ tokens)"), "{t}");
    // the fp8 step composed as `model` composed it: within the 1% noise floor of the
    // figure `model` wrote to the committed settings file (the report takes each
    // precision's least-energy setting, `model` the least within 10% of the fastest)
    let settings: toml::Value =
        toml::from_str(&std::fs::read_to_string(file.with_extension("toml")).unwrap()).unwrap();
    let chosen_mj = settings["model"]["llama3-8b"][0]["energy_j_per_token"]
        .as_float()
        .unwrap()
        * 1e3;
    let row = t
        .lines()
        .find(|l| l.starts_with("| llama3-8b") && l.contains("fp8-e4m3"))
        .unwrap_or_else(|| panic!("no fp8 per-token row in {t}"));
    let energy_col = t
        .lines()
        .find(|l| l.starts_with("| model") && l.contains("energy (mJ/token)"))
        .and_then(|h| h.split('|').position(|c| c.trim() == "energy (mJ/token)"))
        .unwrap();
    let mj: f64 = row
        .split('|')
        .nth(energy_col)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        (mj - chosen_mj).abs() / chosen_mj < 0.01,
        "{mj} mJ/token in the report, {chosen_mj} in the settings file"
    );
    refused(&["report", s(&file), "--model", "no-such-model"], "--model");
}

/// A copy of `src` whose record `index` used `factor` × the energy per FLOP.
fn scaled(src: &Path, dst: &Path, index: usize, factor: f64) {
    let body: String = lines(src)
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            if i == index {
                // every energy and power figure of the measurement, so the record stays
                // whole (readers cross-check its summary against its windows)
                scale_energy(&mut v["measurement"], factor);
            }
            format!("{v}\n")
        })
        .collect();
    std::fs::write(dst, body).unwrap();
}

/// Every number under a key naming joules or average power, `factor` times.
fn scale_energy(v: &mut serde_json::Value, factor: f64) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                let energy = k.contains("joules") || k == "average_w";
                match x {
                    serde_json::Value::Number(n) if energy => {
                        *x = (n.as_f64().unwrap() * factor).into();
                    }
                    serde_json::Value::Object(inner) if energy => {
                        for y in inner.values_mut() {
                            if let Some(f) = y.as_f64() {
                                *y = (f * factor).into();
                            }
                        }
                    }
                    _ => scale_energy(x, factor),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(|x| scale_energy(x, factor)),
        _ => {}
    }
}

#[test]
fn diff_puts_a_regression_first_and_fails_ci_only_beyond_the_threshold_and_noise() {
    let dir = tempfile::tempdir().unwrap();
    let old = Path::new(env!("CARGO_MANIFEST_DIR")).join("results/sim/sim-h200-quick.jsonl");
    // the first record's energy per FLOP up by 10%
    let new = dir.path().join("new.jsonl");
    scaled(&old, &new, 0, 1.10);
    let o = run(&["diff", s(&old), s(&new), "--format", "csv"]);
    assert!(o.status.success(), "{}", text(&o));
    let csv = String::from_utf8(o.stdout).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert!(rows[0].starts_with("status,"), "{csv}");
    assert!(
        rows[1].starts_with("REGRESSION,") && rows[1].contains("+10.0%"),
        "{csv}"
    );
    assert!(rows[2..].iter().all(|r| r.starts_with("same,")), "{csv}");

    // CI: a 10% regression fails a 2% gate with exit 1, passes a 20% one
    let o = run(&["diff", s(&old), s(&new), "--fail-on-regression", "2%"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("regressed by more than 2.0%"),
        "{}",
        text(&o)
    );
    let o = run(&["diff", s(&old), s(&new), "--fail-on-regression", "20%"]);
    assert!(o.status.success(), "{}", text(&o));
    // a run against itself: nothing changed, nothing fails
    let o = run(&["diff", s(&old), s(&old), "--fail-on-regression", "0"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("0 regressions"), "{}", text(&o));
    // less energy is an improvement, never a failure
    let better = dir.path().join("better.jsonl");
    scaled(&old, &better, 0, 0.8);
    let o = run(&["diff", s(&old), s(&better), "--fail-on-regression", "1%"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("improved"), "{}", text(&o));
    refused(
        &["diff", s(&old), s(&new), "--fail-on-regression", "x"],
        "--fail-on-regression",
    );
}

#[test]
fn merge_joins_drops_duplicates_and_refuses_what_it_must() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let h100 = sweep(d, "sim-h100");
    let a100 = sweep(d, "sim-a100");
    let (nh, na) = (lines(&h100).len(), lines(&a100).len());
    let out = d.join("all.jsonl");
    let t = ok(&["merge", s(&h100), s(&a100), s(&h100), "--out", s(&out)]);
    assert!(t.contains(&format!("{nh} exact duplicates dropped")), "{t}");
    // each record's line is copied as it was written
    assert_eq!(lines(&out), [lines(&h100), lines(&a100)].concat());
    // the merged file is a results file like any other
    let t = ok(&["compare", s(&out)]);
    assert!(t.contains("sim-a100 (simulated)"));

    // an existing --out is never overwritten without --force
    let before = std::fs::read(&out).unwrap();
    refused(&["merge", s(&h100), "--out", s(&out)], "already exists");
    assert_eq!(std::fs::read(&out).unwrap(), before);
    ok(&["merge", s(&h100), "--out", s(&out), "--force"]);
    assert_eq!(lines(&out).len(), nh);

    // another schema version: refused with its file and line
    let first = lines(&a100)[0].replacen("\"schema\":2", "\"schema\":7", 1);
    let foreign = d.join("v7.jsonl");
    std::fs::write(&foreign, format!("{}\n{first}\n", lines(&a100)[1])).unwrap();
    refused(
        &[
            "merge",
            s(&h100),
            s(&foreign),
            "--out",
            s(&d.join("x.jsonl")),
        ],
        "v7.jsonl:2",
    );

    // simulated and real: refused, explained, and allowed on request
    let real = d.join("real.jsonl");
    fake_real(&a100, &real);
    let mixed = d.join("mixed.jsonl");
    let t = refused(
        &["merge", s(&h100), s(&real), "--out", s(&mixed)],
        "--allow-mixed",
    );
    assert!(
        t.contains("simulated device") && t.contains("real.jsonl"),
        "{t}"
    );
    assert!(!mixed.exists());
    ok(&[
        "merge",
        s(&h100),
        s(&real),
        "--out",
        s(&mixed),
        "--allow-mixed",
    ]);
    assert_eq!(lines(&mixed).len(), nh + na);

    // compare refuses the mix too, and marks every simulated row when allowed
    refused(&["compare", s(&mixed)], "--allow-mixed");
    let o = run(&["compare", s(&mixed), "--allow-mixed", "--format", "csv"]);
    assert!(o.status.success(), "{}", text(&o));
    let csv = String::from_utf8(o.stdout).unwrap();
    let mut it = csv.lines();
    let header: Vec<&str> = it.next().unwrap().split(',').collect();
    let (dev, data) = (
        header.iter().position(|h| *h == "device").unwrap(),
        header.iter().position(|h| *h == "data").unwrap(),
    );
    let rows: Vec<Vec<&str>> = it.map(|l| l.split(',').collect()).collect();
    assert!(rows
        .iter()
        .any(|r| r[dev] == "Real GPU" && r[data] == "measured"));
    assert!(rows
        .iter()
        .filter(|r| r[dev].starts_with("sim-"))
        .all(|r| r[data] == "SIMULATED"));
    let t = ok(&["compare", s(&mixed), "--allow-mixed"]);
    assert!(t.contains("MIXED DATA"), "{t}");
}

#[test]
fn markdown_report_links_its_plots_relative_to_the_document() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let h100 = sweep(d, "sim-h100");
    let plots = d.join("plots");
    let md = d.join("docs").join("report.md");
    ok(&[
        "report",
        s(&h100),
        "--format",
        "markdown",
        "--plots",
        s(&plots),
        "--out",
        s(&md),
    ]);
    let files = assert_plot_files(&plots, 3);
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for kind in ["energy-time_", "energy-cap_", "energy-batch_"] {
        assert!(
            names.iter().any(|n| n.starts_with(kind)),
            "no {kind} plot in {names:?}"
        );
    }
    let doc = std::fs::read_to_string(&md).unwrap();
    for part in [
        "# joulebench report",
        "**SIMULATED DATA**",
        "### Devices",
        "### Measurement protocol",
        "### Recommended settings",
        "### Validity flags",
        "--sim-profile sim-h100",
        "](../plots/energy-time_",
    ] {
        assert!(doc.contains(part), "missing {part:?}");
    }
    // every linked file exists, resolved from the document's folder
    for link in doc.split("](").skip(1).map(|r| &r[..r.find(')').unwrap()]) {
        assert!(
            md.parent().unwrap().join(link).is_file(),
            "broken link {link}"
        );
    }
    let before = std::fs::read(&md).unwrap();
    refused(
        &["report", s(&h100), "--format", "markdown", "--out", s(&md)],
        "already exists",
    );
    assert_eq!(std::fs::read(&md).unwrap(), before);
}

#[test]
fn recommend_emits_a_settings_file_that_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let h100 = sweep(d, "sim-h100");
    let a100 = sweep(d, "sim-a100");
    let toml = d.join("settings.toml");
    let json = d.join("settings.json");
    ok(&[
        "recommend",
        s(&h100),
        s(&a100),
        "--objective",
        "least-energy",
        "--emit",
        "toml",
        s(&toml),
    ]);
    ok(&[
        "recommend",
        s(&h100),
        s(&a100),
        "--objective",
        "least-energy",
        "--emit",
        "json",
        s(&json),
    ]);
    let from_toml = SettingsFile::read(&toml).unwrap();
    let from_json = SettingsFile::read(&json).unwrap();
    assert_eq!(from_toml, from_json);
    assert_eq!(
        (from_toml.format.as_str(), from_toml.version),
        (SETTINGS_FORMAT, SETTINGS_VERSION)
    );
    assert_eq!(from_toml.objective, "least energy");
    assert!(from_toml.simulated);
    // two device models × two workloads
    assert_eq!(from_toml.settings.len(), 4);
    for st in &from_toml.settings {
        let expected_source = if st.device_model.starts_with("sim-h100") {
            &h100
        } else {
            &a100
        };
        assert_eq!(st.source, s(expected_source));
        assert!(st.simulated && st.energy_pj_per_flop > 0.0 && st.batch_size >= 1);
        assert!(
            ["default", "70%"].contains(&st.power_cap.as_str()),
            "{st:?}"
        );
        // the baseline (same kernel, precision, batch at the default cap) was a
        // candidate, so least energy can only save against it
        assert!(st.energy_saved_fraction.is_some_and(|f| f >= 0.0), "{st:?}");
    }
    let raw = std::fs::read_to_string(&toml).unwrap();
    assert!(
        raw.starts_with("# joulebench settings") && raw.contains("[[setting]]"),
        "{raw}"
    );

    // every objective is selectable and says which it was
    for (objective, extra, described) in [
        ("within-slowdown", "--max-slowdown=5%", "within 5%"),
        // (--eta is Zeus's: with another objective it is refused, not ignored)
        ("energy-delay", "--noise-floor=1%", "energy × delay"),
        ("zeus", "--eta=0.3", "η = 0.3"),
    ] {
        let f = d.join(format!("{objective}.json"));
        ok(&[
            "recommend",
            s(&h100),
            "--objective",
            objective,
            extra,
            "--emit",
            "json",
            s(&f),
        ]);
        let back = SettingsFile::read(&f).unwrap();
        assert!(
            back.objective.contains(described),
            "{objective}: {}",
            back.objective
        );
    }

    refused(
        &[
            "recommend",
            s(&h100),
            "--emit",
            "yaml",
            s(&d.join("s.yaml")),
        ],
        "unknown settings format",
    );
    let before = std::fs::read(&toml).unwrap();
    refused(
        &["recommend", s(&h100), "--emit", "toml", s(&toml)],
        "already exists",
    );
    assert_eq!(std::fs::read(&toml).unwrap(), before);
    ok(&["recommend", s(&h100), "--emit", "toml", s(&toml), "--force"]);
}

#[test]
fn the_documented_settings_example_is_a_valid_settings_file() {
    let readme = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/settings-file.md"),
    )
    .unwrap();
    let section = &readme[readme
        .find("# Settings file for a training launcher")
        .expect("docs/settings-file.md's title")..];
    let start = section.find("```toml\n").expect("toml block") + "```toml\n".len();
    let example = &section[start..start + section[start..].find("```").unwrap()];
    let parsed = SettingsFile::parse(
        example,
        joulebench_analysis::settings_file::SettingsFormat::Toml,
        Path::new("docs/settings-file.md"),
    )
    .unwrap();
    assert_eq!(parsed.settings.len(), 1);
    assert_eq!(parsed.settings[0].power_cap_w, Some(560.0));
}

#[test]
fn merge_and_compare_explain_their_flags() {
    for (cmd, flags) in [
        ("merge", &["--out", "--allow-mixed", "--force"][..]),
        (
            "compare",
            &[
                "--cap",
                "--price-per-kwh",
                "--currency",
                "--grid-gco2-per-kwh",
                "--pue",
                "--allow-mixed",
                "--plots",
            ][..],
        ),
        (
            "report",
            &["--price-per-kwh", "--currency", "--pue", "--model"][..],
        ),
        ("diff", &["--fail-on-regression", "--allow-mixed"][..]),
    ] {
        let o = run(&[cmd, "--help"]);
        assert!(o.status.success());
        let help = String::from_utf8_lossy(&o.stdout);
        for f in flags {
            assert!(help.contains(f), "{cmd} --help lacks {f}:\n{help}");
        }
    }
}
