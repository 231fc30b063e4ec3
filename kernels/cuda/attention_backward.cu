// attention_backward.cu — the softmax backward of the unfused attention backward
// ("cublas-unfused-bwd"). cuBLAS recomputes S = Q·Kᵀ and softmax_rows.cu turns it into
// P; cuBLAS then gives dV = Pᵀ·dO and dP = dO·Vᵀ (f32, in S's buffer). This kernel
// turns P into dS = scale · P ∘ (dP − D), with D = Σ_j P_j·dP_j per row, in place,
// for the dQ = dS·K and dK = dSᵀ·Q GEMMs. Like the forward baseline, it reads and
// writes score-sized matrices: the traffic a fused backward avoids.
//
// Causal is bottom-right aligned as in softmax_rows.cu: row i sees keys
// j <= i + (seq_kv - seq_q); P is zero beyond, and so is dS.
#include "jb_common.cuh"

namespace softmax_backward {

constexpr int THREADS = 256;
constexpr int WARPS = THREADS / 32;

template <typename T> __device__ __forceinline__ float to_float(jb::bits16 b);
template <> __device__ __forceinline__ float to_float<__half>(jb::bits16 b) {
  return __half2float(__ushort_as_half(b));
}
template <> __device__ __forceinline__ float to_float<__nv_bfloat16>(jb::bits16 b) {
  return __bfloat162float(__ushort_as_bfloat16(b));
}

// Sum across the block; every thread gets the result. `scratch` holds one value per warp.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
#pragma unroll
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = scratch[0];
#pragma unroll
  for (int w = 1; w < WARPS; ++w) v += scratch[w];
  return v;
}

template <typename T>
__device__ __forceinline__ void rows(jb::bits16* __restrict__ P_dS, const float* __restrict__ dP,
                                     int seq_q, int seq_kv, float scale, int causal) {
  __shared__ float sum_scratch[WARPS];
  const size_t row = blockIdx.x;
  const int i = (int)(row % (size_t)seq_q);
  jb::bits16* p = P_dS + row * seq_kv;
  const float* dp = dP + row * seq_kv;

  int visible = seq_kv;
  if (causal) visible = max(0, min(seq_kv, i + (seq_kv - seq_q) + 1));

  float d = 0.f;
  for (int j = threadIdx.x; j < visible; j += THREADS) d += to_float<T>(p[j]) * dp[j];
  // block_sum's __syncthreads also orders every read of P above before the writes below
  d = block_sum(d, sum_scratch);

  for (int j = threadIdx.x; j < seq_kv; j += THREADS)
    p[j] = jb::Elem<T>::from_float(j < visible ? scale * to_float<T>(p[j]) * (dp[j] - d) : 0.f);
}

}  // namespace softmax_backward

// Grid: (batch·heads·seq_q, 1, 1), one block per row; 256 threads; static shared memory.
#define JB_SOFTMAX_BACKWARD(name, T)                                                      \
  JB_CHECK_LAUNCH(name, softmax_backward::THREADS, 0);                                    \
  extern "C" __global__ void __launch_bounds__(softmax_backward::THREADS)                 \
      name(T* P_dS, const float* dP, int seq_q, int seq_kv, float scale, int causal) {    \
    softmax_backward::rows<T>(reinterpret_cast<jb::bits16*>(P_dS), dP, seq_q, seq_kv,     \
                              scale, causal);                                             \
  }

JB_SOFTMAX_BACKWARD(softmax_backward_rows_f16, __half)
JB_SOFTMAX_BACKWARD(softmax_backward_rows_bf16, __nv_bfloat16)
