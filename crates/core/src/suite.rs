//! One correctness suite for every backend, as CubeCL does: the same shapes and
//! checks, instantiated per backend and precision by [`correctness_suite!`], so a
//! new backend gets every test without writing one.
//!
//! Shapes are small and deliberately ragged (dimensions that are not multiples of
//! any tile size) so that bounds handling is exercised; a kernel that cannot run a
//! shape says so through `Backend::support` and that case is reported, not failed.

use crate::backend::{Backend, Support};
use crate::precision::Precision;
use crate::verify::verify;
use crate::workload::{AttentionShape, MatmulShape, Op, Workload};

/// The shapes every backend is checked on.
pub fn cases(op: Op) -> Vec<Workload> {
    match op {
        Op::Matmul => [
            (1, 64, 64, 64),
            (1, 128, 256, 64),
            (3, 96, 80, 128),
            (2, 33, 47, 29),
            (1, 1, 129, 65),
            (1, 256, 256, 512),
        ]
        .into_iter()
        .map(|(batch, m, n, k)| Workload::Matmul(MatmulShape { batch, m, n, k }))
        .collect(),
        Op::Attention | Op::AttentionBackward => [
            (1, 2, 64, 64, 64, false),
            (1, 2, 64, 64, 64, true),
            (2, 3, 128, 128, 128, false),
            (2, 3, 128, 128, 128, true),
            (1, 2, 37, 53, 64, false),
            (1, 2, 53, 37, 64, true),
            (1, 1, 200, 200, 128, true),
            (1, 1, 16, 300, 64, false),
        ]
        .into_iter()
        .map(|(batch, heads, seq_q, seq_kv, head_dim, causal)| {
            let s = AttentionShape {
                batch,
                heads,
                seq_q,
                seq_kv,
                head_dim,
                causal,
            };
            if op == Op::Attention {
                Workload::Attention(s)
            } else {
                Workload::AttentionBackward(s)
            }
        })
        .collect(),
    }
}

/// What one (kernel, shape) case came to.
#[derive(Debug)]
pub enum CaseOutcome {
    Passed { relative_error: f64 },
    Failed(String),
    Unsupported(String),
}

/// Check every kernel of `backend` for `op` at `precision` on every suite shape.
pub fn check_all(
    backend: &mut dyn Backend,
    op: Op,
    precision: Precision,
) -> Vec<(String, Workload, CaseOutcome)> {
    let mut results = Vec::new();
    let kernels: Vec<String> = backend
        .kernels()
        .into_iter()
        .filter(|k| k.op == op)
        .map(|k| k.name)
        .collect();
    for kernel in kernels {
        for (i, w) in cases(op).into_iter().enumerate() {
            let outcome = match backend.support(&kernel, precision, &w) {
                Support::Unsupported(r) => CaseOutcome::Unsupported(r),
                Support::Supported => {
                    match backend.prepare(&kernel, precision, &w, 1000 + i as u64) {
                        Err(e) => CaseOutcome::Failed(format!("prepare: {e}")),
                        Ok(mut k) => match verify(k.as_mut(), &w, precision, 7 + i as u64) {
                            Err(e) => CaseOutcome::Failed(format!("run: {e}")),
                            Ok(v) if v.passed => CaseOutcome::Passed {
                                relative_error: v.relative_error,
                            },
                            Ok(v) => CaseOutcome::Failed(format!(
                                "relative error {:.3e} (tolerance {:.0e}), {} non-finite of {}",
                                v.relative_error,
                                v.tolerance,
                                v.non_finite_elements,
                                v.output_elements
                            )),
                        },
                    }
                }
            };
            results.push((kernel.clone(), w, outcome));
        }
    }
    results
}

/// Whether a missing backend fails the run (CI=true, and the backend is expected there).
pub fn required(required_in_ci: bool) -> bool {
    required_in_ci
        && std::env::var("CI")
            .map(|v| v == "true" || v == "1")
            .unwrap_or(false)
}

/// The body of one generated test: open the backend (or skip / fail under CI),
/// check every kernel, print a line per case, and panic on any failure.
pub fn run_suite_test(
    open: impl FnOnce() -> Result<Box<dyn Backend>, String>,
    required_in_ci: bool,
    op: Op,
    precision: Precision,
) {
    let mut backend = match open() {
        Ok(b) => b,
        Err(why) if required(required_in_ci) => {
            panic!("backend required under CI=true but unavailable: {why}")
        }
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let results = check_all(backend.as_mut(), op, precision);
    let mut failures = Vec::new();
    let mut passed = 0;
    for (kernel, w, outcome) in &results {
        match outcome {
            CaseOutcome::Passed { relative_error } => {
                passed += 1;
                eprintln!("ok       {kernel} {precision} {w}: rel err {relative_error:.2e}");
            }
            CaseOutcome::Unsupported(r) => eprintln!("n/a      {kernel} {precision} {w}: {r}"),
            CaseOutcome::Failed(msg) => {
                eprintln!("FAILED   {kernel} {precision} {w}: {msg}");
                failures.push(format!("{kernel} {precision} {w}: {msg}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed on {}:\n{}",
        failures.len(),
        backend.device().name,
        failures.join("\n")
    );
    let claims = backend
        .kernels()
        .iter()
        .any(|k| k.op == op && k.precisions.contains(&precision));
    if claims {
        assert!(
            passed > 0,
            "{} claims {op} at {precision} but no suite case ran",
            backend.name()
        );
    } else {
        eprintln!(
            "skipped: {} has no {op} kernel at {precision}",
            backend.name()
        );
    }
}

/// Instantiate the suite: one test per op and precision.
///
/// ```ignore
/// joulebench_core::correctness_suite!(|| open_backend(), required_in_ci = true);
/// ```
#[macro_export]
macro_rules! correctness_suite {
    ($open:expr, required_in_ci = $req:expr) => {
        $crate::correctness_suite!(@one $open, $req, matmul_f32, Matmul, F32);
        $crate::correctness_suite!(@one $open, $req, matmul_tf32, Matmul, Tf32);
        $crate::correctness_suite!(@one $open, $req, matmul_f16, Matmul, F16);
        $crate::correctness_suite!(@one $open, $req, matmul_bf16, Matmul, Bf16);
        $crate::correctness_suite!(@one $open, $req, matmul_fp8_e4m3, Matmul, Fp8E4m3);
        $crate::correctness_suite!(@one $open, $req, attention_f32, Attention, F32);
        $crate::correctness_suite!(@one $open, $req, attention_f16, Attention, F16);
        $crate::correctness_suite!(@one $open, $req, attention_bf16, Attention, Bf16);
        $crate::correctness_suite!(@one $open, $req, attention_backward_f32, AttentionBackward, F32);
        $crate::correctness_suite!(@one $open, $req, attention_backward_f16, AttentionBackward, F16);
        $crate::correctness_suite!(@one $open, $req, attention_backward_bf16, AttentionBackward, Bf16);
    };
    (@one $open:expr, $req:expr, $name:ident, $op:ident, $prec:ident) => {
        #[test]
        fn $name() {
            $crate::suite::run_suite_test($open, $req, $crate::Op::$op, $crate::Precision::$prec);
        }
    };
}
