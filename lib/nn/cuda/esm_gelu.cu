// ESM-2's bias + GELU on the GPU (ppdock/esm_cuda.h: ppd_cuda_esm_bias_gelu_forward and its bf16
// variants): out = GELU(h + b) over (N, F), the CPU's element arithmetic
// (ppdock/kernels/esm_ops.h) bit for bit.
//
// Why a kernel of its own and not a ppd_launch_cols op: the GELU is arithmetic-bound, not
// memory-bound. On the H200 it took 13% of the bf16 650M's time: about 118 SASS instructions an
// element (sm_90) against 6 bytes of traffic. About 60 of them are erf's far range (1 <= |x| < 4:
// a reciprocal, a degree-10 polynomial and an exp), which the CPU computes for every element so
// that its loop vectorises, and which a warp pays whenever any of its 32 lanes needs it, so
// nearly always. Here each warp computes the near range for its elements, queues the far ones'
// |x| in shared memory (a ballot per element slot gives each its place), runs the far range over
// the queue with all 32 lanes, and joins. The far range then costs its share of the elements,
// rounded up to whole warp rounds, not all of them. The queue only moves work between lanes:
// every element's value is the body's (ppd_esm_erf_join with the same near and far values).
//
// Block: GELU_THREADS threads, each GELU_VEC consecutive columns of a row (two 16-byte loads of b
// and of an fp32 h, two 8-byte loads of a bf16 one); blockIdx.x over column chunks, blockIdx.y and
// a grid stride over rows. Shapes it does not cover (F not a multiple of GELU_VEC, misaligned
// pointers) take the element-wise op.
#include "ppdock/esm_cuda.h"

#include "common.cuh"
#include "ppdock/kernels/esm_ops.h"

#define GELU_THREADS 128 // 5 blocks per row of the 650M's F = 5120, none partial
#define GELU_VEC     8
#define GELU_WARPS   (GELU_THREADS / PPD_WARP)

// GELU_VEC outputs to consecutive columns: fp32 in two 16-byte stores, bf16 in two 8-byte ones.
template <class T> static inline __device__ void store_vec(T *p, const float v[GELU_VEC]) {
    float4 lo = {v[0], v[1], v[2], v[3]}, hi = {v[4], v[5], v[6], v[7]};
    ppd_store4(p, lo);
    ppd_store4(p + 4, hi);
}
// GELU_VEC inputs from consecutive columns: fp32 in two 16-byte loads, bf16 (widened) in two
// 8-byte ones.
template <class T> static inline __device__ void load_vec(float v[GELU_VEC], const T *p) {
    float4 lo = ppd_load4(p), hi = ppd_load4(p + 4);
    v[0] = lo.x, v[1] = lo.y, v[2] = lo.z, v[3] = lo.w;
    v[4] = hi.x, v[5] = hi.y, v[6] = hi.z, v[7] = hi.w;
}

// h: fp32, or bf16 (the bf16 fc1 GEMM's output). out may be h (in place: a thread reads its
// elements before it writes them).
template <class T, class TI>
static __global__ void __launch_bounds__(GELU_THREADS)
    bias_gelu_kernel(T *out, const TI *h, const float *b, int64_t N, int F) {
    __shared__ float far_queue[GELU_WARPS][PPD_WARP * GELU_VEC]; // |x| in, erf's far range out
    int lane = (int)threadIdx.x % PPD_WARP;
    float *queue = far_queue[threadIdx.x / PPD_WARP];
    unsigned below = (1u << lane) - 1u; // the lanes before this one
    int c = ((int)blockIdx.x * GELU_THREADS + (int)threadIdx.x) * GELU_VEC;
    if (c - lane * GELU_VEC >= F) return; // the whole warp is past the row's end
    bool on = c < F; // F is a multiple of GELU_VEC: all of a thread's columns or none
    float bias[GELU_VEC] = {0, 0, 0, 0, 0, 0, 0, 0};
    if (on) load_vec(bias, b + c);
    // the row loop is warp-uniform (the ballots need every lane)
    for (int64_t r = blockIdx.y; r < N; r += gridDim.y) {
        float z[GELU_VEC] = {0, 0, 0, 0, 0, 0, 0, 0}, x[GELU_VEC];
        if (on) load_vec(z, h + r * F + c);
        int slot[GELU_VEC], total = 0; // slot < 0: the element is not far
#pragma unroll
        for (int k = 0; k < GELU_VEC; k++) {
            z[k] += bias[k];
            x[k] = ppd_esm_gelu_arg(z[k]);
            bool far = on && ppd_esm_erf_is_far(fabsf(x[k]));
            unsigned lanes = __ballot_sync(0xffffffffu, far);
            slot[k] = far ? total + __popc(lanes & below) : -1;
            if (far) queue[slot[k]] = fabsf(x[k]);
            total += __popc(lanes);
        }
        if (total) { // warp-uniform
            __syncwarp();
            for (int i = lane; i < total; i += PPD_WARP) queue[i] = ppd_esm_erf_far(queue[i]);
            __syncwarp();
        }
        float y[GELU_VEC];
#pragma unroll
        for (int k = 0; k < GELU_VEC; k++) {
            float a = fabsf(x[k]);
            float ef = slot[k] >= 0 ? queue[slot[k]] : 0.0f; // ignored unless far
            y[k] = ppd_esm_gelu_from_erf(z[k], ppd_esm_erf_join(x[k], a, ppd_esm_erf_near(a), ef));
        }
        if (on) store_vec(out + r * F + c, y);
        __syncwarp(); // the queue is read before the next row writes it
    }
}

// The element-wise fallback: one thread per element through ppd_launch_cols.
template <class T, class TI> struct bias_gelu_op {
    T *out;
    const TI *h;
    const float *b;
    __device__ void operator()(int64_t i, int64_t, int c) const {
        ppd_store(&out[i], ppd_esm_gelu_elem(ppd_load(h + i) + b[c]));
    }
};

template <class T, class TI>
static ppd_status launch_bias_gelu(T *out, const TI *h, const float *b, int64_t N, int F,
                                   cudaStream_t stream) {
    if (N < 0 || F < 1)
        return ppd_fail(PPD_ERR_USAGE, "esm bias_gelu: bad size N=%lld F=%d", (long long)N, F);
    if (N == 0) return PPD_OK;
    bool vec = F % GELU_VEC == 0 && ppd_aligned16(h) && ppd_aligned16(b) && ppd_aligned16(out);
    if (!vec)
        return ppd_launch_cols("bias_gelu_kernel", bias_gelu_op<T, TI>{out, h, b}, N, F, stream);
    int64_t gx = (F / GELU_VEC + GELU_THREADS - 1) / GELU_THREADS;
    int64_t gy = ppd_col_grid_rows(gx, N);
    auto kernel = bias_gelu_kernel<T, TI>;
    PPD_LAUNCH_NAMED("bias_gelu_kernel", kernel, dim3((unsigned)gx, (unsigned)gy), GELU_THREADS, 0,
                     stream)
    (out, h, b, N, F);
    PPD_CUDA_CHECK_LAUNCH("bias_gelu_kernel");
    return PPD_OK;
}

extern "C" ppd_status ppd_cuda_esm_bias_gelu_forward(float *h, const float *b, int64_t N, int F,
                                                     cudaStream_t stream) {
    return launch_bias_gelu(h, h, b, N, F, stream);
}

extern "C" ppd_status ppd_cuda_esm_bias_gelu_forward_bf16(uint16_t *out, const uint16_t *h,
                                                          const float *b, int64_t N, int F,
                                                          cudaStream_t stream) {
    return launch_bias_gelu(out, h, b, N, F, stream);
}
