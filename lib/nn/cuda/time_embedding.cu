// Sinusoidal time embedding on the GPU: the CUDA twin of ppd_time_embedding_forward
// (ppdock/nn_cuda.h). The per-element body and the frequency table are
// ppdock/kernels/time_embedding.h.
#include "ppdock/nn_cuda.h"

#include "common.cuh"
#include "ppdock/kernels/time_embedding.h"

// The same 16 floats as the CPU's ppd_time_embedding_freqs. Global (read through L1), not
// __constant__: the lanes of a warp read 16 different entries at once, which the constant cache
// would serialise.
static __device__ const float time_freqs[PPD_TIME_EMBEDDING_HALF] = {PPD_TIME_EMBEDDING_FREQS};

// out: (N, 32)   t: (N). One warp per row n; lane j computes out[n][j].
static __global__ void time_embedding_forward_kernel(float *out, const float *t, int64_t N) {
    static_assert(PPD_TIME_EMBEDDING_DIM == PPD_WARP, "one lane per embedding entry");
    int j = threadIdx.x;
    int64_t stride = (int64_t)gridDim.x * blockDim.y;
    for (int64_t n = (int64_t)blockIdx.x * blockDim.y + threadIdx.y; n < N; n += stride)
        out[n * PPD_TIME_EMBEDDING_DIM + j] = ppd_time_embedding_elem(t[n], j, time_freqs);
}

extern "C" ppd_status ppd_cuda_time_embedding_forward(float *out, const float *t, int64_t N,
                                                      cudaStream_t stream) {
    if (N < 0) return ppd_fail(PPD_ERR_USAGE, "time_embedding: negative size N=%lld", (long long)N);
    if (N == 0) return PPD_OK;
    dim3 block(PPD_WARP, PPD_ROWS_PER_BLOCK);
    PPD_LAUNCH(time_embedding_forward_kernel, ppd_row_blocks(N), block, 0, stream)(out, t, N);
    PPD_CUDA_CHECK_LAUNCH("time_embedding_forward_kernel");
    return PPD_OK;
}
