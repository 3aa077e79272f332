// The score model's gather/scatter glue on the GPU: the CUDA twins of ppdock/graph_ops.h
// (declared in ppdock/nn_cuda.h). Copies and the bodies of ppdock/kernels/graph_ops.h:
// bit-identical to the CPU.
#include "ppdock/nn_cuda.h"

#include "common.cuh"
#include "ppdock/kernels/gaussian_smearing.h"
#include "ppdock/kernels/graph_ops.h"

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

static __global__ void update_nodes_kernel(float *hn, const float *h, int64_t total, int din,
                                           int dout, const float *yi, const float *yc) {
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        int64_t nrow = i / dout;
        int k = (int)(i % dout);
        float base = k < din ? h[nrow * din + k] : 0.0f;
        hn[i] = ppd_update_node_elem(base, yi[i], yc[i]);
    }
}

extern "C" ppd_status ppd_cuda_update_nodes_forward(float *hn, const float *h, int64_t N, int din,
                                                    int dout, const float *yi, const float *yc,
                                                    cudaStream_t stream) {
    if (N < 0 || din < 0 || dout < 1)
        return ppd_fail(PPD_ERR_USAGE, "update_nodes: bad size N=%lld din=%d dout=%d", (long long)N,
                        din, dout);
    if (N == 0) return PPD_OK;
    int64_t total = N * dout;
    PPD_LAUNCH(update_nodes_kernel, ppd_elem_blocks(total), PPD_ELEM_THREADS, 0, stream)
    (hn, h, total, din, dout, yi, yc);
    PPD_CUDA_CHECK_LAUNCH("update_nodes_kernel");
    return PPD_OK;
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

static __global__ void add_rows_kernel(float *demb, const float *g, int64_t e0, int64_t n, int ns) {
    int64_t stride = (int64_t)gridDim.x * blockDim.x, total = n * ns;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        int64_t r = i / ns;
        int k = (int)(i % ns);
        demb[(e0 + r) * ns + k] += g[r * 3 * ns + k];
    }
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
    PPD_LAUNCH(add_rows_kernel, ppd_elem_blocks(n * ns), PPD_ELEM_THREADS, 0, stream)
    (demb, g, e0, n, ns);
    PPD_CUDA_CHECK_LAUNCH("add_rows_kernel");
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
