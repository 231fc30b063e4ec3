//! Finding and describing adapters: which ones this machine offers (under the
//! backends `WGPU_BACKEND` allows), what each can do that matters to a kernel (f16,
//! timestamps, subgroups, cooperative matrices, limits), and the identity a record needs to tell two GPUs
//! apart and to match one with NVML (PCI bus id).

use joulebench_core::{AdapterInfo, DeviceInfo};

/// One multiply-accumulate shape of an adapter's matrix units: C (m × n) += A (m × k)
/// · B (k × n), with A and B of one scalar type and C of another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CooperativeMatrixShape {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    /// Scalar type of A and B: "f16", "f32", "i32" or "u32".
    pub ab_type: String,
    /// Scalar type of C and the result.
    pub c_type: String,
    /// Whether integer accumulation can saturate instead of wrapping.
    pub saturating: bool,
}

impl CooperativeMatrixShape {
    fn from_wgpu(p: &wgpu::CooperativeMatrixProperties) -> Self {
        let name = |t: wgpu::CooperativeScalarType| match t {
            wgpu::CooperativeScalarType::F16 => "f16",
            wgpu::CooperativeScalarType::F32 => "f32",
            wgpu::CooperativeScalarType::I32 => "i32",
            wgpu::CooperativeScalarType::U32 => "u32",
        };
        CooperativeMatrixShape {
            m: p.m_size,
            n: p.n_size,
            k: p.k_size,
            ab_type: name(p.ab_type).to_owned(),
            c_type: name(p.cr_type).to_owned(),
            saturating: p.saturating_accumulation,
        }
    }
}

impl std::fmt::Display for CooperativeMatrixShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}x{}x{} {}->{}{}",
            self.m,
            self.n,
            self.k,
            self.ab_type,
            self.c_type,
            if self.saturating { " (saturating)" } else { "" }
        )
    }
}

/// One adapter as the CLI lists it: identity and the capabilities that decide which
/// kernels and precisions can run and whether device time is measured.
#[derive(Clone, Debug, PartialEq)]
pub struct AdapterReport {
    /// Position in [`list_adapters`]'s order; [`crate::open`] accepts it as a selector.
    pub index: usize,
    pub info: AdapterInfo,
    /// PCI bus id as the driver reports it (e.g. "0000:01:00.0"), where wgpu exposes it.
    pub pci_bus_id: Option<String>,
    /// A CPU implementation (lavapipe/llvmpipe, SwiftShader, WARP): not a GPU's numbers.
    pub cpu_emulation: bool,
    /// `SHADER_F16`: f16 storage and arithmetic in WGSL.
    pub f16: bool,
    /// `TIMESTAMP_QUERY`: timestamps at the start and end of a pass (device time).
    pub timestamps: bool,
    /// `TIMESTAMP_QUERY_INSIDE_PASSES`: timestamps between dispatches of one pass.
    pub timestamps_inside_passes: bool,
    /// `TIMESTAMP_QUERY_INSIDE_ENCODERS`: timestamps between passes of one encoder.
    pub timestamps_inside_encoders: bool,
    /// `SUBGROUP`: subgroup operations in WGSL.
    pub subgroups: bool,
    /// Subgroup (warp / wave) size range; 0 where the adapter does not say.
    pub subgroup_min_size: u32,
    pub subgroup_max_size: u32,
    /// `EXPERIMENTAL_COOPERATIVE_MATRIX`: cooperative matrices (matrix units) in WGSL.
    pub cooperative_matrix: bool,
    /// The cooperative-matrix shapes the adapter offers (empty on most CPU emulations
    /// and on GPUs without matrix units).
    pub cooperative_matrix_shapes: Vec<CooperativeMatrixShape>,
    /// Nanoseconds per timestamp tick as the queue reports it; 0 without timestamps.
    /// Known only once a device is open, so `None` in [`list_adapters`].
    pub timestamp_period_ns: Option<f32>,
    pub max_buffer_bytes: u64,
    pub max_storage_buffer_binding_bytes: u64,
    pub max_workgroup_storage_bytes: u32,
    pub max_invocations_per_workgroup: u32,
    pub max_workgroups_per_dimension: u32,
}

impl AdapterReport {
    pub(crate) fn new(index: usize, adapter: &wgpu::Adapter) -> Self {
        let info = adapter.get_info();
        let features = adapter.features();
        let limits = adapter.limits();
        let cpu_emulation = is_cpu_emulation(&info);
        AdapterReport {
            index,
            pci_bus_id: Some(info.device_pci_bus_id.trim().to_owned()).filter(|s| !s.is_empty()),
            cpu_emulation,
            f16: features.contains(wgpu::Features::SHADER_F16),
            timestamps: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            timestamps_inside_passes: features
                .contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES),
            timestamps_inside_encoders: features
                .contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS),
            subgroups: features.contains(wgpu::Features::SUBGROUP),
            subgroup_min_size: info.subgroup_min_size,
            subgroup_max_size: info.subgroup_max_size,
            cooperative_matrix: features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX),
            cooperative_matrix_shapes: adapter
                .cooperative_matrix_properties()
                .iter()
                .map(CooperativeMatrixShape::from_wgpu)
                .collect(),
            timestamp_period_ns: None,
            max_buffer_bytes: limits.max_buffer_size,
            max_storage_buffer_binding_bytes: limits.max_storage_buffer_binding_size,
            max_workgroup_storage_bytes: limits.max_compute_workgroup_storage_size,
            max_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
            max_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
            info: AdapterInfo {
                name: info.name.clone(),
                backend: format!("{:?}", info.backend),
                driver: info.driver.clone(),
                driver_info: info.driver_info.clone(),
                device_type: format!("{:?}", info.device_type),
                vendor_id: info.vendor,
                device_id: info.device,
            },
        }
    }

    /// The device identity recorded with every measurement made on this adapter.
    pub fn device_info(&self) -> DeviceInfo {
        let driver = match (
            self.info.driver.is_empty(),
            self.info.driver_info.is_empty(),
        ) {
            (true, true) => None,
            (false, true) => Some(self.info.driver.clone()),
            (true, false) => Some(self.info.driver_info.clone()),
            (false, false) => Some(format!("{} ({})", self.info.driver, self.info.driver_info)),
        };
        DeviceInfo {
            name: self.info.name.clone(),
            uuid: None,
            pci_bus_id: self.pci_bus_id.clone(),
            // wgpu does not name GPU architectures; a CPU driver's name is the closest
            // thing it has (e.g. "llvmpipe").
            architecture: (self.cpu_emulation && !self.info.driver.is_empty())
                .then(|| self.info.driver.clone()),
            compute_capability: None,
            driver,
            memory_bytes: None,
            adapter: Some(self.info.clone()),
            cpu_emulation: self.cpu_emulation,
            simulated: false,
        }
    }

    /// One line for a device listing.
    pub fn summary(&self) -> String {
        let mut caps = Vec::new();
        if self.f16 {
            caps.push("f16");
        }
        if self.timestamps {
            caps.push("timestamps");
        }
        if self.subgroups {
            caps.push("subgroups");
        }
        if self.cooperative_matrix && !self.cooperative_matrix_shapes.is_empty() {
            caps.push("cooperative matrices");
        }
        format!(
            "[{}] {} ({}, {}, {}){}{}",
            self.index,
            self.info.name,
            self.info.backend,
            self.info.device_type,
            if self.info.driver_info.is_empty() {
                &self.info.driver
            } else {
                &self.info.driver_info
            },
            if caps.is_empty() {
                String::new()
            } else {
                format!(" [{}]", caps.join(", "))
            },
            if self.cpu_emulation {
                " — CPU emulation, not a GPU"
            } else {
                ""
            },
        )
    }
}

fn is_cpu_emulation(info: &wgpu::AdapterInfo) -> bool {
    if info.device_type == wgpu::DeviceType::Cpu {
        return true;
    }
    let name = format!("{} {}", info.name, info.driver).to_ascii_lowercase();
    [
        "llvmpipe",
        "lavapipe",
        "swiftshader",
        "microsoft basic render",
    ]
    .iter()
    .any(|n| name.contains(n))
}

/// The backends to look at: `WGPU_BACKEND` (e.g. "vulkan", "metal,dx12") if set, else all.
pub fn backends_from_env() -> wgpu::Backends {
    wgpu::Backends::from_env().unwrap_or_else(wgpu::Backends::all)
}

fn instance_for(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    // No validation layers unless asked for (WGPU_VALIDATION=1, WGPU_DEBUG=1): they
    // would be measured along with the kernels.
    desc.flags = wgpu::InstanceFlags::empty().with_env();
    desc.backend_options = desc.backend_options.with_env();
    wgpu::Instance::new(desc)
}

/// Why no adapter was found, in words a user can act on, with what the drivers
/// printed while probed (often the reason).
pub(crate) fn no_adapter_reason(backends: wgpu::Backends, driver_lines: &[String]) -> String {
    let env = std::env::var("WGPU_BACKEND")
        .map(|v| format!("WGPU_BACKEND={v}"))
        .unwrap_or_else(|_| "WGPU_BACKEND unset".to_owned());
    let said = match driver_lines {
        [] => String::new(),
        lines => format!(" The drivers said: {}", lines.join(" / ")),
    };
    format!(
        "no wgpu adapter found for backends {backends:?} ({env}); is a GPU driver installed \
         (for Vulkan: the Vulkan loader libvulkan.so.1 and an ICD — on a machine without a \
         GPU, Mesa's lavapipe from the Debian package mesa-vulkan-drivers)?{said}"
    )
}

/// The adapters of `backends`, probed with the drivers' own output kept off the
/// terminal, and the lines they printed.
fn probe(backends: wgpu::Backends) -> (Vec<wgpu::Adapter>, Vec<String>) {
    crate::quiet::quietly(|| {
        let instance = instance_for(backends);
        pollster::block_on(instance.enumerate_adapters(backends))
    })
}

/// Every adapter under `WGPU_BACKEND`, in a stable order. Unset, the native APIs
/// (Vulkan, Metal, DX12) come first and GL is probed only where they offer no GPU:
/// GL's EGL probing is what prints most driver noise, and it adds a second, slower
/// entry for a GPU that Vulkan already serves.
pub(crate) fn enumerate() -> (Vec<wgpu::Adapter>, Vec<String>) {
    if let Some(asked) = wgpu::Backends::from_env() {
        return probe(asked);
    }
    let (mut adapters, mut lines) = probe(wgpu::Backends::all() - wgpu::Backends::GL);
    let serves_a_gpu = adapters.iter().any(|a| !is_cpu_emulation(&a.get_info()));
    if !serves_a_gpu {
        let (gl, gl_lines) = probe(wgpu::Backends::GL);
        adapters.extend(gl);
        lines.extend(gl_lines);
    }
    (adapters, lines)
}

/// Every adapter wgpu finds (see [`enumerate`] for which backends), in a stable
/// order (the order the index selector of [`crate::open`] uses). An error says why
/// none was found.
pub fn list_adapters() -> Result<Vec<AdapterReport>, String> {
    let (adapters, lines) = enumerate();
    if adapters.is_empty() {
        return Err(no_adapter_reason(backends_from_env(), &lines));
    }
    Ok(adapters
        .iter()
        .enumerate()
        .map(|(i, a)| AdapterReport::new(i, a))
        .collect())
}

/// How a selector picks among adapters: by index, by name substring, or the default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Selection {
    Index(usize),
    Name(String),
    Default,
}

impl Selection {
    pub(crate) fn parse(selector: Option<&str>) -> Selection {
        match selector.map(str::trim) {
            None | Some("") => Selection::Default,
            Some(s) => match s.parse::<usize>() {
                Ok(i) => Selection::Index(i),
                Err(_) => Selection::Name(s.to_owned()),
            },
        }
    }
}

/// Preference when no selector is given: a real GPU before a CPU emulation, a
/// discrete GPU before an integrated one, a native API before GL.
fn default_rank(report: &AdapterReport) -> (u8, u8) {
    let kind = match report.info.device_type.as_str() {
        "DiscreteGpu" => 0,
        "IntegratedGpu" => 1,
        "VirtualGpu" => 2,
        "Other" => 3,
        _ => 4,
    };
    let kind = if report.cpu_emulation { 5 } else { kind };
    let api = if report.info.backend == "Gl" { 1 } else { 0 };
    (kind, api)
}

/// The index into `reports` that `selection` picks, or why none fits.
pub(crate) fn pick(reports: &[AdapterReport], selection: &Selection) -> Result<usize, String> {
    let listing = || {
        reports
            .iter()
            .map(AdapterReport::summary)
            .collect::<Vec<_>>()
            .join("; ")
    };
    match selection {
        Selection::Default => reports
            .iter()
            .enumerate()
            .min_by_key(|(i, r)| (default_rank(r), *i))
            .map(|(i, _)| i)
            .ok_or_else(|| "no adapter to choose from".to_owned()),
        Selection::Index(i) if *i < reports.len() => Ok(*i),
        Selection::Index(i) => Err(format!(
            "adapter index {i} out of range: {} adapter(s): {}",
            reports.len(),
            listing()
        )),
        Selection::Name(needle) => {
            let needle = needle.to_lowercase();
            let hits: Vec<usize> = reports
                .iter()
                .enumerate()
                .filter(|(_, r)| r.info.name.to_lowercase().contains(&needle))
                .map(|(i, _)| i)
                .collect();
            match hits.as_slice() {
                [one] => Ok(*one),
                [] => Err(format!(
                    "no adapter name contains '{needle}': {}",
                    listing()
                )),
                // Measuring the wrong one of two identical GPUs would be silently wrong.
                many => Err(format!(
                    "'{needle}' matches {} adapters ({}); select one by index or narrow \
                     WGPU_BACKEND: {}",
                    many.len(),
                    many.iter()
                        .map(|i| i.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    listing()
                )),
            }
        }
    }
}

/// An adapter report with the given identity and permissive limits, for tests.
#[cfg(test)]
pub(crate) fn test_report(
    index: usize,
    name: &str,
    device_type: &str,
    backend: &str,
) -> AdapterReport {
    AdapterReport {
        index,
        info: AdapterInfo {
            name: name.to_owned(),
            backend: backend.to_owned(),
            device_type: device_type.to_owned(),
            ..Default::default()
        },
        pci_bus_id: None,
        cpu_emulation: device_type == "Cpu",
        f16: true,
        timestamps: true,
        timestamps_inside_passes: false,
        timestamps_inside_encoders: false,
        subgroups: false,
        subgroup_min_size: 0,
        subgroup_max_size: 0,
        cooperative_matrix: false,
        cooperative_matrix_shapes: Vec::new(),
        timestamp_period_ns: None,
        max_buffer_bytes: 1 << 30,
        max_storage_buffer_binding_bytes: 1 << 27,
        max_workgroup_storage_bytes: 16384,
        max_invocations_per_workgroup: 256,
        max_workgroups_per_dimension: 65535,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> Vec<AdapterReport> {
        vec![
            test_report(0, "llvmpipe (LLVM 15.0.6, 256 bits)", "Cpu", "Vulkan"),
            test_report(1, "NVIDIA GeForce RTX 4090", "DiscreteGpu", "Gl"),
            test_report(2, "NVIDIA GeForce RTX 4090", "DiscreteGpu", "Vulkan"),
            test_report(3, "Intel(R) UHD Graphics 770", "IntegratedGpu", "Vulkan"),
        ]
    }

    #[test]
    fn selectors_parse() {
        assert_eq!(Selection::parse(None), Selection::Default);
        assert_eq!(Selection::parse(Some(" ")), Selection::Default);
        assert_eq!(Selection::parse(Some("2")), Selection::Index(2));
        assert_eq!(
            Selection::parse(Some("llvm")),
            Selection::Name("llvm".into())
        );
    }

    #[test]
    fn default_prefers_a_discrete_gpu_on_a_native_api() {
        assert_eq!(pick(&machine(), &Selection::Default), Ok(2));
        assert_eq!(pick(&machine()[..1], &Selection::Default), Ok(0));
    }

    #[test]
    fn name_substring_is_case_insensitive_and_must_be_unique() {
        assert_eq!(pick(&machine(), &Selection::Name("LLVMPIPE".into())), Ok(0));
        assert_eq!(pick(&machine(), &Selection::Name("uhd".into())), Ok(3));
        let err = pick(&machine(), &Selection::Name("4090".into())).unwrap_err();
        assert!(err.contains("matches 2 adapters (1, 2)"), "{err}");
        assert!(pick(&machine(), &Selection::Name("h100".into())).is_err());
    }

    #[test]
    fn index_out_of_range_lists_the_adapters() {
        let err = pick(&machine(), &Selection::Index(9)).unwrap_err();
        assert!(
            err.contains("out of range") && err.contains("[3] Intel"),
            "{err}"
        );
    }
}
