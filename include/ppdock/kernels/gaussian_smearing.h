/* ppdock/kernels/gaussian_smearing.h — per-element body of the Gaussian distance smearing
 * (spec diffdock-pp.md §3.3):
 *
 *   out[e][g] = exp(gamma * (dist[e] - offset[g])^2)      dist: (E), offset: (G), out: (E, G)
 *
 * Evaluated in float32 in PyTorch's order: x = d - o; x2 = x * x; exp(gamma * x2). (The
 * reference computes `coeff * torch.pow(d - o, 2)`, and pow(., 2) is x * x.) No step of it can be
 * contracted into an FMA, so CPU and GPU feed bit-identical arguments to expf.
 *
 * expf: glibc's is within 1 ulp (glibc manual, "Known Maximum Errors in Math Functions"); CUDA's is
 * within 2 ulp over the full range (CUDA C Programming Guide, "Mathematical functions",
 * single precision, without -use_fast_math). CPU and GPU results therefore differ by at most
 * 3 ulp; results that underflow (gamma*x2 < about -103) are 0 or subnormal on both.
 */
#ifndef PPDOCK_KERNELS_GAUSSIAN_SMEARING_H
#define PPDOCK_KERNELS_GAUSSIAN_SMEARING_H

#include <math.h>

#include "ppdock/kernels/hd.h"

static inline PPD_HD float ppd_gaussian_smearing_elem(float d, float offset, float gamma) {
    float x = d - offset;
    float x2 = x * x;
    return expf(gamma * x2);
}

#endif
