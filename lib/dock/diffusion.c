/* Noise schedule, noising, targets and loss of the score model (see ppdock/diffusion.h). */
#include "ppdock/diffusion.h"

#include <assert.h>
#include <math.h>

ppd_diffusion_cfg ppd_diffusion_cfg_default(void) {
    return (ppd_diffusion_cfg){.tr_s_min = 0.01,
                               .tr_s_max = 30.0,
                               .rot_s_min = 0.01,
                               .rot_s_max = 1.65,
                               .tr_weight = 0.5,
                               .rot_weight = 0.5};
}

/* ---- schedule ------------------------------------------------------------------------------ */

double ppd_sigma_tr(double t, const ppd_diffusion_cfg *c) {
    return pow(c->tr_s_min, 1.0 - t) * pow(c->tr_s_max, t);
}

double ppd_sigma_rot(double t, const ppd_diffusion_cfg *c) {
    return pow(c->rot_s_min, 1.0 - t) * pow(c->rot_s_max, t);
}

float ppd_sigma_tr_f32(float t, const ppd_diffusion_cfg *c) {
    return powf((float)c->tr_s_min, 1.0f - t) * powf((float)c->tr_s_max, t);
}

float ppd_sigma_rot_f32(float t, const ppd_diffusion_cfg *c) {
    return powf((float)c->rot_s_min, 1.0f - t) * powf((float)c->rot_s_max, t);
}

double ppd_g_tr(double sigma_tr, const ppd_diffusion_cfg *c) {
    return sigma_tr * sqrt(2.0 * log(c->tr_s_max / c->tr_s_min));
}

double ppd_g_rot(double sigma_rot, const ppd_diffusion_cfg *c) {
    return 2.0 * sigma_rot * sqrt(log(c->rot_s_max / c->rot_s_min));
}

float ppd_g_tr_f32(double sigma_tr, const ppd_diffusion_cfg *c) {
    const float scale = sqrtf(2.0f * logf((float)(c->tr_s_max / c->tr_s_min)));
    return (float)sigma_tr * scale;
}

float ppd_g_rot_f32(double sigma_rot, const ppd_diffusion_cfg *c) {
    const float scale = sqrtf(logf((float)(c->rot_s_max / c->rot_s_min)));
    return (float)(2.0 * sigma_rot) * scale; /* 2 * rot_s is a Python float product */
}

/* ---- rigid update -------------------------------------------------------------------------- */

void ppd_axis_angle_to_matrix(const double v[3], double R[3][3]) {
    const double angle = sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
    const double half = 0.5 * angle;
    /* sin(θ/2)/θ; below 1e-6 its Taylor form (PyTorch3D's switch), which also covers θ = 0. */
    const double k = angle < 1e-6 ? 0.5 - angle * angle / 48.0 : sin(half) / angle;
    const double r = cos(half), i = v[0] * k, j = v[1] * k, q = v[2] * k;
    const double two_s = 2.0 / (r * r + i * i + j * j + q * q);
    R[0][0] = 1.0 - two_s * (j * j + q * q);
    R[0][1] = two_s * (i * j - q * r);
    R[0][2] = two_s * (i * q + j * r);
    R[1][0] = two_s * (i * j + q * r);
    R[1][1] = 1.0 - two_s * (i * i + q * q);
    R[1][2] = two_s * (j * q - i * r);
    R[2][0] = two_s * (i * q - j * r);
    R[2][1] = two_s * (j * q + i * r);
    R[2][2] = 1.0 - two_s * (i * i + j * j);
}

void ppd_rigid_update(float *pos, int64_t n, const float tr_update[3], const float rot_update[3]) {
    // pos: (n, 3)
    assert(n >= 0);
    if (n == 0) return;
    double mu[3] = {0.0, 0.0, 0.0};
    for (int64_t a = 0; a < n; a++)
        for (int k = 0; k < 3; k++) mu[k] += (double)pos[3 * a + k];
    for (int k = 0; k < 3; k++) mu[k] /= (double)n;
    const double v[3] = {rot_update[0], rot_update[1], rot_update[2]};
    double R[3][3];
    ppd_axis_angle_to_matrix(v, R);
    for (int64_t a = 0; a < n; a++) {
        float *p = pos + 3 * a;
        const double x[3] = {p[0] - mu[0], p[1] - mu[1], p[2] - mu[2]};
        for (int k = 0; k < 3; k++) { /* row vector times Rᵀ: (R x)_k */
            const double y = R[k][0] * x[0] + R[k][1] * x[1] + R[k][2] * x[2];
            p[k] = (float)(y + (double)tr_update[k] + mu[k]);
        }
    }
}

/* ---- noising ------------------------------------------------------------------------------- */

void ppd_noise_complex_given(float *pos, int64_t n, double t, const float tr_update[3],
                             const float rot_update[3], const ppd_diffusion_cfg *c,
                             const ppd_igso3 *T, ppd_noise *out) {
    out->t = t;
    out->sigma_tr = ppd_sigma_tr(t, c);
    out->sigma_rot = ppd_sigma_rot(t, c);
    ppd_rigid_update(pos, n, tr_update, rot_update);
    const double s2 = out->sigma_tr * out->sigma_tr; /* tr_s**2, a Python float */
    const double rv[3] = {rot_update[0], rot_update[1], rot_update[2]};
    double rs[3];
    ppd_igso3_score_vec(T, out->sigma_rot, rv, rs);
    for (int k = 0; k < 3; k++) {
        out->tr_update[k] = tr_update[k];
        out->rot_update[k] = rot_update[k];
        out->tr_score[k] = (float)(-(double)tr_update[k] / s2);
        out->rot_score[k] = (float)rs[k];
    }
}

void ppd_noise_complex(float *pos, int64_t n, double t, const ppd_diffusion_cfg *c,
                       const ppd_igso3 *T, ppd_rng *r, ppd_noise *out) {
    const double sigma_tr = ppd_sigma_tr(t, c), sigma_rot = ppd_sigma_rot(t, c);
    float tr[3], rot[3];
    for (int k = 0; k < 3; k++) tr[k] = (float)(sigma_tr * ppd_rng_normal(r));
    double rv[3];
    ppd_igso3_sample_vec(T, sigma_rot, r, rv);
    for (int k = 0; k < 3; k++) rot[k] = (float)rv[k];
    ppd_noise_complex_given(pos, n, t, tr, rot, c, T, out);
}

/* ---- loss ---------------------------------------------------------------------------------- */

void ppd_diffusion_loss_forward_backward(const ppd_diffusion_cfg *c, const ppd_igso3 *T, int B,
                                         const float *t, const float *tr_pred,
                                         const float *rot_pred, const float *tr_score,
                                         const float *rot_score, ppd_diffusion_loss *out,
                                         float *d_tr_pred, float *d_rot_pred) {
    // tr_pred, rot_pred, tr_score, rot_score, d_*: (B, 3)   t: (B)
    assert(B >= 1);
    const double count = 3.0 * (double)B;
    double tr = 0.0, rot = 0.0, tr_base = 0.0, rot_base = 0.0;
    for (int b = 0; b < B; b++) {
        const float sig_tr = ppd_sigma_tr_f32(t[b], c);
        const float sig_rot = ppd_sigma_rot_f32(t[b], c);
        const float norm = ppd_igso3_score_norm_f32(T, sig_rot);
        const float s2 = sig_tr * sig_tr;
        const float den = norm + 1e-5f;
        for (int k = 0; k < 3; k++) {
            const int e = 3 * b + k;
            const float dt = tr_pred[e] - tr_score[e];
            const float dr = rot_pred[e] - rot_score[e];
            const float qr = dr / den, qb = rot_score[e] / norm;
            tr += (double)(dt * dt * s2);
            rot += (double)(qr * qr);
            tr_base += (double)(tr_score[e] * tr_score[e] * s2);
            rot_base += (double)(qb * qb);
            if (d_tr_pred) d_tr_pred[e] = (float)(c->tr_weight * 2.0 * dt * (double)s2 / count);
            if (d_rot_pred)
                d_rot_pred[e] =
                    (float)(c->rot_weight * 2.0 * dr / ((double)den * (double)den) / count);
        }
    }
    out->tr_loss = (float)(tr / count);
    out->rot_loss = (float)(rot / count);
    out->loss = (float)(c->tr_weight * (tr / count) + c->rot_weight * (rot / count));
    out->tr_base_loss = (float)(tr_base / count);
    out->rot_base_loss = (float)(rot_base / count);
}
