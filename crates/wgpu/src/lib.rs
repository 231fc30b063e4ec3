//! joulebench's wgpu backend: our WGSL kernels (naive and tiled matmul, matmul on the
//! matrix units through cooperative matrices, fused attention) on any adapter wgpu can
//! open — Vulkan, Metal, DX12, or lavapipe on a machine without a GPU — timed with
//! timestamp queries where the adapter has them.
//!
//! ```no_run
//! let adapters = joulebench_wgpu::list_adapters()?;
//! let backend = joulebench_wgpu::open(Some("0")).map_err(|e| e.to_string())?;
//! # Ok::<(), String>(())
//! ```

mod adapter;
mod attention;
mod backend;
mod coop;
mod gpu;
mod matmul;
mod prepared;
mod quiet;
mod shader;
mod submit;
mod tune;

pub use adapter::{backends_from_env, list_adapters, AdapterReport, CooperativeMatrixShape};
pub use backend::{open, WgpuBackend, KERNEL_COOP, KERNEL_FLASH, KERNEL_NAIVE, KERNEL_TILED};
pub use gpu::FULL_CHECKS_ENV;
pub use quiet::{driver_messages, driver_messages_summary, SHOW_DRIVER_OUTPUT_ENV};
pub use submit::Submission;
pub use tune::{cache_dir, VariantSearch, SEARCH_ENV};
