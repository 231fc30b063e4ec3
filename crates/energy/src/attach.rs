//! Which meter and power control belong to a device that NVML does not know, found
//! by its PCI address and never by an index: amdsmi first, else the `amdgpu` hwmon
//! files, for AMD GPUs; the `xe` / `i915` hwmon energy counter for Intel GPUs. The
//! host's RAPL meter goes beside whichever meter is found. `survey` says, for
//! `joulebench devices`, every meter found and why each missing one is missing.

use crate::amd::{self, AmdSmiCounterMeter, AmdSmiDevice, AmdSmiPowerControl};
use crate::host::with_host_energy;
use crate::hwmon_meter::{CounterProbe, HwmonSampledMeter};
use crate::hwmon_power::{hwmon_device_info, HwmonPowerControl, DEVICE_KIND_HWMON};
use crate::intel;
use crate::nvml::{DeviceMatch, PciBusId};
use crate::rapl::{self, RaplError};
use crate::sysfs::hwmon::{find_by_pci, list_gpu_hwmons, HwmonDevice, AMDGPU, I915, XE};
use crate::sysfs::Sysfs;
use joulebench_core::{DeviceInfo, EnergyMeter, NoMeter, PowerControl};
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

/// How a power guard reopens a device's power control, and what it records.
pub struct GuardTarget {
    pub device: DeviceInfo,
    /// `amd::DEVICE_KIND_AMDSMI`, `amd::DEVICE_KIND_FAKE_AMDSMI` or
    /// `hwmon_power::DEVICE_KIND_HWMON`.
    pub device_kind: String,
    /// A control of its own for the guard, apart from the one the sweep reads.
    pub control: Box<dyn PowerControl>,
}

/// A device's meter and power control, and what to tell the user about them.
pub struct Attached {
    pub meter: Box<dyn EnergyMeter>,
    pub power: Option<Box<dyn PowerControl>>,
    pub guard_target: Option<GuardTarget>,
    pub notes: Vec<String>,
}

/// What to attach.
#[derive(Clone, Copy, Debug)]
pub struct AttachOptions {
    /// `false`: power control only, no energy meter (`--meter none`).
    pub meter: bool,
    /// How often a sampled power reading is integrated.
    pub sample_interval: Duration,
}

/// The AMD or Intel meter and power control of the device `info`; `Err` holds,
/// for each kind of meter, why it is not this device's.
pub fn attach_vendor_meter(
    info: &DeviceInfo,
    opts: AttachOptions,
) -> Result<Attached, Vec<String>> {
    let Some(wanted) = device_match(info) else {
        return Err(vec![format!(
            "{} has no PCI address to find its AMD or Intel meter by",
            info.name
        )]);
    };
    let fs = Sysfs::from_env();
    let mut reasons = Vec::new();
    match amd::open_device(&wanted) {
        Ok(dev) => return Ok(attach_amdsmi(&fs, dev, &wanted, opts)),
        Err(e) => reasons.push(format!("amdsmi: {e}")),
    }
    let pci = wanted.pci_bus_id.as_deref().and_then(PciBusId::parse);
    let Some(pci) = pci else {
        reasons.push(format!("hwmon: {} has no PCI address", info.name));
        return Err(reasons);
    };
    match find_by_pci(&fs, &[AMDGPU], &pci) {
        Ok(Some(h)) => return Ok(attach_amdgpu_hwmon(&fs, &h, opts, Vec::new())),
        Ok(None) => reasons.push(format!("hwmon: no amdgpu hwmon directory for {pci}")),
        Err(e) => reasons.push(format!("hwmon: {e}")),
    }
    match intel::find(&fs, &pci) {
        Ok(Some(h)) => return Ok(attach_intel_hwmon(&fs, &h, opts)),
        Ok(None) => reasons.push(format!("hwmon: no xe or i915 energy1_input for {pci}")),
        Err(e) => reasons.push(format!("hwmon: {e}")),
    }
    Err(reasons)
}

fn no_meter(reason: impl Into<String>) -> Box<dyn EnergyMeter> {
    Box::new(NoMeter {
        reason: reason.into(),
    })
}

fn attach_amdsmi(
    fs: &Sysfs,
    dev: Arc<dyn AmdSmiDevice>,
    wanted: &DeviceMatch,
    opts: AttachOptions,
) -> Attached {
    let id = dev.identity().unwrap_or_default();
    let mut notes = Vec::new();
    let guard_target = Some(GuardTarget {
        device: id.to_device_info(),
        device_kind: id.device_kind().to_string(),
        control: Box::new(AmdSmiPowerControl::new(dev.clone())),
    });
    let power: Option<Box<dyn PowerControl>> = Some(Box::new(AmdSmiPowerControl::new(dev.clone())));
    if !opts.meter {
        return Attached {
            meter: no_meter("energy meter turned off with --meter none"),
            power,
            guard_target,
            notes: vec!["energy meter off (--meter none): time is measured, energy is not".into()],
        };
    }
    match AmdSmiCounterMeter::open(dev, CounterProbe::default()) {
        Ok(m) => {
            notes.push(format!(
                "energy meter: amdsmi energy counter on {} ({:.1} µJ per tick, updates every {:.1} ms)",
                id.describe(),
                m.resolution_uj(),
                m.update_period_s() * 1e3
            ));
            Attached {
                meter: Box::new(m),
                power,
                guard_target,
                notes,
            }
        }
        Err(e) => {
            // the counter is unusable; the hwmon power readings may still do
            notes.push(format!("amdsmi energy counter unusable: {e}"));
            let hwmon = wanted
                .pci_bus_id
                .as_deref()
                .and_then(PciBusId::parse)
                .and_then(|p| find_by_pci(fs, &[AMDGPU], &p).ok().flatten());
            match hwmon.and_then(|h| HwmonSampledMeter::open(fs, &h, opts.sample_interval).ok()) {
                Some(m) => {
                    notes.push(format!(
                        "energy meter: {} of {} sampled every {:.0} ms and integrated (fallback)",
                        m.reading().file(),
                        m.hwmon().describe(),
                        opts.sample_interval.as_secs_f64() * 1e3
                    ));
                    Attached {
                        meter: Box::new(m),
                        power,
                        guard_target,
                        notes,
                    }
                }
                None => {
                    notes.push("no energy meter: time is measured, energy is not".into());
                    Attached {
                        meter: no_meter(e.to_string()),
                        power,
                        guard_target,
                        notes,
                    }
                }
            }
        }
    }
}

fn attach_amdgpu_hwmon(
    fs: &Sysfs,
    h: &HwmonDevice,
    opts: AttachOptions,
    mut notes: Vec<String>,
) -> Attached {
    let guard_target = HwmonPowerControl::new(fs, h).map(|c| GuardTarget {
        device: hwmon_device_info(h),
        device_kind: DEVICE_KIND_HWMON.to_string(),
        control: Box::new(c),
    });
    let power = HwmonPowerControl::new(fs, h).map(|c| Box::new(c) as Box<dyn PowerControl>);
    if !opts.meter {
        notes.push("energy meter off (--meter none): time is measured, energy is not".into());
        return Attached {
            meter: no_meter("energy meter turned off with --meter none"),
            power,
            guard_target,
            notes,
        };
    }
    let meter: Box<dyn EnergyMeter> = match HwmonSampledMeter::open(fs, h, opts.sample_interval) {
        Ok(m) => {
            notes.push(format!(
                "energy meter: {} of {} sampled every {:.0} ms and integrated (amdsmi not available)",
                m.reading().file(),
                h.describe(),
                opts.sample_interval.as_secs_f64() * 1e3
            ));
            Box::new(m)
        }
        Err(e) => {
            notes.push(format!(
                "no energy meter: {e}; time is measured, energy is not"
            ));
            no_meter(e.to_string())
        }
    };
    Attached {
        meter,
        power,
        guard_target,
        notes,
    }
}

fn attach_intel_hwmon(fs: &Sysfs, h: &HwmonDevice, opts: AttachOptions) -> Attached {
    let mut notes = Vec::new();
    let meter: Box<dyn EnergyMeter> = if !opts.meter {
        notes.push("energy meter off (--meter none): time is measured, energy is not".into());
        no_meter("energy meter turned off with --meter none")
    } else {
        match intel::open_meter(fs, h) {
            Ok(m) => {
                notes.push(format!(
                    "energy meter: energy1_input of {} (µJ, updates every {:.1} ms)",
                    h.describe(),
                    m.update_period_s() * 1e3
                ));
                Box::new(m)
            }
            Err(e) => {
                notes.push(format!(
                    "no energy meter: {e}; time is measured, energy is not"
                ));
                no_meter(e.to_string())
            }
        }
    };
    Attached {
        meter,
        power: None,
        guard_target: None,
        notes,
    }
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

// ------------------------------------------------------------------ devices

/// One kind of meter and what it found, for `joulebench devices`.
#[derive(Clone, Debug, PartialEq)]
pub struct MeterSurvey {
    pub name: String,
    pub available: bool,
    pub reason: Option<String>,
    pub entries: Vec<SurveyEntry>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SurveyEntry {
    pub id: String,
    pub name: String,
    pub details: Vec<(String, String)>,
}

/// Every AMD, Intel and RAPL meter found, and for each missing one, why.
pub fn survey() -> Vec<MeterSurvey> {
    let fs = Sysfs::from_env();
    vec![
        survey_amdsmi(),
        survey_hwmon(&fs, "hwmon (AMD: amdgpu)", &[AMDGPU]),
        survey_hwmon(&fs, "hwmon (Intel: xe, i915)", &[XE, I915]),
        survey_rapl(&fs),
    ]
}

fn section(name: &str, entries: Vec<SurveyEntry>, reason: Option<String>) -> MeterSurvey {
    MeterSurvey {
        name: name.into(),
        available: reason.is_none(),
        reason,
        entries,
    }
}

fn survey_amdsmi() -> MeterSurvey {
    let devices = match amd::list_devices() {
        Ok(d) => d,
        Err(e) => return section("amdsmi", vec![], Some(e.to_string())),
    };
    if devices.is_empty() {
        return section(
            "amdsmi",
            vec![],
            Some("the library reports no AMD GPU".into()),
        );
    }
    let entries = devices
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let id = d.identity().ok();
            let counter = match d.energy_count() {
                Ok(c) => format!(
                    "yes ({} ticks of {:.1} µJ, 64-bit, wraps handled)",
                    c.ticks, c.resolution_uj
                ),
                Err(e) => format!("no — {e}; the amdgpu hwmon power readings are used instead"),
            };
            let cap = match d.power_cap_info() {
                Ok(c) => {
                    let w = c.to_watts();
                    format!(
                        "{:.0} W now, default {:.0} W, allowed {:.0}–{:.0} W; changes need \
                         --allow-power-changes and root",
                        w.current_w, w.default_w, w.min_w, w.max_w
                    )
                }
                Err(e) => format!("not available — {e}"),
            };
            SurveyEntry {
                id: i.to_string(),
                name: id
                    .as_ref()
                    .map(|i| i.describe())
                    .unwrap_or_else(|| "unknown".into()),
                details: vec![
                    ("energy counter".into(), counter),
                    ("power-cap control".into(), cap),
                    (
                        "matched to wgpu by".into(),
                        "PCI address (never by index)".into(),
                    ),
                ],
            }
        })
        .collect();
    section("amdsmi", entries, None)
}

fn survey_hwmon(fs: &Sysfs, name: &str, drivers: &[&str]) -> MeterSurvey {
    let found = match list_gpu_hwmons(fs, drivers) {
        Ok(f) => f,
        Err(e) => return section(name, vec![], Some(e.to_string())),
    };
    if found.is_empty() {
        return section(
            name,
            vec![],
            Some(format!(
                "no {} hwmon directory under {}",
                drivers.join(" or "),
                fs.path("/sys/class/hwmon").display()
            )),
        );
    }
    let entries = found
        .iter()
        .map(|h| {
            let uw = |f: &str| match fs.read_u64(&h.attr(f)) {
                Ok(v) => format!("{:.1} W now", v as f64 / 1e6),
                Err(e) => format!("unreadable — {e}"),
            };
            let mut details = Vec::new();
            if h.has("energy1_input") {
                let v = match fs.read_u64(&h.attr("energy1_input")) {
                    Ok(v) => format!("yes ({:.3} J, µJ counter, 64-bit)", v as f64 / 1e6),
                    Err(e) => format!("unreadable — {e}"),
                };
                details.push(("energy counter (energy1_input)".into(), v));
            }
            for f in ["power1_input", "power1_average"] {
                if h.has(f) {
                    details.push((format!("power ({f}, sampled and integrated)"), uw(f)));
                }
            }
            if h.has("power1_cap") {
                details.push(("power-cap control (power1_cap)".into(), uw("power1_cap")));
            }
            details.push((
                "pci address".into(),
                h.pci_bus_id
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "none: `device` does not link to a PCI device".into()),
            ));
            SurveyEntry {
                id: h.hwmon_name(),
                name: h.describe(),
                details,
            }
        })
        .collect();
    section(name, entries, None)
}

fn survey_rapl(fs: &Sysfs) -> MeterSurvey {
    let name = "RAPL (host CPU and DRAM)";
    let zones = match rapl::discover(fs) {
        Ok(z) => z,
        Err(e) => return section(name, vec![], Some(e.to_string())),
    };
    let mut unreadable = None;
    let entries = zones
        .iter()
        .map(|z| {
            let reading = match fs.read_u64(&z.energy_path()) {
                Ok(uj) => format!("{:.3} J", uj as f64 / 1e6),
                Err(e) => {
                    let e = RaplError::from(e);
                    let text = e.to_string();
                    unreadable.get_or_insert(text.clone());
                    format!("unreadable — {text}")
                }
            };
            SurveyEntry {
                id: z.zone.clone(),
                name: z.name.clone(),
                details: vec![
                    ("energy_uj".into(), reading),
                    (
                        "wraps at (max_energy_range_uj)".into(),
                        format!("{:.3} J", z.max_energy_range_uj as f64 / 1e6),
                    ),
                ],
            }
        })
        .collect();
    section(name, entries, unreadable)
}
