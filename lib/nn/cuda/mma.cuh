// lib/nn/cuda/mma.cuh — one warp's bf16 tensor-core product, mma.sync m16n8k16 (sm_80 and later),
// for kernels that keep their tiles in registers (the ESM attention). Private to the CUDA sources.
//
//   ppd_mma_bf16_16816(d, a, b);     // d (16 x 8, fp32) += A (16 x 16, bf16) B (16 x 8, bf16)
//
// Fragments (the PTX ISA's layout for .m16n8k16 with .bf16; g = lane / 4, t = lane % 4; a 32-bit
// register holds two bf16, the lower index in its low half: ppd_pack_bf16x2(lower, upper),
// common.cuh):
//   a[0] = A[g][2t, 2t+1]      a[1] = A[g+8][2t, 2t+1]
//   a[2] = A[g][2t+8, 2t+9]    a[3] = A[g+8][2t+8, 2t+9]
//   b[0] = B[2t, 2t+1][g]      b[1] = B[2t+8, 2t+9][g]
//   d[0], d[1] = D[g][2t, 2t+1]    d[2], d[3] = D[g+8][2t, 2t+1]
// So a row of D's 8 columns lives in the 4 lanes of a group (lanes 4g .. 4g+3), and an fp32 D
// tile, packed pairwise, is the A fragment of the next product's 16-wide k slice, with no
// shuffle (FlashAttention-2's register reuse).
//
// Written with inline PTX because nvcuda::wmma's fragment layout is unspecified, so a kernel
// could not do per-row work (the online softmax) on its accumulators. All 32 lanes of the warp
// must call it with the same control flow. The CPU emulation (tests/emu) computes the same
// product from the same layout, summing over k in order in fp32 (the tensor core's order and
// internal width are its own: results agree to fp32 rounding, not bit for bit).
#ifndef PPDOCK_NN_CUDA_MMA_CUH
#define PPDOCK_NN_CUDA_MMA_CUH

#include <stdint.h>
#include <string.h>

#include "ppdock/half.h"

#ifdef PPD_CUDA_EMU
static inline void ppd_mma_bf16_16816(float d[4], const uint32_t a[4], const uint32_t b[2]) {
    ppd_emu::mma_bf16_m16n8k16(d, a, b);
}
#else
static __device__ __forceinline__ void ppd_mma_bf16_16816(float d[4], const uint32_t a[4],
                                                          const uint32_t b[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
                 "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
    __trap(); // bf16 mma needs sm_80; the Makefile builds sm_80 and sm_90 only
#endif
}
#endif

#endif
