/* ppdock/kernels/esm_ops.h — per-element bodies of the ESM-2 forward pass (spec esm2.md §2),
 * shared by the CPU loops in lib/esm/ and the CUDA twins in lib/nn/cuda/esm_layers.cu (DESIGN.md
 * rule 5).
 *
 * Every body evaluates float32 in the order PyTorch fp32 does; the comment above each says which.
 * Products that feed an addition go through PPD_MUL (kernels/hd.h) so that nvcc cannot contract
 * them into an FMA (it does by default, --fmad=true; gcc here uses -ffp-contract=off): on the GPU
 * the macro is __fmul_rn, which is never contracted, on the CPU a plain multiply. The RoPE tables
 * are computed on the host for both engines, so the bodies give the same bits on both. exp and
 * erf are written out here (ppd_esm_expf, ppd_esm_erff) so that the CPU loops vectorise.
 */
#ifndef PPDOCK_KERNELS_ESM_OPS_H
#define PPDOCK_KERNELS_ESM_OPS_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "ppdock/kernels/hd.h"

/* c ? x : y without a branch. A plain ?: between two computed values leaves a branch in the
 * loop under gcc's default -ftrapping-math (it will not speculate the arms), which stops
 * vectorisation; a bit-mask select does not. */
static inline PPD_HD float ppd_esm_select(int c, float x, float y) {
#ifdef __CUDACC__
    return c ? x : y;
#else
    uint32_t xb, yb, m = (uint32_t)0 - (uint32_t)(c != 0);
    memcpy(&xb, &x, sizeof xb);
    memcpy(&yb, &y, sizeof yb);
    uint32_t r = (xb & m) | (yb & ~m);
    float f;
    memcpy(&f, &r, sizeof f);
    return f;
#endif
}

/* Token-dropout rescale of the embedding (spec §2.2): 1 - 0.15 * 0.8 as float32. */
#define PPD_ESM_TOKEN_DROPOUT_KEEP 0.88f
/* LayerNorm epsilon of every ESM-2 LayerNorm (spec §2.3.1). */
#define PPD_ESM_LN_EPS 1e-5f

/* x = (e * 0.88) / div, two roundings (fair-esm: `x * (1 - 0.12)`, then `/ (1 - ratio)`).
 * div = 1 - (#<mask> / #non-pad tokens) of the row, exactly 1.0f when there is no <mask>;
 * <mask> rows themselves are zero before the scale. */
static inline PPD_HD float ppd_esm_embed_elem(float e, float div) {
    float s = e * PPD_ESM_TOKEN_DROPOUT_KEEP;
    return s / div;
}

/* LayerNorm of one element given its row's mean and rstd = 1 / sqrtf(biased var + 1e-5):
 * ((x - mean) * rstd) * w + b. */
static inline PPD_HD float ppd_esm_layernorm_elem(float x, float mean, float rstd, float w,
                                                  float b) {
    float c = x - mean;
    float n = PPD_MUL(c, rstd);
    float y = PPD_MUL(n, w);
    return y + b;
}

/* exp(x) for -2^21 <= x <= 0 (softmax numerators), branch-free so that CPU loops vectorise:
 * Cody-Waite reduction x = n ln2 + r with n = round(x / ln2) (the 1.5 * 2^23 trick, ties to even),
 * a degree-7 polynomial for e^r on [-ln2/2, ln2/2] (Cephes' expf coefficients), then a 2^n scale
 * built in the exponent bits. Max error 0.97 ulp over [-87, 0] (checked against exp in double
 * on 4e6 points). Below -87.3 the exponent is held at 2^-126, giving at most 1.7e-38 instead of a
 * smaller number: far below one ulp of a softmax sum (>= 1). (The clamp acts on the exponent
 * after the polynomial: gcc 12 then if-converts and vectorises the loop, which it does not for a
 * clamp of x.) No libm, so the CPU and GPU results agree up to the PPD_MUL guarantees. */
static inline PPD_HD float ppd_esm_expf(float x) {
    float t = x * 1.44269504088896341f;
    float n = (t + 12582912.0f) - 12582912.0f;
    float r = x - PPD_MUL(n, 0.693359375f);
    r = r - PPD_MUL(n, -2.12194440e-4f);
    float p = 1.9875691500e-4f;
    p = PPD_MUL(p, r) + 1.3981999507e-3f;
    p = PPD_MUL(p, r) + 8.3334519073e-3f;
    p = PPD_MUL(p, r) + 4.1665795894e-2f;
    p = PPD_MUL(p, r) + 1.6666665459e-1f;
    p = PPD_MUL(p, r) + 5.0000001201e-1f;
    float z = r * r;
    float y = (PPD_MUL(p, z) + r) + 1.0f;
    n = n > -126.0f ? n : -126.0f;
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return y * scale;
}

/* erf(x) in float32, branch-free so that CPU loops vectorise (glibc's erff does not). Max error
 * 1.8 ulp (against erf in double, 4e6 points in [0, 4.5]; erf is odd); glibc's erff and Sleef's
 * are within 1 ulp, so a GELU differs from PyTorch's by at most 2.4e-7 abs over [-10, 10].
 *   |x| < 1:      erf = a + a Q(a^2), Q a degree-6 fit of erf(a)/a - 1 (error 1.2e-9);
 *   1 <= |x| < 4: erf = 1 - exp(-a^2) R(1/a), R a degree-10 fit of erfc(a) exp(a^2) in 1/a
 *                 (relative error 1.3e-9), exp by ppd_esm_expf;
 *   |x| >= 4:     erf = 1 (as in float32 from 3.92 on).
 * Coefficients: least-squares fits with error reweighting, rounded to float32. The CPU computes
 * both ranges and selects bitwise; the one not taken may be inf or NaN (x = 0, huge |x|), which
 * the select discards. The pieces are separate bodies (a = |x|) so that the GPU's bias + GELU can
 * run the far one, four times the near one's work, only for the elements that need it
 * (lib/nn/cuda/esm_gelu.cu); ppd_esm_erff is their composition for everyone else. */
static inline PPD_HD float ppd_esm_erf_near(float a) {
    float u = a * a;
    float q = 7.889118569437414e-05f;
    q = PPD_MUL(q, u) + -0.0008020841050893068f;
    q = PPD_MUL(q, u) + 0.005189535208046436f;
    q = PPD_MUL(q, u) + -0.026854444295167923f;
    q = PPD_MUL(q, u) + 0.11283600330352783f;
    q = PPD_MUL(q, u) + -0.3761262595653534f;
    q = PPD_MUL(q, u) + 0.12837916612625122f;
    return a + PPD_MUL(a, q);
}

static inline PPD_HD float ppd_esm_erf_far(float a) {
    float u = a * a;
    float t = 1.0f / a;
    float r = -0.03380413353443146f;
    r = PPD_MUL(r, t) + 0.2372840791940689f;
    r = PPD_MUL(r, t) + -0.7357312440872192f;
    r = PPD_MUL(r, t) + 1.305285096168518f;
    r = PPD_MUL(r, t) + -1.403335452079773f;
    r = PPD_MUL(r, t) + 0.8173331022262573f;
    r = PPD_MUL(r, t) + -0.03141818568110466f;
    r = PPD_MUL(r, t) + -0.2968325912952423f;
    r = PPD_MUL(r, t) + 0.005303992889821529f;
    r = PPD_MUL(r, t) + 0.5634600520133972f;
    r = PPD_MUL(r, t) + 3.880750227835961e-05f;
    return 1.0f - PPD_MUL(ppd_esm_expf(-u), r);
}

/* Whether a = |x| takes the far range: 1 <= a < 4 (false for NaN, whose erf is the 1 below). */
static inline PPD_HD int ppd_esm_erf_is_far(float a) {
    return a >= 1.0f && a < 4.0f;
}

/* erf(x) from a = |x| and the two ranges' values (`far` is ignored where a is not in its range,
 * so a caller that skipped it may pass anything there). */
static inline PPD_HD float ppd_esm_erf_join(float x, float a, float near, float far) {
    float res = ppd_esm_select(a < 1.0f, near, far);
    res = ppd_esm_select(a < 4.0f, res, 1.0f);
    return copysignf(res, x);
}

static inline PPD_HD float ppd_esm_erff(float x) {
    float a = fabsf(x);
    return ppd_esm_erf_join(x, a, ppd_esm_erf_near(a), ppd_esm_erf_far(a));
}

/* sqrt(2) rounded to float32 (1.41421354f), fair-esm's divisor in its GELU, and 1/that rounded
 * to float32. */
#define PPD_ESM_SQRT2     1.41421356237309505f
#define PPD_ESM_INV_SQRT2 0.707106781186547524f

/* z / PPD_ESM_SQRT2 without a division: q = z r (r = PPD_ESM_INV_SQRT2), then one correction,
 * q + (z - q sqrt2) r, both steps fused multiply-adds. For 2^-100 <= |z| <= FLT_MAX that is the
 * correctly rounded quotient, the true division's bits: checked on all 2^32 floats (0
 * mismatches; below 2^-100 the remainder underflows and 3 million differ) by `make test-long`
 * and on a dense subset by `make test` (tests/unit/test_esm.c). Other z (tiny, inf, NaN) divide.
 * The GPU's GELU uses it (a division there is a reciprocal, five FMAs and a range check); the CPU,
 * which has no FMA in its baseline build, divides. */
static inline PPD_HD float ppd_esm_div_sqrt2_fma(float z) {
    float a = fabsf(z);
    if (!(a >= 0x1p-100f && a <= 0x1.fffffep127f)) return z / PPD_ESM_SQRT2;
    float q = PPD_MUL(z, PPD_ESM_INV_SQRT2);
    return fmaf(fmaf(-q, PPD_ESM_SQRT2, z), PPD_ESM_INV_SQRT2, q);
}

/* GELU's erf argument z / sqrt(2), a true division as fair-esm writes it (the same bits on the
 * GPU through ppd_esm_div_sqrt2_fma). */
static inline PPD_HD float ppd_esm_gelu_arg(float z) {
#ifdef __CUDA_ARCH__
    return ppd_esm_div_sqrt2_fma(z);
#else
    return z / PPD_ESM_SQRT2;
#endif
}

/* GELU from z and e = erf(z / sqrt(2)): (z * 0.5) * (1 + e). */
static inline PPD_HD float ppd_esm_gelu_from_erf(float z, float e) {
    float a = z * 0.5f;
    return a * (1.0f + e);
}

/* Exact (erf) GELU as fair-esm writes it: (z * 0.5) * (1 + erf(z / sqrt(2))), sqrt(2) rounded to
 * float32 (1.41421354f) and a true division; erf by ppd_esm_erff. */
static inline PPD_HD float ppd_esm_gelu_elem(float z) {
    return ppd_esm_gelu_from_erf(z, ppd_esm_erff(ppd_esm_gelu_arg(z)));
}

/* Projection output plus bias, then the query scale (spec §2.3.3: q = (uWq^T + bq) * hd^-0.5,
 * before RoPE; scale = 1 for k and v). */
static inline PPD_HD float ppd_esm_bias_scale_elem(float y, float bias, float scale) {
    float t = y + bias;
    return t * scale;
}

/* RoPE angle for position p and frequency inv_freq (spec §2.3.5): float32(p) * inv_freq, one
 * rounding; cos and sin of it are the table the pair rotation takes. */
static inline PPD_HD float ppd_esm_rope_angle(int p, float inv_freq) {
    return (float)p * inv_freq;
}

/* Rotate-half RoPE of one channel pair (x1 = x[i], x2 = x[i + hd/2]), PyTorch's
 * x * cos + rotate_half(x) * sin with each product rounded before the sum:
 *   y1 = x1*c - x2*s,   y2 = x2*c + x1*s. */
static inline PPD_HD float ppd_esm_rope_lo(float x1, float x2, float c, float s) {
    float a = PPD_MUL(x1, c);
    float b = PPD_MUL(x2, s);
    return a - b;
}
static inline PPD_HD float ppd_esm_rope_hi(float x1, float x2, float c, float s) {
    float a = PPD_MUL(x2, c);
    float b = PPD_MUL(x1, s);
    return a + b;
}

/* Softmax numerator exp(s - max) of one score; the row is then scaled by 1 / sum (the reciprocal
 * is one rounding, the product another, as PyTorch's CPU kernel does). */
static inline PPD_HD float ppd_esm_softmax_exp(float s, float max) {
    return ppd_esm_expf(s - max);
}

/* Residual update x + (y + bias) of the out-projection and fc2 (spec §2.3.10/13). */
static inline PPD_HD float ppd_esm_residual_elem(float x, float y, float bias) {
    float t = y + bias;
    return x + t;
}

/* Window blending in an overlap (long-sequence policy "window", ppdock/esm.h): wa * a + wb * b
 * with wb = t = float32(k + 1) / float32(ov + 1) and wa = 1 - t, all in float32. */
static inline PPD_HD float ppd_esm_blend_elem(float a, float b, float wa, float wb) {
    float x = PPD_MUL(wa, a);
    float y = PPD_MUL(wb, b);
    return x + y;
}

#endif
