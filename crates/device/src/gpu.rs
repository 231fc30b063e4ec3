//! A GPU backend opened (CUDA, wgpu), each behind its cargo feature, and the meter
//! and controls that belong to its GPU attached by what the GPU is
//! (`energy::attach`, docs/ARCHITECTURE.md §4.7), with the host's RAPL beside it.

use crate::error::OpenError;
use crate::options::OpenOptions;
use crate::OpenDevice;

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

#[cfg(not(feature = "wgpu"))]
pub(crate) fn open_wgpu(_opts: &OpenOptions) -> Result<OpenDevice, OpenError> {
    Err(not_built("wgpu", "wgpu"))
}

#[cfg(feature = "wgpu")]
pub(crate) fn open_wgpu(opts: &OpenOptions) -> Result<OpenDevice, OpenError> {
    let backend =
        joulebench_wgpu::open(opts.adapter.as_deref()).map_err(|e| OpenError::Unavailable {
            backend: "wgpu",
            message: e.to_string(),
        })?;
    let mut notes = Vec::new();
    let info = joulebench_core::Backend::device(&backend).clone();
    if info.cpu_emulation {
        notes.push(format!(
            "wgpu adapter '{}' is a CPU emulation: its times are not a GPU's, and it has no energy meter",
            info.name
        ));
    }
    with_meter(Box::new(backend), opts, notes)
}

#[cfg(not(feature = "cuda"))]
pub(crate) fn open_cuda(_opts: &OpenOptions) -> Result<OpenDevice, OpenError> {
    Err(not_built("CUDA", "cuda"))
}

#[cfg(feature = "cuda")]
pub(crate) fn open_cuda(opts: &OpenOptions) -> Result<OpenDevice, OpenError> {
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
    with_meter(Box::new(backend), opts, notes)
}

#[cfg(feature = "wgpu")]
pub(crate) fn wgpu_gpu_adapter_found() -> bool {
    joulebench_wgpu::list_adapters()
        .map(|a| a.iter().any(|r| !r.cpu_emulation))
        .unwrap_or(false)
}

#[cfg(not(feature = "wgpu"))]
pub(crate) fn wgpu_gpu_adapter_found() -> bool {
    false
}

#[cfg(feature = "cuda")]
pub(crate) fn cuda_device_found() -> bool {
    let cuda = joulebench_cuda::probe();
    cuda.driver.is_ok() && cuda.nvrtc.is_ok() && !cuda.devices.is_empty()
}

#[cfg(not(feature = "cuda"))]
pub(crate) fn cuda_device_found() -> bool {
    false
}

/// Attach the meter and controls of a real backend's GPU, or say why there are none.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn with_meter(
    backend: Box<dyn joulebench_core::Backend>,
    opts: &OpenOptions,
    mut notes: Vec<String>,
) -> Result<OpenDevice, OpenError> {
    use crate::device::Controls;
    use crate::identity::{merged_identity, Identified};
    use joulebench_core::meter::NoMeter;
    use joulebench_core::{Backend, Clock, EnergyMeter, SystemClock};
    use joulebench_energy::attach::{self, AttachOptions};
    use std::sync::Arc;
    let info = backend.device().clone();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let no_meter = |reason: String| -> Box<dyn EnergyMeter> { Box::new(NoMeter { reason }) };
    // a test may pair a CPU emulation with a fixture GPU (JOULEBENCH_TEST_DEVICE_PCI)
    let emulated = info.cpu_emulation && attach::test_device_pci().is_none();
    let how = AttachOptions {
        meter: opts.meter,
        sample_interval: opts.sample_interval,
    };
    let (meter, controls, identity) = match emulated {
        true => (
            no_meter("a CPU emulation has no energy meter".into()),
            Controls::default(),
            None,
        ),
        false => match attach::attach_gpu_meter(&info, how) {
            Ok(a) => {
                notes.extend(a.notes);
                (
                    a.meter,
                    Controls::guarded(a.power, a.clocks, a.guard_target),
                    a.identity,
                )
            }
            Err(reasons) => {
                let reason = reasons.join("; ");
                notes.push(format!(
                    "no energy meter: {reason}; time is measured, energy is not"
                ));
                (no_meter(reason), Controls::default(), None)
            }
        },
    };
    let meter = if opts.meter.is_some() && !emulated {
        let (meter, note) = attach::attach_host(meter);
        notes.push(note);
        meter
    } else {
        meter
    };
    // one GPU, one identity: records from every backend name it as NVML does
    let backend: Box<dyn Backend> = match identity {
        Some(id) => Box::new(Identified {
            device: merged_identity(&info, id),
            inner: backend,
        }),
        None => backend,
    };
    Ok(OpenDevice::new(backend, meter, clock, notes, controls))
}
