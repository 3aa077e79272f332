/* ppdock/so3.h — real spherical harmonics (l <= 2) and real Wigner-3j symbols in e3nn 0.5.x
 * conventions (spec diffdock-pp.md §4). These fix the meaning of every l >= 1 feature of the
 * score model: with them, l = 1 features are plain Cartesian (x, y, z) vectors in the input frame.
 *
 * Spherical harmonics, "component" normalisation, normalize=True (spec §4.1):
 *   Y: (E, 9) = [Y0, Y1(3), Y2(5)]   vec: (E, 3)
 *   u = v / max(|v|, 1e-12);  Y0 = 1;  Y1 = √3 (x, y, z);
 *   Y2 = (√15 x z, √15 x y, √5 (y² − (x² + z²)/2), √15 y z, (√15/2)(z² − x²))
 * A zero vector gives Y1 = Y2 = 0. Positions carry no gradient in training, so there is no
 * backward. The per-edge body is ppdock/kernels/so3.h (shared with the CUDA twin).
 *
 * Wigner-3j C^{l1 l2 l3} (spec §4.2): built in double at start-up by the spec's procedure
 * (Racah Clebsch–Gordan, change to the real basis, unit Frobenius norm), which reproduces e3nn's
 * wigner_3j to 1e-16. Stored dense as [2l1+1][2l2+1][2l3+1], row-major.
 */
#ifndef PPDOCK_SO3_H
#define PPDOCK_SO3_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { PPD_SH_LMAX = 2, PPD_SH_DIM = 9 };

void ppd_sh_forward(float *Y, const float *vec, int64_t E);

/* C^{l1 l2 l3} into out[(2l1+1)(2l2+1)(2l3+1)]; 0 <= l <= PPD_W3J_LMAX. Triples that violate
 * the triangle rule |l1 − l2| <= l3 <= l1 + l2 give all zeros (and return 0; 1 otherwise). */
enum { PPD_W3J_LMAX = 3 };
int ppd_wigner_3j(int l1, int l2, int l3, double *out);

#ifdef __cplusplus
}
#endif

#endif
