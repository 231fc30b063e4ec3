//! Matmul in joules and seconds on every backend found: the simulated device
//! always, wgpu where an adapter exists (lavapipe included), CUDA where a driver
//! and GPU exist. Each case is checked against the f64 reference, then measured
//! in two criterion groups: `matmul/<backend>/time` (device time, FLOP/s as
//! "elem/s") and `matmul/<backend>/energy` (joules per matmul, FLOP/J).
//!
//!     cargo bench --bench matmul
//!     JOULEBENCH_BENCH_BACKENDS=sim JOULEBENCH_BENCH_PRECISIONS=bf16 cargo bench --bench matmul
//!
//! `JOULEBENCH_BENCH_SIZES=1024,4096` replaces the default shapes with squares.

mod common;

use joulebench_core::{DeviceInfo, MatmulShape, Op, Workload};

fn square(n: u64) -> Workload {
    Workload::Matmul(MatmulShape {
        batch: 1,
        m: n,
        n,
        k: n,
    })
}

/// Square matmuls, and on GPUs a transformer's MLP up-projection (4096 → 14336
/// for 2048 tokens); small squares on a CPU emulation.
fn shapes(info: &DeviceInfo, sizes: Option<&[u64]>) -> Vec<Workload> {
    if let Some(sizes) = sizes {
        return sizes.iter().map(|&n| square(n)).collect();
    }
    if info.cpu_emulation {
        return vec![square(128), square(256)];
    }
    let mut v = vec![square(1024), square(4096)];
    v.push(Workload::Matmul(MatmulShape {
        batch: 1,
        m: 2048,
        n: 14336,
        k: 4096,
    }));
    v
}

fn main() {
    std::process::exit(common::run(Op::Matmul, shapes));
}
