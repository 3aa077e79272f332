// Scatter-add of edge rows into node rows on the GPU: the CUDA twin of ppd_scatter_add_rows
// (ppdock/scatter.h, ppdock/nn_cuda.h). One warp per target row, lanes over its columns; each
// walks the target's edges of the chunk in increasing edge order (the plan's group, clipped to
// the chunk by binary search), so the additions are the CPU loop's, in its order.
#include "ppdock/nn_cuda.h"

#include "common.cuh"

// first j in [lo, hi) with order[j] >= e (order is increasing within a group)
static __device__ int64_t lower_bound(const int64_t *order, int64_t lo, int64_t hi, int64_t e) {
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (order[mid] < e)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static __global__ void scatter_add_rows_kernel(float *acc, const float *src, const int64_t *order,
                                               const int64_t *seg, int64_t e0, int64_t n, int64_t T,
                                               int dim) {
    int64_t stride = (int64_t)gridDim.x * blockDim.y;
    for (int64_t t = (int64_t)blockIdx.x * blockDim.y + threadIdx.y; t < T; t += stride) {
        int64_t lo = lower_bound(order, seg[t], seg[t + 1], e0);
        int64_t hi = lower_bound(order, lo, seg[t + 1], e0 + n);
        if (lo == hi) continue;
        for (int k = threadIdx.x; k < dim; k += PPD_WARP) {
            float a = acc[t * dim + k];
            for (int64_t j = lo; j < hi; j++) a += src[(order[j] - e0) * dim + k];
            acc[t * dim + k] = a;
        }
    }
}

extern "C" ppd_status ppd_cuda_scatter_add_rows(float *acc, const float *src, const int64_t *order,
                                                const int64_t *seg, int64_t e0, int64_t n,
                                                int64_t T, int dim, cudaStream_t stream) {
    if (e0 < 0 || n < 0 || T < 0 || dim < 0)
        return ppd_fail(PPD_ERR_USAGE, "scatter_add_rows: bad size e0=%lld n=%lld T=%lld dim=%d",
                        (long long)e0, (long long)n, (long long)T, dim);
    if (n == 0 || T == 0 || dim == 0) return PPD_OK;
    PPD_LAUNCH(scatter_add_rows_kernel, ppd_row_blocks(T), dim3(PPD_WARP, PPD_ROWS_PER_BLOCK), 0,
               stream)
    (acc, src, order, seg, e0, n, T, dim);
    PPD_CUDA_CHECK_LAUNCH("scatter_add_rows_kernel");
    return PPD_OK;
}
