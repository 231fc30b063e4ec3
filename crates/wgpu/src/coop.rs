//! wgsl-coop, the matmul on an adapter's matrix units through wgpu's cooperative
//! matrices: which of the adapter's shapes the kernel can use (f16 inputs, f32
//! accumulation, square 8 or 16, the shapes WGSL can declare), its block shapes, and
//! why it does not run where it does not. Its tests run the kernel's tile logic on
//! the CPU, since the machines the tests run on have no matrix units.

use crate::adapter::AdapterReport;
use joulebench_core::MatmulShape;

/// Fragment sides WGSL can declare (`coop_mat8x8`, `coop_mat16x16`), largest first.
const FRAGMENTS: [u32; 2] = [16, 8];

/// One build of `matmul_coop.wgsl`: `sg_m × sg_n` subgroups of `subgroup` invocations,
/// each a 4 × 2 grid of `fragment`-sided matrices, over `bk`-deep steps of k.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct CoopVariant {
    pub fragment: u32,
    pub sg_m: u32,
    pub sg_n: u32,
    pub bk: u32,
    pub double_buffer: bool,
    /// The adapter's largest subgroup: the workgroup is `sg_m · sg_n` of them.
    pub subgroup: u32,
}

impl CoopVariant {
    pub fn tile_m(&self) -> u32 {
        self.sg_m * 4 * self.fragment
    }

    pub fn tile_n(&self) -> u32 {
        self.sg_n * 2 * self.fragment
    }

    pub fn invocations(&self) -> u32 {
        self.sg_m * self.sg_n * self.subgroup
    }

    fn buffers(&self) -> u32 {
        if self.double_buffer {
            2
        } else {
            1
        }
    }

    /// The f16 A and B blocks (rows padded by 8 halves, once or twice) and the f32
    /// scratch of one fragment per subgroup.
    pub fn workgroup_bytes(&self) -> u32 {
        let a = self.tile_m() * (self.bk + 8);
        let b = self.bk * (self.tile_n() + 8);
        2 * self.buffers() * (a + b) + 4 * self.sg_m * self.sg_n * self.fragment * self.fragment
    }

    pub fn name(&self) -> String {
        format!(
            "frag{}-tile{}x{}x{}-sg{}x{}{}",
            self.fragment,
            self.tile_m(),
            self.tile_n(),
            self.bk,
            self.sg_m,
            self.sg_n,
            if self.double_buffer { "-db" } else { "" }
        )
    }

    pub fn consts(&self) -> [(&'static str, u32); 6] {
        [
            ("F", self.fragment),
            ("SG_M", self.sg_m),
            ("SG_N", self.sg_n),
            ("BK", self.bk),
            ("SUBGROUP", self.subgroup),
            ("BUFFERS", self.buffers()),
        ]
    }

    /// The fragment types the kernel declares through aliases.
    pub fn aliases(&self) -> [(&'static str, String); 3] {
        let f = self.fragment;
        [
            ("frag_a", format!("coop_mat{f}x{f}<f16, A>")),
            ("frag_b", format!("coop_mat{f}x{f}<f16, B>")),
            ("frag_c", format!("coop_mat{f}x{f}<f32, C>")),
        ]
    }

    pub fn flags(&self, s: &MatmulShape) -> Vec<&'static str> {
        let mut flags = Vec::new();
        if self.fits(s) {
            flags.push("FIT");
        }
        if self.double_buffer {
            flags.push("DOUBLE_BUFFER");
        }
        flags
    }

    /// Whether `s` is a whole number of blocks, so the unchecked build is safe.
    pub fn fits(&self, s: &MatmulShape) -> bool {
        s.m % u64::from(self.tile_m()) == 0
            && s.n % u64::from(self.tile_n()) == 0
            && s.k % u64::from(self.bk) == 0
    }

    pub fn workgroups(&self, s: &MatmulShape) -> [u64; 3] {
        [
            s.n.div_ceil(u64::from(self.tile_n())),
            s.m.div_ceil(u64::from(self.tile_m())),
            s.batch,
        ]
    }

    pub fn runs_on(&self, adapter: &AdapterReport) -> bool {
        self.workgroup_bytes() <= adapter.max_workgroup_storage_bytes
            && self.invocations() <= adapter.max_invocations_per_workgroup
    }
}

/// The variants for an adapter whose fragments are `fragment` wide and whose largest
/// subgroup is `subgroup`, in order of preference (largest block first).
pub(crate) fn variants(fragment: u32, subgroup: u32) -> Vec<CoopVariant> {
    let v = |sg_m, sg_n, bk, double_buffer| CoopVariant {
        fragment,
        sg_m,
        sg_n,
        bk,
        double_buffer,
        subgroup,
    };
    vec![
        // 8 subgroups, 128 × 128 blocks with 16-wide fragments (46 KB double-buffered).
        v(2, 4, 32, true),
        v(2, 4, 32, false),
        // 4 subgroups: half the block, twice the workgroups.
        v(2, 2, 32, true),
        v(2, 2, 32, false),
        // 2 subgroups, for WebGPU's default 16 KB of workgroup memory (12 KB).
        v(1, 2, 32, false),
    ]
}

/// The fragment side wgsl-coop uses on `adapter`, or why it cannot run there.
pub(crate) fn fragment_for(adapter: &AdapterReport) -> Result<u32, String> {
    let shapes = &adapter.cooperative_matrix_shapes;
    if shapes.is_empty() {
        return Err("adapter offers no cooperative-matrix shapes".into());
    }
    let listed = || {
        shapes
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !adapter.cooperative_matrix {
        return Err(format!(
            "adapter lists cooperative-matrix shapes ({}) but wgpu does not enable \
             EXPERIMENTAL_COOPERATIVE_MATRIX on it (on Vulkan it also needs the Vulkan \
             memory model at device scope)",
            listed()
        ));
    }
    let fragment = FRAGMENTS.into_iter().find(|&f| {
        shapes
            .iter()
            .any(|s| s.m == f && s.n == f && s.k == f && s.ab_type == "f16" && s.c_type == "f32")
    });
    let Some(fragment) = fragment else {
        return Err(format!(
            "adapter offers cooperative-matrix shapes {} but none square 8x8x8 or \
             16x16x16 with f16 inputs and f32 accumulation (the shapes WGSL can declare)",
            listed()
        ));
    };
    if !adapter.f16 {
        return Err("wgsl-coop needs SHADER_F16, which this adapter does not offer".into());
    }
    if !adapter.subgroups || adapter.subgroup_max_size == 0 {
        return Err(
            "wgsl-coop needs subgroup operations and the adapter's subgroup size, which \
             this adapter does not report"
                .into(),
        );
    }
    Ok(fragment)
}

/// The first variant that fits the adapter, or why none does.
pub(crate) fn choose(adapter: &AdapterReport) -> Result<CoopVariant, String> {
    let fragment = fragment_for(adapter)?;
    variants(fragment, adapter.subgroup_max_size)
        .into_iter()
        .find(|v| v.runs_on(adapter))
        .ok_or_else(|| {
            format!(
                "no wgsl-coop block fits this adapter ({} invocations, {} bytes of \
                 workgroup memory, subgroups of up to {})",
                adapter.max_invocations_per_workgroup,
                adapter.max_workgroup_storage_bytes,
                adapter.subgroup_max_size
            )
        })
}

#[cfg(test)]
mod tests;
