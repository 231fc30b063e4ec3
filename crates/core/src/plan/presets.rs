//! The built-in sweeps: `quick` (about a minute on a large GPU) and `standard` (the
//! reference sweep), each fitted to the backend's kernels and to the device (small
//! shapes on a CPU emulation, power caps only on the simulated device).

use super::config::{AttentionSpec, LinearSpec, MatmulSpec, SweepConfig};
use crate::backend::{Backend, KernelInfo};
use crate::power::PowerCap;
use crate::precision::Precision;
use crate::protocol::ProtocolConfig;
use crate::workload::Op;
use std::collections::BTreeMap;

/// Built-in sweeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// About a minute on an H100/H200-class GPU: the vendor GEMM at each precision
    /// the device has, our GEMM beside it, fused against unfused attention.
    Quick,
    /// The reference sweep: squares 1024–8192, a transformer's linear layers at
    /// several token counts, attention at seq 1k–16k.
    Standard,
}

impl std::str::FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "quick" => Ok(Preset::Quick),
            "standard" => Ok(Preset::Standard),
            _ => Err(format!("unknown preset '{s}': expected quick or standard")),
        }
    }
}

impl SweepConfig {
    /// A built-in sweep for this backend and device. CPU emulations get small
    /// shapes, because they run a thousand times slower than a GPU; only the
    /// simulated device's presets sweep power caps (a real device's cap changes
    /// only when asked).
    pub fn preset(preset: Preset, backend: &dyn Backend) -> SweepConfig {
        let device = backend.device();
        let mut cfg = SweepConfig::default();
        let caps = if device.simulated {
            vec![
                PowerCap::Default,
                PowerCap::PercentOfDefault(80.0),
                PowerCap::PercentOfDefault(60.0),
            ]
        } else {
            vec![PowerCap::Default]
        };
        let sq = |n: u64| MatmulSpec {
            m: n,
            n,
            k: n,
            batch: 1,
        };
        let attn = |seq: u64, head_dim: u64, causal: bool| AttentionSpec {
            heads: if device.cpu_emulation {
                2
            } else {
                2048 / head_dim
            },
            seq_q: seq,
            seq_kv: None,
            head_dim,
            causal,
        };
        if device.cpu_emulation {
            cfg.matmul = vec![sq(256), sq(512)];
            cfg.attention = vec![attn(256, 64, false), attn(256, 64, true)];
            cfg.precisions = vec![Precision::F32, Precision::F16];
            cfg.kernels = quick_kernels(backend, &[]);
            cfg.batch_sizes = vec![1];
            cfg.protocol = ProtocolConfig {
                idle_baseline_s: 0.0,
                warmup_s: 0.2,
                warmup_max_s: 0.2,
                min_window_s: 0.25,
                min_windows: 2,
                max_windows: 4,
                target_rel_spread: 0.05,
                point_budget_s: 5.0,
                ..ProtocolConfig::default()
            };
            cfg.power_caps = caps;
            return cfg;
        }
        match preset {
            Preset::Quick => {
                // one large GEMM and one attention shape, the kernels that matter at
                // the precisions each has: about eight measured points
                cfg.matmul = vec![sq(8192)];
                cfg.attention = vec![attn(4096, 128, false)];
                cfg.kernel_precisions = quick_kernel_precisions(backend);
                cfg.kernels = cfg.kernel_precisions.keys().cloned().collect();
                cfg.batch_sizes = vec![1];
                cfg.protocol = quick_protocol();
            }
            Preset::Standard => {
                cfg.matmul = [1024, 2048, 4096, 8192].into_iter().map(sq).collect();
                cfg.linear = [
                    ("attn-qkv", 4096, 12288),
                    ("attn-out", 4096, 4096),
                    ("mlp-up", 4096, 14336),
                    ("mlp-down", 14336, 4096),
                ]
                .into_iter()
                .map(|(name, i, o)| LinearSpec {
                    in_features: i,
                    out_features: o,
                    seq: 512,
                    name: Some(name.into()),
                })
                .collect();
                cfg.attention = [1024, 2048, 4096, 8192, 16384]
                    .into_iter()
                    .flat_map(|s| {
                        [
                            (s, 64, false),
                            (s, 64, true),
                            (s, 128, false),
                            (s, 128, true),
                        ]
                    })
                    .map(|(s, d, c)| attn(s, d, c))
                    .collect();
                cfg.batch_sizes = vec![1, 2, 4, 8, 16];
                // the reference sweep measures every point three times, in shuffled
                // order, so its uncertainty includes what varies between visits
                cfg.repeat = Some(STANDARD_REPEAT);
            }
        }
        cfg.power_caps = caps;
        cfg
    }
}

/// How many times the standard preset measures each point.
pub const STANDARD_REPEAT: u32 = 3;

/// The quick preset's protocol: a short settling warm-up and two or three
/// one-second windows per point (about 8 s per point at most).
fn quick_protocol() -> ProtocolConfig {
    ProtocolConfig {
        idle_baseline_s: 2.0,
        warmup_s: 1.0,
        warmup_max_s: 4.0,
        // settling judged over 3 s: a quick look, not the reference's 10 s
        settle_window_s: 3.0,
        min_windows: 2,
        max_windows: 3,
        point_budget_s: 8.0,
        ..ProtocolConfig::default()
    }
}

/// The quick preset's kernels and precisions on this backend: the vendor GEMM at
/// every precision the device has, our GEMM at its main precision beside it, and
/// every attention kernel (fused and unfused) at bf16 (f16 where bf16 is absent).
/// Baseline kernels kept only for comparison (a naive matmul) are left out.
fn quick_kernel_precisions(backend: &dyn Backend) -> BTreeMap<String, Vec<Precision>> {
    let mut out = BTreeMap::new();
    let has = |k: &KernelInfo, p: Precision| k.precisions.contains(&p);
    for k in backend.kernels() {
        if k.name.contains("naive") {
            continue;
        }
        let precisions: Vec<Precision> = match (k.op, k.vendor) {
            (Op::Matmul, true) => k
                .precisions
                .iter()
                .copied()
                .filter(|p| *p != Precision::F16 || !has(&k, Precision::Bf16))
                .collect(),
            (Op::Matmul, false) => {
                // ours: its tensor-core precision and f32, where it has them
                [Precision::Bf16, Precision::F16, Precision::F32]
                    .into_iter()
                    .filter(|p| has(&k, *p))
                    .filter(|p| *p != Precision::F16 || !has(&k, Precision::Bf16))
                    .collect()
            }
            (Op::Attention, _) => [Precision::Bf16, Precision::F16]
                .into_iter()
                .find(|p| has(&k, *p))
                .into_iter()
                .collect(),
            // measured by `joulebench model`, not by a first look at a GPU
            (Op::AttentionBackward, _) => Vec::new(),
        };
        if !precisions.is_empty() {
            out.insert(k.name.clone(), precisions);
        }
    }
    out
}

/// Every kernel but the naive baselines, for the small shapes of a CPU emulation.
fn quick_kernels(backend: &dyn Backend, _: &[&str]) -> Vec<String> {
    backend
        .kernels()
        .into_iter()
        .map(|k| k.name)
        .filter(|n| !n.contains("naive"))
        .collect()
}
