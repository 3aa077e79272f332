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

/* x86's F16C instruction VCVTPS2PH rounds 8 floats at a time to nearest even, with the scalar
 * rules above for overflow, subnormals and NaN (quiet bit forced, top payload kept): checked
 * equal to ppd_f32_to_f16 on all 2^32 inputs, and on a structured 3M-value subset in the unit
 * tests. It is the cost of esm-embed's cache writes: the scalar loop takes 3-4 ns a value, which
 * at the GPU's 150k+ residues/s (1280 values each) would be most of a CPU core. Chosen at run
 * time, so one binary runs on CPUs without it (x86 since 2012 has it). */
#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#define PPD_HAVE_F16C_PATH 1
__attribute__((target("avx,f16c"))) static void f32_to_f16_f16c(uint16_t *dst, const float *src,
                                                                size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm_storeu_si128((__m128i *)(dst + i), h);
    }
    for (; i < n; i++) dst[i] = ppd_f32_to_f16(src[i]);
}
#endif

int ppd_f16_array_uses_f16c(void) {
#ifdef PPD_HAVE_F16C_PATH
    /* F16C from CPUID leaf 1 (clang's __builtin_cpu_supports has no "f16c"); "avx" also checks
     * that the OS saves the ymm registers. Asked once: CPUID traps to the hypervisor in a VM, and
     * this runs for every record. */
    static int known = -1; /* -1 not asked yet; any thread may ask, all get the same answer */
    int has = __atomic_load_n(&known, __ATOMIC_RELAXED);
    if (has < 0) {
        unsigned a, b, c, d;
        has = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) && __builtin_cpu_supports("avx");
        __atomic_store_n(&known, has, __ATOMIC_RELAXED);
    }
    return has;
#else
    return 0;
#endif
}

void ppd_f32_to_f16_array(uint16_t *dst, const float *src, size_t n) {
#ifdef PPD_HAVE_F16C_PATH
    if (ppd_f16_array_uses_f16c()) {
        f32_to_f16_f16c(dst, src, n);
        return;
    }
#endif
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
