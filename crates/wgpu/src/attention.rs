//! Attention kernel variants: the fused kernel's block shape (queries per workgroup,
//! keys per tile, invocations per query) chosen from the adapter's workgroup memory,
//! and the uniform block the kernel reads its shape from.

use crate::adapter::AdapterReport;
use joulebench_core::AttentionShape;

/// Head dimensions the fused kernel is built for.
pub(crate) const HEAD_DIMS: [u64; 2] = [64, 128];

/// One build of `attention.wgsl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FlashVariant {
    pub head_dim: u32,
    /// Queries per workgroup.
    pub bq: u32,
    /// Keys per tile staged in workgroup memory.
    pub bkv: u32,
    /// Invocations per query; each holds head_dim / td of q and of the output.
    pub td: u32,
}

impl FlashVariant {
    pub fn invocations(&self) -> u32 {
        self.bq * self.td
    }

    /// K and V tiles (f32) and the partial dot products.
    pub fn workgroup_bytes(&self) -> u32 {
        4 * (2 * self.bkv * self.head_dim + self.bq * self.bkv * self.td)
    }

    pub fn name(&self) -> String {
        format!(
            "d{}-q{}-kv{}-split{}",
            self.head_dim, self.bq, self.bkv, self.td
        )
    }

    pub fn consts(&self) -> [(&'static str, u32); 4] {
        [
            ("HEAD_DIM", self.head_dim),
            ("BQ", self.bq),
            ("BKV", self.bkv),
            ("TD", self.td),
        ]
    }

    pub fn workgroups(&self, s: &AttentionShape) -> [u64; 3] {
        [
            s.seq_q.div_ceil(u64::from(self.bq)),
            s.batch.saturating_mul(s.heads),
            1,
        ]
    }
}

/// Every variant for `head_dim`, largest key tile first.
pub(crate) fn variants(head_dim: u32) -> Vec<FlashVariant> {
    [32, 16, 8]
        .into_iter()
        .map(|bkv| FlashVariant {
            head_dim,
            bq: 16,
            bkv,
            td: 4,
        })
        .collect()
}

/// The largest key tile that fits the adapter's workgroup memory: longer tiles mean
/// fewer barriers and more reuse of each staged key.
pub(crate) fn choose(adapter: &AdapterReport, head_dim: u32) -> Option<FlashVariant> {
    variants(head_dim).into_iter().find(|v| {
        v.workgroup_bytes() <= adapter.max_workgroup_storage_bytes
            && v.invocations() <= adapter.max_invocations_per_workgroup
    })
}

/// The kernel's `Params` uniform, laid out as in `attention.wgsl` (32 bytes).
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

    #[test]
    fn the_key_tile_follows_workgroup_memory() {
        let mut a = crate::adapter::test_report(0, "test", "DiscreteGpu", "Vulkan");
        a.max_workgroup_storage_bytes = 16384;
        assert_eq!(choose(&a, 64).map(|v| v.bkv), Some(16));
        assert_eq!(choose(&a, 128).map(|v| v.bkv), Some(8));
        a.max_workgroup_storage_bytes = 32768;
        assert_eq!(choose(&a, 64).map(|v| v.bkv), Some(32));
        assert_eq!(choose(&a, 128).map(|v| v.bkv), Some(16));
        a.max_workgroup_storage_bytes = 4096;
        assert_eq!(choose(&a, 128), None);
    }

    #[test]
    fn slices_are_whole_vec4s() {
        for d in HEAD_DIMS {
            for v in variants(d as u32) {
                assert_eq!(v.head_dim % (4 * v.td), 0, "{}", v.name());
            }
        }
    }
}
