/* ppdock/score_model.h — the DiffDock-PP score model (TensorProductScoreModel, no torsion, no
 * batch norm), forward and backward on the CPU (spec diffdock-pp.md §2–§3, Appendix B).
 *
 * One parameter buffer and one gradient buffer, laid out tensor by tensor in the original's
 * state-dict order under the original's names ("encoder.intra_convs.2.fc.3.weight", spec §3.9),
 * so checkpoints map one to one. Activations live in an arena; the per-edge weight generators
 * (the `fc` MLPs, 97% of the work) run over edges in chunks of `chunk_edges`, and backward
 * recomputes each chunk's fc activations instead of keeping them, so their memory is
 * chunk-sized whatever the number of cross edges (docs/train.md, "chunked edges").
 *
 * Batch (B complexes; node and edge indices are global within the batch, as PyG collates):
 *   rec_pos (Nr, 3), lig_pos (Nl, 3)          positions the model sees (ligand already noised)
 *   rec_x (Nr, X), lig_x (Nl, X), X = 1 + lm  node features [ESM(lm) | token] (spec §1.3);
 *                                             with lm = 0, X = 1 holding the residue id
 *   rec_batch (Nr), lig_batch (Nl)            complex of each node, non-decreasing, 0..B-1
 *   rec_src/rec_dst (Er), lig_src/lig_dst (El) kNN edges (src = neighbour, dst = centre)
 *   t (B)                                      diffusion time per complex (float32)
 *   rot_norm (B)                               N(σ_rot(t)) from the IGSO(3) table (spec §5.2)
 * Outputs: tr_pred (B, 3), rot_pred (B, 3) — already σ-scaled (spec §3.7 step 5).
 *
 * Dropout (config.dropout > 0) acts when m->training is set, at the original's places: after the
 * ReLU of every edge MLP and conv fc, before the ReLU of the magnitude heads; its masks come from
 * a counter-based hash (not PyTorch's generator), so runs are reproducible but not mask-for-mask
 * equal to the original's.
 * Batch norm (config.batch_norm) follows e3nn 0.5.1's BatchNorm on each interaction conv's output
 * (spec §3.8): in training, batch statistics over the receiving nodes of that call, and the
 * running statistics (m->buffers) updated with momentum 0.1; otherwise the running statistics.
 * The intra and cross modules are each called for the ligand and the receptor, as in the
 * original, so their running statistics move twice per layer.
 * Errors: PPD_ERR_USAGE for a config this implementation does not run (second-order irreps) or an
 * inconsistent batch (a ligand node's idx = trunc(x[0]) outside the embedding table, as PyTorch
 * would raise; batch ids out of order); PPD_ERR_NOMEM from the arena.
 */
#ifndef PPDOCK_SCORE_MODEL_H
#define PPDOCK_SCORE_MODEL_H

#include "ppdock/arena.h"
#include "ppdock/status.h"
#include "ppdock/tp.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int ns, nv, layers;   /* 32, 6, 4 for the released model */
    int lm_dim;           /* lm_embed_dim: 1280 with ESM-2 650M, 0 = residue ids only */
    int num_atom_types;   /* rows of atom_ebd: 24 (num_residues 23 + 1) */
    int temb_dim;         /* sigma_embed_dim, 32 (the sinusoidal embedding is fixed at 32) */
    int dist_dim;         /* dist_embed_dim: intra and centre edge Gaussians, 32 */
    int cross_dist_dim;   /* cross_dist_embed_dim: cross edge Gaussians, 32 */
    float intra_max_dist; /* 30 Å: the hard-coded intra and centre Gaussian range */
    float cross_max_dist; /* 80 Å: the cross Gaussian range (and the fixed cutoff if not dynamic) */
    int dynamic_max_cross;
    float cross_cutoff_weight, cross_cutoff_bias; /* R_c = σ_tr(t)·3 + 40 */
    float tr_s_min, tr_s_max, rot_s_min, rot_s_max;
    int scale_by_sigma;
    float dropout;   /* dropout probability in the edge MLPs, conv fc's and heads (training only) */
    int batch_norm;  /* e3nn BatchNorm on every interaction conv's output (spec §3.8) */
    int chunk_edges; /* edges per fc chunk (memory/speed trade-off; results do not depend on it) */
} ppd_score_config;

/* The released large model's settings (large_model_dips args.yaml; spec §0) with lm_dim 1280. */
void ppd_score_config_default(ppd_score_config *c);

typedef struct {
    float *w, *b;
} ppd_linear_params;

/* Pointers into a parameter (or gradient) buffer. */
typedef struct {
    float *atom_ebd;                  /* (num_atom_types, ns) */
    ppd_linear_params sigma_ebd;      /* (ns, temb) */
    ppd_linear_params lm_ebd;         /* (ns, ns + lm); unused when lm = 0 */
    ppd_linear_params rec_edge[2];    /* (ns, temb + dist), (ns, ns) */
    ppd_linear_params cross_edge[2];  /* same */
    ppd_linear_params intra_fc[4][2]; /* (3ns, 3ns), (W_k, 3ns) */
    ppd_linear_params cross_fc[4][2]; /* same */
    ppd_linear_params center_edge[2]; /* (ns, dist + temb), (ns, ns) */
    ppd_linear_params final_fc[2];    /* (2ns, 2ns), (W_final, 2ns) */
    ppd_linear_params tr_head[2];     /* (ns, 1 + temb), (1, ns) */
    ppd_linear_params rot_head[2];    /* same */
    ppd_linear_params bn[2][4];       /* batch norm of intra [0] / cross [1] conv k: weight (fields
                                         of S_{k+1}), bias (its 0e fields); NULL without BN */
} ppd_score_params;

enum { PPD_SCORE_MAX_TENSORS = 96, PPD_SCORE_MAX_LAYERS = 4 };

typedef struct {
    char name[64];
    int ndim;
    int64_t shape[2];
    size_t offset, numel; /* in floats, into the parameter buffer */
} ppd_param_entry;

typedef struct {
    ppd_score_config cfg;
    int ntensors;
    ppd_param_entry tab[PPD_SCORE_MAX_TENSORS];
    /* buffers that training changes: the batch norms' running statistics (e3nn BatchNorm:
     * running_mean over the 0e fields, running_var over all fields), one buffer, named as in the
     * state dict ("encoder.intra_convs.2.batch_norm.running_var"); none without batch norm */
    int nbuffers;
    ppd_param_entry btab[4 * PPD_SCORE_MAX_LAYERS];
    size_t nbuffer_floats;
    float *buffers;
    float *bn_mean[2][4], *bn_var[2][4];
    size_t nparams;
    float *params, *grads; /* one buffer each, nparams floats */
    ppd_score_params p, g;
    ppd_tp tp[PPD_SCORE_MAX_LAYERS]; /* layer k: S_min(k,3) x SH -> S_min(k+1,3) */
    ppd_tp tp_final;                 /* S_min(L,3) x SH -> 2x1o + 2x1e */
    /* Gaussian offsets (buffers in the checkpoint) and their gammas */
    float off_intra[64], off_cross[64]; /* dist_dim, cross_dist_dim offsets */
    float gamma_intra, gamma_cross;
    /* dropout: active when training is set, masks a pure function of dropout_seed (set per
     * pass by the caller) and of each element's position, so recomputing chunks in backward
     * regenerates them (ppdock/nn.h) */
    int training;
    uint64_t dropout_seed;
    /* activation arena, reset per forward; backward reads what forward left in it */
    ppd_arena act;
    void *saved; /* forward state for backward (opaque) */
} ppd_score_model;

/* Builds the parameter table and allocates both buffers (parameters zeroed; see the init
 * functions). PPD_ERR_USAGE for unsupported settings, naming the config key. */
ppd_status ppd_score_model_init(ppd_score_model *m, const ppd_score_config *c);
void ppd_score_model_free(ppd_score_model *m);

/* The original's init: Xavier-normal for every tensor with >= 2 dims (fan_in = columns,
 * fan_out = rows), zeros for 1-D ones — batch-norm weights included, as the original's init
 * routine does (spec §3.8) — and the running statistics reset; seeded. */
void ppd_score_model_init_params(ppd_score_model *m, uint64_t seed);

/* The batch norms' running statistics back to e3nn's initial values (means 0, variances 1). */
void ppd_score_reset_buffers(ppd_score_model *m);
/* Buffer entry (running statistics) by state-dict name, or NULL. */
const ppd_param_entry *ppd_score_model_find_buffer(const ppd_score_model *m, const char *name);

/* Entry by state-dict name, or NULL. */
const ppd_param_entry *ppd_score_model_find(const ppd_score_model *m, const char *name);

typedef struct {
    int B;
    int64_t Nr, Nl, Er, El;
    const float *rec_pos, *lig_pos, *rec_x, *lig_x;
    const int64_t *rec_batch, *lig_batch;
    const int64_t *rec_src, *rec_dst, *lig_src, *lig_dst;
    const float *t, *rot_norm;
} ppd_score_batch;

/* Forward pass; keeps what backward needs in m->act until the next forward. The batch's
 * arrays must stay valid until backward returns. n_cross (may be NULL) receives the number of
 * cross edges built. */
ppd_status ppd_score_forward(ppd_score_model *m, const ppd_score_batch *b, float *tr_pred,
                             float *rot_pred, int64_t *n_cross);

/* Backward from dL/dtr_pred and dL/drot_pred (B, 3) of the last forward; ACCUMULATES into
 * m->grads (zero them with ppd_score_zero_grad between optimizer steps). */
ppd_status ppd_score_backward(ppd_score_model *m, const float *dtr, const float *drot);
void ppd_score_zero_grad(ppd_score_model *m);

/* Planning. Cross edges a batch will have (the model's own rule, spec §3.3: it depends on the
 * noised ligand poses and t), and the activation memory one forward + backward pass of a batch
 * of that size takes from m->act: the chunk buffers (fixed by chunk_edges, about
 * 3 chunk_edges (2·3ns + W_max + out_max) floats, 160 MB at the released size and the default
 * 4096), plus per edge its saved features (about 840 bytes per cross edge, 690 per intra edge
 * at ns 32) and per node its features in every layer and their gradients (about 12 KB per node
 * with lm_embed_dim 1280). The estimate is an upper bound of the arena's high-water mark within
 * a few percent (tested). */
int64_t ppd_score_count_cross_edges(const ppd_score_model *m, const ppd_score_batch *b);
size_t ppd_score_pass_bytes(const ppd_score_model *m, int64_t Nr, int64_t Nl, int64_t Er,
                            int64_t El, int64_t Ec, int B);

/* The cross edges of the last forward (ligand index, receptor index), n_cross each. */
void ppd_score_cross_edges(const ppd_score_model *m, const int64_t **lig, const int64_t **rec);

#ifdef __cplusplus
}
#endif

#endif
