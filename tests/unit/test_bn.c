/* Batch norm (kernels/bn_body.h, e3nn 0.5.1 BatchNorm) in float64 on the model's own source: the
 * backward against central finite differences, in training mode (batch statistics, which couple
 * the nodes) and evaluation mode; the forward against the definition. */
#include "../test.h"

#include "ppdock/rng.h"
#include "ppdock/status.h"
#include "ppdock/tp.h"

#include <stdlib.h>

#define PPD_BN_REAL     double
#define PPD_BN_FN(name) name##_f64
#include "ppdock/kernels/bn_body.h"
#undef PPD_BN_REAL
#undef PPD_BN_FN

enum { N = 7, DMAX = 64, FMAX = 16 };

typedef struct {
    ppd_irreps ir;
    int fields, scalars;
    double x[N * DMAX], w[FMAX], b[FMAX], g[N * DMAX], rm[FMAX], rv[FMAX];
} bn_case;

static double bn_loss(bn_case *c, int training) {
    double y[N * DMAX], rm[FMAX], rv[FMAX], mu[FMAX], sf[FMAX];
    memcpy(rm, c->rm, sizeof rm);
    memcpy(rv, c->rv, sizeof rv);
    bn_forward_f64(&c->ir, c->x, y, N, c->w, c->b, rm, rv, training, mu, sf);
    double s = 0;
    for (int i = 0; i < N * c->ir.dim; i++) s += c->g[i] * y[i];
    return s;
}

static void check_bn(int training) {
    bn_case c;
    REQUIRE(ppd_irreps_parse(&c.ir, "3x0e+2x1o+1x1e+2x0o") == PPD_OK);
    c.fields = 8, c.scalars = 3;
    ppd_rng r;
    ppd_rng_seed(&r, 21);
    for (int i = 0; i < N * c.ir.dim; i++)
        c.x[i] = ppd_rng_normal(&r) + 0.3, c.g[i] = ppd_rng_normal(&r);
    for (int i = 0; i < c.fields; i++)
        c.w[i] = 1 + 0.3 * ppd_rng_normal(&r), c.rv[i] = 0.5 + ppd_rng_uniform(&r);
    for (int i = 0; i < c.scalars; i++)
        c.b[i] = 0.2 * ppd_rng_normal(&r), c.rm[i] = 0.1 * ppd_rng_normal(&r);
    /* analytic gradients */
    double y[N * DMAX], rm[FMAX], rv[FMAX], mu[FMAX], sf[FMAX], dx[N * DMAX], dw[FMAX] = {0},
                                                                              db[FMAX] = {0};
    memcpy(rm, c.rm, sizeof rm);
    memcpy(rv, c.rv, sizeof rv);
    bn_forward_f64(&c.ir, c.x, y, N, c.w, c.b, rm, rv, training, mu, sf);
    bn_backward_f64(&c.ir, c.x, c.g, dx, N, c.w, dw, db, training, mu, sf);
    const double h = 1e-6;
    double worst = 0;
    double *vars[3] = {c.x, c.w, c.b}, *grads[3] = {dx, dw, db};
    int counts[3] = {N * c.ir.dim, c.fields, c.scalars};
    for (int v = 0; v < 3; v++)
        for (int i = 0; i < counts[v]; i++) {
            double keep = vars[v][i];
            vars[v][i] = keep + h;
            double fp = bn_loss(&c, training);
            vars[v][i] = keep - h;
            double fm = bn_loss(&c, training);
            vars[v][i] = keep;
            double fd = (fp - fm) / (2 * h), err = fabs(fd - grads[v][i]) / (fabs(fd) + 1e-6);
            if (err > worst) worst = err;
        }
    if (worst > 1e-6)
        ppt_fail(__FILE__, __LINE__, "training=%d: worst relative error %g", training, worst);
    /* the definition, for one 1o field (block 1, channel 0) in training mode: no centring,
     * y = x w / sqrt(mean over nodes and components of x^2 + eps) */
    if (training) {
        int col = c.ir.off[1];
        double ss = 0;
        for (int n = 0; n < N; n++)
            for (int k = 0; k < 3; k++)
                ss += c.x[n * c.ir.dim + col + k] * c.x[n * c.ir.dim + col + k];
        double scale = c.w[3] / sqrt(ss / (3.0 * N) + (double)1e-5f);
        CHECK_NEAR(y[2 * c.ir.dim + col + 1], c.x[2 * c.ir.dim + col + 1] * scale, 1e-12);
        /* and the running variance moved by momentum 0.1 toward the batch's */
        CHECK_NEAR(rv[3], 0.9 * c.rv[3] + 0.1 * (ss / (3.0 * N)), 1e-7);
    }
}

TEST(bn_backward_matches_finite_differences_f64_training) {
    check_bn(1);
}

TEST(bn_backward_matches_finite_differences_f64_eval) {
    check_bn(0);
}
