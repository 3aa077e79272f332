/* Adam and gradient-norm clipping, CPU reference (ppdock/adam.h). */
#include "ppdock/adam.h"

#include <math.h>

void ppd_adam_step(float *p, const float *g, float *m, float *v, size_t n, const ppd_adam_config *c,
                   uint64_t step) {
    const float b1 = (float)c->beta1, b2 = (float)c->beta2, wd = (float)c->weight_decay;
    const double bc1 = 1.0 - pow(c->beta1, (double)step), bc2 = 1.0 - pow(c->beta2, (double)step);
    const float step_size = (float)(c->lr / bc1), bc2_sqrt = (float)sqrt(bc2), eps = (float)c->eps;
    const float one_b1 = (float)(1.0 - c->beta1), one_b2 = (float)(1.0 - c->beta2);
#pragma omp parallel for schedule(static) if (n >= 1 << 16)
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        if (wd != 0.0f) {
            float d = wd * p[i];
            gi = gi + d;
        }
        float mb = b1 * m[i], ga = one_b1 * gi; /* torch 1.13: m.mul_(b1).add_(g, alpha=1-b1) */
        m[i] = mb + ga;
        float vv = b2 * v[i], gg = gi * gi, add = one_b2 * gg;
        v[i] = vv + add;
        float den = sqrtf(v[i]) / bc2_sqrt;
        den = den + eps;
        float upd = m[i] / den;
        upd = step_size * upd;
        p[i] = p[i] - upd;
    }
}

double ppd_clip_grad_norm(float *g, const size_t *offset, const size_t *numel, int count,
                          double max_norm) {
    /* torch: norms = [‖g_i‖ (float32)], total = ‖stack(norms)‖ (float32) */
    float total2 = 0.0f;
    for (int t = 0; t < count; t++) {
        double s = 0.0;
        const float *x = g + offset[t];
        for (size_t i = 0; i < numel[t]; i++) s += (double)x[i] * x[i];
        float nrm = (float)sqrt(s);
        total2 = total2 + nrm * nrm;
    }
    float total = sqrtf(total2);
    float coef = (float)max_norm / (total + 1e-6f);
    if (coef < 1.0f)
        for (int t = 0; t < count; t++) {
            float *x = g + offset[t];
            for (size_t i = 0; i < numel[t]; i++) x[i] = x[i] * coef;
        }
    return total;
}
