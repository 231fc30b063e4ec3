//! Attention kernel variants: the two builds of the fused kernel (the matmul-shaped
//! `attention_tiled.wgsl`, and `attention_split.wgsl`, which splits each query over a
//! few invocations), their block shapes, the choice for an adapter, and the uniform
//! block both read their shape from.

use crate::adapter::AdapterReport;
use crate::gpu::Checks;
use crate::shader;
use joulebench_core::AttentionShape;

/// Head dimensions the fused kernels are built for.
pub(crate) const HEAD_DIMS: [u64; 2] = [64, 128];

/// One build of `attention_split.wgsl`: each query served by `td` invocations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct SplitVariant {
    pub head_dim: u32,
    /// Queries per workgroup.
    pub bq: u32,
    /// Keys per tile staged in workgroup memory.
    pub bkv: u32,
    /// Invocations per query; each holds head_dim / td of q and of the output.
    pub td: u32,
}

/// One build of `attention_tiled.wgsl`: a block of `tq·wg_y` queries by `4·tk4·wg_x`
/// keys per step, each invocation `tq` rows of scores (`4·tk4` keys wide) and of the
/// output (`4·td4` wide, with `4·td4·wg_x = head_dim`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TiledFlashVariant {
    pub head_dim: u32,
    pub tq: u32,
    pub tk4: u32,
    pub wg_x: u32,
    pub wg_y: u32,
    /// Slice of head_dim staged per step of Q·Kᵀ.
    pub dk: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum FlashVariant {
    Tiled(TiledFlashVariant),
    Split(SplitVariant),
}

impl TiledFlashVariant {
    pub fn bq(&self) -> u32 {
        self.tq * self.wg_y
    }

    pub fn bkv(&self) -> u32 {
        4 * self.tk4 * self.wg_x
    }

    pub fn td4(&self) -> u32 {
        self.head_dim / 4 / self.wg_x
    }

    /// The stage (Q and Kᵀ slices, or the V tile), the P tile and the row exchange, f32.
    pub fn workgroup_bytes(&self) -> u32 {
        let s_slices = (self.bq() + self.bkv()) * self.dk;
        let v_tile = self.bkv() * self.head_dim;
        4 * (s_slices.max(v_tile) + self.bq() * self.bkv() + self.bq() * self.wg_x)
    }

    /// Whether the constants make a valid build: whole vec4s, head_dim split evenly
    /// over the invocation columns, whole slices.
    fn is_valid(&self) -> bool {
        self.wg_x > 0
            && self.head_dim % (4 * self.wg_x) == 0
            && self.dk % 4 == 0
            && self.dk > 0
            && self.head_dim % self.dk == 0
            && self.tq > 0
            && self.tk4 > 0
    }
}

impl FlashVariant {
    pub fn invocations(&self) -> u32 {
        match self {
            FlashVariant::Tiled(v) => v.wg_x * v.wg_y,
            FlashVariant::Split(v) => v.bq * v.td,
        }
    }

    pub fn workgroup_bytes(&self) -> u32 {
        match self {
            FlashVariant::Tiled(v) => v.workgroup_bytes(),
            // K and V tiles (f32) and the partial dot products.
            FlashVariant::Split(v) => 4 * (2 * v.bkv * v.head_dim + v.bq * v.bkv * v.td),
        }
    }

    /// Queries per workgroup.
    fn queries_per_workgroup(&self) -> u32 {
        match self {
            FlashVariant::Tiled(v) => v.bq(),
            FlashVariant::Split(v) => v.bq,
        }
    }

    pub fn name(&self) -> String {
        match self {
            FlashVariant::Tiled(v) => format!(
                "d{}-q{}-kv{}-dk{}-thread{}x{}x{}-wg{}x{}",
                v.head_dim,
                v.bq(),
                v.bkv(),
                v.dk,
                v.tq,
                4 * v.tk4,
                4 * v.td4(),
                v.wg_x,
                v.wg_y
            ),
            FlashVariant::Split(v) => {
                format!("d{}-q{}-kv{}-split{}", v.head_dim, v.bq, v.bkv, v.td)
            }
        }
    }

    /// The kernel file this variant specialises.
    pub fn source(&self) -> &'static str {
        match self {
            FlashVariant::Tiled(_) => shader::ATTENTION_TILED,
            FlashVariant::Split(_) => shader::ATTENTION_SPLIT,
        }
    }

    pub fn consts(&self) -> Vec<(&'static str, u32)> {
        match self {
            FlashVariant::Tiled(v) => vec![
                ("HEAD_DIM", v.head_dim),
                ("TQ", v.tq),
                ("TK4", v.tk4),
                ("TD4", v.td4()),
                ("WG_X", v.wg_x),
                ("WG_Y", v.wg_y),
                ("DK", v.dk),
            ],
            FlashVariant::Split(v) => vec![
                ("HEAD_DIM", v.head_dim),
                ("BQ", v.bq),
                ("BKV", v.bkv),
                ("TD", v.td),
            ],
        }
    }

    pub fn workgroups(&self, s: &AttentionShape) -> [u64; 3] {
        [
            s.seq_q.div_ceil(u64::from(self.queries_per_workgroup())),
            s.batch.saturating_mul(s.heads),
            1,
        ]
    }

    /// The tiled kernel's loops are bounded by constants and the shape, and it divides
    /// only by constants: its loops need no runtime bounding (which would stop the
    /// driver from unrolling them). The split kernel keeps every check.
    pub fn checks(&self) -> Checks {
        match self {
            FlashVariant::Tiled(_) => Checks::LoopsTrusted,
            FlashVariant::Split(_) => Checks::Full,
        }
    }

    pub fn runs_on(&self, adapter: &AdapterReport) -> bool {
        self.workgroup_bytes() <= adapter.max_workgroup_storage_bytes
            && self.invocations() <= adapter.max_invocations_per_workgroup
    }
}

/// Every variant for `head_dim`, in order of preference: the matmul-shaped kernel
/// (largest blocks first), then the split kernel (largest key tile first). Each
/// block shape is listed for the head_dims where it measured best among those that
/// fit a given workgroup memory (on lavapipe, 8 rows per invocation won at head_dim
/// 64 and lost at 128, where its output block no longer stays in registers).
pub(crate) fn variants(head_dim: u32) -> Vec<FlashVariant> {
    let tiled = |tq, tk4, wg_x, wg_y, dk| {
        FlashVariant::Tiled(TiledFlashVariant {
            head_dim,
            tq,
            tk4,
            wg_x,
            wg_y,
            dk,
        })
    };
    let mut all: Vec<FlashVariant> = match head_dim {
        64 => vec![
            // 64 queries × 64 keys, 16 × 16 invocations (37 KB of workgroup memory).
            tiled(4, 1, 16, 16, 32),
            // 64 queries × 32 keys (23 KB).
            tiled(8, 1, 8, 8, 32),
            tiled(4, 1, 8, 16, 32),
            // 32 queries × 32 keys, for small workgroup memories (13 KB).
            tiled(4, 1, 8, 8, 16),
        ],
        _ => vec![
            // 64 queries × 32 keys, 8 × 16 invocations (27 KB).
            tiled(4, 1, 8, 16, 32),
            // 32 queries × 32 keys (22 KB).
            tiled(4, 1, 8, 8, 16),
        ],
    };
    all.retain(|v| matches!(v, FlashVariant::Tiled(t) if t.is_valid()));
    all.extend([32, 16, 8].into_iter().map(|bkv| {
        FlashVariant::Split(SplitVariant {
            head_dim,
            bq: 16,
            bkv,
            td: 4,
        })
    }));
    all
}

/// The first variant, in order of preference, that fits the adapter's workgroup
/// memory and invocation limits.
pub(crate) fn choose(adapter: &AdapterReport, head_dim: u32) -> Option<FlashVariant> {
    variants(head_dim).into_iter().find(|v| v.runs_on(adapter))
}

/// The kernels' `Params` uniform, laid out as in both kernel files (32 bytes).
pub(crate) fn params_bytes(s: &AttentionShape) -> Vec<u8> {
    let scale_log2 = std::f32::consts::LOG2_E / (s.head_dim as f32).sqrt();
    let words: [u32; 8] = [
        (s.batch * s.heads) as u32,
        s.seq_q as u32,
        s.seq_kv as u32,
        u32::from(s.causal),
        scale_log2.to_bits(),
        0,
        0,
        0,
    ];
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adapter(storage: u32) -> AdapterReport {
        let mut a = crate::adapter::test_report(0, "test", "DiscreteGpu", "Vulkan");
        a.max_workgroup_storage_bytes = storage;
        a
    }

    #[test]
    fn the_block_follows_workgroup_memory() {
        for d in HEAD_DIMS {
            let d = d as u32;
            let mut last = u32::MAX;
            for storage in [65536, 49152, 32768, 24576, 16384] {
                let v = choose(&adapter(storage), d).unwrap();
                assert!(v.workgroup_bytes() <= storage, "{}", v.name());
                assert!(v.workgroup_bytes() <= last, "{}", v.name());
                last = v.workgroup_bytes();
                // The matmul-shaped kernel wherever it fits; WebGPU's default 16 KB
                // is too little for its head_dim 128 blocks.
                let tiled = matches!(v, FlashVariant::Tiled(_));
                assert_eq!(tiled, storage >= 24576 || d == 64, "{storage} {}", v.name());
            }
        }
        assert_eq!(choose(&adapter(1024), 128), None);
    }

    #[test]
    fn tiled_variants_tile_head_dim_exactly() {
        for d in HEAD_DIMS {
            for v in variants(d as u32) {
                match v {
                    FlashVariant::Tiled(t) => {
                        assert_eq!(4 * t.td4() * t.wg_x, t.head_dim, "{}", v.name());
                        assert_eq!(t.head_dim % t.dk, 0, "{}", v.name());
                    }
                    FlashVariant::Split(s) => {
                        assert_eq!(s.head_dim % (4 * s.td), 0, "{}", v.name())
                    }
                }
            }
        }
    }

    #[test]
    fn names_are_unique_and_families_tell_the_kernels_apart() {
        let mut names: Vec<String> = HEAD_DIMS
            .iter()
            .flat_map(|&d| variants(d as u32))
            .map(|v| v.name())
            .collect();
        let count = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), count);
        // Names recorded before the tiled kernel existed still mean the split kernel.
        assert!(names.contains(&"d128-q16-kv32-split4".to_owned()));
    }
}
