//! joulebench's CUDA backend: our kernels compiled by NVRTC at run time for the GPU at
//! hand, cuBLAS / cuBLASLt as vendor baselines, CUDA events for device time. CUDA is
//! loaded dynamically, so this crate builds and runs everywhere; without a driver,
//! [`probe`] and [`open`] say what is missing instead of failing to link or panicking.

pub mod kernels;
pub mod nvrtc;
mod probe;

pub use probe::{probe, CudaDeviceSummary, CudaProbe};
