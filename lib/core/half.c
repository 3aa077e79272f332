/* float32 <-> fp16 / bf16 array conversions (see ppdock/half.h). */
#include "ppdock/half.h"

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
