/* float32 <-> fp16 / bf16 array conversions (see ppdock/half.h). */
#include "ppdock/half.h"

/* Widening is exact, so plain bit arithmetic; the tensor-file reader uses these too. */
float ppd_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13); /* inf, NaN (payload kept) */
    } else if (exp) {
        bits = sign | ((exp + 112u) << 23) | (man << 13); /* rebias 15 -> 127 */
    } else if (man == 0) {
        bits = sign;
    } else {
        /* subnormal: man * 2^-24, exact in float32 (a normal number there) */
        float v = (float)man * 0x1p-24f;
        return sign ? -v : v;
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

float ppd_bf16_to_f32(uint16_t b) {
    uint32_t bits = (uint32_t)b << 16; /* bf16 is the top half of a float32 */
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

void ppd_f32_to_f16_array(uint16_t *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = ppd_f32_to_f16(src[i]);
}

void ppd_f16_to_f32_array(float *dst, const uint16_t *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = ppd_f16_to_f32(src[i]);
}

void ppd_f32_to_bf16_array(uint16_t *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = ppd_f32_to_bf16(src[i]);
}

void ppd_bf16_to_f32_array(float *dst, const uint16_t *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = ppd_bf16_to_f32(src[i]);
}
