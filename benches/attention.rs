//! Attention forward in joules and seconds on every backend found: the simulated
//! device always, wgpu where an adapter exists (lavapipe included), CUDA where a
//! driver and GPU exist. Each case is checked against the f64 reference, then
//! measured in two criterion groups: `attention/<backend>/time` and
//! `attention/<backend>/energy` (FLOP = 4·b·h·s_q·s_kv·d, half when causal).
//!
//!     cargo bench --bench attention
//!     JOULEBENCH_BENCH_BACKENDS=sim,wgpu JOULEBENCH_BENCH_SIZES=2048 cargo bench --bench attention
//!
//! `JOULEBENCH_BENCH_SIZES` sets the sequence lengths (s_q = s_kv), non-causal.

mod common;

use joulebench_core::{AttentionShape, DeviceInfo, Op, Workload};

/// Batch, heads and head_dim for this device: a transformer layer's on a GPU,
/// a few heads on a CPU emulation.
fn layer(info: &DeviceInfo) -> (u64, u64, u64) {
    if info.cpu_emulation {
        (1, 2, 64)
    } else if info.adapter.is_some() {
        // wgpu: a consumer or integrated GPU may be small
        (1, 8, 64)
    } else {
        (4, 16, 128)
    }
}

fn attention(info: &DeviceInfo, seq: u64, causal: bool) -> Workload {
    let (batch, heads, head_dim) = layer(info);
    Workload::Attention(AttentionShape {
        batch,
        heads,
        seq_q: seq,
        seq_kv: seq,
        head_dim,
        causal,
    })
}

fn shapes(info: &DeviceInfo, sizes: Option<&[u64]>) -> Vec<Workload> {
    if let Some(sizes) = sizes {
        return sizes.iter().map(|&s| attention(info, s, false)).collect();
    }
    if info.cpu_emulation {
        return vec![attention(info, 128, false), attention(info, 256, true)];
    }
    if info.adapter.is_some() {
        return vec![attention(info, 1024, false), attention(info, 2048, true)];
    }
    vec![
        attention(info, 1024, false),
        attention(info, 4096, false),
        attention(info, 4096, true),
    ]
}

fn main() {
    std::process::exit(common::run(Op::Attention, shapes));
}
