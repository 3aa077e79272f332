/* Spherical harmonics and Wigner-3j against the spec's tables (diffdock-pp.md §4.3, A.1) and
 * against the property that defines them: equivariance under rotations. */
#include "../test.h"

#include "ppdock/diffusion.h"
#include "ppdock/rng.h"
#include "ppdock/so3.h"

#include <stdlib.h>

TEST(so3_sh_matches_spec_a1) {
    /* Appendix A.1 (e3nn 0.5.1, float32), printed to 8 decimals. */
    static const float v[2][3] = {{1, 2, 3}, {-0.3f, 0, 0.4f}};
    static const double want[2][9] = {
        {1.0, 0.46291003, 0.92582005, 1.38873005, 0.82992494, 0.55328333, -0.15971906, 1.65984988,
         1.10656667},
        {1, -1.03923047, 0, 1.38564062, -1.85903203, -0.0, -1.11803401, 0, 0.54221773},
    };
    float Y[2][9];
    ppd_sh_forward(&Y[0][0], &v[0][0], 2);
    for (int e = 0; e < 2; e++)
        for (int j = 0; j < 9; j++) CHECK_NEAR(Y[e][j], want[e][j], 3e-7);
}

TEST(so3_sh_zero_vector_and_norms) {
    float zero[3] = {0, 0, 0}, Y[9];
    ppd_sh_forward(Y, zero, 1);
    CHECK_EQ(Y[0], 1);
    for (int j = 1; j < 9; j++) CHECK_EQ(Y[j], 0);
    /* |Y_l|^2 = 2l + 1 on the sphere, whatever the length of v (normalize=True). */
    ppd_rng r;
    ppd_rng_seed(&r, 7);
    for (int i = 0; i < 100; i++) {
        float v[3];
        for (int c = 0; c < 3; c++) v[c] = (float)(ppd_rng_normal(&r) * 20.0);
        ppd_sh_forward(Y, v, 1);
        double n1 = 0, n2 = 0;
        for (int j = 1; j < 4; j++) n1 += (double)Y[j] * Y[j];
        for (int j = 4; j < 9; j++) n2 += (double)Y[j] * Y[j];
        CHECK_NEAR(n1, 3.0, 1e-5);
        CHECK_NEAR(n2, 5.0, 1e-5);
    }
}

static double w3j_at(int l1, int l2, int l3, int i, int j, int k) {
    double C[7 * 7 * 7];
    ppd_wigner_3j(l1, l2, l3, C);
    return C[(i * (2 * l2 + 1) + j) * (2 * l3 + 1) + k];
}

/* Checks every entry of C^{l1 l2 l3} against a sparse table; unlisted entries must be 0. */
static void check_w3j_table(int l1, int l2, int l3, const int (*idx)[3], const double *val, int n) {
    int n1 = 2 * l1 + 1, n2 = 2 * l2 + 1, n3 = 2 * l3 + 1;
    double C[7 * 7 * 7];
    REQUIRE(ppd_wigner_3j(l1, l2, l3, C) == 1);
    for (int i = 0; i < n1; i++)
        for (int j = 0; j < n2; j++)
            for (int k = 0; k < n3; k++) {
                double want = 0.0;
                for (int t = 0; t < n; t++)
                    if (idx[t][0] == i && idx[t][1] == j && idx[t][2] == k) want = val[t];
                double got = C[(i * n2 + j) * n3 + k];
                if (fabs(got - want) > 1e-14)
                    ppt_fail(__FILE__, __LINE__, "C(%d,%d,%d)[%d,%d,%d] = %.17g, spec %.17g", l1,
                             l2, l3, i, j, k, got, want);
            }
}

TEST(so3_w3j_matches_spec_tables) {
    const double a = sqrt(1.0 / 10), b = sqrt(1.0 / 30), c = sqrt(2.0 / 15), e = 1.0 / sqrt(6.0);
    static const int i111[6][3] = {{0, 1, 2}, {1, 2, 0}, {2, 0, 1},
                                   {0, 2, 1}, {1, 0, 2}, {2, 1, 0}};
    const double v111[6] = {e, e, e, -e, -e, -e};
    check_w3j_table(1, 1, 1, i111, v111, 6);
    static const int i121[11][3] = {{0, 0, 2}, {0, 1, 1}, {0, 2, 0}, {0, 4, 0},
                                    {1, 1, 0}, {1, 2, 1}, {1, 3, 2}, {2, 0, 0},
                                    {2, 2, 2}, {2, 3, 1}, {2, 4, 2}};
    const double v121[11] = {a, a, -b, -a, a, c, a, a, -b, a, a};
    check_w3j_table(1, 2, 1, i121, v121, 11);
    static const int i112[11][3] = {{0, 0, 2}, {0, 0, 4}, {0, 1, 1}, {0, 2, 0},
                                    {1, 0, 1}, {1, 1, 2}, {1, 2, 3}, {2, 0, 0},
                                    {2, 1, 3}, {2, 2, 2}, {2, 2, 4}};
    const double v112[11] = {-b, -a, a, a, a, c, a, a, a, -b, a};
    check_w3j_table(1, 1, 2, i112, v112, 11);
    /* trivial ones: C^{000} = 1, C^{0ll}_{0jj} = C^{l0l}_{j0j} = C^{ll0}_{jj0} = 1/sqrt(2l+1) */
    CHECK_NEAR(w3j_at(0, 0, 0, 0, 0, 0), 1.0, 1e-15);
    for (int l = 1; l <= 3; l++)
        for (int j = 0; j < 2 * l + 1; j++) {
            double want = 1.0 / sqrt(2.0 * l + 1);
            CHECK_NEAR(w3j_at(0, l, l, 0, j, j), want, 1e-15);
            CHECK_NEAR(w3j_at(l, 0, l, j, 0, j), want, 1e-15);
            CHECK_NEAR(w3j_at(l, l, 0, j, j, 0), want, 1e-15);
        }
    double C[343];
    CHECK_EQ(ppd_wigner_3j(1, 1, 3, C), 0);
    CHECK_EQ(ppd_wigner_3j(0, 2, 1, C), 0);
}

TEST(so3_w3j_symmetries) {
    /* Spec §4.3: a cyclic permutation of (l1, l2, l3) with the same permutation of the indices
     * leaves C unchanged; swapping two multiplies it by (-1)^(l1+l2+l3). */
    for (int l1 = 0; l1 <= 2; l1++)
        for (int l2 = 0; l2 <= 2; l2++)
            for (int l3 = abs(l1 - l2); l3 <= l1 + l2 && l3 <= 2; l3++) {
                double sign = (l1 + l2 + l3) % 2 ? -1.0 : 1.0;
                for (int i = 0; i < 2 * l1 + 1; i++)
                    for (int j = 0; j < 2 * l2 + 1; j++)
                        for (int k = 0; k < 2 * l3 + 1; k++) {
                            double c = w3j_at(l1, l2, l3, i, j, k);
                            CHECK_NEAR(w3j_at(l2, l3, l1, j, k, i), c, 1e-14);
                            CHECK_NEAR(w3j_at(l2, l1, l3, j, i, k), sign * c, 1e-14);
                        }
            }
}

/* D^l(R) from the harmonics themselves: Y_l(R v) = D^l Y_l(v), solved from 2l+1 sample vectors
 * by least squares would need a solver; instead check the invariant form directly:
 *   sum_{ijk} C_ijk Y_i(a) Y_j(b) Y_k(c) is unchanged when a, b, c are rotated together. */
TEST(so3_w3j_invariant_under_rotation) {
    ppd_rng r;
    ppd_rng_seed(&r, 11);
    for (int trial = 0; trial < 20; trial++) {
        float v[3][3], vr[3][3];
        double w[3] = {ppd_rng_normal(&r), ppd_rng_normal(&r), ppd_rng_normal(&r)}, R[3][3];
        ppd_axis_angle_to_matrix(w, R);
        for (int a = 0; a < 3; a++) {
            for (int c = 0; c < 3; c++) v[a][c] = (float)ppd_rng_normal(&r);
            for (int i = 0; i < 3; i++)
                vr[a][i] = (float)(R[i][0] * v[a][0] + R[i][1] * v[a][1] + R[i][2] * v[a][2]);
        }
        float Y[3][9], Yr[3][9];
        ppd_sh_forward(&Y[0][0], &v[0][0], 3);
        ppd_sh_forward(&Yr[0][0], &vr[0][0], 3);
        static const int off[3] = {0, 1, 4};
        for (int l1 = 0; l1 <= 2; l1++)
            for (int l2 = 0; l2 <= 2; l2++)
                for (int l3 = abs(l1 - l2); l3 <= l1 + l2 && l3 <= 2; l3++) {
                    double C[343], s = 0, sr = 0;
                    ppd_wigner_3j(l1, l2, l3, C);
                    int n2 = 2 * l2 + 1, n3 = 2 * l3 + 1;
                    for (int i = 0; i < 2 * l1 + 1; i++)
                        for (int j = 0; j < n2; j++)
                            for (int k = 0; k < n3; k++) {
                                double cc = C[(i * n2 + j) * n3 + k];
                                s += cc * Y[0][off[l1] + i] * Y[1][off[l2] + j] * Y[2][off[l3] + k];
                                sr += cc * Yr[0][off[l1] + i] * Yr[1][off[l2] + j] *
                                      Yr[2][off[l3] + k];
                            }
                    if (fabs(s - sr) > 2e-5)
                        ppt_fail(__FILE__, __LINE__, "(%d,%d,%d): %.9g vs rotated %.9g", l1, l2, l3,
                                 s, sr);
                }
    }
}

TEST(so3_sh_l1_is_cartesian) {
    /* D^1(R) = R: the l = 1 harmonics rotate like the vector itself (spec §4.2). */
    float v[3] = {0.3f, -1.2f, 0.7f}, Y[9];
    ppd_sh_forward(Y, v, 1);
    double n = sqrt(0.09 + 1.44 + 0.49);
    for (int c = 0; c < 3; c++) CHECK_NEAR(Y[1 + c], sqrt(3.0) * v[c] / n, 1e-6);
}
