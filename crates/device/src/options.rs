//! What to open: the backend and, for each kind of device, which one and how its
//! meter reads — plain options a command line, a bench or a notebook fills in.

use joulebench_energy::nvml::MeterMode;
use joulebench_energy::sim;
use std::time::Duration;

/// Which backend to open. Each is one row of the registry (`registry.rs`), which
/// gives its name, what `auto` looks for and how it opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// The simulated device: runs anywhere, records say simulated.
    Sim,
    /// Our WGSL kernels through wgpu (Vulkan, Metal, DX12).
    Wgpu,
    /// Our CUDA kernels and cuBLAS/cuBLASLt on NVIDIA GPUs.
    Cuda,
    /// CUDA if present, else a wgpu GPU adapter, else the simulated device.
    Auto,
}

/// What to open.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    pub backend: BackendKind,
    pub sim_profile: String,
    /// Which simulated GPU of a node this is (each gets its own UUID).
    pub sim_index: usize,
    pub adapter: Option<String>,
    pub cuda_device: usize,
    /// The NVML energy source; `None` turns the energy meter off (time only).
    pub meter: Option<MeterMode>,
    pub sample_interval: Duration,
    /// Flush L2 before every timed iteration (CUDA).
    pub cold_l2: bool,
    pub seed: u64,
}

impl OpenOptions {
    /// The defaults of `joulebench sweep`: sim-h200, the first adapter or CUDA
    /// device, NVML's meter chosen automatically, 10 ms power sampling, seed 42.
    pub fn new(backend: BackendKind) -> OpenOptions {
        OpenOptions {
            backend,
            sim_profile: sim::DEFAULT_PROFILE.into(),
            sim_index: 0,
            adapter: None,
            cuda_device: 0,
            meter: Some(MeterMode::Auto),
            sample_interval: Duration::from_millis(10),
            cold_l2: false,
            seed: 42,
        }
    }
}
