//! The machine's GPUs as meters and controls, without a compute backend: what
//! `joulebench run` measures a program on. The program owns the GPUs; joulebench
//! opens no CUDA context or wgpu device on them, only their meters (NVML, amdsmi,
//! the amdgpu and Intel hwmon files) and power and clock controls, each GPU known
//! by its identity (UUID, PCI address).

use crate::OpenError;
use joulebench_core::meter::NoMeter;
use joulebench_core::{ClockControl, DeviceInfo, EnergyMeter, PowerControl};
use joulebench_energy::attach::{self, AttachOptions, GuardTarget};
use joulebench_energy::guard::{default_state_dir, GuardConfig, PowerGuard};
use joulebench_energy::nvml::{
    self, DeviceIdentity, MeterMode, NvmlClockControl, NvmlDevice, NvmlPowerControl, SamplingConfig,
};
use joulebench_energy::sysfs::hwmon::{list_gpu_hwmons, AMDGPU, I915, XE};
use joulebench_energy::sysfs::Sysfs;
use std::sync::Arc;
use std::time::Duration;

/// Which library knows a GPU.
#[derive(Clone)]
enum Source {
    Nvml(Arc<dyn NvmlDevice>, DeviceIdentity),
    /// amdsmi or a hwmon directory, found again by PCI address when opened.
    ByPci,
}

/// A GPU found, before its meter is opened.
#[derive(Clone)]
pub struct GpuEntry {
    pub device: DeviceInfo,
    /// A fake device of a test build, not a GPU.
    pub fake: bool,
    /// "nvml", "amdsmi", "hwmon".
    pub library: &'static str,
    source: Source,
}

/// Every GPU found, in a fixed order (NVML's, as `nvidia-smi` numbers them; then
/// amdsmi's; then GPUs only hwmon knows), and for each library missing, why.
pub fn list_gpus() -> (Vec<GpuEntry>, Vec<String>) {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    match nvml::list_devices() {
        Ok(devices) => {
            for dev in devices {
                match dev.identity() {
                    Ok(id) => found.push(GpuEntry {
                        device: id.to_device_info(),
                        fake: id.fake,
                        library: "nvml",
                        source: Source::Nvml(dev.clone(), id),
                    }),
                    Err(e) => missing.push(format!("NVML: a device could not be read: {e}")),
                }
            }
        }
        Err(e) => missing.push(format!("NVML: {e}")),
    }
    let mut pcis: Vec<String> = Vec::new();
    match joulebench_energy::amd::list_devices() {
        Ok(devices) => {
            for dev in devices {
                if let Ok(id) = dev.identity() {
                    let device = id.to_device_info();
                    pcis.extend(device.pci_bus_id.clone());
                    found.push(GpuEntry {
                        device,
                        fake: id.fake,
                        library: "amdsmi",
                        source: Source::ByPci,
                    });
                }
            }
        }
        Err(e) => missing.push(format!("amdsmi: {e}")),
    }
    let fs = Sysfs::from_env();
    match list_gpu_hwmons(&fs, &[AMDGPU, XE, I915]) {
        Ok(hwmons) => {
            for h in hwmons {
                let Some(pci) = h.pci_bus_id.map(|p| p.to_string()) else {
                    continue;
                };
                if pcis.contains(&pci) {
                    continue; // amdsmi has it
                }
                let intel = h.driver != AMDGPU;
                if intel && !h.has("energy1_input") {
                    continue;
                }
                pcis.push(pci);
                found.push(GpuEntry {
                    device: joulebench_energy::hwmon_power::hwmon_device_info(&h),
                    fake: false,
                    library: "hwmon",
                    source: Source::ByPci,
                });
            }
        }
        Err(e) => missing.push(format!("hwmon: {e}")),
    }
    (found, missing)
}

/// A GPU opened for measuring: its meter, and its controls.
pub struct MeteredGpu {
    pub device: DeviceInfo,
    pub fake: bool,
    pub meter: Box<dyn EnergyMeter>,
    /// Reads (and, once a guard is armed, nothing else: changes go through it).
    pub power: Option<Box<dyn PowerControl>>,
    /// The device's clocks; the guard's handle once armed on an NVML GPU.
    pub clocks: Option<Box<dyn ClockControl>>,
    pub guard: Option<PowerGuard>,
    /// Which meter, and why.
    pub notes: Vec<String>,
    nvml: Option<(Arc<dyn NvmlDevice>, DeviceIdentity)>,
    vendor_guard: Option<GuardTarget>,
}

/// Open `entry`'s meter (`None`: time only) and controls.
pub fn open_gpu(
    entry: &GpuEntry,
    meter: Option<MeterMode>,
    sample_interval: Duration,
) -> Result<MeteredGpu, OpenError> {
    let no_meter = |reason: String| -> Box<dyn EnergyMeter> { Box::new(NoMeter { reason }) };
    match &entry.source {
        Source::Nvml(dev, id) => {
            let mut notes = Vec::new();
            let meter = match meter {
                None => no_meter("energy meter turned off with --meter none".into()),
                Some(mode) => {
                    match nvml::open_meter(
                        dev.clone(),
                        mode,
                        SamplingConfig {
                            interval: sample_interval,
                        },
                    ) {
                        Ok(m) => {
                            notes.push(format!("energy meter: NVML on {}", id.describe()));
                            notes.extend(m.note);
                            m.meter
                        }
                        Err(e) => {
                            notes.push(format!(
                                "no energy meter on {}: {e}; time is measured, energy is not",
                                id.describe()
                            ));
                            no_meter(e.to_string())
                        }
                    }
                }
            };
            Ok(MeteredGpu {
                device: entry.device.clone(),
                fake: entry.fake,
                meter,
                power: Some(Box::new(NvmlPowerControl::new(dev.clone()))),
                clocks: Some(Box::new(NvmlClockControl::new(dev.clone()))),
                guard: None,
                notes,
                nvml: Some((dev.clone(), id.clone())),
                vendor_guard: None,
            })
        }
        Source::ByPci => {
            let how = AttachOptions {
                meter,
                sample_interval,
            };
            let a = attach::attach_gpu_meter(&entry.device, how).map_err(|reasons| {
                OpenError::Unavailable {
                    backend: "meter",
                    message: format!("{}: {}", entry.device.name, reasons.join("; ")),
                }
            })?;
            Ok(MeteredGpu {
                device: entry.device.clone(),
                fake: entry.fake,
                meter: a.meter,
                power: a.power,
                clocks: a.clocks,
                guard: None,
                notes: a.notes,
                nvml: None,
                vendor_guard: a.guard_target,
            })
        }
    }
}

impl MeteredGpu {
    /// Put the guard in place before a power cap or a clock lock: the GPU's lock is
    /// taken now (refused while another process holds it or a restore is owed), and
    /// every change then goes through the guard, as a sweep's do.
    pub fn arm_guard(
        &mut self,
        allow_power_changes: bool,
        allow_clock_changes: bool,
    ) -> Result<(), OpenError> {
        let dir = default_state_dir().ok_or(OpenError::NoStateDir)?;
        if let Some((dev, id)) = &self.nvml {
            let cfg = GuardConfig::new(
                id.to_device_info(),
                id.device_kind(),
                &dir,
                allow_power_changes,
            )
            .with_clock_changes(allow_clock_changes);
            let guard = PowerGuard::new_with_clocks(
                Box::new(NvmlPowerControl::new(dev.clone())),
                Some(Box::new(NvmlClockControl::new(dev.clone()))),
                cfg,
            )?;
            self.power = None;
            self.clocks = Some(Box::new(guard.clock_handle()));
            self.guard = Some(guard);
        } else if let Some(t) = self.vendor_guard.take() {
            let cfg = GuardConfig::new(t.device, t.device_kind, &dir, allow_power_changes);
            self.guard = Some(PowerGuard::new(t.control, cfg)?);
            self.power = None;
        }
        Ok(())
    }
}
