// Scatter-add of edge rows into node rows on the GPU: the CUDA twin of ppd_scatter_add_rows
// (ppdock/scatter.h, ppdock/nn_cuda.h). One warp per target row, lanes over its columns; each
// walks the target's edges of the chunk in increasing edge order (the plan's group, clipped to
// the chunk by binary search), so the additions are the CPU loop's, in its order.
#include "ppdock/nn_cuda.h"

#include "common.cuh"

// One warp per target row, lanes over its columns, the target's entries in increasing order.
static __global__ void scatter_parts_kernel(float *acc, int dacc, const float *src, int src_stride,
                                            int width, int col0, int shift, const int64_t *order,
                                            const int64_t *seg, int64_t v0, int64_t v1, int64_t e0,
                                            int64_t T) {
    int64_t stride = (int64_t)gridDim.x * blockDim.y;
    for (int64_t t = (int64_t)blockIdx.x * blockDim.y + threadIdx.y; t < T; t += stride) {
        int64_t lo = ppd_first_at_or_after(order, seg[t], seg[t + 1], v0);
        int64_t hi = ppd_first_at_or_after(order, lo, seg[t + 1], v1);
        if (lo == hi) continue;
        for (int k = threadIdx.x; k < width; k += PPD_WARP) {
            float a = acc[t * dacc + k];
            for (int64_t j = lo; j < hi; j++) {
                int64_t v = order[j], e = v >> shift;
                int part = (int)(v & ((1 << shift) - 1));
                a += src[(e - e0) * src_stride + col0 + part * width + k];
            }
            acc[t * dacc + k] = a;
        }
    }
}

ppd_status ppd_cuda_scatter_parts(float *acc, int dacc, const float *src, int src_stride, int width,
                                  int col0, int shift, const int64_t *order, const int64_t *seg,
                                  int64_t v0, int64_t v1, int64_t e0, int64_t T,
                                  cudaStream_t stream) {
    if (v1 <= v0 || T == 0 || width == 0) return PPD_OK;
    PPD_LAUNCH(scatter_parts_kernel, ppd_row_blocks(T), dim3(PPD_WARP, PPD_ROWS_PER_BLOCK), 0,
               stream)
    (acc, dacc, src, src_stride, width, col0, shift, order, seg, v0, v1, e0, T);
    PPD_CUDA_CHECK_LAUNCH("scatter_parts_kernel");
    return PPD_OK;
}

extern "C" ppd_status ppd_cuda_scatter_add_rows(float *acc, const float *src, const int64_t *order,
                                                const int64_t *seg, int64_t e0, int64_t n,
                                                int64_t T, int dim, cudaStream_t stream) {
    if (e0 < 0 || n < 0 || T < 0 || dim < 0)
        return ppd_fail(PPD_ERR_USAGE, "scatter_add_rows: bad size e0=%lld n=%lld T=%lld dim=%d",
                        (long long)e0, (long long)n, (long long)T, dim);
    return ppd_cuda_scatter_parts(acc, dim, src, dim, dim, 0, 0, order, seg, e0, e0 + n, e0, T,
                                  stream);
}

extern "C" ppd_status ppd_cuda_scatter_add_cols(float *acc, int ldacc, const float *src, int lds,
                                                const int64_t *order, const int64_t *seg,
                                                int64_t e0, int64_t n, int64_t T, int w,
                                                cudaStream_t stream) {
    if (e0 < 0 || n < 0 || T < 0 || w < 0 || ldacc < w || lds < w)
        return ppd_fail(PPD_ERR_USAGE,
                        "scatter_add_cols: bad size e0=%lld n=%lld T=%lld w=%d ldacc=%d lds=%d",
                        (long long)e0, (long long)n, (long long)T, w, ldacc, lds);
    return ppd_cuda_scatter_parts(acc, ldacc, src, lds, w, 0, 0, order, seg, e0, e0 + n, e0, T,
                                  stream);
}
