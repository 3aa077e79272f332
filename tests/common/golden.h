/* tests/common/golden.h — the score model's golden cases from the ORIGINAL DiffDock-PP
 * (tests/ref/diffdock_score_ref.py → tests/data/diffdock-golden[-bn]), loaded for the CPU unit
 * tests and the GPU tests alike.
 *
 * A golden directory holds model.pth (the weights, "model." + our state-dict names, and the
 * batch norms' running statistics) and case_<name>.pt (a batch: positions, features, batch ids,
 * kNN edges, t, N(σ_rot); the original's cross edges, predictions, loss and every gradient as
 * "grad." + name). Errors come back as ppd_status with the file and tensor named.
 */
#ifndef PPDOCK_TESTS_GOLDEN_H
#define PPDOCK_TESTS_GOLDEN_H

#include "ppdock/score_model.h"
#include "ppdock/tensorfile.h"

typedef struct {
    ppd_tensor_file *f;
    ppd_score_batch b;
    float *rec_pos, *lig_pos, *rec_x, *lig_x, *t, *rot_norm;
    int64_t *rec_batch, *lig_batch, *rec_ei, *lig_ei;
} ppt_golden_case;

/* The golden model's config: ns 8, nv 3, 4 layers, lm 16 (config.json), chunk_edges 1000 so
 * that every conv runs several chunks. */
void ppt_golden_config(ppd_score_config *c);

/* A float32 copy (malloc) of tensor `name`, numel (may be NULL) its count; NULL with the status
 * set when missing. */
float *ppt_tensor_f32(const ppd_tensor_file *f, const char *name, int64_t *numel);
/* The same for a contiguous int64 tensor. */
int64_t *ppt_tensor_i64(const ppd_tensor_file *f, const char *name, int64_t *numel);

/* dir/case_<name>.pt into gc (free with ppt_golden_case_free, also after a failure). */
ppd_status ppt_golden_case_load(ppt_golden_case *gc, const char *dir, const char *name);
void ppt_golden_case_free(ppt_golden_case *gc);

/* Every parameter and running statistic of m from dir/model.pth; PPD_ERR_FORMAT naming the
 * first tensor missing or of another shape. */
ppd_status ppt_golden_weights_load(ppd_score_model *m, const char *dir);

/* The loss of spec §5.3 in double from float32 predictions against the case's scores, and its
 * gradient dL/dtr, dL/drot (B, 3). Returns L; ltr/lrot receive the two means. */
double ppt_golden_loss(const ppt_golden_case *gc, const float *tr, const float *rot, float *dtr,
                       float *drot, double *ltr, double *lrot);

/* max |a - b| / max(max |b|, floor) over n values; infinity when a or b holds a NaN */
double ppt_rel_err(const float *a, const float *b, int64_t n, double floor);

#endif
