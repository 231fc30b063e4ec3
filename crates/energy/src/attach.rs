//! Which meter, power control and clock control belong to a GPU, found by what the
//! GPU is — NVML by UUID or PCI bus id, amdsmi and hwmon by PCI address — and never
//! by an index (docs/ARCHITECTURE.md §4.7). Every kind of GPU meter is one row of
//! [`GPU_METERS`], tried in order: adding a meter is a row there (with its
//! `MeterSource` name in the record's schema, and a line in the meter conformance
//! suite). The host's RAPL meter goes beside whichever meter is found.

use crate::amd::{self, AmdSmiCounterMeter, AmdSmiDevice, AmdSmiPowerControl};
use crate::host::with_host_energy;
use crate::hwmon_meter::{CounterProbe, HwmonSampledMeter};
use crate::hwmon_power::{hwmon_device_info, HwmonPowerControl, DEVICE_KIND_HWMON};
use crate::intel;
use crate::nvml::{
    self, DeviceIdentity, DeviceMatch, MeterMode, NvmlClockControl, NvmlDevice, NvmlPowerControl,
    PciBusId, SamplingConfig,
};
use crate::survey::{
    survey_amdgpu_hwmon, survey_amdsmi, survey_intel_hwmon, survey_rapl, MeterSurvey,
};
use crate::sysfs::hwmon::{find_by_pci, HwmonDevice, AMDGPU};
use crate::sysfs::Sysfs;
use joulebench_core::{ClockControl, DeviceInfo, EnergyMeter, NoMeter, PowerControl};
use std::sync::Arc;
use std::time::Duration;

/// For test set-up only: the device being opened is taken to sit at this PCI
/// address when its meter is looked for. lavapipe and other CPU emulations have no
/// PCI address, so an end-to-end test pairs one with a fixture GPU this way.
pub const TEST_DEVICE_PCI_ENV: &str = "JOULEBENCH_TEST_DEVICE_PCI";

/// The PCI address a test pairs every device with, if one is set (in builds with
/// the `test-fakes` feature only; a release binary ignores the variable).
pub fn test_device_pci() -> Option<String> {
    if !cfg!(feature = "test-fakes") {
        return None;
    }
    std::env::var(TEST_DEVICE_PCI_ENV)
        .ok()
        .filter(|s| !s.trim().is_empty())
}

/// What a meter is looked up by: the device's UUID and PCI address, or the test's.
pub fn device_match(info: &DeviceInfo) -> Option<DeviceMatch> {
    match test_device_pci() {
        Some(pci) => Some(DeviceMatch::pci_bus_id(pci)),
        None => DeviceMatch::from_device_info(info),
    }
}

/// One kind of GPU meter: how a device's meter and controls of that kind are found,
/// and what `joulebench devices` says about it.
pub struct GpuMeterKind {
    /// As `joulebench devices` and the notes name it.
    pub name: &'static str,
    /// The meter, power and clock controls of the device, or why this kind has
    /// none for it (an empty list: another kind's reason already says why).
    pub attach: fn(&DeviceInfo, &Sysfs, &AttachOptions) -> Result<Attached, Vec<String>>,
    /// Every device of this kind found now; `None` where `joulebench devices` lists
    /// them itself (NVML).
    pub survey: Option<fn(&Sysfs) -> MeterSurvey>,
}

/// Every kind of GPU meter, in the order a device's is looked for: the first that
/// knows the device is its meter.
pub const GPU_METERS: &[GpuMeterKind] = &[
    GpuMeterKind {
        name: "NVML",
        attach: attach_nvml,
        survey: None,
    },
    GpuMeterKind {
        name: "amdsmi",
        attach: attach_amdsmi_device,
        survey: Some(survey_amdsmi),
    },
    GpuMeterKind {
        name: "hwmon (AMD: amdgpu)",
        attach: attach_amdgpu_device,
        survey: Some(survey_amdgpu_hwmon),
    },
    GpuMeterKind {
        name: "hwmon (Intel: xe, i915)",
        attach: attach_intel_device,
        survey: Some(survey_intel_hwmon),
    },
];

/// How a power guard changes and reopens a device's controls, and what it records.
pub struct GuardTarget {
    pub device: DeviceInfo,
    /// `nvml::DEVICE_KIND_NVML`, `amd::DEVICE_KIND_AMDSMI`,
    /// `hwmon_power::DEVICE_KIND_HWMON`, or their fakes' names.
    pub device_kind: String,
    /// A control of its own for the guard, apart from the one the sweep reads.
    pub control: Box<dyn PowerControl>,
    /// The clock control the guard locks and resets, where the device has one.
    pub clocks: Option<Box<dyn ClockControl>>,
}

/// A device's meter and controls, and what to tell the user about them.
pub struct Attached {
    pub meter: Box<dyn EnergyMeter>,
    /// For reading the limit; changes go through the guard ([`GuardTarget`]).
    pub power: Option<Box<dyn PowerControl>>,
    /// For reading the clocks; locks go through the guard.
    pub clocks: Option<Box<dyn ClockControl>>,
    pub guard_target: Option<GuardTarget>,
    /// The GPU as the meter's library names it (NVML: name, UUID, architecture,
    /// memory, driver), where records should carry that identity.
    pub identity: Option<DeviceInfo>,
    pub notes: Vec<String>,
}

/// What to attach.
#[derive(Clone, Copy, Debug)]
pub struct AttachOptions {
    /// Which NVML meter (the other kinds have one each); `None`: power and clock
    /// control only, no energy meter (`--meter none`).
    pub meter: Option<MeterMode>,
    /// How often a sampled power reading is integrated.
    pub sample_interval: Duration,
}

/// The meter and controls of the GPU `info` from the first kind in [`GPU_METERS`]
/// that knows it; `Err` holds, for each kind, why it is not this device's.
pub fn attach_gpu_meter(info: &DeviceInfo, opts: AttachOptions) -> Result<Attached, Vec<String>> {
    let fs = Sysfs::from_env();
    let mut reasons = Vec::new();
    for kind in GPU_METERS {
        match (kind.attach)(info, &fs, &opts) {
            Ok(a) => return Ok(a),
            Err(why) => reasons.extend(why),
        }
    }
    Err(reasons)
}

/// Every GPU and host meter found, and for each kind that is missing, why (NVML's
/// devices are listed by `joulebench devices` itself).
pub fn survey() -> Vec<MeterSurvey> {
    let fs = Sysfs::from_env();
    GPU_METERS
        .iter()
        .filter_map(|k| k.survey.map(|s| s(&fs)))
        .chain([survey_rapl(&fs)])
        .collect()
}

/// The NVML device that is `info`, by UUID or PCI bus id.
pub fn match_nvml(info: &DeviceInfo) -> Result<(Arc<dyn NvmlDevice>, DeviceIdentity), String> {
    let wanted = DeviceMatch::from_device_info(info)
        .ok_or_else(|| format!("{} has no UUID or PCI bus id to find it in NVML", info.name))?;
    let dev = nvml::open_device(&wanted).map_err(|e| format!("NVML: {e}"))?;
    let id = dev.identity().map_err(|e| format!("NVML: {e}"))?;
    Ok((dev, id))
}

/// NVML's power and clock controls of a device, with the guard's own pair.
pub fn nvml_controls(dev: &Arc<dyn NvmlDevice>, id: &DeviceIdentity) -> Attached {
    Attached {
        meter: no_meter("energy meter turned off with --meter none"),
        power: Some(Box::new(NvmlPowerControl::new(dev.clone()))),
        clocks: Some(Box::new(NvmlClockControl::new(dev.clone()))),
        guard_target: Some(GuardTarget {
            device: id.to_device_info(),
            device_kind: id.device_kind().to_string(),
            control: Box::new(NvmlPowerControl::new(dev.clone())),
            clocks: Some(Box::new(NvmlClockControl::new(dev.clone()))),
        }),
        identity: (!id.fake).then(|| id.to_device_info()),
        notes: Vec::new(),
    }
}

fn attach_nvml(
    info: &DeviceInfo,
    _fs: &Sysfs,
    opts: &AttachOptions,
) -> Result<Attached, Vec<String>> {
    let (dev, id) = match_nvml(info).map_err(|why| vec![why])?;
    let sampling = SamplingConfig {
        interval: opts.sample_interval,
    };
    Ok(nvml_controls(&dev, &id).with_meter(opts, |mode| {
        let m = nvml::open_meter(dev, mode, sampling)?;
        let mut notes = vec![format!("energy meter: NVML on {}", id.describe())];
        notes.extend(m.note);
        Ok::<_, joulebench_core::MeterError>((m.meter, notes))
    }))
}

fn attach_amdsmi_device(
    info: &DeviceInfo,
    fs: &Sysfs,
    opts: &AttachOptions,
) -> Result<Attached, Vec<String>> {
    let Some(wanted) = device_match(info) else {
        return Err(vec![format!(
            "{} has no PCI address to find its AMD or Intel meter by",
            info.name
        )]);
    };
    match amd::open_device(&wanted) {
        Ok(dev) => Ok(attach_amdsmi(fs, dev, &wanted, *opts)),
        Err(e) => Err(vec![format!("amdsmi: {e}")]),
    }
}

/// The PCI address hwmon finds a device by; `Err` the reason it has none (empty where
/// the amdsmi row has said so already).
fn hwmon_pci(info: &DeviceInfo, say: bool) -> Result<PciBusId, Vec<String>> {
    let Some(wanted) = device_match(info) else {
        return Err(Vec::new());
    };
    match wanted.pci_bus_id.as_deref().and_then(PciBusId::parse) {
        Some(pci) => Ok(pci),
        None if say => Err(vec![format!("hwmon: {} has no PCI address", info.name)]),
        None => Err(Vec::new()),
    }
}

fn attach_amdgpu_device(
    info: &DeviceInfo,
    fs: &Sysfs,
    opts: &AttachOptions,
) -> Result<Attached, Vec<String>> {
    let pci = hwmon_pci(info, true)?;
    match find_by_pci(fs, &[AMDGPU], &pci) {
        Ok(Some(h)) => Ok(attach_amdgpu_hwmon(fs, &h, *opts)),
        Ok(None) => Err(vec![format!("hwmon: no amdgpu hwmon directory for {pci}")]),
        Err(e) => Err(vec![format!("hwmon: {e}")]),
    }
}

fn attach_intel_device(
    info: &DeviceInfo,
    fs: &Sysfs,
    opts: &AttachOptions,
) -> Result<Attached, Vec<String>> {
    let pci = hwmon_pci(info, false)?;
    match intel::find(fs, &pci) {
        Ok(Some(h)) => Ok(attach_intel_hwmon(fs, &h, *opts)),
        Ok(None) => Err(vec![format!(
            "hwmon: no xe or i915 energy1_input for {pci}"
        )]),
        Err(e) => Err(vec![format!("hwmon: {e}")]),
    }
}

fn no_meter(reason: impl Into<String>) -> Box<dyn EnergyMeter> {
    Box::new(NoMeter {
        reason: reason.into(),
    })
}

impl Attached {
    /// A device's controls, before its meter is attached.
    fn controls(
        power: Option<Box<dyn PowerControl>>,
        guard_target: Option<GuardTarget>,
    ) -> Attached {
        Attached {
            meter: no_meter("energy meter turned off with --meter none"),
            power,
            clocks: None,
            guard_target,
            identity: None,
            notes: Vec::new(),
        }
    }

    /// The meter `open` gives (with its notes) for the NVML mode asked for, or, with
    /// `--meter none` or where it fails, a note saying that time is measured and
    /// energy is not.
    fn with_meter<E: std::fmt::Display>(
        mut self,
        opts: &AttachOptions,
        open: impl FnOnce(MeterMode) -> Result<(Box<dyn EnergyMeter>, Vec<String>), E>,
    ) -> Attached {
        let Some(mode) = opts.meter else {
            self.notes
                .push("energy meter off (--meter none): time is measured, energy is not".into());
            return self;
        };
        match open(mode) {
            Ok((meter, notes)) => {
                self.meter = meter;
                self.notes.extend(notes);
            }
            Err(e) => {
                self.notes.push(format!(
                    "no energy meter: {e}; time is measured, energy is not"
                ));
                self.meter = no_meter(e.to_string());
            }
        }
        self
    }
}

/// The integrated power readings of an amdgpu hwmon directory, with the note.
fn amdgpu_sampled(
    fs: &Sysfs,
    h: &HwmonDevice,
    opts: &AttachOptions,
    why: &str,
) -> Result<(Box<dyn EnergyMeter>, Vec<String>), String> {
    let m = HwmonSampledMeter::open(fs, h, opts.sample_interval).map_err(|e| e.to_string())?;
    let note = format!(
        "energy meter: {} of {} sampled every {:.0} ms and integrated ({why})",
        m.reading().file(),
        h.describe(),
        opts.sample_interval.as_secs_f64() * 1e3
    );
    Ok((Box::new(m), vec![note]))
}

fn attach_amdsmi(
    fs: &Sysfs,
    dev: Arc<dyn AmdSmiDevice>,
    wanted: &DeviceMatch,
    opts: AttachOptions,
) -> Attached {
    let id = dev.identity().unwrap_or_default();
    let guard_target = Some(GuardTarget {
        device: id.to_device_info(),
        device_kind: id.device_kind().to_string(),
        control: Box::new(AmdSmiPowerControl::new(dev.clone())),
        clocks: None,
    });
    let power: Option<Box<dyn PowerControl>> = Some(Box::new(AmdSmiPowerControl::new(dev.clone())));
    Attached::controls(power, guard_target).with_meter(&opts, |_| {
        let e = match AmdSmiCounterMeter::open(dev, CounterProbe::default()) {
            Ok(m) => {
                let note = format!(
                    "energy meter: amdsmi energy counter on {} ({:.1} µJ per tick, updates every {:.1} ms)",
                    id.describe(),
                    m.resolution_uj(),
                    m.update_period_s() * 1e3
                );
                return Ok((Box::new(m) as Box<dyn EnergyMeter>, vec![note]));
            }
            Err(e) => e,
        };
        // the counter is unusable; the hwmon power readings may still do
        let unusable = format!("amdsmi energy counter unusable: {e}");
        let hwmon = wanted
            .pci_bus_id
            .as_deref()
            .and_then(PciBusId::parse)
            .and_then(|p| find_by_pci(fs, &[AMDGPU], &p).ok().flatten());
        match hwmon.map(|h| amdgpu_sampled(fs, &h, &opts, "fallback")) {
            Some(Ok((meter, notes))) => Ok((meter, [vec![unusable], notes].concat())),
            _ => Err(unusable),
        }
    })
}

fn attach_amdgpu_hwmon(fs: &Sysfs, h: &HwmonDevice, opts: AttachOptions) -> Attached {
    let guard_target = HwmonPowerControl::new(fs, h).map(|c| GuardTarget {
        device: hwmon_device_info(h),
        device_kind: DEVICE_KIND_HWMON.to_string(),
        control: Box::new(c),
        clocks: None,
    });
    let power = HwmonPowerControl::new(fs, h).map(|c| Box::new(c) as Box<dyn PowerControl>);
    Attached::controls(power, guard_target).with_meter(&opts, |_| {
        amdgpu_sampled(fs, h, &opts, "amdsmi not available")
    })
}

fn attach_intel_hwmon(fs: &Sysfs, h: &HwmonDevice, opts: AttachOptions) -> Attached {
    Attached::controls(None, None).with_meter(&opts, |_| {
        let m = intel::open_meter(fs, h)?;
        let note = format!(
            "energy meter: energy1_input of {} (µJ, updates every {:.1} ms)",
            h.describe(),
            m.update_period_s() * 1e3
        );
        Ok::<_, joulebench_core::MeterError>((Box::new(m) as Box<dyn EnergyMeter>, vec![note]))
    })
}

/// `device` with the host's RAPL meter beside it where RAPL can be read; the note
/// says which, or why not (a permission denied above all).
pub fn attach_host(device: Box<dyn EnergyMeter>) -> (Box<dyn EnergyMeter>, String) {
    let (meter, outcome) = with_host_energy(device, &Sysfs::from_env());
    let note = match outcome {
        Ok(n) => n,
        Err(e) => format!("no host energy: {e}"),
    };
    (meter, note)
}
