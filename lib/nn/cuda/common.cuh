// lib/nn/cuda/common.cuh — what every launcher in lib/nn/cuda shares (private to this folder).
//
// Row-wise element-wise kernels use one warp per row: block (32, ROWS_PER_BLOCK), lane
// threadIdx.x walks the row's columns with stride 32 (coalesced stores), and threadIdx.y +
// blockIdx.x walk the rows with a grid stride, so any row count fits a bounded grid.
#ifndef PPDOCK_NN_CUDA_COMMON_CUH
#define PPDOCK_NN_CUDA_COMMON_CUH

#include <stdint.h>

#include <type_traits>

#include "ppdock/cuda_check.h"
#include "ppdock/half.h"

#define PPD_WARP           32
#define PPD_ROWS_PER_BLOCK 8
// Enough blocks to fill any current GPU many times over (H100: 132 SMs x 8 blocks of 256
// threads resident); past this the grid-stride loop takes over.
#define PPD_MAX_ROW_BLOCKS 65535

static inline unsigned ppd_row_blocks(int64_t rows) {
    int64_t b = (rows + PPD_ROWS_PER_BLOCK - 1) / PPD_ROWS_PER_BLOCK;
    return (unsigned)(b < PPD_MAX_ROW_BLOCKS ? b : PPD_MAX_ROW_BLOCKS);
}

// Flat element-wise kernels: PPD_ELEM_THREADS threads per block, one element per thread up to
// PPD_MAX_ELEM_BLOCKS blocks, then the kernels' grid-stride loops take over.
#define PPD_ELEM_THREADS    256
#define PPD_MAX_ELEM_BLOCKS (1 << 20)

static inline unsigned ppd_elem_blocks(int64_t n) {
    int64_t b = (n + PPD_ELEM_THREADS - 1) / PPD_ELEM_THREADS;
    return (unsigned)(b < PPD_MAX_ELEM_BLOCKS ? b : PPD_MAX_ELEM_BLOCKS);
}

// Launch a kernel: PPD_LAUNCH(kernel, grid, block, shared_bytes, stream)(args...). Under nvcc it
// is the <<<...>>> launch; in the CPU emulation of the tests (tests/emu/cuda_emu.h, g++) it runs
// the grid on fibers. The sources stay one text for both.
// PPD_LAUNCH_NAMED is the same with the name the emulation's diagnostics give (a kernel passed
// as a pointer would be named after the variable).
#ifdef PPD_CUDA_EMU
#define PPD_LAUNCH_NAMED(name, kernel, grid, block, smem, stream)                                  \
    ppd_emu::make_launcher(name, kernel, grid, block, smem, stream)
#define PPD_LAUNCH(kernel, grid, block, smem, stream)                                              \
    ppd_emu::make_launcher(#kernel, kernel, grid, block, smem, stream)
#define PPD_EXTERN_SHARED(type, name) type *name = (type *)ppd_emu::dynamic_shared()
#else
#define PPD_LAUNCH_NAMED(name, kernel, grid, block, smem, stream)                                  \
    kernel<<<grid, block, smem, stream>>>
#define PPD_LAUNCH(kernel, grid, block, smem, stream) kernel<<<grid, block, smem, stream>>>
#define PPD_EXTERN_SHARED(type, name)                 extern __shared__ type name[]
#endif

// Element-wise ops over a row-major (N, C) array with a per-column operand (a bias) or rows of
// another stride: op(i, r, c) for every element i = r * C + c of row r, column c. x threads over
// the columns, so nothing divides by C per element (a flat index's `i / C`, `i % C` is a 64-bit
// integer division, done in software on the GPU: it cost more than the bias + GELU it fed), y
// threads and blocks down the rows.
template <class Op> static __global__ void ppd_cols_kernel(Op op, int64_t N, int C) {
    int c = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    if (c >= C) return;
    int64_t stride = (int64_t)gridDim.y * blockDim.y;
    for (int64_t r = (int64_t)blockIdx.y * blockDim.y + threadIdx.y; r < N; r += stride)
        op(r * C + c, r, c);
}

// The grid's y extent for gx column blocks over `rows` row blocks: at most 65535 and at most
// PPD_MAX_ELEM_BLOCKS blocks in all; the kernels' grid-stride row loops take the rest.
static inline int64_t ppd_col_grid_rows(int64_t gx, int64_t rows) {
    int64_t cap = PPD_MAX_ELEM_BLOCKS / gx < 65535 ? PPD_MAX_ELEM_BLOCKS / gx : 65535;
    return rows < cap ? rows : cap;
}

template <class Op>
static inline ppd_status ppd_launch_cols(const char *name, Op op, int64_t N, int C,
                                         cudaStream_t stream) {
    if (N <= 0 || C <= 0) return PPD_OK;
    int bx = C >= PPD_ELEM_THREADS ? PPD_ELEM_THREADS : (C + 31) / 32 * 32;
    int by = PPD_ELEM_THREADS / bx;
    int64_t gx = (C + bx - 1) / bx, gy = ppd_col_grid_rows(gx, (N + by - 1) / by);
    PPD_LAUNCH_NAMED(name, ppd_cols_kernel<Op>, dim3((unsigned)gx, (unsigned)gy),
                     dim3((unsigned)bx, (unsigned)by), 0, stream)
    (op, N, C);
    cudaError_t err = cudaGetLastError();
    return err == cudaSuccess ? PPD_OK : ppd_cuda_status(err, __FILE__, __LINE__, name);
}

// The driver's free device memory (cudaMemGetInfo; 0 when it cannot be read), and the bytes
// taken between two such readings (0 when either is unknown): how the tools set the driver's
// count of their allocations, and of the CUDA runtime's own beside them, against their plans.
static inline size_t ppd_cuda_free_bytes() {
    size_t free_b = 0, total_b = 0;
    return cudaMemGetInfo(&free_b, &total_b) == cudaSuccess ? free_b : 0;
}
static inline size_t ppd_cuda_bytes_taken(size_t before, size_t after) {
    return before && after && after < before ? before - after : 0;
}

// A kernel's output element: fp32 as is, or rounded to bf16 (nearest even, ppdock/half.h) where
// the output only feeds a bf16 GEMM: the same value ppd_cuda_cast_bf16 would make of the fp32
// one, without the fp32 round trip through memory. On sm_80+ the rounding is one
// cvt.rn.bf16.f32 instead of ppd_f32_to_bf16's eight integer operations: the same bits for every
// number and infinity; a NaN becomes the canonical one (as ppd_pack_bf16x2 below).
static inline __device__ void ppd_store(float *p, float v) {
    *p = v;
}
static inline __device__ void ppd_store(uint16_t *p, float v) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    unsigned short r;
    asm("cvt.rn.bf16.f32 %0, %1;\n" : "=h"(r) : "f"(v));
    *p = r;
#else
    *p = ppd_f32_to_bf16(v);
#endif
}

// Two floats rounded to bf16 (nearest, ties to even: ppdock/half.h, the CPU's rounding) and
// packed, `lo` in the low half. On sm_80+ one cvt.rn.bf16x2.f32 instruction instead of the bit
// arithmetic (about six integer operations a value, which the attention kernel pays for every
// score and every staged K and V element): the same bits for every number and infinity; a NaN
// stays a NaN but becomes the canonical one (0x7fff) where ppd_f32_to_bf16 keeps its payload.
static inline __device__ uint32_t ppd_pack_bf16x2(float lo, float hi) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    uint32_t r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
#else
    return (uint32_t)ppd_f32_to_bf16(lo) | (uint32_t)ppd_f32_to_bf16(hi) << 16;
#endif
}

// Consecutive outputs in one store (and inputs in one load: ppd_load2, ppd_load4), fp32 or bf16
// (rounded as ppd_pack_bf16x2 rounds; ppd_load4 widens bf16 exactly): two (8 or 4 bytes) or four
// (16 or 8 bytes); p aligned to that width. Kernels that check ppd_aligned16 on their bases use
// them for 8- and 16-byte accesses.
static inline __device__ void ppd_store2(float *p, float lo, float hi) {
    float2 v = {lo, hi};
    *reinterpret_cast<float2 *>(p) = v;
}
static inline __device__ void ppd_store2(uint16_t *p, float lo, float hi) {
    *reinterpret_cast<uint32_t *>(p) = ppd_pack_bf16x2(lo, hi);
}
static inline __device__ void ppd_store4(float *p, float4 v) {
    *reinterpret_cast<float4 *>(p) = v;
}
static inline __device__ void ppd_store4(uint16_t *p, float4 v) {
    uint2 w = {ppd_pack_bf16x2(v.x, v.y), ppd_pack_bf16x2(v.z, v.w)};
    *reinterpret_cast<uint2 *>(p) = w;
}
static inline __device__ float ppd_load(const float *p) {
    return *p;
}
static inline __device__ float2 ppd_load2(const float *p) {
    return *reinterpret_cast<const float2 *>(p);
}
static inline __device__ float4 ppd_load4(const float *p) {
    return *reinterpret_cast<const float4 *>(p);
}
// bf16 inputs (a bf16 GEMM's output) widened to fp32, which is exact: ppd_bf16_to_f32's value.
static inline __device__ float ppd_bf16_bits_to_f32(uint32_t b) {
    return __uint_as_float(b << 16);
}
static inline __device__ float ppd_load(const uint16_t *p) {
    return ppd_bf16_bits_to_f32(*p);
}
static inline __device__ float4 ppd_load4(const uint16_t *p) {
    uint2 w = *reinterpret_cast<const uint2 *>(p);
    return {ppd_bf16_bits_to_f32(w.x & 0xffffu), ppd_bf16_bits_to_f32(w.x >> 16),
            ppd_bf16_bits_to_f32(w.y & 0xffffu), ppd_bf16_bits_to_f32(w.y >> 16)};
}
static inline bool ppd_aligned16(const void *p) {
    return (uintptr_t)p % 16 == 0;
}

// Column-major C = op(A) op(B) + beta C on the handle's stream (lib/nn/cuda/gemm.cu); ta/tb 1 =
// transposed. The row-major callers' layouts are spelled out where they call it.
struct ppd_cuda_blas;
extern "C" ppd_status ppd_cuda_sgemm(ppd_cuda_blas *b, int ta, int tb, int m, int n, int k,
                                     const float *A, int lda, const float *B, int ldb, float beta,
                                     float *C, int ldc);

// db[c] += Σ_n x[n][c] (x: N rows of M) for the columns c0 .. c0 + 31, by a block (32, 32):
// lane x a column, lane y a row stride, then the 32 partials of a column summed in a fixed order
// through `part` (the block's shared [32][33]). No atomics: deterministic. Every thread of the
// block must call it (it holds a barrier).
static inline __device__ void ppd_column_sum_block(float *db, const float *x, int64_t N, int M,
                                                   int c0, float (*part)[33]) {
    int c = c0 + (int)threadIdx.x;
    float s = 0.0f;
    if (c < M)
        for (int64_t n = threadIdx.y; n < N; n += 32) s += x[n * M + c];
    part[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && c < M) {
        float t = 0.0f;
        for (int y = 0; y < 32; y++) t += part[y][threadIdx.x];
        db[c] += t;
    }
}

// First j in [lo, hi) with order[j] >= v, for the sorted groups of a scatter plan
// (ppdock/scatter.h).
static inline __device__ int64_t ppd_first_at_or_after(const int64_t *order, int64_t lo, int64_t hi,
                                                       int64_t v) {
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (order[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

// The block's sum of every thread's v, in a fixed tree order (deterministic, no atomics); all
// threads get it. part: blockDim.x doubles of shared memory, blockDim.x a power of two; every
// thread of the block must call it.
static inline __device__ double ppd_block_sum_double(double v, double *part) {
    part[threadIdx.x] = v;
    __syncthreads();
    for (int half = (int)blockDim.x / 2; half > 0; half /= 2) {
        if ((int)threadIdx.x < half) part[threadIdx.x] += part[threadIdx.x + half];
        __syncthreads();
    }
    double s = part[0];
    __syncthreads(); // part is free for the next sum
    return s;
}

// acc[t][k] += src[e - e0][col0 + part * width + k] (k < width) over the scatter plan's entries v
// of each target t with v0 <= v < v1, in increasing v, where e = v >> shift and part = v's low
// `shift` bits: shift 0 for a plain plan (ppd_scatter_plan), 1 for a pair plan
// (ppd_scatter_plan_pairs). acc rows have dacc floats, src rows src_stride. lib/nn/cuda/scatter.cu.
ppd_status ppd_cuda_scatter_parts(float *acc, int dacc, const float *src, int src_stride, int width,
                                  int col0, int shift, const int64_t *order, const int64_t *seg,
                                  int64_t v0, int64_t v1, int64_t e0, int64_t T,
                                  cudaStream_t stream);

// After a launch: launch-configuration errors, and sticky errors from earlier work.
#define PPD_CUDA_CHECK_LAUNCH(opname)                                                              \
    do {                                                                                           \
        cudaError_t ppd_launch_err_ = cudaGetLastError();                                          \
        if (ppd_launch_err_ != cudaSuccess)                                                        \
            return ppd_cuda_status(ppd_launch_err_, __FILE__, __LINE__, opname " launch");         \
    } while (0)

// The ESM attention kernels' launch (esm_layers.cu, esm_attention_bf16.cu): grid (blocks of
// `rows` query rows over the longest sequence, heads, sequences), the sequences in chunks of
// 65535 (grid.z's limit); the kernel takes (out, qkv, tok_off, H, first sequence of the chunk)
// and `smem` bytes of dynamic shared memory (over 48 KiB, the kernel's limit is raised to it).
// Both kernels copy their key tiles 16 bytes at a time (cp.async): qkv must be 16-byte aligned,
// PPD_ERR_USAGE otherwise (device arena blocks are).
template <class OutT, class InT>
static ppd_status ppd_launch_attention(void (*kernel)(OutT *, const InT *, const int64_t *, int,
                                                      int),
                                       const char *name, int rows, unsigned threads, size_t smem,
                                       OutT *out, const InT *qkv, const int64_t *tok_off, int B,
                                       int H, int T_max, cudaStream_t stream) {
    if (!ppd_aligned16(qkv))
        return ppd_fail(PPD_ERR_USAGE, "%s: q/k/v at %p is not 16-byte aligned", name,
                        (const void *)qkv);
    unsigned qblocks = (unsigned)((T_max + rows - 1) / rows);
    if (smem > 48 * 1024) {
        cudaError_t e = cudaFuncSetAttribute(
            (const void *)kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess) return ppd_cuda_status(e, __FILE__, __LINE__, name);
    }
    for (int b0 = 0; b0 < B; b0 += 65535) {
        unsigned nb = (unsigned)(B - b0 < 65535 ? B - b0 : 65535);
        PPD_LAUNCH_NAMED(name, kernel, dim3(qblocks, (unsigned)H, nb), threads, smem, stream)
        (out, qkv, tok_off, H, b0);
        cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess) return ppd_cuda_status(e, __FILE__, __LINE__, name);
    }
    return PPD_OK;
}

// The head dimensions an attention kernel is instantiated for, listed once: has(hd), and
// call(hd, f, &status), which runs f(std::integral_constant<int, HD>{}) for the HD equal to hd
// (f launches kernel<HD>) and returns whether there was one.
template <int... HDS> struct ppd_head_dims {
    static bool has(int hd) {
        return ((hd == HDS) || ...);
    }
    template <class F> static bool call(int hd, F &&f, ppd_status *st) {
        return ((hd == HDS && (*st = f(std::integral_constant<int, HDS>{}), true)) || ...);
    }
};

#endif
