// The score model's gather/scatter glue on the GPU: the CUDA twins of ppdock/graph_ops.h
// (declared in ppdock/nn_cuda.h). Copies and the bodies of ppdock/kernels/graph_ops.h:
// bit-identical to the CPU.
#include "ppdock/nn_cuda.h"

#include "common.cuh"
#include "ppdock/kernels/gaussian_smearing.h"
#include "ppdock/kernels/graph_ops.h"
#include "ppdock/kernels/score_heads.h"

// one warp per edge row, lanes over its 3 ns columns
static __global__ void gather_concat3_kernel(float *A, const float *emb, const float *hA,
                                             const int64_t *first, int dA, const float *hB,
                                             const int64_t *second, int dB, int64_t e0, int64_t n,
                                             int ns) {
    int64_t stride = (int64_t)gridDim.x * blockDim.y;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.y + threadIdx.y; i < n; i += stride) {
        int64_t e = e0 + i;
        const float *src[3] = {emb + e * ns, hA + first[e] * dA, hB + second[e] * dB};
        float *a = A + i * 3 * ns;
        for (int c = threadIdx.x; c < 3 * ns; c += PPD_WARP) a[c] = src[c / ns][c % ns];
    }
}

extern "C" ppd_status ppd_cuda_gather_concat3_forward(float *A, const float *emb, const float *hA,
                                                      const int64_t *first, int dA, const float *hB,
                                                      const int64_t *second, int dB, int64_t e0,
                                                      int64_t n, int ns, cudaStream_t stream) {
    if (e0 < 0 || n < 0 || ns < 1 || dA < ns || dB < ns)
        return ppd_fail(PPD_ERR_USAGE, "gather_concat3: bad size e0=%lld n=%lld ns=%d dA=%d dB=%d",
                        (long long)e0, (long long)n, ns, dA, dB);
    if (n == 0) return PPD_OK;
    PPD_LAUNCH(gather_concat3_kernel, ppd_row_blocks(n), dim3(PPD_WARP, PPD_ROWS_PER_BLOCK), 0,
               stream)
    (A, emb, hA, first, dA, hB, second, dB, e0, n, ns);
    PPD_CUDA_CHECK_LAUNCH("gather_concat3_kernel");
    return PPD_OK;
}

static __global__ void scatter_mean_grad_kernel(float *dmsg, const float *dU, const float *cnt,
                                                const int64_t *recv, int64_t e0, int64_t n,
                                                int dout) {
    int64_t stride = (int64_t)gridDim.x * blockDim.y;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.y + threadIdx.y; i < n; i += stride) {
        int64_t r = recv[e0 + i];
        for (int k = threadIdx.x; k < dout; k += PPD_WARP)
            dmsg[i * dout + k] = ppd_scatter_mean_grad_elem(dU[r * dout + k], cnt[r]);
    }
}

extern "C" ppd_status ppd_cuda_scatter_mean_grad(float *dmsg, const float *dU, const float *cnt,
                                                 const int64_t *recv, int64_t e0, int64_t n,
                                                 int dout, cudaStream_t stream) {
    if (e0 < 0 || n < 0 || dout < 1)
        return ppd_fail(PPD_ERR_USAGE, "scatter_mean_grad: bad size e0=%lld n=%lld dout=%d",
                        (long long)e0, (long long)n, dout);
    if (n == 0) return PPD_OK;
    PPD_LAUNCH(scatter_mean_grad_kernel, ppd_row_blocks(n), dim3(PPD_WARP, PPD_ROWS_PER_BLOCK), 0,
               stream)
    (dmsg, dU, cnt, recv, e0, n, dout);
    PPD_CUDA_CHECK_LAUNCH("scatter_mean_grad_kernel");
    return PPD_OK;
}

// hn: (N, dout) = the node's h (N, din; zero-padded to dout) + the two convolutions' outputs
struct update_nodes_op {
    float *hn;
    const float *h, *yi, *yc;
    int din;
    __device__ void operator()(int64_t i, int64_t r, int k) const {
        float base = k < din ? h[r * din + k] : 0.0f;
        hn[i] = ppd_update_node_elem(base, yi[i], yc[i]);
    }
};

extern "C" ppd_status ppd_cuda_update_nodes_forward(float *hn, const float *h, int64_t N, int din,
                                                    int dout, const float *yi, const float *yc,
                                                    cudaStream_t stream) {
    if (N < 0 || din < 0 || dout < 1)
        return ppd_fail(PPD_ERR_USAGE, "update_nodes: bad size N=%lld din=%d dout=%d", (long long)N,
                        din, dout);
    return ppd_launch_cols("update_nodes_kernel", update_nodes_op{hn, h, yi, yc, din}, N, dout,
                           stream);
}

static __global__ void degrees_kernel(float *cnt, const int64_t *seg, int64_t N) {
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < N; t += stride) {
        int64_t c = seg[t + 1] - seg[t];
        cnt[t] = c > 1 ? (float)c : 1.0f; // exact below 2^24 edges per node, as the CPU's sum
    }
}

extern "C" ppd_status ppd_cuda_degrees_forward(float *cnt, const int64_t *seg, int64_t N,
                                               cudaStream_t stream) {
    if (N < 0) return ppd_fail(PPD_ERR_USAGE, "degrees: N=%lld", (long long)N);
    if (N == 0) return PPD_OK;
    PPD_LAUNCH(degrees_kernel, ppd_elem_blocks(N), PPD_ELEM_THREADS, 0, stream)
    (cnt, seg, N);
    PPD_CUDA_CHECK_LAUNCH("degrees_kernel");
    return PPD_OK;
}

static __global__ void add_table_rows_kernel(float *x, const float *table, const int64_t *idx,
                                             int64_t N, int d) {
    int64_t stride = (int64_t)gridDim.x * blockDim.y;
    for (int64_t n = (int64_t)blockIdx.x * blockDim.y + threadIdx.y; n < N; n += stride) {
        const float *t = table + idx[n] * d;
        for (int j = threadIdx.x; j < d; j += PPD_WARP) x[n * d + j] = t[j] + x[n * d + j];
    }
}

extern "C" ppd_status ppd_cuda_add_table_rows(float *x, const float *table, const int64_t *idx,
                                              int64_t N, int d, cudaStream_t stream) {
    if (N < 0 || d < 1)
        return ppd_fail(PPD_ERR_USAGE, "add_table_rows: bad size N=%lld d=%d", (long long)N, d);
    if (N == 0) return PPD_OK;
    PPD_LAUNCH(add_table_rows_kernel, ppd_row_blocks(N), dim3(PPD_WARP, PPD_ROWS_PER_BLOCK), 0,
               stream)
    (x, table, idx, N, d);
    PPD_CUDA_CHECK_LAUNCH("add_table_rows_kernel");
    return PPD_OK;
}

// one warp per edge: the length once, lanes over the row's 32 + D columns
static __global__ void edge_raw_kernel(float *raw, const float *vec, const float *temb,
                                       const int64_t *tnode, const float *off, float gamma, int D,
                                       int gauss_first, int64_t E) {
    const int TD = 32, R = TD + D;
    int64_t stride = (int64_t)gridDim.x * blockDim.y;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.y + threadIdx.y; e < E; e += stride) {
        float d = ppd_edge_length(vec + 3 * e);
        float *row = raw + e * R;
        int g0 = gauss_first ? 0 : TD, t0 = gauss_first ? D : 0;
        for (int k = threadIdx.x; k < D; k += PPD_WARP)
            row[g0 + k] = ppd_gaussian_smearing_elem(d, off[k], gamma);
        row[t0 + threadIdx.x] = temb[tnode[e] * TD + threadIdx.x]; // 32 lanes, 32 columns
    }
}

extern "C" ppd_status ppd_cuda_edge_raw_forward(float *raw, const float *vec, const float *temb,
                                                const int64_t *tnode, const float *off, float gamma,
                                                int D, int gauss_first, int64_t E,
                                                cudaStream_t stream) {
    if (E < 0 || D < 1)
        return ppd_fail(PPD_ERR_USAGE, "edge_raw: bad size E=%lld D=%d", (long long)E, D);
    if (E == 0) return PPD_OK;
    PPD_LAUNCH(edge_raw_kernel, ppd_row_blocks(E), dim3(PPD_WARP, PPD_ROWS_PER_BLOCK), 0, stream)
    (raw, vec, temb, tnode, off, gamma, D, gauss_first, E);
    PPD_CUDA_CHECK_LAUNCH("edge_raw_kernel");
    return PPD_OK;
}

extern "C" ppd_status ppd_cuda_gather_concat3_backward(float *demb, float *dhA, int dA, float *dhB,
                                                       int dB, const float *g,
                                                       const int64_t *orderA, const int64_t *segA,
                                                       int64_t NA, const int64_t *orderB,
                                                       const int64_t *segB, int64_t NB, int64_t e0,
                                                       int64_t n, int ns, cudaStream_t stream) {
    if (e0 < 0 || n < 0 || ns < 1 || dA < ns || dB < ns || NA < 0 || NB < 0)
        return ppd_fail(PPD_ERR_USAGE, "gather_concat3 backward: bad size e0=%lld n=%lld ns=%d",
                        (long long)e0, (long long)n, ns);
    if (n == 0) return PPD_OK;
    PPD_TRY(ppd_cuda_add_rows(demb + e0 * ns, ns, g, 3 * ns, n, ns, stream));
    // node rows: g's columns ns.. (first end) and 2 ns.. (second end), through the plans
    if (dhA == dhB) { // one pair plan over both ends, the CPU's order within each row
        if (dA != dB)
            return ppd_fail(PPD_ERR_USAGE, "gather_concat3 backward: one array, two widths");
        return ppd_cuda_scatter_parts(dhA, dA, g, 3 * ns, ns, ns, 1, orderA, segA, 2 * e0,
                                      2 * (e0 + n), e0, NA, stream);
    }
    PPD_TRY(ppd_cuda_scatter_parts(dhA, dA, g, 3 * ns, ns, ns, 0, orderA, segA, e0, e0 + n, e0, NA,
                                   stream));
    PPD_TRY(ppd_cuda_scatter_parts(dhB, dB, g, 3 * ns, ns, 2 * ns, 0, orderB, segB, e0, e0 + n, e0,
                                   NB, stream));
    return PPD_OK;
}

// over the n x w block; idx NULL = the rows e0 .. e0 + n - 1
struct gather_rows_op {
    float *dst;
    const float *src;
    const int64_t *idx;
    int64_t e0;
    int ldd, lds;
    __device__ void operator()(int64_t, int64_t r, int j) const {
        int64_t from = idx ? idx[e0 + r] : e0 + r;
        dst[r * ldd + j] = src[from * lds + j];
    }
};

extern "C" ppd_status ppd_cuda_gather_rows(float *dst, int ldd, const float *src, int lds,
                                           const int64_t *idx, int64_t e0, int64_t n, int w,
                                           cudaStream_t stream) {
    if (e0 < 0 || n < 0 || w < 0 || ldd < w || lds < w)
        return ppd_fail(PPD_ERR_USAGE, "gather_rows: bad size e0=%lld n=%lld w=%d ldd=%d lds=%d",
                        (long long)e0, (long long)n, w, ldd, lds);
    return ppd_launch_cols("gather_rows_kernel", gather_rows_op{dst, src, idx, e0, ldd, lds}, n, w,
                           stream);
}

struct add_rows_op {
    float *dst;
    const float *src;
    int ldd, lds;
    __device__ void operator()(int64_t, int64_t r, int j) const {
        dst[r * ldd + j] += src[r * lds + j];
    }
};

extern "C" ppd_status ppd_cuda_add_rows(float *dst, int ldd, const float *src, int lds, int64_t n,
                                        int w, cudaStream_t stream) {
    if (n < 0 || w < 0 || ldd < w || lds < w)
        return ppd_fail(PPD_ERR_USAGE, "add_rows: bad size n=%lld w=%d ldd=%d lds=%d", (long long)n,
                        w, ldd, lds);
    return ppd_launch_cols("add_rows_kernel", add_rows_op{dst, src, ldd, lds}, n, w, stream);
}

struct scatter_mean_op {
    float *acc;
    const float *cnt;
    __device__ void operator()(int64_t i, int64_t r, int) const {
        acc[i] /= cnt[r];
    }
};

extern "C" ppd_status ppd_cuda_scatter_mean_forward(float *acc, const float *cnt, int64_t N, int d,
                                                    cudaStream_t stream) {
    if (N < 0 || d < 0)
        return ppd_fail(PPD_ERR_USAGE, "scatter_mean: bad size N=%lld d=%d", (long long)N, d);
    return ppd_launch_cols("scatter_mean_kernel", scatter_mean_op{acc, cnt}, N, d, stream);
}

// ---- the magnitude heads: one thread per complex (B is the batch size: a few dozen at most)

static __global__ void head_input_kernel(float *vec, float *rho, float *head_in, const float *z,
                                         const float *temb, int B, int w) {
    int g = blockIdx.x * blockDim.x + threadIdx.x;
    if (g < B)
        ppd_head_input_elem(z + 12 * g, temb + 32 * g, w, vec + 3 * g, rho + g, head_in + 33 * g);
}

static __global__ void head_pred_kernel(float *pred, float *scale, const float *vec,
                                        const float *rho, const float *mag, const float *sig,
                                        const float *norm, int B, int by_sigma, int by_norm) {
    int g = blockIdx.x * blockDim.x + threadIdx.x;
    if (g < B)
        ppd_head_pred_elem(vec + 3 * g, rho[g], mag[g], by_sigma ? sig[g] : 1.0f,
                           by_norm ? norm[g] : 1.0f, by_sigma, by_norm, pred + 3 * g, scale + g);
}

static __global__ void head_mag_backward_kernel(float *dmag, const float *dpred, const float *vec,
                                                const float *rho, const float *scale, int B) {
    int g = blockIdx.x * blockDim.x + threadIdx.x;
    if (g < B) dmag[g] = ppd_head_mag_grad_elem(dpred + 3 * g, vec + 3 * g, rho[g], scale[g]);
}

static __global__ void head_input_backward_kernel(float *dz, const float *dpred, const float *vec,
                                                  const float *rho, const float *scale,
                                                  const float *mag, const float *dhead_in, int B,
                                                  int w) {
    int g = blockIdx.x * blockDim.x + threadIdx.x;
    if (g >= B) return;
    float dv[3];
    ppd_head_vec_grad_elem(dpred + 3 * g, vec + 3 * g, rho[g], scale[g], mag[g], dhead_in[33 * g],
                           dv);
    for (int k = 0; k < 3; k++) dz[12 * g + 3 * w + k] = dz[12 * g + 6 + 3 * w + k] = dv[k];
}

static ppd_status head_check(int B, int w, const char *op) {
    if (B < 0 || w < 0 || w > 1)
        return ppd_fail(PPD_ERR_USAGE, "%s: bad size B=%d head=%d", op, B, w);
    return PPD_OK;
}

extern "C" ppd_status ppd_cuda_head_input_forward(float *vec, float *rho, float *head_in,
                                                  const float *z, const float *temb, int B, int w,
                                                  cudaStream_t stream) {
    PPD_TRY(head_check(B, w, "head_input"));
    if (B == 0) return PPD_OK;
    PPD_LAUNCH(head_input_kernel, ppd_elem_blocks(B), PPD_ELEM_THREADS, 0, stream)
    (vec, rho, head_in, z, temb, B, w);
    PPD_CUDA_CHECK_LAUNCH("head_input_kernel");
    return PPD_OK;
}

extern "C" ppd_status ppd_cuda_head_pred_forward(float *pred, float *scale, const float *vec,
                                                 const float *rho, const float *mag,
                                                 const float *sig, const float *norm, int B,
                                                 int by_sigma, int by_norm, cudaStream_t stream) {
    PPD_TRY(head_check(B, 0, "head_pred"));
    if (B == 0) return PPD_OK;
    PPD_LAUNCH(head_pred_kernel, ppd_elem_blocks(B), PPD_ELEM_THREADS, 0, stream)
    (pred, scale, vec, rho, mag, sig, norm, B, by_sigma, by_norm);
    PPD_CUDA_CHECK_LAUNCH("head_pred_kernel");
    return PPD_OK;
}

extern "C" ppd_status ppd_cuda_head_mag_backward(float *dmag, const float *dpred, const float *vec,
                                                 const float *rho, const float *scale, int B,
                                                 cudaStream_t stream) {
    PPD_TRY(head_check(B, 0, "head_mag backward"));
    if (B == 0) return PPD_OK;
    PPD_LAUNCH(head_mag_backward_kernel, ppd_elem_blocks(B), PPD_ELEM_THREADS, 0, stream)
    (dmag, dpred, vec, rho, scale, B);
    PPD_CUDA_CHECK_LAUNCH("head_mag_backward_kernel");
    return PPD_OK;
}

extern "C" ppd_status ppd_cuda_head_input_backward(float *dz, const float *dpred, const float *vec,
                                                   const float *rho, const float *scale,
                                                   const float *mag, const float *dhead_in, int B,
                                                   int w, cudaStream_t stream) {
    PPD_TRY(head_check(B, w, "head_input backward"));
    if (B == 0) return PPD_OK;
    PPD_LAUNCH(head_input_backward_kernel, ppd_elem_blocks(B), PPD_ELEM_THREADS, 0, stream)
    (dz, dpred, vec, rho, scale, mag, dhead_in, B, w);
    PPD_CUDA_CHECK_LAUNCH("head_input_backward_kernel");
    return PPD_OK;
}
