/* ppdock/train.h — diffusion training of the score model from the caches (spec
 * diffdock-pp.md §5, §6), the library behind the `train` tool (docs/train.md).
 *
 * One run directory RUN holds:
 *   last.safetensors   parameters (DiffDock-PP names), Adam moments, step, epoch, position in
 *                      the epoch, RNG state, best validation loss, the config
 * (ppdock/checkpoint.h); written atomically every train.checkpoint_steps steps, at each epoch's end
 *                      and at the end of the run (also one stopped by opts.stop)
 *   best.safetensors   the same, at the epoch with the lowest validation loss
 *   metrics.jsonl      one JSON object per optimizer step ("kind": "step") and per epoch
 *                      ("kind": "epoch", with the validation losses)
 *   loss.svg           the loss curves, redrawn at the end
 *   config.yaml        the full config of the run
 *
 * Determinism: every random draw comes from seeded xoshiro streams: the order of complexes of
 * epoch e is a permutation drawn from a stream seeded by (seed, e); the noise of the training
 * complexes from the run's stream, whose state is in the checkpoint; validation noise from a
 * stream seeded by (seed, complex index), the same every epoch. So training 20 steps, or 10,
 * stopping, and resuming for 10 more, gives bit-identical parameters (threads may change the
 * summation order of OpenBLAS; the tests use a fixed -j).
 *
 * Errors: PPD_ERR_USAGE for settings the model does not run or caches that do not match the
 * config (the message names the setting or cache); cache errors; PPD_ERR_IO for the run
 * directory. A complex that cannot be loaded is skipped with a warning (ppdock/loader.h), and so,
 * on the GPU, is one that alone needs more than the pass arena (the warning names the bytes);
 * both count in the report's `skipped`.
 */
#ifndef PPDOCK_TRAIN_H
#define PPDOCK_TRAIN_H

#include "ppdock/config.h"
#include "ppdock/loader.h"
#include "ppdock/score_cuda.h"
#include "ppdock/status.h"

#include <signal.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const char *graphs, *esm; /* caches; esm may be NULL when model.lm_embed_dim is 0 */
    const char *run_dir;      /* RUN (created); may be NULL with eval_only */
    const char *init_from;    /* DiffDock-PP .pth or ppdock checkpoint to start from */
    int resume;               /* continue RUN/last.safetensors */
    int64_t max_steps;        /* stop after this many optimizer steps in total (0: no limit) */
    int eval_only;            /* evaluate `split` and stop */
    const char *split;        /* eval_only: split to evaluate (default "val") */
    const char *dump_path;    /* eval_only: JSON lines of the predictions (may be NULL) */
    int64_t seed;             /* < 0: train.seed */
    int threads;
    int quiet;
    /* on the GPU: time each kind of op (report.device_op_ms; ppd_score_device_profile) */
    int profile;
    /* The GPU pass (ppdock/score_cuda.h): &ppd_score_device_cuda in a tool built with CUDA, NULL
     * otherwise. Which one runs follows device.engine (auto: the GPU when there is one). */
    const struct ppd_score_device_ops_s *device_ops;
    /* When not NULL and set (a signal handler's flag: SLURM's SIGTERM before a time limit or a
     * preemption), the run stops after the step in progress, saves last.safetensors (with the
     * random state a resumed run must start from) and returns with report.interrupted set;
     * --resume then continues as if never stopped. Read at step boundaries only. */
    const volatile sig_atomic_t *stop;
} ppd_train_opts;

typedef struct {
    int64_t steps, epochs, complexes, skipped;
    double last_loss, best_val_loss, seconds, complexes_per_s;
    uint64_t peak_rss;
    int64_t eval_complexes;
    double eval_loss, eval_tr_loss, eval_rot_loss;
    /* the GPU run (device[0] == 0 on the CPU): its name, the fixed device memory (parameters,
     * gradients, moments, tables), all it reserved (fixed part and pass arena), what the driver
     * counted for that reservation, what the driver counted beside it for the CUDA runtime's
     * own (streams, cuBLAS handle, kernel code; outside the plan), and the largest pass planned
     * and used (bytes) */
    char device[256];
    size_t device_fixed, device_reserved, device_measured, device_runtime, device_planned_peak,
        device_used_peak;
    /* passes uploaded, and how many of those uploads waited for the pass before them (no room
     * beside it in the pass arena; 0 with the default reservation) */
    uint64_t device_uploads, device_uploads_waited;
    /* with opts.profile: the stream's milliseconds in each kind of op (PPD_SCORE_OP_*) */
    double device_op_ms[PPD_SCORE_NOPS];
    int interrupted; /* stopped by opts.stop; last.safetensors holds where to resume */
} ppd_train_report;

/* Map the config onto the model / diffusion / optimizer settings; PPD_ERR_USAGE naming the key
 * for a value this implementation does not run. */
struct ppd_score_config;
ppd_status ppd_train_run(const ppd_train_opts *o, const ppd_config *cfg, ppd_train_report *rep);

/* The pass arena `train --device cuda` reserves by default (device.budget_gb 0) for a cache:
 * the largest pass that a training batch of B complexes of train_split or an evaluation of one
 * complex of eval_split can need (ppd_loader_worst_pass's bound; either split NULL to leave it
 * out), plus twice the largest inputs of those passes, the room for every pass's upload to run
 * while the pass before it computes (ppd_arena_place_inputs). *inputs (may be NULL): those
 * largest inputs alone, the pinned host staging every pass's upload fits. Sizes from ops
 * (pass_bytes, input_bytes) for model m. Errors: ppd_loader_worst_pass's. */
ppd_status ppd_train_pass_reserve(const ppd_loader *l, const ppd_score_model *m,
                                  const ppd_score_device_ops *ops, const char *train_split, int B,
                                  const char *eval_split, size_t *bytes, size_t *inputs);

#ifdef __cplusplus
}
#endif

#endif
