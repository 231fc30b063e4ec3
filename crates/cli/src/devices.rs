//! `joulebench devices`: every backend, device, energy meter (NVML, amdsmi, hwmon,
//! RAPL) and power control found, and for each one not found, why.

use crate::args::DevicesArgs;
use crate::error::{runtime, CliError};
use joulebench_core::Backend;
use joulebench_energy::sim::{SimDevice, PROFILES};
use serde::Serialize;

/// One backend (or meter) and what it found.
#[derive(Serialize, Debug)]
pub struct Section {
    pub name: String,
    pub available: bool,
    /// Why it is not available.
    pub reason: Option<String>,
    pub entries: Vec<Entry>,
}

#[derive(Serialize, Debug)]
pub struct Entry {
    pub id: String,
    pub name: String,
    pub details: Vec<(String, String)>,
}

fn sim_section() -> Section {
    let entries = PROFILES
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let dev = SimDevice::open(p.name, i, 0).ok()?;
            Some(Entry {
                id: p.name.to_string(),
                name: format!("{} (simulated)", p.name),
                details: vec![
                    ("model".into(), p.description.into()),
                    (
                        "power limit".into(),
                        format!(
                            "{:.0}–{:.0} W, default {:.0} W",
                            p.min_cap_w, p.max_cap_w, p.default_cap_w
                        ),
                    ),
                    ("kernels".into(), kernel_list(&dev.backend)),
                    (
                        "energy meter".into(),
                        "simulated counter (1 mJ, 100 ms updates)".into(),
                    ),
                    ("power control".into(), "simulated (needs no rights)".into()),
                ],
            })
        })
        .collect();
    Section {
        name: "sim".into(),
        available: true,
        reason: None,
        entries,
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

fn wgpu_section() -> Section {
    match joulebench_wgpu::list_adapters() {
        Err(reason) => Section { name: "wgpu".into(), available: false, reason: Some(reason), entries: vec![] },
        Ok(adapters) => Section {
            name: "wgpu".into(),
            available: true,
            reason: None,
            entries: adapters
                .iter()
                .map(|a| Entry {
                    id: a.index.to_string(),
                    name: a.info.name.clone(),
                    details: vec![
                        ("backend".into(), a.info.backend.clone()),
                        (
                            "type".into(),
                            if a.cpu_emulation {
                                format!("{} (CPU emulation: times are not a GPU's)", a.info.device_type)
                            } else {
                                a.info.device_type.clone()
                            },
                        ),
                        ("driver".into(), format!("{} {}", a.info.driver, a.info.driver_info).trim().to_string()),
                        ("pci bus id".into(), a.pci_bus_id.clone().unwrap_or_else(|| "not reported".into())),
                        ("f16 (SHADER_F16)".into(), yes_no(a.f16)),
                        ("timestamps".into(), yes_no(a.timestamps)),
                        (
                            "subgroups".into(),
                            if a.subgroups {
                                format!("yes ({}–{})", a.subgroup_min_size, a.subgroup_max_size)
                            } else {
                                "no".into()
                            },
                        ),
                        ("cooperative matrices".into(), cooperative_matrices(a)),
                        (
                            "limits".into(),
                            format!(
                                "buffer {} MiB, storage binding {} MiB, workgroup storage {} KiB, {} invocations",
                                a.max_buffer_bytes >> 20,
                                a.max_storage_buffer_binding_bytes >> 20,
                                a.max_workgroup_storage_bytes >> 10,
                                a.max_invocations_per_workgroup
                            ),
                        ),
                        ("kernels".into(), wgpu_kernels(a.index)),
                    ],
                })
                .collect(),
        },
    }
}

/// The matrix-unit shapes an adapter offers wgpu (what wgsl-coop can use), or that
/// there are none.
fn cooperative_matrices(a: &joulebench_wgpu::AdapterReport) -> String {
    if a.cooperative_matrix_shapes.is_empty() {
        return "none (wgsl-coop points are skipped on this adapter)".into();
    }
    let shapes: Vec<String> = a
        .cooperative_matrix_shapes
        .iter()
        .map(ToString::to_string)
        .collect();
    let enabled = if a.cooperative_matrix {
        ""
    } else {
        " (listed, but wgpu does not enable the feature)"
    };
    format!("{}{enabled}", shapes.join(", "))
}

/// The kernels an adapter runs, from the backend itself (opening it takes a moment).
fn wgpu_kernels(index: usize) -> String {
    match joulebench_wgpu::open(Some(&index.to_string())) {
        Ok(b) => kernel_list(&b),
        Err(e) => format!("cannot open: {e}"),
    }
}

fn kernel_list(b: &dyn Backend) -> String {
    b.kernels()
        .iter()
        .map(|k| {
            format!(
                "{} ({})",
                k.name,
                k.precisions
                    .iter()
                    .map(|p| p.name())
                    .collect::<Vec<_>>()
                    .join(",")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn cuda_section() -> Section {
    let p = joulebench_cuda::probe();
    let status = |r: &Result<String, String>| match r {
        Ok(v) => format!("found {v}"),
        Err(e) => format!("not available — {e}"),
    };
    let unit = |r: &Result<(), String>| match r {
        Ok(()) => "found".to_string(),
        Err(e) => format!("not available — {e}"),
    };
    let libraries = vec![
        ("driver (libcuda)".to_string(), status(&p.driver)),
        ("NVRTC".to_string(), status(&p.nvrtc)),
        ("cuBLAS".to_string(), unit(&p.cublas)),
        ("cuBLASLt".to_string(), unit(&p.cublaslt)),
    ];
    let reason = match (&p.driver, &p.nvrtc, p.devices.is_empty()) {
        (Err(e), _, _) => Some(e.clone()),
        (_, Err(e), _) => Some(format!("NVRTC: {e}")),
        (_, _, true) => Some("the driver reports no CUDA device".into()),
        _ => None,
    };
    let mut entries: Vec<Entry> = p
        .devices
        .iter()
        .map(|d| Entry {
            id: d.ordinal.to_string(),
            name: d.name.clone(),
            details: vec![
                (
                    "uuid".into(),
                    d.uuid.clone().unwrap_or_else(|| "unknown".into()),
                ),
                (
                    "pci bus id".into(),
                    d.pci_bus_id.clone().unwrap_or_else(|| "unknown".into()),
                ),
                (
                    "compute capability".into(),
                    format!("{}.{}", d.compute_capability.0, d.compute_capability.1),
                ),
                ("memory".into(), format!("{} MiB", d.memory_bytes >> 20)),
            ],
        })
        .collect();
    entries.insert(
        0,
        Entry {
            id: "libraries".into(),
            name: "CUDA libraries".into(),
            details: libraries,
        },
    );
    Section {
        name: "CUDA".into(),
        available: reason.is_none(),
        reason,
        entries,
    }
}

fn nvml_section() -> Section {
    use joulebench_energy::nvml;
    let devices = match nvml::list_devices() {
        Ok(d) => d,
        Err(e) => {
            return Section {
                name: "NVML".into(),
                available: false,
                reason: Some(e.to_string()),
                entries: vec![],
            }
        }
    };
    let root = std::env::var("USER").map(|u| u == "root").unwrap_or(false);
    let entries = devices
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let id = d.identity().ok();
            let counter = match d.total_energy_mj() {
                Ok(_) => "yes (total-energy counter, mJ)".to_string(),
                Err(e) => format!("no — {e}; the sampling meter integrates power instead"),
            };
            let power = match d.power_usage_mw() {
                Ok(mw) => format!("yes ({:.0} W now)", mw as f64 / 1000.0),
                Err(e) => format!("no — {e}"),
            };
            let limits = match d.power_limits_mw() {
                Ok(l) => {
                    let w = l.to_watts();
                    format!(
                        "{:.0} W now, default {:.0} W, allowed {:.0}–{:.0} W; changes need --allow-power-changes{}",
                        w.current_w,
                        w.default_w,
                        w.min_w,
                        w.max_w,
                        if root { "" } else { " and root (CAP_SYS_ADMIN)" }
                    )
                }
                Err(e) => format!("not available — {e}"),
            };
            Entry {
                id: i.to_string(),
                name: id.as_ref().map(|i| i.describe()).unwrap_or_else(|| "unknown".into()),
                details: vec![
                    ("energy counter".into(), counter),
                    ("power readings".into(), power),
                    ("power-limit control".into(), limits),
                    (
                        "matched to CUDA/wgpu by".into(),
                        "UUID, else PCI bus id (never by index)".into(),
                    ),
                ],
            }
        })
        .collect();
    Section {
        name: "NVML".into(),
        available: true,
        reason: None,
        entries,
    }
}

/// amdsmi, the AMD and Intel hwmon files, and RAPL, as the energy crate surveys them.
fn vendor_sections() -> Vec<Section> {
    joulebench_energy::attach::survey()
        .into_iter()
        .map(|m| Section {
            name: m.name,
            available: m.available,
            reason: m.reason,
            entries: m
                .entries
                .into_iter()
                .map(|e| Entry {
                    id: e.id,
                    name: e.name,
                    details: e.details,
                })
                .collect(),
        })
        .collect()
}

pub fn sections() -> Vec<Section> {
    let mut s = vec![cuda_section(), nvml_section()];
    s.extend(vendor_sections());
    s.extend([wgpu_section(), sim_section()]);
    s
}

pub fn run(args: &DevicesArgs) -> Result<(), CliError> {
    let sections = sections();
    if args.json {
        let text = serde_json::to_string_pretty(&sections).map_err(runtime)?;
        return crate::paths::println_stdout(&text);
    }
    let mut out = String::new();
    for s in &sections {
        out.push_str(&match (&s.available, &s.reason) {
            (true, _) => format!("{}: available\n", s.name),
            (false, Some(r)) => format!("{}: not available — {r}\n", s.name),
            (false, None) => format!("{}: not available\n", s.name),
        });
        for e in &s.entries {
            out.push_str(&format!("  [{}] {}\n", e.id, e.name));
            for (k, v) in &e.details {
                out.push_str(&format!("      {k}: {v}\n"));
            }
        }
    }
    crate::paths::print_stdout(&out)
}
