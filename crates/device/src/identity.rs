//! One GPU, one identity: records of a GPU measured through CUDA or wgpu carry the
//! identity its meter's library gives it (NVML: name, UUID, architecture, memory,
//! driver), so reports group them as one device.

use joulebench_core::{Backend, DeviceInfo};

/// The device as its meter's library identifies it (NVML: name, UUID, architecture,
/// memory, driver version), with what only the backend knows kept (the wgpu
/// adapter, CUDA's compute capability where NVML lacks it): the records of one GPU
/// from every backend then carry one identity, and reports group them as one device.
pub fn merged_identity(backend: &DeviceInfo, meter: DeviceInfo) -> DeviceInfo {
    DeviceInfo {
        name: meter.name,
        uuid: meter.uuid.or_else(|| backend.uuid.clone()),
        pci_bus_id: meter.pci_bus_id.or_else(|| backend.pci_bus_id.clone()),
        architecture: meter.architecture.or_else(|| backend.architecture.clone()),
        compute_capability: backend
            .compute_capability
            .clone()
            .or(meter.compute_capability),
        driver: meter.driver.or_else(|| backend.driver.clone()),
        memory_bytes: meter.memory_bytes.or(backend.memory_bytes),
        adapter: backend.adapter.clone(),
        cpu_emulation: backend.cpu_emulation,
        simulated: backend.simulated,
    }
}

/// A backend named by its meter's identity (see [`merged_identity`]); everything
/// else is the backend's own.
#[cfg_attr(not(any(feature = "cuda", feature = "wgpu")), allow(dead_code))]
pub(crate) struct Identified {
    pub(crate) inner: Box<dyn Backend>,
    pub(crate) device: DeviceInfo,
}

impl Backend for Identified {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn device(&self) -> &DeviceInfo {
        &self.device
    }
    fn kernels(&self) -> Vec<joulebench_core::KernelInfo> {
        self.inner.kernels()
    }
    fn support(
        &self,
        kernel: &str,
        precision: joulebench_core::Precision,
        workload: &joulebench_core::Workload,
    ) -> joulebench_core::Support {
        self.inner.support(kernel, precision, workload)
    }
    fn prepare(
        &mut self,
        kernel: &str,
        precision: joulebench_core::Precision,
        workload: &joulebench_core::Workload,
        seed: u64,
    ) -> Result<Box<dyn joulebench_core::PreparedKernel + '_>, joulebench_core::BackendError> {
        self.inner.prepare(kernel, precision, workload, seed)
    }
    fn prepare_with_inputs(
        &mut self,
        kernel: &str,
        precision: joulebench_core::Precision,
        workload: &joulebench_core::Workload,
        seed: u64,
        inputs: joulebench_core::InputDistribution,
    ) -> Result<Box<dyn joulebench_core::PreparedKernel + '_>, joulebench_core::BackendError> {
        self.inner
            .prepare_with_inputs(kernel, precision, workload, seed, inputs)
    }
}
