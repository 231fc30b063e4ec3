//! What a compute backend (simulated, wgpu, CUDA) must offer the protocol: which
//! kernels it has and what they support, a prepared kernel that can be verified and
//! run back-to-back, and nothing else — so every backend fits without special cases.

use crate::device::DeviceInfo;
use crate::inputs::InputDistribution;
use crate::precision::Precision;
use crate::reference::CheckInputs;
use crate::workload::{Op, Workload};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("{0}")]
    Unavailable(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("shape does not fit the device: {0}")]
    DoesNotFit(String),
    #[error("kernel compilation failed: {0}")]
    Compile(String),
    #[error("device error: {0}")]
    Device(String),
}

/// A kernel a backend can run: ours or the vendor's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KernelInfo {
    /// Stable name used on the command line and in records, e.g. "wgsl-tiled", "cublas".
    pub name: String,
    pub op: Op,
    pub precisions: Vec<Precision>,
    /// A vendor library (cuBLAS, cuBLASLt) rather than one of ours.
    pub vendor: bool,
    pub description: String,
}

/// Whether a backend can run a point; an unsupported point is recorded as skipped
/// with this reason, never treated as an error.
#[derive(Clone, Debug, PartialEq)]
pub enum Support {
    Supported,
    Unsupported(String),
}

/// How long a batch of back-to-back iterations took.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunTiming {
    /// Wall clock from the first launch to the completed queue sync.
    pub wall_s: f64,
    /// GPU time from timestamp queries / CUDA events, where the backend has them.
    pub device_s: Option<f64>,
}

pub trait Backend: Send {
    /// "sim", "wgpu" or "cuda".
    fn name(&self) -> &str;
    fn device(&self) -> &DeviceInfo;
    fn kernels(&self) -> Vec<KernelInfo>;
    /// Whether `kernel` can run `workload` at `precision` here, and if not, why.
    fn support(&self, kernel: &str, precision: Precision, workload: &Workload) -> Support;
    /// Allocate buffers and compile for one point. Inputs are random normal from `seed`.
    fn prepare(
        &mut self,
        kernel: &str,
        precision: Precision,
        workload: &Workload,
        seed: u64,
    ) -> Result<Box<dyn PreparedKernel + '_>, BackendError>;
    /// As [`Backend::prepare`], with inputs drawn from `inputs`. A backend that draws
    /// only the default (random normal) inputs refuses any other distribution.
    fn prepare_with_inputs(
        &mut self,
        kernel: &str,
        precision: Precision,
        workload: &Workload,
        seed: u64,
        inputs: InputDistribution,
    ) -> Result<Box<dyn PreparedKernel + '_>, BackendError> {
        if inputs.is_default() {
            return self.prepare(kernel, precision, workload, seed);
        }
        Err(BackendError::Unsupported(format!(
            "the {} backend draws random normal inputs only, not {inputs}",
            self.name()
        )))
    }
}

pub trait PreparedKernel {
    /// Poison the output (NaN), upload `inputs`, run once, and read the whole output
    /// back as f32. Used only by [`crate::verify::verify`].
    fn run_for_check(&mut self, inputs: &CheckInputs) -> Result<Vec<f32>, BackendError>;
    /// Run `iterations` back-to-back on the prepared buffers and wait for completion.
    fn run(&mut self, iterations: u64) -> Result<RunTiming, BackendError>;
    /// The workload whose output the correctness check compares: the prepared one.
    /// Only a model backend (the simulated device) checks a reduced shape instead.
    fn check_workload(&self, workload: &Workload) -> Workload {
        *workload
    }
    /// Variant of the kernel actually chosen (tile sizes and the like), if any.
    fn variant(&self) -> Option<String> {
        None
    }
    /// Work every iteration of `run` does besides the kernel its device time covers
    /// (an L2 flush before each timed kernel, say), in words; `None` when there is
    /// none. Windows count it in their energy and their time alike.
    fn work_besides_kernel(&self) -> Option<String> {
        None
    }
}
