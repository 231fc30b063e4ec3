//! joulebench's CUDA backend: our kernels compiled by NVRTC at run time for the GPU at
//! hand, cuBLAS / cuBLASLt as vendor baselines, CUDA events for device time. CUDA is
//! loaded dynamically, so this crate builds and runs everywhere; without a driver,
//! [`probe`] and [`open`] say what is missing instead of failing to link or panicking.
//!
//! ```no_run
//! use joulebench_core::Backend;
//! let found = joulebench_cuda::probe();
//! if let Err(why) = &found.driver {
//!     eprintln!("no CUDA: {why}");
//! }
//! if let Ok(mut cuda) = joulebench_cuda::open(0) {
//!     cuda.set_l2_mode(joulebench_cuda::L2Mode::Cold).ok();
//!     for k in cuda.kernels() {
//!         println!("{} {:?}", k.name, k.precisions);
//!     }
//! }
//! ```

mod backend;
mod flash_backward;
mod gpu;
mod handles;
pub mod kernels;
pub mod nvrtc;
mod ours;
mod probe;
mod tensor;
mod timing;
mod vendor;

pub use backend::{open, CudaBackend};
pub use probe::{probe, CudaDeviceSummary, CudaProbe};
pub use timing::L2Mode;
