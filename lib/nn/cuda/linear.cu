// Linear layers, ReLU and dropout on the GPU: the CUDA twins of lib/nn/linear.c
// (ppdock/nn_cuda.h). GEMMs through cuBLAS; element bodies from ppdock/kernels/linear_ops.h.
#include "ppdock/nn_cuda.h"

#include "common.cuh"
#include "ppdock/kernels/linear_ops.h"

// out: (N, M); every row = b (or 0 when b is NULL)
struct fill_rows_op {
    float *out;
    const float *b;
    __device__ void operator()(int64_t i, int64_t, int c) const {
        out[i] = b ? b[c] : 0.0f;
    }
};

static ppd_status fill_rows(float *out, const float *b, int64_t N, int M, cudaStream_t s) {
    return ppd_launch_cols("fill_rows_kernel", fill_rows_op{out, b}, N, M, s);
}

extern "C" ppd_status ppd_cuda_linear_forward(float *out, const float *in, const float *W,
                                              const float *b, int64_t N, int K, int M,
                                              ppd_cuda_blas *blas) {
    // out: (N, M)   in: (N, K)   W: (M, K)   b: (M)
    if (N < 0 || K < 0 || M < 0 || N > 2147483647)
        return ppd_fail(PPD_ERR_USAGE, "linear forward: bad size N=%lld K=%d M=%d", (long long)N, K,
                        M);
    if (N == 0 || M == 0) return PPD_OK;
    cudaStream_t s = ppd_cuda_blas_stream(blas);
    // rows start as the bias; the GEMM adds in W^T (beta = 1), as the CPU
    if (b || K == 0) PPD_TRY(fill_rows(out, b, N, M, s));
    if (K == 0) return PPD_OK;
    // row-major out (N, M) = column-major out^T (M, N) = W (M, K) [W^T col-major] x in^T
    return ppd_cuda_sgemm(blas, 1, 0, M, (int)N, K, W, K, in, K, b ? 1.0f : 0.0f, out, M);
}

// db[c] += Σ_n dout[n][c]: one block (32, 32) per 32 columns (common.cuh).
static __global__ void column_sum_kernel(float *db, const float *dout, int64_t N, int M) {
    __shared__ float part[32][33];
    ppd_column_sum_block(db, dout, N, M, (int)blockIdx.x * 32, part);
}

// Long columns (the edge MLPs' bias gradients: 32 columns over up to millions of edges) would
// give one block all the rows; they are cut into slices of rows, a block (32, 32) per 32
// columns of a slice summing into partials[slice] (zeroed), then one thread per column adds the
// slices in order. The slices are a function of N alone, so the sums' order and bits repeat on
// every GPU. No atomics.
static constexpr int64_t COLSUM_SLICE_ROWS = 4096, COLSUM_MAX_SLICES = 256;

static __global__ void column_slices_kernel(float *partials, const float *dout, int64_t N, int M,
                                            int64_t rows) {
    __shared__ float part[32][33];
    int64_t r0 = (int64_t)blockIdx.y * rows, n = N - r0 < rows ? N - r0 : rows;
    ppd_column_sum_block(partials + (size_t)blockIdx.y * (size_t)M, dout + r0 * M, n, M,
                         (int)blockIdx.x * 32, part);
}

static __global__ void column_slices_total_kernel(float *db, const float *partials, int slices,
                                                  int M) {
    int c = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    if (c >= M) return;
    float t = 0.0f;
    for (int k = 0; k < slices; k++) t += partials[(size_t)k * (size_t)M + (size_t)c];
    db[c] += t;
}

// db (M) += the column sums of dout (N, M), on the handle's stream; the slices' partials live in
// its workspace (unused between its GEMMs), else one pass.
static ppd_status column_sum(float *db, const float *dout, int64_t N, int M, ppd_cuda_blas *blas) {
    cudaStream_t s = ppd_cuda_blas_stream(blas);
    size_t ws_bytes = 0;
    float *ws = (float *)ppd_cuda_blas_workspace(blas, &ws_bytes);
    int64_t slices = (N + COLSUM_SLICE_ROWS - 1) / COLSUM_SLICE_ROWS;
    slices = slices < COLSUM_MAX_SLICES ? slices : COLSUM_MAX_SLICES;
    if (slices < 2 || !ws || (size_t)slices * (size_t)M * sizeof(float) > ws_bytes) {
        PPD_LAUNCH(column_sum_kernel, (unsigned)((M + 31) / 32), dim3(32, 32), 0, s)
        (db, dout, N, M);
        PPD_CUDA_CHECK_LAUNCH("column_sum_kernel");
        return PPD_OK;
    }
    int64_t rows = (N + slices - 1) / slices;
    slices = (N + rows - 1) / rows; // every slice non-empty
    PPD_CUDA_CHECK(cudaMemsetAsync(ws, 0, (size_t)slices * (size_t)M * sizeof(float), s));
    PPD_LAUNCH(column_slices_kernel, dim3((unsigned)((M + 31) / 32), (unsigned)slices),
               dim3(32, 32), 0, s)
    (ws, dout, N, M, rows);
    PPD_CUDA_CHECK_LAUNCH("column_slices_kernel");
    PPD_LAUNCH(column_slices_total_kernel, (unsigned)((M + 127) / 128), 128, 0, s)
    (db, ws, (int)slices, M);
    PPD_CUDA_CHECK_LAUNCH("column_slices_total_kernel");
    return PPD_OK;
}

extern "C" ppd_status ppd_cuda_linear_backward(float *din, float *dW, float *db, const float *dout,
                                               const float *in, const float *W, int64_t N, int K,
                                               int M, ppd_cuda_blas *blas) {
    // din: (N, K)   dW: (M, K)   db: (M)   dout: (N, M)
    if (N < 0 || K < 0 || M < 0 || N > 2147483647)
        return ppd_fail(PPD_ERR_USAGE, "linear backward: bad size N=%lld K=%d M=%d", (long long)N,
                        K, M);
    if (N == 0) return PPD_OK;
    cudaStream_t s = ppd_cuda_blas_stream(blas);
    // dW (M, K) row-major = dW^T (K, M) column-major += in^T (K, N) x dout (N, M)
    if (dW && K > 0 && M > 0)
        PPD_TRY(ppd_cuda_sgemm(blas, 0, 1, K, M, (int)N, in, K, dout, M, 1.0f, dW, K));
    if (db && M > 0) PPD_TRY(column_sum(db, dout, N, M, blas));
    if (din && K > 0) {
        if (M == 0) return fill_rows(din, NULL, N, K, s);
        // din (N, K) row-major = din^T (K, N) column-major = W^T (K, M) x dout^T (M, N)
        PPD_TRY(ppd_cuda_sgemm(blas, 0, 0, K, (int)N, M, W, K, dout, M, 0.0f, din, K));
    }
    return PPD_OK;
}

static __global__ void relu_kernel(float *x, int64_t n) {
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        x[i] = ppd_relu_elem(x[i]);
}

struct bias_relu_op {
    float *x;
    const float *b;
    __device__ void operator()(int64_t i, int64_t, int c) const {
        x[i] = ppd_bias_relu_elem(x[i], b[c]);
    }
};

static __global__ void relu_backward_kernel(float *d, const float *y, int64_t n) {
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        d[i] = ppd_relu_backward_elem(d[i], y[i]);
}

// one warp per row: the row key once, lanes over the columns
static __global__ void dropout_kernel(float *y, int64_t rows, int cols, int64_t row0, uint64_t base,
                                      uint64_t threshold, float scale) {
    int64_t stride = (int64_t)gridDim.x * blockDim.y;
    for (int64_t r = (int64_t)blockIdx.x * blockDim.y + threadIdx.y; r < rows; r += stride) {
        uint64_t rk = ppd_dropout_row_key(base, row0 + r);
        float *yr = y + r * cols;
        for (int c = threadIdx.x; c < cols; c += PPD_WARP)
            yr[c] = ppd_dropout_elem(yr[c], rk, c, threshold, scale);
    }
}

static __global__ void dropout_relu_backward_kernel(float *dy, const float *y, int64_t n,
                                                    float scale) {
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        dy[i] = ppd_dropout_relu_backward_elem(dy[i], y[i], scale);
}

#define CHECK_N(op, n)                                                                             \
    do {                                                                                           \
        if ((n) < 0) return ppd_fail(PPD_ERR_USAGE, op ": negative size %lld", (long long)(n));    \
        if ((n) == 0) return PPD_OK;                                                               \
    } while (0)

extern "C" ppd_status ppd_cuda_relu_forward(float *x, int64_t n, cudaStream_t stream) {
    CHECK_N("relu", n);
    PPD_LAUNCH(relu_kernel, ppd_elem_blocks(n), PPD_ELEM_THREADS, 0, stream)(x, n);
    PPD_CUDA_CHECK_LAUNCH("relu_kernel");
    return PPD_OK;
}

extern "C" ppd_status ppd_cuda_bias_relu_forward(float *x, const float *b, int64_t N, int M,
                                                 cudaStream_t stream) {
    if (M < 1) return ppd_fail(PPD_ERR_USAGE, "bias_relu: M=%d", M);
    CHECK_N("bias_relu", N);
    return ppd_launch_cols("bias_relu_kernel", bias_relu_op{x, b}, N, M, stream);
}

extern "C" ppd_status ppd_cuda_relu_backward(float *d, const float *y, int64_t n,
                                             cudaStream_t stream) {
    CHECK_N("relu_backward", n);
    PPD_LAUNCH(relu_backward_kernel, ppd_elem_blocks(n), PPD_ELEM_THREADS, 0, stream)(d, y, n);
    PPD_CUDA_CHECK_LAUNCH("relu_backward_kernel");
    return PPD_OK;
}

extern "C" ppd_status ppd_cuda_dropout_forward(float *y, int64_t rows, int cols, int64_t row0,
                                               uint64_t seed, uint32_t site, float p,
                                               cudaStream_t stream) {
    if (cols < 0) return ppd_fail(PPD_ERR_USAGE, "dropout: cols=%d", cols);
    CHECK_N("dropout", rows);
    if (!(p > 0.0f) || cols == 0) return PPD_OK;
    PPD_LAUNCH(dropout_kernel, ppd_row_blocks(rows), dim3(PPD_WARP, PPD_ROWS_PER_BLOCK), 0, stream)
    (y, rows, cols, row0, ppd_dropout_base(seed, site), ppd_dropout_threshold(p),
     1.0f / (1.0f - p));
    PPD_CUDA_CHECK_LAUNCH("dropout_kernel");
    return PPD_OK;
}

extern "C" ppd_status ppd_cuda_dropout_relu_backward(float *dy, const float *y, int64_t n, float p,
                                                     cudaStream_t stream) {
    CHECK_N("dropout_relu_backward", n);
    PPD_LAUNCH(dropout_relu_backward_kernel, ppd_elem_blocks(n), PPD_ELEM_THREADS, 0, stream)
    (dy, y, n, 1.0f / (1.0f - p));
    PPD_CUDA_CHECK_LAUNCH("dropout_relu_backward_kernel");
    return PPD_OK;
}
