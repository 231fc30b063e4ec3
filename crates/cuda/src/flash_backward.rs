//! cuda-flash-bwd prepared for one point: our fused attention backward
//! (kernels/cuda/flash_attention_backward.cu, FlashAttention-2's algorithm). The
//! forward pass a training step would have run leaves O and each row's log-sum-exp;
//! here our forward kernel makes them, untimed, whenever the inputs change. The timed
//! launch is the backward alone: D = rowsum(dO ∘ O), the fused dK/dV/dQ kernel, and
//! dQ's conversion from its f32 accumulator.

use crate::gpu::{Gpu, Prepared};
use crate::kernels::{
    flash_bwd_prep_rows_per_block, FLASH_ATTENTION, FLASH_ATTENTION_BACKWARD, FLASH_BLOCK_M,
    FLASH_BWD_BLOCK_N, FLASH_BWD_DQ_PER_BLOCK,
};
use crate::ours::{check_flash, dtype, elem_of};
use crate::tensor::{device_error, Elem, Placement, Tensor};
use crate::timing::Timer;
use cudarc::driver::{LaunchConfig, PushKernelArg};
use joulebench_core::{AttentionShape, BackendError, Precision};

/// Shapes the fused backward runs: those of the fused forward it reads O and the
/// log-sum-exp from.
pub(crate) fn check(s: &AttentionShape) -> Result<(), String> {
    check_flash(s).map_err(|e| e.replace("cuda-flash", "cuda-flash-bwd"))
}

/// Device memory of one point: Q, K, V, dO and O; dQ, dK, dV; the log-sum-exp and D
/// (f32 per query row) and dQ's f32 accumulator.
pub(crate) fn device_bytes(elem_bytes: u128, s: &AttentionShape) -> u128 {
    let bh = s.batch as u128 * s.heads as u128;
    let (sq, skv, d) = (s.seq_q as u128, s.seq_kv as u128, s.head_dim as u128);
    bh * d * (4 * sq + 4 * skv) * elem_bytes + bh * sq * (2 + d) * 4
}

/// Q, K, V and dO in; dQ, dK and dV out, one buffer in that order (see
/// `joulebench_core::reference`).
pub(crate) fn flash_attention_backward<'a>(
    gpu: &'a Gpu,
    precision: Precision,
    s: &AttentionShape,
    qkv_do: [&[f32]; 4],
    timer: Timer,
) -> Result<Prepared<'a>, BackendError> {
    let elem = elem_of(precision)?;
    let dt = dtype(elem);
    let bh = (s.batch * s.heads) as usize;
    let (sq, skv, d) = (s.seq_q as usize, s.seq_kv as usize, s.head_dim as usize);
    let main_kernel = format!("flash_bwd_d{d}_{dt}");
    let prep_kernel = format!("flash_bwd_prep_d{d}_{dt}");
    let dq_kernel = format!("flash_bwd_dq_{dt}");
    let forward_kernel = format!("flash_attention_d{d}_{dt}");
    let (forward, fwd_threads, fwd_smem) = gpu.function(&FLASH_ATTENTION, &forward_kernel)?;
    let (prep, prep_threads, _) = gpu.function(&FLASH_ATTENTION_BACKWARD, &prep_kernel)?;
    let (main, main_threads, main_smem) = gpu.function(&FLASH_ATTENTION_BACKWARD, &main_kernel)?;
    let (to_dq, dq_threads, _) = gpu.function(&FLASH_ATTENTION_BACKWARD, &dq_kernel)?;

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
    let t_o = Tensor::alloc(&stream, elem, Placement::dense(bh, sq, d))?;
    let t_lse = Tensor::alloc(&stream, Elem::F32, Placement::dense(1, bh, sq))?;
    let t_dvec = Tensor::alloc(&stream, Elem::F32, Placement::dense(1, bh, sq))?;
    let t_acc = Tensor::alloc(&stream, Elem::F32, Placement::dense(bh, sq, d))?;
    let [po, plse, pdvec, pacc] = [&t_o, &t_lse, &t_dvec, &t_acc].map(|t| t.ptr(&stream));

    let (sq_i, skv_i) = (sq as i32, skv as i32);
    let scale = 1.0 / (d as f32).sqrt();
    let scale_log2 = std::f32::consts::LOG2_E * scale;
    let causal = s.causal as i32;
    let rows = (bh * sq) as i64;
    let dq_elements = (bh * sq * d) as i64;

    let forward_cfg = LaunchConfig {
        grid_dim: (
            s.seq_q.div_ceil(FLASH_BLOCK_M) as u32,
            s.heads as u32,
            s.batch as u32,
        ),
        block_dim: (fwd_threads, 1, 1),
        shared_mem_bytes: fwd_smem,
    };
    let fwd_stream = stream.clone();
    let mut refresh = Box::new(move || {
        let mut args = fwd_stream.launch_builder(&forward);
        args.arg(&pq)
            .arg(&pk)
            .arg(&pv)
            .arg(&po)
            .arg(&plse)
            .arg(&sq_i)
            .arg(&skv_i)
            .arg(&scale_log2)
            .arg(&causal);
        // SAFETY: arguments match `flash_attention_d*(const T* Q, const T* K, const T* V,
        // T* O, float* lse, int seq_q, int seq_kv, float scale_log2, int causal)`; O holds
        // batch·heads·seq_q·D elements and lse batch·heads·seq_q floats.
        unsafe { args.launch(forward_cfg) }
            .map(|_| ())
            .map_err(device_error("launch the forward pass the backward reads"))
    }) as crate::gpu::Launch<'a>;
    // the timed runs read the forward's O and log-sum-exp of the uploaded inputs
    refresh()?;

    let prep_cfg = LaunchConfig {
        grid_dim: (
            (rows as u64).div_ceil(flash_bwd_prep_rows_per_block(s.head_dim)) as u32,
            1,
            1,
        ),
        block_dim: (prep_threads, 1, 1),
        shared_mem_bytes: 0,
    };
    let main_cfg = LaunchConfig {
        grid_dim: (
            s.seq_kv.div_ceil(FLASH_BWD_BLOCK_N) as u32,
            s.heads as u32,
            s.batch as u32,
        ),
        block_dim: (main_threads, 1, 1),
        shared_mem_bytes: main_smem,
    };
    let dq_cfg = LaunchConfig {
        grid_dim: (
            (dq_elements as u64).div_ceil(FLASH_BWD_DQ_PER_BLOCK) as u32,
            1,
            1,
        ),
        block_dim: (dq_threads, 1, 1),
        shared_mem_bytes: 0,
    };
    let launch = Box::new(move || {
        let mut args = stream.launch_builder(&prep);
        args.arg(&po).arg(&pdo).arg(&pdvec).arg(&pacc).arg(&rows);
        // SAFETY: arguments match `flash_bwd_prep_d*(const T* O, const T* dO, float* Dvec,
        // float* dq_acc, long long rows)`; O and dO hold rows·D elements, Dvec rows
        // floats, dq_acc rows·D floats.
        unsafe { args.launch(prep_cfg) }.map_err(device_error("launch flash_bwd_prep"))?;
        let mut args = stream.launch_builder(&main);
        args.arg(&pq)
            .arg(&pk)
            .arg(&pv)
            .arg(&pdo)
            .arg(&plse)
            .arg(&pdvec)
            .arg(&pacc)
            .arg(&pdk)
            .arg(&pdv)
            .arg(&sq_i)
            .arg(&skv_i)
            .arg(&scale_log2)
            .arg(&scale)
            .arg(&causal);
        // SAFETY: arguments match `flash_bwd_d*(const T* Q, const T* K, const T* V,
        // const T* dO, const float* lse, const float* Dvec, float* dq_acc, T* dK, T* dV,
        // int seq_q, int seq_kv, float scale_log2, float scale, int causal)`; the grid
        // covers heads x batch exactly, dK and dV lie inside the output buffer.
        unsafe { args.launch(main_cfg) }.map_err(device_error("launch flash_bwd"))?;
        let mut args = stream.launch_builder(&to_dq);
        args.arg(&pacc).arg(&pdq).arg(&dq_elements).arg(&scale);
        // SAFETY: arguments match `flash_bwd_dq_*(const float* dq_acc, T* dQ, long long n,
        // float scale)`; both hold n = batch·heads·seq_q·D elements, a multiple of 8.
        unsafe { args.launch(dq_cfg) }
            .map(|_| ())
            .map_err(device_error("launch flash_bwd_dq"))
    });
    Ok(Prepared {
        gpu,
        inputs,
        output,
        launch,
        timer,
        variant: format!(
            "{prep_kernel} + {main_kernel} + {dq_kernel}: 64 keys per block (8 warps), \
             64-query tiles, dQ accumulated atomically in f32{}",
            if s.causal {
                ", causal tiles skipped"
            } else {
                ""
            }
        ),
        _scratch: vec![t_o, t_lse, t_dvec, t_acc],
        refresh: Some(refresh),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_bytes_count_every_buffer() {
        let s = AttentionShape {
            batch: 1,
            heads: 2,
            seq_q: 64,
            seq_kv: 128,
            head_dim: 64,
            causal: true,
        };
        // Q, dO, O, dQ (64 rows); K, V, dK, dV (128 rows); lse, D and dQ's accumulator
        assert_eq!(
            device_bytes(2, &s),
            2 * 64 * (4 * 64 + 4 * 128) * 2 + 2 * 64 * (2 + 64) * 4
        );
        assert!(check(&AttentionShape { head_dim: 96, ..s })
            .unwrap_err()
            .contains("cuda-flash-bwd"));
    }
}
