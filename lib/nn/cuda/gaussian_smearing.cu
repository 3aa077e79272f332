// Gaussian distance smearing on the GPU: the CUDA twin of ppd_gaussian_smearing_forward
// (ppdock/nn_cuda.h). The per-element body is ppdock/kernels/gaussian_smearing.h.
#include "ppdock/nn_cuda.h"

#include "common.cuh"
#include "ppdock/kernels/gaussian_smearing.h"

// out: (E, G)   dist: (E)   offsets: (G). One warp per edge row; lanes over g.
static __global__ void gaussian_smearing_forward_kernel(float *out, const float *dist,
                                                        const float *offsets, float gamma,
                                                        int64_t E, int G) {
    int64_t stride = (int64_t)gridDim.x * blockDim.y;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.y + threadIdx.y; e < E; e += stride) {
        float d = dist[e];
        float *row = out + e * G;
        for (int g = threadIdx.x; g < G; g += PPD_WARP)
            row[g] = ppd_gaussian_smearing_elem(d, offsets[g], gamma);
    }
}

extern "C" ppd_status ppd_cuda_gaussian_smearing_forward(float *out, const float *dist,
                                                         const float *offsets, float gamma,
                                                         int64_t E, int G, cudaStream_t stream) {
    if (E < 0 || G < 0)
        return ppd_fail(PPD_ERR_USAGE, "gaussian_smearing: negative size (E=%lld, G=%d)",
                        (long long)E, G);
    if (E == 0 || G == 0) return PPD_OK;
    dim3 block(PPD_WARP, PPD_ROWS_PER_BLOCK);
    PPD_LAUNCH(gaussian_smearing_forward_kernel, ppd_row_blocks(E), block, 0, stream)
    (out, dist, offsets, gamma, E, G);
    PPD_CUDA_CHECK_LAUNCH("gaussian_smearing_forward_kernel");
    return PPD_OK;
}
