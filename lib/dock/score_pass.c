/* Score model forward and backward, CPU reference (ppdock/score_model.h; spec diffdock-pp.md
 * §3, Appendix B).
 *
 * Kept from forward for backward (all in the activation arena): node features entering every
 * layer, per-edge embeddings E (ns), their MLP inputs/hidden (64 + ns) and harmonics Y (9), and
 * the heads' few numbers. Not kept: the fc activations of the convolutions (3ns + 3ns + W per
 * edge and layer, W up to 3,032) — those are recomputed chunk by chunk in backward, which costs
 * one extra fc forward per conv but bounds their memory to chunk_edges rows.
 *
 * The cross convolutions of the two directions share their fc input (spec §3.6: the same edge
 * tensor), so one fc evaluation per chunk serves both the ligand and the receptor update, and
 * backward adds the two weight gradients before one fc backward: identical arithmetic to the
 * original's two calls, half the work.
 */
#include "ppdock/diffusion.h"
#include "ppdock/kernels/so3.h"
#include "ppdock/graph_ops.h"
#include "ppdock/nn.h"
#include "ppdock/scatter.h"
#include "ppdock/score_model.h"
#include "ppdock/so3.h"
#include "ppdock/tp.h"

#include "score_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int64_t E;
    int D;                      /* Gaussians per edge */
    float *raw, *hid, *emb, *Y; /* (E, T + D), (E, ns), (E, ns), (E, 9) */
} edge_set;

typedef struct {
    ppd_score_batch b;
    float p;       /* dropout probability of this pass (0 when not training) */
    uint64_t seed; /* dropout masks' seed */
    int64_t Ec;
    int64_t *cross_l, *cross_r;    /* (Ec) */
    float *temb_r, *temb_l, *gemb; /* (Nr, T), (Nl, T), (B, T) */
    float *emb_r, *emb_l;          /* atom_ebd + sigma_ebd: (N, ns) */
    float *lm_in_r, *lm_in_l;      /* lm_ebd inputs (N, ns + lm), lm > 0 only */
    int64_t *idx_r, *idx_l;        /* atom_ebd rows */
    float *h_r[PPD_SCORE_MAX_LAYERS + 1], *h_l[PPD_SCORE_MAX_LAYERS + 1];
    edge_set li, ri, cr, ce; /* ligand intra, receptor intra, cross, centre */
    float *cnt_li, *cnt_ri, *cnt_lc, *cnt_rc, *cnt_ce; /* receivers' in-degrees, >= 1 */
    int64_t *ce_graph, *ce_node;                       /* centre edges (g, n) */
    float *z, *sig;                                    /* (B, 12) pooled final conv, (B) σ_tr(t) */
    float *vec[2], *rho[2], *head_in[2], *head_hid[2], *mag[2], *scale[2]; /* tr, rot */
    /* chunk scratch */
    float *A, *H1, *Wt, *dWt, *dWt2, *msg, *dmsg, *dX, *dA;
    /* per layer and conv call (0 ligand intra, 1 ligand cross, 2 receptor intra, 3 receptor
     * cross): the conv's mean messages U before the batch norm, and the norm's statistics */
    float *U[PPD_SCORE_MAX_LAYERS][4], *bn_mu[PPD_SCORE_MAX_LAYERS][4],
        *bn_sf[PPD_SCORE_MAX_LAYERS][4];
    int bn_training;
} pass_state;

#define ALLOC(ptr, n)                                                                              \
    do {                                                                                           \
        void *ppd_p_;                                                                              \
        PPD_TRY(ppd_arena_alloc_st(&m->act, sizeof(*(ptr)) * (size_t)((n) > 0 ? (n) : 1), 64,      \
                                   &ppd_p_));                                                      \
        (ptr) = ppd_p_;                                                                            \
    } while (0)

/* ---- node embedding (spec §3.2) ------------------------------------------------------------- */

static ppd_status embed_nodes(ppd_score_model *m, int64_t N, const float *x, const float *temb,
                              int64_t **idx_out, float **emb_out, float **lm_in_out, float *h0,
                              const char *who) {
    const ppd_score_config *c = &m->cfg;
    int ns = c->ns, lm = c->lm_dim, X = 1 + lm;
    int64_t *idx;
    float *emb;
    ALLOC(idx, N);
    ALLOC(emb, N * ns);
    PPD_TRY(ppd_score_atom_rows(c, N, x, idx, who));
    ppd_linear_forward(emb, temb, m->p.sigma_ebd.w, m->p.sigma_ebd.b, N, TD, ns);
    ppd_add_table_rows(emb, m->p.atom_ebd, idx, N, ns);
    *idx_out = idx;
    *emb_out = emb;
    *lm_in_out = NULL;
    if (lm == 0) {
        memcpy(h0, emb, sizeof(float) * (size_t)(N * ns));
        return PPD_OK;
    }
    float *in;
    ALLOC(in, N * (ns + lm));
    ppd_gather_rows(in, ns + lm, emb, ns, NULL, 0, N, ns);
    ppd_gather_rows(in + ns, ns + lm, x + 1, X, NULL, 0, N, lm);
    ppd_linear_forward(h0, in, m->p.lm_ebd.w, m->p.lm_ebd.b, N, ns + lm, ns);
    *lm_in_out = in;
    return PPD_OK;
}

/* ---- edge features (spec §3.3) -------------------------------------------------------------- */

/* raw = [temb[tnode], G(|v|)] (or [G, temb] when gauss_first), then the 2-layer edge MLP. */
static ppd_status edge_features(ppd_score_model *m, pass_state *s, edge_set *es, int64_t E,
                                const float *vec, const float *temb, const int64_t *tnode,
                                const float *off, int D, float gamma, int gauss_first,
                                const ppd_linear_params mlp[2], uint32_t site) {
    const ppd_score_config *c = &m->cfg;
    int ns = c->ns, R = TD + D;
    es->D = D;
    es->E = E;
    ALLOC(es->raw, E * R);
    ALLOC(es->hid, E * ns);
    ALLOC(es->emb, E * ns);
    ALLOC(es->Y, E * PPD_SH_DIM);
    ppd_edge_raw_forward(es->raw, vec, temb, tnode, off, gamma, D, gauss_first, E);
    ppd_sh_forward(es->Y, vec, E);
    ppd_linear_forward(es->hid, es->raw, mlp[0].w, mlp[0].b, E, R, ns);
    ppd_relu_forward(es->hid, E * ns);
    ppd_dropout_forward(es->hid, E, ns, 0, s->seed, site, s->p);
    ppd_linear_forward(es->emb, es->hid, mlp[1].w, mlp[1].b, E, ns, ns);
    return PPD_OK;
}

static void edge_features_backward(ppd_score_model *m, const pass_state *s, const edge_set *es,
                                   float *demb, ppd_linear_params gmlp[2],
                                   const ppd_linear_params mlp[2], float *dhid) {
    int ns = m->cfg.ns, R = TD + es->D;
    ppd_linear_backward(dhid, gmlp[1].w, gmlp[1].b, demb, es->hid, mlp[1].w, es->E, ns, ns);
    ppd_dropout_relu_backward(dhid, es->hid, es->E * ns, s->p);
    ppd_linear_backward(NULL, gmlp[0].w, gmlp[0].b, dhid, es->raw, mlp[0].w, es->E, R, ns);
}

/* in-degree of each receiver, clamped at 1 (scatter-mean of an empty set is 0) */
static ppd_status degrees(ppd_score_model *m, float **out, int64_t N, const int64_t *recv,
                          int64_t E) {
    float *cnt;
    ALLOC(cnt, N);
    ppd_degrees_forward(cnt, recv, E, N);
    *out = cnt;
    return PPD_OK;
}

/* ---- convolution with chunked per-edge weights (spec §3.5) ---------------------------------- */

typedef struct {
    const int64_t *recv, *send; /* (E) */
    const float *hsend;         /* sender features, rows of tp->in.dim */
    float *acc;                 /* receiver sums, rows of tp->out.dim (forward) */
    const float *dU;            /* gradient of the receiver means (backward) */
    float *dhsend;              /* gradient of the sender features (backward) */
    const float *cnt;
} conv_dir;

typedef struct {
    const ppd_tp *tp;
    ppd_linear_params fc[2], gfc[2];
    int64_t E;
    const int64_t *first, *second; /* eattr = [emb[e], hA[first[e], :ns], hB[second[e], :ns]] */
    const float *hA, *hB;
    int dA, dB;
    float *dhA, *dhB; /* backward */
    const float *emb, *Y;
    float *demb; /* backward */
    int ndir;
    conv_dir dir[2];
    uint32_t site; /* dropout site of the fc hidden layer */
} conv_job;

static void conv_chunk_fc(ppd_score_model *m, pass_state *s, const conv_job *j, int64_t e0,
                          int64_t n) {
    int ns = m->cfg.ns, F = 3 * ns, W = j->tp->wnum;
    ppd_gather_concat3_forward(s->A, j->emb, j->hA, j->first, j->dA, j->hB, j->second, j->dB, e0, n,
                               ns);
    ppd_linear_forward(s->H1, s->A, j->fc[0].w, NULL, n, F, F);
    ppd_bias_relu_forward(s->H1, j->fc[0].b, n, F);
    ppd_dropout_forward(s->H1, n, F, e0, s->seed, j->site, s->p);
    ppd_linear_forward(s->Wt, s->H1, j->fc[1].w, NULL, n, F, W); /* + bias inside the TP */
}

static void conv_forward(ppd_score_model *m, pass_state *s, const conv_job *j) {
    const ppd_tp *tp = j->tp;
    int dout = tp->out.dim;
    int64_t C = m->cfg.chunk_edges;
    for (int64_t e0 = 0; e0 < j->E; e0 += C) {
        int64_t n = j->E - e0 < C ? j->E - e0 : C;
        conv_chunk_fc(m, s, j, e0, n);
        for (int d = 0; d < j->ndir; d++) {
            const conv_dir *cd = &j->dir[d];
            ppd_tp_forward(tp, s->msg, cd->hsend, cd->send + e0, j->Y + e0 * PPD_SH_DIM, s->Wt,
                           j->fc[1].b, n);
            ppd_scatter_add_rows(cd->acc, s->msg, cd->recv, e0, n, dout);
        }
    }
}

static void conv_backward(ppd_score_model *m, pass_state *s, const conv_job *j) {
    const ppd_tp *tp = j->tp;
    int ns = m->cfg.ns, F = 3 * ns, W = tp->wnum, din = tp->in.dim, dout = tp->out.dim;
    int64_t C = m->cfg.chunk_edges;
    for (int64_t e0 = 0; e0 < j->E; e0 += C) {
        int64_t n = j->E - e0 < C ? j->E - e0 : C;
        conv_chunk_fc(m, s, j, e0, n);
        for (int d = 0; d < j->ndir; d++) {
            const conv_dir *cd = &j->dir[d];
            ppd_scatter_mean_grad(s->dmsg, cd->dU, cd->cnt, cd->recv, e0, n, dout);
            ppd_tp_backward(tp, s->dX, d == 0 ? s->dWt : s->dWt2, j->gfc[1].b, s->dmsg, cd->hsend,
                            cd->send + e0, j->Y + e0 * PPD_SH_DIM, s->Wt, j->fc[1].b, n);
            ppd_scatter_add_rows(cd->dhsend, s->dX, cd->send, e0, n, din);
        }
        if (j->ndir == 2) ppd_add_rows(s->dWt, W, s->dWt2, W, n, W);
        /* dH1 goes into dA's buffer, then dA into H1's (H1 is not needed after the relu mask) */
        float *dH1 = s->dA, *dA = s->H1;
        ppd_linear_backward(dH1, j->gfc[1].w, NULL, s->dWt, s->H1, j->fc[1].w, n, F, W);
        ppd_dropout_relu_backward(dH1, s->H1, n * F, s->p);
        ppd_linear_backward(dA, j->gfc[0].w, j->gfc[0].b, dH1, s->A, j->fc[0].w, n, F, F);
        ppd_gather_concat3_backward(j->demb, j->dhA, j->dA, j->dhB, j->dB, dA, j->first, j->second,
                                    e0, n, ns);
    }
}

/* ---- forward -------------------------------------------------------------------------------- */

static ppd_status cross_edges(ppd_score_model *m, pass_state *s) {
    s->Ec = ppd_score_cross_pairs(&m->cfg, &s->b, NULL, NULL);
    ALLOC(s->cross_l, s->Ec);
    ALLOC(s->cross_r, s->Ec);
    ppd_score_cross_pairs(&m->cfg, &s->b, s->cross_l, s->cross_r);
    return PPD_OK;
}

int64_t ppd_score_count_cross_edges(const ppd_score_model *m, const ppd_score_batch *b) {
    return ppd_score_cross_pairs(&m->cfg, b, NULL, NULL);
}

size_t ppd_score_pass_bytes(const ppd_score_model *m, int64_t Nr, int64_t Nl, int64_t Er,
                            int64_t El, int64_t Ec, int B) {
    const ppd_score_config *c = &m->cfg;
    int ns = c->ns, L = c->layers, W, D;
    ppd_score_widest(m, &W, &D);
    int64_t C = c->chunk_edges, hl = 0, hr = 0, acc = 0;
    for (int k = 0; k <= L; k++) {
        int d = ppd_score_feature_dim(m, k);
        hl += d;
        if (k < L) hr += d, acc += m->tp[k].out.dim;
    }
    int64_t Rmax = TD + (c->dist_dim > c->cross_dist_dim ? c->dist_dim : c->cross_dist_dim);
    int64_t per_edge = 3 + Rmax + 2 * ns + PPD_SH_DIM + ns /* d_emb */ + ns /* tmp */;
    int64_t per_node = TD + 2 * hl /* features + gradients */ + 2 * acc + 2 * (ns + c->lm_dim) +
                       3 * ns + 12 /* ids, degrees, centre edges */;
    int64_t floats = C * (3 * 3 * ns + 3 * (int64_t)W + 3 * (int64_t)D) /* chunk buffers */ +
                     (Er + El) * per_edge + Ec * (per_edge + 4 /* two int64 ids */) +
                     Nl * (per_edge + per_node + 2 * ns) + Nr * (per_node - hl + hr) +
                     (int64_t)B * (12 * 4 + 4 * TD + 64);
    /* arena blocks are 64-byte aligned: ~64 allocations per pass */
    return (size_t)floats * sizeof(float) + 64 * 128;
}

static ppd_status intra_edge_set(ppd_score_model *m, pass_state *s, edge_set *es, int64_t E,
                                 const int64_t *src, const int64_t *dst, const float *pos,
                                 const float *temb, uint32_t site) {
    float *vec;
    ALLOC(vec, 3 * E);
    ppd_score_edge_vectors(vec, pos, dst, pos, src, E);
    return edge_features(m, s, es, E, vec, temb, src, m->off_intra, m->cfg.dist_dim, m->gamma_intra,
                         0, m->p.rec_edge, site);
}

/* An intra-protein conv: eattr [E, h[src], h[dst]], message from h[dst] into src. */
static conv_job intra_job(const ppd_tp *tp, int64_t E, const int64_t *src, const int64_t *dst,
                          float *h, const edge_set *es, float *acc, const float *cnt) {
    int din = tp->in.dim;
    conv_job j = {.tp = tp,
                  .E = E,
                  .first = src,
                  .second = dst,
                  .hA = h,
                  .hB = h,
                  .dA = din,
                  .dB = din,
                  .emb = es->emb,
                  .Y = es->Y,
                  .ndir = 1};
    j.dir[0] = (conv_dir){.recv = src, .send = dst, .hsend = h, .acc = acc, .cnt = cnt};
    return j;
}

static void layer_jobs(ppd_score_model *m, pass_state *s, int k, conv_job jobs[3], float *acc[4]) {
    const ppd_score_batch *b = &s->b;
    int L = m->cfg.layers;
    const ppd_tp *tp = &m->tp[k];
    int din = tp->in.dim;
    float *hl = s->h_l[k], *hr = s->h_r[k];
    jobs[0] = intra_job(tp, b->El, b->lig_src, b->lig_dst, hl, &s->li, acc[0], s->cnt_li);
    /* cross: eattr [Ec, h_l[a], h_r[b]]; ligand gets h_r[b] into a, receptor h_l[a] into b */
    jobs[1] = (conv_job){.tp = tp,
                         .E = s->Ec,
                         .first = s->cross_l,
                         .second = s->cross_r,
                         .hA = hl,
                         .hB = hr,
                         .dA = din,
                         .dB = din,
                         .emb = s->cr.emb,
                         .Y = s->cr.Y,
                         .ndir = k < L - 1 ? 2 : 1};
    jobs[1].dir[0] = (conv_dir){
        .recv = s->cross_l, .send = s->cross_r, .hsend = hr, .acc = acc[1], .cnt = s->cnt_lc};
    jobs[1].dir[1] = (conv_dir){
        .recv = s->cross_r, .send = s->cross_l, .hsend = hl, .acc = acc[3], .cnt = s->cnt_rc};
    /* receptor intra (not in the last layer) */
    jobs[2] =
        intra_job(tp, k < L - 1 ? b->Er : 0, b->rec_src, b->rec_dst, hr, &s->ri, acc[2], s->cnt_ri);
    for (int i = 0; i < 3; i++) {
        const ppd_linear_params *fc = (i == 1 ? m->p.cross_fc : m->p.intra_fc)[k],
                                *gfc = (i == 1 ? m->g.cross_fc : m->g.intra_fc)[k];
        jobs[i].site = SITE_CONV + 4 * (uint32_t)k + (uint32_t)i;
        jobs[i].fc[0] = fc[0], jobs[i].fc[1] = fc[1];
        jobs[i].gfc[0] = gfc[0], jobs[i].gfc[1] = gfc[1];
    }
}

/* ---- batch norm: kernels/bn_body.h (float here; the tests instantiate it in double) ---------- */
#define PPD_BN_REAL     float
#define PPD_BN_FN(name) name
#include "ppdock/kernels/bn_body.h"
#undef PPD_BN_REAL
#undef PPD_BN_FN

static ppd_status alloc_scratch(ppd_score_model *m, pass_state *s) {
    int ns = m->cfg.ns, F = 3 * ns, W, D;
    ppd_score_widest(m, &W, &D);
    int64_t C = m->cfg.chunk_edges;
    ALLOC(s->A, C * F);
    ALLOC(s->H1, C * F);
    ALLOC(s->dA, C * F);
    ALLOC(s->Wt, C * W);
    ALLOC(s->dWt, C * W);
    ALLOC(s->dWt2, C * W);
    ALLOC(s->msg, C * D);
    ALLOC(s->dmsg, C * D);
    ALLOC(s->dX, C * D);
    return PPD_OK;
}

/* Centre edges [e0, e0 + n): the final conv's fc input [centre emb, h_l[g, :ns]] into A, its
 * hidden layer into H1 and its per-edge weights (without bias) into Wt — forward, and again in
 * backward. */
static void final_chunk_fc(ppd_score_model *m, pass_state *s, int64_t e0, int64_t n) {
    int ns = m->cfg.ns, F2 = 2 * ns, W = m->tp_final.wnum, din = m->tp_final.in.dim;
    const float *h = s->h_l[m->cfg.layers];
    ppd_gather_rows(s->A, F2, s->ce.emb, ns, NULL, e0, n, ns);
    ppd_gather_rows(s->A + ns, F2, h, din, s->ce_graph, e0, n, ns);
    ppd_linear_forward(s->H1, s->A, m->p.final_fc[0].w, NULL, n, F2, F2);
    ppd_bias_relu_forward(s->H1, m->p.final_fc[0].b, n, F2);
    ppd_dropout_forward(s->H1, n, F2, e0, s->seed, SITE_FINAL, s->p);
    ppd_linear_forward(s->Wt, s->H1, m->p.final_fc[1].w, NULL, n, F2, W);
}

/* Centre edges, final conv and the magnitude heads (spec §3.7). */
static ppd_status heads_forward(ppd_score_model *m, pass_state *s, float *tr_pred,
                                float *rot_pred) {
    const ppd_score_batch *b = &s->b;
    const ppd_score_config *c = &m->cfg;
    int ns = c->ns, B = b->B, L = c->layers;
    int64_t Nl = b->Nl;
    const ppd_tp *tp = &m->tp_final;
    const float *h = s->h_l[L];
    /* centre vectors: each ligand node from its complex's centroid */
    float *vec;
    ALLOC(vec, 3 * Nl);
    ALLOC(s->ce_graph, Nl);
    ALLOC(s->ce_node, Nl);
    PPD_TRY(degrees(m, &s->cnt_ce, B, b->lig_batch, Nl));
    ppd_score_centre_vectors(b, vec);
    for (int64_t n = 0; n < Nl; n++) {
        s->ce_graph[n] = b->lig_batch[n];
        s->ce_node[n] = n;
    }
    PPD_TRY(edge_features(m, s, &s->ce, Nl, vec, s->temb_l, s->ce_node, m->off_intra,
                          m->cfg.dist_dim, m->gamma_intra, 1, m->p.center_edge, SITE_CENTRE_EDGES));
    /* final conv: eattr = [centre emb, h_l[g, :ns]] (the graph id indexes ligand nodes: spec §3.7
     * quirk), message TP(h_l[n], Y, fc(eattr)) into graph g. Chunked like the others. */
    ALLOC(s->z, B * 12);
    for (int i = 0; i < B * 12; i++) s->z[i] = 0.0f;
    ALLOC(s->sig, B);
    for (int g = 0; g < B; g++) s->sig[g] = ppd_score_sigma_tr(c, b->t[g]);
    int64_t C = c->chunk_edges;
    for (int64_t e0 = 0; e0 < Nl; e0 += C) {
        int64_t n = Nl - e0 < C ? Nl - e0 : C;
        final_chunk_fc(m, s, e0, n);
        ppd_tp_forward(tp, s->msg, h, s->ce_node + e0, s->ce.Y + e0 * PPD_SH_DIM, s->Wt,
                       m->p.final_fc[1].b, n);
        ppd_scatter_add_rows(s->z, s->msg, s->ce_graph, e0, n, 12);
    }
    ppd_scatter_mean_forward(s->z, s->cnt_ce, B, 12);
    /* heads: v = z[0:3] + z[6:9] (tr), z[3:6] + z[9:12] (rot); v/|v| · H([|v|, emb(t)]) · scale */
    const ppd_linear_params *head[2] = {m->p.tr_head, m->p.rot_head};
    float *pred[2] = {tr_pred, rot_pred};
    for (int h2 = 0; h2 < 2; h2++) {
        ALLOC(s->vec[h2], 3 * B);
        ALLOC(s->rho[h2], B);
        ALLOC(s->head_in[h2], B * (1 + TD));
        ALLOC(s->head_hid[h2], B * ns);
        ALLOC(s->mag[h2], B);
        ALLOC(s->scale[h2], B);
        ppd_head_input_forward(s->vec[h2], s->rho[h2], s->head_in[h2], s->z, s->gemb, B, h2);
        ppd_linear_forward(s->head_hid[h2], s->head_in[h2], head[h2][0].w, head[h2][0].b, B, 1 + TD,
                           ns);
        ppd_relu_forward(s->head_hid[h2], B * ns);
        ppd_dropout_forward(s->head_hid[h2], B, ns, 0, s->seed, SITE_HEADS + (uint32_t)h2, s->p);
        ppd_linear_forward(s->mag[h2], s->head_hid[h2], head[h2][1].w, head[h2][1].b, B, ns, 1);
        /* tr is divided by σ_tr (as the original: a division), rot multiplied by N(σ_rot) */
        ppd_head_pred_forward(pred[h2], s->scale[h2], s->vec[h2], s->rho[h2], s->mag[h2], s->sig,
                              b->rot_norm, B, c->scale_by_sigma && h2 == 0,
                              c->scale_by_sigma && h2 == 1);
    }
    return PPD_OK;
}

ppd_status ppd_score_forward(ppd_score_model *m, const ppd_score_batch *bt, float *tr_pred,
                             float *rot_pred, int64_t *n_cross) {
    PPD_TRY(ppd_score_check_batch(bt));
    ppd_arena_reset(&m->act);
    m->saved = NULL;
    pass_state *s;
    ALLOC(s, 1);
    memset(s, 0, sizeof *s);
    s->b = *bt;
    s->p = m->training ? m->cfg.dropout : 0.0f;
    s->bn_training = m->training;
    s->seed = m->dropout_seed;
    const ppd_score_batch *b = &s->b;
    const ppd_score_config *c = &m->cfg;
    int L = c->layers, B = b->B;
    PPD_TRY(alloc_scratch(m, s));
    /* time embeddings per node and per complex */
    float *tn;
    int64_t Nmax = b->Nr > b->Nl ? b->Nr : b->Nl;
    ALLOC(tn, Nmax);
    ALLOC(s->temb_r, b->Nr * TD);
    ALLOC(s->temb_l, b->Nl * TD);
    ALLOC(s->gemb, B * TD);
    for (int64_t n = 0; n < b->Nr; n++) tn[n] = b->t[b->rec_batch[n]];
    ppd_time_embedding_forward(s->temb_r, tn, b->Nr);
    for (int64_t n = 0; n < b->Nl; n++) tn[n] = b->t[b->lig_batch[n]];
    ppd_time_embedding_forward(s->temb_l, tn, b->Nl);
    ppd_time_embedding_forward(s->gemb, b->t, B);
    /* node features entering each layer */
    for (int k = 0; k <= L; k++) {
        int d = ppd_score_feature_dim(m, k);
        ALLOC(s->h_l[k], b->Nl * d);
        if (k < L) ALLOC(s->h_r[k], b->Nr * d);
    }
    PPD_TRY(embed_nodes(m, b->Nr, b->rec_x, s->temb_r, &s->idx_r, &s->emb_r, &s->lm_in_r, s->h_r[0],
                        "receptor"));
    PPD_TRY(embed_nodes(m, b->Nl, b->lig_x, s->temb_l, &s->idx_l, &s->emb_l, &s->lm_in_l, s->h_l[0],
                        "ligand"));
    /* edges */
    PPD_TRY(intra_edge_set(m, s, &s->li, b->El, b->lig_src, b->lig_dst, b->lig_pos, s->temb_l,
                           SITE_LIG_EDGES));
    PPD_TRY(intra_edge_set(m, s, &s->ri, b->Er, b->rec_src, b->rec_dst, b->rec_pos, s->temb_r,
                           SITE_REC_EDGES));
    PPD_TRY(cross_edges(m, s));
    float *cvec;
    ALLOC(cvec, 3 * s->Ec);
    ppd_score_edge_vectors(cvec, b->rec_pos, s->cross_r, b->lig_pos, s->cross_l, s->Ec);
    PPD_TRY(edge_features(m, s, &s->cr, s->Ec, cvec, s->temb_l, s->cross_l, m->off_cross,
                          m->cfg.cross_dist_dim, m->gamma_cross, 0, m->p.cross_edge,
                          SITE_CROSS_EDGES));
    PPD_TRY(degrees(m, &s->cnt_li, b->Nl, b->lig_src, b->El));
    PPD_TRY(degrees(m, &s->cnt_ri, b->Nr, b->rec_src, b->Er));
    PPD_TRY(degrees(m, &s->cnt_lc, b->Nl, s->cross_l, s->Ec));
    PPD_TRY(degrees(m, &s->cnt_rc, b->Nr, s->cross_r, s->Ec));
    /* interaction layers */
    for (int k = 0; k < L; k++) {
        int din = m->tp[k].in.dim, dout = m->tp[k].out.dim;
        float *acc[4];
        ALLOC(acc[0], b->Nl * dout);
        ALLOC(acc[1], b->Nl * dout);
        ALLOC(acc[2], b->Nr * dout);
        ALLOC(acc[3], b->Nr * dout);
        memset(acc[0], 0, sizeof(float) * (size_t)(b->Nl * dout));
        memset(acc[1], 0, sizeof(float) * (size_t)(b->Nl * dout));
        memset(acc[2], 0, sizeof(float) * (size_t)(b->Nr * dout));
        memset(acc[3], 0, sizeof(float) * (size_t)(b->Nr * dout));
        conv_job jobs[3];
        layer_jobs(m, s, k, jobs, acc);
        for (int i = 0; i < 3; i++) conv_forward(m, s, &jobs[i]);
        /* U = sums / in-degrees (scatter mean); Y = BN(U) with batch norm, else U */
        const float *cnt[4] = {s->cnt_li, s->cnt_lc, s->cnt_ri, s->cnt_rc};
        float *Y[4] = {acc[0], acc[1], acc[2], acc[3]};
        for (int call = 0; call < (k < L - 1 ? 4 : 2); call++) {
            int64_t N = call < 2 ? b->Nl : b->Nr;
            ppd_scatter_mean_forward(acc[call], cnt[call], N, dout);
            s->U[k][call] = acc[call];
            if (!m->cfg.batch_norm) continue;
            int conv = call & 1, fields = 0, scalars = 0;
            for (int i = 0; i < m->tp[k].out.n; i++) {
                fields += m->tp[k].out.r[i].mul;
                scalars +=
                    m->tp[k].out.r[i].l == 0 && m->tp[k].out.r[i].p > 0 ? m->tp[k].out.r[i].mul : 0;
            }
            ALLOC(Y[call], N * dout);
            ALLOC(s->bn_mu[k][call], scalars);
            ALLOC(s->bn_sf[k][call], fields);
            bn_forward(&m->tp[k].out, acc[call], Y[call], N, m->p.bn[conv][k].w, m->p.bn[conv][k].b,
                       m->bn_mean[conv][k], m->bn_var[conv][k], s->bn_training, s->bn_mu[k][call],
                       s->bn_sf[k][call]);
        }
        /* h_next = pad(h) + Y_intra + Y_cross (the convs' outputs after their batch norms) */
        ppd_update_nodes_forward(s->h_l[k + 1], s->h_l[k], b->Nl, din, dout, Y[0], Y[1]);
        if (k < L - 1)
            ppd_update_nodes_forward(s->h_r[k + 1], s->h_r[k], b->Nr, din, dout, Y[2], Y[3]);
    }
    PPD_TRY(heads_forward(m, s, tr_pred, rot_pred));
    m->saved = s;
    if (n_cross) *n_cross = s->Ec;
    return PPD_OK;
}

void ppd_score_cross_edges(const ppd_score_model *m, const int64_t **lig, const int64_t **rec) {
    const pass_state *s = m->saved;
    *lig = s ? s->cross_l : NULL;
    *rec = s ? s->cross_r : NULL;
}

/* ---- backward ------------------------------------------------------------------------------- */

static ppd_status heads_backward(ppd_score_model *m, pass_state *s, const float *dtr,
                                 const float *drot, float *dh) {
    const ppd_score_batch *b = &s->b;
    const ppd_score_config *c = &m->cfg;
    int ns = c->ns, B = b->B;
    int64_t Nl = b->Nl;
    const ppd_tp *tp = &m->tp_final;
    int din = tp->in.dim, W = tp->wnum, F2 = 2 * ns;
    const float *h = s->h_l[c->layers];
    const float *dpred[2] = {dtr, drot};
    const ppd_linear_params *head[2] = {m->p.tr_head, m->p.rot_head};
    ppd_linear_params *ghead[2] = {m->g.tr_head, m->g.rot_head};
    float *dz, *dmag, *dhid, *din_h;
    ALLOC(dz, B * 12);
    ALLOC(dmag, B);
    ALLOC(dhid, B * ns);
    ALLOC(din_h, B * (1 + TD));
    for (int h2 = 0; h2 < 2; h2++) {
        ppd_head_mag_backward(dmag, dpred[h2], s->vec[h2], s->rho[h2], s->scale[h2], B);
        ppd_linear_backward(dhid, ghead[h2][1].w, ghead[h2][1].b, dmag, s->head_hid[h2],
                            head[h2][1].w, B, ns, 1);
        ppd_dropout_relu_backward(dhid, s->head_hid[h2], B * ns, s->p);
        ppd_linear_backward(din_h, ghead[h2][0].w, ghead[h2][0].b, dhid, s->head_in[h2],
                            head[h2][0].w, B, 1 + TD, ns);
        ppd_head_input_backward(dz, dpred[h2], s->vec[h2], s->rho[h2], s->scale[h2], s->mag[h2],
                                din_h, B, h2);
    }
    /* final conv backward, chunked; dh gets the sender and the quirk's graph-id rows */
    float *dce_emb;
    ALLOC(dce_emb, Nl * ns);
    memset(dce_emb, 0, sizeof(float) * (size_t)(Nl * ns));
    int64_t C = c->chunk_edges;
    for (int64_t e0 = 0; e0 < Nl; e0 += C) {
        int64_t n = Nl - e0 < C ? Nl - e0 : C;
        final_chunk_fc(m, s, e0, n);
        ppd_scatter_mean_grad(s->dmsg, dz, s->cnt_ce, s->ce_graph, e0, n, 12);
        ppd_tp_backward(tp, s->dX, s->dWt, m->g.final_fc[1].b, s->dmsg, h, s->ce_node + e0,
                        s->ce.Y + e0 * PPD_SH_DIM, s->Wt, m->p.final_fc[1].b, n);
        ppd_scatter_add_rows(dh, s->dX, s->ce_node, e0, n, din);
        ppd_linear_backward(s->dA, m->g.final_fc[1].w, NULL, s->dWt, s->H1, m->p.final_fc[1].w, n,
                            F2, W);
        ppd_dropout_relu_backward(s->dA, s->H1, n * F2, s->p);
        memcpy(s->H1, s->dA, sizeof(float) * (size_t)(n * F2));
        ppd_linear_backward(s->dA, m->g.final_fc[0].w, m->g.final_fc[0].b, s->H1, s->A,
                            m->p.final_fc[0].w, n, F2, F2);
        ppd_add_rows(dce_emb + e0 * ns, ns, s->dA, F2, n, ns);
        ppd_scatter_add_cols(dh, din, s->dA + ns, F2, s->ce_graph, e0, n, ns);
    }
    float *tmp;
    ALLOC(tmp, Nl * ns);
    edge_features_backward(m, s, &s->ce, dce_emb, m->g.center_edge, m->p.center_edge, tmp);
    return PPD_OK;
}

static ppd_status embed_backward(ppd_score_model *m, int64_t N, const float *dh0,
                                 const int64_t *idx, const float *lm_in, const float *temb) {
    const ppd_score_config *c = &m->cfg;
    int ns = c->ns, lm = c->lm_dim;
    float *de;
    ALLOC(de, N * ns);
    if (lm == 0) {
        memcpy(de, dh0, sizeof(float) * (size_t)(N * ns));
    } else {
        float *din;
        ALLOC(din, N * (ns + lm));
        ppd_linear_backward(din, m->g.lm_ebd.w, m->g.lm_ebd.b, dh0, lm_in, m->p.lm_ebd.w, N,
                            ns + lm, ns);
        ppd_gather_rows(de, ns, din, ns + lm, NULL, 0, N, ns);
    }
    ppd_scatter_add_rows(m->g.atom_ebd, de, idx, 0, N, ns);
    ppd_linear_backward(NULL, m->g.sigma_ebd.w, m->g.sigma_ebd.b, de, temb, m->p.sigma_ebd.w, N, TD,
                        ns);
    return PPD_OK;
}

ppd_status ppd_score_backward(ppd_score_model *m, const float *dtr, const float *drot) {
    pass_state *s = m->saved;
    if (!s) return ppd_fail(PPD_ERR_USAGE, "score model: backward without a forward");
    const ppd_score_batch *b = &s->b;
    int ns = m->cfg.ns, L = m->cfg.layers;
    /* gradients of the node features entering each layer, from the top down */
    float *dl[PPD_SCORE_MAX_LAYERS + 1], *dr[PPD_SCORE_MAX_LAYERS + 1];
    for (int k = 0; k <= L; k++) {
        int d = ppd_score_feature_dim(m, k);
        ALLOC(dl[k], b->Nl * d);
        memset(dl[k], 0, sizeof(float) * (size_t)(b->Nl * d));
        if (k < L) {
            ALLOC(dr[k], b->Nr * d);
            memset(dr[k], 0, sizeof(float) * (size_t)(b->Nr * d));
        }
    }
    PPD_TRY(heads_backward(m, s, dtr, drot, dl[L]));
    float *d_li, *d_ri, *d_cr;
    ALLOC(d_li, b->El * ns);
    ALLOC(d_ri, b->Er * ns);
    ALLOC(d_cr, s->Ec * ns);
    memset(d_li, 0, sizeof(float) * (size_t)(b->El * ns));
    memset(d_ri, 0, sizeof(float) * (size_t)(b->Er * ns));
    memset(d_cr, 0, sizeof(float) * (size_t)(s->Ec * ns));
    for (int k = L - 1; k >= 0; k--) {
        int din = m->tp[k].in.dim, dout = m->tp[k].out.dim;
        /* h_next = pad(h) + U_i + U_c: the pad passes the first din columns straight through */
        ppd_add_rows(dl[k], din, dl[k + 1], dout, b->Nl, din);
        /* receptor: in the last layer h_r is not updated, so only the convs read h_r[L-1] */
        float *dr_next = k < L - 1 ? dr[k + 1] : NULL;
        if (dr_next) ppd_add_rows(dr[k], din, dr_next, dout, b->Nr, din);
        float *acc_dummy[4] = {NULL, NULL, NULL, NULL};
        conv_job jobs[3];
        layer_jobs(m, s, k, jobs, acc_dummy);
        /* dU for each conv = d(h_next) of its receiver side, through its batch norm if any */
        float *dU[4] = {dl[k + 1], dl[k + 1], dr_next, dr_next};
        if (m->cfg.batch_norm)
            for (int c = 0; c < (k < L - 1 ? 4 : 2); c++) {
                int64_t N = c < 2 ? b->Nl : b->Nr;
                int conv = c & 1;
                ALLOC(dU[c], N * dout);
                bn_backward(&m->tp[k].out, s->U[k][c], c < 2 ? dl[k + 1] : dr_next, dU[c], N,
                            m->p.bn[conv][k].w, m->g.bn[conv][k].w, m->g.bn[conv][k].b,
                            s->bn_training, s->bn_mu[k][c], s->bn_sf[k][c]);
            }
        jobs[0].dir[0].dU = dU[0];
        jobs[0].dir[0].dhsend = dl[k];
        jobs[0].dhA = dl[k];
        jobs[0].dhB = dl[k];
        jobs[0].demb = d_li;
        jobs[1].dir[0].dU = dU[1];
        jobs[1].dir[0].dhsend = dr[k];
        jobs[1].dir[1].dU = dU[3];
        jobs[1].dir[1].dhsend = dl[k];
        jobs[1].dhA = dl[k];
        jobs[1].dhB = dr[k];
        jobs[1].demb = d_cr;
        jobs[2].dir[0].dU = dU[2];
        jobs[2].dir[0].dhsend = dr[k];
        jobs[2].dhA = dr[k];
        jobs[2].dhB = dr[k];
        jobs[2].demb = d_ri;
        for (int i = 0; i < 3; i++) conv_backward(m, s, &jobs[i]);
    }
    /* edge embeddings: ligand and receptor intra share rec_edge_embed */
    float *tmp;
    int64_t Emax = b->El > b->Er ? b->El : b->Er;
    if (s->Ec > Emax) Emax = s->Ec;
    ALLOC(tmp, Emax * ns);
    edge_features_backward(m, s, &s->li, d_li, m->g.rec_edge, m->p.rec_edge, tmp);
    edge_features_backward(m, s, &s->ri, d_ri, m->g.rec_edge, m->p.rec_edge, tmp);
    edge_features_backward(m, s, &s->cr, d_cr, m->g.cross_edge, m->p.cross_edge, tmp);
    PPD_TRY(embed_backward(m, b->Nl, dl[0], s->idx_l, s->lm_in_l, s->temb_l));
    PPD_TRY(embed_backward(m, b->Nr, dr[0], s->idx_r, s->lm_in_r, s->temb_r));
    return PPD_OK;
}
