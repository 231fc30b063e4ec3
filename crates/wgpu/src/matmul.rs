//! Matmul kernel variants: the naive baseline and the tiled kernel's tile shapes, how
//! one is chosen for an adapter and a shape, and the constants each is compiled with.
//! The choice is recorded (`PreparedKernel::variant`) so a record says what ran.

use crate::adapter::AdapterReport;
use joulebench_core::MatmulShape;

/// The naive kernel's workgroup: 16 × 16 invocations, one output each.
pub(crate) const NAIVE_WG: u32 = 16;

/// One tile shape of `matmul_tiled.wgsl`. A workgroup of `wg_x × wg_y` invocations
/// computes a `tile_m × tile_n` block of C; each invocation `tm` rows × `4·tn4` columns.
/// Double-buffered variants keep two copies of the workgroup tiles (see the shader).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TiledVariant {
    pub tile_k: u32,
    pub tm: u32,
    pub tn4: u32,
    pub wg_x: u32,
    pub wg_y: u32,
    pub double_buffer: bool,
}

const fn tiled(
    tile_k: u32,
    tm: u32,
    tn4: u32,
    wg_x: u32,
    wg_y: u32,
    double_buffer: bool,
) -> TiledVariant {
    TiledVariant {
        tile_k,
        tm,
        tn4,
        wg_x,
        wg_y,
        double_buffer,
    }
}

/// In order of preference when nothing was measured (the timed search, see
/// `tune.rs`, measures them all); each keeps the loads per invocation whole (see the
/// shader).
pub(crate) const TILED_VARIANTS: [TiledVariant; 6] = [
    tiled(16, 8, 2, 16, 16, true),
    // 8 × 16 outputs per invocation (128 accumulators): the largest register block;
    // k-depth 8 keeps its two buffers at 24 KB.
    tiled(8, 8, 4, 16, 16, true),
    tiled(16, 8, 2, 16, 16, false),
    // Half the columns per workgroup: twice the workgroups for mid-sized shapes.
    tiled(16, 8, 2, 8, 16, true),
    tiled(16, 4, 1, 16, 16, false),
    tiled(16, 4, 1, 8, 8, false),
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

    /// Bytes of workgroup memory: the A and B tiles (twice if double-buffered), f32.
    pub fn workgroup_bytes(&self) -> u32 {
        4 * self.buffers() * self.tile_k * (self.tile_m() + self.tile_n())
    }

    fn buffers(&self) -> u32 {
        if self.double_buffer {
            2
        } else {
            1
        }
    }

    /// Whether `shape` is a whole number of tiles, so the unchecked vec4 build is safe.
    pub fn fits(&self, s: &MatmulShape) -> bool {
        s.m % u64::from(self.tile_m()) == 0
            && s.n % u64::from(self.tile_n()) == 0
            && s.k % u64::from(self.tile_k) == 0
    }

    pub fn name(&self) -> String {
        format!(
            "tile{}x{}x{}-thread{}x{}-wg{}x{}{}",
            self.tile_m(),
            self.tile_n(),
            self.tile_k,
            self.tm,
            4 * self.tn4,
            self.wg_x,
            self.wg_y,
            if self.double_buffer { "-db" } else { "" }
        )
    }

    pub fn parse(name: &str) -> Option<TiledVariant> {
        TILED_VARIANTS.into_iter().find(|v| v.name() == name)
    }

    pub fn consts(&self) -> [(&'static str, u32); 6] {
        [
            ("TILE_K", self.tile_k),
            ("TM", self.tm),
            ("TN4", self.tn4),
            ("WG_X", self.wg_x),
            ("WG_Y", self.wg_y),
            ("BUFFERS", self.buffers()),
        ]
    }

    /// The `#if` blocks of the shader this variant selects, besides FIT.
    pub fn flags(&self) -> &'static [&'static str] {
        if self.double_buffer {
            &["DOUBLE_BUFFER"]
        } else {
            &[]
        }
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

/// The tiled variant for `shape` on `adapter` when none was measured: the first that
/// tiles the shape exactly (so the unchecked vec4 build runs) while still giving the device enough
/// workgroups to stay busy; otherwise the first whose tile is not mostly padding.
pub(crate) fn choose_tiled(adapter: &AdapterReport, s: &MatmulShape) -> Option<TiledVariant> {
    let usable: Vec<TiledVariant> = TILED_VARIANTS
        .into_iter()
        .filter(|v| v.runs_on(adapter))
        // A CPU gains nothing from hiding memory latency behind a second buffer: on
        // lavapipe the double-buffered builds measured no faster (results in
        // crates/wgpu/benches/results/lavapipe-matmul.txt), so the fixed rule keeps
        // the single-buffered choice earlier lavapipe records used.
        .filter(|v| !(adapter.cpu_emulation && v.double_buffer))
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
