/* Linear layer and ReLU, CPU reference (ppdock/nn.h). */
#include "ppdock/nn.h"

#include <assert.h>
#include <cblas.h>

void ppd_linear_forward(float *out, const float *in, const float *W, const float *b, int64_t N,
                        int K, int M) {
    // out: (N, M)   in: (N, K)   W: (M, K)   b: (M)
    assert(N >= 0 && K >= 0 && M >= 0);
    if (N == 0 || M == 0) return;
    float beta = 0.0f;
    if (b) {
        for (int64_t n = 0; n < N; n++)
            for (int o = 0; o < M; o++) out[n * M + o] = b[o];
        beta = 1.0f;
    }
    if (K == 0) {
        if (!b)
            for (int64_t i = 0; i < N * M; i++) out[i] = 0.0f;
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, M, K, 1.0f, in, K, W, K, beta, out,
                M);
}

void ppd_linear_backward(float *din, float *dW, float *db, const float *dout, const float *in,
                         const float *W, int64_t N, int K, int M) {
    // din: (N, K)   dW: (M, K)   db: (M)   dout: (N, M)
    assert(N >= 0 && K >= 0 && M >= 0);
    if (N == 0) return;
    if (dW && K > 0 && M > 0)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, M, K, (int)N, 1.0f, dout, M, in, K,
                    1.0f, dW, K);
    if (db)
        for (int64_t n = 0; n < N; n++)
            for (int o = 0; o < M; o++) db[o] += dout[n * M + o];
    if (din && K > 0) {
        if (M == 0) {
            for (int64_t i = 0; i < N * K; i++) din[i] = 0.0f;
            return;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, K, M, 1.0f, dout, M, W, K,
                    0.0f, din, K);
    }
}

void ppd_relu_forward(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void ppd_relu_backward(float *d, const float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!(y[i] > 0.0f)) d[i] = 0.0f;
}
