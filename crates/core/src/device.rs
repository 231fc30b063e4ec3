//! Who a record was measured on: enough identity to tell two GPUs apart and to
//! match the same GPU across CUDA, wgpu and NVML (by UUID or PCI bus id).

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// Marketing name, e.g. "NVIDIA H100 80GB HBM3" or "sim-h100 (simulated)".
    pub name: String,
    pub uuid: Option<String>,
    pub pci_bus_id: Option<String>,
    /// e.g. "Hopper", "Ada", "llvmpipe".
    pub architecture: Option<String>,
    /// e.g. "9.0".
    pub compute_capability: Option<String>,
    pub driver: Option<String>,
    pub memory_bytes: Option<u64>,
    /// wgpu adapter details where the backend is wgpu.
    pub adapter: Option<AdapterInfo>,
    /// A CPU emulation (lavapipe, llvmpipe, SwiftShader): its numbers are not a GPU's.
    pub cpu_emulation: bool,
    /// The simulated device: its numbers come from a model, not a measurement.
    pub simulated: bool,
}

impl DeviceInfo {
    /// The key results are grouped by: one physical (or simulated) device.
    pub fn key(&self) -> String {
        match (&self.uuid, &self.pci_bus_id) {
            (Some(u), _) => format!("{} [{}]", self.name, u),
            (None, Some(p)) => format!("{} [{}]", self.name, p),
            _ => self.name.clone(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AdapterInfo {
    pub name: String,
    /// Vulkan, Metal, Dx12, Gl.
    pub backend: String,
    pub driver: String,
    pub driver_info: String,
    /// DiscreteGpu, IntegratedGpu, VirtualGpu, Cpu, Other.
    pub device_type: String,
    pub vendor_id: u32,
    pub device_id: u32,
}
