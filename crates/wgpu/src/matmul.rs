//! Matmul kernel variants: the naive baseline and the tiled kernel's tile shapes, how
//! one is chosen for an adapter and a shape, and the constants each is compiled with.
//! The choice is recorded (`PreparedKernel::variant`) so a record says what ran.

use crate::adapter::AdapterReport;
use joulebench_core::MatmulShape;

/// The naive kernel's workgroup: 16 × 16 invocations, one output each.
pub(crate) const NAIVE_WG: u32 = 16;

/// One tile shape of `matmul_tiled.wgsl`. A workgroup of `wg_x × wg_y` invocations
/// computes a `tile_m × tile_n` block of C; each invocation `tm` rows × `4·tn4` columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TiledVariant {
    pub tile_k: u32,
    pub tm: u32,
    pub tn4: u32,
    pub wg_x: u32,
    pub wg_y: u32,
}

/// Largest first. Each keeps the loads per invocation whole (see the shader).
pub(crate) const TILED_VARIANTS: [TiledVariant; 3] = [
    TiledVariant {
        tile_k: 16,
        tm: 8,
        tn4: 2,
        wg_x: 16,
        wg_y: 16,
    },
    TiledVariant {
        tile_k: 16,
        tm: 4,
        tn4: 1,
        wg_x: 16,
        wg_y: 16,
    },
    TiledVariant {
        tile_k: 16,
        tm: 4,
        tn4: 1,
        wg_x: 8,
        wg_y: 8,
    },
];

impl TiledVariant {
    pub fn tile_m(&self) -> u32 {
        self.tm * self.wg_y
    }

    pub fn tile_n(&self) -> u32 {
        4 * self.tn4 * self.wg_x
    }

    pub fn invocations(&self) -> u32 {
        self.wg_x * self.wg_y
    }

    /// Bytes of workgroup memory: the A and B tiles, in f32.
    pub fn workgroup_bytes(&self) -> u32 {
        4 * self.tile_k * (self.tile_m() + self.tile_n())
    }

    /// Whether `shape` is a whole number of tiles, so the unchecked vec4 build is safe.
    pub fn fits(&self, s: &MatmulShape) -> bool {
        s.m % u64::from(self.tile_m()) == 0
            && s.n % u64::from(self.tile_n()) == 0
            && s.k % u64::from(self.tile_k) == 0
    }

    pub fn name(&self) -> String {
        format!(
            "tile{}x{}x{}-thread{}x{}-wg{}x{}",
            self.tile_m(),
            self.tile_n(),
            self.tile_k,
            self.tm,
            4 * self.tn4,
            self.wg_x,
            self.wg_y
        )
    }

    pub fn parse(name: &str) -> Option<TiledVariant> {
        TILED_VARIANTS.into_iter().find(|v| v.name() == name)
    }

    pub fn consts(&self) -> [(&'static str, u32); 5] {
        [
            ("TILE_K", self.tile_k),
            ("TM", self.tm),
            ("TN4", self.tn4),
            ("WG_X", self.wg_x),
            ("WG_Y", self.wg_y),
        ]
    }

    /// Whether the adapter can run this variant at all.
    pub fn runs_on(&self, adapter: &AdapterReport) -> bool {
        self.invocations() <= adapter.max_invocations_per_workgroup
            && self.workgroup_bytes() <= adapter.max_workgroup_storage_bytes
    }

    pub fn workgroups(&self, s: &MatmulShape) -> [u64; 3] {
        [
            s.n.div_ceil(u64::from(self.tile_n())),
            s.m.div_ceil(u64::from(self.tile_m())),
            s.batch,
        ]
    }
}

/// The tiled variant for `shape` on `adapter`: the largest that tiles the shape
/// exactly (so the unchecked vec4 build runs) while still giving the device enough
/// workgroups to stay busy; otherwise the largest whose tile is not mostly padding.
pub(crate) fn choose_tiled(adapter: &AdapterReport, s: &MatmulShape) -> Option<TiledVariant> {
    let usable: Vec<TiledVariant> = TILED_VARIANTS
        .into_iter()
        .filter(|v| v.runs_on(adapter))
        .collect();
    // A CPU emulation runs one workgroup per core at a time (on lavapipe the biggest
    // tile wins from 4 workgroups on); a GPU wants hundreds to fill its cores.
    let busy_workgroups: u64 = if adapter.cpu_emulation {
        std::thread::available_parallelism().map_or(4, |n| n.get() as u64)
    } else {
        128
    };
    let enough = |v: &TiledVariant| v.workgroups(s).iter().product::<u64>() >= busy_workgroups;
    let not_mostly_padding =
        |v: &TiledVariant| s.m >= u64::from(v.tile_m()) / 2 && s.n >= u64::from(v.tile_n()) / 2;
    usable
        .iter()
        .find(|v| v.fits(s) && enough(v))
        .or_else(|| usable.iter().find(|v| v.fits(s)))
        .or_else(|| usable.iter().find(|v| enough(v) && not_mostly_padding(v)))
        .or_else(|| usable.last())
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(m: u64, n: u64, k: u64) -> MatmulShape {
        MatmulShape { batch: 1, m, n, k }
    }

    fn adapter(cpu: bool, storage: u32) -> AdapterReport {
        let device_type = if cpu { "Cpu" } else { "DiscreteGpu" };
        let mut a = crate::adapter::test_report(0, "test", device_type, "Vulkan");
        a.max_workgroup_storage_bytes = storage;
        a
    }

    #[test]
    fn variants_keep_loads_whole() {
        for v in TILED_VARIANTS {
            let threads = v.invocations();
            assert_eq!(v.tile_k % 4, 0);
            assert_eq!((v.tile_m() * v.tile_k / 4) % threads, 0, "{}", v.name());
            assert_eq!((v.tile_k * v.tile_n() / 4) % threads, 0, "{}", v.name());
            assert_eq!(TiledVariant::parse(&v.name()), Some(v));
        }
    }

    #[test]
    fn a_gpu_gets_big_tiles_on_big_shapes() {
        let v = choose_tiled(&adapter(false, 16384), &shape(4096, 4096, 4096)).unwrap();
        assert_eq!((v.tile_m(), v.tile_n()), (128, 128));
        assert!(v.fits(&shape(4096, 4096, 4096)));
    }

    #[test]
    fn exact_tiling_is_preferred() {
        let s = shape(192, 192, 64);
        let v = choose_tiled(&adapter(false, 16384), &s).unwrap();
        assert!(v.fits(&s), "{}", v.name());
    }

    #[test]
    fn small_workgroup_memory_rules_out_big_tiles() {
        let v = choose_tiled(&adapter(false, 8192), &shape(4096, 4096, 4096)).unwrap();
        assert!(v.workgroup_bytes() <= 8192);
    }

    #[test]
    fn ragged_shapes_still_get_a_variant() {
        let v = choose_tiled(&adapter(true, 32768), &shape(33, 47, 29)).unwrap();
        assert!(!v.fits(&shape(33, 47, 29)));
        assert_eq!(v.tile_m(), 32);
    }
}
