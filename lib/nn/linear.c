/* Linear layer and ReLU, CPU reference (ppdock/nn.h). */
#include "ppdock/nn.h"

#include "ppdock/kernels/linear_ops.h"

#include <assert.h>
#include <cblas.h>
#include <string.h>

/* The GEMMs are split into row blocks, one single-threaded sgemm per block, over the OpenMP
 * threads: one thread pool for the whole model (the tensor products use the same threads), so
 * OpenBLAS's own threads never spin against OpenMP's. Callers run OpenBLAS single-threaded
 * (openblas_set_num_threads(1)). Each output element is still one K-long dot product in
 * OpenBLAS's order, so the result does not depend on the number of threads. */
enum { ROWS_PER_BLOCK = 256 };

static int64_t blocks_of(int64_t n) {
    return (n + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK;
}

void ppd_linear_forward(float *out, const float *in, const float *W, const float *b, int64_t N,
                        int K, int M) {
    // out: (N, M)   in: (N, K)   W: (M, K)   b: (M)
    assert(N >= 0 && K >= 0 && M >= 0);
    if (N == 0 || M == 0) return;
    int64_t nb = blocks_of(N);
#pragma omp parallel for schedule(static) if (nb > 1)
    for (int64_t blk = 0; blk < nb; blk++) {
        int64_t r0 = blk * ROWS_PER_BLOCK, r1 = r0 + ROWS_PER_BLOCK < N ? r0 + ROWS_PER_BLOCK : N;
        float beta = 0.0f;
        if (b) { /* rows start as the bias; the GEMM adds in[n] W^T (beta = 1) */
            for (int64_t n = r0; n < r1; n++) memcpy(out + n * M, b, sizeof(float) * (size_t)M);
            beta = 1.0f;
        }
        if (K == 0) {
            if (!b) memset(out + r0 * M, 0, sizeof(float) * (size_t)((r1 - r0) * M));
            continue;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(r1 - r0), M, K, 1.0f,
                    in + r0 * K, K, W, K, beta, out + r0 * M, M);
    }
}

void ppd_linear_backward(float *din, float *dW, float *db, const float *dout, const float *in,
                         const float *W, int64_t N, int K, int M) {
    // din: (N, K)   dW: (M, K)   db: (M)   dout: (N, M)
    assert(N >= 0 && K >= 0 && M >= 0);
    if (N == 0) return;
    /* dW[o] += Σ_n dout[n][o] in[n] and db: blocks of output rows o, each summing over all n */
    int64_t mb = blocks_of(M);
#pragma omp parallel for schedule(static) if (mb > 1)
    for (int64_t blk = 0; blk < mb; blk++) {
        int o0 = (int)(blk * ROWS_PER_BLOCK),
            o1 = o0 + ROWS_PER_BLOCK < M ? o0 + ROWS_PER_BLOCK : M;
        if (dW && K > 0)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, o1 - o0, K, (int)N, 1.0f,
                        dout + o0, M, in, K, 1.0f, dW + (int64_t)o0 * K, K);
        if (db)
            for (int64_t n = 0; n < N; n++) {
                const float *g = dout + n * M;
                for (int o = o0; o < o1; o++) db[o] += g[o];
            }
    }
    if (din && K > 0) {
        int64_t nb = blocks_of(N);
#pragma omp parallel for schedule(static) if (nb > 1)
        for (int64_t blk = 0; blk < nb; blk++) {
            int64_t r0 = blk * ROWS_PER_BLOCK,
                    r1 = r0 + ROWS_PER_BLOCK < N ? r0 + ROWS_PER_BLOCK : N;
            if (M == 0) {
                memset(din + r0 * K, 0, sizeof(float) * (size_t)((r1 - r0) * K));
                continue;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(r1 - r0), K, M, 1.0f,
                        dout + r0 * M, M, W, K, 0.0f, din + r0 * K, K);
        }
    }
}

void ppd_relu_forward(float *x, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) x[i] = ppd_relu_elem(x[i]);
}

void ppd_bias_relu_forward(float *x, const float *b, int64_t N, int M) {
    for (int64_t r = 0; r < N; r++) {
        float *row = x + r * M;
#pragma omp simd
        for (int m = 0; m < M; m++) row[m] = ppd_bias_relu_elem(row[m], b[m]);
    }
}

void ppd_relu_backward(float *d, const float *y, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) d[i] = ppd_relu_backward_elem(d[i], y[i]);
}

void ppd_dropout_forward(float *y, int64_t rows, int cols, int64_t row0, uint64_t seed,
                         uint32_t site, float p) {
    if (!(p > 0.0f)) return;
    uint64_t threshold = ppd_dropout_threshold(p), base = ppd_dropout_base(seed, site);
    float scale = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static) if (rows * cols >= 65536)
    for (int64_t r = 0; r < rows; r++) {
        uint64_t rk = ppd_dropout_row_key(base, row0 + r);
        float *yr = y + r * cols;
        for (int c = 0; c < cols; c++) yr[c] = ppd_dropout_elem(yr[c], rk, c, threshold, scale);
    }
}

void ppd_dropout_relu_backward(float *dy, const float *y, int64_t n, float p) {
    float scale = 1.0f / (1.0f - p);
#pragma omp simd
    for (int64_t i = 0; i < n; i++) dy[i] = ppd_dropout_relu_backward_elem(dy[i], y[i], scale);
}
