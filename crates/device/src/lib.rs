//! Opens the device a sweep, a bench or your own code runs on: its backend, energy
//! meter, power control and clock, from plain options. This is the one place that
//! knows which crate provides which part, and where a meter is matched to a CUDA or
//! wgpu device — NVML by UUID or PCI bus id, amdsmi and hwmon by PCI address, never
//! by index — with the host's RAPL beside it. The `joulebench` command line, the
//! criterion benches and the examples all open devices through it.
//!
//! Each GPU backend is a cargo feature (`cuda`, `wgpu`, both on by default), so a
//! program that needs one builds only that one; the simulated device is always
//! there. Opening a backend this build lacks is an [`OpenError::Unavailable`].
//!
//! ```
//! use joulebench_device::{open, BackendKind, OpenOptions};
//!
//! let dev = open(&OpenOptions::new(BackendKind::Sim)).map_err(|e| e.to_string())?;
//! assert!(dev.backend.device().simulated);
//! # Ok::<(), String>(())
//! ```

use joulebench_core::meter::NoMeter;
use joulebench_core::{
    Backend, Clock, ClockControl, DeviceInfo, EnergyMeter, PowerControl, PowerError,
};
use joulebench_energy::attach::GuardTarget;
use joulebench_energy::guard::{default_state_dir, GuardConfig, PowerGuard};
use joulebench_energy::nvml::{
    self, DeviceIdentity, DeviceMatch, MeterMode, NvmlClockControl, NvmlDevice, NvmlPowerControl,
};
use joulebench_energy::sim::{self, SimDevice};
use std::sync::Arc;
use std::time::Duration;

pub mod gpus;

/// Which backend to open.
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

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Sim => "sim",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Cuda => "cuda",
            BackendKind::Auto => "auto",
        }
    }
}

impl std::str::FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sim" => Ok(BackendKind::Sim),
            "wgpu" => Ok(BackendKind::Wgpu),
            "cuda" => Ok(BackendKind::Cuda),
            "auto" => Ok(BackendKind::Auto),
            other => Err(format!("'{other}' is not one of sim, wgpu, cuda, auto")),
        }
    }
}

/// Why a device could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// A bad option: an unknown simulated profile and the like.
    #[error("{0}")]
    BadOption(String),
    /// The backend's driver, library or device is missing or failed.
    #[error("{backend}: {message}")]
    Unavailable {
        backend: &'static str,
        message: String,
    },
    /// NVML (or its fake) could not be opened to control the device's power.
    #[error("{0}")]
    PowerControl(String),
    /// The power guard could not be put in place (bad state directory or file, a
    /// pending restore, a change that was not allowed).
    #[error(transparent)]
    Guard(#[from] PowerError),
    #[error("no directory for the power state file: set JOULEBENCH_STATE_DIR or HOME")]
    NoStateDir,
}

impl OpenError {
    /// Bad input (a wrong option, or a state a user must fix), as opposed to a
    /// missing driver or a failing device.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            OpenError::BadOption(_) | OpenError::Guard(_) | OpenError::NoStateDir
        )
    }
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

pub struct OpenDevice {
    pub backend: Box<dyn Backend>,
    pub meter: Box<dyn EnergyMeter>,
    /// The power control for reads and, on the simulated device, changes.
    pub power: Option<Box<dyn PowerControl>>,
    /// Locks the GPU's clocks (NVML, the simulated device); `None` where it cannot.
    /// Once the guard is armed on an NVML device, the guard's clock handle.
    pub clocks: Option<Box<dyn ClockControl>>,
    /// Replaces `power` (and routes `clocks` through itself) once a sweep asks for
    /// caps or locked clocks on an NVML device: it writes the state file before the
    /// first change and restores on every exit path.
    pub guard: Option<PowerGuard>,
    pub clock: Arc<dyn Clock>,
    /// Lines worth telling the user before the sweep (which meter, and why).
    pub notes: Vec<String>,
    nvml: Option<(Arc<dyn NvmlDevice>, DeviceIdentity)>,
    /// An AMD GPU's power cap (amdsmi or hwmon), for the guard.
    vendor_guard: Option<GuardTarget>,
}

impl OpenDevice {
    pub fn power_mut(&mut self) -> Option<&mut dyn PowerControl> {
        match (&mut self.guard, &mut self.power) {
            (Some(g), _) => Some(g as &mut dyn PowerControl),
            (None, Some(p)) => Some(p.as_mut()),
            _ => None,
        }
    }

    /// The clock control: the guard's once armed on an NVML device, else the device's own.
    pub fn clocks_mut(&mut self) -> Option<&mut dyn ClockControl> {
        match &mut self.clocks {
            Some(c) => Some(c.as_mut()),
            None => None,
        }
    }

    /// The device as its power and clock controls (and so state files and the
    /// per-GPU lock) name it, where it has controls that change a real (or faked) GPU.
    pub fn control_identity(&self) -> Option<DeviceInfo> {
        match (&self.nvml, &self.vendor_guard) {
            (Some((_, id)), _) => Some(id.to_device_info()),
            (None, Some(t)) => Some(t.device.clone()),
            _ => None,
        }
    }

    /// Whether changing this device's limit changes a real (or NVML-faked) GPU and
    /// so needs `--allow-power-changes`.
    pub fn power_needs_permission(&self) -> bool {
        self.nvml.is_some() || self.vendor_guard.is_some()
    }

    /// Put the power-limit guard in place before a capped sweep.
    pub fn arm_power_guard(&mut self, allow_changes: bool) -> Result<(), OpenError> {
        self.arm_guard(allow_changes, false)
    }

    /// Put the guard in place before a sweep that caps the power or locks clocks;
    /// on an NVML device it takes over the clock control too.
    pub fn arm_guard(
        &mut self,
        allow_changes: bool,
        allow_clock_changes: bool,
    ) -> Result<(), OpenError> {
        let dir = default_state_dir().ok_or(OpenError::NoStateDir);
        let Some((dev, id)) = &self.nvml else {
            if let Some(t) = self.vendor_guard.take() {
                let cfg = GuardConfig::new(t.device, t.device_kind, &dir?, allow_changes);
                self.guard = Some(PowerGuard::new(t.control, cfg)?);
                self.power = None;
            }
            return Ok(());
        };
        let dir = dir?;
        let cfg = GuardConfig::new(id.to_device_info(), id.device_kind(), &dir, allow_changes)
            .with_clock_changes(allow_clock_changes);
        let guard = PowerGuard::new_with_clocks(
            Box::new(NvmlPowerControl::new(dev.clone())),
            Some(Box::new(NvmlClockControl::new(dev.clone()))),
            cfg,
        )?;
        self.power = None;
        // the guard's clock handle: every lock goes through the guard, which resets it
        self.clocks = Some(Box::new(guard.clock_handle()));
        self.guard = Some(guard);
        Ok(())
    }
}

pub fn open(opts: &OpenOptions) -> Result<OpenDevice, OpenError> {
    match opts.backend {
        BackendKind::Sim => open_sim(opts),
        BackendKind::Wgpu => open_wgpu(opts),
        BackendKind::Cuda => open_cuda(opts),
        BackendKind::Auto => match resolve_backend(BackendKind::Auto) {
            BackendKind::Cuda => open_cuda(opts),
            BackendKind::Wgpu => open_wgpu(opts),
            _ => {
                let mut dev = open_sim(opts)?;
                dev.notes.push(
                    "no CUDA device and no GPU wgpu adapter found (see `joulebench devices`): using the simulated device; records say simulated"
                        .into(),
                );
                Ok(dev)
            }
        },
    }
}

/// What `auto` means on this machine: CUDA when a CUDA device and NVRTC are there,
/// else wgpu when it has a GPU (not a CPU emulation), else the simulated device.
pub fn resolve_backend(choice: BackendKind) -> BackendKind {
    if choice != BackendKind::Auto {
        return choice;
    }
    if cuda_device_found() {
        return BackendKind::Cuda;
    }
    if wgpu_gpu_adapter_found() {
        BackendKind::Wgpu
    } else {
        BackendKind::Sim
    }
}

#[cfg(feature = "cuda")]
fn cuda_device_found() -> bool {
    let cuda = joulebench_cuda::probe();
    cuda.driver.is_ok() && cuda.nvrtc.is_ok() && !cuda.devices.is_empty()
}

#[cfg(not(feature = "cuda"))]
fn cuda_device_found() -> bool {
    false
}

#[cfg(feature = "wgpu")]
fn wgpu_gpu_adapter_found() -> bool {
    joulebench_wgpu::list_adapters()
        .map(|a| a.iter().any(|r| !r.cpu_emulation))
        .unwrap_or(false)
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_gpu_adapter_found() -> bool {
    false
}

/// Opening a backend this build was made without.
#[cfg(not(all(feature = "cuda", feature = "wgpu")))]
fn not_built(backend: &'static str, feature: &str) -> OpenError {
    OpenError::Unavailable {
        backend,
        message: format!(
            "this build has no {backend} backend: build joulebench-device with its `{feature}` feature"
        ),
    }
}

fn open_sim(opts: &OpenOptions) -> Result<OpenDevice, OpenError> {
    let dev = SimDevice::open(&opts.sim_profile, opts.sim_index, opts.seed)
        .map_err(|e| OpenError::BadOption(e.to_string()))?;
    let mut notes = vec![format!(
        "simulated device {}: {}",
        opts.sim_profile,
        sim::profile(&opts.sim_profile)
            .map(|p| p.description)
            .unwrap_or("")
    )];
    let info = dev.backend.device().clone();
    // Tests drive the guarded NVML power path with a fake device in a state file;
    // the simulated device then keeps its own meter and clock.
    let nvml = match nvml::fake_in_use() {
        true => {
            let (dev_nvml, id) = match_nvml(&info).map_err(OpenError::PowerControl)?;
            notes.push(format!("power control: fake NVML device {}", id.describe()));
            Some((dev_nvml, id))
        }
        false => None,
    };
    let meter: Box<dyn EnergyMeter> = match opts.meter {
        Some(_) => Box::new(dev.meter),
        None => Box::new(NoMeter {
            reason: "energy meter turned off with --meter none".into(),
        }),
    };
    Ok(OpenDevice {
        clock: dev.clock,
        backend: Box::new(dev.backend),
        meter,
        power: match &nvml {
            Some((d, _)) => Some(Box::new(NvmlPowerControl::new(d.clone()))),
            None => Some(Box::new(dev.power)),
        },
        clocks: match &nvml {
            Some((d, _)) => Some(Box::new(NvmlClockControl::new(d.clone()))),
            None => Some(Box::new(dev.clocks)),
        },
        guard: None,
        notes,
        nvml,
        vendor_guard: None,
    })
}

#[cfg(not(feature = "wgpu"))]
fn open_wgpu(_opts: &OpenOptions) -> Result<OpenDevice, OpenError> {
    Err(not_built("wgpu", "wgpu"))
}

#[cfg(feature = "wgpu")]
fn open_wgpu(opts: &OpenOptions) -> Result<OpenDevice, OpenError> {
    let backend =
        joulebench_wgpu::open(opts.adapter.as_deref()).map_err(|e| OpenError::Unavailable {
            backend: "wgpu",
            message: e.to_string(),
        })?;
    let mut notes = Vec::new();
    let info = backend.device().clone();
    if info.cpu_emulation {
        notes.push(format!(
            "wgpu adapter '{}' is a CPU emulation: its times are not a GPU's, and it has no energy meter",
            info.name
        ));
    }
    with_nvml(Box::new(backend), opts, notes)
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(_opts: &OpenOptions) -> Result<OpenDevice, OpenError> {
    Err(not_built("CUDA", "cuda"))
}

#[cfg(feature = "cuda")]
fn open_cuda(opts: &OpenOptions) -> Result<OpenDevice, OpenError> {
    let cuda_error = |e: joulebench_core::BackendError| OpenError::Unavailable {
        backend: "CUDA",
        message: e.to_string(),
    };
    let mut backend = joulebench_cuda::open(opts.cuda_device).map_err(cuda_error)?;
    let mut notes = Vec::new();
    if opts.cold_l2 {
        backend
            .set_l2_mode(joulebench_cuda::L2Mode::Cold)
            .map_err(cuda_error)?;
        notes.push("L2 flushed before every timed iteration (cold)".into());
    }
    with_nvml(Box::new(backend), opts, notes)
}

/// Find the NVML device that is `info`, by UUID or PCI bus id.
fn match_nvml(info: &DeviceInfo) -> Result<(Arc<dyn NvmlDevice>, DeviceIdentity), String> {
    let wanted = DeviceMatch::from_device_info(info)
        .ok_or_else(|| format!("{} has no UUID or PCI bus id to find it in NVML", info.name))?;
    let dev = nvml::open_device(&wanted).map_err(|e| format!("NVML: {e}"))?;
    let id = dev.identity().map_err(|e| format!("NVML: {e}"))?;
    Ok((dev, id))
}

/// Attach NVML's meter and power control to a real backend, or say why there is none.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn with_nvml(
    backend: Box<dyn Backend>,
    opts: &OpenOptions,
    mut notes: Vec<String>,
) -> Result<OpenDevice, OpenError> {
    use joulebench_core::SystemClock;
    use joulebench_energy::attach::{self, AttachOptions};
    use joulebench_energy::nvml::SamplingConfig;
    let info = backend.device().clone();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let no_meter = |reason: String| -> Box<dyn EnergyMeter> { Box::new(NoMeter { reason }) };
    let mut vendor_guard = None;
    let mut clocks: Option<Box<dyn ClockControl>> = None;
    // a test may pair a CPU emulation with a fixture GPU (JOULEBENCH_TEST_DEVICE_PCI)
    let emulated = info.cpu_emulation && attach::test_device_pci().is_none();
    let (meter, power, nvml): (Box<dyn EnergyMeter>, Option<Box<dyn PowerControl>>, _) =
        match (emulated, match_nvml(&info)) {
            (true, _) => (
                no_meter("a CPU emulation has no energy meter".into()),
                None,
                None,
            ),
            (false, Err(nvml_reason)) => {
                let how = AttachOptions {
                    meter: opts.meter.is_some(),
                    sample_interval: opts.sample_interval,
                };
                match attach::attach_vendor_meter(&info, how) {
                    Ok(a) => {
                        notes.extend(a.notes);
                        vendor_guard = a.guard_target;
                        (a.meter, a.power, None)
                    }
                    Err(reasons) => {
                        let reason = format!("{nvml_reason}; {}", reasons.join("; "));
                        notes.push(format!(
                            "no energy meter: {reason}; time is measured, energy is not"
                        ));
                        (no_meter(reason), None, None)
                    }
                }
            }
            (false, Ok((dev, id))) => {
                clocks = Some(Box::new(NvmlClockControl::new(dev.clone())));
                let power: Box<dyn PowerControl> = Box::new(NvmlPowerControl::new(dev.clone()));
                let sampling = SamplingConfig {
                    interval: opts.sample_interval,
                };
                let meter = match opts.meter {
                    None => {
                        notes.push(
                            "energy meter off (--meter none): time is measured, energy is not"
                                .into(),
                        );
                        no_meter("energy meter turned off with --meter none".into())
                    }
                    Some(mode) => match nvml::open_meter(dev.clone(), mode, sampling) {
                        Ok(m) => {
                            notes.push(format!("energy meter: NVML on {}", id.describe()));
                            notes.extend(m.note);
                            m.meter
                        }
                        Err(e) => {
                            notes.push(format!(
                                "no energy meter: {e}; time is measured, energy is not"
                            ));
                            no_meter(e.to_string())
                        }
                    },
                };
                (meter, Some(power), Some((dev, id)))
            }
        };
    let meter = if opts.meter.is_some() && !emulated {
        let (meter, note) = attach::attach_host(meter);
        notes.push(note);
        meter
    } else {
        meter
    };
    // one GPU, one identity: records from every backend name it as NVML does
    let backend: Box<dyn Backend> = match &nvml {
        Some((_, id)) if !id.fake => Box::new(Identified {
            device: merged_identity(&info, id.to_device_info()),
            inner: backend,
        }),
        _ => backend,
    };
    Ok(OpenDevice {
        backend,
        meter,
        power,
        clocks,
        guard: None,
        clock,
        notes,
        nvml,
        vendor_guard,
    })
}

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
#[cfg(any(feature = "cuda", feature = "wgpu"))]
struct Identified {
    inner: Box<dyn Backend>,
    device: DeviceInfo,
}

#[cfg(any(feature = "cuda", feature = "wgpu"))]
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

#[cfg(test)]
mod tests {
    use super::*;
    use joulebench_core::device::AdapterInfo;

    /// Run with `--no-default-features`: a backend left out of the build is a
    /// message, and `auto` falls back to the simulated device.
    #[cfg(not(any(feature = "cuda", feature = "wgpu")))]
    #[test]
    fn a_backend_this_build_lacks_is_a_message_and_auto_is_simulated() {
        for kind in [BackendKind::Cuda, BackendKind::Wgpu] {
            let err = open(&OpenOptions::new(kind)).err().unwrap();
            assert!(matches!(err, OpenError::Unavailable { .. }), "{err}");
            assert!(err.to_string().contains("feature"), "{err}");
        }
        assert_eq!(resolve_backend(BackendKind::Auto), BackendKind::Sim);
        let dev = open(&OpenOptions::new(BackendKind::Auto)).unwrap();
        assert!(dev.backend.device().simulated);
    }

    #[test]
    fn a_wgpu_adapter_takes_the_identity_nvml_gives_its_gpu() {
        let vulkan = DeviceInfo {
            name: "NVIDIA H200".into(),
            pci_bus_id: Some("0000:00:06.0".into()),
            adapter: Some(AdapterInfo {
                backend: "Vulkan".into(),
                ..AdapterInfo::default()
            }),
            ..DeviceInfo::default()
        };
        let nvml = DeviceInfo {
            name: "NVIDIA H200".into(),
            uuid: Some("GPU-a2b35a93-d69a-efca-a462-a1638a3ba7df".into()),
            pci_bus_id: Some("0000:00:06.0".into()),
            architecture: Some("Hopper".into()),
            compute_capability: Some("9.0".into()),
            driver: Some("580.159.04".into()),
            memory_bytes: Some(150_109_880_320),
            ..DeviceInfo::default()
        };
        let m = merged_identity(&vulkan, nvml.clone());
        assert_eq!(m.uuid, nvml.uuid);
        assert_eq!(m.architecture.as_deref(), Some("Hopper"));
        assert_eq!(m.memory_bytes, nvml.memory_bytes);
        assert_eq!(m.driver.as_deref(), Some("580.159.04"));
        assert_eq!(m.adapter.map(|a| a.backend).as_deref(), Some("Vulkan"));
        // and so the record's device key is the CUDA record's
        assert_eq!(merged_identity(&vulkan, nvml.clone()).key(), nvml.key());
    }
}
