//! The vendor baselines our kernels are judged against: cuBLAS GEMMs (f32, tf32, f16,
//! bf16, strided-batched), cuBLASLt FP8, and unfused attention built from two cuBLAS
//! GEMMs around our softmax kernel (its backward from five: `attention_backward`).
//! cuBLAS is column-major; every call below computes the row-major product of the
//! joulebench contract as its column-major transpose.

use crate::gpu::{Gpu, Prepared};
use crate::handles::{Blas, LT_WORKSPACE_BYTES};
use crate::kernels::SOFTMAX_ROWS;
use crate::tensor::{attention_tensors, device_error, Elem, Placement, Tensor};
use crate::timing::Timer;
use cudarc::cublas::{result as blas_result, sys as blas_sys};
use cudarc::cublaslt::{result as lt_result, sys as lt_sys};
use cudarc::driver::{DevicePtr, LaunchConfig, PushKernelArg};
use joulebench_core::{AttentionShape, BackendError, MatmulShape, Precision};
use std::ffi::c_void;

mod attention_backward;
pub(crate) use attention_backward::unfused_attention_backward;

fn blas_error(what: &'static str) -> impl Fn(blas_result::CublasError) -> BackendError {
    move |e| BackendError::Device(format!("{what}: {e:?}"))
}

fn lt_error(what: &'static str) -> impl Fn(lt_result::CublasError) -> BackendError {
    move |e| BackendError::Device(format!("{what}: {e:?}"))
}

fn fits_i32(values: &[u64]) -> Result<(), String> {
    if values.iter().any(|&v| v > i32::MAX as u64) {
        Err("a dimension exceeds cuBLAS's 32-bit int arguments".into())
    } else {
        Ok(())
    }
}

pub(crate) fn check_cublas(s: &MatmulShape) -> Result<(), String> {
    fits_i32(&[s.batch, s.m, s.n, s.k])
}

/// FP8 operands are zero-padded to multiples of 16 (cuBLASLt's FP8 alignment rule).
const FP8_PAD: u64 = 16;

pub(crate) fn check_fp8(s: &MatmulShape) -> Result<(), String> {
    fits_i32(&[
        s.batch,
        s.m.next_multiple_of(FP8_PAD),
        s.n.next_multiple_of(FP8_PAD),
        s.k.next_multiple_of(FP8_PAD),
    ])
}

pub(crate) fn check_unfused(s: &AttentionShape) -> Result<(), String> {
    let bh = s.batch * s.heads;
    fits_i32(&[
        bh,
        s.seq_q,
        s.seq_kv,
        s.head_dim,
        bh.saturating_mul(s.seq_q),
    ])
}

/// One `cublasGemmStridedBatchedEx` call, column-major operands as cuBLAS names them.
struct GemmCall {
    transa: blas_sys::cublasOperation_t,
    transb: blas_sys::cublasOperation_t,
    m: i32,
    n: i32,
    k: i32,
    a: u64,
    a_type: blas_sys::cudaDataType,
    lda: i32,
    stride_a: i64,
    b: u64,
    b_type: blas_sys::cudaDataType,
    ldb: i32,
    stride_b: i64,
    c: u64,
    c_type: blas_sys::cudaDataType,
    ldc: i32,
    stride_c: i64,
    batch: i32,
    compute: blas_sys::cublasComputeType_t,
}

impl GemmCall {
    /// C = A·B for row-major A [batch][m][k], B [batch][k][n], C [batch][m][n]: in
    /// column-major terms Cᵀ = Bᵀ·Aᵀ, so B is cuBLAS's first operand.
    #[allow(clippy::too_many_arguments)]
    fn row_major(
        s: &MatmulShape,
        a: u64,
        b: u64,
        c: u64,
        in_type: blas_sys::cudaDataType,
        out_type: blas_sys::cudaDataType,
        compute: blas_sys::cublasComputeType_t,
    ) -> Self {
        let (m, n, k) = (s.m as i32, s.n as i32, s.k as i32);
        Self {
            transa: blas_sys::cublasOperation_t::CUBLAS_OP_N,
            transb: blas_sys::cublasOperation_t::CUBLAS_OP_N,
            m: n,
            n: m,
            k,
            a: b,
            a_type: in_type,
            lda: n,
            stride_a: (s.k * s.n) as i64,
            b: a,
            b_type: in_type,
            ldb: k,
            stride_b: (s.m * s.k) as i64,
            c,
            c_type: out_type,
            ldc: n,
            stride_c: (s.m * s.n) as i64,
            batch: s.batch as i32,
            compute,
        }
    }

    fn run(&self, blas: &Blas) -> Result<(), BackendError> {
        let (alpha, beta) = (1.0f32, 0.0f32);
        // SAFETY: pointers address live device buffers of the sizes the strides imply;
        // alpha and beta are f32 as COMPUTE_32F* requires.
        unsafe {
            blas_result::gemm_strided_batched_ex(
                blas.handle,
                self.transa,
                self.transb,
                self.m,
                self.n,
                self.k,
                &alpha as *const f32 as *const c_void,
                self.a as *const c_void,
                self.a_type,
                self.lda,
                self.stride_a,
                self.b as *const c_void,
                self.b_type,
                self.ldb,
                self.stride_b,
                &beta as *const f32 as *const c_void,
                self.c as *mut c_void,
                self.c_type,
                self.ldc,
                self.stride_c,
                self.batch,
                self.compute,
                blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .map_err(blas_error("cublasGemmStridedBatchedEx"))
    }
}

fn blas_types(
    precision: Precision,
) -> Result<(Elem, blas_sys::cudaDataType, blas_sys::cublasComputeType_t), BackendError> {
    use blas_sys::cublasComputeType_t::*;
    use blas_sys::cudaDataType::*;
    match precision {
        Precision::F32 => Ok((Elem::F32, CUDA_R_32F, CUBLAS_COMPUTE_32F)),
        // f32 storage, inputs rounded to TF32 on the tensor cores: labelled tf32, never f32.
        Precision::Tf32 => Ok((Elem::F32, CUDA_R_32F, CUBLAS_COMPUTE_32F_FAST_TF32)),
        Precision::F16 => Ok((Elem::F16, CUDA_R_16F, CUBLAS_COMPUTE_32F)),
        Precision::Bf16 => Ok((Elem::Bf16, CUDA_R_16BF, CUBLAS_COMPUTE_32F)),
        p => Err(BackendError::Unsupported(format!(
            "cublas does not run {p}"
        ))),
    }
}

/// cublas: strided-batched GEMM at f32, tf32, f16 or bf16 (f32 accumulation).
pub(crate) fn cublas_matmul<'a>(
    gpu: &'a Gpu,
    precision: Precision,
    s: &MatmulShape,
    a: &[f32],
    b: &[f32],
    timer: Timer,
) -> Result<Prepared<'a>, BackendError> {
    let blas = gpu.blas()?;
    let (elem, dtype, compute) = blas_types(precision)?;
    let (batch, m, n, k) = (s.batch as usize, s.m as usize, s.n as usize, s.k as usize);
    let stream = gpu.stream.clone();
    let mut ta = Tensor::alloc(&stream, elem, Placement::dense(batch, m, k))?;
    let mut tb = Tensor::alloc(&stream, elem, Placement::dense(batch, k, n))?;
    let tc = Tensor::alloc(&stream, elem, Placement::dense(batch, m, n))?;
    ta.upload(&stream, a)?;
    tb.upload(&stream, b)?;
    let call = GemmCall::row_major(
        s,
        ta.ptr(&stream),
        tb.ptr(&stream),
        tc.ptr(&stream),
        dtype,
        dtype,
        compute,
    );
    Ok(Prepared {
        gpu,
        inputs: vec![ta, tb],
        output: tc,
        launch: Box::new(move || call.run(blas)),
        timer,
        variant: format!("cublasGemmStridedBatchedEx, {dtype:?}, {compute:?}"),
        _scratch: Vec::new(),
        refresh: None,
    })
}

/// cuBLASLt descriptors for one FP8 GEMM, destroyed with the prepared kernel.
struct LtPlan {
    desc: lt_sys::cublasLtMatmulDesc_t,
    layouts: [lt_sys::cublasLtMatrixLayout_t; 3],
    pref: lt_sys::cublasLtMatmulPreference_t,
}

impl Drop for LtPlan {
    fn drop(&mut self) {
        // SAFETY: each object was created once and is destroyed once; null ones skipped.
        unsafe {
            for l in self.layouts {
                if !l.is_null() {
                    let _ = lt_result::destroy_matrix_layout(l);
                }
            }
            if !self.desc.is_null() {
                let _ = lt_result::destroy_matmul_desc(self.desc);
            }
            if !self.pref.is_null() {
                let _ = lt_result::destroy_matmul_pref(self.pref);
            }
        }
    }
}

/// Set one cuBLASLt attribute from a plain value.
macro_rules! set_attr {
    ($f:path, $obj:expr, $attr:expr, $value:expr, $what:literal) => {{
        let v = $value;
        // SAFETY: the buffer is a live local of exactly the size passed.
        unsafe {
            $f(
                $obj,
                $attr,
                &v as *const _ as *const c_void,
                std::mem::size_of_val(&v),
            )
        }
        .map_err(lt_error($what))
    }};
}

/// cublaslt-fp8: D (bf16) = A·B with A, B in FP8 e4m3, f32 accumulation (sm_89+).
///
/// FP8 tensor-core GEMMs take only the "TN" layout: in column-major terms the first
/// operand transposed. For row-major C = A·B computed as Cᵀ = Bᵀ·Aᵀ that means B is
/// stored as [n][k] — transposed once on upload, outside any timing. Every dimension is
/// zero-padded to a multiple of 16; the padded FLOPs are not credited.
pub(crate) fn fp8_matmul<'a>(
    gpu: &'a Gpu,
    s: &MatmulShape,
    a: &[f32],
    b: &[f32],
    timer: Timer,
) -> Result<Prepared<'a>, BackendError> {
    use lt_sys::cublasLtMatmulDescAttributes_t::*;
    use lt_sys::cublasLtMatrixLayoutAttribute_t::*;
    let lt = gpu.blas_lt()?;
    let (batch, m, n, k) = (s.batch as usize, s.m as usize, s.n as usize, s.k as usize);
    let pad = |x: usize| x.next_multiple_of(FP8_PAD as usize);
    let (mp, np, kp) = (pad(m), pad(n), pad(k));

    let stream = gpu.stream.clone();
    let a_place = Placement {
        batch,
        rows: m,
        cols: k,
        stored_rows: mp,
        stored_cols: kp,
        transposed: false,
    };
    let b_place = Placement {
        batch,
        rows: k,
        cols: n,
        stored_rows: np,
        stored_cols: kp,
        transposed: true,
    };
    let d_place = Placement {
        batch,
        rows: m,
        cols: n,
        stored_rows: mp,
        stored_cols: np,
        transposed: false,
    };
    let mut ta = Tensor::alloc(&stream, Elem::E4m3, a_place)?;
    let mut tb = Tensor::alloc(&stream, Elem::E4m3, b_place)?;
    let td = Tensor::alloc(&stream, Elem::Bf16, d_place)?;
    ta.upload(&stream, a)?;
    tb.upload(&stream, b)?;

    let mut plan = LtPlan {
        desc: std::ptr::null_mut(),
        layouts: [std::ptr::null_mut(); 3],
        pref: std::ptr::null_mut(),
    };
    plan.desc = lt_result::create_matmul_desc(
        lt_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
        lt_sys::cudaDataType::CUDA_R_32F,
    )
    .map_err(lt_error("cublasLtMatmulDescCreate"))?;
    set_attr!(
        lt_result::set_matmul_desc_attribute,
        plan.desc,
        CUBLASLT_MATMUL_DESC_TRANSA,
        blas_sys::cublasOperation_t::CUBLAS_OP_T,
        "set TRANSA"
    )?;
    set_attr!(
        lt_result::set_matmul_desc_attribute,
        plan.desc,
        CUBLASLT_MATMUL_DESC_TRANSB,
        blas_sys::cublasOperation_t::CUBLAS_OP_N,
        "set TRANSB"
    )?;
    // Column-major: first operand Bᵀ-stored (kp x np), second A (kp x mp), D (np x mp).
    let shapes = [
        (
            lt_sys::cudaDataType::CUDA_R_8F_E4M3,
            kp,
            np,
            (kp * np) as i64,
        ),
        (
            lt_sys::cudaDataType::CUDA_R_8F_E4M3,
            kp,
            mp,
            (kp * mp) as i64,
        ),
        (lt_sys::cudaDataType::CUDA_R_16BF, np, mp, (np * mp) as i64),
    ];
    for (slot, (dtype, rows, cols, stride)) in plan.layouts.iter_mut().zip(shapes) {
        *slot = lt_result::create_matrix_layout(dtype, rows as u64, cols as u64, rows as i64)
            .map_err(lt_error("cublasLtMatrixLayoutCreate"))?;
        if batch > 1 {
            set_attr!(
                lt_result::set_matrix_layout_attribute,
                *slot,
                CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                batch as i32,
                "set the batch count"
            )?;
            set_attr!(
                lt_result::set_matrix_layout_attribute,
                *slot,
                CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                stride,
                "set the batch stride"
            )?;
        }
    }
    plan.pref =
        lt_result::create_matmul_pref().map_err(lt_error("cublasLtMatmulPreferenceCreate"))?;
    set_attr!(
        lt_result::set_matmul_pref_attribute,
        plan.pref,
        lt_sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
        LT_WORKSPACE_BYTES as u64,
        "set the workspace size"
    )?;
    let [la, lb, ld] = plan.layouts;
    // SAFETY: all descriptors were created above and are alive.
    let heuristic = unsafe {
        lt_result::get_matmul_algo_heuristic(lt.handle, plan.desc, la, lb, ld, ld, plan.pref)
    }
    .map_err(|e| {
        BackendError::Unsupported(format!(
            "cuBLASLt offers no FP8 algorithm for {m}x{n}x{k} (padded {mp}x{np}x{kp}): {e:?}"
        ))
    })?;

    let (pa, pb, pd) = (ta.ptr(&stream), tb.ptr(&stream), td.ptr(&stream));
    let (workspace, _guard) = lt.workspace.device_ptr(&stream);
    let workspace_bytes = lt.workspace.len();
    let cu_stream = stream.cu_stream();
    let launch = Box::new(move || {
        let (alpha, beta) = (1.0f32, 0.0f32);
        let p = &plan;
        // SAFETY: descriptors owned by `plan` (moved into this closure); buffers are
        // fields of the same `Prepared`; C aliases D, which beta = 0 makes unread.
        unsafe {
            lt_result::matmul(
                lt.handle,
                p.desc,
                &alpha as *const f32 as *const c_void,
                &beta as *const f32 as *const c_void,
                pb as *const c_void,
                p.layouts[0],
                pa as *const c_void,
                p.layouts[1],
                pd as *const c_void,
                p.layouts[2],
                pd as *mut c_void,
                p.layouts[2],
                &heuristic.algo,
                workspace as *mut c_void,
                workspace_bytes,
                cu_stream as lt_sys::cudaStream_t,
            )
        }
        .map_err(lt_error("cublasLtMatmul"))
    });
    let padded = (mp, np, kp) != (m, n, k);
    Ok(Prepared {
        gpu,
        inputs: vec![ta, tb],
        output: td,
        launch,
        timer,
        variant: format!(
            "cublasLtMatmul e4m3 x e4m3 -> bf16, TN{}",
            if padded {
                format!(", zero-padded to {mp}x{np}x{kp}")
            } else {
                String::new()
            }
        ),
        _scratch: Vec::new(),
        refresh: None,
    })
}

/// cublas-unfused: S = Q·Kᵀ (cuBLAS, f32 scores), P = softmax(scale·S) with the causal
/// mask (our kernel, f16/bf16), O = P·V (cuBLAS). Materialises the seq_q x seq_kv scores
/// in device memory, and computes the full S even when causal: the baseline for what
/// fusion saves.
pub(crate) fn unfused_attention<'a>(
    gpu: &'a Gpu,
    precision: Precision,
    s: &AttentionShape,
    qkv: [&[f32]; 3],
    timer: Timer,
) -> Result<Prepared<'a>, BackendError> {
    let blas = gpu.blas()?;
    let (elem, dtype, compute) = match precision {
        Precision::F16 | Precision::Bf16 => blas_types(precision)?,
        p => {
            return Err(BackendError::Unsupported(format!(
                "cublas-unfused does not run {p}"
            )))
        }
    };
    let bh = (s.batch * s.heads) as usize;
    let (sq, skv, d) = (s.seq_q as usize, s.seq_kv as usize, s.head_dim as usize);
    let softmax_kernel = match elem {
        Elem::F16 => "softmax_rows_f16",
        _ => "softmax_rows_bf16",
    };
    let (softmax, threads, smem) = gpu.function(&SOFTMAX_ROWS, softmax_kernel)?;

    let stream = gpu.stream.clone();
    let (inputs, to, [pq, pk, pv, po]) = attention_tensors(&stream, elem, (bh, sq, skv, d), qkv)?;
    let ts = Tensor::alloc(&stream, Elem::F32, Placement::dense(bh, sq, skv))?;
    let tp = Tensor::alloc(&stream, elem, Placement::dense(bh, sq, skv))?;
    let (ps, pp) = (ts.ptr(&stream), tp.ptr(&stream));
    let (sq_i, skv_i, d_i, bh_i) = (sq as i32, skv as i32, d as i32, bh as i32);
    use blas_sys::cublasOperation_t::{CUBLAS_OP_N, CUBLAS_OP_T};

    // Sᵀ (skv x sq, column-major) = (K stored d x skv)ᵀ · (Q stored d x sq).
    let scores = GemmCall {
        transa: CUBLAS_OP_T,
        transb: CUBLAS_OP_N,
        m: skv_i,
        n: sq_i,
        k: d_i,
        a: pk,
        a_type: dtype,
        lda: d_i,
        stride_a: (skv * d) as i64,
        b: pq,
        b_type: dtype,
        ldb: d_i,
        stride_b: (sq * d) as i64,
        c: ps,
        c_type: blas_sys::cudaDataType::CUDA_R_32F,
        ldc: skv_i,
        stride_c: (sq * skv) as i64,
        batch: bh_i,
        compute,
    };
    // Oᵀ (d x sq) = (V stored d x skv) · (P stored skv x sq).
    let output = GemmCall {
        transa: CUBLAS_OP_N,
        transb: CUBLAS_OP_N,
        m: d_i,
        n: sq_i,
        k: skv_i,
        a: pv,
        a_type: dtype,
        lda: d_i,
        stride_a: (skv * d) as i64,
        b: pp,
        b_type: dtype,
        ldb: skv_i,
        stride_b: (sq * skv) as i64,
        c: po,
        c_type: dtype,
        ldc: d_i,
        stride_c: (sq * d) as i64,
        batch: bh_i,
        compute,
    };
    let cfg = LaunchConfig {
        grid_dim: ((bh * sq) as u32, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: smem,
    };
    let scale_log2 = std::f32::consts::LOG2_E / (d as f32).sqrt();
    let causal = s.causal as i32;
    let launch = Box::new(move || {
        scores.run(blas)?;
        let mut args = stream.launch_builder(&softmax);
        args.arg(&ps)
            .arg(&pp)
            .arg(&sq_i)
            .arg(&skv_i)
            .arg(&scale_log2)
            .arg(&causal);
        // SAFETY: arguments match `softmax_rows_*(const float* S, T* P, int seq_q,
        // int seq_kv, float scale_log2, int causal)`; one block per row of S.
        unsafe { args.launch(cfg) }.map_err(device_error("launch the softmax kernel"))?;
        output.run(blas)
    });
    Ok(Prepared {
        gpu,
        inputs,
        output: to,
        launch,
        timer,
        variant: format!(
            "cuBLAS Q·Kᵀ (f32 scores) + {softmax_kernel} + cuBLAS P·V, {dtype:?}{}",
            if s.causal {
                ", causal by masking the full S"
            } else {
                ""
            }
        ),
        _scratch: vec![ts, tp],
        refresh: None,
    })
}
