//! Every backend joulebench can open, one row each: its name, what it is, whether
//! this machine has a device for it (what `auto` looks for, in the rows' order) and
//! how it opens. Adding a backend is a `BackendKind` variant and a row here; its
//! name, `FromStr`, `auto` and `open` all read the rows.

use crate::device::OpenDevice;
use crate::error::OpenError;
use crate::gpu::{cuda_device_found, open_cuda, open_wgpu, wgpu_gpu_adapter_found};
use crate::options::{BackendKind, OpenOptions};
use crate::sim::open_sim;

/// One backend.
pub struct BackendEntry {
    pub kind: BackendKind,
    /// As `--backend` takes it and records name it.
    pub name: &'static str,
    /// One line for help texts.
    pub description: &'static str,
    /// Whether this machine has a device of it; `auto` takes the first row that has.
    found: fn() -> bool,
    open: fn(&OpenOptions) -> Result<OpenDevice, OpenError>,
}

fn always() -> bool {
    true
}

/// The backends, in the order `auto` tries them; the last is always found.
pub const BACKENDS: &[BackendEntry] = &[
    BackendEntry {
        kind: BackendKind::Cuda,
        name: "cuda",
        description: "Our CUDA kernels and cuBLAS/cuBLASLt on NVIDIA GPUs.",
        found: cuda_device_found,
        open: open_cuda,
    },
    BackendEntry {
        kind: BackendKind::Wgpu,
        name: "wgpu",
        description: "Our WGSL kernels through wgpu (Vulkan, Metal, DX12).",
        found: wgpu_gpu_adapter_found,
        open: open_wgpu,
    },
    BackendEntry {
        kind: BackendKind::Sim,
        name: "sim",
        description: "The simulated device: runs anywhere, records say simulated.",
        found: always,
        open: open_sim,
    },
];

/// `auto`: not a backend, the choice of one.
const AUTO: &str = "auto";
const AUTO_DESCRIPTION: &str =
    "CUDA if present, else a wgpu GPU adapter, else the simulated device.";

impl BackendKind {
    fn entry(self) -> Option<&'static BackendEntry> {
        BACKENDS.iter().find(|e| e.kind == self)
    }

    pub fn name(self) -> &'static str {
        self.entry().map_or(AUTO, |e| e.name)
    }

    pub fn description(self) -> &'static str {
        self.entry().map_or(AUTO_DESCRIPTION, |e| e.description)
    }

    /// Every choice `--backend` takes: each backend, then `auto`.
    pub fn choices() -> impl Iterator<Item = BackendKind> {
        BACKENDS.iter().map(|e| e.kind).chain([BackendKind::Auto])
    }
}

impl std::str::FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        BackendKind::choices()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = BackendKind::choices().map(|k| k.name()).collect();
                format!("'{s}' is not one of {}", names.join(", "))
            })
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What `auto` means on this machine: the first backend with a device here — CUDA
/// when a CUDA device and NVRTC are there, else wgpu when it has a GPU (not a CPU
/// emulation), else the simulated device.
pub fn resolve_backend(choice: BackendKind) -> BackendKind {
    if choice != BackendKind::Auto {
        return choice;
    }
    BACKENDS
        .iter()
        .find(|e| (e.found)())
        .map_or(BackendKind::Sim, |e| e.kind)
}

/// Open the device `opts` names: its backend, the meter and controls that belong to
/// it, its clock. `auto` that finds no GPU opens the simulated device and says so.
pub fn open(opts: &OpenOptions) -> Result<OpenDevice, OpenError> {
    let kind = resolve_backend(opts.backend);
    let Some(entry) = kind.entry() else {
        return Err(OpenError::BadOption(format!("no backend '{kind}'")));
    };
    let mut dev = (entry.open)(opts)?;
    if opts.backend == BackendKind::Auto && kind == BackendKind::Sim {
        dev.notes.push(
            "no CUDA device and no GPU wgpu adapter found (see `joulebench devices`): using the simulated device; records say simulated"
                .into(),
        );
    }
    Ok(dev)
}
