// lib/nn/cuda/async_copy.cuh — global-to-shared copies that run while the thread computes
// (cp.async, sm_80 and later), for kernels that stage the next tile during the current one (the
// ESM attention). Private to the CUDA sources.
//
//   ppd_cp_async16(dst, src, n);   // 16 bytes to shared dst: the first n (0 or 16) from src, the
//                                  // rest zeros; both 16-byte aligned (src unread when n is 0)
//   ppd_cp_async_commit();         // close the thread's group of copies issued so far
//   ppd_cp_async_wait<N>();        // all but the N newest committed groups have landed
//
// and, on them, what the ESM attention kernels share: a tile of rows copied by a whole block
// (ppd_cp_async_rows) and the two-buffer loop over tiles (ppd_tile_ready).
//
// A wait covers the calling thread's own copies only: a __syncthreads after it makes every
// thread's landed copies visible to the block. The copies bypass L1 (.cg) and registers, so a
// kernel can keep one tile in flight per buffer without holding it in registers. The CPU
// emulation (tests/emu) lands them, alternating by launch, at the copy or at the first barrier
// after the wait that releases them, so a missing wait, a missing barrier after it, or a missing
// barrier before a buffer is refilled gives wrong results there too.
#ifndef PPDOCK_NN_CUDA_ASYNC_COPY_CUH
#define PPDOCK_NN_CUDA_ASYNC_COPY_CUH

#include <stdint.h>

#ifdef PPD_CUDA_EMU
static inline void ppd_cp_async16(void *dst, const void *src, int n) {
    ppd_emu::cp_async16(dst, src, n);
}
static inline void ppd_cp_async_commit() {
    ppd_emu::cp_async_commit();
}
template <int N> static inline void ppd_cp_async_wait() {
    ppd_emu::cp_async_wait(N);
}
#else
static __device__ __forceinline__ void ppd_cp_async16(void *dst, const void *src, int n) {
    unsigned a = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(a), "l"(src), "r"(n)
                 : "memory");
}
static __device__ __forceinline__ void ppd_cp_async_commit() {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N> static __device__ __forceinline__ void ppd_cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
#endif

// Rows [0, ROWS) of ROW_BYTES bytes (a multiple of 16) of MATS matrices: matrix m's row j from
// src + m * src_mat + j * src_ld to shared dst + m * dst_mat + j * dst_ld (offsets in bytes),
// 16-byte copies spread over the block's THREADS threads (consecutive threads take consecutive
// chunks of a row: coalesced). Rows from nvalid on are zeros and read nothing (their copies name
// row 0 with a source size of 0). Strides are ints: a tile's offsets from src stay small (ROWS
// rows), and 64-bit products cost registers. Does not commit.
template <int ROWS, int ROW_BYTES, int THREADS, int MATS>
static __device__ __forceinline__ void ppd_cp_async_rows(void *dst, int dst_ld, int dst_mat,
                                                         const void *src, int src_ld, int src_mat,
                                                         int nvalid) {
    static_assert(ROW_BYTES % 16 == 0, "rows of whole 16-byte copies");
    constexpr int PER_ROW = ROW_BYTES / 16, CHUNKS = ROWS * PER_ROW;
#pragma unroll
    for (int i0 = 0; i0 < CHUNKS; i0 += THREADS) {
        int i = i0 + (int)threadIdx.x, j = i / PER_ROW, c = 16 * (i % PER_ROW);
        if (CHUNKS % THREADS == 0 || i < CHUNKS) {
            char *to = (char *)dst + j * dst_ld + c;
            const char *from = (const char *)src + (j < nvalid ? j : 0) * src_ld + c;
#pragma unroll
            for (int m = 0; m < MATS; m++)
                ppd_cp_async16(to + m * dst_mat, from + m * src_mat, j < nvalid ? 16 : 0);
        }
    }
}

// The two-buffer loop over ntiles tiles, where stage(k, u) issues tile k's copies into buffer u
// and commits them as one group, and the caller has staged tile 0 into buffer 0 (so that its
// copies overlap whatever it loads next):
//
//   for (int k = 0; k < ntiles; k++) {
//       ppd_tile_ready(k, ntiles, stage);   // tile k in buffer k & 1, tile k + 1 in flight
//       ... read tile k ...
//       __syncthreads();                    // buffer k & 1 free for tile k + 2
//   }
//
// The wait leaves only tile k + 1's copies pending and the barrier after it makes every thread's
// copies of tile k visible; the barrier after the reads keeps the buffer from being refilled
// under a slower warp. Every thread of the block must take part (the reads may be skipped, the
// barriers not).
template <class Stage>
static __device__ __forceinline__ void ppd_tile_ready(int k, int ntiles, Stage &stage) {
    if (k + 1 < ntiles) {
        stage(k + 1, (k + 1) & 1);
        ppd_cp_async_wait<1>(); // tile k's group, not the one just issued
    } else {
        ppd_cp_async_wait<0>();
    }
    __syncthreads();
}

#endif
