// lib/nn/cuda/common.cuh — what every launcher in lib/nn/cuda shares (private to this folder).
//
// Row-wise element-wise kernels use one warp per row: block (32, ROWS_PER_BLOCK), lane
// threadIdx.x walks the row's columns with stride 32 (coalesced stores), and threadIdx.y +
// blockIdx.x walk the rows with a grid stride, so any row count fits a bounded grid.
#ifndef PPDOCK_NN_CUDA_COMMON_CUH
#define PPDOCK_NN_CUDA_COMMON_CUH

#include <stdint.h>

#include "ppdock/cuda_check.h"

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
#ifdef PPD_CUDA_EMU
#define PPD_LAUNCH(kernel, grid, block, smem, stream)                                              \
    ppd_emu::make_launcher(#kernel, kernel, grid, block, smem, stream)
#define PPD_EXTERN_SHARED(type, name) type *name = (type *)ppd_emu::dynamic_shared()
#else
#define PPD_LAUNCH(kernel, grid, block, smem, stream) kernel<<<grid, block, smem, stream>>>
#define PPD_EXTERN_SHARED(type, name)                 extern __shared__ type name[]
#endif

// Column-major C = op(A) op(B) + beta C on the handle's stream (lib/nn/cuda/gemm.cu); ta/tb 1 =
// transposed. The row-major callers' layouts are spelled out where they call it.
struct ppd_cuda_blas;
extern "C" ppd_status ppd_cuda_sgemm(ppd_cuda_blas *b, int ta, int tb, int m, int n, int k,
                                     const float *A, int lda, const float *B, int ldb, float beta,
                                     float *C, int ldc);

// After a launch: launch-configuration errors, and sticky errors from earlier work.
#define PPD_CUDA_CHECK_LAUNCH(opname)                                                              \
    do {                                                                                           \
        cudaError_t ppd_launch_err_ = cudaGetLastError();                                          \
        if (ppd_launch_err_ != cudaSuccess)                                                        \
            return ppd_cuda_status(ppd_launch_err_, __FILE__, __LINE__, opname " launch");         \
    } while (0)

#endif
