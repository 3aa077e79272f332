/* ppdock/diffusion.h — the score model's diffusion: noise schedule, training-time noising of one
 * complex and its targets, the loss and its gradient (docs/spec/diffdock-pp.md §2.1, §5, §7).
 *
 * Precision follows the original: the data side (σ for noising and targets) is double, as
 * Python floats; the model/loss side recomputes σ from the float32 t stored in the batch, in
 * float32. Positions are float32 [n][3], row vectors.
 *
 * These functions cannot fail (sizes are asserted).
 */
#ifndef PPDOCK_DIFFUSION_H
#define PPDOCK_DIFFUSION_H

#include <stdint.h>

#include "ppdock/igso3.h"
#include "ppdock/rng.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    double tr_s_min, tr_s_max;    /* Å; released model: 0.01, 30 */
    double rot_s_min, rot_s_max;  /* rad; released model: 0.01, 1.65 */
    double tr_weight, rot_weight; /* loss weights; released model: 0.5, 0.5 */
} ppd_diffusion_cfg;

/* The released score model's values (spec §0, large_model_dips). */
ppd_diffusion_cfg ppd_diffusion_cfg_default(void);

/* ---- schedule (§2.1) -----------------------------------------------------------------------
 * σ(t) = σ_min^{1−t} · σ_max^t. The double form is NoiseSchedule on Python floats (pow, pow,
 * multiply). The _f32 form is the same expression on a float32 tensor t, as PyTorch evaluates
 * it: 1 − t in float32, python_float ** tensor = pow(float32(σ_min), ·) in float32, the product
 * in float32. PyTorch's vectorised pow (Sleef, 1 ulp) may differ from powf by an ulp. */
double ppd_sigma_tr(double t, const ppd_diffusion_cfg *c);
double ppd_sigma_rot(double t, const ppd_diffusion_cfg *c);
float ppd_sigma_tr_f32(float t, const ppd_diffusion_cfg *c);
float ppd_sigma_rot_f32(float t, const ppd_diffusion_cfg *c);

/* Diffusion coefficients of the reverse SDE (§7 step 3), from σ at the current t:
 *   g_tr = σ_tr sqrt(2 ln(σ_tr,max/σ_tr,min)),   g_rot = 2 σ_rot sqrt(ln(σ_rot,max/σ_rot,min)).
 * The double forms are the spec's formula. The original (sample.py) builds the square-root
 * factor from torch.tensor(max/min), a float32 tensor, so its g is float32; the _f32 forms are
 * that computation:
 *   g_tr  = float32(σ_tr) · sqrtf(2 logf(float32(max/min)))
 *   g_rot = float32(2 σ_rot) · sqrtf(logf(float32(max/min))) */
double ppd_g_tr(double sigma_tr, const ppd_diffusion_cfg *c);
double ppd_g_rot(double sigma_rot, const ppd_diffusion_cfg *c);
float ppd_g_tr_f32(double sigma_tr, const ppd_diffusion_cfg *c);
float ppd_g_rot_f32(double sigma_rot, const ppd_diffusion_cfg *c);

/* ---- rigid update (§5.1 step 3) -------------------------------------------------------------
 * R(v): right-handed rotation by |v| about v/|v|, via the unit quaternion (cos(θ/2), v
 * sin(θ/2)/θ) (θ < 1e-6: sin(θ/2)/θ = 1/2 − θ²/48) and PyTorch3D's quaternion_to_matrix with
 * two_s = 2/|q|². In double. */
void ppd_axis_angle_to_matrix(const double v[3], double R[3][3]);

/* pos[n][3] ← (pos − μ) R(rot_update)ᵀ + tr_update + μ, μ = the centroid of the float32 input
 * positions; all in double, each result rounded once to float32 (the original does it in
 * float32: results agree to float32 rounding). n = 0 does nothing. */
void ppd_rigid_update(float *pos, int64_t n, const float tr_update[3], const float rot_update[3]);

/* ---- noising one complex and its targets (§5.1) ---------------------------------------------
 * The original's types: Δtr is a float32 tensor (torch.normal), Δrot a NumPy double vector that
 * is cast to float32 (torch.from_numpy(...).float()) before both the rotation and score_vec.
 * Targets: tr_score = −Δtr/σ_tr² and rot_score = score_vec(σ_rot, Δrot), both evaluated in double
 * from the float32 updates and σ in double, then rounded to float32 (PyTorch divides in float32:
 * tr_score may differ from it by an ulp). */
typedef struct {
    double t;                   /* diffusion time */
    double sigma_tr, sigma_rot; /* double σ at t */
    float tr_update[3];         /* Δtr */
    float rot_update[3];        /* Δrot (axis-angle) */
    float tr_score[3];          /* target for tr_pred */
    float rot_score[3];         /* target for rot_pred */
} ppd_noise;

/* Replay: apply the given updates to pos[n][3] and fill *out (t, σ, the updates, targets). */
void ppd_noise_complex_given(float *pos, int64_t n, double t, const float tr_update[3],
                             const float rot_update[3], const ppd_diffusion_cfg *c,
                             const ppd_igso3 *T, ppd_noise *out);

/* Draw the updates for time t and apply them. Draws from r, in this order (resume determinism
 * depends on it): 3 ppd_rng_normal for Δtr (x, y, z; Δtr = σ_tr · z rounded to float32), then
 * ppd_igso3_sample_vec(σ_rot): 3 ppd_rng_normal (axis), 1 ppd_rng_uniform (angle). Δrot is that
 * double vector rounded to float32. t itself is the caller's (the original draws it with
 * np.random.uniform() before everything else). */
void ppd_noise_complex(float *pos, int64_t n, double t, const ppd_diffusion_cfg *c,
                       const ppd_igso3 *T, ppd_rng *r, ppd_noise *out);

/* ---- loss (§5.3, DiffusionLoss, mean over the batch) ----------------------------------------
 * tr_pred, rot_pred, tr_score, rot_score: [B][3]; t: [B] (float32 complex_t). Per complex b,
 * float32 as the original: σ_tr = ppd_sigma_tr_f32(t_b), σ_rot = ppd_sigma_rot_f32(t_b),
 * N = ppd_igso3_score_norm_f32(σ_rot);
 *   tr_loss  = mean_{b,c} (tr_pred − tr_score)² σ_tr²
 *   rot_loss = mean_{b,c} ((rot_pred − rot_score) / (N + 1e-5))²
 *   loss     = tr_weight tr_loss + rot_weight rot_loss
 *   tr_base_loss = mean tr_score² σ_tr²,  rot_base_loss = mean (rot_score / N)²  (no 1e-5)
 * Each element's terms are float32 (difference, square, σ², N + 1e-5, quotient); the means are
 * accumulated in double and rounded to float32 at the end.
 * d_tr_pred, d_rot_pred [B][3] (either may be NULL) receive ∂loss/∂pred:
 *   d_tr_pred  = tr_weight · 2 (tr_pred − tr_score) σ_tr² / (3B)
 *   d_rot_pred = rot_weight · 2 (rot_pred − rot_score) / (N + 1e-5)² / (3B)
 * in double from the float32 terms, rounded to float32. B >= 1. */
typedef struct {
    float loss, tr_loss, rot_loss;
    float tr_base_loss, rot_base_loss;
} ppd_diffusion_loss;

void ppd_diffusion_loss_forward_backward(const ppd_diffusion_cfg *c, const ppd_igso3 *T, int B,
                                         const float *t, const float *tr_pred,
                                         const float *rot_pred, const float *tr_score,
                                         const float *rot_score, ppd_diffusion_loss *out,
                                         float *d_tr_pred, float *d_rot_pred);

#ifdef __cplusplus
}
#endif

#endif
