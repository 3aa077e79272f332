/* ESM-2 forward pass, CPU reference (spec esm2.md §2; see ppdock/esm.h). Layers are plain
 * functions on packed rows; the element-wise arithmetic is in ppdock/kernels/esm_ops.h. */
#include "esm_internal.h"

#include "ppdock/kernels/esm_ops.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- layers ---------------------------------------------------------------------------------- */

void ppd_esm_embed_forward(float *x, const uint8_t *tok, const int64_t *tok_off, const float *div,
                           int B, const float *E, int d, int threads) {
    // x: (N, d)   tok: (N)   E: (V, d)
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (int b = 0; b < B; b++) {
        for (int64_t r = tok_off[b]; r < tok_off[b + 1]; r++) {
            float *xr = x + r * d;
            if (tok[r] == PPD_ESM_TOK_MASK) {
                memset(xr, 0, (size_t)d * sizeof *xr);
                continue;
            }
            const float *er = E + (size_t)tok[r] * (size_t)d;
#pragma omp simd
            for (int c = 0; c < d; c++) xr[c] = ppd_esm_embed_elem(er[c], div[b]);
        }
    }
}

void ppd_esm_layernorm_forward(float *out, const float *inp, const float *w, const float *b,
                               int64_t N, int d, int threads) {
    // out: (N, d)   inp: (N, d)   w, b: (d)
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && N >= 64)
    for (int64_t r = 0; r < N; r++) {
        const float *xr = inp + r * d;
        float *yr = out + r * d;
        /* Two passes in double: the statistics are then exact to float precision whatever
         * the magnitude of the residual stream's outlier channels. */
        double s = 0.0;
        for (int c = 0; c < d; c++) s += xr[c];
        double mean = s / d, v = 0.0;
        for (int c = 0; c < d; c++) {
            double t = xr[c] - mean;
            v += t * t;
        }
        float meanf = (float)mean, var = (float)(v / d);
        float rstd = 1.0f / sqrtf(var + PPD_ESM_LN_EPS);
#pragma omp simd
        for (int c = 0; c < d; c++) yr[c] = ppd_esm_layernorm_elem(xr[c], meanf, rstd, w[c], b[c]);
    }
}

void ppd_esm_matmul_forward(float *out, const float *inp, const float *W, int64_t N, int K, int M,
                            int threads) {
    // out: (N, M)   inp: (N, K)   W: (M, K)
    if (N == 0) return;
    /* Row chunks of at most PPD_ESM_GEMM_ROWS rows, one single-threaded sgemm each, spread over
     * the threads. Every output element is a K-long dot product in OpenBLAS's fixed K order
     * (its edge kernels for leftover rows round differently: ~1e-7 relative). Bounding the rows per
     * call bounds OpenBLAS's packing buffer: it packs the rows (its "n") in panels of up to ~Q x n
     * floats, which for a 50k-row call touched 60 MB more per thread; re-packing W per chunk costs
     * ~1/(2 x rows) of the multiply. */
    enum { PPD_ESM_GEMM_ROWS = 512 };
    int64_t per = (N + threads - 1) / threads;
    int64_t nchunk = (N + PPD_ESM_GEMM_ROWS - 1) / PPD_ESM_GEMM_ROWS;
    if (nchunk < threads) nchunk = per >= 16 ? threads : (N + 15) / 16;
    int64_t step = (N + nchunk - 1) / nchunk;
    step = (step + 15) / 16 * 16;
    nchunk = (N + step - 1) / step;
#pragma omp parallel for schedule(static) num_threads(threads) if (nchunk > 1)
    for (int64_t j = 0; j < nchunk; j++) {
        int64_t r0 = j * step, r1 = r0 + step < N ? r0 + step : N;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(r1 - r0), M, K, 1.0f,
                    inp + r0 * K, K, W, K, 0.0f, out + r0 * M, M);
    }
}

void ppd_esm_rope_table(float *cosv, float *sinv, const float *inv_freq, int T, int hd) {
    // cosv, sinv: (T, hd/2)
    int h2 = hd / 2;
    for (int p = 0; p < T; p++)
        for (int i = 0; i < h2; i++) {
            float a = ppd_esm_rope_angle(p, inv_freq[i]);
            cosv[p * h2 + i] = cosf(a);
            sinv[p * h2 + i] = sinf(a);
        }
}

void ppd_esm_qkv_rope_forward(float *qkv, const float *bqkv, const int64_t *tok_off, int B, int d,
                              int hd, float qscale, const float *cosv, const float *sinv,
                              int threads) {
    // qkv: (N, 3d)   bqkv: (3d)   cosv, sinv: (T_max, hd/2)
    int h2 = hd / 2, H = d / hd;
    int64_t N = tok_off[B];
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && N >= 64)
    for (int b = 0; b < B; b++) {
        for (int64_t r = tok_off[b]; r < tok_off[b + 1]; r++) {
            int p = (int)(r - tok_off[b]);
            float *q = qkv + r * 3 * d, *k = q + d, *v = q + 2 * d;
            const float *c = cosv + (size_t)p * h2, *s = sinv + (size_t)p * h2;
#pragma omp simd
            for (int j = 0; j < d; j++) {
                q[j] = ppd_esm_bias_scale_elem(q[j], bqkv[j], qscale);
                k[j] = ppd_esm_bias_scale_elem(k[j], bqkv[d + j], 1.0f);
                v[j] = ppd_esm_bias_scale_elem(v[j], bqkv[2 * d + j], 1.0f);
            }
            for (int h = 0; h < H; h++) {
                float *qh = q + h * hd, *kh = k + h * hd;
                for (int i = 0; i < h2; i++) {
                    float q1 = qh[i], q2 = qh[i + h2], k1 = kh[i], k2 = kh[i + h2];
                    qh[i] = ppd_esm_rope_lo(q1, q2, c[i], s[i]);
                    qh[i + h2] = ppd_esm_rope_hi(q1, q2, c[i], s[i]);
                    kh[i] = ppd_esm_rope_lo(k1, k2, c[i], s[i]);
                    kh[i + h2] = ppd_esm_rope_hi(k1, k2, c[i], s[i]);
                }
            }
        }
    }
}

PPD_ESM_SIMD_CLONES static void bias_gelu_row(float *hr, const float *b, int F) {
#pragma omp simd
    for (int j = 0; j < F; j++) hr[j] = ppd_esm_gelu_elem(hr[j] + b[j]);
}

void ppd_esm_bias_gelu_forward(float *h, const float *b, int64_t N, int F, int threads) {
    // h: (N, F)   b: (F)
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && N >= 16)
    for (int64_t r = 0; r < N; r++) bias_gelu_row(h + r * F, b, F);
}

void ppd_esm_residual_forward(float *x, const float *y, const float *b, int64_t N, int d,
                              int threads) {
    // x: (N, d)   y: (N, d)   b: (d)
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && N >= 64)
    for (int64_t r = 0; r < N; r++) {
        float *xr = x + r * d;
        const float *yr = y + r * d;
#pragma omp simd
        for (int c = 0; c < d; c++) xr[c] = ppd_esm_residual_elem(xr[c], yr[c], b[c]);
    }
}

/* ---- workspace ------------------------------------------------------------------------------- */

static size_t align64(size_t n) {
    return (n + 63) & ~(size_t)63;
}

size_t ppd_esm_carve(const ppd_esm_config *c, int64_t N, int64_t R, int64_t B, int64_t T,
                     int threads, int bf16, unsigned char *base, ppd_esm_layout *lay) {
    size_t d = (size_t)c->d, wide = (size_t)(3 * c->d > c->ffn ? 3 * c->d : c->ffn);
    /* big holds q/k/v (3d) and the FFN's hidden rows (F), fp32; in the CUDA engine's bf16 mode
     * the hidden rows are bf16 (fc1 writes them so), half as many floats, and the other fp32
     * rows it holds, the out projection's (d), are fewer than q/k/v's */
    size_t half_f = ((size_t)c->ffn + 1) / 2;
    size_t big_w = !threads && bf16 ? (3 * d > half_f ? 3 * d : half_f) : wide;
    size_t off = 0;
#define CARVE(field, type, count)                                                                  \
    do {                                                                                           \
        if (base) lay->field = (type *)(base + off);                                               \
        off += align64((size_t)(count) * sizeof(type));                                            \
    } while (0)
    CARVE(x, float, (size_t)N *d);
    CARVE(u, float, (size_t)N *d);
    CARVE(big, float, (size_t)N *big_w);
    CARVE(out, float, (size_t)R *d);
    if (threads) {
        CARVE(scores, float, (size_t)threads *(size_t)T *(size_t)T);
        CARVE(cosv, float, (size_t)T *(size_t)c->head_dim / 2);
        CARVE(sinv, float, (size_t)T *(size_t)c->head_dim / 2);
    }
    CARVE(div, float, B);
    CARVE(tok, uint8_t, N);
    CARVE(tok_off, int64_t, B + 1);
    CARVE(out_off, int64_t, B + 1);
    /* the bf16 GEMM inputs (d or F wide) and, for the tensor-core attention, RoPE's bf16 q/k/v
     * (3d) */
    if (!threads && bf16) CARVE(in16, uint16_t, (size_t)N * wide);
#undef CARVE
    if (base) lay->tile_floats = T * T;
    return off;
}

size_t ppd_esm_workspace_bytes(const ppd_esm_config *c, int64_t tokens, int max_len, int threads) {
    if (tokens < 2) tokens = 2;
    int64_t T = (int64_t)max_len + 2;
    return ppd_esm_carve(c, tokens, tokens - 2, tokens / 2, T, threads < 1 ? 1 : threads, 0, NULL,
                         NULL);
}

size_t ppd_esm_device_workspace_bytes(const ppd_esm_config *c, int64_t tokens, int max_len,
                                      int bf16) {
    if (tokens < 2) tokens = 2;
    return ppd_esm_carve(c, tokens, tokens - 2, tokens / 2, (int64_t)max_len + 2, 0, bf16, NULL,
                         NULL);
}

ppd_status ppd_esm_workspace_init(ppd_esm_workspace *ws, const ppd_esm_config *c, size_t bytes,
                                  int threads) {
    memset(ws, 0, sizeof *ws);
    PPD_TRY(ppd_esm_config_check(c));
    if (threads < 1)
        return ppd_fail(PPD_ERR_USAGE, "ESM workspace: threads must be >= 1 (got %d)", threads);
    ws->mem = aligned_alloc(64, align64(bytes ? bytes : 64));
    if (!ws->mem) return ppd_fail(PPD_ERR_NOMEM, "cannot allocate a %zu-byte ESM workspace", bytes);
    memset(ws->mem, 0, align64(bytes ? bytes : 64)); /* commit it now: the plan counts it */
    ws->cfg = *c;
    ws->threads = threads;
    ws->bytes = bytes;
    openblas_set_num_threads(1); /* the engine threads itself; see ppdock/esm.h */
    return PPD_OK;
}

void ppd_esm_workspace_free(ppd_esm_workspace *ws) {
    free(ws->mem);
    memset(ws, 0, sizeof *ws);
}

/* ---- the forward pass ------------------------------------------------------------------------ */

static void layer_forward(const ppd_esm_model *m, int l, ppd_esm_layout *w, int B, int threads) {
    const ppd_esm_config *c = &m->cfg;
    const ppd_esm_params *p = &m->p;
    int d = c->d, F = c->ffn, hd = c->head_dim;
    size_t D = (size_t)d, li = (size_t)l;
    int64_t N = w->tok_off[B];
    float qscale = (float)pow((double)hd, -0.5);

    /* attention block: u = LN(x); qkv = u Wqkv^T (+ b, q scaled, RoPE); u = attn; x += u Wo^T + bo
     */
    ppd_esm_layernorm_forward(w->u, w->x, p->ln1_w + li * D, p->ln1_b + li * D, N, d, threads);
    ppd_esm_matmul_forward(w->big, w->u, p->wqkv + li * 3 * D * D, N, d, 3 * d, threads);
    ppd_esm_qkv_rope_forward(w->big, p->bqkv + li * 3 * D, w->tok_off, B, d, hd, qscale, w->cosv,
                             w->sinv, threads);
    ppd_esm_attention_forward(w->u, w->big, w->tok_off, B, c->n_heads, hd, w->scores,
                              w->tile_floats, threads);
    ppd_esm_matmul_forward(w->big, w->u, p->wo + li * D * D, N, d, d, threads);
    ppd_esm_residual_forward(w->x, w->big, p->bo + li * D, N, d, threads);

    /* FFN block: u = LN(x); big = GELU(u W1^T + b1); u = big W2^T; x += u + b2 */
    ppd_esm_layernorm_forward(w->u, w->x, p->ln2_w + li * D, p->ln2_b + li * D, N, d, threads);
    ppd_esm_matmul_forward(w->big, w->u, p->w1 + li * (size_t)F * D, N, d, F, threads);
    ppd_esm_bias_gelu_forward(w->big, p->b1 + li * (size_t)F, N, F, threads);
    ppd_esm_matmul_forward(w->u, w->big, p->w2 + li * D * (size_t)F, N, F, d, threads);
    ppd_esm_residual_forward(w->x, w->u, p->b2 + li * D, N, d, threads);
}

void ppd_esm_pack(const ppd_esm_seq *seqs, int B, uint8_t *tok, int64_t *tok_off, int64_t *out_off,
                  float *div) {
    /* tokens: <cls> residues <eos> per sequence, packed; token-dropout divisors */
    tok_off[0] = out_off[0] = 0;
    for (int b = 0; b < B; b++) {
        uint8_t *t = tok + tok_off[b];
        int n = seqs[b].n, masks = 0;
        t[0] = PPD_ESM_TOK_CLS;
        if (n) memcpy(t + 1, seqs[b].tokens, (size_t)n);
        t[n + 1] = PPD_ESM_TOK_EOS;
        for (int i = 0; i < n; i++) masks += seqs[b].tokens[i] == PPD_ESM_TOK_MASK;
        /* fair-esm: ratio = float(#mask) / #non-pad (int), then 1 - ratio in float32 */
        float ratio = (float)masks / (float)(n + 2);
        div[b] = 1.0f - ratio;
        tok_off[b + 1] = tok_off[b] + n + 2;
        out_off[b + 1] = out_off[b] + n;
    }
}

ppd_status ppd_esm_batch_check(const ppd_esm_seq *seqs, int B, int64_t *N, int64_t *R, int *max_n) {
    if (B < 1) return ppd_fail(PPD_ERR_USAGE, "ESM forward: empty batch");
    *N = *R = 0;
    *max_n = 0;
    for (int b = 0; b < B; b++) {
        if (seqs[b].n < 0) return ppd_fail(PPD_ERR_USAGE, "ESM forward: sequence %d: n < 0", b);
        ppd_status st = ppd_esm_check_tokens(seqs[b].tokens, (size_t)seqs[b].n);
        if (st) return ppd_fail_ctx(st, "ESM forward: sequence %d of the batch", b);
        *R += seqs[b].n;
        *N += seqs[b].n + 2;
        if (seqs[b].n > *max_n) *max_n = seqs[b].n;
    }
    return PPD_OK;
}

ppd_status ppd_esm_forward(const ppd_esm_model *m, ppd_esm_workspace *ws, const ppd_esm_seq *seqs,
                           int B, int layer) {
    const ppd_esm_config *c = &m->cfg;
    int lay_idx;
    PPD_TRY(ppd_esm_resolve_layer(c, layer, &lay_idx));
    if (memcmp(c, &ws->cfg, sizeof *c) != 0)
        return ppd_fail(PPD_ERR_USAGE, "ESM forward: workspace planned for another model shape");
    int64_t N, R;
    int maxn;
    PPD_TRY(ppd_esm_batch_check(seqs, B, &N, &R, &maxn));
    int threads = ws->threads;
    size_t need = ppd_esm_carve(c, N, R, B, maxn + 2, threads, 0, NULL, NULL);
    if (need > ws->bytes)
        return ppd_fail(PPD_ERR_NOMEM,
                        "ESM batch of %d sequences (%lld token rows, longest %d residues) needs a "
                        "%zu-byte workspace; this one has %zu bytes",
                        B, (long long)N, maxn, need, ws->bytes);
    ppd_esm_layout w;
    ppd_esm_carve(c, N, R, B, maxn + 2, threads, 0, ws->mem, &w);

    ppd_esm_pack(seqs, B, w.tok, w.tok_off, w.out_off, w.div);

    ppd_esm_embed_forward(w.x, w.tok, w.tok_off, w.div, B, m->p.embed, c->d, threads);
    int h2 = c->head_dim / 2;
    const float *table_freq = NULL;
    for (int l = 0; l < lay_idx; l++) {
        const float *f = m->p.inv_freq + (size_t)l * h2;
        if (!table_freq || memcmp(f, table_freq, (size_t)h2 * sizeof *f) != 0) {
            ppd_esm_rope_table(w.cosv, w.sinv, f, maxn + 2, c->head_dim);
            table_freq = f;
        }
        layer_forward(m, l, &w, B, threads);
    }

    /* outputs: residue rows of the requested layer; rep[L] is post-LayerNorm */
    size_t D = (size_t)c->d;
    for (int b = 0; b < B; b++) {
        const float *src = w.x + (w.tok_off[b] + 1) * (int64_t)D;
        float *dst = w.out + w.out_off[b] * (int64_t)D;
        int n = seqs[b].n;
        if (lay_idx == c->n_layers)
            ppd_esm_layernorm_forward(dst, src, m->p.lnf_w, m->p.lnf_b, n, c->d, threads);
        else if (n)
            memcpy(dst, src, (size_t)n * D * sizeof *dst);
    }
    ws->n_seqs = B;
    ws->out = w.out;
    ws->out_off = w.out_off;
    return PPD_OK;
}
