// flash_attention.cu — fused attention forward, FlashAttention-2 style: each block owns
// 64 query rows; each warp keeps its 16 rows of Q in registers, streams K and V through
// double-buffered shared memory, and folds every 64-key tile into an online softmax, so
// the seq_q x seq_kv score matrix never reaches global memory. f16 or bf16 operands,
// mma.sync m16n8k16 with f32 accumulation, head_dim 64 or 128 (sm_80 and newer).
//
// Layout (the joulebench contract): Q, O are [batch][heads][seq_q][D] and K, V are
// [batch][heads][seq_kv][D], row-major; scores are scaled by 1/sqrt(D). With `causal`,
// query i sees keys j <= i + (seq_kv - seq_q) (bottom-right aligned, as FlashAttention-2);
// a query that sees no key at all produces zeros.
//
// With a non-null `lse` the kernel also writes each row's log-sum-exp of its scaled
// scores, in log2 units ([batch][heads][seq_q] floats; +inf for a row that sees no key):
// what the fused backward (flash_attention_backward.cu) recomputes P from.
#include "jb_common.cuh"

namespace flash {

constexpr int WARPS = 4;
constexpr int THREADS = WARPS * 32;   // 128
constexpr int BLOCK_M = WARPS * 16;   // query rows per block: one m16 tile per warp
constexpr int BLOCK_N = 64;           // keys per tile
// Rows padded by 8 elements: D = 64 or 128 gives a row stride of 144 or 272 bytes, so the
// 8 rows of one ldmatrix phase start on 8 distinct 4-bank groups, 16-byte aligned.
constexpr int PAD = 8;

// Q tile + two stages of K and V tiles.
template <int D> struct Smem {
  static constexpr int LD = D + PAD;
  static constexpr int BYTES = (BLOCK_M + 4 * BLOCK_N) * LD * 2;
};

using jb::bits16;

// `rows` rows of D elements starting at row `row0` (of `n_rows`) into shared memory;
// rows past the end are zero-filled.
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

template <typename T, int D>
__device__ __forceinline__ void forward(const bits16* __restrict__ Q, const bits16* __restrict__ K,
                                        const bits16* __restrict__ V, bits16* __restrict__ O,
                                        float* __restrict__ lse, int seq_q, int seq_kv,
                                        float scale_log2, int causal) {
  constexpr int LD = Smem<D>::LD;
  constexpr int KT = D / 16;         // k16 steps over the head dimension
  constexpr int SN = BLOCK_N / 8;    // n8 tiles of scores per key tile
  constexpr int ON = D / 8;          // n8 tiles of the output row

  extern __shared__ __align__(16) unsigned char smem[];
  bits16* Qs = reinterpret_cast<bits16*>(smem);
  bits16* Ks = Qs + BLOCK_M * LD;     // [2][BLOCK_N][LD]
  bits16* Vs = Ks + 2 * BLOCK_N * LD; // [2][BLOCK_N][LD]

  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int g = lane / 4, t = lane % 4;
  const int q0 = blockIdx.x * BLOCK_M;
  const size_t head = (size_t)blockIdx.z * gridDim.y + blockIdx.y;
  Q += head * seq_q * D;
  O += head * seq_q * D;
  if (lse) lse += head * seq_q;
  K += head * seq_kv * D;
  V += head * seq_kv * D;

  // Keys this block needs: all, or under the causal mask those its last row can see.
  const int shift = seq_kv - seq_q;
  int kv_end = seq_kv;
  if (causal) {
    const long long last_row = (long long)min(q0 + BLOCK_M, seq_q) - 1;
    kv_end = (int)max(0LL, min((long long)seq_kv, last_row + shift + 1));
  }
  const int n_tiles = (kv_end + BLOCK_N - 1) / BLOCK_N;

  if (n_tiles > 0) {
    load_rows<D, BLOCK_M>(Qs, Q, q0, seq_q, tid);
    load_rows<D, BLOCK_N>(Ks, K, 0, seq_kv, tid);
    load_rows<D, BLOCK_N>(Vs, V, 0, seq_kv, tid);
  }
  jb::cp_async_commit();

  unsigned qf[KT][4];                 // this warp's 16 query rows, A-operand layout
  float o[ON][4];                     // output accumulator, m16n8 C layout
  float m_run[2] = {-INFINITY, -INFINITY};  // running max (log2 units), rows g and g+8
  float l_run[2] = {0.f, 0.f};        // running sum of this thread's columns
#pragma unroll
  for (int i = 0; i < ON; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) o[i][e] = 0.f;

  const int row_lo = q0 + warp * 16 + g;  // this thread's rows: row_lo and row_lo + 8

  for (int j = 0; j < n_tiles; ++j) {
    const int stage = j & 1;
    // Prefetch tile j+1 into the other stage; it was last read in iteration j-1,
    // which ended with a barrier. Always commit, so "tile j landed" = "<= 1 pending".
    if (j + 1 < n_tiles) {
      load_rows<D, BLOCK_N>(Ks + (stage ^ 1) * BLOCK_N * LD, K, (j + 1) * BLOCK_N, seq_kv, tid);
      load_rows<D, BLOCK_N>(Vs + (stage ^ 1) * BLOCK_N * LD, V, (j + 1) * BLOCK_N, seq_kv, tid);
    }
    jb::cp_async_commit();
    jb::cp_async_wait<1>();
    __syncthreads();

    if (j == 0) {
#pragma unroll
      for (int kd = 0; kd < KT; ++kd)
        jb::ldmatrix_x4(qf[kd], Qs + (warp * 16 + lane % 16) * LD + kd * 16 + (lane / 16) * 8);
    }
    const bits16* Kt = Ks + stage * BLOCK_N * LD;
    const bits16* Vt = Vs + stage * BLOCK_N * LD;

    // S = Q·Kᵀ for 16 rows x 64 keys. K rows are keys, so without transposition lane l
    // reads key l/4 and head-dim pair 2(l%4): the B operand of mma "col". Matrices:
    // (keys 0-7, d 0-7), (keys 0-7, d 8-15), (keys 8-15, d 0-7), (keys 8-15, d 8-15).
    float s[SN][4];
#pragma unroll
    for (int i = 0; i < SN; ++i)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[i][e] = 0.f;
#pragma unroll
    for (int kd = 0; kd < KT; ++kd)
#pragma unroll
      for (int nj = 0; nj < SN / 2; ++nj) {
        unsigned r[4];
        jb::ldmatrix_x4(r, Kt + (nj * 16 + (lane / 16) * 8 + lane % 8) * LD + kd * 16 +
                               ((lane / 8) % 2) * 8);
        const unsigned b0[2] = {r[0], r[1]}, b1[2] = {r[2], r[3]};
        jb::Elem<T>::mma(s[2 * nj], qf[kd], b0);
        jb::Elem<T>::mma(s[2 * nj + 1], qf[kd], b1);
      }

    // Scale into log2 units; mask keys past seq_kv and, if causal, above the diagonal.
    // Only the last tile and the tiles crossing the diagonal need the mask.
    const int k0 = j * BLOCK_N;
    const bool mask = k0 + BLOCK_N > seq_kv || (causal && k0 + BLOCK_N - 1 > q0 + shift);
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int ni = 0; ni < SN; ++ni)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float v = s[ni][e] * scale_log2;
        if (mask) {
          const int key = k0 + ni * 8 + 2 * t + (e & 1);
          const int row = row_lo + (e / 2) * 8;
          if (key >= seq_kv || (causal && key > row + shift)) v = -INFINITY;
        }
        s[ni][e] = v;
        mx[e / 2] = fmaxf(mx[e / 2], v);
      }

    // Online softmax. The four lanes of a quad hold one row between them.
    float alpha[2], m_use[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
      const float m_new = fmaxf(m_run[r], mx[r]);
      // A row that has seen no visible key yet keeps everything at zero instead of
      // computing exp2(-inf - -inf) = NaN.
      m_use[r] = m_new == -INFINITY ? 0.f : m_new;
      alpha[r] = exp2f(m_run[r] - m_use[r]);
      m_run[r] = m_new;
    }
    float rs[2] = {0.f, 0.f};
#pragma unroll
    for (int ni = 0; ni < SN; ++ni)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float p = exp2f(s[ni][e] - m_use[e / 2]);
        s[ni][e] = p;
        rs[e / 2] += p;
      }
#pragma unroll
    for (int r = 0; r < 2; ++r) l_run[r] = l_run[r] * alpha[r] + rs[r];
#pragma unroll
    for (int i = 0; i < ON; ++i) {
      o[i][0] *= alpha[0];
      o[i][1] *= alpha[0];
      o[i][2] *= alpha[1];
      o[i][3] *= alpha[1];
    }

    // O += P·V. The C layout of two adjacent score tiles is the A layout of one k16
    // step of P, so P never leaves registers. V rows are keys: transposed ldmatrix gives
    // the B operand (k = key, n = head dim) for two n8 tiles of the output.
#pragma unroll
    for (int kj = 0; kj < BLOCK_N / 16; ++kj) {
      const unsigned pa[4] = {
          jb::Elem<T>::pack(s[2 * kj][0], s[2 * kj][1]),
          jb::Elem<T>::pack(s[2 * kj][2], s[2 * kj][3]),
          jb::Elem<T>::pack(s[2 * kj + 1][0], s[2 * kj + 1][1]),
          jb::Elem<T>::pack(s[2 * kj + 1][2], s[2 * kj + 1][3]),
      };
#pragma unroll
      for (int dj = 0; dj < ON / 2; ++dj) {
        unsigned r[4];
        jb::ldmatrix_x4_trans(r, Vt + (kj * 16 + lane % 16) * LD + dj * 16 + (lane / 16) * 8);
        const unsigned b0[2] = {r[0], r[1]}, b1[2] = {r[2], r[3]};
        jb::Elem<T>::mma(o[2 * dj], pa, b0);
        jb::Elem<T>::mma(o[2 * dj + 1], pa, b1);
      }
    }
    // Every warp is done with this stage before iteration j+1 refills it.
    __syncthreads();
  }
  jb::cp_async_wait<0>();

  float inv[2], l_row[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float l = l_run[r];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    l_row[r] = l;
    inv[r] = l > 0.f ? 1.f / l : 0.f;
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = row_lo + r * 8;
    if (row >= seq_q) continue;
    // m_run and the quad-summed l are the same in the quad's four lanes: one writes
    if (lse && t == 0) lse[row] = l_row[r] > 0.f ? m_run[r] + log2f(l_row[r]) : INFINITY;
#pragma unroll
    for (int i = 0; i < ON; ++i)
      *reinterpret_cast<unsigned*>(O + (size_t)row * D + i * 8 + 2 * t) =
          jb::Elem<T>::pack(o[i][2 * r] * inv[r], o[i][2 * r + 1] * inv[r]);
  }
}

}  // namespace flash

// Grid: (ceil(seq_q/64), heads, batch); 128 threads; Smem<D>::BYTES of dynamic shared
// memory (46080 for D = 64, 87040 for D = 128). scale_log2 = log2(e)/sqrt(D); `lse` may
// be null (the forward alone).
#define JB_FLASH(name, T, D)                                                               \
  JB_CHECK_LAUNCH(name, flash::THREADS, flash::Smem<D>::BYTES);                           \
  extern "C" __global__ void __launch_bounds__(flash::THREADS)                            \
      name(const T* Q, const T* K, const T* V, T* O, float* lse, int seq_q, int seq_kv,   \
           float scale_log2, int causal) {                                                \
    flash::forward<T, D>(reinterpret_cast<const jb::bits16*>(Q),                          \
                         reinterpret_cast<const jb::bits16*>(K),                          \
                         reinterpret_cast<const jb::bits16*>(V),                          \
                         reinterpret_cast<jb::bits16*>(O), lse, seq_q, seq_kv,            \
                         scale_log2, causal);                                             \
  }

JB_FLASH(flash_attention_d64_f16, __half, 64)
JB_FLASH(flash_attention_d64_bf16, __nv_bfloat16, 64)
JB_FLASH(flash_attention_d128_f16, __half, 128)
JB_FLASH(flash_attention_d128_bf16, __nv_bfloat16, 128)
