//! `WgpuBackend`: the core `Backend` trait on one wgpu device — which kernels exist,
//! whether a point fits this adapter (and if not, why), and preparing a point:
//! compiling (once per variant, then cached), allocating and filling buffers.

use crate::adapter::{self, AdapterReport, Selection};
use crate::attention::{self, FlashVariant};
use crate::gpu::{device_bytes, Gpu};
use crate::matmul::{self, TiledVariant, NAIVE_WG};
use crate::shader::{self, Element};
use joulebench_core::reference::CheckInputs;
use joulebench_core::{
    Backend, BackendError, DeviceInfo, KernelInfo, Op, Precision, PreparedKernel, RunTiming,
    Support, Workload,
};
use std::collections::HashMap;

pub const KERNEL_NAIVE: &str = "wgsl-naive";
pub const KERNEL_TILED: &str = "wgsl-tiled";
pub const KERNEL_FLASH: &str = "wgsl-flash";

/// One wgpu device and the pipelines compiled on it so far.
pub struct WgpuBackend {
    gpu: Gpu,
    report: AdapterReport,
    info: DeviceInfo,
    /// Compiled pipelines by their build (kernel, precision, variant, checked or not).
    pipelines: HashMap<String, wgpu::ComputePipeline>,
}

/// Open the adapter `selector` names: an index into [`adapter::list_adapters`], a
/// case-insensitive substring of its name, or `None` for the default (a discrete GPU
/// before an integrated one, any GPU before a CPU emulation). `WGPU_BACKEND` limits
/// which backends are searched.
pub fn open(selector: Option<&str>) -> Result<WgpuBackend, BackendError> {
    let instance = adapter::instance();
    let adapters = adapter::enumerate(&instance);
    if adapters.is_empty() {
        return Err(BackendError::Unavailable(adapter::no_adapter_reason(
            adapter::backends_from_env(),
        )));
    }
    let reports: Vec<AdapterReport> = adapters
        .iter()
        .enumerate()
        .map(|(i, a)| AdapterReport::new(i, a))
        .collect();
    let index =
        adapter::pick(&reports, &Selection::parse(selector)).map_err(BackendError::Unavailable)?;
    WgpuBackend::new(&adapters[index], reports[index].clone())
}

impl std::fmt::Debug for WgpuBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WgpuBackend")
            .field("adapter", &self.report.summary())
            .field("device_timer", &self.gpu.timestamps)
            .field("compiled_pipelines", &self.pipelines.len())
            .finish()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kernel {
    Naive,
    Tiled,
    Flash,
}

impl Kernel {
    fn parse(name: &str) -> Option<Kernel> {
        match name {
            KERNEL_NAIVE => Some(Kernel::Naive),
            KERNEL_TILED => Some(Kernel::Tiled),
            KERNEL_FLASH => Some(Kernel::Flash),
            _ => None,
        }
    }

    fn op(self) -> Op {
        match self {
            Kernel::Naive | Kernel::Tiled => Op::Matmul,
            Kernel::Flash => Op::Attention,
        }
    }
}

/// What a point compiles to: the WGSL build and how it is dispatched.
struct Build {
    key: String,
    wgsl: String,
    /// Created without runtime bounds checks: only for shapes that fill whole tiles.
    trusted: bool,
    workgroups: [u32; 3],
    variant: String,
}

impl WgpuBackend {
    fn new(adapter: &wgpu::Adapter, mut report: AdapterReport) -> Result<Self, BackendError> {
        let gpu = Gpu::open(adapter)?;
        report.timestamp_period_ns = Some(gpu.timestamp_period_ns);
        report.timestamps = gpu.timestamps;
        let info = report.device_info();
        Ok(WgpuBackend {
            gpu,
            report,
            info,
            pipelines: HashMap::new(),
        })
    }

    /// The adapter this backend runs on, with its capabilities.
    pub fn adapter(&self) -> &AdapterReport {
        &self.report
    }

    /// Whether `run` reports device time (timestamp queries) besides wall time.
    pub fn has_device_timer(&self) -> bool {
        self.gpu.timestamps
    }

    /// The variants `kernel` can be forced to with [`Self::prepare_variant`].
    pub fn variants(&self, kernel: &str) -> Vec<String> {
        match Kernel::parse(kernel) {
            Some(Kernel::Tiled) => matmul::TILED_VARIANTS
                .iter()
                .filter(|v| v.runs_on(&self.report))
                .map(TiledVariant::name)
                .collect(),
            Some(Kernel::Flash) => attention::HEAD_DIMS
                .iter()
                .flat_map(|&d| attention::variants(d as u32))
                .filter(|v| {
                    v.workgroup_bytes() <= self.report.max_workgroup_storage_bytes
                        && v.invocations() <= self.report.max_invocations_per_workgroup
                })
                .map(|v| v.name())
                .collect(),
            Some(Kernel::Naive) | None => Vec::new(),
        }
    }

    /// [`Backend::prepare`] with the variant forced (by its name from
    /// [`Self::variants`]) instead of chosen for the adapter — for tuning and tests.
    pub fn prepare_variant(
        &mut self,
        kernel: &str,
        precision: Precision,
        workload: &Workload,
        seed: u64,
        variant: Option<&str>,
    ) -> Result<Box<dyn PreparedKernel + '_>, BackendError> {
        if let Support::Unsupported(why) = self.support(kernel, precision, workload) {
            return Err(BackendError::Unsupported(why));
        }
        let build = self.build(kernel, precision, workload, variant)?;
        if !self.pipelines.contains_key(&build.key) {
            // SAFETY: `build` sets `trusted` only for the FIT build, chosen only when the
            // shape is a whole number of tiles and the grid is exactly the tile count,
            // so every index the shader forms is inside its buffer; its loops are
            // bounded by the shape.
            let pipeline = unsafe { self.gpu.pipeline(&build.key, &build.wgsl, build.trusted)? };
            self.pipelines.insert(build.key.clone(), pipeline);
        }
        let pipeline = self
            .pipelines
            .get(&build.key)
            .cloned()
            .ok_or_else(|| BackendError::Device("pipeline cache lost an entry".into()))?;
        Prepared::new(
            &self.gpu,
            pipeline,
            precision,
            workload,
            seed,
            build.workgroups,
            build.variant,
        )
        .map(|p| Box::new(p) as Box<dyn PreparedKernel + '_>)
    }

    fn build(
        &self,
        kernel: &str,
        precision: Precision,
        workload: &Workload,
        forced: Option<&str>,
    ) -> Result<Build, BackendError> {
        let element = match precision {
            Precision::F16 => Element::F16,
            _ => Element::F32,
        };
        let unknown_variant = |name: &str| {
            BackendError::Unsupported(format!(
                "{kernel} has no variant '{name}' on this adapter; variants: {}",
                self.variants(kernel).join(", ")
            ))
        };
        let wgsl_err = |e: String| BackendError::Compile(format!("{kernel}: {e}"));
        match (Kernel::parse(kernel), workload) {
            (Some(Kernel::Naive), Workload::Matmul(s)) => {
                if let Some(name) = forced {
                    return Err(unknown_variant(name));
                }
                let wg = [("WG_X", NAIVE_WG), ("WG_Y", NAIVE_WG)];
                let wgsl = shader::specialise(shader::MATMUL_NAIVE, element, &wg, &[])
                    .map_err(wgsl_err)?;
                Ok(Build {
                    key: format!("{kernel}-{precision}"),
                    wgsl,
                    trusted: false,
                    workgroups: grid([
                        s.n.div_ceil(u64::from(NAIVE_WG)),
                        s.m.div_ceil(u64::from(NAIVE_WG)),
                        s.batch,
                    ]),
                    variant: format!("wg{NAIVE_WG}x{NAIVE_WG}-thread1x1"),
                })
            }
            (Some(Kernel::Tiled), Workload::Matmul(s)) => {
                let v = match forced {
                    Some(name) => TiledVariant::parse(name)
                        .filter(|v| v.runs_on(&self.report))
                        .ok_or_else(|| unknown_variant(name))?,
                    None => matmul::choose_tiled(&self.report, s).ok_or_else(|| {
                        BackendError::Unsupported(format!(
                            "no tiled variant fits this adapter ({} invocations, {} bytes \
                             of workgroup memory)",
                            self.report.max_invocations_per_workgroup,
                            self.report.max_workgroup_storage_bytes
                        ))
                    })?,
                };
                let fit = v.fits(s);
                let flags: &[&str] = if fit { &["FIT"] } else { &[] };
                let wgsl = shader::specialise(shader::MATMUL_TILED, element, &v.consts(), flags)
                    .map_err(wgsl_err)?;
                let mode = if fit { "vec4-unchecked" } else { "checked" };
                Ok(Build {
                    key: format!("{kernel}-{precision}-{}-{mode}", v.name()),
                    wgsl,
                    trusted: fit,
                    workgroups: grid(v.workgroups(s)),
                    variant: format!("{}-{mode}", v.name()),
                })
            }
            (Some(Kernel::Flash), Workload::Attention(s)) => {
                let head_dim = s.head_dim as u32;
                let v = match forced {
                    Some(name) => attention::variants(head_dim)
                        .into_iter()
                        .find(|v| v.name() == name)
                        .filter(|v| self.variants(kernel).contains(&v.name()))
                        .ok_or_else(|| unknown_variant(name))?,
                    None => self.flash_variant(head_dim)?,
                };
                let wgsl = shader::specialise(shader::ATTENTION, element, &v.consts(), &[])
                    .map_err(wgsl_err)?;
                Ok(Build {
                    key: format!("{kernel}-{precision}-{}", v.name()),
                    wgsl,
                    trusted: false,
                    workgroups: grid(v.workgroups(s)),
                    variant: v.name(),
                })
            }
            _ => Err(BackendError::Unsupported(format!(
                "{kernel} does not run {}",
                workload.op()
            ))),
        }
    }

    fn flash_variant(&self, head_dim: u32) -> Result<FlashVariant, BackendError> {
        attention::choose(&self.report, head_dim).ok_or_else(|| {
            BackendError::Unsupported(format!(
                "no attention variant for head_dim {head_dim} fits this adapter's {} bytes \
                 of workgroup memory",
                self.report.max_workgroup_storage_bytes
            ))
        })
    }

    /// Why `workload` does not fit this adapter's limits, if it does not.
    fn does_not_fit(&self, kernel: Kernel, precision: Precision, w: &Workload) -> Option<String> {
        let limits = &self.report;
        let binding_limit = limits
            .max_storage_buffer_binding_bytes
            .min(limits.max_buffer_bytes);
        let tensors: Vec<(&str, u64)> = match w {
            Workload::Matmul(s) => vec![
                ("A", s.batch * s.m * s.k),
                ("B", s.batch * s.k * s.n),
                ("C", s.batch * s.m * s.n),
            ],
            Workload::Attention(s) | Workload::AttentionBackward(s) => vec![
                ("Q", s.batch * s.heads * s.seq_q * s.head_dim),
                ("K", s.batch * s.heads * s.seq_kv * s.head_dim),
                ("V", s.batch * s.heads * s.seq_kv * s.head_dim),
            ],
        };
        for (name, elements) in tensors {
            let bytes = device_bytes(elements, precision);
            if bytes > binding_limit {
                return Some(format!(
                    "tensor {name} needs {bytes} bytes, more than this adapter binds to one \
                     shader ({binding_limit} bytes: max_storage_buffer_binding_size / \
                     max_buffer_size)"
                ));
            }
            // The kernels index with u32.
            if elements > u64::from(u32::MAX) {
                return Some(format!(
                    "tensor {name} has {elements} elements; the WGSL kernels index with u32"
                ));
            }
        }
        let groups = match (kernel, w) {
            (Kernel::Naive, Workload::Matmul(s)) => [
                s.n.div_ceil(u64::from(NAIVE_WG)),
                s.m.div_ceil(u64::from(NAIVE_WG)),
                s.batch,
            ],
            (Kernel::Tiled, Workload::Matmul(s)) => {
                matmul::choose_tiled(&self.report, s)?.workgroups(s)
            }
            (Kernel::Flash, Workload::Attention(s)) => {
                attention::choose(&self.report, s.head_dim as u32)?.workgroups(s)
            }
            _ => return None,
        };
        let max = u64::from(limits.max_workgroups_per_dimension);
        if groups.iter().any(|&g| g > max) {
            return Some(format!(
                "the dispatch needs {groups:?} workgroups; this adapter allows {max} per dimension"
            ));
        }
        None
    }
}

/// Workgroup counts as u32; `support` has already checked them against the limit.
fn grid(groups: [u64; 3]) -> [u32; 3] {
    groups.map(|g| u32::try_from(g).unwrap_or(u32::MAX))
}

impl Backend for WgpuBackend {
    fn name(&self) -> &str {
        "wgpu"
    }

    fn device(&self) -> &DeviceInfo {
        &self.info
    }

    fn kernels(&self) -> Vec<KernelInfo> {
        let mut precisions = vec![Precision::F32];
        if self.report.f16 {
            precisions.push(Precision::F16);
        }
        let kernel = |name: &str, op: Op, description: &str| KernelInfo {
            name: name.to_owned(),
            op,
            precisions: precisions.clone(),
            vendor: false,
            description: description.to_owned(),
        };
        vec![
            kernel(
                KERNEL_NAIVE,
                Op::Matmul,
                "WGSL matmul, one invocation per output, scalar loads (baseline)",
            ),
            kernel(
                KERNEL_TILED,
                Op::Matmul,
                "WGSL matmul, workgroup-memory tiles, register blocking, vec4 loads",
            ),
            kernel(
                KERNEL_FLASH,
                Op::Attention,
                "WGSL fused attention forward, online softmax, head_dim 64 and 128",
            ),
        ]
    }

    fn support(&self, kernel: &str, precision: Precision, workload: &Workload) -> Support {
        if workload.op() == Op::AttentionBackward {
            return Support::Unsupported(format!(
                "the wgpu backend has no attention-backward kernel ({KERNEL_FLASH} runs \
                 the forward pass only)"
            ));
        }
        let Some(k) = Kernel::parse(kernel) else {
            return Support::Unsupported(format!(
                "unknown kernel '{kernel}'; the wgpu backend has {KERNEL_NAIVE}, \
                 {KERNEL_TILED} (matmul) and {KERNEL_FLASH} (attention)"
            ));
        };
        if k.op() != workload.op() {
            return Support::Unsupported(format!(
                "{kernel} runs {}, not {}",
                k.op(),
                workload.op()
            ));
        }
        match precision {
            Precision::F32 => {}
            Precision::F16 if self.report.f16 => {}
            Precision::F16 => {
                return Support::Unsupported(format!(
                    "f16 needs SHADER_F16, which adapter '{}' does not offer",
                    self.report.info.name
                ))
            }
            Precision::Tf32 | Precision::Bf16 | Precision::Fp8E4m3 => {
                return Support::Unsupported(format!(
                    "{precision} is not available on wgpu: WGSL has only f32 and f16 \
                     arithmetic (use the CUDA backend)"
                ))
            }
        }
        if let Err(e) = workload.validate() {
            return Support::Unsupported(e.to_string());
        }
        if let Workload::Attention(s) = workload {
            if !attention::HEAD_DIMS.contains(&s.head_dim) {
                return Support::Unsupported(format!(
                    "{kernel} is built for head_dim 64 and 128, not {}",
                    s.head_dim
                ));
            }
            if let Err(e) = self.flash_variant(s.head_dim as u32) {
                return Support::Unsupported(e.to_string());
            }
        }
        if k == Kernel::Tiled
            && !matmul::TILED_VARIANTS
                .iter()
                .any(|v| v.runs_on(&self.report))
        {
            return Support::Unsupported("no tiled variant fits this adapter's limits".into());
        }
        match self.does_not_fit(k, precision, workload) {
            Some(why) => Support::Unsupported(format!("shape does not fit the device: {why}")),
            None => Support::Supported,
        }
    }

    fn prepare(
        &mut self,
        kernel: &str,
        precision: Precision,
        workload: &Workload,
        seed: u64,
    ) -> Result<Box<dyn PreparedKernel + '_>, BackendError> {
        self.prepare_variant(kernel, precision, workload, seed, None)
    }
}

/// One point ready to run: its pipeline, buffers (inputs filled from the seed) and
/// bind group.
struct Prepared<'a> {
    gpu: &'a Gpu,
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    precision: Precision,
    /// Input tensors in binding order (A, B or Q, K, V) with their element counts.
    inputs: Vec<(wgpu::Buffer, usize)>,
    output: wgpu::Buffer,
    output_len: usize,
    workgroups: [u32; 3],
    variant: String,
}

impl<'a> Prepared<'a> {
    fn new(
        gpu: &'a Gpu,
        pipeline: wgpu::ComputePipeline,
        precision: Precision,
        workload: &Workload,
        seed: u64,
        workgroups: [u32; 3],
        variant: String,
    ) -> Result<Self, BackendError> {
        let (params, tensors, names): (Vec<u8>, Vec<Vec<f32>>, &[&str]) =
            match (workload, CheckInputs::generate(workload, precision, seed)) {
                (Workload::Matmul(s), CheckInputs::Matmul { a, b }) => {
                    let words = [s.batch, s.m, s.n, s.k].map(|x| x as u32);
                    (
                        words.iter().flat_map(|w| w.to_le_bytes()).collect(),
                        vec![a, b],
                        &["A", "B"],
                    )
                }
                (Workload::Attention(s), CheckInputs::Attention { q, k, v }) => {
                    (attention::params_bytes(s), vec![q, k, v], &["Q", "K", "V"])
                }
                _ => return Err(BackendError::Device("inputs do not match the op".into())),
            };
        let uniform = gpu.uniform("params", &params)?;
        let mut inputs = Vec::with_capacity(tensors.len());
        for (values, name) in tensors.iter().zip(names) {
            let buffer = gpu.storage(name, device_bytes(values.len() as u64, precision))?;
            gpu.upload(&buffer, values, precision);
            inputs.push((buffer, values.len()));
        }
        let output_len = workload.output_len();
        let output = gpu.storage("output", device_bytes(output_len as u64, precision))?;
        let layout = pipeline.get_bind_group_layout(0);
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: uniform.as_entire_binding(),
        }];
        for (i, (buffer, _)) in inputs.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: buffer.as_entire_binding(),
            });
        }
        entries.push(wgpu::BindGroupEntry {
            binding: inputs.len() as u32 + 1,
            resource: output.as_entire_binding(),
        });
        let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("kernel bindings"),
            layout: &layout,
            entries: &entries,
        });
        gpu.check("binding buffers")?;
        Ok(Prepared {
            gpu,
            pipeline,
            bind_group,
            precision,
            inputs,
            output,
            output_len,
            workgroups,
            variant,
        })
    }
}

impl PreparedKernel for Prepared<'_> {
    fn run_for_check(&mut self, inputs: &CheckInputs) -> Result<Vec<f32>, BackendError> {
        let tensors = inputs.tensors();
        if tensors.len() != self.inputs.len()
            || tensors
                .iter()
                .zip(&self.inputs)
                .any(|(t, (_, len))| t.len() != *len)
        {
            return Err(BackendError::Device(
                "check inputs do not match the prepared shape".into(),
            ));
        }
        for (values, (buffer, _)) in tensors.iter().zip(&self.inputs) {
            self.gpu.upload(buffer, values, self.precision);
        }
        self.gpu
            .poison(&self.output, self.output_len, self.precision);
        self.gpu
            .run(&self.pipeline, &self.bind_group, self.workgroups, 1)?;
        self.gpu
            .download(&self.output, self.output_len, self.precision)
    }

    fn run(&mut self, iterations: u64) -> Result<RunTiming, BackendError> {
        self.gpu.run(
            &self.pipeline,
            &self.bind_group,
            self.workgroups,
            iterations,
        )
    }

    fn variant(&self) -> Option<String> {
        Some(self.variant.clone())
    }
}
