//! The shared correctness suite on the wgpu backend: every kernel, every precision the
//! adapter offers, on ragged shapes. On a machine without a GPU this runs on lavapipe.
//! The variant choice is the fixed rule, so every run checks the same builds
//! (`tests/backend.rs` checks every variant).

joulebench_core::correctness_suite!(
    || joulebench_wgpu::open(None)
        .map(|mut b| {
            b.set_variant_search(joulebench_wgpu::VariantSearch::Fixed);
            Box::new(b) as Box<dyn joulebench_core::Backend>
        })
        .map_err(|e| e.to_string()),
    required_in_ci = true
);
