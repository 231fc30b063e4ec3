//! The backend's contract beyond correctness: a missing driver is a reason, never a
//! panic; on a GPU, the kernel list, support answers, timing (hot and cold) and the
//! device identity behave as the protocol expects. GPU tests print `skipped: <why>`
//! where there is no GPU.

use joulebench_core::{Backend, MatmulShape, Op, Precision, Support, Workload};
use joulebench_cuda::{open, probe, CudaBackend, L2Mode};

const STABLE_NAMES: [&str; 8] = [
    "cuda-simt",
    "cuda-mma",
    "cublas",
    "cublaslt-fp8",
    "cuda-flash",
    "cublas-unfused",
    "cublas-unfused-bwd",
    "cuda-flash-bwd",
];

fn gpu() -> Option<CudaBackend> {
    match open(0) {
        Ok(b) => Some(b),
        Err(e) => {
            eprintln!("skipped: {e}");
            None
        }
    }
}

fn mm(batch: u64, m: u64, n: u64, k: u64) -> Workload {
    Workload::Matmul(MatmulShape { batch, m, n, k })
}

#[test]
fn without_a_driver_open_explains_instead_of_panicking() {
    let p = probe();
    if let Err(why) = &p.driver {
        let err = open(0).err().expect("open must fail without a driver");
        assert!(err.to_string().contains(why.as_str()), "{err} vs {why}");
        assert!(p.devices.is_empty());
    }
    // A device that does not exist is an error, not a panic, in every case.
    assert!(open(usize::MAX).is_err());
}

#[test]
fn probe_lists_what_it_found() {
    let p = probe();
    eprintln!(
        "driver: {:?}\nnvrtc: {:?}\ncublas: {:?}\ncublaslt: {:?}",
        p.driver, p.nvrtc, p.cublas, p.cublaslt
    );
    for d in &p.devices {
        eprintln!(
            "device {}: {} cc {:?} {:?} {:?}",
            d.ordinal, d.name, d.compute_capability, d.uuid, d.pci_bus_id
        );
        assert!(d.memory_bytes > 0);
        if let Some(u) = &d.uuid {
            assert!(u.starts_with("GPU-") && u.len() == 40, "{u}");
        }
    }
}

#[test]
fn kernels_use_the_stable_names_and_tf32_is_cublas_only() {
    let Some(b) = gpu() else { return };
    assert_eq!(b.name(), "cuda");
    let info = b.device();
    assert!(!info.simulated && !info.cpu_emulation);
    assert!(info.compute_capability.is_some() && info.uuid.is_some());
    for k in b.kernels() {
        assert!(STABLE_NAMES.contains(&k.name.as_str()), "{}", k.name);
        if k.precisions.contains(&Precision::Tf32) {
            assert_eq!(k.name, "cublas");
        }
        assert_eq!(
            k.op != Op::Matmul,
            k.name.contains("flash") || k.name.contains("unfused")
        );
        assert_eq!(k.op == Op::AttentionBackward, k.name.ends_with("-bwd"));
    }
    for (name, why) in b.unavailable_kernels() {
        eprintln!("unavailable here: {name}: {why}");
    }
}

#[test]
fn support_refuses_what_a_kernel_cannot_run() {
    let Some(b) = gpu() else { return };
    let w = mm(1, 64, 64, 64);
    assert!(matches!(
        b.support("no-such-kernel", Precision::F32, &w),
        Support::Unsupported(_)
    ));
    assert!(matches!(
        b.support("cuda-simt", Precision::F16, &w),
        Support::Unsupported(_)
    ));
    assert!(matches!(
        b.support("cuda-mma", Precision::Tf32, &w),
        Support::Unsupported(_)
    ));
    let attn = Workload::Attention(joulebench_core::AttentionShape {
        batch: 1,
        heads: 1,
        seq_q: 64,
        seq_kv: 64,
        head_dim: 96,
        causal: false,
    });
    match b.support("cuda-flash", Precision::F16, &attn) {
        Support::Unsupported(why) => assert!(why.contains("head_dim"), "{why}"),
        Support::Supported => panic!("head_dim 96 has no flash kernel"),
    }
}

#[test]
fn timing_hot_and_cold() {
    let Some(mut b) = gpu() else { return };
    let w = mm(1, 1024, 1024, 1024);
    for mode in [L2Mode::Hot, L2Mode::Cold] {
        b.set_l2_mode(mode).unwrap();
        let mut k = b.prepare("cuda-simt", Precision::F32, &w, 1).unwrap();
        let t1 = k.run(2).unwrap();
        let t8 = k.run(8).unwrap();
        let (d1, d8) = (t1.device_s.unwrap(), t8.device_s.unwrap());
        eprintln!(
            "{mode:?}: 2 iters {d1:.6}s, 8 iters {d8:.6}s (wall {:.6}s)",
            t8.wall_s
        );
        assert!(d1 > 0.0 && d8 > d1, "device time must grow with iterations");
        assert!(t8.wall_s >= d8 * 0.9, "wall clock includes device time");
        if mode == L2Mode::Cold {
            assert!(k.variant().unwrap().contains("cold L2"));
        }
    }
}
