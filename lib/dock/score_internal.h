/* lib/dock/score_internal.h — what the score model's CPU pass (score_pass.c) and its device pass
 * (score_cuda.cu) share: the batch checks, the cross-edge rule, the dropout sites, the chunk
 * buffer widths. Private to lib/dock. */
#ifndef PPDOCK_SCORE_INTERNAL_H
#define PPDOCK_SCORE_INTERNAL_H

#include "ppdock/score_model.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { TD = 32 }; /* time embedding width (fixed by the sinusoidal embedding) */

/* Dropout sites: each place a mask is drawn has its own id (the mask is a function of the id,
 * the row and the column; ppdock/nn.h). */
enum {
    SITE_LIG_EDGES = 1,
    SITE_REC_EDGES,
    SITE_CROSS_EDGES,
    SITE_CENTRE_EDGES,
    SITE_CONV = 16, /* + 4 k + job (0 ligand intra, 1 cross, 2 receptor intra) */
    SITE_FINAL = 64,
    SITE_HEADS, /* + 0 tr, + 1 rot */
};

/* σ_tr(t) in float32 as the model computes it (ppdock/diffusion.h). */
float ppd_score_sigma_tr(const ppd_score_config *c, float t);

/* Batch ids in range and non-decreasing, edges inside their protein: PPD_ERR_USAGE naming the
 * first node or edge that is not. */
ppd_status ppd_score_check_batch(const ppd_score_batch *b);

/* idx[n] = trunc(x[n * (1 + lm)]), the atom_ebd row of each node; PPD_ERR_USAGE naming the
 * node (who: "receptor"/"ligand") when it falls outside the table, as PyTorch would raise. */
ppd_status ppd_score_atom_rows(const ppd_score_config *c, int64_t N, const float *x, int64_t *idx,
                               const char *who);

/* The pairs (ligand a, receptor b) of each complex closer than its cutoff (spec §3.3), in (a, b)
 * order; stored when la/lr are given. Returns the count. */
int64_t ppd_score_cross_pairs(const ppd_score_config *c, const ppd_score_batch *b, int64_t *la,
                              int64_t *lr);

/* The widest per-edge weights (W) and feature rows (D) of the model's tensor products: they
 * size the chunk buffers. */
void ppd_score_widest(const ppd_score_model *m, int *W, int *D);

/* vec[e] = pa[ia[e]] - pb[ib[e]] for E edges: the edge vectors (intra: pos[dst] - pos[src];
 * cross: receptor - ligand). vec: (E, 3). */
void ppd_score_edge_vectors(float *vec, const float *pa, const int64_t *ia, const float *pb,
                            const int64_t *ib, int64_t E);

/* vec: (Nl, 3). Each ligand node minus its complex's centroid (spec §3.7: a scatter-mean of the
 * positions, summed in float in node order and divided by the node count): the centre edges. */
void ppd_score_centre_vectors(const ppd_score_batch *b, float *vec);

/* Width of the ligand features entering layer k (k = layers: the last layer's output). */
int ppd_score_feature_dim(const ppd_score_model *m, int k);

#ifdef __cplusplus
}
#endif

#endif
