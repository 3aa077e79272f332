// lib/nn/cuda/async_copy.cuh — global-to-shared copies that run while the thread computes
// (cp.async, sm_80 and later), for kernels that stage the next tile during the current one (the
// ESM attention). Private to the CUDA sources.
//
//   ppd_cp_async16(dst, src, n);   // 16 bytes to shared dst: the first n (0 or 16) from src, the
//                                  // rest zeros; both 16-byte aligned (src unread when n is 0)
//   ppd_cp_async_commit();         // close the thread's group of copies issued so far
//   ppd_cp_async_wait<N>();        // all but the N newest committed groups have landed
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

#endif
