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

/* A product that must stay a rounded product: nvcc contracts a * b + c into an FMA by default
 * (--fmad=true), even across statements; __fmul_rn is never contracted. On the CPU (gcc with
 * -ffp-contract=off) a plain multiply. Bodies that use it give bit-identical results on both. */
#ifdef __CUDA_ARCH__
#define PPD_MUL(a, b) __fmul_rn((a), (b))
#else
#define PPD_MUL(a, b) ((a) * (b))
#endif

/* Force inlining of a body into its caller, so that a caller compiled for a wider vector unit
 * (PPD_SIMD_CLONES below) compiles the body for it too. */
#if defined(__GNUC__) && !defined(__CUDACC__)
#define PPD_INLINE __attribute__((always_inline))
#else
#define PPD_INLINE
#endif

/* A loop the CPU compiler may vectorise (OpenMP simd; ignored by nvcc and without OpenMP), and
 * the same with a + reduction into `var`: the order of that sum is then the compiler's. */
#if defined(_OPENMP) && !defined(__CUDACC__)
#define PPD_SIMD          _Pragma("omp simd")
#define PPD_PRAGMA_(x)    _Pragma(#x)
#define PPD_SIMD_SUM(var) PPD_PRAGMA_(omp simd reduction(+ : var))
#else
#define PPD_SIMD
#define PPD_SIMD_SUM(var)
#endif

/* CPU functions with hot loops are compiled for AVX-512, AVX2 and the baseline and picked at
 * load time (gcc function multi-versioning), since the build targets plain x86-64. The vector
 * width changes the order of some sums, so results can differ by an ulp between CPUs (never
 * between runs on one CPU). Put it on a plain function (not one holding an OpenMP region: the
 * outlined region would not be cloned). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) &&                             \
    !defined(__SANITIZE_ADDRESS__) && !defined(__CUDACC__) && !defined(PPD_NO_SIMD_CLONES)
#define PPD_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define PPD_SIMD_CLONES
#endif

#endif
