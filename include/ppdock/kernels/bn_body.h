/* ppdock/kernels/bn_body.h — e3nn 0.5.1 BatchNorm (ppdock/score_model.h) forward and backward on
 * (N, irreps.dim) rows, written once for a scalar type: include it with PPD_BN_REAL and
 * PPD_BN_FN(name) defined. lib/dock/score_pass.c instantiates it for float (the model), the unit
 * tests for double (finite differences in float64 on the same source). CPU only: the loops over
 * nodes are sums over the whole batch. */
#if !defined(PPD_BN_REAL) || !defined(PPD_BN_FN)
#error "define PPD_BN_REAL and PPD_BN_FN before including ppdock/kernels/bn_body.h"
#endif

#include <math.h>
#include <stdint.h>

#include "ppdock/tp.h"

/* Batch norm (e3nn 0.5.1 BatchNorm: component normalisation, reduce mean, affine,
 * eps 1e-5, momentum 0.1; spec §3.8) ---------------------------------------------------------
 * x, y: (N, irreps.dim). Per field (a channel u of a block): 0e fields are centred by their mean
 * over the N nodes; every field is divided by sqrt(mean over nodes and components of its square
 * + eps) and multiplied by its weight; 0e fields get a bias. Training uses the batch's statistics
 * and moves the running ones; otherwise the running ones. mu (0e fields) and sf (1/sqrt(var +
 * eps) per field) are kept for backward. */
static void PPD_BN_FN(bn_forward)(const ppd_irreps *ir, const PPD_BN_REAL *x, PPD_BN_REAL *y,
                                  int64_t N, const PPD_BN_REAL *w, const PPD_BN_REAL *bias,
                                  PPD_BN_REAL *rmean, PPD_BN_REAL *rvar, int training,
                                  PPD_BN_REAL *mu, PPD_BN_REAL *sf) {
    const PPD_BN_REAL eps = (PPD_BN_REAL)1e-5f, mom = (PPD_BN_REAL)0.1f, keep = (PPD_BN_REAL)0.9f;
    int D = ir->dim, iw = 0, ib = 0;
    for (int bl = 0; bl < ir->n; bl++) {
        int d = 2 * ir->r[bl].l + 1, scalar = ir->r[bl].l == 0 && ir->r[bl].p > 0;
        for (int u = 0; u < ir->r[bl].mul; u++, iw++) {
            int col = ir->off[bl] + u * d;
            PPD_BN_REAL m = (PPD_BN_REAL)0;
            if (scalar) {
                if (training) {
                    double acc = 0;
                    for (int64_t n = 0; n < N; n++) acc += x[n * D + col];
                    m = (PPD_BN_REAL)(acc / (double)N);
                    PPD_BN_REAL a = keep * rmean[ib], b = mom * m;
                    rmean[ib] = a + b;
                } else {
                    m = rmean[ib];
                }
                mu[ib] = m;
            }
            PPD_BN_REAL v;
            if (training) {
                double acc = 0;
                for (int64_t n = 0; n < N; n++)
                    for (int c = 0; c < d; c++) {
                        PPD_BN_REAL xc = x[n * D + col + c] - m;
                        acc += (double)xc * xc;
                    }
                v = (PPD_BN_REAL)(acc / ((double)N * d));
                PPD_BN_REAL a = keep * rvar[iw], b = mom * v;
                rvar[iw] = a + b;
            } else {
                v = rvar[iw];
            }
            PPD_BN_REAL f = (PPD_BN_REAL)1 / (PPD_BN_REAL)sqrt((double)(v + eps));
            sf[iw] = f;
            PPD_BN_REAL scale = f * w[iw];
            for (int64_t n = 0; n < N; n++)
                for (int c = 0; c < d; c++) {
                    PPD_BN_REAL xc = x[n * D + col + c] - m;
                    PPD_BN_REAL out = xc * scale;
                    y[n * D + col + c] = scalar ? out + bias[ib] : out;
                }
            if (scalar) ib++;
        }
    }
}

/* dx from dy (both (N, dim)); accumulates dw and db. */
static void PPD_BN_FN(bn_backward)(const ppd_irreps *ir, const PPD_BN_REAL *x,
                                   const PPD_BN_REAL *dy, PPD_BN_REAL *dx, int64_t N,
                                   const PPD_BN_REAL *w, PPD_BN_REAL *dw, PPD_BN_REAL *db,
                                   int training, const PPD_BN_REAL *mu, const PPD_BN_REAL *sf) {
    int D = ir->dim, iw = 0, ib = 0;
    for (int bl = 0; bl < ir->n; bl++) {
        int d = 2 * ir->r[bl].l + 1, scalar = ir->r[bl].l == 0 && ir->r[bl].p > 0;
        for (int u = 0; u < ir->r[bl].mul; u++, iw++) {
            int col = ir->off[bl] + u * d;
            PPD_BN_REAL m = scalar ? mu[ib] : (PPD_BN_REAL)0, f = sf[iw];
            double gx = 0, gs = 0; /* Σ dy (x - m), Σ dy */
            for (int64_t n = 0; n < N; n++)
                for (int c = 0; c < d; c++) {
                    PPD_BN_REAL g = dy[n * D + col + c];
                    gx += (double)g * (x[n * D + col + c] - m);
                    gs += g;
                }
            dw[iw] += (PPD_BN_REAL)(gx * f);
            if (scalar) db[ib] += (PPD_BN_REAL)gs;
            /* through the statistics (training): dxc = w f dy - w f^3 (x - m) Σ dy (x - m) / (N d),
             * and for 0e fields the centring subtracts the mean of dxc */
            double k3 = training ? (double)w[iw] * f * f * f * gx / ((double)N * d) : 0.0;
            double mean_dxc = 0;
            for (int64_t n = 0; n < N; n++)
                for (int c = 0; c < d; c++) {
                    double xc = x[n * D + col + c] - m;
                    double v = (double)w[iw] * f * dy[n * D + col + c] - xc * k3;
                    dx[n * D + col + c] = (PPD_BN_REAL)v;
                    mean_dxc += v;
                }
            if (scalar && training) {
                PPD_BN_REAL sub = (PPD_BN_REAL)(mean_dxc / (double)N);
                for (int64_t n = 0; n < N; n++) dx[n * D + col] -= sub;
            }
            if (scalar) ib++;
        }
    }
}
