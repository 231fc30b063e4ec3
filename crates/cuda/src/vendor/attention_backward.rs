//! cublas-unfused-bwd: attention backward from five cuBLAS GEMMs around two row
//! kernels, the vendor-library baseline a fused backward is judged against. It keeps
//! the forward baseline's layout and its cost: score-sized matrices in device memory,
//! and every GEMM over the full seq_q x seq_kv even when causal.

use super::{blas_types, GemmCall};
use crate::gpu::{Gpu, Prepared};
use crate::kernels::{ATTENTION_BACKWARD, SOFTMAX_ROWS};
use crate::tensor::{device_error, Elem, Placement, Tensor};
use crate::timing::Timer;
use cudarc::cublas::sys as blas_sys;
use cudarc::driver::{LaunchConfig, PushKernelArg};
use joulebench_core::{AttentionShape, BackendError, Precision};

/// Q, K, V and dO in, dQ, dK and dV out (one buffer, in that order; see
/// `joulebench_core::reference`):
///
/// 1. Sᵀ = K·Qᵀ (cuBLAS, f32), P = softmax(scale·S) with the mask (softmax_rows);
/// 2. dV = Pᵀ·dO and dP = dO·Vᵀ (cuBLAS; dP in f32, over S);
/// 3. dS = scale · P ∘ (dP − rowsum(P ∘ dP)) in place of P (attention_backward.cu);
/// 4. dQ = dS·K and dK = dSᵀ·Q (cuBLAS).
///
/// In column-major terms, as cuBLAS sees the row-major tensors, a `[rows][cols]`
/// tensor is its own transpose with leading dimension `cols`; each call below is the
/// transpose of its row-major product.
pub(crate) fn unfused_attention_backward<'a>(
    gpu: &'a Gpu,
    precision: Precision,
    s: &AttentionShape,
    qkv_do: [&[f32]; 4],
    timer: Timer,
) -> Result<Prepared<'a>, BackendError> {
    let blas = gpu.blas()?;
    let (elem, dtype, compute) = match precision {
        Precision::F16 | Precision::Bf16 => blas_types(precision)?,
        p => {
            return Err(BackendError::Unsupported(format!(
                "cublas-unfused-bwd does not run {p}"
            )))
        }
    };
    let bh = (s.batch * s.heads) as usize;
    let (sq, skv, d) = (s.seq_q as usize, s.seq_kv as usize, s.head_dim as usize);
    let (softmax_kernel, backward_kernel) = match elem {
        Elem::F16 => ("softmax_rows_f16", "softmax_backward_rows_f16"),
        _ => ("softmax_rows_bf16", "softmax_backward_rows_bf16"),
    };
    let (softmax, threads, smem) = gpu.function(&SOFTMAX_ROWS, softmax_kernel)?;
    let (backward, bwd_threads, bwd_smem) = gpu.function(&ATTENTION_BACKWARD, backward_kernel)?;

    let stream = gpu.stream.clone();
    let mut inputs = vec![
        Tensor::alloc(&stream, elem, Placement::dense(bh, sq, d))?,
        Tensor::alloc(&stream, elem, Placement::dense(bh, skv, d))?,
        Tensor::alloc(&stream, elem, Placement::dense(bh, skv, d))?,
        Tensor::alloc(&stream, elem, Placement::dense(bh, sq, d))?,
    ];
    for (tensor, values) in inputs.iter_mut().zip(qkv_do) {
        tensor.upload(&stream, values)?;
    }
    let [pq, pk, pv, pdo] = [0, 1, 2, 3].map(|i| inputs[i].ptr(&stream));
    let output = Tensor::alloc(
        &stream,
        elem,
        Placement::dense(1, 1, bh * (sq + 2 * skv) * d),
    )?;
    let pdq = output.ptr(&stream);
    let pdk = pdq + (bh * sq * d * elem.bytes()) as u64;
    let pdv = pdk + (bh * skv * d * elem.bytes()) as u64;
    // S, then dP (f32); P, then dS (16-bit)
    let ts = Tensor::alloc(&stream, Elem::F32, Placement::dense(bh, sq, skv))?;
    let tp = Tensor::alloc(&stream, elem, Placement::dense(bh, sq, skv))?;
    let (ps, pp) = (ts.ptr(&stream), tp.ptr(&stream));

    let (sq_i, skv_i, d_i, bh_i) = (sq as i32, skv as i32, d as i32, bh as i32);
    let (q_stride, kv_stride, s_stride) = ((sq * d) as i64, (skv * d) as i64, (sq * skv) as i64);
    use blas_sys::cublasOperation_t::{CUBLAS_OP_N, CUBLAS_OP_T};
    use blas_sys::cudaDataType::CUDA_R_32F;
    // C (m x n, column-major) = op(A) · op(B), `batch` times.
    let gemm = |transa,
                transb,
                (m, n, k): (i32, i32, i32),
                a: (u64, i32, i64),
                b: (u64, i32, i64),
                c: (u64, i32, i64),
                c_type| GemmCall {
        transa,
        transb,
        m,
        n,
        k,
        a: a.0,
        a_type: dtype,
        lda: a.1,
        stride_a: a.2,
        b: b.0,
        b_type: dtype,
        ldb: b.1,
        stride_b: b.2,
        c: c.0,
        c_type,
        ldc: c.1,
        stride_c: c.2,
        batch: bh_i,
        compute,
    };
    // Sᵀ (skv x sq) = (K, d x skv)ᵀ · (Q, d x sq)
    let scores = gemm(
        CUBLAS_OP_T,
        CUBLAS_OP_N,
        (skv_i, sq_i, d_i),
        (pk, d_i, kv_stride),
        (pq, d_i, q_stride),
        (ps, skv_i, s_stride),
        CUDA_R_32F,
    );
    // dVᵀ (d x skv) = (dO, d x sq) · (P, skv x sq)ᵀ
    let grad_v = gemm(
        CUBLAS_OP_N,
        CUBLAS_OP_T,
        (d_i, skv_i, sq_i),
        (pdo, d_i, q_stride),
        (pp, skv_i, s_stride),
        (pdv, d_i, kv_stride),
        dtype,
    );
    // dPᵀ (skv x sq) = (V, d x skv)ᵀ · (dO, d x sq)
    let grad_p = gemm(
        CUBLAS_OP_T,
        CUBLAS_OP_N,
        (skv_i, sq_i, d_i),
        (pv, d_i, kv_stride),
        (pdo, d_i, q_stride),
        (ps, skv_i, s_stride),
        CUDA_R_32F,
    );
    // dQᵀ (d x sq) = (K, d x skv) · (dS, skv x sq)
    let grad_q = gemm(
        CUBLAS_OP_N,
        CUBLAS_OP_N,
        (d_i, sq_i, skv_i),
        (pk, d_i, kv_stride),
        (pp, skv_i, s_stride),
        (pdq, d_i, q_stride),
        dtype,
    );
    // dKᵀ (d x skv) = (Q, d x sq) · (dS, skv x sq)ᵀ
    let grad_k = gemm(
        CUBLAS_OP_N,
        CUBLAS_OP_T,
        (d_i, skv_i, sq_i),
        (pq, d_i, q_stride),
        (pp, skv_i, s_stride),
        (pdk, d_i, kv_stride),
        dtype,
    );

    let rows = |threads, smem| LaunchConfig {
        grid_dim: ((bh * sq) as u32, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: smem,
    };
    let (softmax_cfg, backward_cfg) = (rows(threads, smem), rows(bwd_threads, bwd_smem));
    let scale = 1.0 / (d as f32).sqrt();
    let scale_log2 = std::f32::consts::LOG2_E * scale;
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
        unsafe { args.launch(softmax_cfg) }.map_err(device_error("launch the softmax kernel"))?;
        grad_v.run(blas)?;
        grad_p.run(blas)?;
        let mut args = stream.launch_builder(&backward);
        args.arg(&pp)
            .arg(&ps)
            .arg(&sq_i)
            .arg(&skv_i)
            .arg(&scale)
            .arg(&causal);
        // SAFETY: arguments match `softmax_backward_rows_*(T* P_dS, const float* dP,
        // int seq_q, int seq_kv, float scale, int causal)`; one block per row.
        unsafe { args.launch(backward_cfg) }
            .map_err(device_error("launch the softmax backward kernel"))?;
        grad_q.run(blas)?;
        grad_k.run(blas)
    });
    Ok(Prepared {
        gpu,
        inputs,
        output,
        launch,
        timer,
        variant: format!(
            "cuBLAS Q·Kᵀ + {softmax_kernel} + cuBLAS dV, dP + {backward_kernel} + cuBLAS dQ, dK, {dtype:?}{}",
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
