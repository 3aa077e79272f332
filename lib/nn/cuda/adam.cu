// Adam and global gradient-norm clipping on the GPU: the CUDA twins of ppd_adam_step and
// ppd_clip_grad_norm (ppdock/adam_cuda.h). The update is the CPU's own body
// (ppdock/kernels/adam.h); the clipping norm is reduced without atomics in a fixed order, so a
// run is reproducible bit for bit.
#include "ppdock/adam_cuda.h"

#include "common.cuh"

#define NORM_THREADS 256

static __global__ void adam_kernel(float *p, const float *g, float *m, float *v, int64_t n,
                                   ppd_adam_consts_t k) {
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        ppd_adam_elem(&p[i], g[i], &m[i], &v[i], &k);
}

extern "C" ppd_status ppd_cuda_adam_step(float *p, const float *g, float *m, float *v, size_t n,
                                         const ppd_adam_config *c, uint64_t step,
                                         cudaStream_t stream) {
    if (step < 1)
        return ppd_fail(PPD_ERR_USAGE, "adam: step must be >= 1 (got %llu)",
                        (unsigned long long)step);
    if (n == 0) return PPD_OK;
    ppd_adam_consts_t k;
    ppd_adam_consts(c, step, &k);
    PPD_LAUNCH(adam_kernel, ppd_elem_blocks((int64_t)n), PPD_ELEM_THREADS, 0, stream)
    (p, g, m, v, (int64_t)n, k);
    PPD_CUDA_CHECK_LAUNCH("adam_kernel");
    return PPD_OK;
}

// Block t: sq[t] = float(sqrt(Σ g² of tensor t)), the sum in double as on the CPU; each thread
// sums a strided slice, then a shared-memory tree in a fixed order.
static __global__ void tensor_norms_kernel(float *norms, const float *g, const size_t *offset,
                                           const size_t *numel) {
    __shared__ double part[NORM_THREADS];
    int t = blockIdx.x;
    const float *x = g + offset[t];
    double s = 0.0;
    for (size_t i = threadIdx.x; i < numel[t]; i += NORM_THREADS) s += (double)x[i] * x[i];
    s = ppd_block_sum_double(s, part);
    if (threadIdx.x == 0) norms[t] = (float)sqrt(s);
}

// One thread: total = sqrt(Σ_t norms[t]²) in float32, in tensor order as the CPU; coef.
static __global__ void total_norm_kernel(float *total_coef, const float *norms, int count,
                                         float max_norm) {
    float total2 = 0.0f;
    for (int t = 0; t < count; t++) total2 = total2 + PPD_MUL(norms[t], norms[t]);
    float total = sqrtf(total2);
    total_coef[0] = total;
    total_coef[1] = max_norm / (total + 1e-6f);
}

static __global__ void clip_scale_kernel(float *g, int64_t n, const float *total_coef) {
    float coef = total_coef[1];
    if (!(coef < 1.0f)) return;
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        g[i] = PPD_MUL(g[i], coef);
}

extern "C" ppd_status ppd_cuda_clip_grad_norm(float *g, size_t n, const size_t *offset,
                                              const size_t *numel, int count, double max_norm,
                                              float *scratch, cudaStream_t stream) {
    if (count < 1 || count > 2147483647)
        return ppd_fail(PPD_ERR_USAGE, "clip_grad_norm: %d tensors", count);
    float *norms = scratch + 2;
    PPD_LAUNCH(tensor_norms_kernel, (unsigned)count, NORM_THREADS, 0, stream)
    (norms, g, offset, numel);
    PPD_CUDA_CHECK_LAUNCH("tensor_norms_kernel");
    PPD_LAUNCH(total_norm_kernel, 1, 1, 0, stream)(scratch, norms, count, (float)max_norm);
    PPD_CUDA_CHECK_LAUNCH("total_norm_kernel");
    if (n == 0) return PPD_OK;
    PPD_LAUNCH(clip_scale_kernel, ppd_elem_blocks((int64_t)n), PPD_ELEM_THREADS, 0, stream)
    (g, (int64_t)n, scratch);
    PPD_CUDA_CHECK_LAUNCH("clip_scale_kernel");
    return PPD_OK;
}
