//! `WgpuBackend`: the core `Backend` trait on one wgpu device — which kernels exist,
//! whether a point fits this adapter (and if not, why), and preparing a point:
//! compiling (once per variant, then cached), allocating and filling buffers.

use crate::adapter::{self, AdapterReport, Selection};
use crate::attention::{self, FlashVariant};
use crate::coop::{self, CoopVariant};
use crate::gpu::{device_bytes, Checks, Gpu};
use crate::matmul::{self, TiledVariant, NAIVE_WG};
use crate::prepared::{Prepared, Tensors};
use crate::shader::{self, Element};
use crate::submit::Submission;
use crate::tune::VariantSearch;
use joulebench_core::{
    Backend, BackendError, DeviceInfo, InputDistribution, KernelInfo, MatmulShape, Op, Precision,
    PreparedKernel, Support, Workload,
};
use std::collections::HashMap;

mod search;

pub const KERNEL_NAIVE: &str = "wgsl-naive";
pub const KERNEL_TILED: &str = "wgsl-tiled";
pub const KERNEL_FLASH: &str = "wgsl-flash";
pub const KERNEL_COOP: &str = "wgsl-coop";

/// One wgpu device and the pipelines compiled on it so far.
pub struct WgpuBackend {
    adapter: wgpu::Adapter,
    gpu: Gpu,
    /// A second device, with cooperative matrices, opened for wgsl-coop on first use.
    coop_gpu: Option<Gpu>,
    report: AdapterReport,
    info: DeviceInfo,
    /// Compiled pipelines by their build (kernel, precision, variant, checked or not).
    pipelines: HashMap<String, wgpu::ComputePipeline>,
    /// How wgsl-tiled chooses its variant, and what it chose per shape so far.
    search: VariantSearch,
    tiled_choices: HashMap<(MatmulShape, Precision), TiledVariant>,
    /// How prepared kernels submit their blocks.
    submission: Submission,
}

/// Open the adapter `selector` names: an index into [`adapter::list_adapters`], a
/// case-insensitive substring of its name, or `None` for the default (a discrete GPU
/// before an integrated one, any GPU before a CPU emulation). `WGPU_BACKEND` limits
/// which backends are searched.
pub fn open(selector: Option<&str>) -> Result<WgpuBackend, BackendError> {
    let (adapters, lines) = adapter::enumerate();
    if adapters.is_empty() {
        return Err(BackendError::Unavailable(adapter::no_adapter_reason(
            adapter::backends_from_env(),
            &lines,
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
    Coop,
}

impl Kernel {
    fn parse(name: &str) -> Option<Kernel> {
        match name {
            KERNEL_NAIVE => Some(Kernel::Naive),
            KERNEL_TILED => Some(Kernel::Tiled),
            KERNEL_FLASH => Some(Kernel::Flash),
            KERNEL_COOP => Some(Kernel::Coop),
            _ => None,
        }
    }

    fn op(self) -> Op {
        match self {
            Kernel::Naive | Kernel::Tiled | Kernel::Coop => Op::Matmul,
            Kernel::Flash => Op::Attention,
        }
    }
}

/// What a point compiles to: the WGSL build and how it is dispatched.
struct Build {
    key: String,
    wgsl: String,
    /// Runtime checks: bounds checks are off only for shapes that fill whole tiles.
    checks: Checks,
    workgroups: [u32; 3],
    variant: String,
    /// Built for (and run on) the device with cooperative matrices.
    matrix_units: bool,
}

impl WgpuBackend {
    fn new(adapter: &wgpu::Adapter, mut report: AdapterReport) -> Result<Self, BackendError> {
        let gpu = Gpu::open(adapter, false)?;
        report.timestamp_period_ns = Some(gpu.timestamp_period_ns);
        report.timestamps = gpu.timestamps;
        let info = report.device_info();
        let search = VariantSearch::from_env(&report);
        Ok(WgpuBackend {
            adapter: adapter.clone(),
            gpu,
            coop_gpu: None,
            report,
            info,
            pipelines: HashMap::new(),
            search,
            tiled_choices: HashMap::new(),
            submission: Submission::default(),
        })
    }

    /// How `wgsl-tiled` chooses its variant when none is forced. The default comes
    /// from [`crate::tune::SEARCH_ENV`]: timed on a GPU, fixed on a CPU emulation.
    pub fn variant_search(&self) -> &VariantSearch {
        &self.search
    }

    /// Change how `wgsl-tiled` chooses its variant; choices made so far are forgotten.
    pub fn set_variant_search(&mut self, search: VariantSearch) {
        self.search = search;
        self.tiled_choices.clear();
    }

    /// How kernels prepared from now on submit their blocks: pipelined (the
    /// default), or serially, to measure what pipelining gains.
    pub fn set_submission(&mut self, submission: Submission) {
        self.submission = submission;
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
                .filter(|v| v.runs_on(&self.report))
                .map(|v| v.name())
                .collect(),
            Some(Kernel::Coop) => match coop::fragment_for(&self.report) {
                Ok(fragment) => coop::variants(fragment, self.report.subgroup_max_size)
                    .iter()
                    .filter(|v| v.runs_on(&self.report))
                    .map(CoopVariant::name)
                    .collect(),
                Err(_) => Vec::new(),
            },
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
        self.prepare_point(
            kernel,
            precision,
            workload,
            seed,
            InputDistribution::Normal,
            variant,
        )
    }

    /// Prepare a point on inputs drawn from `inputs`, the variant forced or chosen.
    fn prepare_point(
        &mut self,
        kernel: &str,
        precision: Precision,
        workload: &Workload,
        seed: u64,
        inputs: InputDistribution,
        variant: Option<&str>,
    ) -> Result<Box<dyn PreparedKernel + '_>, BackendError> {
        if let Support::Unsupported(why) = self.support(kernel, precision, workload) {
            return Err(BackendError::Unsupported(why));
        }
        let searched = match (Kernel::parse(kernel), workload, variant) {
            (Some(Kernel::Tiled), Workload::Matmul(s), None) => {
                self.searched_tiled(s, precision)?.map(|v| v.name())
            }
            _ => None,
        };
        let build = self.build(kernel, precision, workload, variant.or(searched.as_deref()))?;
        let pipeline = self.pipeline(&build)?;
        let gpu = self.gpu_for(build.matrix_units)?;
        let tensors = Tensors::new(gpu, precision, workload, seed, inputs)?;
        Prepared::new(
            gpu,
            pipeline,
            tensors,
            build.workgroups,
            build.variant,
            self.submission,
        )
        .map(|p| Box::new(p) as Box<dyn PreparedKernel + '_>)
    }

    /// The device a build runs on: the one with cooperative matrices for wgsl-coop
    /// (opened once, on first use), the plain one for every other kernel.
    fn gpu_for(&self, matrix_units: bool) -> Result<&Gpu, BackendError> {
        if !matrix_units {
            return Ok(&self.gpu);
        }
        self.coop_gpu
            .as_ref()
            .ok_or_else(|| BackendError::Device("the cooperative-matrix device is not open".into()))
    }

    /// The pipeline of `build`, compiled on first use.
    fn pipeline(&mut self, build: &Build) -> Result<wgpu::ComputePipeline, BackendError> {
        if let Some(p) = self.pipelines.get(&build.key) {
            return Ok(p.clone());
        }
        if build.matrix_units && self.coop_gpu.is_none() {
            self.coop_gpu = Some(Gpu::open(&self.adapter, true)?);
        }
        // SAFETY: `build` sets `Checks::Trusted` only for the FIT build, chosen only
        // when the shape is a whole number of tiles and the grid is exactly the tile
        // count, so every index the shader forms is inside its buffer; its loops are
        // bounded by the shape. `Checks::LoopsTrusted` only for kernels whose loops
        // are bounded by constants and the shape, and that divide only by constants.
        let gpu = self.gpu_for(build.matrix_units)?;
        let pipeline = unsafe { gpu.pipeline(&build.key, &build.wgsl, build.checks)? };
        self.pipelines.insert(build.key.clone(), pipeline.clone());
        Ok(pipeline)
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
                    checks: Checks::Full,
                    workgroups: grid([
                        s.n.div_ceil(u64::from(NAIVE_WG)),
                        s.m.div_ceil(u64::from(NAIVE_WG)),
                        s.batch,
                    ]),
                    variant: format!("wg{NAIVE_WG}x{NAIVE_WG}-thread1x1"),
                    matrix_units: false,
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
                let mut flags = v.flags().to_vec();
                if fit {
                    flags.push("FIT");
                }
                let wgsl = shader::specialise(shader::MATMUL_TILED, element, &v.consts(), &flags)
                    .map_err(wgsl_err)?;
                let mode = if fit { "vec4-unchecked" } else { "checked" };
                Ok(Build {
                    key: format!("{kernel}-{precision}-{}-{mode}", v.name()),
                    wgsl,
                    // The checked build's loops are bounded by the shape and its
                    // divisions are by constants.
                    checks: if fit {
                        Checks::Trusted
                    } else {
                        Checks::LoopsTrusted
                    },
                    workgroups: grid(v.workgroups(s)),
                    variant: format!("{}-{mode}", v.name()),
                    matrix_units: false,
                })
            }
            (Some(Kernel::Flash), Workload::Attention(s)) => {
                let head_dim = s.head_dim as u32;
                let v = match forced {
                    Some(name) => attention::variants(head_dim)
                        .into_iter()
                        .find(|v| v.name() == name)
                        .filter(|v| v.runs_on(&self.report))
                        .ok_or_else(|| unknown_variant(name))?,
                    None => self.flash_variant(head_dim)?,
                };
                let wgsl =
                    shader::specialise(v.source(), element, &v.consts(), &[]).map_err(wgsl_err)?;
                Ok(Build {
                    key: format!("{kernel}-{precision}-{}", v.name()),
                    wgsl,
                    checks: v.checks(),
                    workgroups: grid(v.workgroups(s)),
                    variant: v.name(),
                    matrix_units: false,
                })
            }
            (Some(Kernel::Coop), Workload::Matmul(s)) => {
                let v = match forced {
                    Some(name) => coop::fragment_for(&self.report)
                        .ok()
                        .and_then(|f| {
                            coop::variants(f, self.report.subgroup_max_size)
                                .into_iter()
                                .find(|v| v.name() == name)
                        })
                        .filter(|v| v.runs_on(&self.report))
                        .ok_or_else(|| unknown_variant(name))?,
                    None => coop::choose(&self.report).map_err(BackendError::Unsupported)?,
                };
                let fit = v.fits(s);
                let wgsl = shader::specialise_with(
                    shader::MATMUL_COOP,
                    Element::F16,
                    &["wgpu_cooperative_matrix"],
                    &v.aliases(),
                    &v.consts(),
                    &v.flags(s),
                )
                .map_err(wgsl_err)?;
                let mode = if fit { "vec4-unchecked" } else { "checked" };
                Ok(Build {
                    key: format!("{kernel}-{}-{mode}", v.name()),
                    wgsl,
                    // As wgsl-tiled: unchecked only when the shape fills whole blocks.
                    checks: if fit {
                        Checks::Trusted
                    } else {
                        Checks::LoopsTrusted
                    },
                    workgroups: grid(v.workgroups(s)),
                    variant: format!("{}-{mode}", v.name()),
                    matrix_units: true,
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
            (Kernel::Coop, Workload::Matmul(s)) => coop::choose(&self.report).ok()?.workgroups(s),
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
            KernelInfo {
                // Listed on every adapter so that a sweep records where it cannot run,
                // and why (`support`).
                precisions: vec![Precision::F16],
                ..kernel(
                    KERNEL_COOP,
                    Op::Matmul,
                    "WGSL matmul on the matrix units (cooperative matrices), f16 in, f32 \
                     accumulation; where the adapter offers them",
                )
            },
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
                 {KERNEL_TILED}, {KERNEL_COOP} (matmul) and {KERNEL_FLASH} (attention)"
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
        if k == Kernel::Coop {
            if precision != Precision::F16 {
                return Support::Unsupported(format!(
                    "{KERNEL_COOP} multiplies f16 inputs with f32 accumulation, not \
                     {precision} ({KERNEL_TILED} runs f32)"
                ));
            }
            if let Err(why) = coop::choose(&self.report) {
                return Support::Unsupported(why);
            }
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

    fn prepare_with_inputs(
        &mut self,
        kernel: &str,
        precision: Precision,
        workload: &Workload,
        seed: u64,
        inputs: InputDistribution,
    ) -> Result<Box<dyn PreparedKernel + '_>, BackendError> {
        self.prepare_point(kernel, precision, workload, seed, inputs, None)
    }
}
