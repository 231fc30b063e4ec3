//! Our kernels (cuda-simt, cuda-mma, cuda-flash) prepared for one point: buffers in the
//! kernel's element type, the fast or the ragged-shape instance chosen from the shape,
//! and a launch closure the timer calls back-to-back.

use crate::gpu::{Gpu, Prepared};
use crate::kernels::{
    FLASH_ATTENTION, FLASH_BLOCK_M, MATMUL_MMA, MATMUL_SIMT, MMA_TILE, SIMT_TILE,
};
use crate::tensor::{attention_tensors, device_error, Elem, Placement, Tensor};
use crate::timing::Timer;
use cudarc::driver::{LaunchConfig, PushKernelArg};
use joulebench_core::{AttentionShape, BackendError, MatmulShape, Precision};

/// CUDA's limit on gridDim.y and gridDim.z.
const GRID_YZ_MAX: u64 = 65_535;

pub(crate) fn check_matmul(s: &MatmulShape) -> Result<(), String> {
    if s.batch > GRID_YZ_MAX {
        return Err(format!(
            "batch {} exceeds the grid limit {GRID_YZ_MAX}",
            s.batch
        ));
    }
    if s.m.div_ceil(SIMT_TILE.0.min(MMA_TILE.0)) > GRID_YZ_MAX {
        return Err(format!(
            "m = {} needs more than {GRID_YZ_MAX} row blocks",
            s.m
        ));
    }
    if [s.m, s.n, s.k].iter().any(|&d| d > i32::MAX as u64) {
        return Err("a dimension exceeds the kernels' 32-bit indexing".into());
    }
    Ok(())
}

pub(crate) fn check_flash(s: &AttentionShape) -> Result<(), String> {
    if s.head_dim != 64 && s.head_dim != 128 {
        return Err(format!(
            "cuda-flash has head_dim 64 and 128 kernels, not {}",
            s.head_dim
        ));
    }
    if s.heads > GRID_YZ_MAX || s.batch > GRID_YZ_MAX {
        return Err(format!(
            "heads {} and batch {} must each be at most {GRID_YZ_MAX}",
            s.heads, s.batch
        ));
    }
    if s.seq_q > i32::MAX as u64 || s.seq_kv > i32::MAX as u64 {
        return Err("a sequence exceeds the kernel's 32-bit indexing".into());
    }
    Ok(())
}

pub(crate) fn elem_of(precision: Precision) -> Result<Elem, BackendError> {
    match precision {
        Precision::F32 => Ok(Elem::F32),
        Precision::F16 => Ok(Elem::F16),
        Precision::Bf16 => Ok(Elem::Bf16),
        p => Err(BackendError::Unsupported(format!(
            "no kernel of ours runs {p}"
        ))),
    }
}

pub(crate) fn dtype(elem: Elem) -> &'static str {
    match elem {
        Elem::F32 => "f32",
        Elem::F16 => "f16",
        Elem::Bf16 => "bf16",
        Elem::E4m3 => "fp8",
    }
}

/// cuda-simt (f32) or cuda-mma (f16, bf16): C = A·B, batched.
pub(crate) fn matmul<'a>(
    gpu: &'a Gpu,
    precision: Precision,
    s: &MatmulShape,
    a: &[f32],
    b: &[f32],
    timer: Timer,
) -> Result<Prepared<'a>, BackendError> {
    let elem = elem_of(precision)?;
    let (batch, m, n, k) = (s.batch as usize, s.m as usize, s.n as usize, s.k as usize);
    // The fast instances move 16 bytes at a time along K and N.
    let chunk = 16 / elem.bytes();
    let aligned = k % chunk == 0 && n % chunk == 0;
    let (file, tile, variant) = if elem == Elem::F32 {
        (
            &MATMUL_SIMT,
            SIMT_TILE,
            "128x128x8 tiles, 8x8 per thread, double-buffered",
        )
    } else {
        (
            &MATMUL_MMA,
            MMA_TILE,
            "128x128x32 tiles, 8 warps of 64x32, mma.sync m16n8k16, 3-stage cp.async",
        )
    };
    let kernel = if aligned {
        format!("matmul_{}", dtype(elem))
    } else {
        format!("matmul_unaligned_{}", dtype(elem))
    };
    let (func, threads, smem) = gpu.function(file, &kernel)?;

    let stream = gpu.stream.clone();
    let mut ta = Tensor::alloc(&stream, elem, Placement::dense(batch, m, k))?;
    let mut tb = Tensor::alloc(&stream, elem, Placement::dense(batch, k, n))?;
    let tc = Tensor::alloc(&stream, elem, Placement::dense(batch, m, n))?;
    ta.upload(&stream, a)?;
    tb.upload(&stream, b)?;
    let (pa, pb, pc) = (ta.ptr(&stream), tb.ptr(&stream), tc.ptr(&stream));
    let cfg = LaunchConfig {
        grid_dim: (
            (s.n.div_ceil(tile.1)) as u32,
            (s.m.div_ceil(tile.0)) as u32,
            batch as u32,
        ),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: smem,
    };
    let (mi, ni, ki) = (m as i32, n as i32, k as i32);
    let launch = Box::new(move || {
        let mut args = stream.launch_builder(&func);
        args.arg(&pa).arg(&pb).arg(&pc).arg(&mi).arg(&ni).arg(&ki);
        // SAFETY: arguments match `matmul_*(const T* A, const T* B, T* C, int M, int N,
        // int K)`; the buffers hold batch*M*K, batch*K*N and batch*M*N elements and
        // outlive the closure (they are fields of the same `Prepared`).
        unsafe { args.launch(cfg) }
            .map(|_| ())
            .map_err(device_error("launch the matmul kernel"))
    });
    Ok(Prepared {
        gpu,
        inputs: vec![ta, tb],
        output: tc,
        launch,
        timer,
        variant: format!(
            "{kernel}: {variant}{}",
            if aligned {
                ", 16-byte loads"
            } else {
                ", element loads (K or N not a multiple of 16 bytes)"
            }
        ),
        _scratch: Vec::new(),
        refresh: None,
    })
}

/// cuda-flash: fused attention forward.
pub(crate) fn flash_attention<'a>(
    gpu: &'a Gpu,
    precision: Precision,
    s: &AttentionShape,
    qkv: [&[f32]; 3],
    timer: Timer,
) -> Result<Prepared<'a>, BackendError> {
    let elem = elem_of(precision)?;
    let bh = (s.batch * s.heads) as usize;
    let (sq, skv, d) = (s.seq_q as usize, s.seq_kv as usize, s.head_dim as usize);
    let kernel = format!("flash_attention_d{d}_{}", dtype(elem));
    let (func, threads, smem) = gpu.function(&FLASH_ATTENTION, &kernel)?;

    let stream = gpu.stream.clone();
    let (inputs, output, [pq, pk, pv, po]) =
        attention_tensors(&stream, elem, (bh, sq, skv, d), qkv)?;
    let cfg = LaunchConfig {
        grid_dim: (
            s.seq_q.div_ceil(FLASH_BLOCK_M) as u32,
            s.heads as u32,
            s.batch as u32,
        ),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: smem,
    };
    let (sq_i, skv_i) = (sq as i32, skv as i32);
    let scale_log2 = std::f32::consts::LOG2_E / (d as f32).sqrt();
    let causal = s.causal as i32;
    // no log-sum-exp: the forward alone
    let no_lse: u64 = 0;
    let launch = Box::new(move || {
        let mut args = stream.launch_builder(&func);
        args.arg(&pq)
            .arg(&pk)
            .arg(&pv)
            .arg(&po)
            .arg(&no_lse)
            .arg(&sq_i)
            .arg(&skv_i)
            .arg(&scale_log2)
            .arg(&causal);
        // SAFETY: arguments match `flash_attention_d*(const T* Q, const T* K, const T* V,
        // T* O, float* lse, int seq_q, int seq_kv, float scale_log2, int causal)`, lse
        // null; the grid covers heads x batch exactly and the buffers outlive the closure.
        unsafe { args.launch(cfg) }
            .map(|_| ())
            .map_err(device_error("launch the attention kernel"))
    });
    Ok(Prepared {
        gpu,
        inputs,
        output,
        launch,
        timer,
        variant: format!(
            "{kernel}: 64 query rows per block (4 warps), 64-key tiles double-buffered{}",
            if s.causal {
                ", causal tiles skipped"
            } else {
                ""
            }
        ),
        _scratch: Vec::new(),
        refresh: None,
    })
}
