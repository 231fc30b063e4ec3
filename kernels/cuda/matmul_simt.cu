// matmul_simt.cu — C[b] = A[b]·B[b] in f32 on the CUDA cores (no tensor cores): the
// reference point for what a careful non-tensor-core GEMM costs in time and energy.
// Shared-memory tiles (double-buffered), an 8x8 register block per thread and float4
// loads from global and shared memory.
//
// Layout (the joulebench contract): row-major A[batch][M][K], B[batch][K][N],
// C[batch][M][N]. `matmul_f32` loads float4 and needs K % 4 == 0 and N % 4 == 0;
// `matmul_unaligned_f32` loads element by element and takes any shape. Both zero-fill
// tile edges and mask stores, so ragged M, N, K are exact.
#include "jb_common.cuh"

namespace simt {

constexpr int BM = 128, BN = 128, BK = 8;   // block tile
constexpr int TM = 8, TN = 8;               // outputs per thread
constexpr int THREADS = (BM / TM) * (BN / TN);  // 256
// A is stored k-major (transposed) so a thread reads its 8 rows as two float4. The +4
// puts k rows 0 and 4 — written by the same warp in one store — on different banks,
// and keeps rows 16-byte aligned.
constexpr int A_LD = BM + 4;

static_assert(BM * BK / 4 == THREADS && BK * BN / 4 == THREADS,
              "each thread loads one float4 of A and one of B per tile");

// What one thread fetches from global memory for one k tile: 4 values of A (one row,
// 4 consecutive k) and 4 of B (one k, 4 consecutive columns).
struct Fetch {
  float4 a, b;
};

template <bool ALIGNED>
__device__ __forceinline__ Fetch fetch(const float* A, const float* B, int M, int N, int K,
                                       int m0, int n0, int k0, int tid) {
  const int a_row = m0 + tid / 2, a_col = k0 + (tid % 2) * 4;
  const int b_row = k0 + tid / 32, b_col = n0 + (tid % 32) * 4;
  Fetch f;
  if (ALIGNED) {
    // K % 4 == 0 and N % 4 == 0: a float4 is wholly inside or wholly outside.
    const float4 zero = make_float4(0.f, 0.f, 0.f, 0.f);
    f.a = (a_row < M && a_col < K)
              ? *reinterpret_cast<const float4*>(A + (size_t)a_row * K + a_col)
              : zero;
    f.b = (b_row < K && b_col < N)
              ? *reinterpret_cast<const float4*>(B + (size_t)b_row * N + b_col)
              : zero;
  } else {
    float a[4], b[4];
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      a[e] = (a_row < M && a_col + e < K) ? A[(size_t)a_row * K + a_col + e] : 0.f;
      b[e] = (b_row < K && b_col + e < N) ? B[(size_t)b_row * N + b_col + e] : 0.f;
    }
    f.a = make_float4(a[0], a[1], a[2], a[3]);
    f.b = make_float4(b[0], b[1], b[2], b[3]);
  }
  return f;
}

__device__ __forceinline__ void stash(float (*As)[A_LD], float (*Bs)[BN], const Fetch& f,
                                      int tid) {
  const int a_row = tid / 2, a_col = (tid % 2) * 4;
  As[a_col + 0][a_row] = f.a.x;
  As[a_col + 1][a_row] = f.a.y;
  As[a_col + 2][a_row] = f.a.z;
  As[a_col + 3][a_row] = f.a.w;
  *reinterpret_cast<float4*>(&Bs[tid / 32][(tid % 32) * 4]) = f.b;
}

template <bool ALIGNED>
__device__ __forceinline__ void matmul(const float* __restrict__ A, const float* __restrict__ B,
                                       float* __restrict__ C, int M, int N, int K) {
  __shared__ __align__(16) float As[2][BK][A_LD];
  __shared__ __align__(16) float Bs[2][BK][BN];

  const int tid = threadIdx.x;
  const int tx = tid % (BN / TN), ty = tid / (BN / TN);
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const size_t batch = blockIdx.z;
  A += batch * M * K;
  B += batch * K * N;
  C += batch * M * N;

  // Thread (ty, tx) owns rows {4ty..4ty+3, 64+4ty..64+4ty+3} and the same pattern of
  // columns: two float4 per operand per k, and a warp's float4 reads of B cover 512
  // contiguous bytes without bank conflicts.
  float acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;

  const int k_tiles = (K + BK - 1) / BK;
  stash(As[0], Bs[0], fetch<ALIGNED>(A, B, M, N, K, m0, n0, 0, tid), tid);
  __syncthreads();

  for (int kt = 0; kt < k_tiles; ++kt) {
    const int cur = kt & 1;
    const bool more = kt + 1 < k_tiles;
    // Issue the next tile's global loads before the math so their latency hides behind it.
    Fetch next;
    if (more) next = fetch<ALIGNED>(A, B, M, N, K, m0, n0, (kt + 1) * BK, tid);

#pragma unroll
    for (int k = 0; k < BK; ++k) {
      float a[TM], b[TN];
      const float4 a0 = *reinterpret_cast<const float4*>(&As[cur][k][4 * ty]);
      const float4 a1 = *reinterpret_cast<const float4*>(&As[cur][k][64 + 4 * ty]);
      const float4 b0 = *reinterpret_cast<const float4*>(&Bs[cur][k][4 * tx]);
      const float4 b1 = *reinterpret_cast<const float4*>(&Bs[cur][k][64 + 4 * tx]);
      a[0] = a0.x; a[1] = a0.y; a[2] = a0.z; a[3] = a0.w;
      a[4] = a1.x; a[5] = a1.y; a[6] = a1.z; a[7] = a1.w;
      b[0] = b0.x; b[1] = b0.y; b[2] = b0.z; b[3] = b0.w;
      b[4] = b1.x; b[5] = b1.y; b[6] = b1.z; b[7] = b1.w;
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }

    // The other buffer was last read in iteration kt-1, before that iteration's barrier.
    if (more) stash(As[cur ^ 1], Bs[cur ^ 1], next, tid);
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int row = m0 + (i < 4 ? 4 * ty + i : 64 + 4 * ty + (i - 4));
    if (row >= M) continue;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int col = n0 + half * 64 + 4 * tx;
      float* c = C + (size_t)row * N + col;
      const float* v = &acc[i][half * 4];
      if (ALIGNED && col < N) {
        *reinterpret_cast<float4*>(c) = make_float4(v[0], v[1], v[2], v[3]);
      } else if (!ALIGNED) {
#pragma unroll
        for (int e = 0; e < 4; ++e)
          if (col + e < N) c[e] = v[e];
      }
    }
  }
}

}  // namespace simt

// Grid: (ceil(N/128), ceil(M/128), batch); 256 threads; static shared memory only.
#define JB_SIMT_MATMUL(name, ALIGNED)                                                      \
  JB_CHECK_LAUNCH(name, simt::THREADS, 0);                                                \
  extern "C" __global__ void __launch_bounds__(simt::THREADS)                              \
      name(const float* A, const float* B, float* C, int M, int N, int K) {               \
    simt::matmul<ALIGNED>(A, B, C, M, N, K);                                              \
  }

JB_SIMT_MATMUL(matmul_f32, true)
JB_SIMT_MATMUL(matmul_unaligned_f32, false)
