/* ppdock/half.h — float32 <-> IEEE binary16 (fp16) and bfloat16 conversions.
 *
 *   uint16_t h = ppd_f32_to_f16(x);     float y = ppd_f16_to_f32(h);
 *   uint16_t b = ppd_f32_to_bf16(x);    float z = ppd_bf16_to_f32(b);
 *
 * Narrowing rounds to nearest, ties to even (what PyTorch's .half()/.bfloat16() and numpy's
 * astype(float16) do). fp16: |x| >= 65520 becomes +-inf (65504 is the largest finite value),
 * values below 2^-14 become subnormals (spacing 2^-24) and below 2^-25 (inclusive, a tie to the
 * even zero) signed zero. NaN stays NaN (quiet, sign and top payload bits kept). Widening is
 * exact; it is the tensor-file reader's (lib/io/tensorfile.c, also declared in
 * ppdock/tensorfile.h). Narrowing is pure bit arithmetic: no hardware fp16, the same result on
 * every host; the bodies are PPD_HD so CUDA kernels can use them too.
 */
#ifndef PPDOCK_HALF_H
#define PPDOCK_HALF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ppdock/kernels/hd.h"

#ifdef __cplusplus
extern "C" {
#endif

static inline PPD_HD uint32_t ppd_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline PPD_HD uint16_t ppd_f32_to_f16(float f) {
    uint32_t x = ppd_f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    x &= 0x7fffffffu;
    if (x >= 0x7f800000u) /* inf, NaN (quiet bit forced) */
        return (uint16_t)(sign | (x > 0x7f800000u ? 0x7e00u | ((x >> 13) & 0x3ffu) : 0x7c00u));
    if (x >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 rounds to inf */
    if (x < 0x38800000u) {                                   /* below 2^-14: subnormal or 0 */
        if (x < 0x33000000u) return (uint16_t)sign;          /* below 2^-25 */
        uint32_t m = (x & 0x7fffffu) | 0x800000u;
        uint32_t s = 126u - (x >> 23); /* 14..24: value = m * 2^-24 >> s */
        uint32_t q = m >> s, rem = m & ((1u << s) - 1u), half = 1u << (s - 1u);
        if (rem > half || (rem == half && (q & 1u))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t h = ((x >> 23) - 112u) << 10 | ((x >> 13) & 0x3ffu);
    uint32_t rem = x & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++; /* carry into the exponent is right */
    return (uint16_t)(sign | h);
}

static inline PPD_HD uint16_t ppd_f32_to_bf16(float f) {
    uint32_t x = ppd_f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet NaN */
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

/* Exact widening (lib/io/tensorfile.c). */
float ppd_f16_to_f32(uint16_t h);
float ppd_bf16_to_f32(uint16_t b);

/* Array forms (n elements; dst and src must not overlap). ppd_f32_to_f16_array gives the scalar
 * function's bits and uses x86's F16C instructions where the CPU has them (8 values an
 * instruction; ppd_f16_array_uses_f16c says whether it does, for tests and reports). */
int ppd_f16_array_uses_f16c(void);
void ppd_f32_to_f16_array(uint16_t *dst, const float *src, size_t n);
void ppd_f16_to_f32_array(float *dst, const uint16_t *src, size_t n);
void ppd_f32_to_bf16_array(uint16_t *dst, const float *src, size_t n);
void ppd_bf16_to_f32_array(float *dst, const uint16_t *src, size_t n);

#ifdef __cplusplus
}
#endif

#endif
