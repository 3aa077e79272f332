/* ESM-2 self-attention on packed sequences, CPU reference (spec esm2.md §2.3 steps 6-9).
 *
 * No [B, H, T, T] tensor: each thread owns one T_max x T_max float32 score tile and works
 * through (sequence, head) pairs, from the end of the batch (plans put the longest last). Because
 * every sequence is attended over its own T_b rows, there are no pad keys to mask (fair-esm masks
 * them to -inf, which gives the same probabilities: exp(-inf) = 0) and no all-masked rows. */
#include "esm_internal.h"

#include "ppdock/kernels/esm_ops.h"

#include <cblas.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* Softmax over each of the `rows` rows of S (row length n, leading dimension n), in place. The
 * reductions are vectorised (omp simd): their summation order is fixed by the row length, so a
 * sequence gets the same probabilities in any batch. */
PPD_ESM_SIMD_CLONES static void softmax_rows(float *S, int rows, int n) {
    for (int i = 0; i < rows; i++) {
        float *s = S + (size_t)i * n;
        float mx = s[0];
#pragma omp simd reduction(max : mx)
        for (int j = 1; j < n; j++) mx = s[j] > mx ? s[j] : mx;
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < n; j++) {
            s[j] = ppd_esm_softmax_exp(s[j], mx);
            sum += s[j];
        }
        float inv = 1.0f / sum;
#pragma omp simd
        for (int j = 0; j < n; j++) s[j] *= inv;
    }
}

void ppd_esm_attention_forward(float *out, const float *qkv, const int64_t *tok_off, int B, int H,
                               int hd, float *scores, int64_t tile_floats, int threads) {
    // out: (N, d)   qkv: (N, 3d)   scores: (threads, T_max, T_max)
    int d = H * hd, ld = 3 * d;
    int64_t pairs = (int64_t)B * H;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1 && pairs > 1)
    for (int64_t it = 0; it < pairs; it++) {
        int64_t ph = pairs - 1 - it; /* plans sort ascending: longest sequences first */
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        float *S = scores + (size_t)tid * (size_t)tile_floats;
        int b = (int)(ph / H), h = (int)(ph % H);
        int T = (int)(tok_off[b + 1] - tok_off[b]);
        const float *q = qkv + tok_off[b] * ld + h * hd;
        const float *k = q + d, *v = q + 2 * d;
        /* S = q k^T: (T, T), fp32 accumulation */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, 1.0f, q, ld, k, ld, 0.0f, S,
                    T);
        softmax_rows(S, T, T);
        /* out[rows of b, head h] = S v: (T, hd) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1.0f, S, T, v, ld, 0.0f,
                    out + tok_off[b] * d + h * hd, d);
    }
}
