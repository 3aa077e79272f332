/* ESM-2 parameters: the one-buffer layout, identity digest, deterministic random weights
 * (docs/esm-random-weights.md). Loading from files is in load.c. See ppdock/esm.h. */
#include "esm_internal.h"

#include "ppdock/half.h"
#include "ppdock/hash.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

ppd_status ppd_esm_config_check(const ppd_esm_config *c) {
    if (c->n_layers < 1 || c->d < 2 || c->n_heads < 1 || c->head_dim < 2 || c->ffn < 1)
        return ppd_fail(PPD_ERR_USAGE, "ESM config: non-positive size (L=%d d=%d H=%d hd=%d F=%d)",
                        c->n_layers, c->d, c->n_heads, c->head_dim, c->ffn);
    if (c->head_dim % 2 != 0 || c->n_heads * c->head_dim != c->d)
        return ppd_fail(PPD_ERR_USAGE,
                        "ESM config: d=%d, H=%d, hd=%d: need d = H * hd with an even head dim",
                        c->d, c->n_heads, c->head_dim);
    if (c->n_layers > 4096 || c->d > 65536 || c->ffn > 1 << 20)
        return ppd_fail(PPD_ERR_USAGE, "ESM config: implausible size (L=%d d=%d F=%d)", c->n_layers,
                        c->d, c->ffn);
    return PPD_OK;
}

/* Sizes of the tensors of ppd_esm_params, in buffer order. */
enum { N_TENSORS = 16 };
static void tensor_sizes(const ppd_esm_config *c, size_t s[N_TENSORS]) {
    size_t L = (size_t)c->n_layers, d = (size_t)c->d, F = (size_t)c->ffn;
    size_t h2 = (size_t)c->head_dim / 2;
    size_t i = 0;
    s[i++] = PPD_ESM_VOCAB * d; /* embed */
    s[i++] = L * d;             /* ln1_w */
    s[i++] = L * d;             /* ln1_b */
    s[i++] = L * 3 * d * d;     /* wqkv */
    s[i++] = L * 3 * d;         /* bqkv */
    s[i++] = L * d * d;         /* wo */
    s[i++] = L * d;             /* bo */
    s[i++] = L * d;             /* ln2_w */
    s[i++] = L * d;             /* ln2_b */
    s[i++] = L * F * d;         /* w1 */
    s[i++] = L * F;             /* b1 */
    s[i++] = L * d * F;         /* w2 */
    s[i++] = L * d;             /* b2 */
    s[i++] = d;                 /* lnf_w */
    s[i++] = d;                 /* lnf_b */
    s[i++] = L * h2;            /* inv_freq */
}

size_t ppd_esm_param_count(const ppd_esm_config *c) {
    size_t s[N_TENSORS], n = 0;
    tensor_sizes(c, s);
    for (int i = 0; i < N_TENSORS; i++) n += s[i];
    return n;
}

ppd_status ppd_esm_model_alloc(ppd_esm_model *m, const ppd_esm_config *c) {
    memset(m, 0, sizeof *m);
    PPD_TRY(ppd_esm_config_check(c));
    size_t s[N_TENSORS];
    tensor_sizes(c, s);
    size_t n = ppd_esm_param_count(c);
    float *mem = malloc(n * sizeof(float));
    if (!mem)
        return ppd_fail(PPD_ERR_NOMEM, "cannot allocate %zu bytes for ESM weights (L=%d d=%d)",
                        n * sizeof(float), c->n_layers, c->d);
    float **ptrs[] = {&m->p.embed, &m->p.ln1_w, &m->p.ln1_b, &m->p.wqkv,    &m->p.bqkv, &m->p.wo,
                      &m->p.bo,    &m->p.ln2_w, &m->p.ln2_b, &m->p.w1,      &m->p.b1,   &m->p.w2,
                      &m->p.b2,    &m->p.lnf_w, &m->p.lnf_b, &m->p.inv_freq};
    float *p = mem;
    for (size_t i = 0; i < sizeof ptrs / sizeof ptrs[0]; i++) {
        *ptrs[i] = p;
        p += s[i];
    }
    m->cfg = *c;
    m->mem = mem;
    m->n_params = n;
    return PPD_OK;
}

void ppd_esm_model_free(ppd_esm_model *m) {
    free(m->mem);
    memset(m, 0, sizeof *m);
}

ppd_status ppd_esm_model_finish(ppd_esm_model *m) {
    ppd_hasher *h = ppd_hasher_new();
    if (!h) return ppd_fail(PPD_ERR_NOMEM, "cannot allocate a hash state");
    static const char tag[] = "ppdock-esm2-v1";
    ppd_hasher_update(h, tag, sizeof tag - 1);
    int32_t cfg[5] = {m->cfg.n_layers, m->cfg.d, m->cfg.n_heads, m->cfg.head_dim, m->cfg.ffn};
    unsigned char le[20];
    for (int i = 0; i < 5; i++)
        for (int b = 0; b < 4; b++) le[i * 4 + b] = (unsigned char)((uint32_t)cfg[i] >> (8 * b));
    ppd_hasher_update(h, le, sizeof le);
    ppd_hasher_update(h, m->mem, m->n_params * sizeof(float));
    m->identity = ppd_hasher_digest(h);
    ppd_hasher_free(h);
    return PPD_OK;
}

ppd_status ppd_esm_resolve_layer(const ppd_esm_config *c, int layer, int *out) {
    int L = c->n_layers;
    int l = layer < 0 ? layer + L + 1 : layer;
    if (l < 0 || l > L)
        return ppd_fail(PPD_ERR_USAGE,
                        "ESM layer %d out of range for a %d-layer model (0..%d, "
                        "or -1..-%d counting from the end)",
                        layer, L, L, L + 1);
    *out = l;
    return PPD_OK;
}

ppd_status ppd_esm_parse_shape(const char *s, int *L, int *d, int *H) {
    long v[3];
    const char *p = s;
    for (int i = 0; i < 3; i++) {
        char *end;
        errno = 0;
        v[i] = strtol(p, &end, 10);
        if (end == p || errno || v[i] < 1 || v[i] > 1 << 20 || (i < 2 && *end != ',') ||
            (i == 2 && *end != '\0'))
            return ppd_fail(PPD_ERR_USAGE,
                            "model shape \"%s\": expected L,d,H (e.g. 6,320,20 or 33,1280,20)", s);
        p = end + 1;
    }
    *L = (int)v[0], *d = (int)v[1], *H = (int)v[2];
    return PPD_OK;
}

/* ---- deterministic random weights (docs/esm-random-weights.md) ---------------------------- */

static uint64_t fnv1a64(const char *s) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return h;
}

static uint64_t splitmix64_mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Fill dst[n] with the generator's values for tensor `name`. */
void ppd_esm_random_fill(float *dst, size_t n, const char *name, uint64_t seed, float offset,
                         float amplitude) {
    const uint64_t G = 0x9E3779B97F4A7C15ULL;
    uint64_t s0 = seed ^ fnv1a64(name);
#pragma omp parallel for schedule(static) if (n >= 1 << 16)
    for (size_t i = 0; i < n; i++) {
        uint64_t z = splitmix64_mix(s0 + (uint64_t)(i + 1) * G);
        float u = (float)(z >> 40) * 0x1p-24f; /* exact */
        float r = 2.0f * u - 1.0f;             /* exact */
        float a = r * amplitude;
        dst[i] = offset + a;
    }
}

/* double -> binary16 (round to nearest even) -> float32, for the positive normal-range values of
 * an inv_freq table. */
static float f64_to_f16_to_f32(double v) {
    int e;
    double fr = frexp(v, &e);            /* v = fr * 2^e, fr in [0.5, 1) */
    double m = nearbyint(ldexp(fr, 11)); /* 11 significant bits, ties to even */
    return (float)ldexp(m, e - 11);      /* exact in float */
}

ppd_status ppd_esm_random_init(ppd_esm_model *m, int L, int d, int H, uint64_t seed) {
    memset(m, 0, sizeof *m);
    if (L < 1 || d < 2 || H < 1 || d % H != 0 || (d / H) % 2 != 0)
        return ppd_fail(PPD_ERR_USAGE,
                        "ESM random init: shape (L=%d, d=%d, H=%d) needs d divisible by H with "
                        "an even head dim",
                        L, d, H);
    ppd_esm_config c = {.n_layers = L, .d = d, .n_heads = H, .head_dim = d / H, .ffn = 4 * d};
    PPD_TRY(ppd_esm_model_alloc(m, &c));
    size_t D = (size_t)d, F = (size_t)c.ffn, h2 = (size_t)c.head_dim / 2;
    float amp_d = (float)sqrt(3.0 / (double)d), amp_f = (float)sqrt(3.0 / (double)F);
    char name[128];
    const ppd_esm_params *p = &m->p;
    ppd_esm_random_fill(p->embed, PPD_ESM_VOCAB * D, "embed_tokens.weight", seed, 0.0f, 0.5f);
    static const char *const qkv[3] = {"q_proj", "k_proj", "v_proj"};
    for (int l = 0; l < L; l++) {
        size_t li = (size_t)l;
#define FILL(ptr, n, off, amp, ...)                                                                \
    do {                                                                                           \
        snprintf(name, sizeof name, __VA_ARGS__);                                                  \
        ppd_esm_random_fill((ptr), (n), name, seed, (off), (amp));                                 \
    } while (0)
        for (int j = 0; j < 3; j++) {
            FILL(p->wqkv + (li * 3 + (size_t)j) * D * D, D * D, 0.0f, amp_d,
                 "layers.%d.self_attn.%s.weight", l, qkv[j]);
            FILL(p->bqkv + (li * 3 + (size_t)j) * D, D, 0.0f, 0.02f, "layers.%d.self_attn.%s.bias",
                 l, qkv[j]);
        }
        FILL(p->wo + li * D * D, D * D, 0.0f, amp_d, "layers.%d.self_attn.out_proj.weight", l);
        FILL(p->bo + li * D, D, 0.0f, 0.02f, "layers.%d.self_attn.out_proj.bias", l);
        FILL(p->ln1_w + li * D, D, 1.0f, 0.1f, "layers.%d.self_attn_layer_norm.weight", l);
        FILL(p->ln1_b + li * D, D, 0.0f, 0.05f, "layers.%d.self_attn_layer_norm.bias", l);
        FILL(p->ln2_w + li * D, D, 1.0f, 0.1f, "layers.%d.final_layer_norm.weight", l);
        FILL(p->ln2_b + li * D, D, 0.0f, 0.05f, "layers.%d.final_layer_norm.bias", l);
        FILL(p->w1 + li * F * D, F * D, 0.0f, amp_d, "layers.%d.fc1.weight", l);
        FILL(p->b1 + li * F, F, 0.0f, 0.02f, "layers.%d.fc1.bias", l);
        FILL(p->w2 + li * D * F, D * F, 0.0f, amp_f, "layers.%d.fc2.weight", l);
        FILL(p->b2 + li * D, D, 0.0f, 0.02f, "layers.%d.fc2.bias", l);
#undef FILL
        for (size_t k = 0; k < h2; k++)
            p->inv_freq[li * h2 + k] =
                f64_to_f16_to_f32(1.0 / pow(10000.0, (double)(2 * k) / (double)c.head_dim));
    }
    ppd_esm_random_fill(p->lnf_w, D, "emb_layer_norm_after.weight", seed, 1.0f, 0.1f);
    ppd_esm_random_fill(p->lnf_b, D, "emb_layer_norm_after.bias", seed, 0.0f, 0.05f);
    return ppd_esm_model_finish(m);
}

/* Spec §2.3.5 fallback when a checkpoint has no inv_freq: fp32 1 / 10000^(2i/hd), rounded to
 * fp16 (round to nearest even) and widened. */
void ppd_esm_default_inv_freq(float *inv_freq, int head_dim) {
    for (int i = 0; i < head_dim / 2; i++) {
        float e = (float)(2 * i) / (float)head_dim;
        float pw = powf(10000.0f, e);
        float v = 1.0f / pw;
        inv_freq[i] = ppd_f16_to_f32(ppd_f32_to_f16(v));
    }
}
