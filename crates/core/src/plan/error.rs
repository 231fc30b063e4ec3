//! Why a sweep config cannot be planned: a file that does not read, a kernel the
//! backend lacks, a shape that overflows, an axis that makes no points.

use crate::workload::WorkloadError;

/// A kernel named that the backend does not have.
#[derive(Debug, thiserror::Error)]
#[error("unknown kernel '{kernel}' for backend {backend}; it has: {available}")]
pub struct UnknownKernel {
    pub kernel: String,
    pub backend: String,
    pub available: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot read sweep config {path}: {message}")]
    Config { path: String, message: String },
    #[error(transparent)]
    UnknownKernel(#[from] UnknownKernel),
    #[error("invalid shape in sweep config: {0}")]
    Shape(#[from] WorkloadError),
    #[error("sweep config: {0}")]
    Invalid(String),
}
