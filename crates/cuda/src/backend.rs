//! The CUDA backend as the protocol sees it (`joulebench_core::Backend`): which kernels
//! this device and its libraries can run, at which precisions and shapes, and prepared
//! kernels that are checked once and then run back-to-back under CUDA-event timing.

use crate::gpu::Gpu;
use crate::probe::{self, CudaDeviceSummary};
use crate::tensor::device_error;
use crate::timing::{L2Flush, L2Mode, Timer};
use crate::{ours, vendor};
use cudarc::driver::{sys as drv_sys, CudaContext, CudaSlice};
use joulebench_core::reference::CheckInputs;
use joulebench_core::{
    Backend, BackendError, DeviceInfo, InputDistribution, KernelInfo, Op, Precision,
    PreparedKernel, Support, Workload,
};

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
    CublasUnfusedBwd,
    FlashBwd,
}

impl KernelId {
    pub(crate) const ALL: [KernelId; 8] = [
        KernelId::Simt,
        KernelId::Mma,
        KernelId::Cublas,
        KernelId::CublasLtFp8,
        KernelId::Flash,
        KernelId::CublasUnfused,
        KernelId::CublasUnfusedBwd,
        KernelId::FlashBwd,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            KernelId::Simt => "cuda-simt",
            KernelId::Mma => "cuda-mma",
            KernelId::Cublas => "cublas",
            KernelId::CublasLtFp8 => "cublaslt-fp8",
            KernelId::Flash => "cuda-flash",
            KernelId::CublasUnfused => "cublas-unfused",
            KernelId::CublasUnfusedBwd => "cublas-unfused-bwd",
            KernelId::FlashBwd => "cuda-flash-bwd",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    fn op(self) -> Op {
        match self {
            KernelId::Flash | KernelId::CublasUnfused => Op::Attention,
            KernelId::CublasUnfusedBwd | KernelId::FlashBwd => Op::AttentionBackward,
            _ => Op::Matmul,
        }
    }

    /// A vendor baseline. The unfused attention counts as one: every FLOP it is credited
    /// with runs in cuBLAS; our part is only the softmax (and its backward) between GEMMs.
    fn vendor(self) -> bool {
        matches!(
            self,
            KernelId::Cublas
                | KernelId::CublasLtFp8
                | KernelId::CublasUnfused
                | KernelId::CublasUnfusedBwd
        )
    }

    fn precisions(self) -> &'static [Precision] {
        match self {
            KernelId::Simt => &[Precision::F32],
            KernelId::Mma
            | KernelId::Flash
            | KernelId::FlashBwd
            | KernelId::CublasUnfused
            | KernelId::CublasUnfusedBwd => &[Precision::F16, Precision::Bf16],
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
            (KernelId::Mma | KernelId::Flash | KernelId::FlashBwd, _) => (
                (8, 0),
                "needs cp.async, ldmatrix and bf16 mma.sync (sm_80+)",
            ),
            (KernelId::CublasLtFp8, _) => ((8, 9), "FP8 tensor cores arrived with sm_89"),
            (_, Precision::Tf32) => ((8, 0), "TF32 tensor cores arrived with sm_80"),
            (_, Precision::Bf16) => ((8, 0), "bf16 tensor cores arrived with sm_80"),
            (KernelId::CublasUnfused | KernelId::CublasUnfusedBwd, _) => {
                ((8, 0), "its softmax kernels target sm_80+")
            }
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
            KernelId::CublasUnfusedBwd => {
                "unfused attention backward: cuBLAS S = Q·Kᵀ, softmax, cuBLAS dV and dP, \
                 softmax-backward kernel, cuBLAS dQ and dK"
            }
            KernelId::FlashBwd => {
                "fused attention backward, FlashAttention-2 style (P recomputed per tile from \
                 the forward's log-sum-exp, dK and dV in registers, dQ accumulated in f32)"
            }
        }
    }

    fn needs_nvrtc(self) -> bool {
        matches!(
            self,
            KernelId::Simt
                | KernelId::Mma
                | KernelId::Flash
                | KernelId::FlashBwd
                | KernelId::CublasUnfused
                | KernelId::CublasUnfusedBwd
        )
    }
}

/// Device memory a prepared point allocates: inputs, output and intermediates.
fn device_bytes(k: KernelId, precision: Precision, workload: &Workload) -> u64 {
    let elem = precision.input_bytes() as u128;
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
        (KernelId::FlashBwd, Workload::AttentionBackward(s)) => {
            crate::flash_backward::device_bytes(elem, s)
        }
        // Q, K, V, dO in; dQ, dK, dV out; S then dP (f32) and P then dS
        (_, Workload::AttentionBackward(s)) => {
            let bh = s.batch as u128 * s.heads as u128;
            let (sq, skv, d) = (s.seq_q as u128, s.seq_kv as u128, s.head_dim as u128);
            bh * d * (3 * sq + 4 * skv) * elem + bh * sq * skv * (4 + elem)
        }
    };
    u64::try_from(bytes).unwrap_or(u64::MAX)
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
    precompile_in_background(cc);
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
        gpu: Gpu::new(ctx, stream, cc, max_smem, l2_bytes),
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
        if matches!(
            k,
            KernelId::Cublas | KernelId::CublasUnfused | KernelId::CublasUnfusedBwd
        ) {
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
            (KernelId::FlashBwd, Workload::AttentionBackward(s)) => crate::flash_backward::check(s),
            (KernelId::CublasUnfused, Workload::Attention(s))
            | (KernelId::CublasUnfusedBwd, Workload::AttentionBackward(s)) => {
                vendor::check_unfused(s)
            }
            _ => Err(format!("{kernel} cannot run {workload}")),
        }?;
        // A point larger than the whole GPU is unsupported here, before anything is
        // allocated, so a plan can choose a kernel that fits instead (`prepare` then
        // checks what is free at the time).
        let needs = device_bytes(k, precision, workload);
        if self.summary.memory_bytes > 0 && needs > self.summary.memory_bytes {
            return Err(format!(
                "{kernel} needs {:.1} GiB of device memory for {workload}, the GPU has {:.1} GiB",
                needs as f64 / (1u64 << 30) as f64,
                self.summary.memory_bytes as f64 / (1u64 << 30) as f64
            ));
        }
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
        self.prepare_with_inputs(kernel, precision, workload, seed, InputDistribution::Normal)
    }

    fn prepare_with_inputs(
        &mut self,
        kernel: &str,
        precision: Precision,
        workload: &Workload,
        seed: u64,
        inputs: InputDistribution,
    ) -> Result<Box<dyn PreparedKernel + '_>, BackendError> {
        let k = self
            .check(kernel, precision, workload)
            .map_err(BackendError::Unsupported)?;
        self.gpu.bind()?;
        // Before generating inputs on the host: a point that cannot fit fails fast.
        self.gpu
            .ensure_free(device_bytes(k, precision, workload), kernel)?;
        let flush = self.flush();
        let inputs = CheckInputs::generate_with(workload, precision, seed, inputs);
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
            (
                KernelId::CublasUnfusedBwd,
                Workload::AttentionBackward(s),
                CheckInputs::AttentionBackward { q, k, v, d_o },
            ) => {
                vendor::unfused_attention_backward(&self.gpu, precision, s, [q, k, v, d_o], timer)?
            }
            (
                KernelId::FlashBwd,
                Workload::AttentionBackward(s),
                CheckInputs::AttentionBackward { q, k, v, d_o },
            ) => crate::flash_backward::flash_attention_backward(
                &self.gpu,
                precision,
                s,
                [q, k, v, d_o],
                timer,
            )?,
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

/// Compile every kernel file for this device in a thread of its own while the
/// sweep measures idle power and plans: the first point of each family then finds
/// its module in NVRTC's memory and disk caches instead of waiting seconds for it.
fn precompile_in_background(cc: (u32, u32)) {
    let Ok((arch, target)) = crate::nvrtc::target_for_device(crate::nvrtc::Arch::new(cc.0, cc.1))
    else {
        return;
    };
    let _ = std::thread::Builder::new()
        .name("joulebench-nvrtc-precompile".into())
        .spawn(move || {
            for file in crate::kernels::FILES {
                let _ = crate::nvrtc::compile(file, arch, target);
            }
        });
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
                "cublas-unfused",
                "cublas-unfused-bwd",
                "cuda-flash-bwd"
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
        assert_eq!(KernelId::CublasUnfusedBwd.op(), Op::AttentionBackward);
        assert_eq!(KernelId::FlashBwd.op(), Op::AttentionBackward);
        assert!(!KernelId::FlashBwd.vendor());
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
        let Workload::Attention(s) = attn else {
            unreachable!()
        };
        // Q, dO, dQ (64 rows); K, V, dK, dV (128 rows); S/dP f32 and P/dS f16
        assert_eq!(
            device_bytes(
                KernelId::CublasUnfusedBwd,
                Precision::F16,
                &Workload::AttentionBackward(s)
            ),
            2 * 64 * (3 * 64 + 4 * 128) * 2 + 2 * 64 * 128 * 6
        );
    }
}
