/* Training checkpoints (ppdock/checkpoint.h): ppdock's own safetensors layout, and the original
 * DiffDock-PP .pth as a starting point. Loading reads everything into scratch memory and checks
 * it before copying, so a bad file never leaves a half-loaded model behind. */
#include "ppdock/checkpoint.h"
#include "ppdock/safetensors_write.h"
#include "ppdock/tensorfile.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef PPD_VERSION
#define PPD_VERSION "unknown"
#endif

enum { NAME_CAP = 128 };

/* "[864, 48]"; "[]" for a scalar. */
static const char *shape_str(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t at = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < ndim && at < cap; d++)
        at += (size_t)snprintf(buf + at, cap - at, "%s%" PRId64, d ? ", " : "", shape[d]);
    if (at < cap) snprintf(buf + at, cap - at, "]");
    return buf;
}

/* Index of the first non-finite value (or negative one, when nonneg), or -1. */
static int64_t first_bad(const float *x, size_t n, int nonneg) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]) || (nonneg && x[i] < 0.0f)) return (int64_t)i;
    return -1;
}

/* ---- save ------------------------------------------------------------------------------- */

static ppd_status check_save(const char *path, const char *kind, const ppd_param_entry *e,
                             const float *x, int nonneg) {
    int64_t i = first_bad(x + e->offset, e->numel, nonneg);
    if (i < 0) return PPD_OK;
    return ppd_fail(PPD_ERR_USAGE,
                    "refusing to save checkpoint %s: %s %s holds %g at element %" PRId64
                    " (training diverged?); the file there is left as it was",
                    path, kind, e->name, (double)x[e->offset + (size_t)i], i);
}

static ppd_st_entry f32_entry(const char *name, const ppd_param_entry *e, const float *buf) {
    ppd_st_entry s = {.name = name, .dtype = PPD_TF_F32, .ndim = e->ndim, .data = buf + e->offset};
    for (int d = 0; d < e->ndim; d++) s.shape[d] = e->shape[d];
    return s;
}

ppd_status ppd_checkpoint_save(const char *path, const ppd_score_model *m, const float *adam_m,
                               const float *adam_v, const ppd_train_state *st,
                               const char *config_yaml) {
    if (!path || !m || !m->params)
        return ppd_fail(PPD_ERR_USAGE, "checkpoint save: NULL path or model");
    if (!adam_m != !adam_v)
        return ppd_fail(PPD_ERR_USAGE, "checkpoint save %s: give both Adam moments or neither",
                        path);
    if (st && (st->step > INT64_MAX || st->epoch > INT64_MAX))
        return ppd_fail(PPD_ERR_USAGE, "checkpoint save %s: step or epoch above INT64_MAX", path);
    size_t nt = m->ntensors > 0 ? (size_t)m->ntensors : 0;
    int moments = adam_m != NULL;
    /* A diverged run must not overwrite the last good checkpoint. */
    for (size_t i = 0; i < nt; i++) {
        PPD_TRY(check_save(path, "parameter", &m->tab[i], m->params, 0));
        if (moments) {
            PPD_TRY(check_save(path, "Adam exp_avg of", &m->tab[i], adam_m, 0));
            PPD_TRY(check_save(path, "Adam exp_avg_sq of", &m->tab[i], adam_v, 1));
        }
    }
    size_t n = nt * (moments ? 3 : 1) + (size_t)m->nbuffers + (st ? 5 : 0), k = 0;
    ppd_st_entry *es = calloc(n + 1, sizeof *es);
    char(*names)[NAME_CAP] = calloc(nt * 2 + 1, NAME_CAP);
    if (!es || !names) {
        free(es);
        free(names);
        return ppd_fail(PPD_ERR_NOMEM, "checkpoint save %s: out of memory", path);
    }
    for (size_t i = 0; i < nt; i++) es[k++] = f32_entry(m->tab[i].name, &m->tab[i], m->params);
    for (int i = 0; i < m->nbuffers; i++) /* batch-norm running statistics, state-dict names */
        es[k++] = f32_entry(m->btab[i].name, &m->btab[i], m->buffers);
    if (moments) {
        for (size_t i = 0; i < nt; i++) {
            snprintf(names[i], NAME_CAP, "optimizer.exp_avg.%s", m->tab[i].name);
            es[k++] = f32_entry(names[i], &m->tab[i], adam_m);
        }
        for (size_t i = 0; i < nt; i++) {
            snprintf(names[nt + i], NAME_CAP, "optimizer.exp_avg_sq.%s", m->tab[i].name);
            es[k++] = f32_entry(names[nt + i], &m->tab[i], adam_v);
        }
    }
    int64_t step = 0, epoch = 0, rng[4], progress[3], order[2];
    if (st) {
        progress[0] = (int64_t)st->epoch_batch;
        progress[1] = (int64_t)st->bad_epochs;
        memcpy(&progress[2], &st->best_val, sizeof(double));
        step = (int64_t)st->step;
        epoch = (int64_t)st->epoch;
        memcpy(rng, st->rng.s, sizeof rng); /* bit-cast: the state is any 64-bit pattern */
        es[k++] = (ppd_st_entry){"train.step", PPD_TF_I64, 1, {1}, &step};
        es[k++] = (ppd_st_entry){"train.epoch", PPD_TF_I64, 1, {1}, &epoch};
        es[k++] = (ppd_st_entry){"train.rng", PPD_TF_I64, 1, {4}, rng};
        es[k++] = (ppd_st_entry){"train.progress", PPD_TF_I64, 1, {3}, progress};
        order[0] = (int64_t)st->batch_size;
        memcpy(&order[1], &st->seed, sizeof st->seed);
        es[k++] = (ppd_st_entry){"train.order", PPD_TF_I64, 1, {2}, order};
    }
    ppd_st_meta meta[4] = {{"format", PPD_CHECKPOINT_FORMAT},
                           {"version", PPD_CHECKPOINT_VERSION},
                           {"producer", "ppdock " PPD_VERSION},
                           {"config", config_yaml}};
    ppd_status rc = ppd_safetensors_write(path, es, k, meta, config_yaml ? 4 : 3);
    free(es);
    free(names);
    return rc;
}

/* ---- load: shared ----------------------------------------------------------------------- */

typedef struct {
    const char *path;
    const ppd_tensor_file *f;
    const ppd_score_model *m;
    float *p, *mm, *vv; /* scratch: parameters, moments (NULL: moments not wanted) */
    float *bufs;        /* scratch: the model's buffers (batch-norm running statistics) */
    ppd_checkpoint_info info;
    uint64_t step, epoch;
    ppd_rng rng;
    int has_rng;
    int64_t progress[3]; /* train.progress, zeros when absent */
    int64_t order[2];    /* train.order, zeros when absent */
} loader;

static int is_float(ppd_tf_dtype dt) {
    return dt == PPD_TF_F32 || dt == PPD_TF_F16 || dt == PPD_TF_BF16 || dt == PPD_TF_F64;
}

/* Check that t has e's shape and a float dtype; then (dst non-NULL) convert it into dst and
 * check the values. `code` and `hint` say what a shape mismatch means for this tensor. */
static ppd_status take(const loader *L, const ppd_tensor *t, const ppd_param_entry *e, float *dst,
                       int nonneg, ppd_status code, const char *hint) {
    int same = t->ndim == e->ndim;
    for (int d = 0; same && d < e->ndim; d++) same = t->shape[d] == e->shape[d];
    if (!same) {
        char a[160], b[64];
        return ppd_fail(code, "checkpoint %s: %s is %s in the file, the model wants %s: %s",
                        L->path, t->name, shape_str(a, sizeof a, t->ndim, t->shape),
                        shape_str(b, sizeof b, e->ndim, e->shape), hint);
    }
    if (!is_float(t->dtype))
        return ppd_fail(PPD_ERR_FORMAT, "checkpoint %s: %s is %s, not a float tensor", L->path,
                        t->name, ppd_tf_dtype_name(t->dtype));
    if (!dst) return PPD_OK;
    PPD_TRY(ppd_tensor_to_f32(t, dst));
    int64_t i = first_bad(dst, e->numel, nonneg);
    if (i >= 0)
        return ppd_fail(PPD_ERR_FORMAT,
                        "checkpoint %s: %s holds %g at element %" PRId64
                        "%s: the run that wrote it had diverged or the file is damaged; use an "
                        "earlier checkpoint",
                        L->path, t->name, (double)dst[i], i,
                        nonneg && isfinite(dst[i]) ? " (a second moment must be >= 0)" : "");
    return PPD_OK;
}

static const char *const SHAPE_HINT =
    "ns/nv/lm_embed_dim/num_conv_layers of the config differ from the checkpoint's";

static ppd_status missing(const loader *L, const char *name) {
    return ppd_fail(PPD_ERR_NOTFOUND,
                    "checkpoint %s has no tensor %s: was it written for another model size "
                    "(num_conv_layers, lm_embed_dim)?",
                    L->path, name);
}

static int starts(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* ---- load: ppdock checkpoints ----------------------------------------------------------- */

static const char *meta_str(const ppd_tensor_file *f, const char *key) {
    char name[64];
    snprintf(name, sizeof name, "__metadata__.%s", key);
    const ppd_tf_value *v = ppd_tensor_file_value(f, name);
    return v && v->kind == PPD_TF_VAL_STR ? v->s : NULL;
}

/* One I64 tensor of `n` elements into out. */
static ppd_status take_i64(const loader *L, const ppd_tensor *t, int64_t n, int64_t *out) {
    if (t->dtype != PPD_TF_I64 || t->ndim != 1 || t->shape[0] != n || !t->contiguous)
        return ppd_fail(PPD_ERR_FORMAT,
                        "checkpoint %s: %s must be an I64 tensor of shape [%" PRId64 "]", L->path,
                        t->name, n);
    memcpy(out, t->data, sizeof *out * (size_t)n); /* may be unaligned */
    return PPD_OK;
}

static ppd_status load_train_state(loader *L) {
    static const char *const NAMES[3] = {"train.step", "train.epoch", "train.rng"};
    const ppd_tensor *t[3];
    int have = 0;
    for (int i = 0; i < 3; i++) have += (t[i] = ppd_tensor_file_find(L->f, NAMES[i])) != NULL;
    if (have == 0) return PPD_OK;
    for (int i = 0; i < 3; i++)
        if (!t[i])
            return ppd_fail(PPD_ERR_FORMAT, "checkpoint %s has train.* tensors but no %s", L->path,
                            NAMES[i]);
    int64_t step = 0, epoch = 0, rng[4] = {0};
    PPD_TRY(take_i64(L, t[0], 1, &step));
    PPD_TRY(take_i64(L, t[1], 1, &epoch));
    PPD_TRY(take_i64(L, t[2], 4, rng));
    if (step < 0 || epoch < 0)
        return ppd_fail(PPD_ERR_FORMAT, "checkpoint %s: negative train.step or train.epoch",
                        L->path);
    if (!(rng[0] | rng[1] | rng[2] | rng[3]))
        return ppd_fail(PPD_ERR_FORMAT,
                        "checkpoint %s: train.rng is all zeros, which xoshiro256** never reaches",
                        L->path);
    L->step = (uint64_t)step;
    L->epoch = (uint64_t)epoch;
    memcpy(L->rng.s, rng, sizeof rng);
    L->has_rng = 1;
    L->info.has_train_state = 1;
    const ppd_tensor *p = ppd_tensor_file_find(L->f, "train.progress");
    if (p) PPD_TRY(take_i64(L, p, 3, L->progress));
    p = ppd_tensor_file_find(L->f, "train.order");
    if (p) PPD_TRY(take_i64(L, p, 2, L->order));
    return PPD_OK;
}

/* "optimizer.exp_avg.<param>" / "optimizer.exp_avg_sq.<param>" -> the parameter, or NULL. */
static const ppd_param_entry *moment_of(const ppd_score_model *m, const char *name) {
    if (starts(name, "optimizer.exp_avg_sq."))
        return ppd_score_model_find(m, name + strlen("optimizer.exp_avg_sq."));
    if (starts(name, "optimizer.exp_avg."))
        return ppd_score_model_find(m, name + strlen("optimizer.exp_avg."));
    return NULL;
}

static ppd_status load_ppdock(loader *L) {
    const ppd_tensor_file *f = L->f;
    const char *fmt = meta_str(f, "format"), *ver = meta_str(f, "version");
    if (!fmt || strcmp(fmt, PPD_CHECKPOINT_FORMAT) != 0)
        return ppd_fail(PPD_ERR_FORMAT,
                        "%s is a safetensors file but not a ppdock training checkpoint (its "
                        "__metadata__ format is %s%s%s, not \"" PPD_CHECKPOINT_FORMAT "\")",
                        L->path, fmt ? "\"" : "", fmt ? fmt : "missing", fmt ? "\"" : "");
    if (!ver || strcmp(ver, PPD_CHECKPOINT_VERSION) != 0)
        return ppd_fail(PPD_ERR_VERSION,
                        "checkpoint %s has version %s; this build of ppdock reads version "
                        "" PPD_CHECKPOINT_VERSION,
                        L->path, ver ? ver : "(none)");
    L->info.kind = PPD_CKPT_PPDOCK;
    const ppd_score_model *m = L->m;
    size_t nfile = ppd_tensor_file_count(f), nmom = 0;
    for (size_t i = 0; i < nfile; i++) {
        const char *name = ppd_tensor_file_at(f, i)->name;
        if (ppd_score_model_find(m, name) || ppd_score_model_find_buffer(m, name) ||
            starts(name, "train."))
            continue;
        if (moment_of(m, name)) {
            nmom++;
            continue;
        }
        return ppd_fail(PPD_ERR_CONFIG,
                        "checkpoint %s has tensor %s, which this model does not have: it was "
                        "written for another model (ns/nv/num_conv_layers/lm_embed_dim differ)",
                        L->path, name);
    }
    for (int i = 0; i < m->ntensors; i++) {
        const ppd_param_entry *e = &m->tab[i];
        const ppd_tensor *t = ppd_tensor_file_find(f, e->name);
        if (!t) return missing(L, e->name);
        PPD_TRY(take(L, t, e, L->p + e->offset, 0, PPD_ERR_CONFIG, SHAPE_HINT));
    }
    for (int i = 0; i < m->nbuffers; i++) {
        const ppd_param_entry *e = &m->btab[i];
        const ppd_tensor *t = ppd_tensor_file_find(f, e->name);
        if (!t) return missing(L, e->name);
        PPD_TRY(take(L, t, e, L->bufs + e->offset, 0, PPD_ERR_CONFIG, SHAPE_HINT));
    }
    if (nmom) {
        for (int i = 0; i < m->ntensors; i++) {
            const ppd_param_entry *e = &m->tab[i];
            for (int k = 0; k < 2; k++) {
                char name[NAME_CAP];
                snprintf(name, sizeof name, "optimizer.%s.%s", k ? "exp_avg_sq" : "exp_avg",
                         e->name);
                const ppd_tensor *t = ppd_tensor_file_find(f, name);
                if (!t)
                    return ppd_fail(PPD_ERR_NOTFOUND,
                                    "checkpoint %s has Adam moments but no %s (damaged file?)",
                                    L->path, name);
                float *dst = k ? L->vv : L->mm;
                PPD_TRY(take(L, t, e, dst ? dst + e->offset : NULL, k, PPD_ERR_FORMAT,
                             "the moment's shape differs from its parameter's (damaged file?)"));
            }
        }
        L->info.has_optimizer = 1;
    }
    return load_train_state(L);
}

/* ---- load: DiffDock-PP .pth --------------------------------------------------------------- */

static int is_buffer(const char *name) {
    return strstr(name, "dist_exp.offset") || strstr(name, "tensor_prod.");
}

/* "optimizer.state.<i>.<field>" with i a parameter index and field one Adam keeps. */
static int is_adam_state(const char *name, int ntensors) {
    if (!starts(name, "optimizer.state.")) return 0;
    const char *s = name + strlen("optimizer.state.");
    char *end;
    if (*s < '0' || *s > '9' || (s[0] == '0' && s[1] != '.')) return 0; /* decimal, as named */
    long i = strtol(s, &end, 10);
    if (i >= ntensors || *end != '.') return 0;
    end++;
    return !strcmp(end, "exp_avg") || !strcmp(end, "exp_avg_sq") || !strcmp(end, "step");
}

/* A Gaussian-offset buffer must be the one our config computes: it shapes every edge feature. */
static ppd_status check_offsets(const loader *L, const char *prefix, const char *buf,
                                const float *want, int count, const char *keys) {
    char name[NAME_CAP];
    snprintf(name, sizeof name, "%sencoder.%s", prefix, buf);
    const ppd_tensor *t = ppd_tensor_file_find(L->f, name);
    if (!t || count < 1 || count > 64) return PPD_OK; /* the model holds at most 64 offsets */
    if (t->ndim != 1 || t->numel != count || !is_float(t->dtype)) {
        char a[160];
        return ppd_fail(PPD_ERR_CONFIG,
                        "checkpoint %s: the Gaussian offsets %s are %s %s, the model has %d: %s "
                        "of the config differ from the checkpoint's",
                        L->path, name, ppd_tf_dtype_name(t->dtype),
                        shape_str(a, sizeof a, t->ndim, t->shape), count, keys);
    }
    float got[64];
    PPD_TRY(ppd_tensor_to_f32(t, got));
    for (int i = 0; i < count; i++)
        if (!(fabsf(got[i] - want[i]) <= 1e-5f * (1.0f + fabsf(want[i]))))
            return ppd_fail(PPD_ERR_CONFIG,
                            "checkpoint %s: the Gaussian offsets %s run 0..%g, the model's 0..%g "
                            "(element %d: %g vs %g): %s of the config differ from the "
                            "checkpoint's",
                            L->path, name, (double)got[count - 1], (double)want[count - 1], i,
                            (double)got[i], (double)want[i], keys);
    return PPD_OK;
}

/* nstate: how many optimizer.state.* tensors the file has. */
static ppd_status load_pth_optimizer(loader *L, size_t nstate) {
    const ppd_score_model *m = L->m;
    int steps = 0;
    if (!nstate) return PPD_OK; /* weights only, as in the released score model */
    double step = 0;
    for (int i = 0; i < m->ntensors; i++) {
        const ppd_param_entry *e = &m->tab[i];
        char name[NAME_CAP];
        for (int k = 0; k < 2; k++) {
            snprintf(name, sizeof name, "optimizer.state.%d.%s", i, k ? "exp_avg_sq" : "exp_avg");
            const ppd_tensor *t = ppd_tensor_file_find(L->f, name);
            if (!t)
                return ppd_fail(PPD_ERR_NOTFOUND,
                                "checkpoint %s has optimizer state but no %s (parameter %s): it "
                                "is not Adam state of this model",
                                L->path, name, e->name);
            float *dst = k ? L->vv : L->mm;
            char hint[NAME_CAP + 96];
            snprintf(hint, sizeof hint,
                     "state %d is not parameter %d (%s): the optimizer was built over other "
                     "parameters",
                     i, i, e->name);
            PPD_TRY(take(L, t, e, dst ? dst + e->offset : NULL, k, PPD_ERR_FORMAT, hint));
        }
        snprintf(name, sizeof name, "optimizer.state.%d.step", i);
        double s;
        ppd_status rc = ppd_tensor_file_number(L->f, name, &s);
        if (rc == PPD_ERR_NOTFOUND) continue;
        if (rc) return ppd_fail_ctx(rc, "checkpoint %s", L->path);
        if (!(s >= 0 && s <= 9007199254740992.0 && s == floor(s)))
            return ppd_fail(PPD_ERR_FORMAT, "checkpoint %s: %s is %g, not a step count", L->path,
                            name, s);
        if (steps++ && s != step)
            return ppd_fail(PPD_ERR_FORMAT,
                            "checkpoint %s: %s is %.0f but earlier parameters have step %.0f; "
                            "ppdock keeps one Adam step for all parameters",
                            L->path, name, s, step);
        step = s;
    }
    ppd_clear_error(); /* a missing step above left a message behind */
    L->info.has_optimizer = 1;
    if (steps) {
        if (steps != m->ntensors)
            return ppd_fail(PPD_ERR_FORMAT,
                            "checkpoint %s: only %d of %d parameters have an optimizer step",
                            L->path, steps, m->ntensors);
        L->step = (uint64_t)step;
        L->info.has_train_state = 1;
    }
    return PPD_OK;
}

static ppd_status load_pth(loader *L) {
    const ppd_tensor_file *f = L->f;
    const ppd_score_model *m = L->m;
    L->info.kind = PPD_CKPT_DIFFDOCK_PTH;
    size_t nfile = ppd_tensor_file_count(f);
    /* {"model": state_dict, "optimizer": ...} as DiffDock-PP saves, or a bare state_dict */
    const char *prefix = "";
    for (size_t i = 0; i < nfile; i++)
        if (starts(ppd_tensor_file_at(f, i)->name, "model.")) prefix = "model.";
    size_t plen = strlen(prefix), nstate = 0;
    for (size_t i = 0; i < nfile; i++) {
        const char *name = ppd_tensor_file_at(f, i)->name;
        if (plen && is_adam_state(name, m->ntensors)) {
            nstate++;
            continue;
        }
        if (starts(name, prefix)) {
            const char *key = name + plen;
            if (starts(key, "encoder.confidence_predictor."))
                return ppd_fail(PPD_ERR_FORMAT,
                                "%s is a DiffDock-PP confidence model (it has tensor %s), not a "
                                "score model: give the score model's checkpoint",
                                L->path, name);
            if (is_buffer(key) || ppd_score_model_find(m, key) ||
                ppd_score_model_find_buffer(m, key))
                continue;
        }
        return ppd_fail(PPD_ERR_CONFIG,
                        "checkpoint %s has tensor %s, which this score model does not have: it "
                        "was written for another model (ns/nv/num_conv_layers/lm_embed_dim "
                        "differ) or is not a DiffDock-PP score-model checkpoint",
                        L->path, name);
    }
    char name[NAME_CAP];
    for (int i = 0; i < m->ntensors; i++) {
        const ppd_param_entry *e = &m->tab[i];
        snprintf(name, sizeof name, "%s%s", prefix, e->name);
        const ppd_tensor *t = ppd_tensor_file_find(f, name);
        if (!t) return missing(L, name);
        PPD_TRY(take(L, t, e, L->p + e->offset, 0, PPD_ERR_CONFIG, SHAPE_HINT));
    }
    for (int i = 0; i < m->nbuffers; i++) { /* running statistics: kept at their start if absent */
        const ppd_param_entry *e = &m->btab[i];
        snprintf(name, sizeof name, "%s%s", prefix, e->name);
        const ppd_tensor *t = ppd_tensor_file_find(f, name);
        if (t) PPD_TRY(take(L, t, e, L->bufs + e->offset, 0, PPD_ERR_CONFIG, SHAPE_HINT));
    }
    const ppd_score_config *c = &m->cfg;
    PPD_TRY(check_offsets(L, prefix, "lig_dist_exp.offset", m->off_intra, c->dist_dim,
                          "dist_embed_dim"));
    PPD_TRY(check_offsets(L, prefix, "rec_dist_exp.offset", m->off_intra, c->dist_dim,
                          "dist_embed_dim"));
    PPD_TRY(check_offsets(L, prefix, "center_dist_exp.offset", m->off_intra, c->dist_dim,
                          "dist_embed_dim"));
    PPD_TRY(check_offsets(L, prefix, "cross_dist_exp.offset", m->off_cross, c->cross_dist_dim,
                          "cross_max_dist/cross_dist_embed_dim"));
    return load_pth_optimizer(L, nstate);
}

/* ---- load ------------------------------------------------------------------------------- */

ppd_status ppd_checkpoint_load(const char *path, ppd_score_model *m, float *adam_m, float *adam_v,
                               ppd_train_state *st, ppd_checkpoint_info *info) {
    if (!path || !m || !m->params)
        return ppd_fail(PPD_ERR_USAGE, "checkpoint load: NULL path or model");
    if (!adam_m != !adam_v)
        return ppd_fail(PPD_ERR_USAGE, "checkpoint load %s: give both Adam moments or neither",
                        path);
    size_t np = m->nparams, nbuf = adam_m ? 3 : 1, nb = m->nbuffer_floats;
    float *scratch = malloc(sizeof(float) * (np * nbuf + nb + 1));
    if (!scratch) return ppd_fail(PPD_ERR_NOMEM, "checkpoint load %s: out of memory", path);
    loader L = {.path = path, .m = m, .p = scratch, .bufs = scratch + np * nbuf};
    if (nb) memcpy(L.bufs, m->buffers, sizeof(float) * nb);
    if (adam_m) {
        L.mm = scratch + np;
        L.vv = scratch + 2 * np;
        memset(L.mm, 0, sizeof(float) * np * 2); /* a fresh Adam when the file has none */
    }
    ppd_tensor_file *f = NULL;
    ppd_status rc = ppd_tensor_file_open(path, &f);
    if (!rc) {
        L.f = f;
        rc = strcmp(ppd_tensor_file_format(f), "safetensors") == 0 ? load_ppdock(&L) : load_pth(&L);
    }
    if (!rc) {
        memcpy(m->params, L.p, sizeof(float) * np);
        if (nb) memcpy(m->buffers, L.bufs, sizeof(float) * nb);
        if (adam_m) {
            memcpy(adam_m, L.mm, sizeof(float) * np);
            memcpy(adam_v, L.vv, sizeof(float) * np);
        }
        if (st) {
            st->step = L.step;
            st->epoch = L.epoch;
            if (L.has_rng) st->rng = L.rng;
            st->epoch_batch = (uint64_t)L.progress[0];
            st->bad_epochs = (uint64_t)L.progress[1];
            memcpy(&st->best_val, &L.progress[2], sizeof(double));
            st->batch_size = (uint64_t)L.order[0];
            memcpy(&st->seed, &L.order[1], sizeof st->seed);
        }
        if (info) *info = L.info;
    }
    ppd_tensor_file_close(f);
    free(scratch);
    return rc;
}
