//! What `joulebench devices` says about the AMD, Intel and host meters: every one
//! found, with its readings now, and for each kind that is missing, why. Each kind's
//! survey is registered beside its attach in `attach::GPU_METERS`.

use crate::amd;
use crate::rapl::{self, RaplError};
use crate::sysfs::hwmon::{list_gpu_hwmons, AMDGPU, I915, XE};
use crate::sysfs::Sysfs;

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

fn section(name: &str, entries: Vec<SurveyEntry>, reason: Option<String>) -> MeterSurvey {
    MeterSurvey {
        name: name.into(),
        available: reason.is_none(),
        reason,
        entries,
    }
}

pub(crate) fn survey_amdsmi(_fs: &Sysfs) -> MeterSurvey {
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

pub(crate) fn survey_rapl(fs: &Sysfs) -> MeterSurvey {
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

pub(crate) fn survey_amdgpu_hwmon(fs: &Sysfs) -> MeterSurvey {
    survey_hwmon(fs, "hwmon (AMD: amdgpu)", &[AMDGPU])
}

pub(crate) fn survey_intel_hwmon(fs: &Sysfs) -> MeterSurvey {
    survey_hwmon(fs, "hwmon (Intel: xe, i915)", &[XE, I915])
}
