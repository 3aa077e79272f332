/* tests/gpu/test_esm_bf16_gpu.c — the ESM bf16 mode's own kernels.
 *
 * The tensor-core attention (ppd_cuda_esm_attention_bf16_forward, on q/k/v rounded to bf16 as
 * RoPE's `_to_bf16` twin writes them) against two independent truths:
 *  - a plain C loop of the same algorithm (q, k, v rounded to bf16, keys in tiles of
 *    PPD_CUDA_ESM_TC_KEY_TILE, the online softmax with exp(s - m) as 2^(s log2 e - m log2 e), p
 *    rounded to bf16, l the sum of the rounded p): this checks the kernel's fragment layout,
 *    tiling and masking; the tensor core sums in its own order and the GPU's ex2.approx is
 *    within 2 ulp of exp2f, so a p can differ in its last fp32 bit and flip its bf16 rounding
 *    now and then: bounded at 2e-3 of the largest output;
 *  - the CPU engine's fp32 attention (lib/esm): the error bf16 costs, bounded at 2e-2 (bf16 has
 *    8 significant bits: 4e-3 per rounding, averaged over the keys).
 * Sequences of 1 to 200 tokens cross the 64-key tiles and 64-row query blocks on both sides of
 * each boundary; head dimensions 16, 32, 64 and 128.
 *
 * The kernels that write bf16 from fp32 (LayerNorm, RoPE, attention `_to_bf16`): each element
 * is its fp32 twin's output rounded to bf16, on poisoned outputs (bias + GELU's bf16 variant:
 * tests/gpu/test_esm_gelu_gpu.c). The
 * two are separate instantiations of one kernel body, which nvcc may contract into FMAs
 * differently, so one bf16 step apart is allowed on a GPU; the emulation must match exactly. */
#include "../../lib/esm/esm_internal.h"
#include "gpu_test.h"
#include "ppdock/esm_cuda.h"
#include "ppdock/half.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float bf16_round(float x) {
    return ppd_bf16_to_f32(ppd_f32_to_bf16(x));
}

/* log2(e) in float32: the kernel's exponentials are 2^(s log2 e - m log2 e), the product and
 * sum fused (fmaf) */
#define LOG2E 1.44269504088896341f

/* The kernel's algorithm for one sequence of T token rows starting at row r0, head h. */
static void attention_bf16_reference(float *out, const float *qkv, int64_t r0, int T, int H, int hd,
                                     int h) {
    int d = H * hd, ld = 3 * d, KT = PPD_CUDA_ESM_TC_KEY_TILE;
    float *o = malloc((size_t)hd * sizeof *o), *s = malloc((size_t)KT * sizeof *s);
    for (int i = 0; i < T; i++) {
        const float *q = qkv + (r0 + i) * ld + h * hd;
        float m = 0.0f, l = 0.0f;
        for (int c = 0; c < hd; c++) o[c] = 0.0f;
        for (int k0 = 0; k0 < T; k0 += KT) {
            int nk = T - k0 < KT ? T - k0 : KT;
            float tmax = -INFINITY;
            for (int j = 0; j < nk; j++) {
                const float *k = qkv + (r0 + k0 + j) * ld + d + h * hd;
                float dot = 0.0f;
                for (int c = 0; c < hd; c++) dot += bf16_round(q[c]) * bf16_round(k[c]);
                s[j] = dot;
                if (dot > tmax) tmax = dot;
            }
            float mnew = k0 == 0 || tmax > m ? tmax : m;
            if (k0 > 0 && mnew > m) {
                float corr = exp2f((m - mnew) * LOG2E);
                l *= corr;
                for (int c = 0; c < hd; c++) o[c] *= corr;
            }
            m = mnew;
            for (int j = 0; j < nk; j++) {
                const float *v = qkv + (r0 + k0 + j) * ld + 2 * d + h * hd;
                float p = bf16_round(exp2f(fmaf(s[j], LOG2E, -(m * LOG2E))));
                l += p;
                for (int c = 0; c < hd; c++) o[c] += p * bf16_round(v[c]);
            }
        }
        for (int c = 0; c < hd; c++) out[(r0 + i) * d + h * hd + c] = o[c] * (1.0f / l);
    }
    free(o), free(s);
}

static void check_attention_bf16(int hd, int H, const int *T, int B) {
    char name[128];
    int d = H * hd;
    int64_t tok_off[16], N = 0;
    int T_max = 0;
    for (int b = 0; b < B; b++) {
        tok_off[b] = N, N += T[b];
        if (T[b] > T_max) T_max = T[b];
    }
    tok_off[B] = N;
    ppd_rng r;
    ppd_rng_seed(&r, 1000 + (uint64_t)hd);
    /* scores of a few units: a softmax that is neither flat nor one-hot */
    float *qkv = rand_floats(&r, (size_t)N * 3 * d, 2.0 / sqrt(sqrt((double)hd)));
    float *ref = malloc((size_t)N * d * 4), *f32 = malloc((size_t)N * d * 4);
    float *scores = malloc((size_t)T_max * T_max * 4);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) attention_bf16_reference(ref, qkv, tok_off[b], T[b], H, hd, h);
    ppd_esm_attention_forward(f32, qkv, tok_off, B, H, hd, scores, (int64_t)T_max * T_max, 1);

    /* a key tile of NaN rows after the last sequence: the kernel must not read past a
     * sequence's end (its last tile's missing keys are zeros, not memory) */
    int64_t n16 = (N + PPD_CUDA_ESM_TC_KEY_TILE) * 3 * d;
    uint16_t *qkv16 = malloc((size_t)n16 * 2);
    for (int64_t i = 0; i < n16; i++) qkv16[i] = i < N * 3 * d ? ppd_f32_to_bf16(qkv[i]) : 0x7fc0;

    ppd_device_arena a;
    size_t need = (size_t)n16 * 2 + (size_t)N * d * 4 + 16 * 8 + 4 * PPD_DEVICE_ALIGN;
    snprintf(name, sizeof name, "gpu_esm_attention_bf16_hd%d", hd);
    if (ppd_device_arena_create(&a, need) != PPD_OK) {
        report(name, 0, "arena: %s", ppd_errmsg());
        goto out;
    }
    uint16_t *d_qkv = dev_copy(&a, qkv16, (size_t)n16 * 2);
    int64_t *d_off = dev_copy(&a, tok_off, (size_t)(B + 1) * 8);
    float *d_out = dev_copy(&a, NULL, (size_t)N * d * 4); /* poisoned */
    if (!d_qkv || !d_off || !d_out) {
        report(name, 0, "device buffers: %s", ppd_errmsg());
    } else if (ppd_cuda_esm_attention_bf16_forward(d_out, d_qkv, d_off, B, H, hd, T_max, NULL) !=
                   PPD_OK ||
               ppd_device_synchronize() != PPD_OK) {
        report(name, 0, "%s", ppd_errmsg());
    } else {
        snprintf(name, sizeof name, "gpu_esm_attention_bf16_hd%d_matches_its_algorithm", hd);
        fetch_close(name, d_out, ref, N * d, 2e-3);
        snprintf(name, sizeof name, "gpu_esm_attention_bf16_hd%d_near_fp32_cpu", hd);
        fetch_close(name, d_out, f32, N * d, 2e-2);
    }
    ppd_device_arena_destroy(&a);
out:
    free(qkv), free(qkv16), free(ref), free(f32), free(scores);
}

/* Each element of d16 (n bf16) is bf16(d32[i]) (n fp32): exactly on the emulation, within one
 * bf16 step on a GPU. */
static void check_is_bf16_of(const char *name, const uint16_t *d16, const float *d32, int64_t n) {
    uint16_t *g16 = malloc((size_t)n * 2);
    float *g32 = malloc((size_t)n * 4);
    if (ppd_device_download(g16, d16, (size_t)n * 2) != PPD_OK ||
        ppd_device_download(g32, d32, (size_t)n * 4) != PPD_OK) {
        report(name, 0, "download: %s", ppd_errmsg());
    } else {
        int64_t off = 0, far = 0;
        for (int64_t i = 0; i < n; i++) {
            int diff = abs((int)ppd_f32_to_bf16(g32[i]) - (int)g16[i]);
            off += diff != 0, far += diff > 1 || isnan(g32[i]);
        }
        report(name, far == 0 && (!gpu_emulated || off == 0),
               "%lld of %lld values are not the fp32 output rounded to bf16 (%lld off by more "
               "than one step or NaN)",
               (long long)off, (long long)n, (long long)far);
    }
    free(g16), free(g32);
}

/* LayerNorm, RoPE and attention writing bf16, against their fp32 twins. */
static void check_bf16_producers(void) {
    const char *name = "gpu_esm_bf16_producers";
    int d = 128, H = 2, hd = 64, B = 3; /* sequences of 70, 3 and 129 tokens */
    int64_t tok_off[4] = {0, 70, 73, 202}, N = 202;
    ppd_rng r;
    ppd_rng_seed(&r, 77);
    float *x = rand_floats(&r, (size_t)N * d, 3.0), *lw = rand_floats(&r, (size_t)d, 1.0),
          *lb = rand_floats(&r, (size_t)d, 1.0), *qkv = rand_floats(&r, (size_t)N * 3 * d, 0.7),
          *bq = rand_floats(&r, (size_t)3 * d, 0.5), *cosv = rand_floats(&r, 129 * 32, 1.0),
          *sinv = rand_floats(&r, 129 * 32, 1.0);
    ppd_device_arena a;
    size_t need =
        (size_t)N * 10 * d * 4 + (size_t)(5 * d + 2 * 129 * 32) * 4 + 64 + 32 * PPD_DEVICE_ALIGN;
    if (ppd_device_arena_create(&a, need) != PPD_OK) {
        report(name, 0, "arena: %s", ppd_errmsg());
        goto out;
    }
    float *d_x = dev_copy(&a, x, (size_t)N * d * 4), *d_lw = dev_copy(&a, lw, (size_t)d * 4),
          *d_lb = dev_copy(&a, lb, (size_t)d * 4),
          *d_qkv = dev_copy(&a, qkv, (size_t)N * 3 * d * 4),
          *d_o32 = dev_copy(&a, NULL, (size_t)N * d * 4),
          *d_bq = dev_copy(&a, bq, (size_t)3 * d * 4), *d_cos = dev_copy(&a, cosv, 129 * 32 * 4),
          *d_sin = dev_copy(&a, sinv, 129 * 32 * 4);
    uint16_t *d_o16 = dev_copy(&a, NULL, (size_t)N * d * 2),
             *d_qkv16 = dev_copy(&a, NULL, (size_t)N * 3 * d * 2);
    int64_t *d_off = dev_copy(&a, tok_off, sizeof tok_off);
    if (!d_x || !d_lw || !d_lb || !d_qkv || !d_o32 || !d_bq || !d_cos || !d_sin || !d_o16 ||
        !d_qkv16 || !d_off) {
        report(name, 0, "device buffers: %s", ppd_errmsg());
        goto out_arena;
    }
    if (ppd_cuda_esm_layernorm_forward(d_o32, d_x, d_lw, d_lb, N, d, NULL) ||
        ppd_cuda_esm_layernorm_forward_to_bf16(d_o16, d_x, d_lw, d_lb, N, d, NULL) ||
        ppd_device_synchronize())
        report("gpu_esm_layernorm_to_bf16", 0, "%s", ppd_errmsg());
    else
        check_is_bf16_of("gpu_esm_layernorm_to_bf16", d_o16, d_o32, N * d);
    /* bf16 first: it must leave qkv as it was for the in-place fp32 twin */
    float qscale = 0.125f;
    if (ppd_cuda_esm_qkv_rope_forward_to_bf16(d_qkv16, d_qkv, d_bq, d_off, B, d, hd, qscale, d_cos,
                                              d_sin, N, NULL) ||
        ppd_cuda_esm_qkv_rope_forward(d_qkv, d_bq, d_off, B, d, hd, qscale, d_cos, d_sin, N,
                                      NULL) ||
        ppd_device_synchronize())
        report("gpu_esm_qkv_rope_to_bf16", 0, "%s", ppd_errmsg());
    else
        check_is_bf16_of("gpu_esm_qkv_rope_to_bf16", d_qkv16, d_qkv, N * 3 * d);
    if (ppd_cuda_esm_attention_bf16_forward(d_o32, d_qkv16, d_off, B, H, hd, 129, NULL) ||
        ppd_cuda_esm_attention_bf16_forward_to_bf16(d_o16, d_qkv16, d_off, B, H, hd, 129, NULL) ||
        ppd_device_synchronize())
        report("gpu_esm_attention_bf16_to_bf16", 0, "%s", ppd_errmsg());
    else
        check_is_bf16_of("gpu_esm_attention_bf16_to_bf16", d_o16, d_o32, N * d);
out_arena:
    ppd_device_arena_destroy(&a);
out:
    free(x), free(lw), free(lb), free(qkv), free(bq), free(cosv), free(sinv);
}

/* The bf16 GEMM (N, K) x (M, K)^T with an fp32 output against the CPU's sgemm of the widened
 * operands (1e-5: the sums' order), and with a bf16 output (`_to_bf16`, the bf16 mode's fc1)
 * against the fp32 output rounded: bit for bit on the emulation, one bf16 step on a GPU. */
static void check_bf16_gemm(int64_t N, int K, int M) {
    char name[128];
    int64_t no = N * M;
    ppd_rng r;
    ppd_rng_seed(&r, 500 + (uint64_t)K);
    float *x = rand_floats(&r, (size_t)N * K, 1.0), *W = rand_floats(&r, (size_t)M * K, 0.2),
          *cpu = malloc((size_t)no * 4);
    uint16_t *x16 = malloc((size_t)N * K * 2), *W16 = malloc((size_t)M * K * 2);
    for (int64_t i = 0; i < N * K; i++)
        x16[i] = ppd_f32_to_bf16(x[i]), x[i] = ppd_bf16_to_f32(x16[i]);
    for (int64_t i = 0; i < (int64_t)M * K; i++)
        W16[i] = ppd_f32_to_bf16(W[i]), W[i] = ppd_bf16_to_f32(W16[i]);
    ppd_esm_matmul_forward(cpu, x, W, N, K, M, 1);
    ppd_device_arena a;
    ppd_cuda_blas *bl = NULL;
    size_t need = (size_t)no * 6 + (size_t)(N + M) * K * 2 + 8 * PPD_DEVICE_ALIGN;
    snprintf(name, sizeof name, "gpu_esm_matmul_bf16_K%d_M%d", K, M);
    if (ppd_device_arena_create(&a, need + PPD_CUDA_BLAS_WORKSPACE) != PPD_OK) {
        report(name, 0, "arena: %s", ppd_errmsg());
        goto out;
    }
    uint16_t *d_x16 = dev_copy(&a, x16, (size_t)N * K * 2),
             *d_W16 = dev_copy(&a, W16, (size_t)M * K * 2),
             *d_o16 = dev_copy(&a, NULL, (size_t)no * 2);
    float *d_o32 = dev_copy(&a, NULL, (size_t)no * 4);
    void *d_ws = ppd_device_arena_alloc(&a, PPD_CUDA_BLAS_WORKSPACE);
    if (!d_x16 || !d_W16 || !d_o16 || !d_o32 || !d_ws ||
        ppd_cuda_blas_create(&bl, NULL, PPD_CUDA_BF16, d_ws, PPD_CUDA_BLAS_WORKSPACE) ||
        ppd_cuda_esm_matmul_bf16_forward(d_o32, d_x16, d_W16, N, K, M, bl) ||
        ppd_cuda_esm_matmul_bf16_forward_to_bf16(d_o16, d_x16, d_W16, N, K, M, bl) ||
        ppd_device_synchronize()) {
        report(name, 0, "%s", ppd_errmsg());
    } else {
        snprintf(name, sizeof name, "gpu_esm_matmul_bf16_matches_cpu_K%d_M%d", K, M);
        fetch_close(name, d_o32, cpu, no, 1e-5);
        snprintf(name, sizeof name, "gpu_esm_matmul_bf16_to_bf16_K%d_M%d", K, M);
        check_is_bf16_of(name, d_o16, d_o32, no);
    }
    ppd_cuda_blas_destroy(bl);
    ppd_device_arena_destroy(&a);
out:
    free(x), free(W), free(cpu), free(x16), free(W16);
}

void check_esm_attention_bf16(void) {
    /* token rows per sequence: 1 key, one tile exactly, one past it, several tiles and query
     * blocks, the longest not a multiple of 64 */
    int T[] = {1, 2, 17, 63, 64, 65, 129, 200};
    int B = (int)(sizeof T / sizeof *T);
    report("gpu_esm_attention_bf16_head_dims",
           ppd_cuda_esm_attention_bf16_supported(16) && ppd_cuda_esm_attention_bf16_supported(64) &&
               ppd_cuda_esm_attention_bf16_supported(128) &&
               !ppd_cuda_esm_attention_bf16_supported(24) &&
               !ppd_cuda_esm_attention_bf16_supported(8),
           "supported head dimensions are not 16, 32, 64, 128");
    check_attention_bf16(16, 3, T, B);
    check_attention_bf16(32, 2, T, B);
    check_attention_bf16(64, 2, T, B);
    if (!gpu_small)
        check_attention_bf16(128, 2, T, B);
    else
        check_attention_bf16(128, 1, T + 5, 3); /* the emulation is slow: 65, 129, 200 */
    check_bf16_producers();
    check_bf16_gemm(202, 128, 512); /* the shape of a d = 128 model's fc1 */
    check_bf16_gemm(37, 48, 100);   /* odd rows, an output width that is no multiple of 8 */
}
