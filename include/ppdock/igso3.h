/* ppdock/igso3.h — IGSO(3) tables: the isotropic Gaussian on SO(3) that noises the ligand's
 * orientation (docs/spec/diffdock-pp.md §5.2; the original's geom_utils/so3.py).
 *
 * A rotation is an axis-angle vector ω n̂. Under IGSO(3)(ε) the axis is uniform and the angle
 * ω ∈ (0, π] has the density p(ω) = f(ω, ε) (1 − cos ω) / π with
 *   f(ω, ε) = Σ_{l<2000} (2l+1) e^{−l(l+1) ε²} sin((l+½)ω) / sin(ω/2)
 * (the exponent lacks the usual ½: the heat-kernel time is 2ε²). The tables, float64, row i
 * for ε_i, column j for ω_j:
 *   eps[i]        = 10^{linspace(log10 0.01, log10 2, 1000)_i}  (numpy's, last = log10 2)
 *   omega[j]      = (j+1) · (π/2000) for j < 1999, omega[1999] = π  (linspace(0, π, 2001)[1:])
 *   cdf[i][j]     = (Σ_{j'<=j} p(ω_j')) / 2000 · π  (left Riemann sum, NOT renormalised)
 *   score[i][j]   = ∂_ω log f(ω, ε_i)
 *   score_norm[i] = sqrt(Σ_j score² p / Σ_j p / π)  (the original's extra /π, replicated)
 *
 * Where f is below the series' rounding noise (f <= 1e-14 f(0): small ε, large ω, where the
 * true f is astronomically small and the original's numbers are cancellation noise) the tables
 * hold p = 0 and score = 0: each row's p > 0 region is a prefix of the ω grid, the CDF is flat
 * after it, and nothing is NaN or Inf. ppd_igso3_sample lands beyond that prefix only for
 * u > cdf[i][1999] >= 1 − 1e-13 (then ω = π, np.interp's right clamp, as in the original), so a
 * sampled ω practically always has a meaningful score.
 *
 * Build cost: the original sums all 2000 terms for every (ε, ω) (~195 s in NumPy). Here each ε
 * keeps only the terms that can matter (the dropped tail is provably < 1e-17 f(0), below the
 * rounding of the sum; see igso3.c) and sin/cos come from a recurrence: 128,048 terms per ω over
 * all ε instead of 2e6. Measured on the 2.1 GHz development VM (-O2): 0.40 s on one thread,
 * 0.20 s on 2 (tests/unit/test_igso3.c prints it with PPD_TEST_VERBOSE=1). The tables take
 * 32 MB (cdf + score); the build needs 2 MB more while it runs.
 */
#ifndef PPDOCK_IGSO3_H
#define PPDOCK_IGSO3_H

#include "ppdock/rng.h"
#include "ppdock/status.h"

#ifdef __cplusplus
extern "C" {
#endif

enum {
    PPD_IGSO3_N_EPS = 1000,   /* ε grid */
    PPD_IGSO3_N_OMEGA = 2000, /* ω grid */
    PPD_IGSO3_L = 2000,       /* series terms of the original (upper bound here) */
};
#define PPD_IGSO3_EPS_MIN 0.01
#define PPD_IGSO3_EPS_MAX 2.0

typedef struct {
    double *eps;        /* [N_EPS] */
    double *omega;      /* [N_OMEGA] */
    double *cdf;        /* [N_EPS][N_OMEGA] */
    double *score;      /* [N_EPS][N_OMEGA] */
    double *score_norm; /* [N_EPS] */
    int *terms;         /* [N_EPS] series terms kept for ε_i (<= PPD_IGSO3_L) */
    double build_seconds;
} ppd_igso3;

/* Build the tables. threads <= 0: OpenMP's default; ignored without OpenMP.
 * Errors: PPD_ERR_NOMEM. On failure *T is zeroed (ppd_igso3_free is still safe). */
ppd_status ppd_igso3_build(ppd_igso3 *T, int threads);
void ppd_igso3_free(ppd_igso3 *T);

/* Row for ε (the original's quirk, replicated):
 *   i = clip(round_half_even((log10 ε − log10 0.01) / (log10 2 − log10 0.01) · 1000), 0, 999)
 * ×1000 although the grid has 999 intervals; nearest row, no interpolation in ε. ε <= 0 or NaN
 * gives 0, +Inf gives 999. ppd_igso3_index is the data side (double, as for Python floats);
 * ppd_igso3_index_f32 is the model/loss side (so3.score_norm on a float32 tensor: float32
 * log10f, the float64 constants rounded to float32, float32 arithmetic, as NumPy < 2 computes a
 * float32 array with float64 scalars). */
int ppd_igso3_index(double eps);
int ppd_igso3_index_f32(float eps);

/* N(ε) = score_norm[index(ε)]; the _f32 form uses the float32 index and rounds N to float32
 * (so3.score_norm returns .float()). */
double ppd_igso3_score_norm(const ppd_igso3 *T, double eps);
float ppd_igso3_score_norm_f32(const ppd_igso3 *T, float eps);

/* np.interp(x, xp[0..n), fp[0..n)) exactly: x < xp[0] → fp[0], x > xp[n−1] → fp[n−1], else the
 * rightmost j with xp[j] <= x (xp non-decreasing; equal xp values resolve to the last one), then
 * fp[j] if j == n−1 or xp[j] == x, else fp[j] + slope (x − xp[j]) with slope computed as
 * (fp[j+1] − fp[j]) / (xp[j+1] − xp[j]). NaN x gives NaN. n >= 2. */
double ppd_interp(double x, const double *xp, const double *fp, int n);

/* Angle ω for uniform u ∈ [0, 1): np.interp(u, cdf[index(ε)], omega). */
double ppd_igso3_sample(const ppd_igso3 *T, double eps, double u);

/* so3.sample_vec: out = ω g/|g|. Draws, in this order: 3 ppd_rng_normal (g_x, g_y, g_z), then
 * 1 ppd_rng_uniform (u for ppd_igso3_sample). */
void ppd_igso3_sample_vec(const ppd_igso3 *T, double eps, ppd_rng *r, double out[3]);

/* so3.score_vec: ω = |v|, out = (interp(ω, omega, score[index(ε)]) · v) / ω; v = 0 gives 0
 * (the original would give NaN). */
void ppd_igso3_score_vec(const ppd_igso3 *T, double eps, const double v[3], double out[3]);

#ifdef __cplusplus
}
#endif

#endif
