/* Adam and gradient-norm clipping, CPU reference (ppdock/adam.h). */
#include "ppdock/adam.h"

#include <math.h>

void ppd_adam_consts(const ppd_adam_config *c, uint64_t step, ppd_adam_consts_t *k) {
    /* bias corrections in double, as Python floats; torch 1.13 then uses them as scalars */
    const double bc1 = 1.0 - pow(c->beta1, (double)step), bc2 = 1.0 - pow(c->beta2, (double)step);
    k->b1 = (float)c->beta1;
    k->b2 = (float)c->beta2;
    k->wd = (float)c->weight_decay;
    k->one_b1 = (float)(1.0 - c->beta1);
    k->one_b2 = (float)(1.0 - c->beta2);
    k->step_size = (float)(c->lr / bc1);
    k->bc2_sqrt = (float)sqrt(bc2);
    k->eps = (float)c->eps;
}

void ppd_adam_step(float *p, const float *g, float *m, float *v, size_t n, const ppd_adam_config *c,
                   uint64_t step) {
    ppd_adam_consts_t k;
    ppd_adam_consts(c, step, &k);
#pragma omp parallel for schedule(static) if (n >= 1 << 16)
    for (size_t i = 0; i < n; i++) ppd_adam_elem(&p[i], g[i], &m[i], &v[i], &k);
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
