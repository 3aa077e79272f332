/* tests/gpu/test_esm_residual_ln_gpu.c — the residual update fused with the LayerNorm after it
 * (ppd_cuda_esm_residual_layernorm_forward and `_to_bf16`, lib/nn/cuda/esm_residual_ln.cu)
 * against the CPU's two ops in sequence (lib/esm/forward.c: ppd_esm_residual_forward, then
 * ppd_esm_layernorm_forward).
 *
 * Widths: the vector kernel with each register bound used exactly (d = 1280: 10 float4 groups a
 * lane) and with a partly used one (d = 200: 50 groups over 32 lanes; d = 2560, the 3B's), and
 * the scalar fallbacks (d = 130, not a multiple of 4; d = 3200, past the largest bound). The
 * output may be y itself (the layer loop's fc2 output in fp32 mode).
 *
 * Truth: x after the update is two float additions, the CPU's bits exactly (on a GPU too: no
 * product to contract). The normalised output: 1e-6 of the largest (the statistics are sums in
 * double in another order), as the LayerNorm's own check; bf16: the fp32 output's rounding,
 * within one bf16 step. */
#include "../../lib/esm/esm_internal.h"
#include "gpu_test.h"
#include "ppdock/esm_cuda.h"
#include "ppdock/half.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check_case(int64_t N, int d, int out_is_y) {
    char name[128], tag[32];
    snprintf(tag, sizeof tag, "d%d%s", d, out_is_y ? "_in_place" : "");
    ppd_rng r;
    ppd_rng_seed(&r, 700 + (uint64_t)d);
    size_t n = (size_t)N * d;
    float *x = rand_floats(&r, n, 3.0), *y = rand_floats(&r, n, 1.0),
          *rb = rand_floats(&r, (size_t)d, 0.5), *w = rand_floats(&r, (size_t)d, 1.0),
          *b = rand_floats(&r, (size_t)d, 1.0), *xc = malloc(n * 4), *ref = malloc(n * 4),
          *got = malloc(n * 4);
    uint16_t *got16 = malloc(n * 2);
    memcpy(xc, x, n * 4);
    ppd_esm_residual_forward(xc, y, rb, N, d, 1);
    ppd_esm_layernorm_forward(ref, xc, w, b, N, d, 1);

    ppd_device_arena a;
    snprintf(name, sizeof name, "gpu_esm_residual_layernorm_%s", tag);
    if (ppd_device_arena_create(&a, n * 14 + (size_t)d * 12 + 16 * PPD_DEVICE_ALIGN) != PPD_OK) {
        report(name, 0, "arena: %s", ppd_errmsg());
        goto out;
    }
    float *d_x = dev_copy(&a, x, n * 4), *d_y = dev_copy(&a, y, n * 4),
          *d_rb = dev_copy(&a, rb, (size_t)d * 4), *d_w = dev_copy(&a, w, (size_t)d * 4),
          *d_b = dev_copy(&a, b, (size_t)d * 4), *d_o = dev_copy(&a, NULL, n * 4);
    uint16_t *d_o16 = dev_copy(&a, NULL, n * 2);
    if (!d_x || !d_y || !d_rb || !d_w || !d_b || !d_o || !d_o16) {
        report(name, 0, "device buffers: %s", ppd_errmsg());
        goto out_arena;
    }
    /* bf16 first, then x and y restored for the fp32 run */
    float *out = out_is_y ? d_y : d_o;
    if (ppd_cuda_esm_residual_layernorm_forward_to_bf16(d_o16, d_x, d_y, d_rb, d_w, d_b, N, d,
                                                        NULL) ||
        ppd_device_synchronize() || ppd_device_download(got16, d_o16, n * 2) ||
        ppd_device_upload(d_x, x, n * 4) ||
        ppd_cuda_esm_residual_layernorm_forward(out, d_x, d_y, d_rb, d_w, d_b, N, d, NULL) ||
        ppd_device_synchronize() || ppd_device_download(got, d_x, n * 4)) {
        report(name, 0, "%s", ppd_errmsg());
        goto out_arena;
    }
    size_t off = 0;
    for (size_t i = 0; i < n; i++) off += memcmp(&got[i], &xc[i], 4) != 0;
    snprintf(name, sizeof name, "gpu_esm_residual_layernorm_updates_x_exactly_%s", tag);
    report(name, off == 0, "%zu of %zu elements of x differ from the CPU's residual update", off,
           n);
    snprintf(name, sizeof name, "gpu_esm_residual_layernorm_matches_cpu_%s", tag);
    fetch_close(name, out, ref, (int64_t)n, 1e-6);
    size_t far = 0;
    for (size_t i = 0; i < n; i++) {
        int diff = abs((int)ppd_f32_to_bf16(ref[i]) - (int)got16[i]);
        far += diff > 1;
    }
    snprintf(name, sizeof name, "gpu_esm_residual_layernorm_to_bf16_matches_cpu_%s", tag);
    report(name, far == 0, "%zu of %zu bf16 outputs more than one step from the CPU's, rounded",
           far, n);
out_arena:
    ppd_device_arena_destroy(&a);
out:
    free(x), free(y), free(rb), free(w), free(b), free(xc), free(ref), free(got), free(got16);
}

void check_esm_residual_layernorm(void) {
    check_case(37, 1280, 0);
    check_case(37, 1280, 1);
    check_case(61, 200, 0);
    check_case(9, 2560, 1);
    check_case(23, 130, 0);
    check_case(5, 3200, 1);
}
