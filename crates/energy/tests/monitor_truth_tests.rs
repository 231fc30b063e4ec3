//! `EnergyMonitor`'s error against the simulated H200's true energy, by window
//! length: windows of 0.1 s, 1 s and 10 s of a bf16 GEMM at the power limit, each
//! after an idle rest (as the user's own code runs them: the monitor cannot keep
//! the device busy across the counter's updates), on four boards. docs/kernel-developers.md quotes
//! every figure, and the monitor's bound — the shortest window it trusts — is
//! where the worst error falls under 1%.

#[path = "common/sim_truth.rs"]
mod sim_truth;

use joulebench_core::{Backend, Clock, MatmulShape, Precision, ValidityFlag, Workload};
use joulebench_energy::monitor::{EnergyMonitor, MONITOR_MIN_COUNTER_UPDATES};
use joulebench_energy::sim::SimDevice;
use sim_truth::{median, pct, preheat};
use std::time::Duration;

/// Each window's error (measured energy against the board's true energy × its
/// gain), and whether the monitor trusted it, for `n` windows of `length_s` on
/// board `seed`.
fn windows(length_s: f64, n: usize, seed: u64, wait: bool) -> Vec<(f64, bool)> {
    let mut dev = SimDevice::open("sim-h200", 0, seed).unwrap();
    let truth = dev.truth();
    let clock = dev.clock.clone();
    let w = Workload::Matmul(MatmulShape {
        batch: 1,
        m: 8192,
        n: 8192,
        k: 8192,
    });
    let mut k = dev
        .backend
        .prepare("sim-vendor", Precision::Bf16, &w, 1)
        .unwrap();
    preheat(k.as_mut(), 60.0);
    truth.start_trace();
    let gain = truth.counter_gain();
    let mut monitor = EnergyMonitor::new(Box::new(dev.meter), clock.clone());
    monitor.set_wait_for_update(wait);
    let seconds_per_op = k.run(10).unwrap().device_s.unwrap() / 10.0;
    let iterations = (length_s / seconds_per_op).round().max(1.0) as u64;
    (0..n)
        .map(|i| {
            // rests of half a second and a little more each time: the work starts at
            // every phase of the counter's period
            clock.sleep(Duration::from_secs_f64(0.5 + 0.0173 * i as f64));
            monitor.begin_window("step").unwrap();
            let begin = clock.now_s();
            let mut left = iterations;
            while left > 0 {
                let b = left.min(200);
                k.run(b).unwrap();
                left -= b;
            }
            let end = clock.now_s();
            let m = monitor.end_window("step").unwrap();
            let t = truth.between(begin, end).unwrap();
            (m.joules.unwrap() / (t.energy_j * gain) - 1.0, m.trustworthy)
        })
        .collect()
}

fn worst(v: &[f64]) -> f64 {
    v.iter()
        .cloned()
        .fold(0.0, |a: f64, e| if e.abs() > a.abs() { e } else { a })
}

/// Errors of every window of `length_s` on four boards.
fn errors(length_s: f64, wait: bool) -> (Vec<f64>, Vec<bool>) {
    let n = if length_s >= 10.0 { 6 } else { 24 };
    (1..=4)
        .flat_map(|seed| windows(length_s, n, seed, wait))
        .unzip()
}

fn readme_row(cells: &[&str]) {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/kernel-developers.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let row = format!("| {} |", cells.join(" | "));
    assert!(
        readme.contains(&row),
        "docs/kernel-developers.md should quote this test's figure; put this in its EnergyMonitor section:\n{row}"
    );
}

#[test]
fn energy_monitor_error_by_window_length_and_its_bound() {
    // SAFEGUARD_OFF=wait-for-update: the end extrapolated from the last update
    let wait = std::env::var("SAFEGUARD_OFF").as_deref() != Ok("wait-for-update");
    let bound_s = 0.1 * MONITOR_MIN_COUNTER_UPDATES as f64;
    let mut rows = Vec::new();
    for length_s in [0.1, 1.0, 10.0] {
        let (on, trusted) = errors(length_s, wait);
        let (off, _) = errors(length_s, false);
        let median_abs = |v: &[f64]| median(v.iter().map(|e| e.abs()).collect());
        eprintln!(
            "{length_s} s windows: median {} worst {}; ending without waiting: median {} worst {}",
            pct(median(on.clone())),
            pct(worst(&on)),
            pct(median(off.clone())),
            pct(worst(&off))
        );
        // the flag follows the bound
        assert!(
            trusted.iter().all(|&t| t == (length_s >= bound_s)),
            "{length_s} s against a bound of {bound_s} s"
        );
        if length_s >= bound_s {
            assert!(worst(&on).abs() < 0.01, "{}", pct(worst(&on)));
        } else {
            assert!(worst(&on).abs() > 0.01, "{}", pct(worst(&on)));
        }
        if length_s < 1.0 {
            // a short window's end guessed past the last update is far worse
            assert!(
                median_abs(&on) < 0.5 * median_abs(&off),
                "{} vs {}",
                pct(median(on.clone())),
                pct(median(off.clone()))
            );
        }
        rows.push([
            format!("{length_s} s"),
            pct(median(on.clone())),
            pct(worst(&on)),
            pct(median(off.clone())),
            if length_s >= bound_s {
                "trusted".to_string()
            } else {
                format!("`{}`", ValidityFlag::ShortWindow.name())
            },
        ]);
    }
    for row in &rows {
        eprintln!("| {} |", row.join(" | "));
    }
    for row in &rows {
        readme_row(&row.iter().map(String::as_str).collect::<Vec<_>>());
    }
}
