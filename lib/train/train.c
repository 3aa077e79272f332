/* Diffusion training of the score model (ppdock/train.h). */
#include "ppdock/train.h"

#include "ppdock/adam.h"
#include "ppdock/check.h"
#include "ppdock/checkpoint.h"
#include "ppdock/diffusion.h"
#include "ppdock/fsutil.h"
#include "ppdock/hash.h"
#include "ppdock/igso3.h"
#include "ppdock/loader.h"
#include "ppdock/log.h"
#include "ppdock/progress.h"
#include "ppdock/rng.h"
#include "ppdock/score_cuda.h"
#include "ppdock/score_model.h"
#include "ppdock/tool.h"

#include <cblas.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    const ppd_train_opts *o;
    const ppd_config *cfg;
    ppd_score_model m;
    /* the GPU pass when device.engine picks it (NULL: the CPU reference runs) */
    const ppd_score_device_ops *ops;
    ppd_score_device *dev;
    size_t dev_used_peak;
    ppd_diffusion_cfg dc;
    ppd_adam_config adam;
    ppd_igso3 T;
    ppd_loader *loader;
    /* the loaded batch's arena (batch_arena points to one of two: the next batch is read into
     * the other on the read-ahead's thread while this one computes) */
    ppd_arena arenas[2], *batch_arena;
    ppd_read_ahead *ahead;   /* NULL: every batch is read when it is needed */
    const char *ahead_split; /* what the read-ahead is reading (NULL: nothing), which batch of */
    int64_t ahead_key;       /* the split, and into which of the two arenas */
    int ahead_slot;
    float *adam_m, *adam_v;
    size_t *tens_off, *tens_num;
    ppd_train_state st;
    uint64_t seed;
    int batch_size, micro, epochs, patience, fixed_noise;
    size_t act_budget; /* bytes of activations one pass may take (train.max_mem_gb less the rest) */
    int64_t checkpoint_steps;
    FILE *metrics;
    char *config_yaml;
    /* loss history for the plot */
    double *step_loss, *val_loss;
    int64_t n_step_loss, cap_step_loss, n_val_loss, cap_val_loss;
} trainer;

/* ---- settings -------------------------------------------------------------------------------- */

static ppd_status model_config(const ppd_config *cfg, ppd_score_config *c, int chunk) {
    ppd_score_config_default(c);
    c->ns = (int)ppd_config_int(cfg, "model.ns");
    c->nv = (int)ppd_config_int(cfg, "model.nv");
    c->layers = (int)ppd_config_int(cfg, "model.num_conv_layers");
    c->lm_dim = (int)ppd_config_int(cfg, "model.lm_embed_dim");
    c->temb_dim = (int)ppd_config_int(cfg, "model.sigma_embed_dim");
    c->dist_dim = (int)ppd_config_int(cfg, "model.dist_embed_dim");
    c->cross_dist_dim = (int)ppd_config_int(cfg, "model.cross_dist_embed_dim");
    c->cross_max_dist = (float)ppd_config_float(cfg, "model.cross_max_dist");
    c->dynamic_max_cross = ppd_config_bool(cfg, "model.dynamic_max_cross");
    c->cross_cutoff_weight = (float)ppd_config_float(cfg, "model.cross_cutoff_weight");
    c->cross_cutoff_bias = (float)ppd_config_float(cfg, "model.cross_cutoff_bias");
    c->scale_by_sigma = ppd_config_bool(cfg, "model.scale_by_sigma");
    c->dropout = (float)ppd_config_float(cfg, "model.dropout");
    c->batch_norm = !ppd_config_bool(cfg, "model.no_batch_norm");
    c->tr_s_min = (float)ppd_config_float(cfg, "diffusion.tr_s_min");
    c->tr_s_max = (float)ppd_config_float(cfg, "diffusion.tr_s_max");
    c->rot_s_min = (float)ppd_config_float(cfg, "diffusion.rot_s_min");
    c->rot_s_max = (float)ppd_config_float(cfg, "diffusion.rot_s_max");
    c->chunk_edges = chunk;
    if (strcmp(ppd_config_str(cfg, "model.embedding_type"), "sinusoidal") != 0 ||
        ppd_config_int(cfg, "model.embedding_scale") != 10000)
        return ppd_fail(PPD_ERR_USAGE, "model.embedding_type must be sinusoidal with "
                                       "model.embedding_scale 10000 (as every released model)");
    if (ppd_config_bool(cfg, "model.use_second_order_repr"))
        return ppd_fail(PPD_ERR_USAGE, "model.use_second_order_repr is not implemented; set it "
                                       "to false (as every released model)");
    if (!ppd_config_bool(cfg, "model.no_torsion"))
        ppd_debug("model.no_torsion is false: rigid protein docking has no torsions; ignored");
    return PPD_OK;
}

/* ---- batches --------------------------------------------------------------------------------- */

typedef struct {
    float *t, *rot_norm, *tr_score, *rot_score, *tr_pred, *rot_pred;
    ppd_noise *noise;
    unsigned char *skipped; /* (B) 1: the complex did not fit the GPU's pass arena alone */
    int *ends, npass;       /* the passes: complexes [ends[k-1], ends[k]), negated when skipped */
    float *dbuf;            /* dL/dpred of a pass (B, 6) */
} batch_io;

/* Complexes [b0, b1) of a loaded batch as a score-model batch with local indices. */
static ppd_status sub_batch(ppd_arena *a, const ppd_train_batch *tb, int b0, int b1,
                            const batch_io *io, ppd_score_batch *out) {
    int64_t r0 = tb->rec_start[b0], r1 = tb->rec_start[b1], l0 = tb->lig_start[b0],
            l1 = tb->lig_start[b1];
    int64_t er0 = tb->rec_estart[b0], er1 = tb->rec_estart[b1], el0 = tb->lig_estart[b0],
            el1 = tb->lig_estart[b1];
    int64_t *rb, *lb, *rs, *rd, *ls, *ld;
    void *p;
    size_t need =
        sizeof(int64_t) * (size_t)((r1 - r0) + (l1 - l0) + 2 * (er1 - er0) + 2 * (el1 - el0) + 6);
    PPD_TRY(ppd_arena_alloc_st(a, need, 64, &p));
    rb = p, lb = rb + (r1 - r0), rs = lb + (l1 - l0), rd = rs + (er1 - er0), ls = rd + (er1 - er0),
    ld = ls + (el1 - el0);
    for (int64_t i = r0; i < r1; i++) rb[i - r0] = tb->rec_batch[i] - b0;
    for (int64_t i = l0; i < l1; i++) lb[i - l0] = tb->lig_batch[i] - b0;
    for (int64_t e = er0; e < er1; e++)
        rs[e - er0] = tb->rec_src[e] - r0, rd[e - er0] = tb->rec_dst[e] - r0;
    for (int64_t e = el0; e < el1; e++)
        ls[e - el0] = tb->lig_src[e] - l0, ld[e - el0] = tb->lig_dst[e] - l0;
    *out = (ppd_score_batch){.B = b1 - b0,
                             .Nr = r1 - r0,
                             .Nl = l1 - l0,
                             .Er = er1 - er0,
                             .El = el1 - el0,
                             .rec_pos = tb->rec_pos + 3 * r0,
                             .lig_pos = tb->lig_pos + 3 * l0,
                             .rec_batch = rb,
                             .lig_batch = lb,
                             .rec_src = rs,
                             .rec_dst = rd,
                             .lig_src = ls,
                             .lig_dst = ld,
                             .t = io->t + b0,
                             .rot_norm = io->rot_norm + b0};
    return PPD_OK;
}

typedef struct {
    double loss, tr_loss, rot_loss; /* means over the complexes of the batch */
    int B, passes;                  /* complexes run (those loaded, less those skipped) */
    int skipped;
    int64_t cross_edges;
    size_t planned_bytes; /* the largest pass's planned activation memory */
    size_t used_bytes;    /* the largest pass's activation memory as used (the GPU's pass
                           * arena, or the CPU's activation arena at the end of the pass) */
    double prep_s;        /* the host noising the batch and planning its passes */
    double stage_s;       /* on the GPU, staging its first pass ahead of the step */
} batch_result;

/* The activation memory of one pass: the CPU arena's, or the GPU pass arena's. */
static size_t pass_bytes(const trainer *t, int64_t Nr, int64_t Nl, int64_t Er, int64_t El,
                         int64_t Ec, int B) {
    return t->dev ? t->ops->pass_bytes(&t->m, Nr, Nl, Er, El, Ec, B)
                  : ppd_score_pass_bytes(&t->m, Nr, Nl, Er, El, Ec, B);
}

/* The end of the pass that starts at complex b0: as many complexes as fit the activation
 * budget (ppd_score_pass_bytes with each complex's cross edges counted from its noised pose),
 * at most `cap`, at least one. A complex that alone exceeds the budget still runs on the CPU,
 * with a warning (design rule 1 splits batches, it never skips them); on the GPU the pass arena
 * cannot grow, so it is skipped with a warning naming what it needs (*skip = 1), and the rest of
 * the batch trains. */
static int next_pass(trainer *t, const ppd_train_batch *tb, const batch_io *io, int b0, int cap,
                     batch_result *res, int *skip) {
    *skip = 0;
    int64_t Nr = 0, Nl = 0, Er = 0, El = 0, Ec = 0;
    int b = b0;
    for (; b < tb->B && b - b0 < cap; b++) {
        ppd_score_batch one;
        if (sub_batch(t->batch_arena, tb, b, b + 1, io, &one)) break;
        int64_t ec = ppd_score_count_cross_edges(&t->m, &one);
        size_t need =
            pass_bytes(t, Nr + one.Nr, Nl + one.Nl, Er + one.Er, El + one.El, Ec + ec, b - b0 + 1);
        if (need > t->act_budget && b > b0) break;
        if (need > t->act_budget && t->dev) {
            ppd_warn("complex %s needs %.0f MB of device memory for its pass, the pass arena has "
                     "%.0f MB: skipped (raise device.budget_gb or lower device.edges_per_chunk)",
                     tb->ids[b], need / 1048576.0, t->act_budget / 1048576.0);
            *skip = 1;
            return b0 + 1;
        }
        if (need > t->act_budget)
            ppd_warn("complex %s needs %.0f MB of activations, over the budget of %.0f MB "
                     "(%s): it runs alone",
                     tb->ids[b], need / 1048576.0, t->act_budget / 1048576.0,
                     t->dev ? "device.budget_gb" : "train.max_mem_gb");
        if (need > res->planned_bytes) res->planned_bytes = need;
        Nr += one.Nr, Nl += one.Nl, Er += one.Er, El += one.El, Ec += ec;
    }
    res->passes++;
    return b > b0 ? b : b0 + 1;
}

/* Noise every complex of tb (draws from r, or from per-complex streams seeded by val_idx) and
 * plan its passes of at most t->micro complexes; the loss will be the mean over the complexes
 * that run. */
static ppd_status plan_batch(trainer *t, ppd_train_batch *tb, ppd_rng *r, const int64_t *val_idx,
                             batch_io *io, batch_result *res) {
    int B = tb->B;
    memset(res, 0, sizeof *res);
    memset(io, 0, sizeof *io);
    res->B = B;
    if (B == 0) return PPD_OK;
    double t0 = ppd_now_seconds();
    ppd_arena *a = t->batch_arena;
    void *p;
    /* t, N(σ_rot) (B each); scores, predictions (B, 3 each); dL/dpred (B, 6) */
    PPD_TRY(ppd_arena_alloc_st(a, sizeof(float) * (size_t)B * 20, 64, &p));
    float *f = p;
    io->t = f, io->rot_norm = f + B, io->tr_score = f + 2 * B, io->rot_score = f + 5 * B;
    io->tr_pred = f + 8 * B, io->rot_pred = f + 11 * B, io->dbuf = f + 14 * B;
    PPD_TRY(ppd_arena_alloc_st(a, sizeof(ppd_noise) * (size_t)B, 64, &p));
    io->noise = p;
    PPD_TRY(ppd_arena_alloc_st(a, sizeof(int) * (size_t)B + B, 64, &p));
    io->ends = p;
    io->skipped = (unsigned char *)(io->ends + B);
    for (int b = 0; b < B; b++) {
        ppd_rng vr, *rr = r;
        if (val_idx) { /* fixed noise per validation complex: comparable across epochs */
            ppd_rng_seed(&vr, t->seed ^ (0x9E3779B97F4A7C15ull * (uint64_t)(val_idx[b] + 1)));
            rr = &vr;
        }
        double tt = ppd_rng_uniform(rr);
        int64_t l0 = tb->lig_start[b], n = tb->lig_start[b + 1] - l0;
        ppd_noise_complex(tb->lig_pos + 3 * l0, n, tt, &t->dc, &t->T, rr, &io->noise[b]);
        io->t[b] = (float)tt;
        io->rot_norm[b] = ppd_igso3_score_norm_f32(&t->T, ppd_sigma_rot_f32(io->t[b], &t->dc));
        memcpy(io->tr_score + 3 * b, io->noise[b].tr_score, sizeof(float) * 3);
        memcpy(io->rot_score + 3 * b, io->noise[b].rot_score, sizeof(float) * 3);
    }
    int micro = t->micro > 0 ? t->micro : B;
    for (int b = 0; b < B; b++) io->skipped[b] = 0;
    for (int b0 = 0, b1, skip; b0 < B; b0 = b1) {
        b1 = next_pass(t, tb, io, b0, micro, res, &skip);
        io->ends[io->npass++] = skip ? -b1 : b1;
        if (skip) io->skipped[b0] = 1, res->skipped++;
    }
    res->prep_s = ppd_now_seconds() - t0;
    res->B = B - res->skipped;
    return PPD_OK;
}

/* Pass [b0, b1) of a planned batch as the model's input. */
static ppd_status pass_batch(trainer *t, const ppd_train_batch *tb, const batch_io *io, int b0,
                             int b1, ppd_score_batch *sb) {
    int X = 1 + t->m.cfg.lm_dim;
    PPD_TRY(sub_batch(t->batch_arena, tb, b0, b1, io, sb));
    sb->rec_x = tb->rec_x + X * tb->rec_start[b0];
    sb->lig_x = tb->lig_x + X * tb->lig_start[b0];
    return PPD_OK;
}

/* On the GPU: the first pass of a planned batch staged (its inputs prepared on the host and
 * their upload queued) while the device still runs the step before; its forward then starts
 * at once. */
static ppd_status stage_first_pass(trainer *t, const ppd_train_batch *tb, const batch_io *io,
                                   batch_result *res) {
    int b0 = 0, k = 0;
    while (k < io->npass && io->ends[k] < 0) b0 = -io->ends[k++];
    if (k == io->npass) return PPD_OK; /* every complex skipped */
    ppd_score_batch sb;
    PPD_TRY(pass_batch(t, tb, io, b0, io->ends[k], &sb));
    ppd_score_device_usage u0, u1;
    t->ops->usage(t->dev, &u0);
    PPD_TRY(t->ops->stage(t->dev, &sb));
    t->ops->usage(t->dev, &u1);
    res->stage_s += u1.stage_seconds - u0.stage_seconds;
    return PPD_OK;
}

/* Forward (and backward when train) of a planned batch, pass by pass. */
static ppd_status run_passes(trainer *t, const ppd_train_batch *tb, int train, batch_io *io,
                             batch_result *res) {
    const int *ends = io->ends;
    float *dbuf = io->dbuf;
    for (int k = 0, b0 = 0; k < io->npass; k++) {
        int b1 = ends[k] < 0 ? -ends[k] : ends[k], Bm = b1 - b0;
        if (ends[k] < 0) {
            b0 = b1;
            continue;
        }
        ppd_score_batch sb;
        PPD_TRY(pass_batch(t, tb, io, b0, b1, &sb));
        int64_t nc = 0;
        /* dropout masks: a seed per (run seed, step, pass); evaluation runs without dropout */
        t->m.training = train;
        t->m.dropout_seed =
            t->seed * 0x9E3779B97F4A7C15ull + t->st.step * 1000003ull + (uint64_t)b0;
        if (t->dev) {
            PPD_TRY(t->ops->forward(t->dev, &sb, io->tr_pred + 3 * b0, io->rot_pred + 3 * b0, &nc));
            ppd_score_device_usage u;
            t->ops->usage(t->dev, &u);
            if (u.last_pass_bytes > res->used_bytes) res->used_bytes = u.last_pass_bytes;
        } else {
            PPD_TRY(
                ppd_score_forward(&t->m, &sb, io->tr_pred + 3 * b0, io->rot_pred + 3 * b0, &nc));
        }
        res->cross_edges += nc;
        ppd_diffusion_loss L;
        ppd_diffusion_loss_forward_backward(&t->dc, &t->T, Bm, io->t + b0, io->tr_pred + 3 * b0,
                                            io->rot_pred + 3 * b0, io->tr_score + 3 * b0,
                                            io->rot_score + 3 * b0, &L, dbuf, dbuf + 3 * Bm);
        double w = (double)Bm / res->B; /* the batch loss is the mean over the complexes run */
        res->loss += w * L.loss, res->tr_loss += w * L.tr_loss, res->rot_loss += w * L.rot_loss;
        if (train) {
            for (int i = 0; i < 6 * Bm; i++) dbuf[i] = (float)(dbuf[i] * w);
            PPD_TRY(t->dev ? t->ops->backward(t->dev, dbuf, dbuf + 3 * Bm)
                           : ppd_score_backward(&t->m, dbuf, dbuf + 3 * Bm));
        }
        /* the CPU pass only bump-allocates between its forward's reset and here: what the
         * arena holds now is the pass's peak (its high-water mark spans the whole run) */
        if (!t->dev && t->m.act.used > res->used_bytes) res->used_bytes = t->m.act.used;
        b0 = b1;
    }
    return PPD_OK;
}

static ppd_status run_batch(trainer *t, ppd_train_batch *tb, ppd_rng *r, const int64_t *val_idx,
                            int train, batch_io *io, batch_result *res) {
    PPD_TRY(plan_batch(t, tb, r, val_idx, io, res));
    return run_passes(t, tb, train, io, res);
}

/* ---- run directory, metrics, plot ------------------------------------------------------------ */

static void push(double **v, int64_t *n, int64_t *cap, double x) {
    if (*n == *cap) {
        int64_t c = *cap ? 2 * *cap : 256;
        double *nv = realloc(*v, sizeof(double) * (size_t)c);
        if (!nv) return;
        *v = nv, *cap = c;
    }
    (*v)[(*n)++] = x;
}

static void write_plot(const trainer *t) {
    if (!t->o->run_dir || t->n_step_loss == 0) return;
    char path[4096];
    snprintf(path, sizeof path, "%s/loss.svg", t->o->run_dir);
    FILE *f = fopen(path, "w");
    if (!f) {
        ppd_warn("cannot write %s: %s", path, strerror(errno));
        return;
    }
    /* log10 of the loss over the step index; validation losses at the epochs' last steps */
    const int W = 640, H = 360, M = 50;
    double lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < t->n_step_loss; i++)
        if (t->step_loss[i] > 0)
            lo = fmin(lo, log10(t->step_loss[i])), hi = fmax(hi, log10(t->step_loss[i]));
    for (int64_t i = 0; i < t->n_val_loss; i++)
        if (t->val_loss[i] > 0)
            lo = fmin(lo, log10(t->val_loss[i])), hi = fmax(hi, log10(t->val_loss[i]));
    if (!(hi > lo)) hi = lo + 1;
    int64_t n = t->n_step_loss;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\">\n", W, H);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(f,
            "<text x=\"%d\" y=\"20\" font-family=\"sans-serif\" font-size=\"14\">ppdock train: "
            "loss (log10, %.2f .. %.2f) over %lld steps; blue = training batches, red = "
            "validation</text>\n",
            M, lo, hi, (long long)n);
    fprintf(f, "<polyline fill=\"none\" stroke=\"steelblue\" stroke-width=\"1\" points=\"");
    for (int64_t i = 0; i < n; i++) {
        double x = M + (W - 2.0 * M) * (n > 1 ? (double)i / (double)(n - 1) : 0.5);
        double y = H - M - (H - 2.0 * M) * (log10(fmax(t->step_loss[i], 1e-30)) - lo) / (hi - lo);
        fprintf(f, "%.1f,%.1f ", x, y);
    }
    fprintf(f, "\"/>\n<polyline fill=\"none\" stroke=\"firebrick\" stroke-width=\"2\" points=\"");
    for (int64_t i = 0; i < t->n_val_loss; i++) {
        double x =
            M + (W - 2.0 * M) * (t->n_val_loss > 1 ? (double)i / (double)(t->n_val_loss - 1) : 1.0);
        double y = H - M - (H - 2.0 * M) * (log10(fmax(t->val_loss[i], 1e-30)) - lo) / (hi - lo);
        fprintf(f, "%.1f,%.1f ", x, y);
    }
    fprintf(f, "\"/>\n</svg>\n");
    fclose(f);
}

/* The number after "name": in one of metrics.jsonl's lines (our own fixed format); 0 if absent. */
static int line_number(const char *line, const char *end, const char *name, double *v) {
    char pat[64];
    int n = snprintf(pat, sizeof pat, "\"%s\": ", name);
    const char *p = memmem(line, (size_t)(end - line), pat, (size_t)n);
    if (!p) return 0;
    char *stop;
    *v = strtod(p + n, &stop);
    return stop != p + n;
}

/* On --resume, metrics.jsonl may hold lines of steps after the checkpoint (the process was
 * killed between checkpoints) and a half-written last line; the resumed run writes those steps
 * again. Keep the step lines up to the checkpoint's step and the epoch lines up to its epoch,
 * rewrite the file atomically, and reload their losses for loss.svg. */
static ppd_status trim_metrics(trainer *t, const char *path) {
    ppd_buf b = {0}, kept = {0};
    if (!ppd_file_exists(path)) return PPD_OK;
    ppd_status s = ppd_read_file(path, &b);
    int64_t dropped = 0;
    for (size_t i = 0; !s && i < b.len;) {
        const char *line = (const char *)b.data + i, *nl = memchr(line, '\n', b.len - i);
        const char *end = nl ? nl : (const char *)b.data + b.len;
        i = (size_t)(end - (const char *)b.data) + 1;
        double step, epoch, loss, vn;
        int is_step = memmem(line, (size_t)(end - line), "\"kind\": \"step\"", 14) != NULL;
        int ok = nl && line_number(line, end, "step", &step) &&
                 line_number(line, end, "epoch", &epoch) &&
                 (is_step ? step <= (double)t->st.step : epoch <= (double)t->st.epoch);
        if (!ok) {
            dropped++;
            continue;
        }
        if (is_step && line_number(line, end, "loss", &loss))
            push(&t->step_loss, &t->n_step_loss, &t->cap_step_loss, loss);
        if (!is_step && line_number(line, end, "val_complexes", &vn) && vn > 0 &&
            line_number(line, end, "val_loss", &loss))
            push(&t->val_loss, &t->n_val_loss, &t->cap_val_loss, loss);
        s = ppd_buf_append(&kept, line, (size_t)(end - line) + 1);
    }
    if (!s && dropped) {
        s = ppd_write_file_replace(path, kept.data, kept.len, 1);
        if (!s)
            ppd_info("%s: %lld line(s) after the checkpoint's step %llu dropped (the run stopped "
                     "between checkpoints; those steps run again)",
                     path, (long long)dropped, (unsigned long long)t->st.step);
    }
    ppd_buf_free(&b);
    ppd_buf_free(&kept);
    return s;
}

static ppd_status save(trainer *t, const char *name) {
    if (!t->o->run_dir) return PPD_OK;
    /* the GPU holds the live parameters, running statistics and moments */
    if (t->dev) PPD_TRY(t->ops->download(t->dev, &t->m, t->adam_m, t->adam_v, NULL));
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", t->o->run_dir, name);
    t->st.batch_size = (uint64_t)t->batch_size, t->st.seed = t->seed; /* what epoch_batch counts */
    return ppd_checkpoint_save(path, &t->m, t->adam_m, t->adam_v, &t->st, t->config_yaml);
}

/* ---- evaluation ------------------------------------------------------------------------------ */

static void json_vec(FILE *f, const char *name, const float *v) {
    fprintf(f, ", \"%s\": [%.9g, %.9g, %.9g]", name, (double)v[0], (double)v[1], (double)v[2]);
}

/* ---- batches, read ahead ------------------------------------------------------------------- */

/* How a step got its batch: seconds it waited for it, seconds the read took (on whichever
 * thread), whether the read-ahead had it. */
typedef struct {
    double wait_s, read_s;
    int ahead;
} batch_fetch;

/* Batch `key` of `split` (complexes idx[0..nb)) into t->batch_arena: from the read-ahead when
 * that is the batch it reads, else read now. A read-ahead of another batch is dropped; one that
 * failed is read again here, which reports. */
static ppd_status fetch_batch(trainer *t, const char *split, int64_t key, const int64_t *idx,
                              int nb, ppd_train_batch *tb, batch_fetch *f) {
    double t0 = ppd_now_seconds();
    memset(f, 0, sizeof *f);
    if (t->ahead_split) {
        int hit = !strcmp(t->ahead_split, split) && t->ahead_key == key, slot = t->ahead_slot;
        t->ahead_split = NULL;
        if (ppd_read_ahead_wait(t->ahead, tb, &f->read_s) == PPD_OK && hit) {
            t->batch_arena = &t->arenas[slot];
            f->wait_s = ppd_now_seconds() - t0, f->ahead = 1;
            return PPD_OK;
        }
    }
    t->batch_arena = &t->arenas[0];
    ppd_arena_reset(t->batch_arena);
    PPD_TRY(ppd_loader_load(t->loader, split, idx, nb, t->batch_arena, tb));
    f->read_s = f->wait_s = ppd_now_seconds() - t0;
    return PPD_OK;
}

/* Starts reading batch `key` of `split` into the arena the current batch does not use (the
 * batch before it, finished). Nothing is read ahead when the thread could not start. */
static void read_ahead(trainer *t, const char *split, int64_t key, const int64_t *idx, int nb) {
    if (!t->ahead || t->ahead_split) return;
    int slot = t->batch_arena == &t->arenas[0] ? 1 : 0;
    ppd_arena_reset(&t->arenas[slot]);
    if (ppd_read_ahead_begin(t->ahead, split, idx, nb, &t->arenas[slot]) == PPD_OK)
        t->ahead_split = split, t->ahead_key = key, t->ahead_slot = slot;
}

/* Mean losses over a split with fixed per-complex noise; optionally one JSON line per complex. */
static ppd_status evaluate(trainer *t, const char *split, FILE *dump, double *loss, double *ltr,
                           double *lrot, int64_t *count, int64_t *skipped) {
    int64_t n = ppd_loader_count(t->loader, split);
    double sl = 0, st = 0, sr = 0;
    int64_t done = 0;
    int bs = t->batch_size > 0 ? t->batch_size : 1;
    int64_t *idx = malloc(sizeof(int64_t) * 2 * (size_t)bs), *idx_next = idx + bs;
    if (!idx) return ppd_fail(PPD_ERR_NOMEM, "evaluate: out of memory");
    ppd_status s = PPD_OK;
    for (int64_t i0 = 0; i0 < n && !s; i0 += bs) {
        int nb = (int)(n - i0 < bs ? n - i0 : bs);
        for (int i = 0; i < nb; i++) idx[i] = i0 + i;
        ppd_train_batch tb;
        batch_fetch bf;
        s = fetch_batch(t, split, i0, idx, nb, &tb, &bf);
        if (s) break;
        if (i0 + bs < n) {
            int nn = (int)(n - i0 - bs < bs ? n - i0 - bs : bs);
            for (int i = 0; i < nn; i++) idx_next[i] = i0 + bs + i;
            read_ahead(t, split, i0 + bs, idx_next, nn);
        }
        *skipped += tb.skipped;
        /* per-complex streams are indexed by the complexes actually loaded */
        int64_t *vidx = idx;
        batch_io io;
        batch_result br;
        /* one pass per complex so that each prediction is the complex alone (batch 1, as
         * DiffDock-PP evaluates) */
        int keep = t->micro;
        t->micro = 1;
        s = run_batch(t, &tb, NULL, vidx, 0, &io, &br);
        t->micro = keep;
        if (s) break;
        *skipped += br.skipped;
        for (int b = 0; b < tb.B; b++) {
            if (io.skipped[b]) continue;
            ppd_diffusion_loss L;
            ppd_diffusion_loss_forward_backward(&t->dc, &t->T, 1, io.t + b, io.tr_pred + 3 * b,
                                                io.rot_pred + 3 * b, io.tr_score + 3 * b,
                                                io.rot_score + 3 * b, &L, NULL, NULL);
            sl += L.loss, st += L.tr_loss, sr += L.rot_loss;
            if (dump) {
                const ppd_noise *nz = &io.noise[b];
                fprintf(dump,
                        "{\"id\": \"%s\", \"t\": %.9g, \"sigma_tr\": %.17g, \"sigma_rot\": %.17g",
                        tb.ids[b], (double)io.t[b], nz->sigma_tr, nz->sigma_rot);
                json_vec(dump, "tr_update", nz->tr_update);
                json_vec(dump, "rot_update", nz->rot_update);
                json_vec(dump, "tr_pred", io.tr_pred + 3 * b);
                json_vec(dump, "rot_pred", io.rot_pred + 3 * b);
                json_vec(dump, "tr_target", io.tr_score + 3 * b);
                json_vec(dump, "rot_target", io.rot_score + 3 * b);
                fprintf(dump, ", \"loss_tr\": %.9g, \"loss_rot\": %.9g, \"loss\": %.9g}\n",
                        (double)L.tr_loss, (double)L.rot_loss, (double)L.loss);
            }
        }
        done += br.B;
    }
    free(idx);
    *count = done;
    *loss = done ? sl / done : NAN, *ltr = done ? st / done : NAN, *lrot = done ? sr / done : NAN;
    return s;
}

/* ---- the loop -------------------------------------------------------------------------------- */

static void shuffle(int64_t *perm, int64_t n, uint64_t seed, uint64_t epoch) {
    ppd_rng r;
    ppd_rng_seed(&r, seed * 0x100000001B3ull + epoch + 1);
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)ppd_rng_below(&r, (uint64_t)i + 1);
        int64_t x = perm[i];
        perm[i] = perm[j], perm[j] = x;
    }
}

/* Whether batch bi of an epoch of per_epoch batches runs when `steps_before` steps are done
 * before it (--max-steps). */
static int will_run(const trainer *t, int64_t per_epoch, int64_t bi, uint64_t steps_before) {
    return bi < per_epoch && (t->o->max_steps <= 0 || (int64_t)steps_before < t->o->max_steps);
}

/* The complexes of batch bi of the epoch (perm's order) into idx; returns how many. */
static int batch_indices(const trainer *t, const int64_t *perm, int64_t n, int64_t bi,
                         int64_t *idx) {
    int64_t b0 = bi * t->batch_size;
    int nb = (int)(n - b0 < t->batch_size ? n - b0 : t->batch_size);
    for (int i = 0; i < nb; i++) idx[i] = perm[b0 + i];
    return nb;
}

static ppd_status train_loop(trainer *t, ppd_train_report *rep) {
    const ppd_train_opts *o = t->o;
    int64_t n = ppd_loader_count(t->loader, "train");
    if (n == 0)
        return ppd_fail(PPD_ERR_EMPTY, "%s has no complexes in the train split (splits.csv)",
                        o->graphs);
    int64_t *perm = malloc(sizeof(int64_t) * (size_t)n),
            *idx = malloc(sizeof(int64_t) * (size_t)t->batch_size);
    if (!perm || !idx) {
        free(perm), free(idx);
        return ppd_fail(PPD_ERR_NOMEM, "train: out of memory");
    }
    int64_t per_epoch = (n + t->batch_size - 1) / t->batch_size;
    /* the next batch's complexes, and the one after's (for the read-ahead) */
    int64_t *idx_next = malloc(sizeof(int64_t) * 2 * (size_t)t->batch_size),
            *idx_ahead = idx_next + t->batch_size;
    if (!idx_next) {
        free(perm), free(idx);
        return ppd_fail(PPD_ERR_NOMEM, "train: out of memory");
    }
    /* On the GPU the epoch's next batch is prepared while the device runs this step's backward
     * and Adam: read (the read-ahead has it), noised, planned, its first pass staged. Not at a
     * step that saves a checkpoint: the checkpoint's random state must be the one before the
     * next batch's noise, so that a resumed run draws the same. */
    int have_next = 0;
    int64_t next_key = -1;
    ppd_rng rng_before_next = t->st.rng;
    ppd_train_batch next_tb;
    batch_fetch next_bf;
    batch_io next_io;
    batch_result next_br;
    ppd_progress *bar =
        o->quiet
            ? NULL
            : ppd_progress_start("train", o->max_steps > 0 ? (uint64_t)o->max_steps
                                                           : (uint64_t)(per_epoch * t->epochs));
    if (bar && t->st.step) ppd_progress_add(bar, t->st.step);
    double t0 = ppd_now_seconds();
    int64_t complexes = 0;
    ppd_status s = PPD_OK;
    int stop = 0;
    while (!s && !stop && t->st.epoch < (uint64_t)t->epochs) {
        shuffle(perm, n, t->seed, t->st.epoch);
        for (int64_t bi = (int64_t)t->st.epoch_batch; bi < per_epoch && !s; bi++) {
            if (o->max_steps > 0 && (int64_t)t->st.step >= o->max_steps) {
                stop = 1;
                break;
            }
            double ts = ppd_now_seconds();
            ppd_train_batch tb;
            batch_fetch bf;
            batch_io io;
            batch_result br;
            int64_t key = (int64_t)t->st.epoch * per_epoch + bi;
            int prepared = have_next && next_key == key;
            have_next = 0;
            if (prepared) {
                tb = next_tb, bf = next_bf, io = next_io, br = next_br;
            } else {
                int nb = batch_indices(t, perm, n, bi, idx);
                s = fetch_batch(t, "train", key, idx, nb, &tb, &bf);
                if (s) break;
                /* the epoch's next batch is read while this one computes */
                if (will_run(t, per_epoch, bi + 1, t->st.step + 1))
                    read_ahead(t, "train", key + 1, idx_ahead,
                               batch_indices(t, perm, n, bi + 1, idx_ahead));
                s = plan_batch(t, &tb, &t->st.rng, t->fixed_noise ? idx : NULL, &io, &br);
                if (s) break;
            }
            rep->skipped += tb.skipped;
            /* the device's clocks: u0 at the start, u1 once this step is queued, u2 at its end */
            ppd_score_device_usage u0 = {0}, u1 = {0}, u2 = {0};
            if (t->dev) t->ops->usage(t->dev, &u0);
            if (t->dev)
                s = t->ops->zero_grad(t->dev);
            else
                ppd_score_zero_grad(&t->m);
            if (s) break;
            s = run_passes(t, &tb, 1, &io, &br);
            if (s) break;
            t->st.epoch_batch = (uint64_t)bi + 1;
            rep->skipped += br.skipped;
            if (br.B == 0) continue; /* every complex of the batch was skipped */
            double gnorm = 0;
            t->st.step++;
            if (t->dev) {
                s = t->ops->step(t->dev, &t->adam, t->st.step, 1.0);
                t->ops->usage(t->dev, &u1);
                int saves =
                    t->checkpoint_steps > 0 && t->st.step % (uint64_t)t->checkpoint_steps == 0;
                if (!s && !saves && will_run(t, per_epoch, bi + 1, t->st.step)) {
                    rng_before_next = t->st.rng;
                    int nn = batch_indices(t, perm, n, bi + 1, idx_next);
                    s = fetch_batch(t, "train", key + 1, idx_next, nn, &next_tb, &next_bf);
                    if (!s && will_run(t, per_epoch, bi + 2, t->st.step + 1))
                        read_ahead(t, "train", key + 2, idx_ahead,
                                   batch_indices(t, perm, n, bi + 2, idx_ahead));
                    if (!s)
                        s = plan_batch(t, &next_tb, &t->st.rng, t->fixed_noise ? idx_next : NULL,
                                       &next_io, &next_br);
                    if (!s) s = stage_first_pass(t, &next_tb, &next_io, &next_br);
                    have_next = !s, next_key = key + 1;
                }
                if (!s) s = t->ops->grad_norm(t->dev, &gnorm);
                if (s) break;
                t->ops->usage(t->dev, &u2);
            } else {
                gnorm =
                    ppd_clip_grad_norm(t->m.grads, t->tens_off, t->tens_num, t->m.ntensors, 1.0);
                ppd_adam_step(t->m.params, t->m.grads, t->adam_m, t->adam_v, t->m.nparams, &t->adam,
                              t->st.step);
            }
            /* a stop is decided once per step, here: it discards a batch prepared ahead, and
             * the checkpoint keeps the random state from before that batch's noise */
            int stopping = o->stop && *o->stop;
            if (stopping && have_next) t->st.rng = rng_before_next, have_next = 0;
            complexes += br.B;
            double dt = ppd_now_seconds() - ts;
            rep->last_loss = br.loss;
            push(&t->step_loss, &t->n_step_loss, &t->cap_step_loss, br.loss);
            if (t->metrics) {
                fprintf(t->metrics,
                        "{\"kind\": \"step\", \"step\": %llu, \"epoch\": %llu, \"loss\": %.9g, "
                        "\"tr_loss\": %.9g, \"rot_loss\": %.9g, \"grad_norm\": %.9g, \"lr\": %g, "
                        "\"complexes\": %d, \"passes\": %d, \"cross_edges\": %lld, "
                        "\"planned_activation_mb\": %.1f, \"activation_mb\": %.1f, "
                        "\"seconds\": %.4f, \"complexes_per_s\": %.4g, \"peak_rss_mb\": %.1f",
                        (unsigned long long)t->st.step, (unsigned long long)t->st.epoch, br.loss,
                        br.tr_loss, br.rot_loss, gnorm, t->adam.lr, br.B, br.passes,
                        (long long)br.cross_edges, br.planned_bytes / 1048576.0,
                        br.used_bytes / 1048576.0, dt, br.B / dt,
                        (double)ppd_peak_rss_bytes() / 1048576.0);
                /* where the step's time went: its batch (read ahead or not), the host's
                 * preparation (on the GPU with the staging of the passes), the device */
                fprintf(t->metrics,
                        ", \"read_ahead\": %s, \"batch_read_ms\": %.2f, \"batch_wait_ms\": %.2f, "
                        "\"prep_ms\": %.2f",
                        bf.ahead ? "true" : "false", 1e3 * bf.read_s, 1e3 * bf.wait_s,
                        1e3 * (br.prep_s + br.stage_s + u1.stage_seconds - u0.stage_seconds));
                if (t->dev) /* the device's fixed part plus the step's largest pass: as planned
                               before it ran, and as the pass arena handed out */
                    fprintf(t->metrics,
                            ", \"prepared_ahead\": %s, \"device_wait_ms\": %.2f, "
                            "\"device_busy_ms\": %.2f, \"device_planned_mb\": %.1f, "
                            "\"device_peak_mb\": %.1f",
                            prepared ? "true" : "false", 1e3 * (u2.wait_seconds - u0.wait_seconds),
                            1e3 * (u2.busy_seconds - u0.busy_seconds),
                            (rep->device_fixed + br.planned_bytes) / 1048576.0,
                            (rep->device_fixed + br.used_bytes) / 1048576.0);
                fputs("}\n", t->metrics);
                fflush(t->metrics);
            }
            if (t->dev) {
                if (br.planned_bytes > rep->device_planned_peak)
                    rep->device_planned_peak = br.planned_bytes;
                if (br.used_bytes > rep->device_used_peak) rep->device_used_peak = br.used_bytes;
            }
            if (bar) {
                char note[64];
                snprintf(note, sizeof note, "loss %.4g  %.2f complexes/s", br.loss, br.B / dt);
                ppd_progress_note(bar, note);
            }
            ppd_progress_add(bar, 1);
            if (t->checkpoint_steps > 0 && t->st.step % (uint64_t)t->checkpoint_steps == 0)
                s = save(t, "last.safetensors");
            if (!s && stopping) { /* the loop's end saves last.safetensors */
                ppd_info("stopped by a signal after step %llu: continue with --resume",
                         (unsigned long long)t->st.step);
                rep->interrupted = 1;
                stop = 1;
                break;
            }
        }
        if (s || stop) break;
        /* end of an epoch: validation with fixed noise, early stopping */
        t->st.epoch++;
        t->st.epoch_batch = 0;
        double vl = NAN, vt = NAN, vr = NAN;
        int64_t vn = 0;
        if (ppd_loader_count(t->loader, "val") > 0)
            s = evaluate(t, "val", NULL, &vl, &vt, &vr, &vn, &rep->skipped);
        if (s) break;
        if (vn > 0) push(&t->val_loss, &t->n_val_loss, &t->cap_val_loss, vl);
        if (t->metrics) {
            fprintf(t->metrics,
                    "{\"kind\": \"epoch\", \"epoch\": %llu, \"step\": %llu, \"val_loss\": %.9g, "
                    "\"val_tr_loss\": %.9g, \"val_rot_loss\": %.9g, \"val_complexes\": %lld, "
                    "\"peak_rss_mb\": %.1f}\n",
                    (unsigned long long)t->st.epoch, (unsigned long long)t->st.step, vl, vt, vr,
                    (long long)vn, (double)ppd_peak_rss_bytes() / 1048576.0);
            fflush(t->metrics);
        }
        if (!o->quiet)
            ppd_info("epoch %llu: val loss %.6g over %lld complexes",
                     (unsigned long long)t->st.epoch, vl, (long long)vn);
        if (vn > 0 && (!(vl >= t->st.best_val) || t->st.best_val == 0)) {
            t->st.best_val = vl;
            t->st.bad_epochs = 0;
            s = save(t, "best.safetensors");
        } else if (vn > 0 && ++t->st.bad_epochs > (uint64_t)t->patience) {
            ppd_info("no validation improvement for %d epochs: stopping", t->patience);
            stop = 1;
        }
        if (!s) s = save(t, "last.safetensors");
    }
    if (!s) s = save(t, "last.safetensors");
    ppd_progress_finish(bar);
    double secs = ppd_now_seconds() - t0;
    rep->steps = (int64_t)t->st.step, rep->epochs = (int64_t)t->st.epoch;
    rep->complexes = complexes, rep->seconds = secs;
    rep->complexes_per_s = secs > 0 ? complexes / secs : 0;
    rep->best_val_loss = t->st.best_val;
    free(perm), free(idx), free(idx_next);
    return s;
}

/* ---- set-up ---------------------------------------------------------------------------------- */

/* The resume point counts batches of the epoch's seeded order: with another batch size or seed
 * mid-epoch it would skip or repeat complexes, so that is refused; at an epoch's start the new
 * settings just apply from there (said once). Checkpoints without train.order are not checked. */
static ppd_status check_resume_order(trainer *t, const char *path) {
    uint64_t was_b = t->st.batch_size, was_seed = t->st.seed;
    if (was_b == 0 || (was_b == (uint64_t)t->batch_size && was_seed == t->seed)) return PPD_OK;
    if (t->st.epoch_batch > 0)
        return ppd_fail(
            PPD_ERR_USAGE,
            "%s stopped %llu batches into epoch %llu with train.batch_size %llu and seed "
            "%llu; resuming with batch size %d and seed %llu would skip or repeat "
            "complexes of that epoch: resume with the run's settings, or start a new "
            "run from it with --init-from",
            path, (unsigned long long)t->st.epoch_batch, (unsigned long long)t->st.epoch + 1,
            (unsigned long long)was_b, (unsigned long long)was_seed, t->batch_size,
            (unsigned long long)t->seed);
    ppd_info("%s: the run used train.batch_size %llu and seed %llu; from epoch %llu on it goes on "
             "with %d and %llu",
             path, (unsigned long long)was_b, (unsigned long long)was_seed,
             (unsigned long long)t->st.epoch + 1, t->batch_size, (unsigned long long)t->seed);
    return PPD_OK;
}

/* RUN belongs to one train at a time (RUN/train.lock, held until the run ends: a second train,
 * or a requeued job while the old one still writes, would interleave checkpoints and metrics),
 * and a run that can be resumed is never started over by a forgotten --resume. */
static ppd_status claim_run_dir(const ppd_train_opts *o, int *lock_fd) {
    char path[4096];
    if (mkdir(o->run_dir, 0777) != 0 && errno != EEXIST)
        return ppd_fail(PPD_ERR_IO, "cannot create %s: %s", o->run_dir, strerror(errno));
    snprintf(path, sizeof path, "%s/train.lock", o->run_dir);
    PPD_TRY(ppd_lock_exclusive(
        path, "another train writing this run; wait for it to end or give another -o", lock_fd));
    snprintf(path, sizeof path, "%s/last.safetensors", o->run_dir);
    if (!o->resume && ppd_file_exists(path))
        return ppd_fail(PPD_ERR_USAGE,
                        "%s already holds a run (%s): add --resume to continue it; to start over, "
                        "remove it or give another -o",
                        o->run_dir, path);
    if (o->resume && !ppd_file_exists(path))
        return ppd_fail(PPD_ERR_USAGE,
                        "%s has no last.safetensors to resume: drop --resume to start the run",
                        o->run_dir);
    return PPD_OK;
}

/* cache-check's quick pass over one cache: its problems refuse the run. A cache whose only
 * problem is that it is unsealed was left by a build stage stopped or killed before it finished
 * (or one still running): rerunning that stage completes it, where --repair would seal it
 * incomplete. */
static ppd_status check_cache(const char *dir, const char *stage) {
    ppd_check_summary s;
    ppd_check_opts co = {0};
    PPD_TRY(ppd_cache_check(dir, &co, &s));
    if (!s.problems) return PPD_OK;
    if (!s.sealed && s.problems == 1 && s.writer_running)
        return ppd_fail(PPD_ERR_CORRUPT,
                        "%s is not complete: a writer is still running on it; wait for it to "
                        "finish (cache-check %s says more)",
                        dir, dir);
    if (!s.sealed && s.problems == 1)
        return ppd_fail(PPD_ERR_CORRUPT,
                        "%s is not complete: its writer was stopped or killed before it finished; "
                        "rerun %s (the same command) to complete it (cache-check %s says more)",
                        dir, stage, dir);
    return ppd_fail(PPD_ERR_CORRUPT,
                    "%s: cache-check finds %llu problem(s): run cache-check %s (--repair) first "
                    "(then %s redoes the records it drops)",
                    dir, (unsigned long long)s.problems, dir, stage);
}

static ppd_status quick_checks(const ppd_train_opts *o, int lm) {
    PPD_TRY(check_cache(o->graphs, "graph-build"));
    if (lm > 0 && o->esm) {
        PPD_TRY(check_cache(o->esm, "esm-embed"));
        ppd_check_summary s;
        ppd_check_opts co = {0};
        PPD_TRY(ppd_cache_cross_check(o->graphs, o->esm, &co, &s));
        if (s.problems)
            return ppd_fail(PPD_ERR_CORRUPT,
                            "%s x %s: %llu chain(s) lack a matching embedding: run esm-embed -g %s "
                            "-o %s (cache-check %s %s lists them)",
                            o->graphs, o->esm, (unsigned long long)s.problems, o->graphs, o->esm,
                            o->graphs, o->esm);
    }
    return PPD_OK;
}

ppd_status ppd_train_pass_reserve(const ppd_loader *l, const ppd_score_model *m,
                                  const ppd_score_device_ops *ops, const char *train_split, int B,
                                  const char *eval_split, size_t *bytes, size_t *inputs) {
    const char *splits[2] = {train_split, eval_split};
    int sizes[2] = {B, 1};
    size_t pass = 0, in = 0;
    for (int i = 0; i < 2; i++) {
        if (!splits[i]) continue;
        ppd_pass_sizes w;
        PPD_TRY(ppd_loader_worst_pass(l, splits[i], sizes[i], &w));
        size_t p = ops->pass_bytes(m, w.Nr, w.Nl, w.Er, w.El, w.Ec, sizes[i]);
        size_t u = ops->input_bytes(m, w.Nr, w.Nl, w.Er, w.El, w.Ec, sizes[i]);
        pass = p > pass ? p : pass, in = u > in ? u : in;
    }
    *bytes = pass + 2 * in;
    if (inputs) *inputs = in;
    return PPD_OK;
}

/* device.engine: the GPU pass when asked for (cuda) or available (auto), with its memory
 * planned from device.budget_gb; otherwise the CPU reference. */
static ppd_status pick_device(trainer *t, const ppd_config *cfg, ppd_train_report *rep) {
    const ppd_score_device_ops *ops = t->o->device_ops;
    ppd_device_info info;
    int gpu = 0;
    PPD_TRY(ppd_tool_pick_device("train", ppd_config_str(cfg, "device.engine"),
                                 ops ? ops->select : NULL, (int)ppd_config_int(cfg, "device.index"),
                                 &info, &gpu));
    if (!gpu) return PPD_OK;
    const char *p = ppd_config_str(cfg, "device.precision");
    ppd_cuda_precision prec = !strcmp(p, "tf32") ? PPD_CUDA_TF32 : PPD_CUDA_FP32;
    if (!strcmp(p, "bf16"))
        return ppd_fail(PPD_ERR_USAGE, "device.precision=bf16 is esm-embed's; train runs fp32 "
                                       "(parity with the CPU and PyTorch) or tf32");
    if (prec != PPD_CUDA_FP32 && ppd_config_bool(cfg, "train.deterministic")) {
        ppd_warn("train.deterministic: GEMMs in fp32, not %s (TF32 results depend on the GPU)", p);
        prec = PPD_CUDA_FP32;
    }
    /* the GPU's own chunk: launches and occupancy favour chunks the CPU's caches would not */
    t->m.cfg.chunk_edges = (int)ppd_config_int(cfg, "device.edges_per_chunk");
    double gb = ppd_config_float(cfg, "device.budget_gb");
    size_t fixed = ops->fixed_bytes(&t->m), floor_bytes = ops->pass_bytes(&t->m, 0, 0, 0, 0, 0, 1);
    size_t budget = (size_t)(gb * 1073741824.0), cap = (size_t)(0.95 * (double)info.free_bytes);
    const char *why = "device.budget_gb";
    /* the worst pass of a training batch of batch_size (or micro_batch) complexes and of an
     * evaluation (one complex at a time): every pass's inputs fit its inputs' pinned staging,
     * made once with the device */
    const ppd_train_opts *o = t->o;
    int B = t->micro > 0 && t->micro < t->batch_size ? t->micro : t->batch_size;
    size_t need, staging;
    PPD_TRY(ppd_train_pass_reserve(t->loader, &t->m, ops, o->eval_only ? NULL : "train", B,
                                   o->eval_only ? (o->split ? o->split : "val") : "val", &need,
                                   &staging));
    if (gb <= 0) {
        /* what this cache can need and no more (a shared GPU keeps the rest): that pass with
         * room for the next pass's upload, at most 95% of the free memory, over which batches
         * are split into passes */
        budget = fixed + need < cap ? fixed + need : cap;
        why = fixed + need < cap ? "the largest this cache can need, every receptor-ligand "
                                   "pair a cross edge"
                                 : "95% of the free memory; the largest passes are split";
    }
    if (budget < fixed + floor_bytes)
        return ppd_fail(PPD_ERR_NOMEM,
                        "device.budget_gb = %g (%.0f MB on %s) cannot hold the model's %.0f MB "
                        "(parameters, gradients, Adam moments, cuBLAS workspace) and one pass's "
                        "%.0f MB of chunk buffers and a complex: raise device.budget_gb or lower "
                        "device.edges_per_chunk",
                        gb, budget / 1048576.0, info.name, fixed / 1048576.0,
                        floor_bytes / 1048576.0);
    PPD_TRY(ops->create(&t->dev, &t->m, budget - fixed, staging, prec));
    t->ops = ops;
    if (t->o->profile) PPD_TRY(ops->profile(t->dev, 1));
    t->act_budget = budget - fixed;
    snprintf(rep->device, sizeof rep->device, "%s", info.name);
    rep->device_fixed = fixed;
    rep->device_reserved = budget;
    ppd_score_device_usage u;
    ops->usage(t->dev, &u);
    rep->device_measured = u.measured_bytes;
    rep->device_runtime = u.runtime_bytes;
    ppd_info("training on %s: %.0f MB of device memory reserved (%.0f MB model and optimizer, the "
             "rest for passes: %s), %s GEMMs",
             info.name, budget / 1048576.0, fixed / 1048576.0, why,
             prec == PPD_CUDA_TF32 ? "tf32" : "fp32");
    return PPD_OK;
}

static char *config_text(const ppd_config *cfg) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    ppd_config_write_yaml(cfg, f);
    fclose(f);
    return buf;
}

ppd_status ppd_train_run(const ppd_train_opts *o, const ppd_config *cfg, ppd_train_report *rep) {
    memset(rep, 0, sizeof *rep);
    trainer t = {.o = o, .cfg = cfg};
    ppd_score_config mc;
    ppd_status s = model_config(cfg, &mc, (int)ppd_config_int(cfg, "train.chunk_edges"));
    t.seed = o->seed >= 0 ? (uint64_t)o->seed : (uint64_t)ppd_config_int(cfg, "train.seed");
    t.batch_size = (int)ppd_config_int(cfg, "train.batch_size");
    t.micro = (int)ppd_config_int(cfg, "train.micro_batch");
    t.epochs = (int)ppd_config_int(cfg, "train.epochs");
    t.patience = (int)ppd_config_int(cfg, "train.patience");
    t.fixed_noise = ppd_config_bool(cfg, "train.fixed_noise");
    double mem_gb = ppd_config_float(cfg, "train.max_mem_gb");
    t.checkpoint_steps = ppd_config_int(cfg, "train.checkpoint_steps");
    t.dc = (ppd_diffusion_cfg){
        ppd_config_float(cfg, "diffusion.tr_s_min"),  ppd_config_float(cfg, "diffusion.tr_s_max"),
        ppd_config_float(cfg, "diffusion.rot_s_min"), ppd_config_float(cfg, "diffusion.rot_s_max"),
        ppd_config_float(cfg, "train.tr_weight"),     ppd_config_float(cfg, "train.rot_weight")};
    t.adam = (ppd_adam_config){ppd_config_float(cfg, "train.lr"), 0.9, 0.999, 1e-8,
                               ppd_config_float(cfg, "train.weight_decay")};
    /* one thread pool: OpenMP; OpenBLAS runs single-threaded inside it (ppdock/nn.h) */
    openblas_set_num_threads(1);
#ifdef _OPENMP
    omp_set_num_threads(o->threads > 0 ? o->threads : 1);
#endif
    int lock_fd = -1;
    if (!s && !o->eval_only && o->run_dir) s = claim_run_dir(o, &lock_fd);
    if (!s) s = ppd_score_model_init(&t.m, &mc);
    if (!s) s = quick_checks(o, mc.lm_dim);
    if (!s) {
        ppd_loader_opts lo = {.graphs = o->graphs,
                              .esm = o->esm,
                              .lm_dim = mc.lm_dim,
                              .knn_k = (int)ppd_config_int(cfg, "data.knn_size"),
                              .index_rows = mc.num_atom_types};
        s = ppd_loader_open(&lo, &t.loader);
    }
    if (!s) s = ppd_read_ahead_start(t.loader, &t.ahead);
    if (!s) s = ppd_arena_init(&t.arenas[0], 0, 1);
    if (!s) s = ppd_arena_init(&t.arenas[1], 0, 1);
    t.batch_arena = &t.arenas[0];
    if (!s) s = ppd_igso3_build(&t.T, o->threads);
    if (!s) {
        t.adam_m = calloc(t.m.nparams, sizeof(float));
        t.adam_v = calloc(t.m.nparams, sizeof(float));
        t.tens_off = malloc(sizeof(size_t) * (size_t)t.m.ntensors);
        t.tens_num = malloc(sizeof(size_t) * (size_t)t.m.ntensors);
        t.config_yaml = config_text(cfg);
        if (!t.adam_m || !t.adam_v || !t.tens_off || !t.tens_num || !t.config_yaml)
            s = ppd_fail(PPD_ERR_NOMEM, "train: out of memory");
    }
    if (!s) {
        /* the activation budget: train.max_mem_gb less parameters, gradients, Adam moments, the
         * IGSO(3) tables (32 MB) and 128 MB for the batch computing, the batch read ahead (16
         * complexes of 300 + 300 residues with 1280-wide ESM rows take 50 MB) and the libraries */
        double fixed = 4.0 * (double)t.m.nparams * sizeof(float) + 160.0 * 1048576.0;
        double budget = mem_gb * 1073741824.0 - fixed;
        size_t floor_bytes = ppd_score_pass_bytes(&t.m, 0, 0, 0, 0, 0, 1);
        if (budget < (double)floor_bytes)
            s = ppd_fail(PPD_ERR_NOMEM,
                         "train.max_mem_gb = %g leaves %.0f MB for activations; the model needs at "
                         "least %.0f MB (its edge chunk buffers, train.chunk_edges = %d) plus room "
                         "for a complex: raise train.max_mem_gb or lower train.chunk_edges",
                         mem_gb, budget / 1048576.0, floor_bytes / 1048576.0, mc.chunk_edges);
        t.act_budget = budget > 0 ? (size_t)budget : 0;
    }
    if (!s) {
        for (int i = 0; i < t.m.ntensors; i++)
            t.tens_off[i] = t.m.tab[i].offset, t.tens_num[i] = t.m.tab[i].numel;
        ppd_score_model_init_params(&t.m, t.seed);
        ppd_rng_seed(&t.st.rng, t.seed);
    }
    /* where the weights come from: resume > init-from > fresh */
    char path[4096];
    if (!s && o->resume) {
        snprintf(path, sizeof path, "%s/last.safetensors", o->run_dir);
        s = ppd_checkpoint_load(path, &t.m, t.adam_m, t.adam_v, &t.st, NULL);
        if (!s) s = check_resume_order(&t, path);
        if (!s)
            ppd_info("resuming %s at step %llu (epoch %llu)", path, (unsigned long long)t.st.step,
                     (unsigned long long)t.st.epoch);
    } else if (!s && o->init_from) {
        ppd_train_state ignored = t.st;
        ppd_checkpoint_info info;
        s = ppd_checkpoint_load(o->init_from, &t.m, o->eval_only ? NULL : t.adam_m,
                                o->eval_only ? NULL : t.adam_v, &ignored, &info);
        int had = !s && info.has_optimizer && !o->eval_only;
        if (!s)
            ppd_info("initialised from %s%s", o->init_from,
                     had ? " (with its optimizer state)" : "");
        /* a fine-tuning run starts its own step and epoch counters (as DiffDock-PP) but keeps
         * the Adam moments' bias-correction step when the optimizer state came along */
        if (!s && had) t.st.step = ignored.step;
    }
    /* the GPU, when device.engine picks it: parameters (and moments) go up once */
    if (!s) s = pick_device(&t, cfg, rep);
    if (!s && t.dev) s = t.ops->upload(t.dev, &t.m, t.adam_m, t.adam_v);
    if (!s && o->eval_only) {
        FILE *dump = NULL;
        if (o->dump_path && !(dump = fopen(o->dump_path, "w")))
            s = ppd_fail(PPD_ERR_IO, "cannot write %s: %s", o->dump_path, strerror(errno));
        if (!s)
            s = evaluate(&t, o->split ? o->split : "val", dump, &rep->eval_loss, &rep->eval_tr_loss,
                         &rep->eval_rot_loss, &rep->eval_complexes, &rep->skipped);
        if (dump && fclose(dump) != 0 && !s)
            s = ppd_fail(PPD_ERR_IO, "writing %s: %s", o->dump_path, strerror(errno));
    } else if (!s) {
        snprintf(path, sizeof path, "%s/config.yaml", o->run_dir);
        FILE *f = fopen(path, "w");
        if (f) {
            fputs(t.config_yaml, f);
            fclose(f);
        }
        snprintf(path, sizeof path, "%s/metrics.jsonl", o->run_dir);
        if (o->resume) s = trim_metrics(&t, path);
        if (!s && !(t.metrics = fopen(path, o->resume ? "a" : "w")))
            s = ppd_fail(PPD_ERR_IO, "cannot write %s: %s", path, strerror(errno));
        if (!s) s = train_loop(&t, rep);
        write_plot(&t);
        if (t.metrics) fclose(t.metrics);
    }
    rep->peak_rss = ppd_peak_rss_bytes();
    if (t.dev) {
        ppd_score_device_usage u;
        t.ops->usage(t.dev, &u);
        rep->device_uploads = u.uploads, rep->device_uploads_waited = u.uploads_waited;
        for (int k = 0; k < PPD_SCORE_NOPS; k++) rep->device_op_ms[k] = u.op_ms[k];
        t.ops->destroy(t.dev);
    }
    ppd_read_ahead_stop(t.ahead); /* before the loader it reads through */
    ppd_loader_close(t.loader);
    ppd_igso3_free(&t.T);
    ppd_arena_free(&t.arenas[0]);
    ppd_arena_free(&t.arenas[1]);
    ppd_score_model_free(&t.m);
    free(t.adam_m), free(t.adam_v), free(t.tens_off), free(t.tens_num), free(t.config_yaml);
    free(t.step_loss), free(t.val_loss);
    if (lock_fd >= 0) close(lock_fd);
    return s;
}
