//! The wgpu backend beyond the shared suite: adapter identity, every forced tile
//! variant on exact and ragged shapes, the timed variant search and its cache, timing,
//! and the reasons given for points it cannot run. Skips without an adapter, except
//! under CI=true.

use joulebench_core::suite::required;
use joulebench_core::verify::{verify, verify_with};
use joulebench_core::{
    AttentionShape, Backend, InputDistribution, MatmulShape, Precision, Support, Workload,
};
use joulebench_wgpu::{
    VariantSearch, WgpuBackend, KERNEL_COOP, KERNEL_FLASH, KERNEL_NAIVE, KERNEL_TILED,
};
use std::path::PathBuf;

/// The default adapter with the fixed variant rule, so that tests do not depend on
/// timings (the search has its own test).
fn backend() -> Option<WgpuBackend> {
    match joulebench_wgpu::open(None) {
        Ok(mut b) => {
            b.set_variant_search(VariantSearch::Fixed);
            Some(b)
        }
        Err(e) if required(true) => panic!("wgpu adapter required under CI=true: {e}"),
        Err(e) => {
            eprintln!("skipped: {e}");
            None
        }
    }
}

fn matmul(batch: u64, m: u64, n: u64, k: u64) -> Workload {
    Workload::Matmul(MatmulShape { batch, m, n, k })
}

fn attention(seq_q: u64, seq_kv: u64, head_dim: u64, causal: bool) -> Workload {
    Workload::Attention(AttentionShape {
        batch: 1,
        heads: 2,
        seq_q,
        seq_kv,
        head_dim,
        causal,
    })
}

fn precisions(b: &WgpuBackend) -> Vec<Precision> {
    if b.adapter().f16 {
        vec![Precision::F32, Precision::F16]
    } else {
        vec![Precision::F32]
    }
}

#[test]
fn adapter_identity_is_filled() {
    let Some(b) = backend() else { return };
    let info = b.device();
    let adapter = info
        .adapter
        .as_ref()
        .expect("wgpu devices carry adapter info");
    assert!(!info.name.is_empty());
    assert_eq!(info.name, adapter.name);
    assert!(!adapter.backend.is_empty() && !adapter.device_type.is_empty());
    assert!(!info.simulated);
    assert_eq!(
        info.cpu_emulation,
        adapter.device_type == "Cpu" || info.name.contains("llvmpipe")
    );
    assert_eq!(b.name(), "wgpu");
    // WGPU_BACKEND is honoured: scripts/test-env.sh asks for Vulkan.
    if std::env::var("WGPU_BACKEND").as_deref() == Ok("vulkan") {
        assert_eq!(adapter.backend, "Vulkan");
    }
    let listed = joulebench_wgpu::list_adapters().expect("the open adapter is listed");
    assert!(listed.iter().any(|r| r.info == *adapter));
    eprintln!("adapter: {}", b.adapter().summary());
}

#[test]
fn selectors_pick_the_same_adapter() {
    let Some(b) = backend() else { return };
    let index = b.adapter().index.to_string();
    let by_index = joulebench_wgpu::open(Some(&index)).expect("open by index");
    assert_eq!(by_index.device(), b.device());
    let err = joulebench_wgpu::open(Some("no such adapter, surely")).unwrap_err();
    assert!(
        err.to_string().contains("no adapter name contains"),
        "{err}"
    );
    assert!(joulebench_wgpu::open(Some("999")).is_err());
}

#[test]
fn every_tiled_variant_is_correct_on_exact_and_ragged_shapes() {
    let Some(mut b) = backend() else { return };
    let variants = b.variants(KERNEL_TILED);
    assert!(!variants.is_empty());
    // 128 × 256 × 64 is a multiple of every tile; 2 × 136 × 72 × 40 of none.
    let shapes = [matmul(1, 128, 256, 64), matmul(2, 136, 72, 40)];
    for precision in precisions(&b) {
        for variant in &variants {
            for w in &shapes {
                let mut k = b
                    .prepare_variant(KERNEL_TILED, precision, w, 1, Some(variant))
                    .unwrap_or_else(|e| panic!("{variant} {precision} {w}: {e}"));
                let chosen = k.variant().unwrap_or_default();
                assert!(
                    chosen.starts_with(variant.as_str()),
                    "{chosen} vs {variant}"
                );
                let v = verify(k.as_mut(), w, precision, 5).unwrap();
                assert!(v.passed, "{variant} {precision} {w}: {v:?}");
                eprintln!("ok {chosen} {precision} {w}: {:.2e}", v.relative_error);
            }
        }
    }
}

#[test]
fn exact_shapes_take_the_unchecked_vec4_build() {
    let Some(mut b) = backend() else { return };
    let k = b
        .prepare(KERNEL_TILED, Precision::F32, &matmul(1, 256, 256, 256), 1)
        .unwrap();
    assert!(k.variant().unwrap_or_default().ends_with("vec4-unchecked"));
    drop(k);
    let k = b
        .prepare(KERNEL_TILED, Precision::F32, &matmul(1, 100, 100, 100), 1)
        .unwrap();
    assert!(k.variant().unwrap_or_default().ends_with("-checked"));
}

#[test]
fn every_attention_variant_is_correct() {
    let Some(mut b) = backend() else { return };
    let variants = b.variants(KERNEL_FLASH);
    assert!(!variants.is_empty());
    for precision in precisions(&b) {
        for variant in &variants {
            let d: u64 = variant[1..variant.find('-').unwrap_or(1)].parse().unwrap();
            // Ragged lengths, a causal mask with more queries than keys, and one
            // with fewer.
            for w in [
                attention(45, 70, d, false),
                attention(70, 45, d, true),
                attention(20, 51, d, true),
            ] {
                let mut k = b
                    .prepare_variant(KERNEL_FLASH, precision, &w, 2, Some(variant))
                    .unwrap_or_else(|e| panic!("{variant} {precision} {w}: {e}"));
                let v = verify(k.as_mut(), &w, precision, 9).unwrap();
                assert!(v.passed, "{variant} {precision} {w}: {v:?}");
            }
        }
    }
}

#[test]
fn run_reports_wall_and_device_time() {
    let Some(mut b) = backend() else { return };
    let timer = b.has_device_timer();
    let w = matmul(1, 128, 128, 128);
    let mut k = b.prepare(KERNEL_NAIVE, Precision::F32, &w, 3).unwrap();
    let one = k.run(1).unwrap();
    let many = k.run(200).unwrap();
    assert!(
        one.wall_s > 0.0 && many.wall_s > one.wall_s,
        "{one:?} {many:?}"
    );
    assert_eq!(many.device_s.is_some(), timer);
    if let Some(device_s) = many.device_s {
        // Device time covers only the passes, so it cannot exceed the wall clock
        // around submission and sync (small slack for clock granularity).
        assert!(
            device_s > 0.0 && device_s <= many.wall_s * 1.05 + 1e-4,
            "{many:?}"
        );
    }
    assert_eq!(k.run(0).unwrap().wall_s, 0.0);
}

#[test]
fn run_after_timing_still_computes_the_right_answer() {
    let Some(mut b) = backend() else { return };
    let w = attention(64, 64, 64, true);
    let mut k = b.prepare(KERNEL_FLASH, Precision::F32, &w, 4).unwrap();
    k.run(3).unwrap();
    let v = verify(k.as_mut(), &w, Precision::F32, 11).unwrap();
    assert!(v.passed, "{v:?}");
}

#[test]
fn unsupported_points_say_why() {
    let Some(b) = backend() else { return };
    let mm = matmul(1, 64, 64, 64);
    let why = |kernel: &str, p: Precision, w: &Workload| match b.support(kernel, p, w) {
        Support::Unsupported(r) => r,
        Support::Supported => panic!("{kernel} {p} {w} should be unsupported"),
    };
    for p in [Precision::Tf32, Precision::Bf16, Precision::Fp8E4m3] {
        assert!(why(KERNEL_TILED, p, &mm).contains("not available on wgpu"));
    }
    assert!(why(KERNEL_FLASH, Precision::F32, &attention(64, 64, 96, false)).contains("head_dim"));
    assert!(why(KERNEL_FLASH, Precision::F32, &mm).contains("runs attention"));
    assert!(why("cublas", Precision::F32, &mm).contains("unknown kernel"));
    // One tensor larger than any storage binding this adapter allows.
    let elements = b.adapter().max_storage_buffer_binding_bytes / 4 + 1;
    let huge = matmul(1, elements.div_ceil(1024), 1024, 1024);
    assert!(why(KERNEL_NAIVE, Precision::F32, &huge).contains("does not fit"));
    assert!(matches!(
        b.support(KERNEL_TILED, Precision::F32, &mm),
        Support::Supported
    ));
}

#[test]
fn f16_follows_the_adapter() {
    let Some(b) = backend() else { return };
    let offers_f16 = b
        .kernels()
        .iter()
        .all(|k| k.precisions.contains(&Precision::F16));
    assert_eq!(offers_f16, b.adapter().f16);
}

fn temp_dir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    std::env::temp_dir().join(format!(
        "joulebench-wgpu-{name}-{}-{nanos}",
        std::process::id()
    ))
}

#[test]
fn the_timed_search_keeps_its_choice_on_disk_and_a_forced_variant_wins() {
    let Some(mut b) = backend() else { return };
    let dir = temp_dir("search");
    let timed = VariantSearch::Timed {
        cache_dir: Some(dir.clone()),
    };
    b.set_variant_search(timed.clone());
    let w = matmul(1, 128, 256, 64);
    let chosen = b
        .prepare(KERNEL_TILED, Precision::F32, &w, 1)
        .unwrap()
        .variant()
        .unwrap_or_default();
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let mut record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap()).unwrap();
    let name = record["chosen"].as_str().unwrap().to_owned();
    assert!(chosen.starts_with(&name), "{chosen} vs {name}");
    // Every variant that runs here was timed, the chosen one fastest.
    let timed_variants = record["seconds_per_op"].as_array().unwrap().clone();
    assert_eq!(timed_variants.len(), b.variants(KERNEL_TILED).len());
    assert_eq!(timed_variants[0][0].as_str(), Some(name.as_str()));

    // A second backend reads the choice instead of searching: seeded with the
    // variant that is last in every order, it takes that one.
    let last = b.variants(KERNEL_TILED).pop().unwrap();
    record["chosen"] = serde_json::Value::String(last.clone());
    std::fs::write(&files[0], record.to_string()).unwrap();
    let Some(mut again) = backend() else { return };
    again.set_variant_search(timed);
    let mut k = again.prepare(KERNEL_TILED, Precision::F32, &w, 1).unwrap();
    assert!(k.variant().unwrap_or_default().starts_with(&last));
    assert!(verify(k.as_mut(), &w, Precision::F32, 3).unwrap().passed);
    drop(k);
    // A forced variant overrides the choice.
    let first = again.variants(KERNEL_TILED)[0].clone();
    let k = again
        .prepare_variant(KERNEL_TILED, Precision::F32, &w, 1, Some(&first))
        .unwrap();
    assert!(k.variant().unwrap_or_default().starts_with(&first));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn wgsl_coop_runs_where_there_are_matrix_units_and_says_why_not_elsewhere() {
    let Some(mut b) = backend() else { return };
    let w = matmul(1, 128, 128, 64);
    match b.support(KERNEL_COOP, Precision::F16, &w) {
        Support::Unsupported(why) => {
            assert!(b.variants(KERNEL_COOP).is_empty());
            if b.adapter().cooperative_matrix_shapes.is_empty() {
                assert_eq!(why, "adapter offers no cooperative-matrix shapes");
            }
            assert!(b.prepare(KERNEL_COOP, Precision::F16, &w, 1).is_err());
            eprintln!("skipped: {KERNEL_COOP}: {why}");
        }
        Support::Supported => {
            // 128 × 256 × 64 fills every block; 2 × 136 × 72 × 40 none.
            let shapes = [matmul(1, 128, 256, 64), matmul(2, 136, 72, 40)];
            for variant in b.variants(KERNEL_COOP) {
                for w in &shapes {
                    let mut k = b
                        .prepare_variant(KERNEL_COOP, Precision::F16, w, 1, Some(&variant))
                        .unwrap_or_else(|e| panic!("{variant} {w}: {e}"));
                    let v = verify(k.as_mut(), w, Precision::F16, 5).unwrap();
                    assert!(v.passed, "{variant} {w}: {v:?}");
                }
            }
        }
    }
    match b.support(KERNEL_COOP, Precision::F32, &w) {
        Support::Unsupported(why) => assert!(why.contains("f16"), "{why}"),
        Support::Supported => panic!("{KERNEL_COOP} claims f32"),
    }
}

#[test]
fn every_input_distribution_is_drawn_checked_and_run() {
    let Some(mut b) = backend() else { return };
    let w = matmul(1, 96, 64, 128);
    for inputs in InputDistribution::ALL {
        let mut k = b
            .prepare_with_inputs(KERNEL_TILED, Precision::F32, &w, 5, inputs)
            .unwrap();
        let v = verify_with(k.as_mut(), &w, Precision::F32, 5, inputs).unwrap();
        assert!(v.passed, "{inputs}: {v:?}");
        assert!(k.run(3).unwrap().wall_s > 0.0);
    }
}
