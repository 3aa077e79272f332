// ESM-2's residual stream on the GPU (ppdock/esm_cuda.h): LayerNorm, the residual update, and the
// two fused, x = x + (y + rb) then out = LayerNorm(x), which is how every residual update of the
// layer loop is followed. Element arithmetic is ppdock/kernels/esm_ops.h, the CPU's own; the
// statistics are sums in double as on the CPU, in the GPU's order.
//
// Why fused: both ops are memory-bound (on the H200 the residual took 6.3% of the bf16 650M's
// time, LayerNorm 3.6%, each near half the memory bandwidth), and apart they move x three times
// (the residual reads and writes it, LayerNorm reads it again); fused, a warp keeps its row in
// registers between the update, the two statistics and the normalised output: 14 bytes an
// element instead of 18 in bf16 mode, one launch instead of two, and 16-byte accesses.
//
// One warp per row (PPD_ROWS_PER_BLOCK rows a block); lane l holds the row's float4 groups l,
// l + 32, ... in registers: V of them, V a compile-time bound on ceil(d / 128) (ln_vec_bounds
// below; the 650M's d = 1280 is V = 10). Rows wider than the largest bound, d not a multiple of
// 4, or misaligned pointers take the scalar kernels (the residual through ppd_launch_cols, then
// layernorm_kernel).
#include "ppdock/esm_cuda.h"

#include "common.cuh"
#include "ppdock/kernels/esm_ops.h"

static __device__ double warp_sum_double(double v) {
    for (int o = PPD_WARP / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// ---- scalar kernels: any d -------------------------------------------------------------------

template <class T>
static __global__ void layernorm_kernel(T *out, const float *inp, const float *w, const float *b,
                                        int64_t N, int d) {
    int64_t stride = (int64_t)gridDim.x * blockDim.y;
    for (int64_t r = (int64_t)blockIdx.x * blockDim.y + threadIdx.y; r < N; r += stride) {
        const float *xr = inp + r * d;
        T *yr = out + r * d;
        double s = 0.0;
        for (int c = threadIdx.x; c < d; c += PPD_WARP) s += xr[c];
        double mean = warp_sum_double(s) / d, v = 0.0;
        for (int c = threadIdx.x; c < d; c += PPD_WARP) {
            double t = xr[c] - mean;
            v += t * t;
        }
        v = warp_sum_double(v);
        float meanf = (float)mean, var = (float)(v / d);
        float rstd = 1.0f / sqrtf(var + PPD_ESM_LN_EPS);
        for (int c = threadIdx.x; c < d; c += PPD_WARP)
            ppd_store(&yr[c], ppd_esm_layernorm_elem(xr[c], meanf, rstd, w[c], b[c]));
    }
}

struct residual_op {
    float *x;
    const float *y, *b;
    __device__ void operator()(int64_t i, int64_t, int c) const {
        x[i] = ppd_esm_residual_elem(x[i], y[i], b[c]);
    }
};

// ---- the vector kernel: the row in registers ---------------------------------------------------

// y == NULL: LayerNorm of x alone (x is not written).
template <int V, class T>
static __global__ void residual_layernorm_kernel(T *out, float *x, const float *y, const float *rb,
                                                 const float *w, const float *b, int64_t N, int d) {
    int d4 = d / 4, lane = (int)threadIdx.x;
    int64_t stride = (int64_t)gridDim.x * blockDim.y;
    for (int64_t r = (int64_t)blockIdx.x * blockDim.y + threadIdx.y; r < N; r += stride) {
        float4 *xr = reinterpret_cast<float4 *>(x + r * d);
        float4 v[V];
        double s = 0.0;
#pragma unroll
        for (int k = 0; k < V; k++) {
            int c4 = lane + PPD_WARP * k;
            if (c4 >= d4) break;
            v[k] = xr[c4];
            if (y) {
                float4 yv = ppd_load4(y + r * d + 4 * c4), bv = ppd_load4(rb + 4 * c4);
                v[k].x = ppd_esm_residual_elem(v[k].x, yv.x, bv.x);
                v[k].y = ppd_esm_residual_elem(v[k].y, yv.y, bv.y);
                v[k].z = ppd_esm_residual_elem(v[k].z, yv.z, bv.z);
                v[k].w = ppd_esm_residual_elem(v[k].w, yv.w, bv.w);
                xr[c4] = v[k];
            }
            s += v[k].x, s += v[k].y, s += v[k].z, s += v[k].w;
        }
        double mean = warp_sum_double(s) / d, q = 0.0;
#pragma unroll
        for (int k = 0; k < V; k++) {
            if (lane + PPD_WARP * k >= d4) break;
            double t0 = v[k].x - mean, t1 = v[k].y - mean, t2 = v[k].z - mean, t3 = v[k].w - mean;
            q += t0 * t0, q += t1 * t1, q += t2 * t2, q += t3 * t3;
        }
        q = warp_sum_double(q);
        float meanf = (float)mean, var = (float)(q / d);
        float rstd = 1.0f / sqrtf(var + PPD_ESM_LN_EPS);
#pragma unroll
        for (int k = 0; k < V; k++) {
            int c4 = lane + PPD_WARP * k;
            if (c4 >= d4) break;
            float4 wv = ppd_load4(w + 4 * c4), bv = ppd_load4(b + 4 * c4);
            float4 o = {ppd_esm_layernorm_elem(v[k].x, meanf, rstd, wv.x, bv.x),
                        ppd_esm_layernorm_elem(v[k].y, meanf, rstd, wv.y, bv.y),
                        ppd_esm_layernorm_elem(v[k].z, meanf, rstd, wv.z, bv.z),
                        ppd_esm_layernorm_elem(v[k].w, meanf, rstd, wv.w, bv.w)};
            ppd_store4(out + r * d + 4 * c4, o);
        }
    }
}

// The register bounds the vector kernel is built for (float4 groups per lane): every ESM-2 width
// up to the 3B's 2560 (V = 20) and 3072. The smallest bound at or above ceil(d / 128) is used.
template <int... VS> struct ln_vec_bounds {
    template <class F> static bool call(int need, F &&f, ppd_status *st) {
        return ((need <= VS && (*st = f(std::integral_constant<int, VS>{}), true)) || ...);
    }
};
using ln_bounds = ln_vec_bounds<1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24>;

// out = LayerNorm(x + (y + rb)) with x updated (y == NULL: LayerNorm(x), x unchanged).
template <class T>
static ppd_status residual_layernorm(T *out, float *x, const float *y, const float *rb,
                                     const float *w, const float *b, int64_t N, int d,
                                     cudaStream_t stream) {
    if (N < 0 || d < 1)
        return ppd_fail(PPD_ERR_USAGE, "esm %s: bad size N=%lld d=%d",
                        y ? "residual_layernorm" : "layernorm", (long long)N, d);
    if (N == 0) return PPD_OK;
    bool vec = d % 4 == 0 && ppd_aligned16(x) && ppd_aligned16(w) && ppd_aligned16(b) &&
               (uintptr_t)out % (4 * sizeof(T)) == 0 &&
               (!y || (ppd_aligned16(y) && ppd_aligned16(rb)));
    ppd_status st = PPD_OK;
    auto launch = [&](auto V) {
        auto kernel = residual_layernorm_kernel<decltype(V)::value, T>;
        PPD_LAUNCH_NAMED("residual_layernorm_kernel", kernel, ppd_row_blocks(N),
                         dim3(PPD_WARP, PPD_ROWS_PER_BLOCK), 0, stream)
        (out, x, y, rb, w, b, N, d);
        return PPD_OK;
    };
    if (vec && ln_bounds::call((d / 4 + PPD_WARP - 1) / PPD_WARP, launch, &st)) {
        PPD_CUDA_CHECK_LAUNCH("residual_layernorm_kernel");
        return st;
    }
    if (y) PPD_TRY(ppd_cuda_esm_residual_forward(x, y, rb, N, d, stream));
    PPD_LAUNCH(layernorm_kernel<T>, ppd_row_blocks(N), dim3(PPD_WARP, PPD_ROWS_PER_BLOCK), 0,
               stream)
    (out, x, w, b, N, d);
    PPD_CUDA_CHECK_LAUNCH("layernorm_kernel");
    return PPD_OK;
}

extern "C" ppd_status ppd_cuda_esm_layernorm_forward(float *out, const float *inp, const float *w,
                                                     const float *b, int64_t N, int d,
                                                     cudaStream_t stream) {
    return residual_layernorm(out, const_cast<float *>(inp), nullptr, nullptr, w, b, N, d, stream);
}

extern "C" ppd_status ppd_cuda_esm_layernorm_forward_to_bf16(uint16_t *out, const float *inp,
                                                             const float *w, const float *b,
                                                             int64_t N, int d,
                                                             cudaStream_t stream) {
    return residual_layernorm(out, const_cast<float *>(inp), nullptr, nullptr, w, b, N, d, stream);
}

extern "C" ppd_status ppd_cuda_esm_residual_forward(float *x, const float *y, const float *b,
                                                    int64_t N, int d, cudaStream_t stream) {
    if (N < 0 || d < 1)
        return ppd_fail(PPD_ERR_USAGE, "esm residual: bad size N=%lld d=%d", (long long)N, d);
    return ppd_launch_cols("residual_kernel", residual_op{x, y, b}, N, d, stream);
}

extern "C" ppd_status ppd_cuda_esm_residual_layernorm_forward(float *out, float *x, const float *y,
                                                              const float *rb, const float *w,
                                                              const float *b, int64_t N, int d,
                                                              cudaStream_t stream) {
    return residual_layernorm(out, x, y, rb, w, b, N, d, stream);
}

extern "C" ppd_status
ppd_cuda_esm_residual_layernorm_forward_to_bf16(uint16_t *out, float *x, const float *y,
                                                const float *rb, const float *w, const float *b,
                                                int64_t N, int d, cudaStream_t stream) {
    return residual_layernorm(out, x, y, rb, w, b, N, d, stream);
}
