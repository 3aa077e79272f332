/* ppdock/kernels/so3.h — per-edge body of the spherical harmonics (ppdock/so3.h, spec §4.1),
 * shared by the CPU loop and the CUDA kernel.
 *
 * Evaluated in float32 in e3nn 0.5.1's order: u = v / max(|v|, 1e-12) (torch's normalize:
 * norm = sqrt(x² + y² + z²) summed left to right), then the l = 2 terms from u with the
 * √3-scaled intermediate products, then each degree times √(2l + 1). The constants are float32
 * roundings of the same square roots e3nn uses, so CPU and GPU agree to a few ulp (sqrtf is
 * correctly rounded on both; nothing here may be contracted into an FMA, see kernels/hd.h).
 */
#ifndef PPDOCK_KERNELS_SO3_H
#define PPDOCK_KERNELS_SO3_H

#include <math.h>

#include "ppdock/kernels/hd.h"

static inline PPD_HD void ppd_sh_elem(const float *v, float *Y) {
    const float sqrt3 = 1.7320508075688772f, sqrt5 = 2.2360679774997896f;
    float xx = v[0] * v[0], yy = v[1] * v[1], zz = v[2] * v[2];
    float s = xx + yy;
    s = s + zz;
    float norm = sqrtf(s);
    if (norm < 1e-12f) norm = 1e-12f;
    float x = v[0] / norm, y = v[1] / norm, z = v[2] / norm;
    Y[0] = 1.0f;
    Y[1] = sqrt3 * x;
    Y[2] = sqrt3 * y;
    Y[3] = sqrt3 * z;
    float x2 = x * x, y2 = y * y, z2 = z * z;
    float xz = x * z, xy = x * y, yz = y * z;
    float x2z2 = x2 + z2;
    float half = 0.5f * x2z2;
    float s20 = sqrt3 * xz, s21 = sqrt3 * xy, s22 = y2 - half, s23 = sqrt3 * yz;
    float zmx = z2 - x2;
    float s24 = (sqrt3 / 2.0f) * zmx;
    Y[4] = sqrt5 * s20;
    Y[5] = sqrt5 * s21;
    Y[6] = sqrt5 * s22;
    Y[7] = sqrt5 * s23;
    Y[8] = sqrt5 * s24;
}

#endif
