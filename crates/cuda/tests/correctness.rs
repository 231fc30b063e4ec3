//! The shared correctness suite on CUDA device 0: every kernel, every precision, the
//! suite's ragged shapes. Without a GPU (as in CI) each test prints `skipped: <why>`.

joulebench_core::correctness_suite!(
    || joulebench_cuda::open(0)
        .map(|b| Box::new(b) as Box<dyn joulebench_core::Backend>)
        .map_err(|e| e.to_string()),
    required_in_ci = false
);
