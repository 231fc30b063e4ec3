// matmul_mma.cu — C[b] = A[b]·B[b] in f16 or bf16 on tensor cores: mma.sync m16n8k16
// with f32 accumulation, operands fed by ldmatrix from a multi-stage cp.async pipeline.
// Ampere-class instructions, so one kernel runs on sm_80 and every newer GPU (Hopper's
// wgmma/TMA are not used: this is the portable tensor-core baseline).
//
// Layout (the joulebench contract): row-major A[batch][M][K], B[batch][K][N],
// C[batch][M][N]. Ragged edges are zero-filled on load and masked on store. The fast
// `matmul_<t>` instances copy 16-byte chunks and need K % 8 == 0 and N % 8 == 0; the
// `matmul_unaligned_<t>` instances load element by element and take any shape.
#include "jb_common.cuh"

namespace mma_matmul {

constexpr int BM = 128, BN = 128, BK = 32;  // block tile
constexpr int WARPS_M = 2, WARPS_N = 4;
constexpr int THREADS = WARPS_M * WARPS_N * 32;           // 256
constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N;       // 64 x 32 per warp
constexpr int MT = WM / 16, NT = WN / 8;                  // 4 x 4 mma tiles per warp
constexpr int STAGES = 3;                                 // tiles in flight
// Rows padded by 8 elements (16 bytes): the 8 row addresses of one ldmatrix phase then
// fall on 8 distinct groups of 4 banks, and rows stay 16-byte aligned for cp.async.
constexpr int PAD = 8;
constexpr int A_LD = BK + PAD, B_LD = BN + PAD;           // 40, 136 elements
constexpr int A_STAGE = BM * A_LD, B_STAGE = BK * B_LD;   // elements per stage
constexpr int SMEM_BYTES = STAGES * (A_STAGE + B_STAGE) * 2;  // 56832
constexpr int CHUNK = 8;                                  // elements per 16-byte copy

static_assert(BM * BK / CHUNK % THREADS == 0 && BK * BN / CHUNK % THREADS == 0,
              "every thread copies the same number of chunks");

using jb::bits16;

// One BM x BK tile of A (rows m0.., columns k0..) into shared memory.
template <bool ALIGNED>
__device__ __forceinline__ void load_a(bits16* As, const bits16* A, int M, int K, int m0,
                                       int k0, int tid) {
  constexpr int PER_ROW = BK / CHUNK;
#pragma unroll
  for (int i = 0; i < BM * BK / CHUNK / THREADS; ++i) {
    const int c = tid + i * THREADS;
    const int row = c / PER_ROW, col = (c % PER_ROW) * CHUNK;
    const int gr = m0 + row, gc = k0 + col;
    bits16* dst = As + row * A_LD + col;
    if (ALIGNED) {
      // K % 8 == 0: a chunk is wholly inside or wholly outside the matrix.
      const bool ok = gr < M && gc < K;
      jb::cp_async_16(dst, ok ? A + (size_t)gr * K + gc : A, ok);
    } else {
      unsigned w[CHUNK / 2];
#pragma unroll
      for (int e = 0; e < CHUNK; e += 2) {
        const unsigned lo = (gr < M && gc + e < K) ? A[(size_t)gr * K + gc + e] : 0u;
        const unsigned hi = (gr < M && gc + e + 1 < K) ? A[(size_t)gr * K + gc + e + 1] : 0u;
        w[e / 2] = lo | (hi << 16);
      }
      *reinterpret_cast<uint4*>(dst) = make_uint4(w[0], w[1], w[2], w[3]);
    }
  }
}

// One BK x BN tile of B (rows k0.., columns n0..) into shared memory.
template <bool ALIGNED>
__device__ __forceinline__ void load_b(bits16* Bs, const bits16* B, int K, int N, int k0,
                                       int n0, int tid) {
  constexpr int PER_ROW = BN / CHUNK;
#pragma unroll
  for (int i = 0; i < BK * BN / CHUNK / THREADS; ++i) {
    const int c = tid + i * THREADS;
    const int row = c / PER_ROW, col = (c % PER_ROW) * CHUNK;
    const int gr = k0 + row, gc = n0 + col;
    bits16* dst = Bs + row * B_LD + col;
    if (ALIGNED) {
      const bool ok = gr < K && gc < N;
      jb::cp_async_16(dst, ok ? B + (size_t)gr * N + gc : B, ok);
    } else {
      unsigned w[CHUNK / 2];
#pragma unroll
      for (int e = 0; e < CHUNK; e += 2) {
        const unsigned lo = (gr < K && gc + e < N) ? B[(size_t)gr * N + gc + e] : 0u;
        const unsigned hi = (gr < K && gc + e + 1 < N) ? B[(size_t)gr * N + gc + e + 1] : 0u;
        w[e / 2] = lo | (hi << 16);
      }
      *reinterpret_cast<uint4*>(dst) = make_uint4(w[0], w[1], w[2], w[3]);
    }
  }
}

// Two adjacent output elements of one row; a 32-bit store where N keeps it aligned.
template <typename T>
__device__ __forceinline__ void store_pair(bits16* C, int M, int N, int row, int col, float v0,
                                           float v1) {
  if (row >= M) return;
  bits16* p = C + (size_t)row * N + col;
  if (col + 1 < N && (N & 1) == 0) {
    *reinterpret_cast<unsigned*>(p) = jb::Elem<T>::pack(v0, v1);
  } else {
    if (col < N) p[0] = jb::Elem<T>::from_float(v0);
    if (col + 1 < N) p[1] = jb::Elem<T>::from_float(v1);
  }
}

template <typename T, bool ALIGNED>
__device__ __forceinline__ void matmul(const bits16* __restrict__ A, const bits16* __restrict__ B,
                                       bits16* __restrict__ C, int M, int N, int K) {
  extern __shared__ __align__(16) unsigned char smem[];
  bits16* As = reinterpret_cast<bits16*>(smem);
  bits16* Bs = As + STAGES * A_STAGE;

  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int wm = warp / WARPS_N, wn = warp % WARPS_N;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const size_t batch = blockIdx.z;
  A += batch * M * K;
  B += batch * K * N;
  C += batch * M * N;

  float acc[MT][NT][4];
#pragma unroll
  for (int i = 0; i < MT; ++i)
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.f;

  const int k_tiles = (K + BK - 1) / BK;

  // Prologue: STAGES-1 tiles in flight. One commit per tile, empty or not, so that
  // "tile t has landed" is always "at most STAGES-2 groups pending".
#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < k_tiles) {
      load_a<ALIGNED>(As + s * A_STAGE, A, M, K, m0, s * BK, tid);
      load_b<ALIGNED>(Bs + s * B_STAGE, B, K, N, s * BK, n0, tid);
    }
    jb::cp_async_commit();
  }

  for (int kt = 0; kt < k_tiles; ++kt) {
    jb::cp_async_wait<STAGES - 2>();
    // Tile kt is visible to every warp, and every warp has finished reading the stage
    // that the load below overwrites (it was computed on in iteration kt-1).
    __syncthreads();

    const int next = kt + STAGES - 1;
    if (next < k_tiles) {
      load_a<ALIGNED>(As + (next % STAGES) * A_STAGE, A, M, K, m0, next * BK, tid);
      load_b<ALIGNED>(Bs + (next % STAGES) * B_STAGE, B, K, N, next * BK, n0, tid);
    }
    jb::cp_async_commit();

    const bits16* a_tile = As + (kt % STAGES) * A_STAGE;
    const bits16* b_tile = Bs + (kt % STAGES) * B_STAGE;
#pragma unroll
    for (int kk = 0; kk < BK; kk += 16) {
      unsigned a[MT][4], b[NT][2];
      // A fragments: lane l addresses row l%16, column block l/16 of a 16x16 tile, so
      // matrices 0..3 are (rows 0-7, k 0-7), (8-15, 0-7), (0-7, 8-15), (8-15, 8-15)
      // = a0..a3 of the m16n8k16 A operand.
#pragma unroll
      for (int mi = 0; mi < MT; ++mi)
        jb::ldmatrix_x4(a[mi], a_tile + (wm * WM + mi * 16 + lane % 16) * A_LD + kk +
                                   (lane / 16) * 8);
      // B fragments, two n8 tiles per ldmatrix: rows k, transposed, give (b0, b1) of
      // n-tile 2j in registers 0-1 and of n-tile 2j+1 in registers 2-3.
#pragma unroll
      for (int nj = 0; nj < NT / 2; ++nj) {
        unsigned r[4];
        jb::ldmatrix_x4_trans(r, b_tile + (kk + lane % 16) * B_LD + wn * WN + nj * 16 +
                                     (lane / 16) * 8);
        b[2 * nj][0] = r[0];
        b[2 * nj][1] = r[1];
        b[2 * nj + 1][0] = r[2];
        b[2 * nj + 1][1] = r[3];
      }
#pragma unroll
      for (int mi = 0; mi < MT; ++mi)
#pragma unroll
        for (int ni = 0; ni < NT; ++ni) jb::Elem<T>::mma(acc[mi][ni], a[mi], b[ni]);
    }
  }
  jb::cp_async_wait<0>();

  // Accumulator layout of m16n8: lane holds rows l/4 and l/4+8, columns 2*(l%4)+{0,1}.
  const int g = lane / 4, t = lane % 4;
#pragma unroll
  for (int mi = 0; mi < MT; ++mi)
#pragma unroll
    for (int ni = 0; ni < NT; ++ni) {
      const int row = m0 + wm * WM + mi * 16 + g;
      const int col = n0 + wn * WN + ni * 8 + 2 * t;
      store_pair<T>(C, M, N, row, col, acc[mi][ni][0], acc[mi][ni][1]);
      store_pair<T>(C, M, N, row + 8, col, acc[mi][ni][2], acc[mi][ni][3]);
    }
}

}  // namespace mma_matmul

// Grid: (ceil(N/128), ceil(M/128), batch); 256 threads; 56832 bytes of dynamic shared memory.
#define JB_MMA_MATMUL(name, T, ALIGNED)                                                    \
  JB_CHECK_LAUNCH(name, mma_matmul::THREADS, mma_matmul::SMEM_BYTES);                     \
  extern "C" __global__ void __launch_bounds__(mma_matmul::THREADS)                       \
      name(const T* A, const T* B, T* C, int M, int N, int K) {                           \
    mma_matmul::matmul<T, ALIGNED>(reinterpret_cast<const jb::bits16*>(A),                \
                                   reinterpret_cast<const jb::bits16*>(B),                \
                                   reinterpret_cast<jb::bits16*>(C), M, N, K);            \
  }

JB_MMA_MATMUL(matmul_f16, __half, true)
JB_MMA_MATMUL(matmul_bf16, __nv_bfloat16, true)
JB_MMA_MATMUL(matmul_unaligned_f16, __half, false)
JB_MMA_MATMUL(matmul_unaligned_bf16, __nv_bfloat16, false)
