/* Spherical harmonics and Wigner-3j symbols (ppdock/so3.h; spec diffdock-pp.md §4). */
#include "ppdock/so3.h"

#include "ppdock/kernels/so3.h"

#include <assert.h>
#include <complex.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void ppd_sh_forward(float *Y, const float *vec, int64_t E) {
    // Y: (E, 9)   vec: (E, 3)
    assert(E >= 0);
#pragma omp parallel for schedule(static) if (E >= 16384)
    for (int64_t e = 0; e < E; e++) ppd_sh_elem(vec + 3 * e, Y + PPD_SH_DIM * e);
}

/* ---- Wigner-3j (spec §4.2) ------------------------------------------------------------------ */

static double fact(int n) {
    assert(n >= 0 && n <= 20);
    double f = 1.0;
    for (int i = 2; i <= n; i++) f *= i;
    return f;
}

/* Complex-basis Clebsch–Gordan <j1 m1; j2 m2 | j3 m3> by Racah's formula (integer j only). */
static double clebsch_gordan(int j1, int m1, int j2, int m2, int j3, int m3) {
    if (m3 != m1 + m2) return 0.0;
    double pre = sqrt((2 * j3 + 1) * fact(j3 + j1 - j2) * fact(j3 - j1 + j2) * fact(j1 + j2 - j3) /
                      fact(j1 + j2 + j3 + 1));
    pre *= sqrt(fact(j3 + m3) * fact(j3 - m3) * fact(j1 - m1) * fact(j1 + m1) * fact(j2 - m2) *
                fact(j2 + m2));
    double sum = 0.0;
    for (int k = 0; k <= j1 + j2 + j3; k++) {
        int d[6] = {k,           j1 + j2 - j3 - k, j1 - m1 - k,
                    j2 + m2 - k, j3 - j2 + m1 + k, j3 - j1 - m2 + k};
        int ok = 1;
        for (int i = 0; i < 6; i++) ok &= d[i] >= 0;
        if (!ok) continue;
        double den = 1.0;
        for (int i = 0; i < 6; i++) den *= fact(d[i]);
        sum += (k % 2 ? -1.0 : 1.0) / den;
    }
    return pre * sum;
}

/* Q^l (spec §4.2 step 2): row a = m + l of the complex basis, column = the real basis index. */
static void real_to_complex(int l, double complex Q[7][7]) {
    memset(Q, 0, sizeof(double complex) * 49);
    const double s = 1.0 / sqrt(2.0);
    for (int m = -l; m < 0; m++) {
        Q[l + m][l - m] = s;      /* l + |m| */
        Q[l + m][l + m] = -I * s; /* l − |m| */
    }
    Q[l][l] = 1.0;
    for (int m = 1; m <= l; m++) {
        double sign = m % 2 ? -1.0 : 1.0;
        Q[l + m][l + m] = sign * s;
        Q[l + m][l - m] = I * sign * s;
    }
    double complex phase = cpow(-I, l);
    for (int a = 0; a < 2 * l + 1; a++)
        for (int b = 0; b < 2 * l + 1; b++) Q[a][b] *= phase;
}

int ppd_wigner_3j(int l1, int l2, int l3, double *out) {
    assert(l1 >= 0 && l2 >= 0 && l3 >= 0);
    assert(l1 <= PPD_W3J_LMAX && l2 <= PPD_W3J_LMAX && l3 <= PPD_W3J_LMAX);
    int n1 = 2 * l1 + 1, n2 = 2 * l2 + 1, n3 = 2 * l3 + 1;
    memset(out, 0, sizeof(double) * (size_t)(n1 * n2 * n3));
    if (l3 < abs(l1 - l2) || l3 > l1 + l2) return 0;
    double K[7][7][7];
    for (int a = 0; a < n1; a++)
        for (int b = 0; b < n2; b++)
            for (int c = 0; c < n3; c++)
                K[a][b][c] = clebsch_gordan(l1, a - l1, l2, b - l2, l3, c - l3);
    double complex Q1[7][7], Q2[7][7], Q3[7][7];
    real_to_complex(l1, Q1);
    real_to_complex(l2, Q2);
    real_to_complex(l3, Q3);
    double norm2 = 0.0;
    for (int j = 0; j < n1; j++)
        for (int k = 0; k < n2; k++)
            for (int m = 0; m < n3; m++) {
                double complex r = 0.0;
                for (int a = 0; a < n1; a++)
                    for (int b = 0; b < n2; b++)
                        for (int c = 0; c < n3; c++)
                            if (K[a][b][c] != 0.0)
                                r += Q1[a][j] * Q2[b][k] * conj(Q3[c][m]) * K[a][b][c];
                double v = creal(r); /* the imaginary part is 0 (to rounding) by construction */
                out[(j * n2 + k) * n3 + m] = v;
                norm2 += v * v;
            }
    double inv = 1.0 / sqrt(norm2);
    for (int i = 0; i < n1 * n2 * n3; i++) out[i] *= inv;
    return 1;
}
