//! The kernel files of kernels/cuda/ and how each kernel in them is launched. This is
//! the one place the backend and the compile test (tests/nvrtc_compile.rs) both read, and
//! every launch configuration here is also checked by a `static_assert` in the kernel
//! itself (`JB_CHECK_LAUNCH`), so ptxas's resource report is judged against what the
//! backend really launches.

/// How the backend launches one kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaunchSpec {
    /// The `extern "C"` name, `<op>_<dtype>`.
    pub kernel: &'static str,
    pub threads_per_block: u32,
    /// Dynamic shared memory per block, on top of the kernel's static shared memory.
    pub dynamic_smem_bytes: u32,
}

/// One `.cu` file: a kernel family.
#[derive(Clone, Copy, Debug)]
pub struct KernelFile {
    /// File stem, also the module's name in caches and logs.
    pub name: &'static str,
    pub source: &'static str,
    /// The oldest GPU the file compiles for (cp.async, ldmatrix and bf16 mma need sm_80).
    pub min_compute_capability: (u32, u32),
    pub kernels: &'static [LaunchSpec],
}

impl KernelFile {
    pub fn kernel(&self, name: &str) -> Option<&'static LaunchSpec> {
        self.kernels.iter().find(|k| k.kernel == name)
    }

    /// The `-D` options through which the kernels' `JB_CHECK_LAUNCH` see this table.
    pub fn launch_defines(&self) -> Vec<String> {
        self.kernels
            .iter()
            .flat_map(|k| {
                [
                    format!("-DJB_THREADS_{}={}", k.kernel, k.threads_per_block),
                    format!("-DJB_SMEM_{}={}", k.kernel, k.dynamic_smem_bytes),
                ]
            })
            .collect()
    }
}

/// Headers the kernel files include by name, supplied to NVRTC from memory.
pub const HEADERS: &[(&str, &str)] = &[(
    "jb_common.cuh",
    include_str!("../../../kernels/cuda/jb_common.cuh"),
)];

const SIMT_THREADS: u32 = 256;
pub const MATMUL_SIMT: KernelFile = KernelFile {
    name: "matmul_simt",
    source: include_str!("../../../kernels/cuda/matmul_simt.cu"),
    min_compute_capability: (5, 0),
    kernels: &[
        LaunchSpec {
            kernel: "matmul_f32",
            threads_per_block: SIMT_THREADS,
            dynamic_smem_bytes: 0,
        },
        LaunchSpec {
            kernel: "matmul_unaligned_f32",
            threads_per_block: SIMT_THREADS,
            dynamic_smem_bytes: 0,
        },
    ],
};
/// Output tile of one block of matmul_simt (rows, columns).
pub const SIMT_TILE: (u64, u64) = (128, 128);

const MMA_THREADS: u32 = 256;
/// 3 stages x (A 128x40 + B 32x136) x 2 bytes.
const MMA_SMEM: u32 = 3 * (128 * 40 + 32 * 136) * 2;
pub const MATMUL_MMA: KernelFile = KernelFile {
    name: "matmul_mma",
    source: include_str!("../../../kernels/cuda/matmul_mma.cu"),
    min_compute_capability: (8, 0),
    kernels: &[
        LaunchSpec {
            kernel: "matmul_f16",
            threads_per_block: MMA_THREADS,
            dynamic_smem_bytes: MMA_SMEM,
        },
        LaunchSpec {
            kernel: "matmul_bf16",
            threads_per_block: MMA_THREADS,
            dynamic_smem_bytes: MMA_SMEM,
        },
        LaunchSpec {
            kernel: "matmul_unaligned_f16",
            threads_per_block: MMA_THREADS,
            dynamic_smem_bytes: MMA_SMEM,
        },
        LaunchSpec {
            kernel: "matmul_unaligned_bf16",
            threads_per_block: MMA_THREADS,
            dynamic_smem_bytes: MMA_SMEM,
        },
    ],
};
/// Output tile of one block of matmul_mma (rows, columns).
pub const MMA_TILE: (u64, u64) = (128, 128);

const FLASH_THREADS: u32 = 128;
/// (Q tile 64 rows + 2 stages of K and V, 64 rows each) x (head_dim + 8) x 2 bytes.
const fn flash_smem(head_dim: u32) -> u32 {
    (64 + 4 * 64) * (head_dim + 8) * 2
}
pub const FLASH_ATTENTION: KernelFile = KernelFile {
    name: "flash_attention",
    source: include_str!("../../../kernels/cuda/flash_attention.cu"),
    min_compute_capability: (8, 0),
    kernels: &[
        LaunchSpec {
            kernel: "flash_attention_d64_f16",
            threads_per_block: FLASH_THREADS,
            dynamic_smem_bytes: flash_smem(64),
        },
        LaunchSpec {
            kernel: "flash_attention_d64_bf16",
            threads_per_block: FLASH_THREADS,
            dynamic_smem_bytes: flash_smem(64),
        },
        LaunchSpec {
            kernel: "flash_attention_d128_f16",
            threads_per_block: FLASH_THREADS,
            dynamic_smem_bytes: flash_smem(128),
        },
        LaunchSpec {
            kernel: "flash_attention_d128_bf16",
            threads_per_block: FLASH_THREADS,
            dynamic_smem_bytes: flash_smem(128),
        },
    ],
};
/// Query rows per block of flash_attention.
pub const FLASH_BLOCK_M: u64 = 64;

const SOFTMAX_THREADS: u32 = 256;
pub const SOFTMAX_ROWS: KernelFile = KernelFile {
    name: "softmax_rows",
    source: include_str!("../../../kernels/cuda/softmax_rows.cu"),
    // bf16 conversions need sm_80.
    min_compute_capability: (8, 0),
    kernels: &[
        LaunchSpec {
            kernel: "softmax_rows_f16",
            threads_per_block: SOFTMAX_THREADS,
            dynamic_smem_bytes: 0,
        },
        LaunchSpec {
            kernel: "softmax_rows_bf16",
            threads_per_block: SOFTMAX_THREADS,
            dynamic_smem_bytes: 0,
        },
    ],
};

pub const ATTENTION_BACKWARD: KernelFile = KernelFile {
    name: "attention_backward",
    source: include_str!("../../../kernels/cuda/attention_backward.cu"),
    // bf16 conversions need sm_80, as for softmax_rows.
    min_compute_capability: (8, 0),
    kernels: &[
        LaunchSpec {
            kernel: "softmax_backward_rows_f16",
            threads_per_block: SOFTMAX_THREADS,
            dynamic_smem_bytes: 0,
        },
        LaunchSpec {
            kernel: "softmax_backward_rows_bf16",
            threads_per_block: SOFTMAX_THREADS,
            dynamic_smem_bytes: 0,
        },
    ],
};

const FLASH_BWD_THREADS: u32 = 256;
/// (K, V: 64 rows; Q, dO: 64 rows) x (head_dim + 8) x 2 bytes, plus the Pᵀ and dSᵀ
/// tiles, 64 x 72 x 2 bytes each.
const fn flash_bwd_smem(head_dim: u32) -> u32 {
    4 * 64 * (head_dim + 8) * 2 + 2 * 64 * 72 * 2
}
const fn flash_bwd(kernel: &'static str, dynamic_smem_bytes: u32) -> LaunchSpec {
    LaunchSpec {
        kernel,
        threads_per_block: FLASH_BWD_THREADS,
        dynamic_smem_bytes,
    }
}
pub const FLASH_ATTENTION_BACKWARD: KernelFile = KernelFile {
    name: "flash_attention_backward",
    source: include_str!("../../../kernels/cuda/flash_attention_backward.cu"),
    min_compute_capability: (8, 0),
    kernels: &[
        flash_bwd("flash_bwd_prep_d64_f16", 0),
        flash_bwd("flash_bwd_prep_d64_bf16", 0),
        flash_bwd("flash_bwd_prep_d128_f16", 0),
        flash_bwd("flash_bwd_prep_d128_bf16", 0),
        flash_bwd("flash_bwd_d64_f16", flash_bwd_smem(64)),
        flash_bwd("flash_bwd_d64_bf16", flash_bwd_smem(64)),
        flash_bwd("flash_bwd_d128_f16", flash_bwd_smem(128)),
        flash_bwd("flash_bwd_d128_bf16", flash_bwd_smem(128)),
        flash_bwd("flash_bwd_dq_f16", 0),
        flash_bwd("flash_bwd_dq_bf16", 0),
    ],
};
/// Keys per block of flash_bwd, and query rows per block of flash_bwd_prep's 256
/// threads at head_dim D: 256 / (D / 8).
pub const FLASH_BWD_BLOCK_N: u64 = 64;
pub const fn flash_bwd_prep_rows_per_block(head_dim: u64) -> u64 {
    FLASH_BWD_THREADS as u64 / (head_dim / 8)
}
/// Elements flash_bwd_dq converts per block: 8 per thread.
pub const FLASH_BWD_DQ_PER_BLOCK: u64 = 8 * FLASH_BWD_THREADS as u64;

/// Every kernel file, for the compile test and for lookups by kernel name.
pub const FILES: &[KernelFile] = &[
    MATMUL_SIMT,
    MATMUL_MMA,
    FLASH_ATTENTION,
    SOFTMAX_ROWS,
    ATTENTION_BACKWARD,
    FLASH_ATTENTION_BACKWARD,
];

/// Largest shared memory one block may use (static + dynamic, after opting in) by
/// architecture, from the CUDA C++ Programming Guide's compute-capability table. The
/// backend asks the device itself; the compile test, which has no device, uses this.
pub fn max_smem_per_block_bytes(cc: (u32, u32)) -> u32 {
    match cc {
        (8, 0) | (8, 7) => 163 * 1024,
        (8, 6) | (8, 9) => 99 * 1024,
        (9, 0) | (10, _) => 227 * 1024,
        (12, _) => 99 * 1024,
        (7, 5) => 64 * 1024,
        (7, _) => 96 * 1024,
        _ => 48 * 1024,
    }
}

/// Registers one SM offers a block (the register file), on every architecture from sm_50.
pub const REGISTERS_PER_SM: u32 = 65536;
/// Registers one thread may use.
pub const MAX_REGISTERS_PER_THREAD: u32 = 255;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_names_are_unique_and_follow_op_dtype() {
        let mut names: Vec<&str> = FILES
            .iter()
            .flat_map(|f| f.kernels.iter().map(|k| k.kernel))
            .collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n, "duplicate kernel names");
        for name in names {
            assert!(
                ["_f32", "_f16", "_bf16"].iter().any(|s| name.ends_with(s)),
                "{name} does not end in its dtype"
            );
        }
    }

    #[test]
    fn launch_configs_fit_every_architecture_they_target() {
        for f in FILES {
            for k in f.kernels {
                assert!(k.threads_per_block % 32 == 0 && k.threads_per_block <= 1024);
                for cc in [(8, 0), (8, 6), (8, 9), (9, 0)] {
                    assert!(
                        k.dynamic_smem_bytes <= max_smem_per_block_bytes(cc),
                        "{} needs {} bytes of shared memory, sm_{}{} offers {}",
                        k.kernel,
                        k.dynamic_smem_bytes,
                        cc.0,
                        cc.1,
                        max_smem_per_block_bytes(cc)
                    );
                }
            }
        }
    }

    #[test]
    fn defines_name_every_kernel() {
        let d = MATMUL_MMA.launch_defines();
        assert!(d.contains(&"-DJB_THREADS_matmul_f16=256".to_string()));
        assert!(d.contains(&format!("-DJB_SMEM_matmul_bf16={MMA_SMEM}")));
        assert_eq!(MMA_SMEM, 56832);
        assert_eq!(flash_smem(128), 87040);
        // what flash_attention_backward.cu's Smem<D>::BYTES says next to the kernel
        assert_eq!((flash_bwd_smem(64), flash_bwd_smem(128)), (55296, 88064));
    }
}
