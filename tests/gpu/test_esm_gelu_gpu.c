/* tests/gpu/test_esm_gelu_gpu.c — ESM-2's bias + GELU (lib/nn/cuda/esm_gelu.cu) against the CPU's
 * loop (lib/esm/forward.c): fp32 in place, and `_bf16` (bf16 in and out, as the bf16 mode runs it
 * on the bf16 fc1 GEMM's output).
 *
 * The kernel queues the elements whose erf needs the far range (1 <= |x| < 4) and runs that
 * range only for them, and divides by sqrt(2) with an FMA step instead of a division: both
 * must leave every element's value the CPU's. So the inputs cover every range and edge of the
 * body: near, far and saturated values, the range boundaries to the ulp, tiny values (below the
 * FMA step's 2^-100), signed zeros, huge values, infinities and NaN, and rows where no element,
 * a few, or every element is far (the queue empty, partly full, full). Shapes: the vector path
 * (F a multiple of 8, a row count that is not), its column chunks past F, and the element-wise
 * fallback (F not a multiple of 8; a misaligned output).
 *
 * Truth: the CPU's output. On the emulation every element must have the CPU's bits (NaN for
 * NaN). On a GPU, nvcc contracts one product-and-add inside the exp body into an FMA (its range
 * reduction), which can move a result by an ulp: 1e-6 relative there, as the other ESM ops (one
 * bf16 step for the bf16 output). */
#include "../../lib/esm/esm_internal.h"
#include "gpu_test.h"
#include "ppdock/esm_cuda.h"
#include "ppdock/half.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Element i of the input: a mix by row so that some rows have no far element and some only
 * far ones; specials in the columns whose bias is zero (every 4th), so that h + b keeps them. */
static float gelu_input(ppd_rng *r, int64_t row, int col) {
    static const float special[] = {0.0f,         -0.0f,       1e-35f,      -3e-38f,
                                    1e-45f,       1e30f,       -1e30f,      INFINITY,
                                    -INFINITY,    NAN,         1.41421354f, 1.41421342f,
                                    -1.41421366f, 5.65685415f, 5.65685463f, -5.65685368f};
    int kind = (int)(row % 4);
    if (kind == 0) return (float)(0.3 * ppd_rng_normal(r)); /* near: |x| < 1 mostly */
    if (kind == 1) return (float)(2.0 + 3.0 * ppd_rng_uniform(r)) * (col % 2 ? 1.0f : -1.0f);
    if (col % 4 == 0 && ppd_rng_below(r, 3) == 0)
        return special[ppd_rng_below(r, sizeof special / sizeof *special)];
    return (float)(12.0 * (ppd_rng_uniform(r) - 0.5)); /* every range, saturated included */
}

/* The kernel's output (fp32, or bf16 widened) against the CPU's: bit for bit on the emulation,
 * within gpu_tol relative on a GPU; NaN where the CPU has NaN. */
static void compare(const char *name, const float *gpu, const float *cpu, int64_t n,
                    double gpu_tol) {
    int64_t bits_off = 0, nan_off = 0;
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(cpu[i]) || isnan(gpu[i])) {
            nan_off += isnan(cpu[i]) != isnan(gpu[i]);
            continue;
        }
        uint32_t a, b;
        memcpy(&a, &gpu[i], 4), memcpy(&b, &cpu[i], 4);
        bits_off += a != b;
        if (isinf(cpu[i]) || isinf(gpu[i])) {
            if (a != b) worst = INFINITY;
            continue;
        }
        double rel = fabs((double)gpu[i] - cpu[i]) / fmax(fabs((double)cpu[i]), 1e-30);
        if (rel > worst) worst = rel;
    }
    int ok = nan_off == 0 && (gpu_emulated ? bits_off == 0 : worst <= gpu_tol);
    report_measured(name, ok,
                    "%lld of %lld elements differ in their bits, worst relative %.3g, "
                    "%lld NaN mismatches",
                    (long long)bits_off, (long long)n, worst, (long long)nan_off);
}

static void check_case(const char *tag, int64_t N, int F, int misalign) {
    char name[128];
    ppd_rng r;
    ppd_rng_seed(&r, 4242 + (uint64_t)F);
    int64_t n = N * F;
    float *h = malloc((size_t)n * 4), *b = malloc((size_t)F * 4), *cpu = malloc((size_t)n * 4),
          *got = malloc((size_t)n * 4), *cpu16 = malloc((size_t)n * 4);
    uint16_t *got16 = malloc((size_t)n * 2), *h16 = malloc((size_t)n * 2);
    for (int64_t i = 0; i < N; i++)
        for (int c = 0; c < F; c++) h[i * F + c] = gelu_input(&r, i, c);
    for (int c = 0; c < F; c++) b[c] = c % 4 == 0 ? 0.0f : (float)(0.5 * ppd_rng_normal(&r));
    memcpy(cpu, h, (size_t)n * 4);
    ppd_esm_bias_gelu_forward(cpu, b, N, F, 1);
    /* the bf16 variant's truth: the CPU's output on the widened bf16 input, rounded */
    for (int64_t i = 0; i < n; i++)
        h16[i] = ppd_f32_to_bf16(h[i]), cpu16[i] = ppd_bf16_to_f32(h16[i]);
    ppd_esm_bias_gelu_forward(cpu16, b, N, F, 1);
    for (int64_t i = 0; i < n; i++) cpu16[i] = ppd_bf16_to_f32(ppd_f32_to_bf16(cpu16[i]));

    ppd_device_arena a;
    snprintf(name, sizeof name, "gpu_esm_bias_gelu_%s", tag);
    if (ppd_device_arena_create(&a, (size_t)n * 8 + (size_t)F * 4 + 8 * PPD_DEVICE_ALIGN) !=
        PPD_OK) {
        report(name, 0, "arena: %s", ppd_errmsg());
        goto out;
    }
    float *d_h = dev_copy(&a, h, (size_t)n * 4), *d_b = dev_copy(&a, b, (size_t)F * 4);
    uint16_t *d_h16 = dev_copy(&a, h16, (size_t)n * 2);
    /* misalign: the bf16 output 2 bytes past an aligned address (one bf16 element) */
    unsigned char *d_o = dev_copy(&a, NULL, (size_t)n * 2 + 16);
    uint16_t *d_o16 = d_o ? (uint16_t *)(d_o + (misalign ? 2 : 0)) : NULL;
    if (!d_h || !d_b || !d_o || !d_h16) {
        report(name, 0, "device buffers: %s", ppd_errmsg());
    } else if (ppd_cuda_esm_bias_gelu_forward_bf16(d_o16, d_h16, d_b, N, F, NULL) ||
               ppd_cuda_esm_bias_gelu_forward(d_h, d_b, N, F, NULL) || ppd_device_synchronize() ||
               ppd_device_download(got, d_h, (size_t)n * 4) ||
               ppd_device_download(got16, d_o16, (size_t)n * 2)) {
        report(name, 0, "%s", ppd_errmsg());
    } else {
        snprintf(name, sizeof name, "gpu_esm_bias_gelu_matches_cpu_bits_%s", tag);
        compare(name, got, cpu, n, 1e-6);
        for (int64_t i = 0; i < n; i++) got[i] = ppd_bf16_to_f32(got16[i]);
        snprintf(name, sizeof name, "gpu_esm_bias_gelu_bf16_matches_cpu_%s", tag);
        compare(name, got, cpu16, n, 8e-3); /* GPU: one bf16 step where fp32 moved an ulp */
    }
    ppd_device_arena_destroy(&a);
out:
    free(h), free(b), free(cpu), free(got), free(got16), free(h16), free(cpu16);
}

void check_esm_bias_gelu(void) {
    /* blocks take 1,024 columns: F = 1280 is a full one and one with a single live warp; 520
     * ends inside a warp */
    check_case("vector", 203, 1280, 0);
    check_case("vector_partial", 37, 520, 0);
    check_case("fallback_width", 29, 36, 0); /* F not a multiple of 8 */
    check_case("fallback_misaligned", 17, 64, 1);
}
