/* Diffusion pieces (ppdock/diffusion.h): schedule, axis-angle rotation (spec Appendix A.5 and an
 * independent Rodrigues formula), noising of one complex and its targets, the loss and its
 * gradient (docs/spec/diffdock-pp.md §2.1, §5.1, §5.3, §7). */
#include "../test.h"

#include "ppdock/diffusion.h"
#include "ppdock/igso3.h"
#include "ppdock/rng.h"

#include <stdint.h>
#include <stdlib.h>

static ppd_igso3 tables_;
static int tables_state_;

static const ppd_igso3 *tables(void) {
    if (tables_state_ == 0) tables_state_ = ppd_igso3_build(&tables_, 2) == PPD_OK ? 1 : -1;
    return tables_state_ == 1 ? &tables_ : NULL;
}

/* Rodrigues: R = I + sin θ K + (1 − cos θ) K², K the cross-product matrix of the unit axis. */
static void rodrigues(const double v[3], double R[3][3]) {
    const double th = sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) R[a][b] = a == b;
    if (th == 0.0) return;
    const double n[3] = {v[0] / th, v[1] / th, v[2] / th};
    const double K[3][3] = {{0, -n[2], n[1]}, {n[2], 0, -n[0]}, {-n[1], n[0], 0}};
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) {
            double k2 = 0.0;
            for (int c = 0; c < 3; c++) k2 += K[a][c] * K[c][b];
            R[a][b] += sin(th) * K[a][b] + (1.0 - cos(th)) * k2;
        }
}

/* ---- rotation ------------------------------------------------------------------------------- */

TEST(diffusion_axis_angle_matches_spec_a5) {
    const double v[3] = {0.3, -0.2, 0.5};
    static const double want[3][3] = {{0.85953391, -0.49799153, -0.11491695},
                                      {0.43986765, 0.83531559, -0.32979435},
                                      {0.26022673, 0.23292118, 0.93703246}};
    double R[3][3];
    ppd_axis_angle_to_matrix(v, R);
    /* A.5 is PyTorch float32 printed to 8 decimals: 1e-7 covers both. */
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) CHECK_NEAR(R[a][b], want[a][b], 1e-7);
}

TEST(diffusion_axis_angle_is_rodrigues_rotation) {
    ppd_rng r;
    ppd_rng_seed(&r, 3);
    int bad = 0;
    for (int k = 0; k < 300; k++) {
        /* Angles from 0 through 1e-9 (the small-angle branch) to just under π. */
        const double scale = k == 0 ? 0.0 : k < 20 ? pow(10.0, -12 + 0.5 * k) : 3.14;
        double v[3] = {ppd_rng_normal(&r), ppd_rng_normal(&r), ppd_rng_normal(&r)};
        const double nv = sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
        const double th = k < 20 ? scale : scale * ppd_rng_uniform(&r);
        for (int c = 0; c < 3; c++) v[c] *= th / nv;
        double R[3][3], W[3][3];
        ppd_axis_angle_to_matrix(v, R);
        rodrigues(v, W);
        for (int a = 0; a < 3; a++)
            for (int b = 0; b < 3; b++) {
                bad += fabs(R[a][b] - W[a][b]) > 1e-14;
                double rtr = 0.0; /* (Rᵀ R)[a][b] */
                for (int c = 0; c < 3; c++) rtr += R[c][a] * R[c][b];
                bad += fabs(rtr - (a == b)) > 1e-14;
            }
        const double det = R[0][0] * (R[1][1] * R[2][2] - R[1][2] * R[2][1]) -
                           R[0][1] * (R[1][0] * R[2][2] - R[1][2] * R[2][0]) +
                           R[0][2] * (R[1][0] * R[2][1] - R[1][1] * R[2][0]);
        bad += fabs(det - 1.0) > 1e-14;
        for (int a = 0; a < 3; a++) /* the axis is fixed */
            bad += fabs(R[a][0] * v[0] + R[a][1] * v[1] + R[a][2] * v[2] - v[a]) > 1e-14;
    }
    CHECK_EQ(bad, 0);
    /* Right-handed: a quarter turn about z takes x to y. */
    const double vz[3] = {0.0, 0.0, M_PI / 2};
    double R[3][3];
    ppd_axis_angle_to_matrix(vz, R);
    CHECK_NEAR(R[1][0], 1.0, 1e-15);
    CHECK_NEAR(R[0][1], -1.0, 1e-15);
}

/* ---- schedule ------------------------------------------------------------------------------- */

TEST(diffusion_schedule) {
    const ppd_diffusion_cfg c = ppd_diffusion_cfg_default();
    CHECK(ppd_sigma_tr(0.0, &c) == 0.01);
    CHECK(ppd_sigma_tr(1.0, &c) == 30.0);
    CHECK(ppd_sigma_rot(0.0, &c) == 0.01);
    CHECK(ppd_sigma_rot(1.0, &c) == 1.65);
    CHECK_NEAR(ppd_sigma_tr(0.5, &c), sqrt(0.01 * 30.0), 1e-15);
    CHECK_NEAR(ppd_sigma_rot(0.5, &c), sqrt(0.01 * 1.65), 1e-15);
    CHECK_NEAR(ppd_sigma_tr(0.25, &c), pow(0.01, 0.75) * pow(30.0, 0.25), 1e-15);
    /* float32: σ_min, σ_max rounded to float32 at the ends, the geometric mean in between to a
     * few float32 ulps (two powf and a product). */
    CHECK(ppd_sigma_tr_f32(0.0f, &c) == 0.01f);
    CHECK(ppd_sigma_tr_f32(1.0f, &c) == 30.0f);
    CHECK(ppd_sigma_rot_f32(0.0f, &c) == 0.01f);
    CHECK(ppd_sigma_rot_f32(1.0f, &c) == 1.65f);
    CHECK_NEAR(ppd_sigma_tr_f32(0.5f, &c), sqrt(0.01 * 30.0), 3e-7 * sqrt(0.01 * 30.0));
    CHECK_NEAR(ppd_sigma_rot_f32(0.5f, &c), sqrt(0.01 * 1.65), 3e-7 * sqrt(0.01 * 1.65));
    /* Monotone increasing in t in both precisions. */
    int bad = 0;
    for (int k = 1; k <= 100; k++) {
        const double t0 = (k - 1) / 100.0, t1 = k / 100.0;
        bad += !(ppd_sigma_tr(t1, &c) > ppd_sigma_tr(t0, &c));
        bad += !(ppd_sigma_rot_f32((float)t1, &c) > ppd_sigma_rot_f32((float)t0, &c));
    }
    CHECK_EQ(bad, 0);
    /* Sampler coefficients (§7): g_tr = σ sqrt(2 ln 3000), g_rot = 2 σ sqrt(ln 165). */
    CHECK_NEAR(ppd_g_tr(1.0, &c), 4.00159157527358, 1e-12);
    CHECK_NEAR(ppd_g_rot(1.0, &c), 4.519267849508626, 1e-12);
    CHECK_NEAR(ppd_g_tr_f32(2.0, &c), 2.0 * 4.00159157527358, 1e-6);
    CHECK_NEAR(ppd_g_rot_f32(0.5, &c), 0.5 * 4.519267849508626, 1e-6);
}

/* ---- noising -------------------------------------------------------------------------------- */

static void random_positions(float *pos, int n, uint64_t seed) {
    ppd_rng r;
    ppd_rng_seed(&r, seed);
    for (int k = 0; k < 3 * n; k++) pos[k] = (float)(20.0 * ppd_rng_normal(&r) + 5.0 * (k % 3));
}

/* Linear interpolation of the score row, written out (the library uses ppd_interp). */
static double score_at(const ppd_igso3 *T, double eps, double w) {
    const double *s = T->score + (size_t)ppd_igso3_index(eps) * PPD_IGSO3_N_OMEGA;
    if (w <= T->omega[0]) return s[0];
    for (int j = 0; j + 1 < PPD_IGSO3_N_OMEGA; j++)
        if (w < T->omega[j + 1])
            return s[j] + (s[j + 1] - s[j]) * (w - T->omega[j]) / (T->omega[j + 1] - T->omega[j]);
    return s[PPD_IGSO3_N_OMEGA - 1];
}

TEST(diffusion_noise_given_matches_double_computation) {
    const ppd_igso3 *T = tables();
    REQUIRE(T);
    const ppd_diffusion_cfg c = ppd_diffusion_cfg_default();
    enum { N = 57 };
    float pos[3 * N], orig[3 * N];
    random_positions(pos, N, 21);
    memcpy(orig, pos, sizeof pos);
    const float tr[3] = {1.25f, -0.5f, 3.0f}, rot[3] = {0.4f, -0.9f, 0.25f};
    const double t = 0.8; /* σ_rot = 0.59: |Δrot| = 1.02 is well inside the IGSO(3) support */
    ppd_noise nz;
    ppd_noise_complex_given(pos, N, t, tr, rot, &c, T, &nz);

    /* Straightforward double computation, rotation by Rodrigues. */
    double mu[3] = {0, 0, 0};
    for (int a = 0; a < N; a++)
        for (int k = 0; k < 3; k++) mu[k] += orig[3 * a + k] / (double)N;
    const double v[3] = {rot[0], rot[1], rot[2]};
    double R[3][3];
    rodrigues(v, R);
    double worst = 0.0;
    for (int a = 0; a < N; a++)
        for (int k = 0; k < 3; k++) {
            double y = mu[k] + tr[k];
            for (int b = 0; b < 3; b++) y += R[k][b] * (orig[3 * a + b] - mu[b]);
            /* float32 rounding of |y| <= ~100 is <= 4e-6 */
            worst = ppt_worst(worst, fabs(pos[3 * a + k] - y) / fmax(1.0, fabs(y)));
        }
    CHECK(worst <= 6e-8);

    const double st = pow(0.01, 1 - t) * pow(30.0, t), sr = pow(0.01, 1 - t) * pow(1.65, t);
    CHECK_NEAR(nz.sigma_tr, st, 1e-15 * st);
    CHECK_NEAR(nz.sigma_rot, sr, 1e-15 * sr);
    CHECK(nz.t == t);
    const double w = sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
    const double s = score_at(T, sr, w);
    for (int k = 0; k < 3; k++) {
        CHECK(nz.tr_update[k] == tr[k] && nz.rot_update[k] == rot[k]);
        CHECK_NEAR(nz.tr_score[k], -tr[k] / (st * st), 6e-8 * fabs(tr[k] / (st * st)));
        CHECK_NEAR(nz.rot_score[k], s * v[k] / w, 6e-8 * fabs(s) + 1e-12);
    }
    CHECK(s < 0.0); /* the target points back towards the identity */
}

TEST(diffusion_noise_rng_deterministic_and_rigid) {
    const ppd_igso3 *T = tables();
    REQUIRE(T);
    const ppd_diffusion_cfg c = ppd_diffusion_cfg_default();
    enum { N = 40 };
    float a[3 * N], b[3 * N], orig[3 * N];
    random_positions(orig, N, 8);
    int bad = 0;
    for (int trial = 0; trial < 20; trial++) {
        const double t = (trial + 0.5) / 20.0;
        memcpy(a, orig, sizeof a);
        memcpy(b, orig, sizeof b);
        ppd_rng r1, r2, replay;
        ppd_rng_seed(&r1, 100 + (uint64_t)trial);
        r2 = replay = r1;
        ppd_noise n1, n2;
        ppd_noise_complex(a, N, t, &c, T, &r1, &n1);
        ppd_noise_complex(b, N, t, &c, T, &r2, &n2);
        /* Same seed: bit-identical positions, updates, targets, and rng state after. */
        bad += memcmp(a, b, sizeof a) != 0 || memcmp(&n1, &n2, sizeof n1) != 0;
        bad += memcmp(&r1, &r2, sizeof r1) != 0;
        /* Documented draw order: 3 normals (Δtr), then sample_vec (3 normals, 1 uniform). */
        const double st = ppd_sigma_tr(t, &c), sr = ppd_sigma_rot(t, &c);
        for (int k = 0; k < 3; k++) bad += n1.tr_update[k] != (float)(st * ppd_rng_normal(&replay));
        double rv[3];
        ppd_igso3_sample_vec(T, sr, &replay, rv);
        for (int k = 0; k < 3; k++) bad += n1.rot_update[k] != (float)rv[k];
        bad += memcmp(&replay, &r1, sizeof r1) != 0;

        /* Rigid: the centroid moves by exactly Δtr and all pairwise distances are kept, up to
         * the float32 rounding of the new coordinates (each off by <= 2^-24 max|x|). */
        double ca[3] = {0, 0, 0}, co[3] = {0, 0, 0}, maxc = 0.0;
        for (int i = 0; i < 3 * N; i++) maxc = fmax(maxc, fabs(a[i]));
        const double ulp = maxc * 0x1p-24;
        for (int i = 0; i < N; i++)
            for (int k = 0; k < 3; k++)
                ca[k] += a[3 * i + k] / (double)N, co[k] += orig[3 * i + k] / (double)N;
        for (int k = 0; k < 3; k++) bad += fabs(ca[k] - co[k] - n1.tr_update[k]) > 1.01 * ulp;
        for (int i = 0; i < N; i++)
            for (int j = i + 1; j < N; j++) {
                double d0 = 0, d1 = 0;
                for (int k = 0; k < 3; k++) {
                    const double e0 = orig[3 * i + k] - orig[3 * j + k];
                    const double e1 = a[3 * i + k] - a[3 * j + k];
                    d0 += e0 * e0, d1 += e1 * e1;
                }
                bad += fabs(sqrt(d1) - sqrt(d0)) > 2.0 * sqrt(3.0) * ulp;
            }
        /* Targets consistent with the draws. */
        for (int k = 0; k < 3; k++)
            bad += fabs(n1.tr_score[k] + n1.tr_update[k] / (st * st)) >
                   6e-8 * fabs(n1.tr_update[k] / (st * st));
    }
    CHECK_EQ(bad, 0);
    /* A different seed gives a different pose. */
    memcpy(a, orig, sizeof a);
    memcpy(b, orig, sizeof b);
    ppd_rng r1, r2;
    ppd_rng_seed(&r1, 1);
    ppd_rng_seed(&r2, 2);
    ppd_noise n1, n2;
    ppd_noise_complex(a, N, 0.5, &c, T, &r1, &n1);
    ppd_noise_complex(b, N, 0.5, &c, T, &r2, &n2);
    CHECK(memcmp(a, b, sizeof a) != 0);
}

/* ---- loss ----------------------------------------------------------------------------------- */

TEST(diffusion_loss_hand_example) {
    const ppd_igso3 *T = tables();
    REQUIRE(T);
    const ppd_diffusion_cfg c = ppd_diffusion_cfg_default();
    /* t = 0: σ_tr = σ_rot = 0.01, N = N(ε_0) = 69.097102 (spec §5.2); t = 1: σ_tr = 30,
     * σ_rot = 1.65, N = N(ε_964) = 0.009568. */
    const float t[2] = {0.0f, 1.0f};
    const float tr_pred[6] = {1, 2, 3, 0, 0, 1}, tr_score[6] = {0, 0, 0, 0, 0, 0};
    const float rot_pred[6] = {70, 0, 0, 0, 0.01f, 0}, rot_score[6] = {0, 0, 0, 0, 0, 0.02f};
    ppd_diffusion_loss L;
    float dtr[6], drot[6];
    ppd_diffusion_loss_forward_backward(&c, T, 2, t, tr_pred, rot_pred, tr_score, rot_score, &L,
                                        dtr, drot);
    /* tr: (1 + 4 + 9) · 1e-4 + 1 · 900 over 6. */
    const double tr_loss = (14.0 * 1e-4 + 900.0) / 6.0;
    const double n0 = 69.097102 + 1e-5, n1 = 0.009568 + 1e-5;
    const double rot_loss =
        ((70.0 / n0) * (70.0 / n0) + (0.01 / n1) * (0.01 / n1) + (0.02 / n1) * (0.02 / n1)) / 6.0;
    CHECK_NEAR(L.tr_loss, tr_loss, 1e-6 * tr_loss);
    /* N(ε_964) is printed with 4 significant digits: 1e-4 relative. */
    CHECK_NEAR(L.rot_loss, rot_loss, 2e-4 * rot_loss);
    CHECK_NEAR(L.loss, 0.5 * tr_loss + 0.5 * rot_loss, 2e-4 * (tr_loss + rot_loss));
    CHECK(L.tr_base_loss == 0.0f);
    const double rb = (0.02 / 0.009568) * (0.02 / 0.009568) / 6.0;
    CHECK_NEAR(L.rot_base_loss, rb, 2e-4 * rb);
    /* Gradients by hand: 0.5 · 2 (pred − score) σ² / 6 and 0.5 · 2 (pred − score) / (N+1e-5)² / 6.
     */
    CHECK_NEAR(dtr[2], 3.0 * 1e-4 / 6.0, 1e-6 * 3e-4 / 6.0);
    CHECK_NEAR(dtr[5], 900.0 / 6.0, 1e-6 * 150.0);
    CHECK(dtr[3] == 0.0f);
    CHECK_NEAR(drot[0], 70.0 / (n0 * n0) / 6.0, 1e-5 * 70.0 / (n0 * n0) / 6.0);
    CHECK_NEAR(drot[5], -0.02 / (n1 * n1) / 6.0, 2e-4 * 0.02 / (n1 * n1) / 6.0);
    /* Forward only. */
    ppd_diffusion_loss L2;
    ppd_diffusion_loss_forward_backward(&c, T, 2, t, tr_pred, rot_pred, tr_score, rot_score, &L2,
                                        NULL, NULL);
    CHECK(memcmp(&L, &L2, sizeof L) == 0);
}

/* The loss in double from the same σ and N (float32 values widened): the formula of §5.3. */
static double loss_double(const ppd_diffusion_cfg *c, int B, const double *sig_tr,
                          const double *norm, const double *tr_pred, const double *rot_pred,
                          const float *tr_score, const float *rot_score) {
    double tr = 0.0, rot = 0.0;
    for (int b = 0; b < B; b++)
        for (int k = 0; k < 3; k++) {
            const double dt = tr_pred[3 * b + k] - tr_score[3 * b + k];
            const double dr = (rot_pred[3 * b + k] - rot_score[3 * b + k]) / (norm[b] + 1e-5);
            tr += dt * dt * sig_tr[b] * sig_tr[b];
            rot += dr * dr;
        }
    return c->tr_weight * tr / (3.0 * B) + c->rot_weight * rot / (3.0 * B);
}

TEST(diffusion_loss_backward_matches_finite_differences) {
    const ppd_igso3 *T = tables();
    REQUIRE(T);
    ppd_diffusion_cfg c = ppd_diffusion_cfg_default();
    c.tr_weight = 0.3; /* distinct weights catch a swap */
    c.rot_weight = 0.7;
    enum { B = 5 };
    ppd_rng r;
    ppd_rng_seed(&r, 77);
    float t[B], trp[3 * B], rotp[3 * B], trs[3 * B], rots[3 * B];
    double sig[B], norm[B], trd[3 * B], rotd[3 * B];
    for (int b = 0; b < B; b++) {
        t[b] = (float)ppd_rng_uniform(&r);
        sig[b] = ppd_sigma_tr_f32(t[b], &c);
        norm[b] = ppd_igso3_score_norm_f32(T, ppd_sigma_rot_f32(t[b], &c));
        for (int k = 0; k < 3; k++) {
            const int e = 3 * b + k;
            trs[e] = (float)(ppd_rng_normal(&r) / sig[b]);
            rots[e] = (float)(ppd_rng_normal(&r) * norm[b]);
            trp[e] = (float)(trs[e] + ppd_rng_normal(&r) / sig[b]);
            rotp[e] = (float)(rots[e] + ppd_rng_normal(&r) * norm[b]);
            trd[e] = trp[e], rotd[e] = rotp[e];
        }
    }
    ppd_diffusion_loss L;
    float dtr[3 * B], drot[3 * B];
    ppd_diffusion_loss_forward_backward(&c, T, B, t, trp, rotp, trs, rots, &L, dtr, drot);
    const double L0 = loss_double(&c, B, sig, norm, trd, rotd, trs, rots);
    CHECK_NEAR(L.loss, L0, 1e-5 * L0);
    int bad = 0;
    for (int e = 0; e < 3 * B; e++) {
        for (int which = 0; which < 2; which++) {
            double *x = which ? rotd : trd;
            const double keep = x[e], h = 1e-4 * fmax(1.0, fabs(keep));
            x[e] = keep + h;
            const double lp = loss_double(&c, B, sig, norm, trd, rotd, trs, rots);
            x[e] = keep - h;
            const double lm = loss_double(&c, B, sig, norm, trd, rotd, trs, rots);
            x[e] = keep;
            const double fd = (lp - lm) / (2.0 * h), got = which ? drot[e] : dtr[e];
            if (!(fabs(got - fd) <= 1e-3 * fabs(fd) + 1e-12)) {
                if (!bad)
                    ppt_fail(__FILE__, __LINE__, "%s[%d]: %.9g vs finite difference %.9g",
                             which ? "d_rot" : "d_tr", e, got, fd);
                bad++;
            }
        }
    }
    CHECK_EQ(bad, 0);
}
