/* lib/esm internal: shared between alphabet.c, model.c, load.c, forward.c, attention.c,
 * planner.c and window.c. Not installed; the public API is ppdock/esm.h. */
#ifndef PPDOCK_ESM_INTERNAL_H
#define PPDOCK_ESM_INTERNAL_H

#include "ppdock/esm.h"
#include "ppdock/kernels/hd.h"

#ifdef __cplusplus
extern "C" { /* forward_cuda.cu uses the layout and packing */
#endif

/* Hot element-wise loops: compiled for AVX-512, AVX2 and the baseline (kernels/hd.h). The vector
 * width changes the order of the softmax sums, so results can differ by an ulp between CPUs. */
#define PPD_ESM_SIMD_CLONES PPD_SIMD_CLONES

/* ---- model.c ---- */
ppd_status ppd_esm_config_check(const ppd_esm_config *c);
/* Allocate the parameter buffer for `c` and point m->p into it (contents undefined). */
ppd_status ppd_esm_model_alloc(ppd_esm_model *m, const ppd_esm_config *c);

/* ---- forward.c: the workspace layout and batch packing, shared with the CUDA engine ---- */

/* One batch's buffers inside a workspace (host or device memory). */
typedef struct {
    float *x, *u, *big, *out, *scores, *cosv, *sinv, *div;
    uint16_t *in16; /* CUDA bf16 mode: a GEMM's bf16 input or RoPE's bf16 q/k/v (N x max(3d, F)) */
    uint8_t *tok;
    int64_t *tok_off, *out_off;
    int64_t tile_floats;
} ppd_esm_layout;

/* Lay out a batch (N token rows, R residue rows, B sequences, longest T token rows) from `base`
 * (NULL: only count), each piece 64-byte aligned. Returns the bytes used. threads = 0 is the
 * CUDA engine's layout: no score tiles (its attention keeps none) and no RoPE tables (they are
 * built once, beside the weights); with bf16, the bf16 GEMM-input buffer. */
size_t ppd_esm_carve(const ppd_esm_config *c, int64_t N, int64_t R, int64_t B, int64_t T,
                     int threads, int bf16, unsigned char *base, ppd_esm_layout *lay);

/* Validate a batch (B >= 1, n >= 0, residue tokens only) and count its token rows N, residue
 * rows R and longest sequence. */
ppd_status ppd_esm_batch_check(const ppd_esm_seq *seqs, int B, int64_t *N, int64_t *R, int *max_n);

/* tok (N), tok_off (B + 1), out_off (B + 1), div (B): <cls> residues <eos> per sequence, packed,
 * and the token-dropout divisors (spec §2.2). */
void ppd_esm_pack(const ppd_esm_seq *seqs, int B, uint8_t *tok, int64_t *tok_off, int64_t *out_off,
                  float *div);

/* ---- forward.c: the layers, llm.c style. Shapes: N packed token rows, d channels, F ffn
 * width; B sequences whose rows are [tok_off[b], tok_off[b+1]) (T_b = n_b + 2 rows each). All
 * buffers are float32 row-major and owned by the caller (the workspace). ---- */

/* x: (N, d)   tok: (N)   div: (B). x[r] = E[tok[r]] * 0.88 / div[b] (0 for <mask> rows). */
void ppd_esm_embed_forward(float *x, const uint8_t *tok, const int64_t *tok_off, const float *div,
                           int B, const float *E, int d, int threads);

/* out: (N, d)   inp: (N, d)   w, b: (d). LayerNorm over d, biased variance, eps 1e-5. */
void ppd_esm_layernorm_forward(float *out, const float *inp, const float *w, const float *b,
                               int64_t N, int d, int threads);

/* out: (N, M)   inp: (N, K)   W: (M, K). out = inp W^T (no bias), OpenBLAS sgemm, rows of
 * out split over threads. */
void ppd_esm_matmul_forward(float *out, const float *inp, const float *W, int64_t N, int K, int M,
                            int threads);

/* qkv: (N, 3d) in place   bqkv: (3d)   cosv, sinv: (T_max, hd/2). Adds the biases, scales q by
 * qscale, applies rotate-half RoPE to q and k at positions 0..T_b-1 of each sequence. */
void ppd_esm_qkv_rope_forward(float *qkv, const float *bqkv, const int64_t *tok_off, int B, int d,
                              int hd, float qscale, const float *cosv, const float *sinv,
                              int threads);

/* cosv, sinv: (T, hd/2) for positions 0..T-1. */
void ppd_esm_rope_table(float *cosv, float *sinv, const float *inv_freq, int T, int hd);

/* out: (N, d)   qkv: (N, 3d)   scores: threads tiles of (T_max, T_max).
 * Per (sequence b, head h): S = q k^T (T_b x T_b), softmax over keys, out = S v. */
void ppd_esm_attention_forward(float *out, const float *qkv, const int64_t *tok_off, int B, int H,
                               int hd, float *scores, int64_t tile_floats, int threads);

/* h: (N, F) in place   b: (F). h = GELU_erf(h + b). */
void ppd_esm_bias_gelu_forward(float *h, const float *b, int64_t N, int F, int threads);

/* x: (N, d) in place   y: (N, d)   b: (d). x = x + (y + b). */
void ppd_esm_residual_forward(float *x, const float *y, const float *b, int64_t N, int d,
                              int threads);

#ifdef __cplusplus
}
#endif

#endif
