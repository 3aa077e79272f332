/* The parts of the score model's pass that the CPU reference (score_pass.c) and the device pass
 * (score_cuda.cu) share (score_internal.h). */
#include "ppdock/diffusion.h"

#include "score_internal.h"

/* σ_tr(t) in float32 as the model computes it (ppdock/diffusion.h). */
float ppd_score_sigma_tr(const ppd_score_config *c, float t) {
    ppd_diffusion_cfg d = {.tr_s_min = c->tr_s_min, .tr_s_max = c->tr_s_max};
    return ppd_sigma_tr_f32(t, &d);
}

ppd_status ppd_score_check_batch(const ppd_score_batch *b) {
    if (b->B < 1) return ppd_fail(PPD_ERR_USAGE, "score model: empty batch");
    const int64_t *bt[2] = {b->rec_batch, b->lig_batch};
    int64_t N[2] = {b->Nr, b->Nl};
    const char *who[2] = {"receptor", "ligand"};
    for (int p = 0; p < 2; p++) {
        if (N[p] < 1) return ppd_fail(PPD_ERR_USAGE, "score model: no %s nodes", who[p]);
        for (int64_t n = 0; n < N[p]; n++)
            if (bt[p][n] < 0 || bt[p][n] >= b->B || (n && bt[p][n] < bt[p][n - 1]))
                return ppd_fail(PPD_ERR_USAGE,
                                "score model: %s node %lld: batch id %lld out of order or range",
                                who[p], (long long)n, (long long)bt[p][n]);
    }
    const int64_t *src[2] = {b->rec_src, b->lig_src}, *dst[2] = {b->rec_dst, b->lig_dst};
    int64_t E[2] = {b->Er, b->El};
    for (int p = 0; p < 2; p++)
        for (int64_t e = 0; e < E[p]; e++)
            if (src[p][e] < 0 || src[p][e] >= N[p] || dst[p][e] < 0 || dst[p][e] >= N[p])
                return ppd_fail(PPD_ERR_USAGE, "score model: %s edge %lld points outside the nodes",
                                who[p], (long long)e);
    return PPD_OK;
}

/* The cutoff of each complex (spec §3.3): R_c = σ_tr(t)·w + b, or cross_max_dist if not dynamic. */
static float cross_cutoff(const ppd_score_config *c, float t) {
    float sig = ppd_score_sigma_tr(c, t);
    float w = sig * c->cross_cutoff_weight;
    return c->dynamic_max_cross ? w + c->cross_cutoff_bias : c->cross_max_dist;
}

/* |p_r/R - p_l/R|^2 < 1, walked complex by complex. Batch ids are
 * non-decreasing (ppd_score_check_batch), so each complex's nodes are one run: no index arrays
 * needed. */
int64_t ppd_score_cross_pairs(const ppd_score_config *c, const ppd_score_batch *b, int64_t *la,
                              int64_t *lr) {
    int64_t E = 0, r0 = 0, l0 = 0;
    for (int g = 0; g < b->B; g++) {
        int64_t r1 = r0, l1 = l0;
        while (r1 < b->Nr && b->rec_batch[r1] == g) r1++;
        while (l1 < b->Nl && b->lig_batch[l1] == g) l1++;
        float R = cross_cutoff(c, b->t[g]);
        for (int64_t a = l0; a < l1; a++) {
            float pa[3];
            for (int k = 0; k < 3; k++) pa[k] = b->lig_pos[3 * a + k] / R;
            for (int64_t r = r0; r < r1; r++) {
                float d2 = 0.0f;
                for (int k = 0; k < 3; k++) {
                    float q = b->rec_pos[3 * r + k] / R - pa[k];
                    float qq = q * q;
                    d2 = d2 + qq;
                }
                if (d2 < 1.0f) {
                    if (la) la[E] = a, lr[E] = r;
                    E++;
                }
            }
        }
        r0 = r1, l0 = l1;
    }
    return E;
}

/* The widest per-edge weights (W) and feature rows (D) of the model's tensor products: they
 * size the chunk buffers. */
void ppd_score_widest(const ppd_score_model *m, int *W, int *D) {
    *W = m->tp_final.wnum;
    *D = m->tp_final.out.dim > m->tp_final.in.dim ? m->tp_final.out.dim : m->tp_final.in.dim;
    for (int k = 0; k < m->cfg.layers; k++) {
        if (m->tp[k].wnum > *W) *W = m->tp[k].wnum;
        if (m->tp[k].out.dim > *D) *D = m->tp[k].out.dim;
        if (m->tp[k].in.dim > *D) *D = m->tp[k].in.dim;
    }
}

ppd_status ppd_score_atom_rows(const ppd_score_config *c, int64_t N, const float *x, int64_t *idx,
                               const char *who) {
    int X = 1 + c->lm_dim;
    for (int64_t n = 0; n < N; n++) {
        float v = x[n * X];
        if (!(v > -1.0f && v < (float)c->num_atom_types)) /* trunc toward zero must be a row */
            return ppd_fail(PPD_ERR_USAGE,
                            "score model: %s node %lld: x[0] = %g truncates outside the %d-row "
                            "embedding table",
                            who, (long long)n, (double)v, c->num_atom_types);
        idx[n] = (int64_t)v;
    }
    return PPD_OK;
}

int ppd_score_feature_dim(const ppd_score_model *m, int k) {
    int L = m->cfg.layers;
    return k < L ? m->tp[k].in.dim : m->tp[L - 1].out.dim;
}

void ppd_score_edge_vectors(float *vec, const float *pa, const int64_t *ia, const float *pb,
                            const int64_t *ib, int64_t E) {
    for (int64_t e = 0; e < E; e++)
        for (int k = 0; k < 3; k++) vec[3 * e + k] = pa[3 * ia[e] + k] - pb[3 * ib[e] + k];
}

void ppd_score_centre_vectors(const ppd_score_batch *b, float *vec) {
    /* batch ids are non-decreasing (ppd_score_check_batch): each complex is one run of nodes */
    const float *p = b->lig_pos;
    int64_t l0 = 0;
    for (int g = 0; g < b->B; g++) {
        int64_t l1 = l0;
        while (l1 < b->Nl && b->lig_batch[l1] == g) l1++;
        float cen[3] = {0.0f, 0.0f, 0.0f};
        for (int64_t n = l0; n < l1; n++)
            for (int k = 0; k < 3; k++) cen[k] += p[3 * n + k];
        float cnt = l1 > l0 ? (float)(l1 - l0) : 1.0f; /* exact below 2^24 nodes */
        for (int k = 0; k < 3; k++) cen[k] /= cnt;
        for (int64_t n = l0; n < l1; n++)
            for (int k = 0; k < 3; k++) vec[3 * n + k] = p[3 * n + k] - cen[k];
        l0 = l1;
    }
}
