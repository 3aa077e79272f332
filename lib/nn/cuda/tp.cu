// Spherical harmonics and the per-edge-weighted tensor product on the GPU: the CUDA twins of
// ppd_sh_forward, ppd_tp_forward and ppd_tp_backward (ppdock/nn_cuda.h). The per-edge bodies are
// the CPU's own (ppdock/kernels/so3.h, ppdock/kernels/tp_body.h): one thread per edge, its
// scratch in local memory, so the arithmetic is the CPU's by construction. Not tuned: no GPU has
// timed it yet (a tiled kernel, edges sharing the path coefficients in shared memory, is the
// candidate once gpu-check shows where a step's time goes).
#include "ppdock/nn_cuda.h"

#include "common.cuh"
#include "ppdock/kernels/so3.h"
#include "ppdock/kernels/tp.h"
#include "ppdock/so3.h"

#define PPD_EDGE_THREADS 128

static inline unsigned edge_blocks(int64_t E) {
    int64_t b = (E + PPD_EDGE_THREADS - 1) / PPD_EDGE_THREADS;
    return (unsigned)(b < PPD_MAX_ROW_BLOCKS ? b : PPD_MAX_ROW_BLOCKS);
}

static __global__ void sh_forward_kernel(float *Y, const float *vec, int64_t E) {
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < E; e += stride)
        ppd_sh_elem(vec + 3 * e, Y + PPD_SH_DIM * e);
}

static __global__ void tp_forward_kernel(const ppd_tp *tp, float *msg, const float *h,
                                         const int64_t *send, const float *Y, const float *w,
                                         const float *wb, int64_t E) {
    int di = tp->in.dim, dy = tp->sh.dim, dout = tp->out.dim, W = tp->wnum;
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < E; e += stride)
        ppd_tp_edge_forward(tp->path, tp->npath, tp->coef, dout, msg + e * dout, h + send[e] * di,
                            Y + e * dy, w + e * W, wb);
}

static __global__ void tp_backward_kernel(const ppd_tp *tp, float *dh_edge, float *dw,
                                          const float *dmsg, const float *h, const int64_t *send,
                                          const float *Y, const float *w, const float *wb,
                                          int64_t E) {
    int di = tp->in.dim, dy = tp->sh.dim, dout = tp->out.dim, W = tp->wnum;
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < E; e += stride)
        ppd_tp_edge_backward(tp->path, tp->npath, tp->coef, di, dh_edge + e * di, dw + e * W, NULL,
                             dmsg + e * dout, h + send[e] * di, Y + e * dy, w + e * W, wb);
}

// dwb[i] += Σ_e dw[e][i]: blocks (32, 32) over groups of 32 columns (common.cuh), W read on the
// device (the host holds only the device copy of the tensor product). Deterministic.
static __global__ void column_sum_kernel(const ppd_tp *tp, float *dwb, const float *dw, int64_t E) {
    __shared__ float part[32][33];
    int W = tp->wnum;
    for (int c0 = (int)blockIdx.x * 32; c0 < W; c0 += (int)gridDim.x * 32) {
        ppd_column_sum_block(dwb, dw, E, W, c0, part);
        __syncthreads(); // part is reused by the next group
    }
}

extern "C" ppd_status ppd_cuda_sh_forward(float *Y, const float *vec, int64_t E,
                                          cudaStream_t stream) {
    if (E < 0) return ppd_fail(PPD_ERR_USAGE, "sh_forward: negative size (E=%lld)", (long long)E);
    if (E == 0) return PPD_OK;
    PPD_LAUNCH(sh_forward_kernel, edge_blocks(E), PPD_EDGE_THREADS, 0, stream)(Y, vec, E);
    PPD_CUDA_CHECK_LAUNCH("sh_forward_kernel");
    return PPD_OK;
}

extern "C" ppd_status ppd_cuda_tp_forward(const ppd_tp *tp, float *msg, const float *h,
                                          const int64_t *send, const float *Y, const float *w,
                                          const float *wb, int64_t E, cudaStream_t stream) {
    if (E < 0) return ppd_fail(PPD_ERR_USAGE, "tp_forward: negative size (E=%lld)", (long long)E);
    if (E == 0) return PPD_OK;
    PPD_LAUNCH(tp_forward_kernel, edge_blocks(E), PPD_EDGE_THREADS, 0, stream)
    (tp, msg, h, send, Y, w, wb, E);
    PPD_CUDA_CHECK_LAUNCH("tp_forward_kernel");
    return PPD_OK;
}

extern "C" ppd_status ppd_cuda_tp_backward(const ppd_tp *tp, float *dh_edge, float *dw, float *dwb,
                                           const float *dmsg, const float *h, const int64_t *send,
                                           const float *Y, const float *w, const float *wb,
                                           int64_t E, cudaStream_t stream) {
    if (E < 0) return ppd_fail(PPD_ERR_USAGE, "tp_backward: negative size (E=%lld)", (long long)E);
    if (E == 0) return PPD_OK;
    PPD_LAUNCH(tp_backward_kernel, edge_blocks(E), PPD_EDGE_THREADS, 0, stream)
    (tp, dh_edge, dw, dmsg, h, send, Y, w, wb, E);
    PPD_CUDA_CHECK_LAUNCH("tp_backward_kernel");
    if (dwb) {
        // 128 blocks cover W up to 4,096 in one round (the model's widest is 3,032)
        PPD_LAUNCH(column_sum_kernel, 128, dim3(32, 32), 0, stream)(tp, dwb, dw, E);
        PPD_CUDA_CHECK_LAUNCH("column_sum_kernel");
    }
    return PPD_OK;
}
