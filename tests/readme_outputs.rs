//! The outputs README and docs/ show are the code's. README's first recommendation is
//! what its two commands print on the simulated device; `cargo bench` and `joulebench
//! sweep` measure the same simulated point within 1% of each other; the `cargo bench`
//! output of docs/kernel-developers.md (from the command it names) is checked against
//! what the bench's code measures now, and its `EnergyMonitor` example output is the
//! example's, run here on the simulated device and compared line by line; the example
//! tables of docs/recommend.md are what `recommend` prints from the committed records.

#[path = "../benches/common/mod.rs"]
#[allow(dead_code)]
mod common;

#[path = "../examples/energy_window.rs"]
mod energy_window;

use joulebench_core::protocol::summarize;
use joulebench_core::record::Record;
use joulebench_core::{MatmulShape, Precision, Window, Workload};
use joulebench_criterion::{EnergyBench, WindowConfig};
use joulebench_device::{open, BackendKind, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A document of the repository: `README.md`, `docs/…`.
fn doc(name: &str) -> String {
    std::fs::read_to_string(root().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The fenced block of a document that follows the line containing `marker`.
fn block_after(text: &str, marker: &str) -> String {
    let at = text
        .find(marker)
        .unwrap_or_else(|| panic!("no line with {marker:?}"));
    let rest = &text[at..];
    let start = rest.find("\n```").expect("a fenced block follows") + 4;
    let start = start + rest[start..].find('\n').expect("the fence's line ends") + 1;
    let end = rest[start..].find("\n```").expect("the block ends") + start;
    rest[start..end].to_string()
}

/// The part of a document under `heading`, up to the next heading of its level or above.
fn section<'a>(text: &'a str, heading: &str) -> &'a str {
    let level = heading.chars().take_while(|&c| c == '#').count();
    let at = text
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("no heading {heading:?}"))
        + 1;
    let body = &text[at + heading.len()..];
    let end = body
        .lines()
        .scan(0, |pos, l| {
            let here = *pos;
            *pos += l.len() + 1;
            Some((here, l))
        })
        .find(|(_, l)| {
            let h = l.chars().take_while(|&c| c == '#').count();
            h > 0 && h <= level && l[h..].starts_with(' ')
        })
        .map_or(body.len(), |(p, _)| p);
    &text[at..at + heading.len() + end]
}

/// The joulebench binary, run in `dir`.
fn jb(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_joulebench"));
    c.current_dir(dir);
    c
}

fn stdout_of(c: &mut Command) -> String {
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// Every line `shown` quotes is a line `printed` has, in the same order; a line `…`
/// stands for lines left out.
fn assert_excerpt(shown: &str, printed: &str, what: &str) {
    let mut lines = printed.lines().map(str::trim_end);
    let mut n = 0;
    for want in shown.lines().map(str::trim_end) {
        if want == "…" || want.is_empty() {
            continue;
        }
        n += 1;
        assert!(
            lines.any(|l| l == want),
            "{what} shows a line the command does not print (or not in this order):\n{want}\n\nprinted:\n{printed}"
        );
    }
    assert!(n >= 3, "{what}: only {n} lines compared");
}

const SHAPE: u64 = 4096;

fn workload() -> Workload {
    Workload::Matmul(MatmulShape {
        batch: 1,
        m: SHAPE,
        n: SHAPE,
        k: SHAPE,
    })
}

/// The point as `cargo bench` measures it (benches/common: the simulated device
/// opened with the bench's seed, `EnergyBench` with the protocol's defaults,
/// calibration and warm-up, then criterion's samples — a warm-up window and ten
/// sample windows).
fn bench_windows() -> (Vec<Window>, Vec<f64>, EnergyBench) {
    let dev = open(&OpenOptions {
        seed: 42,
        ..OpenOptions::new(BackendKind::Sim)
    })
    .unwrap();
    let mut backend = dev.backend;
    let mut bench = EnergyBench::new(dev.meter, dev.clock, WindowConfig::default());
    let mut k = backend
        .prepare("sim-vendor", Precision::Bf16, &workload(), 42)
        .unwrap();
    let mut run = |n: u64| k.run(n);
    let cal = bench.calibrate(&mut run).unwrap();
    // criterion's time group, then the energy group's warm-up and samples
    let mut device_s = Vec::new();
    for _ in 0..10 {
        device_s.push(
            bench
                .device_time(1000, &cal, &mut run)
                .unwrap()
                .as_secs_f64()
                / 1000.0,
        );
    }
    for _ in 0..11 {
        bench.joules(1, &cal, &mut run).unwrap();
    }
    let windows = bench.take_windows();
    drop(k);
    (windows, device_s, bench)
}

/// The point as `joulebench sweep` measures it: the CLI on the simulated device.
fn sweep_record(dir: &Path) -> Record {
    let config = dir.join("point.toml");
    std::fs::write(
        &config,
        format!(
            "ops = [\"matmul\"]\nkernels = [\"sim-vendor\"]\nprecisions = [\"bf16\"]\n\
             power_caps = [\"default\"]\nbatch_sizes = [1]\n\n[[matmul]]\nm = {SHAPE}\nn = {SHAPE}\nk = {SHAPE}\n"
        ),
    )
    .unwrap();
    let out = dir.join("point.jsonl");
    let status = Command::new(env!("CARGO_BIN_EXE_joulebench"))
        .args(["sweep", "--backend", "sim", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let text = std::fs::read_to_string(&out).unwrap();
    let records: Vec<Record> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 1, "{text}");
    records.into_iter().next().unwrap()
}

#[test]
fn cargo_bench_and_sweep_agree_within_one_percent_on_the_same_simulated_point() {
    let dir = tempfile::tempdir().unwrap();
    let record = sweep_record(dir.path());
    let swept = record.measurement.as_ref().unwrap().summary.clone();
    let (windows, _, _) = bench_windows();
    let flop = workload().flop().unwrap();
    let benched = summarize(&windows, flop, None);
    let pj = |s: &joulebench_core::protocol::Summary| s.picojoules_per_flop().unwrap();
    let rel = |a: f64, b: f64| a / b - 1.0;
    eprintln!(
        "sim-vendor bf16 {SHAPE}³ on sim-h200 (simulated): cargo bench {:.4} pJ/FLOP, {:.1} TFLOP/s, {:.1} W; sweep {:.4} pJ/FLOP, {:.1} TFLOP/s, {:.1} W",
        pj(&benched),
        benched.tflops,
        benched.average_w.unwrap(),
        pj(&swept),
        swept.tflops,
        swept.average_w.unwrap()
    );
    assert!(rel(pj(&benched), pj(&swept)).abs() < 0.01);
    let flat = doc("docs/kernel-developers.md")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let quoted = format!(
        "(simulated: {:.4} pJ/FLOP from the bench's code, {:.4} from `joulebench sweep`)",
        pj(&benched),
        pj(&swept)
    );
    assert!(
        flat.contains(&quoted),
        "docs/kernel-developers.md should quote: {quoted}"
    );
    assert!(rel(benched.tflops, swept.tflops).abs() < 0.01);
    assert!(rel(benched.average_w.unwrap(), swept.average_w.unwrap()).abs() < 0.01);
    // one time base in each: the energy per op is the power over the op's time
    for s in [&benched, &swept] {
        let j = s.joules_per_op.unwrap().median;
        assert!(rel(j / s.seconds_per_op.median, s.average_w.unwrap()).abs() < 0.005);
    }
}

/// The numbers of a line, in order.
fn numbers(line: &str) -> Vec<f64> {
    line.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter_map(|w| w.trim_matches('.').parse().ok())
        .collect()
}

fn close(quoted: f64, now: f64, what: &str) {
    assert!(
        (quoted / now - 1.0).abs() < 0.01,
        "docs/kernel-developers.md's cargo bench output says {what} {quoted}; the code measures {now} now: regenerate it with the command it names"
    );
}

#[test]
fn the_documented_cargo_bench_output_is_what_the_bench_measures_now() {
    let text = block_after(
        &doc("docs/kernel-developers.md"),
        "JOULEBENCH_BENCH_SIZES=4096 cargo bench --bench matmul`:",
    );
    let (windows, device_s, bench) = bench_windows();
    let flop = workload().flop().unwrap();
    let s = summarize(&windows, flop, None);
    let lines: Vec<&str> = text.lines().collect();
    let after = |title: &str, field: &str| -> Vec<f64> {
        let i = lines
            .iter()
            .position(|l| l.trim() == title)
            .unwrap_or_else(|| panic!("the documented bench output has no {title}"));
        numbers(
            lines[i + 1..]
                .iter()
                .find(|l| l.trim_start().starts_with(field))
                .unwrap(),
        )
    };
    let name = format!("sim-vendor/bf16/{SHAPE}x{SHAPE}x{SHAPE}");
    // criterion's device-time group: seconds per op (µs), and FLOP/s as elem/s
    let t = after(&format!("matmul/sim/device-time/{name}"), "time:");
    let device = joulebench_core::stats::median(&device_s);
    close(t[1] * 1e-6, device, "device time per op");
    let thrpt = after(&format!("matmul/sim/device-time/{name}"), "thrpt:");
    close(thrpt[1] * 1e9, flop as f64 / device, "device FLOP/s");
    // the energy group: joules per op (mJ), and FLOP per joule
    let j = s.joules_per_op.unwrap().median;
    close(
        after(&format!("matmul/sim/energy/{name}"), "time:")[1] * 1e-3,
        j,
        "J per op",
    );
    close(
        after(&format!("matmul/sim/energy/{name}"), "thrpt:")[1] * 1e9,
        flop as f64 / j,
        "FLOP/J",
    );
    // the line the bench prints after the group, from the same windows
    let ours = common::windows_line(&windows, flop, &bench, true).unwrap();
    let quoted = lines
        .iter()
        .find(|l| l.contains(&format!("sim/{name}:")))
        .expect("the docs show the bench's summary line");
    let (q, o) = (numbers(quoted), numbers(&ours));
    // the numbers after the case's name: pJ/FLOP, TFLOP/s, W, seconds, device TFLOP/s
    let (q, o) = (&q[q.len() - 5..], &o[o.len() - 5..]);
    for (what, (a, b)) in ["pJ/FLOP", "TFLOP/s", "W", "window s", "device TFLOP/s"]
        .iter()
        .zip(q.iter().zip(o))
    {
        close(*a, *b, what);
    }
    assert!(quoted.ends_with("[simulated]"), "{quoted}");
    // the lavapipe block names the groups and lines the bench prints
    let lavapipe = block_after(
        &doc("docs/kernel-developers.md"),
        "and on lavapipe, which has no meter",
    );
    assert!(lavapipe.contains("matmul/wgpu/device-time/wgsl-tiled/f32/256x256x256"));
    assert!(lavapipe.contains("wgpu/wgsl-tiled/f32/256x256x256: device-time only; no energy meter"));
    // the device's header lines are the bench's own words
    assert!(text.contains(
        "energy: simulated meter, updates every 100 ms; windows of at least 1.00 s of virtual time"
    ));
}

#[test]
fn the_documented_energy_monitor_output_is_the_examples() {
    let quoted = block_after(
        &doc("docs/kernel-developers.md"),
        "cargo run --release --example energy_window -- sim` prints",
    );
    let mut out = Vec::new();
    energy_window::run(BackendKind::Sim, &mut out).unwrap();
    let now = String::from_utf8(out).unwrap();
    assert_eq!(
        quoted.trim_end(),
        now.trim_end(),
        "docs/kernel-developers.md's EnergyMonitor output is not the example's: regenerate it with `cargo run --release --example energy_window -- sim`"
    );
}

#[test]
fn run_to_run_spread_beside_within_run_spread_on_the_imperfect_simulator() {
    use joulebench_analysis::repeats::{group_settings, RunSpread};
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("repeats.toml");
    // the reference preset's repeat, on four settings of one shape
    std::fs::write(
        &config,
        format!(
            "ops = [\"matmul\"]\nkernels = [\"sim-vendor\", \"sim-ours\"]\nprecisions = [\"bf16\", \"f32\"]\n\
             power_caps = [\"default\"]\nbatch_sizes = [1]\nrepeat = {}\n\n[[matmul]]\nm = 8192\nn = 8192\nk = 8192\n",
            joulebench_core::plan::STANDARD_REPEAT
        ),
    )
    .unwrap();
    let out = dir.path().join("repeats.jsonl");
    let run = Command::new(env!("CARGO_BIN_EXE_joulebench"))
        .args(["sweep", "--backend", "sim", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let records: Vec<Record> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let protocol = doc("docs/protocol.md");
    let mut rows = Vec::new();
    for group in group_settings(&records) {
        let runs: Vec<&Record> = group.iter().map(|&i| &records[i]).collect();
        assert_eq!(runs.len(), joulebench_core::plan::STANDARD_REPEAT as usize);
        let spread = RunSpread::of(&runs).unwrap();
        let r = runs[0];
        let row = format!(
            "| {} {} 8192³, {} runs | {:.1}% | {:.1}% |",
            r.kernel,
            r.precision,
            runs.len(),
            100.0 * spread.within_run,
            100.0 * spread.run_to_run.unwrap()
        );
        eprintln!("{row}");
        rows.push(row);
    }
    for row in &rows {
        assert!(
            protocol.contains(row),
            "docs/protocol.md should quote this row of run-to-run against within-run spread:\n{row}"
        );
    }
}

/// README's first screen: the two commands it gives a newcomer, run here as written
/// (on the simulated device, in virtual time: about two seconds), print the table it
/// shows.
#[test]
fn readme_first_recommendation_is_what_its_two_commands_print() {
    let readme = doc("README.md");
    let commands = block_after(&readme, "## A first recommendation, no GPU needed");
    let shown = block_after(&readme, "<!-- first-recommendation -->");
    let dir = tempfile::tempdir().unwrap();
    let mut printed = String::new();
    let mut ran = 0;
    for line in commands.lines() {
        let line = line.split('#').next().unwrap().trim();
        let Some(args) = line.strip_prefix("joulebench ") else {
            continue;
        };
        printed = stdout_of(jb(dir.path()).args(args.split_whitespace()));
        ran += 1;
    }
    assert_eq!(
        ran, 2,
        "README's first screen has two commands:\n{commands}"
    );
    assert_excerpt(&shown, &printed, "README's first recommendation");
    // the committed records of the same command (docs/recommend.md's simulated
    // example) are what a sweep gives now
    let committed = stdout_of(jb(&root()).args(["recommend", "results/sim/sim-h200-quick.jsonl"]));
    assert_eq!(
        committed.replace("results/sim/sim-h200-quick.jsonl", "q.jsonl"),
        printed,
        "results/sim/sim-h200-quick.jsonl is not what its command gives now"
    );
    assert!(shown.contains("SIMULATED DATA"), "{shown}");
}

/// docs/kernel-developers.md's table names every variable that narrows a bench.
#[test]
fn every_bench_variable_is_documented() {
    let text = doc("docs/kernel-developers.md");
    for var in [
        common::ENV_BACKENDS,
        common::ENV_KERNELS,
        common::ENV_PRECISIONS,
        common::ENV_SIZES,
        common::ENV_SIM_PROFILE,
        common::ENV_MIN_WINDOW_S,
    ] {
        assert!(
            text.contains(&format!("| `{var}` |")),
            "docs/kernel-developers.md's table of variables lacks {var}"
        );
    }
}

/// The example tables of docs/recommend.md are what `recommend` prints from the
/// committed records, by the command each example names.
#[test]
fn the_recommendation_examples_are_what_the_committed_records_give() {
    let text = doc("docs/recommend.md");
    for heading in ["## Example: an NVIDIA H200", "## Example (simulated)"] {
        let part = section(&text, heading);
        let commands = block_after(part, heading);
        let command = commands
            .lines()
            .rev()
            .find(|l| l.starts_with("joulebench recommend "))
            .unwrap_or_else(|| panic!("{heading}: no recommend command"));
        let printed = stdout_of(
            jb(&root()).args(
                command
                    .strip_prefix("joulebench ")
                    .unwrap()
                    .split_whitespace(),
            ),
        );
        let shown: String = part
            .lines()
            .filter(|l| l.starts_with('|') || l.starts_with("> "))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(shown.lines().count() > 10, "{heading}: {shown}");
        assert_excerpt(&shown, &printed, heading);
    }
}

/// A figure with three significant digits, as the docs' tables write them.
fn sig3(x: f64) -> String {
    match x.abs() {
        a if a >= 100.0 => format!("{x:.0}"),
        a if a >= 10.0 => format!("{x:.1}"),
        a if a >= 1.0 => format!("{x:.2}"),
        _ => format!("{x:.3}"),
    }
}

/// The input-distribution table of docs/simulated-device.md, and the sentence under
/// it, are what the committed records of its sweep hold.
#[test]
fn the_input_data_table_is_what_its_committed_records_hold() {
    let text = doc("docs/simulated-device.md");
    let part = section(&text, "## Input data (simulated)");
    let records: Vec<serde_json::Value> = doc("results/sim/sim-h200-inputs.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // (pJ/FLOP, TFLOP/s, W) of the vendor GEMM at a precision, inputs and locked clock
    let point = |precision: &str, inputs: &str, locked: bool| -> (f64, f64, f64) {
        let r = records
            .iter()
            .find(|r| {
                r["kernel"] == "sim-vendor"
                    && r["precision"] == precision
                    && r["inputs"] == inputs
                    && r["clocks"]["sm_requested_mhz"].is_null() != locked
            })
            .unwrap_or_else(|| panic!("no record of {precision} {inputs} locked={locked}"));
        let s = &r["measurement"]["summary"];
        (
            s["joules_per_flop"]["median"].as_f64().unwrap() * 1e12,
            s["tflops"].as_f64().unwrap(),
            s["average_w"].as_f64().unwrap(),
        )
    };
    let mut rows = 0;
    for line in part
        .lines()
        .filter(|l| l.starts_with("| bf16") || l.starts_with("| fp8"))
    {
        let label = line.split('|').nth(1).unwrap().trim();
        let (precision, inputs) = label.split_once(", ").unwrap();
        let precision = if precision == "fp8" {
            "fp8-e4m3"
        } else {
            precision
        };
        // "sparse (50% zeros)" is the sweep's "sparse:50%"
        let inputs = match inputs.split(' ').next().unwrap() {
            "sparse" => "sparse:50%",
            other => other,
        };
        let (e, t, _) = point(precision, inputs, false);
        let (e_locked, _, w_locked) = point(precision, inputs, true);
        let row = format!(
            "| {label} | {}, {t:.0} | {}, {w_locked:.0} |",
            sig3(e),
            sig3(e_locked)
        );
        assert_eq!(line, row, "docs/simulated-device.md's input table");
        rows += 1;
    }
    assert_eq!(rows, 6, "{part}");
    let (normal, zeros) = (
        point("bf16", "normal", false),
        point("bf16", "zeros", false),
    );
    let (normal_w, zeros_w) = (
        point("bf16", "normal", true).2,
        point("bf16", "zeros", true).2,
    );
    let sentence = format!(
        "zeros run {:.0}% faster at {:.0}% less energy per FLOP; at one clock, zeros draw {:.0}% less power",
        100.0 * (zeros.1 / normal.1 - 1.0),
        100.0 * (1.0 - zeros.0 / normal.0),
        100.0 * (1.0 - zeros_w / normal_w)
    );
    let flat = part.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains(&sentence),
        "docs/simulated-device.md should say: {sentence}"
    );
}

/// The rows docs/backends.md shows of a clock sweep are what `recommend` prints from
/// its committed records, under the two objectives its commands name.
#[test]
fn the_clock_example_is_what_recommend_prints_from_the_committed_records() {
    let text = doc("docs/backends.md");
    let part = section(&text, "## Locked clocks");
    let commands = block_after(part, "What `recommend` makes");
    let printed: Vec<String> = commands
        .lines()
        .filter_map(|l| l.strip_prefix("joulebench "))
        .map(|args| stdout_of(jb(&root()).args(args.split_whitespace())))
        .collect();
    assert_eq!(printed.len(), 2, "{commands}");
    let rows: Vec<&str> = part.lines().filter(|l| l.starts_with('|')).collect();
    assert_eq!(rows.len(), 4, "{part}");
    for row in rows {
        assert!(
            printed
                .iter()
                .any(|p| p.lines().any(|l| l.trim_end() == row)),
            "docs/backends.md shows a row recommend does not print:\n{row}"
        );
    }
}
