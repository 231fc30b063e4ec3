//! wgsl-flash against wgsl-tiled on one adapter, in one run: how close fused attention
//! comes to the matmul rate of the same adapter, per precision, head_dim and mask.
//! Attention is two matmuls and a softmax, so its TFLOP/s over the tiled matmul's is
//! what says whether the attention kernel is organised well.
//!
//!     source scripts/test-env.sh && cargo bench -p joulebench-wgpu --bench attention
//!
//! Every point is checked against the f64 reference before it is timed. criterion
//! times each point (device time where the adapter has timestamps); the summary then
//! gives each attention point's rate as a fraction of the matmul's: from criterion's
//! means, and paired (the two kernels timed alternately, median of several pairs),
//! which cancels load drifting between the two measurements on a shared machine.
//!
//! Shapes (env overrides): matmul `JOULEBENCH_BENCH_MATMUL` (square size; 1024 on a CPU
//! emulation, 4096 on a GPU); attention batch 1, `JOULEBENCH_BENCH_HEADS` heads (4 / 16)
//! × `JOULEBENCH_BENCH_SEQ` (512 / 2048), head_dim 64 and 128, causal and not.
//! `JOULEBENCH_BENCH_VARIANTS=1` times every attention variant, not one per family.
//! `JOULEBENCH_BENCH_CHECKS=1` ends with each default kernel built twice — as the
//! backend builds it, and with all of wgpu's runtime checks (`JOULEBENCH_WGPU_CHECKS`) —
//! and timed in turn, to show what the checks the backend leaves out cost.
//! In criterion's test mode (`cargo test --benches`) every shape is a token one.

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use joulebench_core::verify::verify;
use joulebench_core::PreparedKernel;
use joulebench_core::{AttentionShape, MatmulShape, Precision, Workload};
use joulebench_criterion::criterion_test_mode;
use joulebench_wgpu::{WgpuBackend, FULL_CHECKS_ENV, KERNEL_FLASH, KERNEL_TILED};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Duration;

/// One timed point: a kernel, optionally forced to a variant, on a workload.
#[derive(Clone, Debug)]
struct Point {
    kernel: &'static str,
    forced: Option<String>,
    precision: Precision,
    workload: Workload,
    /// The variant that ran (filled in once prepared).
    variant: String,
}

impl Point {
    fn key(&self) -> String {
        format!(
            "{} {} {} {}",
            self.kernel,
            self.precision,
            self.workload,
            self.forced.as_deref().unwrap_or("default")
        )
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.trim().parse().ok()
}

/// Variants that differ only in their numbers (tile sizes) are one family; the
/// name without digits says which.
fn family(variant: &str) -> String {
    variant.chars().filter(|c| !c.is_ascii_digit()).collect()
}

fn main() {
    let test_mode = criterion_test_mode();
    let mut backend = match joulebench_wgpu::open(None) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("skipped: {e}");
            return;
        }
    };
    let adapter = backend.adapter().summary();
    let cpu = backend.adapter().cpu_emulation;
    let clock = if backend.has_device_timer() {
        "device time (timestamp queries)"
    } else {
        "wall time (no timestamp queries on this adapter)"
    };
    eprintln!("adapter: {adapter}\ntiming: {clock}");

    let (mm_size, heads, seq) = if test_mode {
        (64, 1, 64)
    } else if cpu {
        (
            env_u64("JOULEBENCH_BENCH_MATMUL").unwrap_or(1024),
            env_u64("JOULEBENCH_BENCH_HEADS").unwrap_or(4),
            env_u64("JOULEBENCH_BENCH_SEQ").unwrap_or(512),
        )
    } else {
        (
            env_u64("JOULEBENCH_BENCH_MATMUL").unwrap_or(4096),
            env_u64("JOULEBENCH_BENCH_HEADS").unwrap_or(16),
            env_u64("JOULEBENCH_BENCH_SEQ").unwrap_or(2048),
        )
    };
    let every_variant = std::env::var_os("JOULEBENCH_BENCH_VARIANTS").is_some();
    let mut precisions = vec![Precision::F32];
    if backend.adapter().f16 {
        precisions.push(Precision::F16);
    }
    let matmul = Workload::Matmul(MatmulShape {
        batch: 1,
        m: mm_size,
        n: mm_size,
        k: mm_size,
    });

    let mut points = Vec::new();
    for &precision in &precisions {
        points.push(Point {
            kernel: KERNEL_TILED,
            forced: None,
            precision,
            workload: matmul,
            variant: String::new(),
        });
        for head_dim in [64u64, 128] {
            // The variant the backend picks, and the first listed of every other
            // family (the variants are listed in order of preference).
            let mut forced: Vec<Option<String>> = vec![None];
            let mut seen_families = Vec::new();
            for v in backend
                .variants(KERNEL_FLASH)
                .into_iter()
                .filter(|v| v.starts_with(&format!("d{head_dim}-")))
            {
                if every_variant || !seen_families.contains(&family(&v)) {
                    seen_families.push(family(&v));
                    forced.push(Some(v));
                }
            }
            for causal in [false, true] {
                let workload = Workload::Attention(AttentionShape {
                    batch: 1,
                    heads,
                    seq_q: seq,
                    seq_kv: seq,
                    head_dim,
                    causal,
                });
                for f in &forced {
                    points.push(Point {
                        kernel: KERNEL_FLASH,
                        forced: f.clone(),
                        precision,
                        workload,
                        variant: String::new(),
                    });
                }
            }
        }
    }

    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    // Seconds and iterations criterion measured, by point key.
    let totals: RefCell<BTreeMap<String, (f64, u64)>> = RefCell::new(BTreeMap::new());
    let mut kept: Vec<Point> = Vec::new();
    let mut defaults: BTreeMap<String, String> = BTreeMap::new();
    for mut p in points {
        let prepared =
            backend.prepare_variant(p.kernel, p.precision, &p.workload, 42, p.forced.as_deref());
        let mut k = match prepared {
            Ok(k) => k,
            Err(e) => {
                eprintln!("skipped {} {} {}: {e}", p.kernel, p.precision, p.workload);
                continue;
            }
        };
        p.variant = k.variant().unwrap_or_default();
        let slot = format!("{} {} {}", p.kernel, p.precision, p.workload);
        // A forced variant the default already is: timed once, as the default.
        if p.forced.is_some() && defaults.get(&slot) == Some(&p.variant) {
            continue;
        }
        if p.forced.is_none() {
            defaults.insert(slot, p.variant.clone());
        }
        // Never time a kernel that computes the wrong thing.
        match verify(k.as_mut(), &p.workload, p.precision, 7) {
            Ok(v) if v.passed => {}
            other => {
                eprintln!(
                    "skipped {} {} {} {}: check failed: {other:?}",
                    p.kernel, p.precision, p.workload, p.variant
                );
                continue;
            }
        }
        let mut group = c.benchmark_group(format!("wgpu-attention-vs-matmul-{}", p.precision));
        group.sampling_mode(SamplingMode::Flat);
        group.throughput(Throughput::Elements(p.workload.flop().unwrap_or(0)));
        let mark = if p.forced.is_some() { " forced" } else { "" };
        let id = BenchmarkId::new(p.kernel, format!("{} {}{mark}", p.workload, p.variant));
        let key = p.key();
        group.bench_function(id, |b| {
            b.iter_custom(|iters| {
                let seconds = match k.run(iters) {
                    Ok(t) => t.device_s.unwrap_or(t.wall_s),
                    Err(e) => {
                        eprintln!("{key}: {e}");
                        f64::NAN
                    }
                };
                let mut totals = totals.borrow_mut();
                let entry = totals.entry(key.clone()).or_insert((0.0, 0));
                entry.0 += seconds;
                entry.1 += iters;
                Duration::from_secs_f64(seconds.max(0.0))
            })
        });
        group.finish();
        kept.push(p);
    }
    c.final_summary();

    let totals = totals.into_inner();
    let rate = |p: &Point| -> Option<f64> {
        let &(seconds, iters) = totals.get(&p.key())?;
        let flop = p.workload.flop().ok()? as f64;
        (seconds > 0.0).then(|| flop * iters as f64 / seconds)
    };
    let (pairs, pair_seconds) = if test_mode { (1, 0.01) } else { (PAIRS, 0.3) };
    eprintln!(
        "\nwgsl-flash TFLOP/s as a fraction of wgsl-tiled TFLOP/s ({clock}, on {adapter}); \
         paired: median of {pairs} alternating pairs of about {pair_seconds} s per kernel"
    );
    for &precision in &precisions {
        let Some(tiled) = kept
            .iter()
            .find(|p| p.kernel == KERNEL_TILED && p.precision == precision)
        else {
            eprintln!("  {precision}: {KERNEL_TILED} not measured, no ratio");
            continue;
        };
        let Some(tiled_rate) = rate(tiled) else {
            continue;
        };
        eprintln!(
            "  {precision} {KERNEL_TILED} {} {}: {:.5} TFLOP/s",
            tiled.workload,
            tiled.variant,
            tiled_rate / 1e12
        );
        for p in kept
            .iter()
            .filter(|p| p.kernel == KERNEL_FLASH && p.precision == precision)
        {
            let Some(flash_rate) = rate(p) else { continue };
            let paired = match paired_ratio(&mut backend, tiled, p, &totals, pairs, pair_seconds) {
                Ok((median, low, high)) => {
                    format!("paired {median:.3} ({low:.3}–{high:.3})")
                }
                Err(e) => format!("paired: not measured: {e}"),
            };
            let mark = if p.forced.is_some() { "" } else { " (default)" };
            eprintln!(
                "  {precision} {KERNEL_FLASH} {} {}{mark}: {:.5} TFLOP/s, ratio {:.3}, {paired}",
                p.workload,
                p.variant,
                flash_rate / 1e12,
                flash_rate / tiled_rate
            );
        }
    }
    if std::env::var_os("JOULEBENCH_BENCH_CHECKS").is_some() {
        drop(backend);
        checks_rounds(&kept, &totals, pairs);
    }
}

const PAIRS: usize = 5;

/// Each default point (the matmul and the non-causal attention points) prepared on
/// one backend as usual and on another with every runtime check, then timed in
/// turn for `rounds` rounds: median GFLOP/s of each build and of their ratio.
fn checks_rounds(kept: &[Point], totals: &BTreeMap<String, (f64, u64)>, rounds: usize) {
    eprintln!(
        "\nbuilt as usual against built with every runtime check (median of {rounds} rounds):"
    );
    // Two devices, so that each compiles its own pipelines; the checks are chosen
    // when a pipeline is created, from FULL_CHECKS_ENV (nothing else runs meanwhile).
    let (Ok(mut usual), Ok(mut checked)) =
        (joulebench_wgpu::open(None), joulebench_wgpu::open(None))
    else {
        return;
    };
    for p in kept.iter().filter(|p| p.forced.is_none()) {
        if matches!(p.workload, Workload::Attention(s) if s.causal) {
            continue;
        }
        let Some(&(secs, iters)) = totals.get(&p.key()) else {
            continue;
        };
        let iterations = (0.3 / (secs / iters.max(1) as f64)).ceil().max(1.0) as u64;
        std::env::remove_var(FULL_CHECKS_ENV);
        let a = usual.prepare_variant(p.kernel, p.precision, &p.workload, 42, None);
        std::env::set_var(FULL_CHECKS_ENV, "full");
        let b = checked.prepare_variant(p.kernel, p.precision, &p.workload, 42, None);
        std::env::remove_var(FULL_CHECKS_ENV);
        let (Ok(mut a), Ok(mut b)) = (a, b) else {
            continue;
        };
        let flop = p.workload.flop().unwrap_or(0) as f64;
        let rate = |k: &mut Box<dyn PreparedKernel + '_>| -> Option<f64> {
            k.run(1).ok()?;
            let t = k.run(iterations).ok()?;
            Some(flop * iterations as f64 / t.device_s.unwrap_or(t.wall_s) / 1e9)
        };
        let (mut usual_rates, mut checked_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            if let (Some(x), Some(y)) = (rate(&mut a), rate(&mut b)) {
                usual_rates.push(x);
                checked_rates.push(y);
                ratios.push(x / y);
            }
        }
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
        };
        eprintln!(
            "  {} {} {} {}: {:.2} GFLOP/s as built, {:.2} with every check: {:.2}x",
            p.precision,
            p.kernel,
            p.workload,
            p.variant,
            median(usual_rates),
            median(checked_rates),
            median(ratios)
        );
    }
}

/// Median, lowest and highest of `pairs` ratios (attention FLOP/s over matmul FLOP/s),
/// each from back-to-back runs of about `pair_seconds` of the two kernels.
fn paired_ratio(
    backend: &mut WgpuBackend,
    tiled: &Point,
    flash: &Point,
    totals: &BTreeMap<String, (f64, u64)>,
    pairs: usize,
    pair_seconds: f64,
) -> Result<(f64, f64, f64), String> {
    let mut rate_of = |p: &Point| -> Result<f64, String> {
        let mut k = backend
            .prepare_variant(p.kernel, p.precision, &p.workload, 42, p.forced.as_deref())
            .map_err(|e| e.to_string())?;
        let iterations = totals
            .get(&p.key())
            .map(|&(s, i)| (pair_seconds / (s / i.max(1) as f64)).ceil().max(1.0) as u64)
            .unwrap_or(1);
        let t = k.run(iterations).map_err(|e| e.to_string())?;
        let seconds = t.device_s.unwrap_or(t.wall_s);
        let flop = p.workload.flop().map_err(|e| e.to_string())? as f64;
        Ok(flop * iterations as f64 / seconds)
    };
    let mut ratios = Vec::with_capacity(pairs);
    for _ in 0..pairs {
        let matmul = rate_of(tiled)?;
        let attention = rate_of(flash)?;
        ratios.push(attention / matmul);
    }
    ratios.sort_by(f64::total_cmp);
    Ok((ratios[pairs / 2], ratios[0], ratios[pairs - 1]))
}
