// softmax_rows.cu — the middle step of the unfused attention baseline ("cublas-unfused"):
// S = Q·Kᵀ comes from a cuBLAS GEMM as f32 [batch·heads·seq_q][seq_kv]; this kernel
// scales, applies the causal mask and a max-subtracted softmax per row, and writes P in
// f16/bf16 for the P·V GEMM. It reads S three times and writes P once: the memory
// traffic a fused kernel avoids is exactly what this baseline is for.
//
// Causal is bottom-right aligned: row i (within seq_q) sees keys j <= i + (seq_kv - seq_q);
// a row that sees no key is all zeros.
#include "jb_common.cuh"

namespace softmax {

constexpr int THREADS = 256;
constexpr int WARPS = THREADS / 32;

// Reduce across the block; every thread gets the result. `scratch` holds one value per warp.
template <bool MAX>
__device__ __forceinline__ float block_reduce(float v, float* scratch) {
#pragma unroll
  for (int o = 16; o > 0; o /= 2) {
    const float w = __shfl_xor_sync(0xffffffffu, v, o);
    v = MAX ? fmaxf(v, w) : v + w;
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = scratch[0];
#pragma unroll
  for (int w = 1; w < WARPS; ++w) v = MAX ? fmaxf(v, scratch[w]) : v + scratch[w];
  return v;
}

template <typename T>
__device__ __forceinline__ void rows(const float* __restrict__ S, jb::bits16* __restrict__ P,
                                     int seq_q, int seq_kv, float scale_log2, int causal) {
  __shared__ float max_scratch[WARPS], sum_scratch[WARPS];
  const size_t row = blockIdx.x;
  const int i = (int)(row % (size_t)seq_q);
  const float* s = S + row * seq_kv;
  jb::bits16* p = P + row * seq_kv;

  int visible = seq_kv;
  if (causal) visible = max(0, min(seq_kv, i + (seq_kv - seq_q) + 1));

  float mx = -INFINITY;
  for (int j = threadIdx.x; j < visible; j += THREADS) mx = fmaxf(mx, s[j]);
  mx = block_reduce<true>(mx, max_scratch);

  // scale > 0, so the max of the scaled scores is the scaled max.
  float sum = 0.f;
  for (int j = threadIdx.x; j < visible; j += THREADS) sum += exp2f((s[j] - mx) * scale_log2);
  sum = block_reduce<false>(sum, sum_scratch);
  const float inv = sum > 0.f ? 1.f / sum : 0.f;

  for (int j = threadIdx.x; j < seq_kv; j += THREADS)
    p[j] = jb::Elem<T>::from_float(j < visible ? exp2f((s[j] - mx) * scale_log2) * inv : 0.f);
}

}  // namespace softmax

// Grid: (batch·heads·seq_q, 1, 1), one block per row; 256 threads; static shared memory.
#define JB_SOFTMAX(name, T)                                                                \
  JB_CHECK_LAUNCH(name, softmax::THREADS, 0);                                             \
  extern "C" __global__ void __launch_bounds__(softmax::THREADS)                          \
      name(const float* S, T* P, int seq_q, int seq_kv, float scale_log2, int causal) {   \
    softmax::rows<T>(S, reinterpret_cast<jb::bits16*>(P), seq_q, seq_kv, scale_log2,      \
                     causal);                                                             \
  }

JB_SOFTMAX(softmax_rows_f16, __half)
JB_SOFTMAX(softmax_rows_bf16, __nv_bfloat16)
