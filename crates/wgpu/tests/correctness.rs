//! The shared correctness suite on the wgpu backend: every kernel, every precision the
//! adapter offers, on ragged shapes. On a machine without a GPU this runs on lavapipe.

joulebench_core::correctness_suite!(
    || joulebench_wgpu::open(None)
        .map(|b| Box::new(b) as Box<dyn joulebench_core::Backend>)
        .map_err(|e| e.to_string()),
    required_in_ci = true
);
