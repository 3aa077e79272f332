/* ppdock/kernels/hd.h — PPD_HD marks a per-element kernel body that is compiled twice: once by
 * the C compiler for the CPU loop (lib/nn/<op>.c) and once by nvcc for the CUDA kernel
 * (lib/nn/cuda/<op>.cu). One body, so what the CPU tests check is the arithmetic the GPU runs
 * (DESIGN.md rule 5).
 *
 * Rules for a body in include/ppdock/kernels/:
 *  - `static inline PPD_HD`, scalar in, scalar out, no globals (tables come in as pointers);
 *  - float32 throughout, no double constants (a `1.0` would silently promote on the CPU and
 *    cost 64-bit arithmetic on the GPU);
 *  - no `a * b + c` in one expression unless a fused multiply-add is intended: nvcc contracts
 *    it to an FMA by default (--fmad=true) while gcc -std=c11 does not, and the results then
 *    differ in the last bit;
 *  - only libm functions that CUDA also provides (expf, sinf, cosf, ...). Without
 *    --use_fast_math both are within a few ulp of the true value (see each op's header).
 */
#ifndef PPDOCK_KERNELS_HD_H
#define PPDOCK_KERNELS_HD_H

#ifdef __CUDACC__
#define PPD_HD __host__ __device__
#else
#define PPD_HD
#endif

#endif
