//! What a point costs besides its measurement — preparing the kernel (inputs
//! generated and uploaded, compiled where not cached) and its correctness check —
//! on every backend found: the simulated device always, wgpu where an adapter
//! exists (lavapipe included), CUDA where a GPU exists. A sweep records the same
//! split per point (`overhead.prepare_s`, `overhead.verify_s`); this bench watches
//! it where no GPU is at hand. The target on a GPU is under 1 s for an 8192³ GEMM.
//!
//!     cargo bench --bench overhead
//!
//! In test mode (`cargo test --benches`) each case runs once at a token size.

use criterion::Criterion;
use joulebench_core::verify::verify;
use joulebench_core::{Backend, MatmulShape, Precision, Workload};
use joulebench_criterion::criterion_test_mode;
use joulebench_device::{open, BackendKind, OpenOptions};
use std::time::{Duration, Instant};

fn square(n: u64) -> Workload {
    Workload::Matmul(MatmulShape {
        batch: 1,
        m: n,
        n,
        k: n,
    })
}

/// The kernel and shape a backend is timed on: its main matmul at its largest
/// everyday shape (small on a CPU emulation and in test mode).
fn case(backend: &dyn Backend, test_mode: bool) -> Option<(String, Precision, Workload)> {
    let info = backend.device();
    let n = match (test_mode, info.cpu_emulation || backend.name() == "wgpu") {
        (true, _) => 64,
        (false, true) => 512,
        (false, false) => 8192,
    };
    let kernels = backend.kernels();
    let k = kernels
        .iter()
        .find(|k| k.vendor && k.op == joulebench_core::Op::Matmul)
        .or_else(|| {
            kernels
                .iter()
                .find(|k| k.op == joulebench_core::Op::Matmul && !k.name.contains("naive"))
        })?;
    let precision = [Precision::Bf16, Precision::F16, Precision::F32]
        .into_iter()
        .find(|p| k.precisions.contains(p))?;
    Some((k.name.clone(), precision, square(n)))
}

/// Prepare and check once; (prepare, verify) seconds.
fn once(
    backend: &mut dyn Backend,
    kernel: &str,
    precision: Precision,
    w: &Workload,
    seed: u64,
) -> Result<(f64, f64), String> {
    let t0 = Instant::now();
    let mut k = backend
        .prepare(kernel, precision, w, seed)
        .map_err(|e| e.to_string())?;
    let prepare_s = t0.elapsed().as_secs_f64();
    let v = verify(k.as_mut(), w, precision, seed).map_err(|e| e.to_string())?;
    if !v.passed {
        return Err(format!("the check failed: {v:?}"));
    }
    Ok((prepare_s, t0.elapsed().as_secs_f64() - prepare_s))
}

fn main() {
    // criterion's report charts draw with plotters, whose bundled-font renderer only
    // knows registered fonts
    joulebench_analysis::chart::register_fonts();
    let test_mode = criterion_test_mode();
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(if test_mode { 1 } else { 500 }))
        .measurement_time(Duration::from_secs(if test_mode { 1 } else { 5 }))
        .configure_from_args();
    let mut failed = false;
    for kind in [BackendKind::Sim, BackendKind::Wgpu, BackendKind::Cuda] {
        let mut dev = match open(&OpenOptions::new(kind)) {
            Ok(d) => d,
            Err(e) => {
                println!("== {}: skipped: {e}", kind.name());
                continue;
            }
        };
        let Some((kernel, precision, w)) = case(dev.backend.as_ref(), test_mode) else {
            println!("== {}: skipped: no matmul kernel", kind.name());
            continue;
        };
        let label = format!("{kernel} {precision} {}", w.compact_label());
        println!(
            "== {}: {} — {label}",
            kind.name(),
            dev.backend.device().name
        );
        // the first run compiles (or loads the compile cache); report it apart
        match once(dev.backend.as_mut(), &kernel, precision, &w, 1) {
            Ok((p, v)) => println!(
                "   first point: prepare {:.3} s, check {:.3} s (compilation included)",
                p, v
            ),
            Err(e) => {
                println!("   FAILED: {e}");
                failed = true;
                continue;
            }
        }
        let mut last = (0.0, 0.0);
        let mut seed = 2;
        c.bench_function(&format!("overhead/{}/{label}", kind.name()), |b| {
            b.iter(|| {
                seed += 1;
                if let Ok(t) = once(dev.backend.as_mut(), &kernel, precision, &w, seed) {
                    last = t;
                }
            })
        });
        println!(
            "   a later point: prepare {:.3} s, check {:.3} s, {:.3} s in all",
            last.0,
            last.1,
            last.0 + last.1
        );
    }
    if failed {
        std::process::exit(1);
    }
}
