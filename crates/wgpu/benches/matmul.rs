//! wgsl-tiled against wgsl-naive matmul on the default adapter, square shapes in f32
//! and f16: criterion times device time (timestamp queries) where the adapter has
//! it, wall time around a full queue sync otherwise, and the speed-up of the tiled
//! kernel is printed as a ratio of the two measured means.
//!
//!     source scripts/test-env.sh && cargo bench -p joulebench-wgpu --bench matmul
//!
//! JOULEBENCH_BENCH_SIZES=256,512 picks the square sizes; JOULEBENCH_BENCH_VARIANTS=1
//! also times every tiled variant the adapter can run (for tuning the choice), by
//! criterion and then in rounds (each variant in turn, median of the rounds), which
//! is what to compare them by on a shared machine; JOULEBENCH_BENCH_NAIVE=0 leaves the
//! naive kernel (and the speed-ups) out.
//! Criterion's "elem/s" throughput is FLOP/s here. In criterion's test mode
//! (`cargo test --benches`) only a 64³ matmul runs, and the paired runs are short.

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use joulebench_core::verify::verify;
use joulebench_core::{Backend, MatmulShape, Precision, Workload};
use joulebench_criterion::criterion_test_mode;
use joulebench_wgpu::{KERNEL_NAIVE, KERNEL_TILED};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Duration;

/// Seconds and iterations measured per (precision, size, kernel).
type Totals = BTreeMap<(String, u64, &'static str), (f64, u64)>;

fn sizes() -> Vec<u64> {
    if criterion_test_mode() {
        return vec![64];
    }
    std::env::var("JOULEBENCH_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .filter(|v: &Vec<u64>| !v.is_empty())
        .unwrap_or_else(|| vec![256, 512, 1024])
}

fn main() {
    let mut backend = match joulebench_wgpu::open(None) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("skipped: {e}");
            return;
        }
    };
    let adapter = backend.adapter().summary();
    let clock = if backend.has_device_timer() {
        "device time (timestamp queries)"
    } else {
        "wall time (no timestamp queries on this adapter)"
    };
    eprintln!("adapter: {adapter}\ntiming: {clock}");
    let mut precisions = vec![Precision::F32];
    if backend.adapter().f16 {
        precisions.push(Precision::F16);
    }

    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let totals: RefCell<Totals> = RefCell::new(BTreeMap::new());
    for precision in &precisions {
        let mut group = c.benchmark_group(format!("wgpu-matmul-{precision}"));
        group.sampling_mode(SamplingMode::Flat);
        for &n in &sizes() {
            let w = Workload::Matmul(MatmulShape {
                batch: 1,
                m: n,
                n,
                k: n,
            });
            group.throughput(Throughput::Elements(w.flop().unwrap_or(0)));
            let mut runs: Vec<(&'static str, Option<String>)> =
                vec![(KERNEL_NAIVE, None), (KERNEL_TILED, None)];
            if !with_naive() {
                runs.remove(0);
            }
            if every_variant() {
                for v in backend.variants(KERNEL_TILED) {
                    runs.push((KERNEL_TILED, Some(v)));
                }
            }
            for (kernel, forced) in runs {
                let prepared =
                    backend.prepare_variant(kernel, *precision, &w, 42, forced.as_deref());
                let mut k = match prepared {
                    Ok(k) => k,
                    Err(e) => {
                        eprintln!("skipped {kernel} {precision} {w}: {e}");
                        continue;
                    }
                };
                // Never time a kernel that computes the wrong thing.
                match verify(k.as_mut(), &w, *precision, 7) {
                    Ok(v) if v.passed => {}
                    other => {
                        eprintln!("skipped {kernel} {precision} {w}: check failed: {other:?}");
                        continue;
                    }
                }
                let variant = k.variant().unwrap_or_default();
                let forced_mark = if forced.is_some() { " forced" } else { "" };
                let id = BenchmarkId::new(kernel, format!("{n}^3 {variant}{forced_mark}"));
                // The speed-up compares the variants the backend chooses by itself.
                let total_key = (precision.to_string(), n, kernel);
                let totals = if forced.is_none() {
                    Some(&totals)
                } else {
                    None
                };
                group.bench_function(id, |b| {
                    b.iter_custom(|iters| {
                        let seconds = match k.run(iters) {
                            Ok(t) => t.device_s.unwrap_or(t.wall_s),
                            Err(e) => {
                                eprintln!("{kernel} {precision} {w}: {e}");
                                f64::NAN
                            }
                        };
                        if let Some(totals) = totals {
                            let mut totals = totals.borrow_mut();
                            let entry = totals.entry(total_key.clone()).or_insert((0.0, 0));
                            entry.0 += seconds;
                            entry.1 += iters;
                        }
                        Duration::from_secs_f64(seconds.max(0.0))
                    })
                });
            }
        }
        group.finish();
    }
    c.final_summary();

    let totals = totals.into_inner();
    if every_variant() {
        variant_rounds(&mut backend, &precisions, &totals);
    }
    if !with_naive() {
        return;
    }
    eprintln!("\nspeed-up of {KERNEL_TILED} over {KERNEL_NAIVE} ({clock}, on {adapter}):");
    for precision in &precisions {
        for &n in &sizes() {
            let mean = |kernel| {
                totals
                    .get(&(precision.to_string(), n, kernel))
                    .map(|&(s, i)| s / i.max(1) as f64)
            };
            if let (Some(naive), Some(tiled)) = (mean(KERNEL_NAIVE), mean(KERNEL_TILED)) {
                let gflops = |s: f64| 2.0 * (n as f64).powi(3) / s / 1e9;
                eprintln!(
                    "  {precision} {n}x{n}x{n}: naive {:.3} ms ({:.1} GFLOP/s), tiled {:.3} ms \
                     ({:.1} GFLOP/s): {:.2}x",
                    naive * 1e3,
                    gflops(naive),
                    tiled * 1e3,
                    gflops(tiled),
                    naive / tiled
                );
            }
        }
    }

    // Criterion times one kernel after the other; on a shared machine (and lavapipe
    // shares the CPU with everything else) the load can change in between. Timing the
    // two alternately and taking the median of the per-pair ratios cancels that drift.
    eprintln!("\npaired speed-up (naive and tiled alternately, median of {PAIRS} pairs):");
    for precision in &precisions {
        for &n in &sizes() {
            let w = Workload::Matmul(MatmulShape {
                batch: 1,
                m: n,
                n,
                k: n,
            });
            match paired_speedup(&mut backend, *precision, &w, &totals) {
                Ok((median, low, high)) => eprintln!(
                    "  {precision} {n}x{n}x{n}: {median:.2}x (pairs from {low:.2}x to {high:.2}x)"
                ),
                Err(e) => eprintln!("  {precision} {n}x{n}x{n}: not measured: {e}"),
            }
        }
    }
}

const PAIRS: usize = 5;

fn every_variant() -> bool {
    std::env::var_os("JOULEBENCH_BENCH_VARIANTS").is_some()
}

fn with_naive() -> bool {
    std::env::var("JOULEBENCH_BENCH_NAIVE").as_deref() != Ok("0")
}

/// Every tiled variant timed in turn for about `pair_seconds()` each, `PAIRS` rounds;
/// per variant the median GFLOP/s and the median of its per-round ratio to the
/// variant the backend picks by itself.
fn variant_rounds(
    backend: &mut joulebench_wgpu::WgpuBackend,
    precisions: &[Precision],
    totals: &Totals,
) {
    let rounds = if criterion_test_mode() { 1 } else { PAIRS };
    eprintln!("\n{KERNEL_TILED} variants in turn (median of {rounds} rounds):");
    for &precision in precisions {
        for &n in &sizes() {
            let w = Workload::Matmul(MatmulShape {
                batch: 1,
                m: n,
                n,
                k: n,
            });
            let Some(&(secs, iters)) = totals.get(&(precision.to_string(), n, KERNEL_TILED)) else {
                continue;
            };
            let iterations = (pair_seconds() / (secs / iters.max(1) as f64))
                .ceil()
                .max(1.0) as u64;
            let mut names = vec![None];
            names.extend(backend.variants(KERNEL_TILED).into_iter().map(Some));
            // seconds per matmul, per round, per variant (index 0: the default)
            let mut times: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
            let mut labels: Vec<String> = vec![String::new(); names.len()];
            for _ in 0..rounds {
                for (i, name) in names.iter().enumerate() {
                    let Ok(mut k) =
                        backend.prepare_variant(KERNEL_TILED, precision, &w, 42, name.as_deref())
                    else {
                        continue;
                    };
                    labels[i] = k.variant().unwrap_or_default();
                    if k.run(1).is_err() {
                        continue;
                    }
                    if let Ok(t) = k.run(iterations) {
                        times[i].push(t.device_s.unwrap_or(t.wall_s) / iterations as f64);
                    }
                }
            }
            let median = |mut v: Vec<f64>| {
                v.sort_by(f64::total_cmp);
                v.get(v.len() / 2).copied()
            };
            let gflops = |s: f64| 2.0 * (n as f64).powi(3) / s / 1e9;
            for (i, t) in times.iter().enumerate() {
                let ratios: Vec<f64> = t.iter().zip(&times[0]).map(|(v, d)| d / v).collect();
                if let (Some(s), Some(r)) = (median(t.clone()), median(ratios)) {
                    let mark = if i == 0 { " (default)" } else { "" };
                    eprintln!(
                        "  {precision} {n}x{n}x{n} {}{mark}: {:.2} GFLOP/s, {r:.2}x the default",
                        labels[i],
                        gflops(s)
                    );
                }
            }
        }
    }
}

/// Seconds each kernel runs per pair: long enough to average over the clock, short
/// in test mode.
fn pair_seconds() -> f64 {
    if criterion_test_mode() {
        0.01
    } else {
        0.3
    }
}

/// Median, lowest and highest of `PAIRS` ratios naive time / tiled time, each from
/// back-to-back runs of about `pair_seconds()` (from criterion's means) of the two
/// kernels.
fn paired_speedup(
    backend: &mut joulebench_wgpu::WgpuBackend,
    precision: Precision,
    w: &Workload,
    totals: &Totals,
) -> Result<(f64, f64, f64), String> {
    let Workload::Matmul(s) = w else {
        return Err("not a matmul".into());
    };
    let iterations = |kernel| {
        totals
            .get(&(precision.to_string(), s.n, kernel))
            .map(|&(secs, iters)| {
                (pair_seconds() / (secs / iters.max(1) as f64))
                    .ceil()
                    .max(1.0) as u64
            })
            .unwrap_or(1)
    };
    let mut time_one = |kernel: &'static str| -> Result<f64, String> {
        let mut k = backend
            .prepare(kernel, precision, w, 42)
            .map_err(|e| e.to_string())?;
        k.run(1).map_err(|e| e.to_string())?;
        let n = iterations(kernel);
        let t = k.run(n).map_err(|e| e.to_string())?;
        Ok(t.device_s.unwrap_or(t.wall_s) / n as f64)
    };
    let mut ratios = Vec::with_capacity(PAIRS);
    for _ in 0..PAIRS {
        let naive = time_one(KERNEL_NAIVE)?;
        let tiled = time_one(KERNEL_TILED)?;
        ratios.push(naive / tiled);
    }
    ratios.sort_by(f64::total_cmp);
    Ok((ratios[PAIRS / 2], ratios[0], ratios[PAIRS - 1]))
}
