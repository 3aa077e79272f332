/* ppdock/checkpoint.h — training checkpoints of the score model: save, resume, and start from
 * DiffDock-PP weights.
 *
 *   ppd_train_state ts = {.step = step, .epoch = epoch, .rng = rng};
 *   PPD_TRY(ppd_checkpoint_save("run/last.safetensors", &model, adam_m, adam_v, &ts, yaml));
 *   ...
 *   ppd_checkpoint_info info;
 *   PPD_TRY(ppd_checkpoint_load(path, &model, adam_m, adam_v, &ts, &info));
 *
 * A ppdock training checkpoint is a safetensors file (written atomically by
 * ppdock/safetensors_write.h, so a crash while saving leaves the previous checkpoint) holding
 *
 *   <name>                       F32, the parameter's shape  every model parameter, under its
 *                                                            DiffDock-PP state-dict name
 *                                                            ("encoder.intra_convs.0.fc.3.weight",
 *                                                            ppd_param_entry), state-dict order
 *   optimizer.exp_avg.<name>     F32, same shape             Adam's first moment m } when saved
 *   optimizer.exp_avg_sq.<name>  F32, same shape             Adam's second moment v} with them
 *   train.step                   I64 [1]   optimizer steps taken (the next Adam step is step + 1,
 *                                          as torch's per-parameter "step")    } when saved with
 *   train.epoch                  I64 [1]   completed epochs                    } a train state
 *   train.rng                    I64 [4]   the ppd_rng state s[0..3], bit-cast }
 *   train.progress               I64 [3]   epoch_batch, bad_epochs, and best_val's
 *                                          IEEE-754 bits (optional on load: zeros)
 *   train.order                  I64 [2]   batch_size and seed, which fix what epoch_batch
 *                                          points at (optional on load: zeros, unknown)
 *
 * and the metadata strings format = "ppdock-train-checkpoint", version = "1", producer =
 * "ppdock <version>", config = the caller's YAML text (absent when NULL). Buffers (Gaussian
 * offsets, tensor-product masks) are not stored: the model's config rebuilds them. Python reads
 * it with safetensors (safe_open(path, "np").metadata()["config"], load_file(path)).
 *
 * Loading also takes the original's checkpoints (PyTorch .pth, read by ppdock/tensorfile.h):
 * {"model": state_dict, "optimizer": Adam state_dict} as DiffDock-PP's training writes them, or a
 * bare state_dict (names "encoder.*"). Parameters come from model.<name>. Buffers — names holding
 * "dist_exp.offset" or "tensor_prod." — are not loaded, but the Gaussian offsets
 * (*_dist_exp.offset) must equal the ones the model's config gives (1e-5 relative), as they
 * change the model's output. Adam's moments come from optimizer.state.<i>.exp_avg / exp_avg_sq,
 * where i is the parameter's index among the trainable parameters in state-dict order (the
 * model's tab order), and the step from optimizer.state.<i>.step (equal for all i). The epoch
 * becomes 0 (the original restarts its epoch count on resume, spec §6) and the rng is not
 * touched: the .pth has none.
 *
 * Strictness: every parameter of the model must be in the file with its exact shape, and every
 * tensor of the file must be one the model or the optimizer reads (or a skipped buffer): a
 * tensor the model does not have means another architecture or size. Moments are all present or
 * all absent. Values must be finite, second moments >= 0.
 *
 * Errors (the message names the file and the tensor, and says what to check):
 *   PPD_ERR_USAGE    NULL path or model; exactly one of adam_m, adam_v NULL; saving a non-finite
 *                    parameter or moment or a negative second moment (a diverged run: the old
 *                    checkpoint is kept), or step/epoch above INT64_MAX; non-UTF-8 config text.
 *   PPD_ERR_NOTFOUND the file lacks a parameter ("checkpoint X has no tensor encoder.foo: was it
 *                    written for another model size?"), or some but not all of the moments.
 *   PPD_ERR_CONFIG   the file was written for another model: a shape differs ("... is [864, 48]
 *                    in X, the model wants [3032, 96]: ns/nv/lm_embed_dim of the config differ
 *                    from the checkpoint's"), a tensor the model does not have, Gaussian offsets
 *                    of another distance range or count.
 *   PPD_ERR_FORMAT   not a checkpoint: a safetensors file without format
 *                    "ppdock-train-checkpoint", a DiffDock-PP confidence model (named by its
 *                    encoder.confidence_predictor tensor), a parameter that is not a float
 *                    tensor, non-finite values, a negative second moment, train.* of the wrong
 *                    dtype/shape or only some of them, a zero rng state, a negative or
 *                    fractional step, optimizer steps that differ between parameters.
 *   PPD_ERR_VERSION  a ppdock checkpoint of a version other than "1".
 *   PPD_ERR_IO, PPD_ERR_NOMEM, and the reader's errors (ppdock/tensorfile.h) and the writer's
 *                    (ppdock/safetensors_write.h).
 * A failed load changes nothing the caller passed (it reads into scratch memory first); a failed
 * save leaves the previous file at path untouched.
 */
#ifndef PPDOCK_CHECKPOINT_H
#define PPDOCK_CHECKPOINT_H

#include <stdint.h>

#include "ppdock/rng.h"
#include "ppdock/score_model.h"
#include "ppdock/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PPD_CHECKPOINT_FORMAT  "ppdock-train-checkpoint"
#define PPD_CHECKPOINT_VERSION "1"

typedef struct {
    uint64_t step;  /* optimizer steps taken */
    uint64_t epoch; /* completed epochs */
    ppd_rng rng;
    uint64_t epoch_batch; /* batches of the current epoch already taken (resume point) */
    uint64_t bad_epochs;  /* epochs since the best validation loss (early stopping) */
    double best_val;      /* best validation loss so far (0: none yet) */
    /* the batch size and seed of the epoch order that epoch_batch counts in (0, 0: unknown,
     * from a checkpoint written before they were stored) */
    uint64_t batch_size, seed;
} ppd_train_state;

typedef enum { PPD_CKPT_PPDOCK = 1, PPD_CKPT_DIFFDOCK_PTH = 2 } ppd_checkpoint_kind;

typedef struct {
    ppd_checkpoint_kind kind;
    int has_optimizer;   /* the file holds Adam moments (copied when adam_m/adam_v were given) */
    int has_train_state; /* ppdock: train.*; .pth: the optimizer's step */
} ppd_checkpoint_info;

/* Save m->params, and when non-NULL the Adam moments (both or neither, m->nparams floats each,
 * laid out as m->params) and the train state, with config_yaml (may be NULL) as metadata. */
ppd_status ppd_checkpoint_save(const char *path, const ppd_score_model *m, const float *adam_m,
                               const float *adam_v, const ppd_train_state *st,
                               const char *config_yaml);

/* Load a ppdock checkpoint or a DiffDock-PP .pth into m->params (m built with the config the
 * file was trained with). adam_m/adam_v (both or neither) receive the moments, or zeros when the
 * file has none (a fresh Adam). st (may be NULL) receives step and epoch (0 when the file has no
 * train state) and, from a ppdock checkpoint with a train state, the rng. info may be NULL. */
ppd_status ppd_checkpoint_load(const char *path, ppd_score_model *m, float *adam_m, float *adam_v,
                               ppd_train_state *st, ppd_checkpoint_info *info);

#ifdef __cplusplus
}
#endif

#endif
