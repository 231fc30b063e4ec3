//! The CUDA backend as the protocol sees it (`joulebench_core::Backend`): which kernels
//! this device and its libraries can run, at which precisions and shapes, and prepared
//! kernels that are checked once and then run back-to-back under CUDA-event timing.

use crate::kernels::KernelFile;
use crate::nvrtc::{self, Arch, Target};
use crate::probe::{self, CudaDeviceSummary};
use crate::tensor::{device_error, Tensor};
use crate::timing::{L2Flush, L2Mode, Timer};
use crate::vendor::{Blas, BlasLt};
use crate::{ours, vendor};
use cudarc::driver::{
    sys as drv_sys, CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream,
};
use cudarc::nvrtc::Ptx;
use joulebench_core::reference::CheckInputs;
use joulebench_core::{
    Backend, BackendError, DeviceInfo, KernelInfo, Op, Precision, PreparedKernel, RunTiming,
    Support, Workload,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// The kernels this backend offers. Names are stable: they appear on the command line
/// and in records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KernelId {
    Simt,
    Mma,
    Cublas,
    CublasLtFp8,
    Flash,
    CublasUnfused,
}

impl KernelId {
    pub(crate) const ALL: [KernelId; 6] = [
        KernelId::Simt,
        KernelId::Mma,
        KernelId::Cublas,
        KernelId::CublasLtFp8,
        KernelId::Flash,
        KernelId::CublasUnfused,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            KernelId::Simt => "cuda-simt",
            KernelId::Mma => "cuda-mma",
            KernelId::Cublas => "cublas",
            KernelId::CublasLtFp8 => "cublaslt-fp8",
            KernelId::Flash => "cuda-flash",
            KernelId::CublasUnfused => "cublas-unfused",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    fn op(self) -> Op {
        match self {
            KernelId::Flash | KernelId::CublasUnfused => Op::Attention,
            _ => Op::Matmul,
        }
    }

    /// A vendor baseline. The unfused attention counts as one: every FLOP it is credited
    /// with runs in cuBLAS; our part is only the softmax between the two GEMMs.
    fn vendor(self) -> bool {
        matches!(
            self,
            KernelId::Cublas | KernelId::CublasLtFp8 | KernelId::CublasUnfused
        )
    }

    fn precisions(self) -> &'static [Precision] {
        match self {
            KernelId::Simt => &[Precision::F32],
            KernelId::Mma | KernelId::Flash | KernelId::CublasUnfused => {
                &[Precision::F16, Precision::Bf16]
            }
            KernelId::Cublas => &[
                Precision::F32,
                Precision::Tf32,
                Precision::F16,
                Precision::Bf16,
            ],
            KernelId::CublasLtFp8 => &[Precision::Fp8E4m3],
        }
    }

    /// The oldest GPU that runs this kernel at `precision`, and why.
    fn min_compute_capability(self, precision: Precision) -> ((u32, u32), &'static str) {
        match (self, precision) {
            (KernelId::Simt, _) => ((5, 0), ""),
            (KernelId::Mma | KernelId::Flash, _) => (
                (8, 0),
                "needs cp.async, ldmatrix and bf16 mma.sync (sm_80+)",
            ),
            (KernelId::CublasLtFp8, _) => ((8, 9), "FP8 tensor cores arrived with sm_89"),
            (_, Precision::Tf32) => ((8, 0), "TF32 tensor cores arrived with sm_80"),
            (_, Precision::Bf16) => ((8, 0), "bf16 tensor cores arrived with sm_80"),
            (KernelId::CublasUnfused, _) => ((8, 0), "its softmax kernel targets sm_80+"),
            _ => ((5, 0), ""),
        }
    }

    fn description(self) -> &'static str {
        match self {
            KernelId::Simt => {
                "f32 GEMM on CUDA cores: 128x128 tiles, 8x8 register blocking, float4 loads"
            }
            KernelId::Mma => {
                "f16/bf16 GEMM on tensor cores: mma.sync m16n8k16, ldmatrix, 3-stage cp.async"
            }
            KernelId::Cublas => "cuBLAS cublasGemmStridedBatchedEx (f32, tf32, f16, bf16)",
            KernelId::CublasLtFp8 => "cuBLASLt FP8 e4m3 GEMM, bf16 output (sm_89+)",
            KernelId::Flash => {
                "fused attention forward, FlashAttention-2 style (online softmax, K/V streamed)"
            }
            KernelId::CublasUnfused => {
                "unfused attention: cuBLAS Q·Kᵀ (f32 scores), softmax kernel, cuBLAS P·V"
            }
        }
    }

    fn needs_nvrtc(self) -> bool {
        matches!(
            self,
            KernelId::Simt | KernelId::Mma | KernelId::Flash | KernelId::CublasUnfused
        )
    }
}

/// Everything a prepared kernel borrows from the backend: the context and stream, the
/// loaded modules and the vendor library handles.
pub(crate) struct Gpu {
    // Fields drop in order: library handles (and the cuBLASLt workspace) go before the
    // stream they are bound to.
    blas: OnceLock<Result<Blas, String>>,
    blas_lt: OnceLock<Result<BlasLt, String>>,
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    pub stream: Arc<CudaStream>,
    pub ctx: Arc<CudaContext>,
    pub cc: (u32, u32),
    pub max_smem_per_block_optin_bytes: u32,
    pub l2_bytes: usize,
}

impl Gpu {
    /// cudarc binds the context in its own calls; cuBLAS calls rely on the thread's
    /// current context, so bind before any work in case the backend moved threads.
    pub(crate) fn bind(&self) -> Result<(), BackendError> {
        self.ctx
            .bind_to_thread()
            .map_err(device_error("make the CUDA context current"))
    }

    /// A kernel from one of our files, compiled (or cached) for this device, with its
    /// launch configuration; dynamic shared memory above 48 KiB is opted into here.
    pub(crate) fn function(
        &self,
        file: &'static KernelFile,
        kernel: &str,
    ) -> Result<(CudaFunction, u32, u32), BackendError> {
        let spec = file.kernel(kernel).ok_or_else(|| {
            BackendError::Compile(format!("{kernel} is not a kernel of {}.cu", file.name))
        })?;
        let module = self.module(file)?;
        let f = module
            .load_function(kernel)
            .map_err(device_error("find the kernel in its module"))?;
        let static_smem = f
            .shared_size_bytes()
            .map_err(device_error("query the kernel's shared memory"))?
            .max(0) as u32;
        let total = static_smem + spec.dynamic_smem_bytes;
        if total > self.max_smem_per_block_optin_bytes {
            return Err(BackendError::DoesNotFit(format!(
                "{kernel} needs {total} bytes of shared memory per block, this GPU offers {}",
                self.max_smem_per_block_optin_bytes
            )));
        }
        if spec.dynamic_smem_bytes > 0 {
            f.set_attribute(
                drv_sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                spec.dynamic_smem_bytes as i32,
            )
            .map_err(device_error("allow the kernel's dynamic shared memory"))?;
        }
        Ok((f, spec.threads_per_block, spec.dynamic_smem_bytes))
    }

    fn module(&self, file: &'static KernelFile) -> Result<Arc<CudaModule>, BackendError> {
        let mut modules = self
            .modules
            .lock()
            .map_err(|_| BackendError::Device("module cache poisoned by a panic".into()))?;
        if let Some(m) = modules.get(file.name) {
            return Ok(m.clone());
        }
        let (arch, target) = nvrtc::target_for_device(Arch::new(self.cc.0, self.cc.1))
            .map_err(BackendError::Unavailable)?;
        let compiled = nvrtc::compile(file, arch, target).map_err(|e| match e {
            nvrtc::CompileError::Unavailable(why) => BackendError::Unavailable(why),
            other => BackendError::Compile(other.to_string()),
        })?;
        let image = match target {
            Target::Cubin => Ptx::from_binary(compiled.image.clone()),
            Target::Ptx => Ptx::from_src(String::from_utf8_lossy(&compiled.image).into_owned()),
        };
        let module = self
            .ctx
            .load_module(image)
            .map_err(device_error("load the compiled module"))?;
        modules.insert(file.name, module.clone());
        Ok(module)
    }

    pub(crate) fn blas(&self) -> Result<&Blas, BackendError> {
        self.blas
            .get_or_init(|| Blas::new(&self.stream))
            .as_ref()
            .map_err(|e| BackendError::Unavailable(e.clone()))
    }

    pub(crate) fn blas_lt(&self) -> Result<&BlasLt, BackendError> {
        self.blas_lt
            .get_or_init(|| BlasLt::new(&self.stream))
            .as_ref()
            .map_err(|e| BackendError::Unavailable(e.clone()))
    }

    /// Fail with DoesNotFit before allocating what the device cannot hold.
    pub(crate) fn ensure_free(&self, bytes: u64, what: &str) -> Result<(), BackendError> {
        let (free, _total) = self
            .ctx
            .mem_get_info()
            .map_err(device_error("query free device memory"))?;
        // Leave room for cuBLAS workspaces and the allocator's rounding.
        let usable = (free as u64).saturating_sub(256 << 20);
        if bytes > usable {
            return Err(BackendError::DoesNotFit(format!(
                "{what} needs {:.2} GiB of device memory, {:.2} GiB is free",
                bytes as f64 / (1u64 << 30) as f64,
                free as f64 / (1u64 << 30) as f64
            )));
        }
        Ok(())
    }
}

/// Device memory a prepared point allocates: inputs, output and intermediates.
fn device_bytes(k: KernelId, precision: Precision, workload: &Workload) -> u64 {
    let elem = match precision {
        Precision::F32 | Precision::Tf32 => 4u128,
        Precision::F16 | Precision::Bf16 => 2,
        Precision::Fp8E4m3 => 1,
    };
    let bytes: u128 = match (k, workload) {
        (KernelId::CublasLtFp8, Workload::Matmul(s)) => {
            let pad = |x: u64| x.next_multiple_of(16) as u128;
            let (m, n, kk) = (pad(s.m), pad(s.n), pad(s.k));
            // e4m3 A and B, bf16 D
            s.batch as u128 * (m * kk + n * kk + 2 * m * n)
        }
        (_, Workload::Matmul(s)) => {
            let (m, n, kk) = (s.m as u128, s.n as u128, s.k as u128);
            s.batch as u128 * (m * kk + kk * n + m * n) * elem
        }
        (_, Workload::Attention(s)) => {
            let bh = s.batch as u128 * s.heads as u128;
            let (sq, skv, d) = (s.seq_q as u128, s.seq_kv as u128, s.head_dim as u128);
            let io = bh * d * (2 * sq + 2 * skv) * elem;
            // The unfused baseline also holds S (f32) and P.
            let scores = if k == KernelId::CublasUnfused {
                bh * sq * skv * (4 + elem)
            } else {
                0
            };
            io + scores
        }
    };
    u64::try_from(bytes).unwrap_or(u64::MAX)
}

/// One iteration of a prepared kernel, enqueued on the stream.
pub(crate) type Launch<'a> = Box<dyn FnMut() -> Result<(), BackendError> + 'a>;

/// A kernel with its buffers allocated and its inputs uploaded.
pub(crate) struct Prepared<'a> {
    pub gpu: &'a Gpu,
    /// In [`CheckInputs`] order: a, b or q, k, v.
    pub inputs: Vec<Tensor>,
    pub output: Tensor,
    pub launch: Launch<'a>,
    pub timer: Timer,
    pub variant: String,
    /// Intermediate buffers the launch addresses (kept alive, never read back).
    pub _scratch: Vec<Tensor>,
}

impl PreparedKernel for Prepared<'_> {
    fn run_for_check(&mut self, inputs: &CheckInputs) -> Result<Vec<f32>, BackendError> {
        self.gpu.bind()?;
        let values: Vec<&[f32]> = match inputs {
            CheckInputs::Matmul { a, b } => vec![a, b],
            CheckInputs::Attention { q, k, v } => vec![q, k, v],
        };
        if values.len() != self.inputs.len() {
            return Err(BackendError::Device(
                "check inputs do not match the prepared operation".into(),
            ));
        }
        let stream = self.gpu.stream.clone();
        for (tensor, v) in self.inputs.iter_mut().zip(values) {
            tensor.upload(&stream, v)?;
        }
        self.output.poison(&stream)?;
        (self.launch)()?;
        stream
            .synchronize()
            .map_err(device_error("run the kernel"))?;
        self.output.download(&stream)
    }

    fn run(&mut self, iterations: u64) -> Result<RunTiming, BackendError> {
        self.gpu.bind()?;
        self.timer.run(iterations, &mut self.launch)
    }

    fn variant(&self) -> Option<String> {
        Some(self.variant.clone())
    }
}

/// joulebench's CUDA backend on one device.
pub struct CudaBackend {
    // Declared before `gpu`: the flush buffer is freed while the context still lives.
    flush: Option<CudaSlice<u8>>,
    gpu: Gpu,
    info: DeviceInfo,
    summary: CudaDeviceSummary,
    l2_mode: L2Mode,
}

/// Open CUDA device `ordinal` (hot L2 timing). Fails with `Unavailable` and the reason
/// when there is no usable driver or no such device; never panics.
pub fn open(ordinal: usize) -> Result<CudaBackend, BackendError> {
    probe::driver_ready().map_err(BackendError::Unavailable)?;
    let count = cudarc::driver::result::device::get_count()
        .map_err(|e| BackendError::Unavailable(format!("cannot count CUDA devices: {e}")))?;
    if ordinal >= count.max(0) as usize {
        return Err(BackendError::Unavailable(format!(
            "no CUDA device {ordinal}: this machine has {count}"
        )));
    }
    let summary = probe::device_summary(ordinal).map_err(BackendError::Unavailable)?;
    let ctx = CudaContext::new(ordinal).map_err(|e| {
        BackendError::Unavailable(format!(
            "cannot create a context on CUDA device {ordinal}: {e}"
        ))
    })?;
    // One stream and no cross-stream hazards: cudarc's per-buffer event tracking would
    // only add event records (and their cost) to every launch being timed. Must precede
    // every allocation.
    // SAFETY: all work runs on the single stream below, in order.
    unsafe { ctx.disable_event_tracking() };
    let stream = ctx.new_stream().map_err(device_error("create a stream"))?;
    use drv_sys::CUdevice_attribute::*;
    let attr = |a| {
        ctx.attribute(a)
            .map_err(device_error("query a device attribute"))
    };
    let max_smem = attr(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)?.max(0) as u32;
    let l2_bytes = attr(CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)?.max(0) as usize;
    let cc = summary.compute_capability;
    let info = DeviceInfo {
        name: summary.name.clone(),
        uuid: summary.uuid.clone(),
        pci_bus_id: summary.pci_bus_id.clone(),
        architecture: Some(probe::architecture_name(cc).to_string()),
        compute_capability: Some(format!("{}.{}", cc.0, cc.1)),
        driver: probe::driver_description().ok(),
        memory_bytes: Some(summary.memory_bytes),
        adapter: None,
        cpu_emulation: false,
        simulated: false,
    };
    Ok(CudaBackend {
        flush: None,
        gpu: Gpu {
            ctx,
            stream,
            cc,
            max_smem_per_block_optin_bytes: max_smem,
            l2_bytes,
            modules: Mutex::new(HashMap::new()),
            blas: OnceLock::new(),
            blas_lt: OnceLock::new(),
        },
        info,
        summary,
        l2_mode: L2Mode::Hot,
    })
}

impl CudaBackend {
    pub fn ordinal(&self) -> usize {
        self.summary.ordinal
    }

    pub fn summary(&self) -> &CudaDeviceSummary {
        &self.summary
    }

    pub fn l2_mode(&self) -> L2Mode {
        self.l2_mode
    }

    /// Hot (default) or cold L2 for kernels prepared from now on. Cold allocates a
    /// buffer the size of L2 that is cleared before every timed iteration.
    pub fn set_l2_mode(&mut self, mode: L2Mode) -> Result<(), BackendError> {
        if mode == L2Mode::Cold && self.flush.is_none() {
            let bytes = self.gpu.l2_bytes.max(1 << 20);
            // SAFETY: only ever overwritten (memset), never read.
            let buf = unsafe { self.gpu.stream.alloc::<u8>(bytes) }
                .map_err(device_error("allocate the L2 flush buffer"))?;
            self.flush = Some(buf);
        }
        self.l2_mode = mode;
        Ok(())
    }

    /// Kernels this backend knows but cannot run here, with the reason (a missing
    /// library, a GPU too old); `kernels()` lists only what can run.
    pub fn unavailable_kernels(&self) -> Vec<(String, String)> {
        KernelId::ALL
            .into_iter()
            .filter_map(|k| match self.kernel_precisions(k) {
                Ok(p) if !p.is_empty() => None,
                Ok(_) => Some((
                    k.name().to_string(),
                    format!(
                        "sm_{}{} is too old: {}",
                        self.gpu.cc.0,
                        self.gpu.cc.1,
                        k.min_compute_capability(k.precisions()[0]).1
                    ),
                )),
                Err(why) => Some((k.name().to_string(), why)),
            })
            .collect()
    }

    fn library_ready(&self, k: KernelId) -> Result<(), String> {
        if k.needs_nvrtc() {
            probe::nvrtc_library()?;
        }
        if matches!(k, KernelId::Cublas | KernelId::CublasUnfused) {
            probe::cublas_library()?;
        }
        if k == KernelId::CublasLtFp8 {
            probe::cublaslt_library()?;
        }
        Ok(())
    }

    /// The precisions `k` can run on this device, or why it cannot run at all.
    fn kernel_precisions(&self, k: KernelId) -> Result<Vec<Precision>, String> {
        self.library_ready(k)?;
        Ok(k.precisions()
            .iter()
            .copied()
            .filter(|&p| self.gpu.cc >= k.min_compute_capability(p).0)
            .collect())
    }

    fn flush(&self) -> Option<L2Flush> {
        match (self.l2_mode, &self.flush) {
            (L2Mode::Cold, Some(buf)) => {
                let (ptr, _guard) = cudarc::driver::DevicePtr::device_ptr(buf, &self.gpu.stream);
                Some(L2Flush {
                    ptr,
                    bytes: buf.len(),
                })
            }
            _ => None,
        }
    }

    fn check(
        &self,
        kernel: &str,
        precision: Precision,
        workload: &Workload,
    ) -> Result<KernelId, String> {
        let k = KernelId::from_name(kernel).ok_or_else(|| {
            format!(
                "no CUDA kernel named '{kernel}' (known: {})",
                KernelId::ALL.map(|k| k.name()).join(", ")
            )
        })?;
        if k.op() != workload.op() {
            return Err(format!(
                "{kernel} computes {}, not {}",
                k.op(),
                workload.op()
            ));
        }
        if !k.precisions().contains(&precision) {
            return Err(format!(
                "{kernel} runs {}, not {precision}",
                k.precisions()
                    .iter()
                    .map(|p| p.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let (min_cc, why) = k.min_compute_capability(precision);
        if self.gpu.cc < min_cc {
            return Err(format!(
                "{kernel} at {precision} needs sm_{}{}+, this GPU is sm_{}{}: {why}",
                min_cc.0, min_cc.1, self.gpu.cc.0, self.gpu.cc.1
            ));
        }
        self.library_ready(k)?;
        workload.validate().map_err(|e| e.to_string())?;
        match (k, workload) {
            (KernelId::Simt | KernelId::Mma, Workload::Matmul(s)) => ours::check_matmul(s),
            (KernelId::Cublas, Workload::Matmul(s)) => vendor::check_cublas(s),
            (KernelId::CublasLtFp8, Workload::Matmul(s)) => vendor::check_fp8(s),
            (KernelId::Flash, Workload::Attention(s)) => ours::check_flash(s),
            (KernelId::CublasUnfused, Workload::Attention(s)) => vendor::check_unfused(s),
            _ => Err(format!("{kernel} cannot run {workload}")),
        }?;
        Ok(k)
    }
}

impl Backend for CudaBackend {
    fn name(&self) -> &str {
        "cuda"
    }

    fn device(&self) -> &DeviceInfo {
        &self.info
    }

    fn kernels(&self) -> Vec<KernelInfo> {
        KernelId::ALL
            .into_iter()
            .filter_map(|k| {
                let precisions = self.kernel_precisions(k).ok()?;
                (!precisions.is_empty()).then(|| KernelInfo {
                    name: k.name().to_string(),
                    op: k.op(),
                    precisions,
                    vendor: k.vendor(),
                    description: k.description().to_string(),
                })
            })
            .collect()
    }

    fn support(&self, kernel: &str, precision: Precision, workload: &Workload) -> Support {
        match self.check(kernel, precision, workload) {
            Ok(_) => Support::Supported,
            Err(why) => Support::Unsupported(why),
        }
    }

    fn prepare(
        &mut self,
        kernel: &str,
        precision: Precision,
        workload: &Workload,
        seed: u64,
    ) -> Result<Box<dyn PreparedKernel + '_>, BackendError> {
        let k = self
            .check(kernel, precision, workload)
            .map_err(BackendError::Unsupported)?;
        self.gpu.bind()?;
        // Before generating inputs on the host: a point that cannot fit fails fast.
        self.gpu
            .ensure_free(device_bytes(k, precision, workload), kernel)?;
        let flush = self.flush();
        let inputs = CheckInputs::generate(workload, precision, seed);
        let timer = Timer::new(self.gpu.stream.clone(), flush)?;
        let cold = if flush.is_some() { ", cold L2" } else { "" };
        let mut prepared = match (k, workload, &inputs) {
            (KernelId::Simt | KernelId::Mma, Workload::Matmul(s), CheckInputs::Matmul { a, b }) => {
                ours::matmul(&self.gpu, precision, s, a, b, timer)?
            }
            (KernelId::Cublas, Workload::Matmul(s), CheckInputs::Matmul { a, b }) => {
                vendor::cublas_matmul(&self.gpu, precision, s, a, b, timer)?
            }
            (KernelId::CublasLtFp8, Workload::Matmul(s), CheckInputs::Matmul { a, b }) => {
                vendor::fp8_matmul(&self.gpu, s, a, b, timer)?
            }
            (KernelId::Flash, Workload::Attention(s), CheckInputs::Attention { q, k, v }) => {
                ours::flash_attention(&self.gpu, precision, s, [q, k, v], timer)?
            }
            (
                KernelId::CublasUnfused,
                Workload::Attention(s),
                CheckInputs::Attention { q, k, v },
            ) => vendor::unfused_attention(&self.gpu, precision, s, [q, k, v], timer)?,
            _ => {
                return Err(BackendError::Unsupported(format!(
                    "{kernel} cannot run {workload}"
                )))
            }
        };
        prepared.variant.push_str(cold);
        // Uploads are asynchronous: finish them (and surface their errors) here, not
        // inside the first timed window.
        self.gpu
            .stream
            .synchronize()
            .map_err(device_error("upload the inputs"))?;
        Ok(Box::new(prepared))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use joulebench_core::{AttentionShape, MatmulShape};

    #[test]
    fn names_are_stable_and_tf32_is_only_cublas() {
        let names: Vec<&str> = KernelId::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(
            names,
            [
                "cuda-simt",
                "cuda-mma",
                "cublas",
                "cublaslt-fp8",
                "cuda-flash",
                "cublas-unfused"
            ]
        );
        for k in KernelId::ALL {
            assert_eq!(KernelId::from_name(k.name()), Some(k));
            assert_eq!(
                k.precisions().contains(&Precision::Tf32),
                k == KernelId::Cublas
            );
        }
        assert!(KernelId::CublasUnfused.vendor() && !KernelId::Flash.vendor());
        assert_eq!(
            KernelId::CublasLtFp8
                .min_compute_capability(Precision::Fp8E4m3)
                .0,
            (8, 9)
        );
    }

    #[test]
    fn device_bytes_count_padding_and_scores() {
        let mm = Workload::Matmul(MatmulShape {
            batch: 2,
            m: 33,
            n: 47,
            k: 29,
        });
        assert_eq!(
            device_bytes(KernelId::Cublas, Precision::F32, &mm),
            2 * (33 * 29 + 29 * 47 + 33 * 47) * 4
        );
        // padded to 48 x 48 x 32: e4m3 A and B, bf16 D
        assert_eq!(
            device_bytes(KernelId::CublasLtFp8, Precision::Fp8E4m3, &mm),
            2 * (48 * 32 + 48 * 32 + 2 * 48 * 48)
        );
        let attn = Workload::Attention(AttentionShape {
            batch: 1,
            heads: 2,
            seq_q: 64,
            seq_kv: 128,
            head_dim: 64,
            causal: true,
        });
        let io = 2 * 64 * (2 * 64 + 2 * 128) * 2;
        assert_eq!(device_bytes(KernelId::Flash, Precision::F16, &attn), io);
        assert_eq!(
            device_bytes(KernelId::CublasUnfused, Precision::F16, &attn),
            io + 2 * 64 * 128 * 6
        );
    }
}
