// e3nn 0.5.1 BatchNorm on the GPU: the CUDA twin of kernels/bn_body.h's bn_forward and
// bn_backward (ppdock/nn_cuda.h). One block per field (a channel of an irreps block): the sums
// over the field's N x d values are double, reduced in a fixed tree order (no atomics; the CPU
// sums in row order, so a statistic can differ from the CPU's in its last bit after rounding to
// float); the element arithmetic is the body's, with the float products kept as products
// (PPD_MUL) so nvcc does not fuse them.
#include "ppdock/nn_cuda.h"

#include "common.cuh"
#include "ppdock/kernels/hd.h"

#define BN_THREADS 256

// A thread's walk over a field's N x d values i = n d + j (i = tid, tid + BN_THREADS, ...),
// stepping n and j instead of dividing: a 64-bit i / d and i % d per value are integer
// divisions done in software on the GPU. The same values in the same order.
struct field_walk {
    int64_t n;
    int j, d, dn, dj;
    __device__ field_walk(int d_, int i0)
        : n(i0 / d_), j(i0 % d_), d(d_), dn(BN_THREADS / d_), dj(BN_THREADS % d_) {}
    __device__ void next() {
        n += dn, j += dj;
        if (j >= d) j -= d, n++;
    }
};

static __global__ void bn_forward_kernel(const ppd_bn_field *fields, int D, const float *x,
                                         float *y, int64_t N, const float *w, const float *bias,
                                         float *rmean, float *rvar, int training, float *mu,
                                         float *sf) {
    __shared__ double part[BN_THREADS];
    const float eps = 1e-5f, mom = 0.1f, keep = 0.9f;
    ppd_bn_field fd = fields[blockIdx.x];
    int iw = blockIdx.x, d = fd.d, ib = fd.ib, col = fd.col;
    int64_t nv = N * d;
    float m = 0.0f;
    if (ib >= 0) {
        if (training) {
            double acc = 0;
            for (int64_t n = threadIdx.x; n < N; n += BN_THREADS) acc += x[n * D + col];
            m = (float)(ppd_block_sum_double(acc, part) / (double)N);
            if (threadIdx.x == 0) {
                float a = PPD_MUL(keep, rmean[ib]), b = PPD_MUL(mom, m);
                rmean[ib] = a + b;
            }
        } else {
            m = rmean[ib];
        }
        if (threadIdx.x == 0) mu[ib] = m;
    }
    float v;
    if (training) {
        double acc = 0;
        field_walk at_i(d, (int)threadIdx.x);
        for (int64_t i = threadIdx.x; i < nv; i += BN_THREADS, at_i.next()) {
            float xc = x[at_i.n * D + col + at_i.j] - m;
            acc += (double)xc * xc;
        }
        v = (float)(ppd_block_sum_double(acc, part) / ((double)N * d));
        if (threadIdx.x == 0) {
            float a = PPD_MUL(keep, rvar[iw]), b = PPD_MUL(mom, v);
            rvar[iw] = a + b;
        }
    } else {
        v = rvar[iw];
    }
    float f = 1.0f / (float)sqrt((double)(v + eps));
    if (threadIdx.x == 0) sf[iw] = f;
    float scale = PPD_MUL(f, w[iw]);
    field_walk at_i(d, (int)threadIdx.x);
    for (int64_t i = threadIdx.x; i < nv; i += BN_THREADS, at_i.next()) {
        int64_t at = at_i.n * D + col + at_i.j;
        float xc = x[at] - m;
        float out = PPD_MUL(xc, scale);
        y[at] = ib >= 0 ? out + bias[ib] : out;
    }
}

static __global__ void bn_backward_kernel(const ppd_bn_field *fields, int D, const float *x,
                                          const float *dy, float *dx, int64_t N, const float *w,
                                          float *dw, float *db, int training, const float *mu,
                                          const float *sf) {
    __shared__ double part[BN_THREADS];
    ppd_bn_field fd = fields[blockIdx.x];
    int iw = blockIdx.x, d = fd.d, ib = fd.ib, col = fd.col;
    int64_t nv = N * d;
    float m = ib >= 0 ? mu[ib] : 0.0f, f = sf[iw];
    double gx = 0, gs = 0; // Σ dy (x - m), Σ dy
    field_walk at_i(d, (int)threadIdx.x);
    for (int64_t i = threadIdx.x; i < nv; i += BN_THREADS, at_i.next()) {
        int64_t at = at_i.n * D + col + at_i.j;
        float g = dy[at];
        gx += (double)g * (x[at] - m);
        gs += g;
    }
    gx = ppd_block_sum_double(gx, part);
    gs = ppd_block_sum_double(gs, part);
    if (threadIdx.x == 0) {
        dw[iw] += (float)(gx * f);
        if (ib >= 0) db[ib] += (float)gs;
    }
    double k3 = training ? (double)w[iw] * f * f * f * gx / ((double)N * d) : 0.0;
    double mean_dxc = 0;
    field_walk at_i2(d, (int)threadIdx.x);
    for (int64_t i = threadIdx.x; i < nv; i += BN_THREADS, at_i2.next()) {
        int64_t at = at_i2.n * D + col + at_i2.j;
        double xc = x[at] - m;
        double v = (double)w[iw] * f * dy[at] - xc * k3;
        dx[at] = (float)v;
        mean_dxc += v;
    }
    if (ib >= 0 && training) { // the centring: subtract the mean of dxc (d = 1 for 0e)
        float sub = (float)(ppd_block_sum_double(mean_dxc, part) / (double)N);
        for (int64_t n = threadIdx.x; n < N; n += BN_THREADS) dx[n * D + col] -= sub;
    }
}

extern "C" ppd_status ppd_cuda_bn_forward(const ppd_bn_field *fields, int nfields, int D,
                                          const float *x, float *y, int64_t N, const float *w,
                                          const float *bias, float *rmean, float *rvar,
                                          int training, float *mu, float *sf, cudaStream_t stream) {
    if (nfields < 1 || D < 1 || N < 1)
        return ppd_fail(PPD_ERR_USAGE, "batch norm: bad size fields=%d D=%d N=%lld", nfields, D,
                        (long long)N);
    PPD_LAUNCH(bn_forward_kernel, (unsigned)nfields, BN_THREADS, 0, stream)
    (fields, D, x, y, N, w, bias, rmean, rvar, training, mu, sf);
    PPD_CUDA_CHECK_LAUNCH("bn_forward_kernel");
    return PPD_OK;
}

extern "C" ppd_status ppd_cuda_bn_backward(const ppd_bn_field *fields, int nfields, int D,
                                           const float *x, const float *dy, float *dx, int64_t N,
                                           const float *w, float *dw, float *db, int training,
                                           const float *mu, const float *sf, cudaStream_t stream) {
    if (nfields < 1 || D < 1 || N < 1)
        return ppd_fail(PPD_ERR_USAGE, "batch norm backward: bad size fields=%d D=%d N=%lld",
                        nfields, D, (long long)N);
    PPD_LAUNCH(bn_backward_kernel, (unsigned)nfields, BN_THREADS, 0, stream)
    (fields, D, x, dy, dx, N, w, dw, db, training, mu, sf);
    PPD_CUDA_CHECK_LAUNCH("bn_backward_kernel");
    return PPD_OK;
}

extern "C" int ppd_bn_fields(const ppd_irreps *ir, ppd_bn_field *out) {
    int iw = 0, ib = 0;
    for (int bl = 0; bl < ir->n; bl++) {
        int d = 2 * ir->r[bl].l + 1, scalar = ir->r[bl].l == 0 && ir->r[bl].p > 0;
        for (int u = 0; u < ir->r[bl].mul; u++, iw++) {
            if (out) {
                out[iw].col = ir->off[bl] + u * d;
                out[iw].d = d;
                out[iw].ib = scalar ? ib : -1;
            }
            if (scalar) ib++;
        }
    }
    return iw;
}
