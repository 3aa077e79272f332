/* IGSO(3) tables (see ppdock/igso3.h).
 *
 * The series is rewritten as a cosine series. With c_l = (2l+1) e^{−l(l+1)ε²} and the Dirichlet
 * kernel sin((l+½)ω)/sin(ω/2) = 1 + 2 Σ_{k=1..l} cos(kω),
 *   f(ω)  = Σ_l c_l (1 + 2 Σ_{k<=l} cos kω) = Σ_k a_k cos(kω),   a_0 = W_0, a_k = 2 W_k,
 *   f'(ω) = −Σ_k k a_k sin(kω),                                   W_k = Σ_{l>=k} c_l.
 * Same value as the original's term-by-term sum, but with no division by sin(ω/2) per term: the
 * score f'/f has no 1/ω cancellation near ω = 0 (the original's (lo·dhi − hi·dlo)/lo² has).
 *
 * Truncation. |sin((l+½)ω)/sin(ω/2)| <= 2l+1 and |d/dω of it| <= 2 Σ k = l(l+1), so the terms
 * l >= L change f by at most Σ_{l>=L} c_l (2l+1) and f' by at most Σ_{l>=L} c_l l(l+1), both
 * <= T_L = Σ_{l>=L} t_l with t_l = (2l+1)(l+1)² e^{−l(l+1)ε²}. The ratio
 *   t_{l+1}/t_l = ((2l+3)/(2l+1)) ((l+2)/(l+1))² e^{−2(l+1)ε²} = r_l
 * decreases in l (every factor does), so once r_L < 1 the tail is below the geometric series
 * t_L/(1 − r_L). We stop at the first L where that bound is <= 1e-17 f(0) (f(0) = Σ c_l (2l+1)
 * = max f): the dropped terms are below the rounding of the full sum, so the result is the full
 * 2000-term series to double precision. L = 687 at ε = 0.01, 67 at 0.1, 7 at 1, 3 at 2:
 * 128,048 terms per ω over the whole ε grid instead of 2e6.
 *
 * sin/cos(kω) by rotation, k → k+1:  c' = c − (α c + β s),  s' = s − (α s − β c) with
 * α = 2 sin²(ω/2), β = sin ω (the form that keeps c² + s² near 1 for small ω). Each step adds
 * about an ulp of drift; every RESEED = 32 steps the pair restarts from cos/sin(kω), computed
 * once for all rows with kω free of rounding (ω split so that k·ω_hi is exact, the rest applied
 * as a tiny rotation), so the drift is bounded by ~32 ulp whatever L is. (In practice this form
 * drifts little: without restarts the error grows only to ~1e-11 where f >= 1e-5 f(0) at
 * ε = 0.01.) The error that remains is the rounding of the sums themselves, ~1e-17 f(0) in
 * absolute terms: measured against the 2000-term series summed term by term in long double,
 * the relative error of f and of the score is 1e-15 where f >= 0.1 f(0), 1.4e-13 where
 * f >= 1e-3 f(0), 4e-12 where f >= 1e-5 f(0) (tests/unit/test_igso3.c checks 1e-12 wherever
 * f >= 1e-3 f(0)). The original's own double sum is no better.
 *
 * Cost: 12 flops per (term, ω), vectorised over ω (SSE2), 4 terms per load/store of the ω
 * state; 2.6e8 (term, ω) pairs in all: 0.40 s on one core of the 2.1 GHz development VM,
 * 0.20 s with 2 threads (rows are independent; OpenMP hands them out small ε first).
 *
 * Noise floor: the sums' rounding is ~1e-17 f(0) in absolute terms (measured: relative error
 * 3e-5 at f = 5e-14 f(0)), so below FLOOR = 1e-14 f(0) the value is noise (the true f is far
 * smaller; the original's numbers there are noise too). There p = 0 and score = 0 are stored
 * (ppdock/igso3.h). With 1e-14 every row's p > 0 region is one prefix of the ω grid (at 1e-15 a
 * few isolated noise spikes survive); above it the score is good to ~1e-4 at the edge and to
 * 1e-12 where f >= 1e-3 f(0).
 */
#include "ppdock/igso3.h"
#include "ppdock/progress.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#ifdef _OPENMP
#include <omp.h>
#endif

enum {
    RESEED = 32, /* recurrence steps between exact sin/cos (a multiple of 4) */
    BLOCK = 250, /* ω per inner block: 6 arrays × 2 KB stay in L1 */
};
#define TAIL_REL 1e-17 /* dropped series tail, relative to f(0) */
#define FLOOR    1e-14 /* f <= FLOOR f(0): rounding noise, stored as p = 0, score = 0 */

/* Terms to keep for ε (see the truncation note above) and c_l into c[0..L). */
static int series_coeffs(double eps, double *c) {
    const double e2 = eps * eps;
    double f0 = 0.0;
    for (int l = 0; l < PPD_IGSO3_L; l++) {
        const double g = exp(-(double)l * (double)(l + 1) * e2);
        if (l > 0) {
            const double dl = (double)l;
            const double r = ((2.0 * dl + 3.0) / (2.0 * dl + 1.0)) * ((dl + 2.0) / (dl + 1.0)) *
                             ((dl + 2.0) / (dl + 1.0)) * exp(-2.0 * (dl + 1.0) * e2);
            const double t = (2.0 * dl + 1.0) * (dl + 1.0) * (dl + 1.0) * g;
            if (r < 1.0 && t / (1.0 - r) <= TAIL_REL * f0) return l;
        }
        c[l] = (double)(2 * l + 1) * g;
        f0 += c[l] * (double)(2 * l + 1);
    }
    return PPD_IGSO3_L;
}

/* cos(kω), sin(kω) with kω taken exactly: ω = hi + lo by Veltkamp's split (hi keeps 40 of the 53
 * mantissa bits, so k·hi is exact for k < 2^13; lo is exact and |k·lo| < 2^-40 kω < 1e-8), then
 * the angle-addition formula with sin b = b, cos b = 1 − b²/2 (errors below 1e-24). */
static void sincos_k(int k, double w, double *cs, double *sn) {
    const double t = w * 8193.0; /* 2^13 + 1 */
    const double hi = t - (t - w), lo = w - hi;
    const double a = (double)k * hi, b = (double)k * lo;
    const double ca = cos(a), sa = sin(a), cb = 1.0 - 0.5 * b * b;
    *cs = ca * cb - sa * b;
    *sn = sa * cb + ca * b;
}

/* One term: accumulate a·cos(kω) and k·a·sin(kω), then rotate (c, s) from kω to (k+1)ω. */
static inline void step(double *c, double *s, double *F, double *D, double a, double ka, double al,
                        double be) {
    *F += a * *c;
    *D += ka * *s;
    const double cn = *c - (al * *c + be * *s);
    *s = *s - (al * *s - be * *c);
    *c = cn;
}

/* Terms k .. k+3 for a block of ω: the state of each ω stays in registers for 4 terms (half the
 * loads and stores of one term at a time). restrict: the arrays are disjoint, which lets the
 * compiler vectorise over ω without a runtime overlap check. */
static void steps4(double *restrict cs, double *restrict sn, double *restrict F, double *restrict D,
                   const double *restrict al, const double *restrict be, const double *restrict a,
                   const double *restrict ka) {
    for (int j = 0; j < BLOCK; j++) {
        double c = cs[j], s = sn[j], Fj = F[j], Dj = D[j];
        step(&c, &s, &Fj, &Dj, a[0], ka[0], al[j], be[j]);
        step(&c, &s, &Fj, &Dj, a[1], ka[1], al[j], be[j]);
        step(&c, &s, &Fj, &Dj, a[2], ka[2], al[j], be[j]);
        step(&c, &s, &Fj, &Dj, a[3], ka[3], al[j], be[j]);
        cs[j] = c, sn[j] = s, F[j] = Fj, D[j] = Dj;
    }
}

/* One row of the tables (ε_i): f and f' on the ω grid by the blocked recurrence, then p, score,
 * cdf and the expected score norm. scratch: 2 L + 4 BLOCK + 2 N_OMEGA doubles. */
static void build_row(ppd_igso3 *T, int i, const double *alpha, const double *beta,
                      const double *omc, const double *seed_c, const double *seed_s,
                      double *scratch) {
    enum { NW = PPD_IGSO3_N_OMEGA };
    double *a = scratch, *ka = a + PPD_IGSO3_L;
    double *cs = ka + PPD_IGSO3_L, *sn = cs + BLOCK, *F = sn + BLOCK, *D = F + BLOCK;
    double *f = D + BLOCK, *df = f + NW;

    const int L = series_coeffs(T->eps[i], a); /* c_l in a[] for now */
    T->terms[i] = L;
    double W = 0.0, f0 = 0.0;
    for (int k = L - 1; k >= 0; k--) { /* tail sums, small terms first */
        W += a[k];
        a[k] = k == 0 ? W : 2.0 * W;
        ka[k] = (double)k * a[k];
    }
    for (int k = 0; k < L; k++) f0 += a[k]; /* f(0) */
    /* Terms go 4 at a time (steps4); the padding terms are zero. RESEED is a multiple of 4. */
    const int L4 = (L + 3) & ~3;
    for (int k = L; k < L4; k++) a[k] = ka[k] = 0.0;

    for (int j0 = 0; j0 < NW; j0 += BLOCK) {
        const double *al = alpha + j0, *be = beta + j0;
        for (int j = 0; j < BLOCK; j++) F[j] = D[j] = 0.0;
        for (int k0 = 0; k0 < L4; k0 += RESEED) {
            const double *c0 = seed_c + (size_t)(k0 / RESEED) * NW + j0;
            const double *s0 = seed_s + (size_t)(k0 / RESEED) * NW + j0;
            for (int j = 0; j < BLOCK; j++) cs[j] = c0[j], sn[j] = s0[j];
            const int k1 = k0 + RESEED < L4 ? k0 + RESEED : L4;
            for (int k = k0; k < k1; k += 4) steps4(cs, sn, F, D, al, be, a + k, ka + k);
        }
        for (int j = 0; j < BLOCK; j++) f[j0 + j] = F[j], df[j0 + j] = -D[j];
    }

    /* p, score, cdf (cumsum / 2000 · π, the original's order of operations), N. */
    double *cdf = T->cdf + (size_t)i * NW, *score = T->score + (size_t)i * NW;
    double cum = 0.0, s2p = 0.0;
    for (int j = 0; j < NW; j++) {
        double p = 0.0, s = 0.0;
        if (f[j] > FLOOR * f0) {
            p = f[j] * omc[j] / M_PI;
            s = df[j] / f[j];
        }
        cum += p;
        s2p += s * s * p;
        cdf[j] = cum / NW * M_PI;
        score[j] = s;
    }
    T->score_norm[i] = sqrt(s2p / cum / M_PI);
}

ppd_status ppd_igso3_build(ppd_igso3 *T, int threads) {
    enum { NE = PPD_IGSO3_N_EPS, NW = PPD_IGSO3_N_OMEGA, NSEED = PPD_IGSO3_L / RESEED + 1 };
    const double t0 = ppd_now_seconds();
    *T = (ppd_igso3){0};
    const size_t n_tab = (size_t)NE + NW + 2 * (size_t)NE * NW + NE;
    const size_t n_work = 3 * (size_t)NW + 2 * (size_t)NSEED * NW;
    double *mem = malloc(n_tab * sizeof(double));
    double *work = malloc(n_work * sizeof(double));
    int *terms = malloc(NE * sizeof(int));
    if (!mem || !work || !terms) {
        free(mem);
        free(work);
        free(terms);
        return ppd_fail(PPD_ERR_NOMEM, "IGSO(3) tables: cannot allocate %zu MB",
                        (n_tab + n_work) * sizeof(double) >> 20);
    }
    T->eps = mem;
    T->omega = T->eps + NE;
    T->cdf = T->omega + NW;
    T->score = T->cdf + (size_t)NE * NW;
    T->score_norm = T->score + (size_t)NE * NW;
    T->terms = terms;
    /* Shared by all rows: the rotation constants, 1 − cos ω, and the exact restart values
     * cos/sin(m · RESEED · ω_j), m-major. */
    double *alpha = work, *beta = alpha + NW, *omc = beta + NW;
    double *seed_c = omc + NW, *seed_s = seed_c + (size_t)NSEED * NW;

    /* numpy.linspace(start, stop, n): start + j · ((stop − start) / (n − 1)), last = stop. */
    const double lo = log10(PPD_IGSO3_EPS_MIN), hi = log10(PPD_IGSO3_EPS_MAX);
    const double dlog = (hi - lo) / (NE - 1);
    for (int i = 0; i < NE; i++) T->eps[i] = pow(10.0, i == NE - 1 ? hi : (double)i * dlog + lo);
    const double wstep = M_PI / NW;
    for (int j = 0; j < NW; j++) {
        const double w = j == NW - 1 ? M_PI : (double)(j + 1) * wstep;
        T->omega[j] = w;
        const double sh = sin(0.5 * w);
        alpha[j] = 2.0 * sh * sh;
        beta[j] = sin(w);
        omc[j] = 1.0 - cos(w);
    }
    for (int m = 0; m < NSEED; m++)
        for (int j = 0; j < NW; j++)
            sincos_k(m * RESEED, T->omega[j], &seed_c[(size_t)m * NW + j],
                     &seed_s[(size_t)m * NW + j]);

    const size_t per_thread = 2 * (size_t)PPD_IGSO3_L + 4 * (size_t)BLOCK + 2 * (size_t)NW;
    int failed = 0;
#ifdef _OPENMP
#pragma omp parallel num_threads(threads > 0 ? threads : omp_get_max_threads())
#else
    (void)threads;
#endif
    {
        double *scratch = malloc(per_thread * sizeof(double));
        if (!scratch) {
#ifdef _OPENMP
#pragma omp atomic write
#endif
            failed = 1;
        }
        /* Small ε cost up to 200x more than large ones: hand rows out dynamically, the expensive
         * ones (small ε, low i) first. */
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 4)
#endif
        for (int i = 0; i < NE; i++)
            if (scratch) build_row(T, i, alpha, beta, omc, seed_c, seed_s, scratch);
        free(scratch);
    }
    free(work);
    if (failed) {
        ppd_igso3_free(T);
        return ppd_fail(PPD_ERR_NOMEM, "IGSO(3) tables: cannot allocate per-thread scratch");
    }
    T->build_seconds = ppd_now_seconds() - t0;
    return PPD_OK;
}

void ppd_igso3_free(ppd_igso3 *T) {
    if (!T) return;
    free(T->eps);
    free(T->terms);
    *T = (ppd_igso3){0};
}

/* ---- lookups ------------------------------------------------------------------------------ */

static int clip_index(double x) {
    if (!(x > 0.0)) return 0; /* NaN and negatives (ε <= 0 gives −Inf) */
    if (x >= PPD_IGSO3_N_EPS - 1) return PPD_IGSO3_N_EPS - 1;
    return (int)x;
}

int ppd_igso3_index(double eps) {
    const double lo = log10(PPD_IGSO3_EPS_MIN), hi = log10(PPD_IGSO3_EPS_MAX);
    const double x = (log10(eps) - lo) / (hi - lo) * PPD_IGSO3_N_EPS;
    return clip_index(nearbyint(x)); /* default rounding mode: half to even, as np.around */
}

int ppd_igso3_index_f32(float eps) {
    const float lo = (float)log10(PPD_IGSO3_EPS_MIN);
    const float den = (float)(log10(PPD_IGSO3_EPS_MAX) - log10(PPD_IGSO3_EPS_MIN));
    const float x = (log10f(eps) - lo) / den * (float)PPD_IGSO3_N_EPS;
    return clip_index((double)nearbyintf(x));
}

double ppd_igso3_score_norm(const ppd_igso3 *T, double eps) {
    return T->score_norm[ppd_igso3_index(eps)];
}

float ppd_igso3_score_norm_f32(const ppd_igso3 *T, float eps) {
    return (float)T->score_norm[ppd_igso3_index_f32(eps)];
}

double ppd_interp(double x, const double *xp, const double *fp, int n) {
    if (isnan(x)) return x;
    if (x > xp[n - 1]) return fp[n - 1];
    if (x < xp[0]) return fp[0];
    /* Rightmost j with xp[j] <= x: first index with xp > x, minus one. */
    int lo = 0, hi = n;
    while (lo < hi) {
        const int mid = lo + ((hi - lo) >> 1);
        if (x >= xp[mid])
            lo = mid + 1;
        else
            hi = mid;
    }
    const int j = lo - 1;
    if (j == n - 1 || xp[j] == x) return fp[j];
    const double slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j]);
    return slope * (x - xp[j]) + fp[j];
}

double ppd_igso3_sample(const ppd_igso3 *T, double eps, double u) {
    const int i = ppd_igso3_index(eps);
    return ppd_interp(u, T->cdf + (size_t)i * PPD_IGSO3_N_OMEGA, T->omega, PPD_IGSO3_N_OMEGA);
}

void ppd_igso3_sample_vec(const ppd_igso3 *T, double eps, ppd_rng *r, double out[3]) {
    double g[3];
    for (int k = 0; k < 3; k++) g[k] = ppd_rng_normal(r);
    const double w = ppd_igso3_sample(T, eps, ppd_rng_uniform(r));
    const double norm = sqrt(g[0] * g[0] + g[1] * g[1] + g[2] * g[2]);
    if (!(norm > 0.0)) { /* cannot happen with ppd_rng_normal; keep the axis defined anyway */
        out[0] = w, out[1] = out[2] = 0.0;
        return;
    }
    for (int k = 0; k < 3; k++) out[k] = g[k] / norm * w;
}

void ppd_igso3_score_vec(const ppd_igso3 *T, double eps, const double v[3], double out[3]) {
    const double w = sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
    if (!(w > 0.0)) {
        out[0] = out[1] = out[2] = 0.0;
        return;
    }
    const int i = ppd_igso3_index(eps);
    const double s =
        ppd_interp(w, T->omega, T->score + (size_t)i * PPD_IGSO3_N_OMEGA, PPD_IGSO3_N_OMEGA);
    for (int k = 0; k < 3; k++) out[k] = s * v[k] / w;
}
