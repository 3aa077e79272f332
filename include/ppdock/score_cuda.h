/* ppdock/score_cuda.h — the score model's training pass on a CUDA GPU (link libppdock_cuda.a,
 * cuBLAS and cudart): forward, backward, gradient clipping and Adam, the same sequence of ops as
 * the CPU reference (lib/dock/score_pass.c, ppdock/score_model.h) with each op replaced by its
 * CUDA twin (ppdock/nn_cuda.h, ppdock/adam_cuda.h).
 *
 * Memory (DESIGN.md rule 1): two device allocations, made by create and never again:
 *   fixed  parameters, gradients, Adam moments, running statistics, the tensor-product and batch
 *          norm tables, the cuBLAS workspace: ppd_score_device_fixed_bytes;
 *   pass   one arena for everything a forward + backward pass of one batch holds: the CPU
 *          pass's activations (ppd_score_pass_bytes) plus what the device needs besides: the
 *          uploaded inputs (edge lists, edge vectors, time per node, the lm_ebd input) and the
 *          scatter plans of every edge list. ppd_score_device_pass_bytes gives it for a batch's
 *          sizes; the trainer packs complexes into passes against that number, so a pass that
 *          would not fit is split before it runs, never discovered by a failed allocation.
 *          A pass is its work area, from the arena's base, and its inputs (the uploaded part,
 *          ppd_score_device_input_bytes), placed where the previous pass's pieces are not when
 *          the arena has room (ppd_arena_place_inputs), so that their upload runs on a second
 *          stream while the previous pass computes. An arena of the largest pass plus twice the
 *          largest inputs always has that room; with less, an upload that finds none waits for
 *          the previous pass (counted: ppd_score_device_usage.uploads_waited).
 * The host side has one pinned staging buffer for the uploads, made by create for the largest
 * pass's inputs (ppd_score_device_input_bytes) and never again; a pass whose inputs would not
 * fit is refused like one over the pass arena.
 *
 * Determinism: every reduction runs in a fixed order without atomics (scatter plans, column
 * sums, block sums in a fixed tree), so two runs of the same batches give bit-identical
 * parameters; the element-wise ops give the CPU's bits; the GEMMs differ from OpenBLAS's in
 * summation order, so the device pass matches the CPU within float32 rounding, not bit for bit.
 *
 * The model (config, tensor-product tables, Gaussian offsets, training flag, dropout seed) is the
 * host ppd_score_model `m`, borrowed for the device's life; its parameter and gradient buffers
 * are not used by the device pass: upload them (ppd_score_device_upload) and read them back
 * (ppd_score_device_download) around a run, e.g. for checkpoints.
 *
 * Errors: PPD_ERR_CUDA (a launch or copy failed, or no device), PPD_ERR_NOMEM naming the bytes
 * asked for and free when the device cannot hold the fixed part or the pass arena, or when a
 * batch needs more pass memory than the arena has (the message gives both: raise the budget or
 * lower the batch); the batch errors of ppd_score_forward.
 */
#ifndef PPDOCK_SCORE_CUDA_H
#define PPDOCK_SCORE_CUDA_H

#include "ppdock/adam.h"
#include "ppdock/device.h"
#include "ppdock/nn_cuda.h"
#include "ppdock/score_model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ppd_score_device ppd_score_device;

/* Device bytes of the fixed part (parameters, gradients, two Adam moments, buffers, tables,
 * cuBLAS workspace), alignment included. */
size_t ppd_score_device_fixed_bytes(const ppd_score_model *m);

/* Device bytes one forward + backward pass of a batch of these sizes takes from the pass arena
 * (its work area and its inputs), exactly as laid out. Grows with every count (tested). */
size_t ppd_score_device_pass_bytes(const ppd_score_model *m, int64_t Nr, int64_t Nl, int64_t Er,
                                   int64_t El, int64_t Ec, int B);
/* The part of those bytes that is uploaded from the host (edge lists, scatter plans, edge
 * vectors, times, ESM columns): what the pass arena needs twice over, beside the largest pass,
 * for every upload to overlap the pass before it. */
size_t ppd_score_device_input_bytes(const ppd_score_model *m, int64_t Nr, int64_t Nl, int64_t Er,
                                    int64_t El, int64_t Ec, int B);

/* Allocates the fixed part and a pass arena of pass_bytes on the current device, staging_bytes
 * of pinned host memory for the passes' inputs (ppd_score_device_input_bytes of the largest
 * pass), a stream and a cuBLAS handle of precision prec (PPD_CUDA_FP32 for parity runs), and
 * uploads m's parameters and running statistics. Gradients start at zero, Adam moments at
 * zero. */
ppd_status ppd_score_device_create(ppd_score_device **d, const ppd_score_model *m,
                                   size_t pass_bytes, size_t staging_bytes,
                                   ppd_cuda_precision prec);
void ppd_score_device_destroy(ppd_score_device *d);

/* Parameters and running statistics from the host model (e.g. after loading a checkpoint), and
 * optionally the Adam moments (adam_m/adam_v: nparams floats each, or NULL to leave them). */
ppd_status ppd_score_device_upload(ppd_score_device *d, const ppd_score_model *m,
                                   const float *adam_m, const float *adam_v);
/* Parameters and running statistics into the host model; moments into adam_m/adam_v when not
 * NULL; gradients into grads when not NULL (nparams floats). Synchronises. */
ppd_status ppd_score_device_download(ppd_score_device *d, ppd_score_model *m, float *adam_m,
                                     float *adam_v, float *grads);

/* The host's part of a forward, ahead of it: lays out b's pass, prepares its inputs (cross
 * edges, scatter plans, edge vectors, ESM columns) in pinned memory and queues their upload on
 * the copy stream, so the host prepares and the copy engine uploads the next pass while the
 * device still runs the last one's backward and step; the compute stream waits for the upload
 * before the next work queued on it. Staging twice without a forward between synchronises. The next
 * forward must be of this same batch (checked by its sizes: PPD_ERR_USAGE otherwise); a backward of
 * the pass before is no longer possible. Errors: PPD_ERR_NOMEM when the pass does not fit the pass
 * arena or its inputs the pinned staging (with the sizes), CUDA's. */
ppd_status ppd_score_device_stage(ppd_score_device *d, const ppd_score_batch *b);
/* Forward of one batch (host arrays, as ppd_score_forward); tr_pred/rot_pred (B, 3) are host
 * arrays, filled when this returns (it waits for the device). Stages b first unless
 * ppd_score_device_stage just did. Uses m->training and m->dropout_seed (read here, not when
 * staged). n_cross may be NULL. */
ppd_status ppd_score_device_forward(ppd_score_device *d, const ppd_score_batch *b, float *tr_pred,
                                    float *rot_pred, int64_t *n_cross);
/* Backward of the last forward from host dL/dpred (B, 3 each); ACCUMULATES into the device
 * gradients. Queued: returns before the device is done. */
ppd_status ppd_score_device_backward(ppd_score_device *d, const float *dtr, const float *drot);
ppd_status ppd_score_device_zero_grad(ppd_score_device *d);

/* Clip the gradients to max_norm (the total norm over all tensors, as ppd_clip_grad_norm) and
 * take Adam step `step` on the device. Queued: returns before the device is done. */
ppd_status ppd_score_device_step(ppd_score_device *d, const ppd_adam_config *c, uint64_t step,
                                 double max_norm);
/* The total gradient norm (before clipping) of the last step; waits for the device. */
ppd_status ppd_score_device_grad_norm(ppd_score_device *d, double *grad_norm);
/* Profile mode on (1) or off (0): CUDA events between the kinds of op of every pass and step
 * (no extra synchronisation; a few hundred events a pass), their times summed into
 * ppd_score_device_usage.op_ms. For benchmarks: the events take launch slots. */
ppd_status ppd_score_device_profile(ppd_score_device *d, int on);

/* Profile mode (ppd_score_device_profile): the stream's time per kind of op, forward, backward
 * and step together. */
enum {
    PPD_SCORE_OP_EMBED,      /* time, atom and ESM embeddings of the nodes */
    PPD_SCORE_OP_EDGE_MLP,   /* the edge embeddings (distance expansion, MLP, SH) */
    PPD_SCORE_OP_CONV_FC,    /* the convolutions' per-edge weight MLPs */
    PPD_SCORE_OP_TP,         /* the tensor products (and their weight-gradient sums) */
    PPD_SCORE_OP_SCATTER,    /* gathers, scatters, means and node updates */
    PPD_SCORE_OP_BATCH_NORM, /* equivariant batch norm */
    PPD_SCORE_OP_HEADS,      /* the final convolution and the two output heads */
    PPD_SCORE_OP_OPTIMIZER,  /* gradient clipping and Adam */
    PPD_SCORE_NOPS
};
static inline const char *ppd_score_op_name(int op) {
    static const char *const names[PPD_SCORE_NOPS] = {
        "embed", "edge_mlp", "conv_fc", "tp", "scatter", "batch_norm", "heads", "optimizer"};
    return op >= 0 && op < PPD_SCORE_NOPS ? names[op] : "?";
}

typedef struct {
    size_t fixed_bytes;   /* the fixed allocation */
    size_t pass_capacity; /* the pass arena's size */
    /* the most of it held at once so far: a pass, or a pass and the next one's inputs arriving */
    size_t pass_high_water;
    size_t last_pass_bytes; /* what the last forward + backward used */
    size_t staging_bytes;   /* pinned host staging */
    /* the fixed part and the pass arena as the driver counts them (cudaMemGetInfo before and
     * after their allocation, the CUDA context already made): the plan, rounded to the driver's
     * pages; 0 when it could not be read */
    size_t measured_bytes;
    /* the rest of what create took by the driver's count, outside the plan: the streams, the
     * cuBLAS handle and the kernels' code loaded so far (about 67 MiB on an H200, CUDA 13) */
    size_t runtime_bytes;
    /* seconds since creation: the host preparing passes (cross edges, scatter plans, edge
     * vectors and ESM columns into pinned memory), while the device waits for them; and the
     * host blocked waiting for the device (predictions, gradient norm, downloads) */
    double stage_seconds, wait_seconds;
    /* seconds of the stream in the passes' kernels and the steps (forward, backward, clipping
     * and Adam; CUDA events around each), counted once they have run: at the next wait */
    double busy_seconds;
    /* inputs uploaded (one per pass staged), and how many of those uploads had to wait for the
     * pass before (no room for them beside it in the pass arena) */
    uint64_t uploads, uploads_waited;
    /* profile mode: milliseconds of the stream in each kind of op (PPD_SCORE_OP_*), counted
     * once they have run; zeros otherwise */
    double op_ms[PPD_SCORE_NOPS];
} ppd_score_device_usage;
void ppd_score_device_usage_get(const ppd_score_device *d, ppd_score_device_usage *u);

/* The functions above as a table, for code in libppdock.a (the trainer) that must link without
 * the CUDA library: a tool built with CUDA hands it &ppd_score_device_cuda (defined in
 * libppdock_cuda.a); a CPU-only build hands NULL. */
typedef struct ppd_score_device_ops_s {
    ppd_status (*select)(int index, ppd_device_info *info);
    size_t (*fixed_bytes)(const ppd_score_model *m);
    size_t (*pass_bytes)(const ppd_score_model *m, int64_t Nr, int64_t Nl, int64_t Er, int64_t El,
                         int64_t Ec, int B);
    ppd_status (*create)(ppd_score_device **d, const ppd_score_model *m, size_t pass_bytes,
                         size_t staging_bytes, ppd_cuda_precision prec);
    void (*destroy)(ppd_score_device *d);
    ppd_status (*upload)(ppd_score_device *d, const ppd_score_model *m, const float *adam_m,
                         const float *adam_v);
    ppd_status (*download)(ppd_score_device *d, ppd_score_model *m, float *adam_m, float *adam_v,
                           float *grads);
    ppd_status (*stage)(ppd_score_device *d, const ppd_score_batch *b);
    ppd_status (*forward)(ppd_score_device *d, const ppd_score_batch *b, float *tr_pred,
                          float *rot_pred, int64_t *n_cross);
    ppd_status (*backward)(ppd_score_device *d, const float *dtr, const float *drot);
    ppd_status (*zero_grad)(ppd_score_device *d);
    ppd_status (*step)(ppd_score_device *d, const ppd_adam_config *c, uint64_t step,
                       double max_norm);
    ppd_status (*grad_norm)(ppd_score_device *d, double *grad_norm);
    void (*usage)(const ppd_score_device *d, ppd_score_device_usage *u);
    size_t (*input_bytes)(const ppd_score_model *m, int64_t Nr, int64_t Nl, int64_t Er, int64_t El,
                          int64_t Ec, int B);
    ppd_status (*profile)(ppd_score_device *d, int on);
} ppd_score_device_ops;

extern const ppd_score_device_ops ppd_score_device_cuda;

#ifdef __cplusplus
}
#endif

#endif
