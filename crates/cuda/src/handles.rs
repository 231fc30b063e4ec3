//! The vendor library handles a CUDA device owns: cuBLAS and cuBLASLt (with its
//! workspace), bound to the device's stream. The device (`gpu`) creates them lazily
//! and drops them before its stream; the vendor baselines (`vendor`) borrow them
//! from the device, so neither of those two imports the other.

use crate::probe;
use cudarc::cublas::{result as blas_result, sys as blas_sys};
use cudarc::cublaslt::{result as lt_result, sys as lt_sys};
use cudarc::driver::{CudaSlice, CudaStream};
use std::sync::Arc;

/// A cuBLAS handle bound to the backend's stream. Owned here rather than through
/// cudarc's `CudaBlas`, whose destructor panics if destruction fails.
pub(crate) struct Blas {
    pub(crate) handle: blas_sys::cublasHandle_t,
}

// SAFETY: a cuBLAS handle may move between threads; it is used from one at a time.
unsafe impl Send for Blas {}

impl Blas {
    pub(crate) fn new(stream: &Arc<CudaStream>) -> Result<Self, String> {
        probe::cublas_library()?;
        let handle =
            blas_result::create_handle().map_err(|e| format!("cublasCreate failed: {e:?}"))?;
        let blas = Self { handle };
        // SAFETY: valid handle and stream.
        unsafe { blas_result::set_stream(blas.handle, stream.cu_stream() as _) }
            .map_err(|e| format!("cublasSetStream failed: {e:?}"))?;
        Ok(blas)
    }
}

impl Drop for Blas {
    fn drop(&mut self) {
        // SAFETY: created by cublasCreate, destroyed once.
        let _ = unsafe { blas_result::destroy_handle(self.handle) };
    }
}

/// cuBLASLt's recommended workspace for Hopper; smaller GPUs simply use less of it.
pub(crate) const LT_WORKSPACE_BYTES: usize = 32 << 20;

/// A cuBLASLt handle and its workspace.
pub(crate) struct BlasLt {
    pub(crate) handle: lt_sys::cublasLtHandle_t,
    pub(crate) workspace: CudaSlice<u8>,
}

// SAFETY: as for `Blas`.
unsafe impl Send for BlasLt {}

impl BlasLt {
    pub(crate) fn new(stream: &Arc<CudaStream>) -> Result<Self, String> {
        probe::cublaslt_library()?;
        // SAFETY: only ever handed to cuBLASLt as scratch.
        let workspace = unsafe { stream.alloc::<u8>(LT_WORKSPACE_BYTES) }
            .map_err(|e| format!("cannot allocate the cuBLASLt workspace: {e}"))?;
        let handle =
            lt_result::create_handle().map_err(|e| format!("cublasLtCreate failed: {e:?}"))?;
        Ok(Self { handle, workspace })
    }
}

impl Drop for BlasLt {
    fn drop(&mut self) {
        // SAFETY: created by cublasLtCreate, destroyed once.
        let _ = unsafe { lt_result::destroy_handle(self.handle) };
    }
}
