/* Tensor product: path lists, weight counts and norms against the spec's tables (diffdock-pp.md
 * §3.4, A.4, A.7); the output against A.4; the backward against central finite differences in
 * float64 on the same kernel source; rotation equivariance. */
#include "../test.h"

#include "ppdock/kernels/tp.h"
#include "ppdock/diffusion.h"
#include "ppdock/rng.h"
#include "ppdock/so3.h"
#include "ppdock/status.h"
#include "ppdock/tp.h"

#include <stdlib.h>

/* The same per-edge bodies, instantiated in double. */
#define PPD_TP_REAL     double
#define PPD_TP_FN(name) name##_f64
#include "ppdock/kernels/tp_body.h"
#undef PPD_TP_REAL
#undef PPD_TP_FN

static ppd_irreps parse(const char *s) {
    ppd_irreps ir;
    if (ppd_irreps_parse(&ir, s) != PPD_OK) ppt_fail(__FILE__, __LINE__, "%s", ppd_errmsg());
    return ir;
}

TEST(tp_irreps_parse_and_score_layout) {
    ppd_irreps a = parse("2x0e + 1x1o+1e");
    CHECK_EQ(a.n, 3);
    CHECK_EQ(a.dim, 8);
    CHECK_EQ(a.off[2], 5);
    char buf[64];
    CHECK_STR(ppd_irreps_str(&a, buf, sizeof buf), "2x0e+1x1o+1x1e");
    ppd_irreps bad;
    CHECK(ppd_irreps_parse(&bad, "2x0q") == PPD_ERR_USAGE);
    CHECK(ppd_irreps_parse(&bad, "2x3e") == PPD_ERR_USAGE);
    CHECK(ppd_irreps_parse(&bad, "0x1o") == PPD_ERR_USAGE);
    CHECK(ppd_irreps_parse(&bad, "1o 1e") == PPD_ERR_USAGE);
    /* spec §3.1 dims: S0..S3 = 32, 50, 68, 100 (32/6) and 16, 28, 40, 56 (16/4) */
    static const int d32[4] = {32, 50, 68, 100}, d16[4] = {16, 28, 40, 56};
    for (int k = 0; k < 4; k++) {
        ppd_irreps s;
        ppd_irreps_score(&s, 32, 6, k);
        CHECK_EQ(s.dim, d32[k]);
        ppd_irreps_score(&s, 16, 4, k);
        CHECK_EQ(s.dim, d16[k]);
    }
    ppd_irreps s3;
    ppd_irreps_score(&s3, 8, 3, 3);
    CHECK_STR(ppd_irreps_str(&s3, buf, sizeof buf), "8x0e+3x1o+3x1e+8x0o");
}

static void layer_tp(ppd_tp *tp, int ns, int nv, int k) {
    ppd_irreps in, out, sh = parse("0e+1o+2e");
    ppd_irreps_score(&in, ns, nv, k < 3 ? k : 3);
    if (k < 4) {
        ppd_irreps_score(&out, ns, nv, k + 1 < 3 ? k + 1 : 3);
    } else { /* final conv: S3 -> 2x1o + 2x1e */
        ppd_irreps_score(&in, ns, nv, 3);
        out = parse("2x1o+2x1e");
    }
    if (ppd_tp_init(tp, &in, &sh, &out) != PPD_OK) ppt_fail(__FILE__, __LINE__, "%s", ppd_errmsg());
}

TEST(tp_layer_weight_counts_and_norms_match_spec) {
    /* §3.4: W = 1216, 1516, 1816, 3032, final 200 (32/6); 320, 432, 544, 864, 112 (16/4) */
    static const int w32[5] = {1216, 1516, 1816, 3032, 200}, w16[5] = {320, 432, 544, 864, 112};
    static const int npaths[5] = {2, 6, 10, 12, 8};
    for (int k = 0; k < 5; k++) {
        ppd_tp tp;
        layer_tp(&tp, 32, 6, k);
        CHECK_EQ(tp.wnum, w32[k]);
        CHECK_EQ(tp.npath, npaths[k]);
        layer_tp(&tp, 16, 4, k);
        CHECK_EQ(tp.wnum, w16[k]);
    }
    /* layer 1 (32/6) path list and norms: (0,0,0),(0,1,1),(1,0,1),(1,1,0),(1,1,2),(1,2,1) */
    ppd_tp tp;
    layer_tp(&tp, 32, 6, 1);
    static const int want1[6][3] = {{0, 0, 0}, {0, 1, 1}, {1, 0, 1},
                                    {1, 1, 0}, {1, 1, 2}, {1, 2, 1}};
    static const double c1[6] = {0.162221, 0.261116, 0.261116, 0.162221, 0.707107, 0.261116};
    for (int q = 0; q < 6; q++) {
        CHECK_EQ(tp.path[q].i1, want1[q][0]);
        CHECK_EQ(tp.path[q].i2, want1[q][1]);
        CHECK_EQ(tp.path[q].io, want1[q][2]);
        CHECK_NEAR(tp.path[q].c, c1[q], 1e-6);
    }
    /* layer 3: out 0e sqrt(1/38), 1o sqrt(3/50), 1e sqrt(3/50), 0o sqrt(1/38) */
    layer_tp(&tp, 32, 6, 3);
    static const double c3[4] = {0.16222142, 0.24494897, 0.24494897, 0.16222142};
    for (int q = 0; q < tp.npath; q++) CHECK_NEAR(tp.path[q].c, c3[tp.path[q].io], 1e-7);
    /* final: every c = sqrt(3/50); A.7: (16/4) layer 1 c = 0.2236068, 0.3535534, 0.8660254 */
    layer_tp(&tp, 32, 6, 4);
    for (int q = 0; q < tp.npath; q++) CHECK_NEAR(tp.path[q].c, 0.24494897, 1e-7);
    layer_tp(&tp, 16, 4, 1);
    static const double a7[3] = {0.2236068, 0.3535534, 0.8660254};
    for (int q = 0; q < tp.npath; q++) CHECK_NEAR(tp.path[q].c, a7[tp.path[q].io], 1e-7);
}

TEST(tp_matches_spec_a4) {
    ppd_irreps in = parse("2x0e+1x1o+1x1e"), sh = parse("0e+1o+2e");
    ppd_irreps out = parse("2x0e+1x1o+1x1e+2x0o");
    ppd_tp tp;
    REQUIRE(ppd_tp_init(&tp, &in, &sh, &out) == PPD_OK);
    REQUIRE_EQ(tp.npath, 10);
    CHECK_EQ(tp.wnum, 16);
    static const int want[10][3] = {{0, 0, 0}, {0, 1, 1}, {1, 0, 1}, {1, 1, 0}, {1, 1, 2},
                                    {1, 2, 1}, {2, 0, 2}, {2, 1, 1}, {2, 1, 3}, {2, 2, 2}};
    static const double c[10] = {0.57735027, 0.77459667, 0.77459667, 0.57735027, 1,
                                 0.77459667, 1,          0.77459667, 1,          1};
    for (int q = 0; q < 10; q++) {
        CHECK_EQ(tp.path[q].i1 * 100 + tp.path[q].i2 * 10 + tp.path[q].io,
                 want[q][0] * 100 + want[q][1] * 10 + want[q][2]);
        CHECK_NEAR(tp.path[q].c, c[q], 1e-7);
    }
    float x1[8] = {0.5f, -1.0f, 0.3f, -0.2f, 0.7f, 0.1f, 0.4f, -0.6f}, v[3] = {1, 2, 3}, Y[9],
          w[16];
    ppd_sh_forward(Y, v, 1);
    for (int p = 0; p < 16; p++) w[p] = 0.01f * (float)(p + 1);
    int64_t send = 0;
    float msg[10];
    ppd_tp_forward(&tp, msg, x1, &send, Y, w, NULL, 1);
    static const double expect[10] = {0.01025478,  0.01045409,  0.05229028,  -0.00110664,
                                      0.01674450,  -0.04999759, -0.02738947, -0.02505094,
                                      -0.03367492, -0.03608026};
    for (int k = 0; k < 10; k++) CHECK_NEAR(msg[k], expect[k], 2e-7);
}

static double rand_sym(ppd_rng *r) {
    return 2.0 * ppd_rng_uniform(r) - 1.0;
}

/* <g, TP(x1, Y, w)> in double, the scalar whose derivatives the backward must give. */
static double probe(const ppd_tp *tp, const double *x1, const double *Y, const double *w,
                    const double *g) {
    double out[128];
    ppd_tp_edge_forward_f64(tp->path, tp->npath, tp->coef, tp->out.dim, out, x1, Y, w, NULL);
    double s = 0;
    for (int k = 0; k < tp->out.dim; k++) s += g[k] * out[k];
    return s;
}

TEST(tp_backward_matches_finite_differences_f64) {
    ppd_rng r;
    ppd_rng_seed(&r, 3);
    for (int k = 0; k < 5; k++) {
        ppd_tp tp;
        layer_tp(&tp, 5, 2, k); /* small multiplicities, every path shape of the model */
        int di = tp.in.dim, dout = tp.out.dim, W = tp.wnum;
        double x1[128], Y[9], w[512], g[128], dx[128], dw[512];
        REQUIRE(di <= 128 && dout <= 128 && W <= 512);
        for (int i = 0; i < di; i++) x1[i] = rand_sym(&r);
        for (int i = 0; i < W; i++) w[i] = rand_sym(&r);
        for (int i = 0; i < dout; i++) g[i] = rand_sym(&r);
        float v[3] = {(float)rand_sym(&r), (float)rand_sym(&r), (float)rand_sym(&r)}, Yf[9];
        ppd_sh_forward(Yf, v, 1);
        for (int j = 0; j < 9; j++) Y[j] = Yf[j];
        ppd_tp_edge_backward_f64(tp.path, tp.npath, tp.coef, di, dx, dw, NULL, g, x1, Y, w, NULL);
        const double h = 1e-6;
        double worst = 0;
        for (int i = 0; i < di; i++) {
            double keep = x1[i];
            x1[i] = keep + h;
            double fp = probe(&tp, x1, Y, w, g);
            x1[i] = keep - h;
            double fm = probe(&tp, x1, Y, w, g);
            x1[i] = keep;
            double fd = (fp - fm) / (2 * h), err = fabs(fd - dx[i]) / (fabs(fd) + 1e-6);
            if (err > worst) worst = err;
        }
        for (int i = 0; i < W; i++) {
            double keep = w[i];
            w[i] = keep + h;
            double fp = probe(&tp, x1, Y, w, g);
            w[i] = keep - h;
            double fm = probe(&tp, x1, Y, w, g);
            w[i] = keep;
            double fd = (fp - fm) / (2 * h), err = fabs(fd - dw[i]) / (fabs(fd) + 1e-6);
            if (err > worst) worst = err;
        }
        if (worst > 1e-6)
            ppt_fail(__FILE__, __LINE__, "layer %d: worst relative error %g", k, worst);
    }
}

TEST(tp_float_ops_match_f64_body) {
    /* The batched float32 ops (gather by send, per-edge loop) against the double body. */
    ppd_tp tp;
    layer_tp(&tp, 8, 3, 3);
    enum { N = 5, E = 7 };
    int di = tp.in.dim, dout = tp.out.dim, W = tp.wnum;
    ppd_rng r;
    ppd_rng_seed(&r, 5);
    float *h = malloc(sizeof(float) * N * di), *w = malloc(sizeof(float) * E * W);
    float *Y = malloc(sizeof(float) * E * 9), *msg = malloc(sizeof(float) * E * dout);
    float *dmsg = malloc(sizeof(float) * E * dout), *dh = malloc(sizeof(float) * E * di);
    float *dw = malloc(sizeof(float) * E * W);
    int64_t send[E];
    for (int i = 0; i < N * di; i++) h[i] = (float)rand_sym(&r);
    for (int i = 0; i < E * W; i++) w[i] = (float)rand_sym(&r);
    for (int i = 0; i < E * dout; i++) dmsg[i] = (float)rand_sym(&r);
    for (int e = 0; e < E; e++) {
        float v[3] = {(float)rand_sym(&r), (float)rand_sym(&r), (float)rand_sym(&r)};
        ppd_sh_forward(Y + 9 * e, v, 1);
        send[e] = (int64_t)ppd_rng_below(&r, N);
    }
    ppd_tp_forward(&tp, msg, h, send, Y, w, NULL, E);
    ppd_tp_backward(&tp, dh, dw, NULL, dmsg, h, send, Y, w, NULL, E);
    double worst = 0;
    for (int e = 0; e < E; e++) {
        double x1[128], Yd[9], wd[1024], g[128], out[128], dxd[128], dwd[1024];
        for (int i = 0; i < di; i++) x1[i] = h[send[e] * di + i];
        for (int j = 0; j < 9; j++) Yd[j] = Y[9 * e + j];
        for (int i = 0; i < W; i++) wd[i] = w[e * W + i];
        for (int i = 0; i < dout; i++) g[i] = dmsg[e * dout + i];
        ppd_tp_edge_forward_f64(tp.path, tp.npath, tp.coef, dout, out, x1, Yd, wd, NULL);
        ppd_tp_edge_backward_f64(tp.path, tp.npath, tp.coef, di, dxd, dwd, NULL, g, x1, Yd, wd,
                                 NULL);
        for (int i = 0; i < dout; i++) worst = ppt_worst(worst, fabs(out[i] - msg[e * dout + i]));
        for (int i = 0; i < di; i++) worst = ppt_worst(worst, fabs(dxd[i] - dh[e * di + i]));
        for (int i = 0; i < W; i++) worst = ppt_worst(worst, fabs(dwd[i] - dw[e * W + i]));
    }
    CHECK(worst < 2e-5);
    free(h), free(w), free(Y), free(msg), free(dmsg), free(dh), free(dw);
}

/* Rotates every l = 1 block of a feature vector in place (l = 0 blocks are invariant; the
 * model's features have no l = 2 blocks). */
static void rotate_features(const ppd_irreps *ir, const double R[3][3], float *x) {
    for (int b = 0; b < ir->n; b++) {
        if (ir->r[b].l != 1) continue;
        for (int u = 0; u < ir->r[b].mul; u++) {
            float *v = x + ir->off[b] + 3 * u;
            double o[3];
            for (int i = 0; i < 3; i++) o[i] = R[i][0] * v[0] + R[i][1] * v[1] + R[i][2] * v[2];
            for (int i = 0; i < 3; i++) v[i] = (float)o[i];
        }
    }
}

TEST(tp_rotation_equivariant) {
    ppd_rng r;
    ppd_rng_seed(&r, 9);
    for (int k = 0; k < 5; k++) {
        ppd_tp tp;
        layer_tp(&tp, 6, 3, k);
        int di = tp.in.dim, dout = tp.out.dim, W = tp.wnum;
        float x[64], xr[64], w[1024], v[3], vr[3], Y[9], Yr[9], out[64], outr[64];
        REQUIRE(di <= 64 && dout <= 64 && W <= 1024);
        for (int i = 0; i < di; i++) x[i] = (float)rand_sym(&r);
        for (int i = 0; i < W; i++) w[i] = (float)rand_sym(&r);
        for (int i = 0; i < 3; i++) v[i] = (float)(3 * rand_sym(&r));
        double a[3] = {rand_sym(&r), rand_sym(&r), rand_sym(&r)}, R[3][3];
        ppd_axis_angle_to_matrix(a, R);
        memcpy(xr, x, sizeof(float) * (size_t)di);
        rotate_features(&tp.in, R, xr);
        for (int i = 0; i < 3; i++)
            vr[i] = (float)(R[i][0] * v[0] + R[i][1] * v[1] + R[i][2] * v[2]);
        ppd_sh_forward(Y, v, 1);
        ppd_sh_forward(Yr, vr, 1);
        int64_t send = 0;
        ppd_tp_forward(&tp, out, x, &send, Y, w, NULL, 1);
        ppd_tp_forward(&tp, outr, xr, &send, Yr, w, NULL, 1);
        rotate_features(&tp.out, R, out); /* rotate(TP(x)) must equal TP(rotate(x)) */
        double worst = 0;
        for (int i = 0; i < dout; i++) worst = ppt_worst(worst, fabs(out[i] - outr[i]));
        if (worst > 1e-5) ppt_fail(__FILE__, __LINE__, "layer %d: equivariance error %g", k, worst);
    }
}

TEST(tp_init_refuses_output_without_path) {
    ppd_irreps in = parse("2x0e"), sh = parse("0e+1o+2e"), out = parse("2x0e+1x1e");
    ppd_tp tp;
    CHECK(ppd_tp_init(&tp, &in, &sh, &out) == PPD_ERR_USAGE);
    CHECK(strstr(ppd_errmsg(), "no path") != NULL);
}
