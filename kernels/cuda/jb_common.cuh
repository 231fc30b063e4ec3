// jb_common.cuh — what joulebench's CUDA kernels share: the element types, the PTX
// instructions the tensor-core kernels are built from (cp.async, ldmatrix, mma.sync),
// and the compile-time check that a kernel is launched the way the host assumes.
//
// Kernels are compiled at run time by NVRTC (crates/cuda/src/nvrtc.rs), which supplies
// this header from memory; only cuda_fp16.h and cuda_bf16.h come from the CUDA headers.
#pragma once

#include <cuda_fp16.h>
#include <cuda_bf16.h>

// NVRTC compiles without the C library's math.h.
#ifndef INFINITY
#define INFINITY __int_as_float(0x7f800000)
#endif

// The host passes -DJB_THREADS_<kernel>=… and -DJB_SMEM_<kernel>=… for every kernel it
// launches (crates/cuda/src/kernels.rs). Each kernel states what its code assumes next
// to its definition, so a launch configuration that drifts from the code stops the
// compilation instead of corrupting shared memory at run time.
#define JB_CHECK_LAUNCH(kernel, threads, dynamic_smem_bytes)                              \
  static_assert(JB_THREADS_##kernel == (threads),                                        \
                #kernel ": threads per block differ from the host's launch config");     \
  static_assert(JB_SMEM_##kernel == (dynamic_smem_bytes),                                \
                #kernel ": dynamic shared memory differs from the host's launch config")

namespace jb {

// Raw 16-bit storage: loaders and shared-memory tiles move bits, only the math and
// the final store need to know whether they are f16 or bf16. Zero bits are 0.0 in both.
typedef unsigned short bits16;

// Element traits for the two 16-bit types: conversion and the matching mma.sync.
template <typename T> struct Elem;

template <> struct Elem<__half> {
  static __device__ __forceinline__ bits16 from_float(float x) {
    return __half_as_ushort(__float2half_rn(x));
  }
  static __device__ __forceinline__ float to_float(bits16 b) {
    return __half2float(__ushort_as_half(b));
  }
  // Two floats as one 32-bit mma operand; `lo` is the lower-indexed element.
  static __device__ __forceinline__ unsigned pack(float lo, float hi) {
    __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<unsigned*>(&h);
  }
  // D = A·B + D for one 16x8x16 tile, f32 accumulate (PTX ISA "mma.m16n8k16").
  static __device__ __forceinline__ void mma(float (&d)[4], const unsigned (&a)[4],
                                             const unsigned (&b)[2]) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
};

template <> struct Elem<__nv_bfloat16> {
  static __device__ __forceinline__ bits16 from_float(float x) {
    return __bfloat16_as_ushort(__float2bfloat16_rn(x));
  }
  static __device__ __forceinline__ float to_float(bits16 b) {
    return __bfloat162float(__ushort_as_bfloat16(b));
  }
  static __device__ __forceinline__ unsigned pack(float lo, float hi) {
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<unsigned*>(&h);
  }
  static __device__ __forceinline__ void mma(float (&d)[4], const unsigned (&a)[4],
                                             const unsigned (&b)[2]) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
};

__device__ __forceinline__ unsigned smem_addr(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared without passing through registers. With `valid` false
// nothing is read and the destination is zero-filled (src-size 0), which is how tile
// edges past the matrix become zeros that add nothing to a dot product.
__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(smem)),
               "l"(gmem), "r"(valid ? 16 : 0)
               : "memory");
}

__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}

// Wait until at most N committed groups are still in flight.
template <int N> __device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Four 8x8 b16 matrices from shared memory; lanes 8i..8i+7 give the row addresses of
// matrix i, and register i receives matrix i in the mma operand layout.
__device__ __forceinline__ void ldmatrix_x4(unsigned (&r)[4], const void* smem) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(smem))
               : "memory");
}

// As ldmatrix_x4, each matrix transposed: turns a row-major [k][n] tile into the
// "col" B operand of mma.sync.
__device__ __forceinline__ void ldmatrix_x4_trans(unsigned (&r)[4], const void* smem) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(smem))
               : "memory");
}

}  // namespace jb
