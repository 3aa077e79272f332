// lib/nn/cuda/mma.cuh — one warp's bf16 tensor-core product, mma.sync m16n8k16 (sm_80 and later),
// for kernels that keep their tiles in registers (the ESM attention). Private to the CUDA sources.
//
//   ppd_mma_bf16_16816(d, a, b);     // d (16 x 8, fp32) += A (16 x 16, bf16) B (16 x 8, bf16)
//   ppd_ldmatrix_x4(r, row);         // four 8 x 8 bf16 matrices from shared memory, as fragments
//   ppd_ldmatrix_x4_trans(r, row);   // the same, each matrix transposed
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
// ldmatrix (m8n8.x4.b16): lane 8m + r passes the address of row r of matrix m (8 bf16, 16 bytes,
// 16-byte aligned, in shared memory); lane 4r + w receives in r[m] word w of that matrix's row r
// (elements 2w, 2w + 1), or with .trans word w of row r of its transpose (elements [2w][r] and
// [2w + 1][r]). So a plain load of rows n (8 of them) and columns k gives b[] fragments of B with
// B[k][n] = M[n][k] (Q K^T's K, stored by key), and .trans of rows k gives those of B = M itself
// (P V's V, stored by key): the staged tiles stay as the global rows are, and each lane's fragment
// words arrive with no per-lane shared-memory reads. Rows whose stride is an odd multiple of 16
// bytes (8 bf16 of padding after a multiple of 16) are read conflict-free: the 8 rows of a
// matrix fall in 8 distinct 16-byte bank groups.
//
// The ldmatrix asm clobbers "memory" so that nvcc cannot move a read of a staged tile across the
// barrier or the cp.async wait that makes it valid (the tiles are written by cp.async, which the
// compiler cannot see as stores).
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
static inline void ppd_ldmatrix_x4(uint32_t r[4], const uint16_t *row) {
    ppd_emu::ldmatrix_x4(r, row, false);
}
static inline void ppd_ldmatrix_x4_trans(uint32_t r[4], const uint16_t *row) {
    ppd_emu::ldmatrix_x4(r, row, true);
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
// ldmatrix into r from the shared-memory row this lane names; OP is the instruction's name
#define PPD_LDMATRIX_X4(OP, r, row)                                                                \
    asm volatile(OP " {%0, %1, %2, %3}, [%4];\n"                                                   \
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])                                  \
                 : "r"((unsigned)__cvta_generic_to_shared(row))                                    \
                 : "memory")
static __device__ __forceinline__ void ppd_ldmatrix_x4(uint32_t r[4], const uint16_t *row) {
    PPD_LDMATRIX_X4("ldmatrix.sync.aligned.m8n8.x4.shared.b16", r, row);
}
static __device__ __forceinline__ void ppd_ldmatrix_x4_trans(uint32_t r[4], const uint16_t *row) {
    PPD_LDMATRIX_X4("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16", r, row);
}
#endif

#endif
