/* ppdock/kernels/adam.h — the per-element Adam update (ppdock/adam.h), shared by the CPU loop in
 * lib/train/adam.c and the CUDA kernel in lib/nn/cuda/adam.cu (DESIGN.md rule 5). Every product
 * goes through PPD_MUL and sqrtf and division are IEEE on both sides (no --use_fast_math), so the
 * GPU's parameters and moments are bit-identical to the CPU's for the same gradients.
 */
#ifndef PPDOCK_KERNELS_ADAM_H
#define PPDOCK_KERNELS_ADAM_H

#include <math.h>

#include "ppdock/kernels/hd.h"

/* The step's constants in float32, computed once per step on the host (ppd_adam_consts). */
typedef struct {
    float b1, b2, wd, one_b1, one_b2, step_size, bc2_sqrt, eps;
} ppd_adam_consts_t;

/* One element: p, m, v updated in place from gradient g, torch 1.13's single-tensor arithmetic:
 * g += wd p (when wd != 0); m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g g;
 * p -= step_size * (m / (sqrt(v) / bc2_sqrt + eps)). */
static inline PPD_HD void ppd_adam_elem(float *p, float g, float *m, float *v,
                                        const ppd_adam_consts_t *k) {
    if (k->wd != 0.0f) {
        float d = PPD_MUL(k->wd, *p);
        g = g + d;
    }
    float mb = PPD_MUL(k->b1, *m), ga = PPD_MUL(k->one_b1, g);
    *m = mb + ga;
    float vv = PPD_MUL(k->b2, *v), gg = PPD_MUL(g, g), add = PPD_MUL(k->one_b2, gg);
    *v = vv + add;
    float den = sqrtf(*v) / k->bc2_sqrt;
    den = den + k->eps;
    float upd = *m / den;
    upd = PPD_MUL(k->step_size, upd);
    *p = *p - upd;
}

#endif
