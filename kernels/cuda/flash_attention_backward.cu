// flash_attention_backward.cu — fused attention backward, FlashAttention-2's algorithm
// ("cuda-flash-bwd"): the seq_q x seq_kv probability and gradient matrices never reach
// global memory. The forward pass leaves O and each row's log-sum-exp (flash_attention.cu
// with `lse`); the backward then runs three kernels:
//
// 1. flash_bwd_prep: D_i = Σ_d dO_i,d · O_i,d per query row (f32), and dQ's f32
//    accumulator cleared;
// 2. flash_bwd: one block per 64 keys keeps their dK and dV in registers and walks the
//    query tiles that can see them (from the diagonal on, when causal), recomputing
//    P = exp2(S·scale_log2 − lse) tile by tile; dV += Pᵀ·dO, dK += dSᵀ·Q with
//    dS = P ∘ (dP − D), dP = dO·Vᵀ, and dQ += dS·K added atomically into the f32
//    accumulator (several key blocks share a query row);
// 3. flash_bwd_dq: dQ scaled by 1/sqrt(D) and stored in the element type.
//
// Layout as flash_attention.cu: Q, dO, dQ [batch][heads][seq_q][D], K, V, dK, dV
// [batch][heads][seq_kv][D], row-major; causal masks bottom-right aligned (query i sees
// keys j <= i + seq_kv - seq_q). f16 or bf16 operands, mma.sync m16n8k16 with f32
// accumulation, head_dim 64 or 128 (sm_80 and newer).
#include "jb_common.cuh"

namespace flash_bwd {

constexpr int WARPS = 8;
constexpr int THREADS = WARPS * 32;  // 256
constexpr int BLOCK_N = 64;          // keys per block: four groups of 16
constexpr int BLOCK_M = 64;          // query rows per step: two halves of 32
constexpr int PAD = 8;
// Pᵀ and dSᵀ tiles are [key][query], rows of BLOCK_M + 8 elements (144 bytes): the 8
// rows of an ldmatrix phase start in 8 distinct 16-byte bank groups.
constexpr int LDP = BLOCK_M + PAD;

// K and V (BLOCK_N rows), Q and dO (BLOCK_M rows), then Pᵀ and dSᵀ.
template <int D> struct Smem {
  static constexpr int LD = D + PAD;
  static constexpr int BYTES = (2 * BLOCK_N + 2 * BLOCK_M) * LD * 2 + 2 * BLOCK_N * LDP * 2;
};

using jb::bits16;

template <int D, int ROWS>
__device__ __forceinline__ void load_rows(bits16* dst, const bits16* src, int row0, int n_rows,
                                          int tid) {
  constexpr int PER_ROW = D / 8, LD = Smem<D>::LD;
  static_assert(ROWS * PER_ROW % THREADS == 0, "every thread copies the same number of chunks");
#pragma unroll
  for (int i = 0; i < ROWS * PER_ROW / THREADS; ++i) {
    const int c = tid + i * THREADS;
    const int r = c / PER_ROW, col = (c % PER_ROW) * 8;
    const bool ok = row0 + r < n_rows;
    jb::cp_async_16(dst + r * LD + col, ok ? src + (size_t)(row0 + r) * D + col : src, ok);
  }
}

// D_i = rowsum(dO ∘ O), and dQ's accumulator zeroed. D/8 lanes per row, 16 bytes each.
template <typename T, int D>
__device__ __forceinline__ void prep(const bits16* __restrict__ O, const bits16* __restrict__ dO,
                                     float* __restrict__ Dvec, float* __restrict__ dq_acc,
                                     long long rows) {
  constexpr int LANES = D / 8;
  constexpr int ROWS_PER_BLOCK = THREADS / LANES;
  const int sub = threadIdx.x % LANES;
  const long long row = (long long)blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / LANES;
  const bool ok = row < rows;
  float dot = 0.f;
  if (ok) {
    const uint4 o = *reinterpret_cast<const uint4*>(O + row * D + sub * 8);
    const uint4 g = *reinterpret_cast<const uint4*>(dO + row * D + sub * 8);
    const unsigned ow[4] = {o.x, o.y, o.z, o.w}, gw[4] = {g.x, g.y, g.z, g.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      dot += jb::Elem<T>::to_float((bits16)(ow[i] & 0xffffu)) *
             jb::Elem<T>::to_float((bits16)(gw[i] & 0xffffu));
      dot += jb::Elem<T>::to_float((bits16)(ow[i] >> 16)) *
             jb::Elem<T>::to_float((bits16)(gw[i] >> 16));
    }
    float4* acc = reinterpret_cast<float4*>(dq_acc + row * D + sub * 8);
    acc[0] = make_float4(0.f, 0.f, 0.f, 0.f);
    acc[1] = make_float4(0.f, 0.f, 0.f, 0.f);
  }
  // the LANES lanes of a row are aligned within the warp; every lane takes part
#pragma unroll
  for (int o = LANES / 2; o > 0; o /= 2) dot += __shfl_xor_sync(0xffffffffu, dot, o);
  if (ok && sub == 0) Dvec[row] = dot;
}

template <typename T, int D>
__device__ __forceinline__ void backward(const bits16* __restrict__ Q, const bits16* __restrict__ K,
                                         const bits16* __restrict__ V,
                                         const bits16* __restrict__ dO,
                                         const float* __restrict__ lse,
                                         const float* __restrict__ Dvec, float* __restrict__ dq_acc,
                                         bits16* __restrict__ dK, bits16* __restrict__ dV,
                                         int seq_q, int seq_kv, float scale_log2, float scale,
                                         int causal) {
  constexpr int LD = Smem<D>::LD;
  constexpr int KT = D / 16;      // k16 steps over the head dimension
  constexpr int HALF = D / 2;     // head-dim columns a warp owns in dK, dV and dQ
  constexpr int HN = HALF / 8;    // n8 tiles in those columns

  extern __shared__ __align__(16) unsigned char smem[];
  bits16* Ks = reinterpret_cast<bits16*>(smem);
  bits16* Vs = Ks + BLOCK_N * LD;
  bits16* Qs = Vs + BLOCK_N * LD;
  bits16* dOs = Qs + BLOCK_M * LD;
  bits16* Ps = dOs + BLOCK_M * LD;   // Pᵀ  [BLOCK_N][LDP]
  bits16* dSs = Ps + BLOCK_N * LDP;  // dSᵀ [BLOCK_N][LDP]

  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int g = lane / 4, t = lane % 4;
  const int k0 = blockIdx.x * BLOCK_N;
  const size_t head = (size_t)blockIdx.z * gridDim.y + blockIdx.y;
  Q += head * seq_q * D;
  dO += head * seq_q * D;
  dq_acc += head * seq_q * D;
  lse += head * seq_q;
  Dvec += head * seq_q;
  K += head * seq_kv * D;
  V += head * seq_kv * D;
  dK += head * seq_kv * D;
  dV += head * seq_kv * D;

  // Under the causal mask, query q sees key k when q >= k - shift: the first query
  // tile with a query that sees key k0 is where the walk starts.
  const int shift = seq_kv - seq_q;
  int m_begin = 0;
  if (causal) m_begin = (int)max(0LL, (long long)k0 - shift);
  m_begin = (m_begin / BLOCK_M) * BLOCK_M;
  const int n_steps = m_begin < seq_q ? (seq_q - m_begin + BLOCK_M - 1) / BLOCK_M : 0;

  load_rows<D, BLOCK_N>(Ks, K, k0, seq_kv, tid);
  load_rows<D, BLOCK_N>(Vs, V, k0, seq_kv, tid);
  if (n_steps > 0) {
    load_rows<D, BLOCK_M>(Qs, Q, m_begin, seq_q, tid);
    load_rows<D, BLOCK_M>(dOs, dO, m_begin, seq_q, tid);
  }
  jb::cp_async_commit();

  // Phases 1 and 2: this warp's 16 keys and its half of the queries (phase 1) or of
  // the head dimension (phase 2). Phase 3: its 16 queries and half of the head dim.
  const int kg = warp % 4, half = warp / 4;
  float dk[HN][4], dv[HN][4];
#pragma unroll
  for (int i = 0; i < HN; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) dk[i][e] = dv[i][e] = 0.f;

  for (int step = 0; step < n_steps; ++step) {
    const int q0 = m_begin + step * BLOCK_M;
    jb::cp_async_wait<0>();
    __syncthreads();

    // Phase 1: Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ for 16 keys x 32 queries. K and V rows are
    // the A operand as stored; Q and dO rows, untransposed, are the "col" B operand.
    float s[4][4], dp[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[i][e] = dp[i][e] = 0.f;
#pragma unroll
    for (int kd = 0; kd < KT; ++kd) {
      unsigned ka[4], va[4];
      jb::ldmatrix_x4(ka, Ks + (kg * 16 + lane % 16) * LD + kd * 16 + (lane / 16) * 8);
      jb::ldmatrix_x4(va, Vs + (kg * 16 + lane % 16) * LD + kd * 16 + (lane / 16) * 8);
#pragma unroll
      for (int nj = 0; nj < 2; ++nj) {
        const int row = half * 32 + nj * 16 + (lane / 16) * 8 + lane % 8;
        const int col = kd * 16 + ((lane / 8) % 2) * 8;
        unsigned r[4];
        jb::ldmatrix_x4(r, Qs + row * LD + col);
        const unsigned q_lo[2] = {r[0], r[1]}, q_hi[2] = {r[2], r[3]};
        jb::Elem<T>::mma(s[2 * nj], ka, q_lo);
        jb::Elem<T>::mma(s[2 * nj + 1], ka, q_hi);
        jb::ldmatrix_x4(r, dOs + row * LD + col);
        const unsigned o_lo[2] = {r[0], r[1]}, o_hi[2] = {r[2], r[3]};
        jb::Elem<T>::mma(dp[2 * nj], va, o_lo);
        jb::Elem<T>::mma(dp[2 * nj + 1], va, o_hi);
      }
    }
    // Pᵀ from the forward's log-sum-exp, dSᵀ = Pᵀ ∘ (dPᵀ − D); masked and out-of-range
    // entries are 0, so they add nothing to any product below.
#pragma unroll
    for (int ni = 0; ni < 4; ++ni)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = k0 + kg * 16 + g + (e / 2) * 8;
        const int q = q0 + half * 32 + ni * 8 + 2 * t + (e & 1);
        const bool ok = key < seq_kv && q < seq_q && (!causal || key <= q + shift);
        float p = 0.f, ds = 0.f;
        if (ok) {
          p = exp2f(s[ni][e] * scale_log2 - lse[q]);
          ds = p * (dp[ni][e] - Dvec[q]);
        }
        s[ni][e] = p;
        dp[ni][e] = ds;
      }
#pragma unroll
    for (int ni = 0; ni < 4; ++ni)
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int at = (kg * 16 + g + r * 8) * LDP + half * 32 + ni * 8 + 2 * t;
        *reinterpret_cast<unsigned*>(Ps + at) = jb::Elem<T>::pack(s[ni][2 * r], s[ni][2 * r + 1]);
        *reinterpret_cast<unsigned*>(dSs + at) =
            jb::Elem<T>::pack(dp[ni][2 * r], dp[ni][2 * r + 1]);
      }
    __syncthreads();

    // Phase 2: dV += Pᵀ·dO and dK += dSᵀ·Q over the 64 queries, for this warp's 16 keys
    // and half of the head dimension. dO and Q rows are queries: the transposed
    // ldmatrix gives the B operand (k = query, n = head dim).
#pragma unroll
    for (int kq = 0; kq < BLOCK_M / 16; ++kq) {
      unsigned pa[4], da[4];
      jb::ldmatrix_x4(pa, Ps + (kg * 16 + lane % 16) * LDP + kq * 16 + (lane / 16) * 8);
      jb::ldmatrix_x4(da, dSs + (kg * 16 + lane % 16) * LDP + kq * 16 + (lane / 16) * 8);
#pragma unroll
      for (int dj = 0; dj < HN / 2; ++dj) {
        const int at = (kq * 16 + lane % 16) * LD + half * HALF + dj * 16 + (lane / 16) * 8;
        unsigned r[4];
        jb::ldmatrix_x4_trans(r, dOs + at);
        const unsigned o_lo[2] = {r[0], r[1]}, o_hi[2] = {r[2], r[3]};
        jb::Elem<T>::mma(dv[2 * dj], pa, o_lo);
        jb::Elem<T>::mma(dv[2 * dj + 1], pa, o_hi);
        jb::ldmatrix_x4_trans(r, Qs + at);
        const unsigned q_lo[2] = {r[0], r[1]}, q_hi[2] = {r[2], r[3]};
        jb::Elem<T>::mma(dk[2 * dj], da, q_lo);
        jb::Elem<T>::mma(dk[2 * dj + 1], da, q_hi);
      }
    }
    // Every warp is done with Q and dO: the next tile streams in during phase 3.
    __syncthreads();
    if (step + 1 < n_steps) {
      load_rows<D, BLOCK_M>(Qs, Q, q0 + BLOCK_M, seq_q, tid);
      load_rows<D, BLOCK_M>(dOs, dO, q0 + BLOCK_M, seq_q, tid);
    }
    jb::cp_async_commit();

    // Phase 3: dQ += dS·K for 16 queries x half the head dim, over this block's keys.
    // dS is read from dSᵀ by transposed ldmatrix (lanes address key rows); K rows are
    // keys, so the transposed ldmatrix gives the B operand (k = key, n = head dim).
    const int qm = warp % 4;
    float dq[HN][4];
#pragma unroll
    for (int i = 0; i < HN; ++i)
#pragma unroll
      for (int e = 0; e < 4; ++e) dq[i][e] = 0.f;
#pragma unroll
    for (int kk = 0; kk < BLOCK_N / 16; ++kk) {
      unsigned a[4];
      jb::ldmatrix_x4_trans(
          a, dSs + (kk * 16 + lane % 8 + (lane / 16) * 8) * LDP + qm * 16 + ((lane / 8) % 2) * 8);
#pragma unroll
      for (int dj = 0; dj < HN / 2; ++dj) {
        unsigned r[4];
        jb::ldmatrix_x4_trans(
            r, Ks + (kk * 16 + lane % 16) * LD + half * HALF + dj * 16 + (lane / 16) * 8);
        const unsigned k_lo[2] = {r[0], r[1]}, k_hi[2] = {r[2], r[3]};
        jb::Elem<T>::mma(dq[2 * dj], a, k_lo);
        jb::Elem<T>::mma(dq[2 * dj + 1], a, k_hi);
      }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int q = q0 + qm * 16 + g + r * 8;
      if (q >= seq_q) continue;
#pragma unroll
      for (int i = 0; i < HN; ++i) {
        float* at = dq_acc + (size_t)q * D + half * HALF + i * 8 + 2 * t;
        atomicAdd(at, dq[i][2 * r]);
        atomicAdd(at + 1, dq[i][2 * r + 1]);
      }
    }
  }
  jb::cp_async_wait<0>();

  // dK carries the softmax scale dS left out; a key no query sees gets zeros.
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int key = k0 + kg * 16 + g + r * 8;
    if (key >= seq_kv) continue;
#pragma unroll
    for (int i = 0; i < HN; ++i) {
      const size_t at = (size_t)key * D + half * HALF + i * 8 + 2 * t;
      *reinterpret_cast<unsigned*>(dK + at) =
          jb::Elem<T>::pack(dk[i][2 * r] * scale, dk[i][2 * r + 1] * scale);
      *reinterpret_cast<unsigned*>(dV + at) = jb::Elem<T>::pack(dv[i][2 * r], dv[i][2 * r + 1]);
    }
  }
}

// dQ = scale · the accumulator, 8 elements per thread (every tensor here is a whole
// number of 8-element rows).
template <typename T>
__device__ __forceinline__ void store_dq(const float* __restrict__ dq_acc, bits16* __restrict__ dQ,
                                         long long n, float scale) {
  const long long i = ((long long)blockIdx.x * THREADS + threadIdx.x) * 8;
  if (i >= n) return;
  const float4 a = *reinterpret_cast<const float4*>(dq_acc + i);
  const float4 b = *reinterpret_cast<const float4*>(dq_acc + i + 4);
  uint4 out;
  out.x = jb::Elem<T>::pack(a.x * scale, a.y * scale);
  out.y = jb::Elem<T>::pack(a.z * scale, a.w * scale);
  out.z = jb::Elem<T>::pack(b.x * scale, b.y * scale);
  out.w = jb::Elem<T>::pack(b.z * scale, b.w * scale);
  *reinterpret_cast<uint4*>(dQ + i) = out;
}

}  // namespace flash_bwd

// Grid: (ceil(rows / (256 / (D/8))), 1, 1) with rows = batch·heads·seq_q; 256 threads.
#define JB_FLASH_BWD_PREP(name, T, D)                                                      \
  JB_CHECK_LAUNCH(name, flash_bwd::THREADS, 0);                                           \
  extern "C" __global__ void __launch_bounds__(flash_bwd::THREADS)                        \
      name(const T* O, const T* dO, float* Dvec, float* dq_acc, long long rows) {         \
    flash_bwd::prep<T, D>(reinterpret_cast<const jb::bits16*>(O),                         \
                          reinterpret_cast<const jb::bits16*>(dO), Dvec, dq_acc, rows);   \
  }

// Grid: (ceil(seq_kv/64), heads, batch); 256 threads; Smem<D>::BYTES of dynamic shared
// memory (55296 for D = 64, 88064 for D = 128). scale_log2 = log2(e)/sqrt(D), scale =
// 1/sqrt(D); lse in log2 units as flash_attention.cu writes it.
#define JB_FLASH_BWD(name, T, D)                                                           \
  JB_CHECK_LAUNCH(name, flash_bwd::THREADS, flash_bwd::Smem<D>::BYTES);                   \
  extern "C" __global__ void __launch_bounds__(flash_bwd::THREADS, 1)                     \
      name(const T* Q, const T* K, const T* V, const T* dO, const float* lse,             \
           const float* Dvec, float* dq_acc, T* dK, T* dV, int seq_q, int seq_kv,         \
           float scale_log2, float scale, int causal) {                                   \
    flash_bwd::backward<T, D>(                                                            \
        reinterpret_cast<const jb::bits16*>(Q), reinterpret_cast<const jb::bits16*>(K),   \
        reinterpret_cast<const jb::bits16*>(V), reinterpret_cast<const jb::bits16*>(dO),  \
        lse, Dvec, dq_acc, reinterpret_cast<jb::bits16*>(dK),                             \
        reinterpret_cast<jb::bits16*>(dV), seq_q, seq_kv, scale_log2, scale, causal);     \
  }

// Grid: (ceil(n / (8·256)), 1, 1) with n = batch·heads·seq_q·D; 256 threads.
#define JB_FLASH_BWD_DQ(name, T)                                                           \
  JB_CHECK_LAUNCH(name, flash_bwd::THREADS, 0);                                           \
  extern "C" __global__ void __launch_bounds__(flash_bwd::THREADS)                        \
      name(const float* dq_acc, T* dQ, long long n, float scale) {                        \
    flash_bwd::store_dq<T>(dq_acc, reinterpret_cast<jb::bits16*>(dQ), n, scale);          \
  }

JB_FLASH_BWD_PREP(flash_bwd_prep_d64_f16, __half, 64)
JB_FLASH_BWD_PREP(flash_bwd_prep_d64_bf16, __nv_bfloat16, 64)
JB_FLASH_BWD_PREP(flash_bwd_prep_d128_f16, __half, 128)
JB_FLASH_BWD_PREP(flash_bwd_prep_d128_bf16, __nv_bfloat16, 128)
JB_FLASH_BWD(flash_bwd_d64_f16, __half, 64)
JB_FLASH_BWD(flash_bwd_d64_bf16, __nv_bfloat16, 64)
JB_FLASH_BWD(flash_bwd_d128_f16, __half, 128)
JB_FLASH_BWD(flash_bwd_d128_bf16, __nv_bfloat16, 128)
JB_FLASH_BWD_DQ(flash_bwd_dq_f16, __half)
JB_FLASH_BWD_DQ(flash_bwd_dq_bf16, __nv_bfloat16)
