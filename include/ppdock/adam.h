/* ppdock/adam.h — Adam and global gradient-norm clipping with PyTorch's arithmetic
 * (torch.optim.Adam, foreach=False, amsgrad=False; torch.nn.utils.clip_grad_norm_), on one
 * flat parameter buffer (spec diffdock-pp.md §6).
 *
 * Adam step t (1-based) for every element, all in float32 as PyTorch's single-tensor path:
 *   g  = grad + weight_decay * p                       (L2 penalty, when weight_decay != 0)
 *   m  = beta1 * m + (1 - beta1) * g                   (torch 1.13: mul_, add_ with alpha)
 *   v  = beta2 * v + (1 - beta2) * g * g
 *   bc1 = 1 - beta1^t,  bc2 = 1 - beta2^t              (double, as Python floats)
 *   p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)
 * Clipping: total = sqrt(Σ_tensors ‖g_tensor‖²) (per-tensor L2 norms, then the norm of those);
 * if max_norm / (total + 1e-6) < 1, every gradient is multiplied by that factor.
 * The ops cannot fail.
 */
#ifndef PPDOCK_ADAM_H
#define PPDOCK_ADAM_H

#include <stddef.h>
#include <stdint.h>

#include "ppdock/kernels/adam.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    double lr, beta1, beta2, eps, weight_decay;
} ppd_adam_config;

/* p, g, m, v: (n); step >= 1 is the number of this step (t above). */
void ppd_adam_step(float *p, const float *g, float *m, float *v, size_t n, const ppd_adam_config *c,
                   uint64_t step);

/* The float32 constants of step `step` (ppdock/kernels/adam.h), as ppd_adam_step computes them;
 * the CUDA twin takes them ready-made. */
void ppd_adam_consts(const ppd_adam_config *c, uint64_t step, ppd_adam_consts_t *k);

/* Global L2 norm over `count` tensors given by their offsets/sizes in g (PyTorch groups the
 * sum per tensor; the result differs from one flat sum only by rounding). Returns the norm
 * before clipping; scales g in place when it exceeds max_norm. */
double ppd_clip_grad_norm(float *g, const size_t *offset, const size_t *numel, int count,
                          double max_norm);

#ifdef __cplusplus
}
#endif

#endif
