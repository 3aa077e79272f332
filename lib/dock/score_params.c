/* Score model: configuration, parameter table in state-dict order, initialisation
 * (ppdock/score_model.h; spec diffdock-pp.md §3.8, §3.9). */
#include "ppdock/nn.h"
#include "ppdock/rng.h"
#include "ppdock/score_model.h"
#include "ppdock/so3.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ppd_score_config_default(ppd_score_config *c) {
    *c = (ppd_score_config){
        .ns = 32,
        .nv = 6,
        .layers = 4,
        .lm_dim = 1280,
        .num_atom_types = 24,
        .temb_dim = 32,
        .dist_dim = 32,
        .cross_dist_dim = 32,
        .intra_max_dist = 30.0f,
        .cross_max_dist = 80.0f,
        .dynamic_max_cross = 1,
        .cross_cutoff_weight = 3.0f,
        .cross_cutoff_bias = 40.0f,
        .tr_s_min = 0.01f,
        .tr_s_max = 30.0f,
        .rot_s_min = 0.01f,
        .rot_s_max = 1.65f,
        .scale_by_sigma = 1,
        .dropout = 0.0f,
        .batch_norm = 0,
        .chunk_edges = 2048,
    };
}

static ppd_status add(ppd_score_model *m, const char *name, int64_t rows, int64_t cols) {
    if (m->ntensors == PPD_SCORE_MAX_TENSORS)
        return ppd_fail(PPD_ERR_INTERNAL, "score model: more than %d tensors",
                        PPD_SCORE_MAX_TENSORS);
    ppd_param_entry *e = &m->tab[m->ntensors++];
    snprintf(e->name, sizeof e->name, "%s", name);
    e->ndim = cols > 0 ? 2 : 1;
    e->shape[0] = rows;
    e->shape[1] = cols > 0 ? cols : 0;
    e->numel = (size_t)rows * (size_t)(cols > 0 ? cols : 1);
    e->offset = m->nparams;
    m->nparams += e->numel;
    return PPD_OK;
}

/* A Linear(in -> out) named "<prefix>.weight" / ".bias". */
static ppd_status add_linear(ppd_score_model *m, const char *prefix, int64_t out, int64_t in) {
    char n[64];
    snprintf(n, sizeof n, "%s.weight", prefix);
    PPD_TRY(add(m, n, out, in));
    snprintf(n, sizeof n, "%s.bias", prefix);
    return add(m, n, out, 0);
}

/* The two Linear layers of an edge MLP / fc: "<prefix>.0" (in -> hid) and "<prefix>.3". */
static ppd_status add_mlp(ppd_score_model *m, const char *prefix, int64_t in, int64_t hid,
                          int64_t out) {
    char n[64];
    snprintf(n, sizeof n, "%s.0", prefix);
    PPD_TRY(add_linear(m, n, hid, in));
    snprintf(n, sizeof n, "%s.3", prefix);
    return add_linear(m, n, out, hid);
}

/* A batch norm's parameters ("<prefix>.weight" fields, ".bias" 0e fields) and its running
 * statistics (buffers: ".running_mean" 0e fields, ".running_var" fields). */
static ppd_status add_bn(ppd_score_model *m, const char *prefix, int fields, int scalars) {
    char n[96];
    snprintf(n, sizeof n, "%s.weight", prefix);
    PPD_TRY(add(m, n, fields, 0));
    snprintf(n, sizeof n, "%s.bias", prefix);
    PPD_TRY(add(m, n, scalars, 0));
    const char *what[2] = {"running_mean", "running_var"};
    int size[2] = {scalars, fields};
    for (int i = 0; i < 2; i++) {
        if (m->nbuffers == (int)(sizeof m->btab / sizeof m->btab[0]))
            return ppd_fail(PPD_ERR_INTERNAL, "score model: too many buffers");
        ppd_param_entry *e = &m->btab[m->nbuffers++];
        snprintf(e->name, sizeof e->name, "%s.%s", prefix, what[i]);
        e->ndim = 1;
        e->shape[0] = size[i];
        e->numel = (size_t)size[i];
        e->offset = m->nbuffer_floats;
        m->nbuffer_floats += e->numel;
    }
    return PPD_OK;
}

static int layer_irreps(int k) {
    return k < 3 ? k : 3;
}

static ppd_status check_config(const ppd_score_config *c) {
    if (c->ns < 1 || c->nv < 1)
        return ppd_fail(PPD_ERR_USAGE, "score model: ns and nv must be >= 1 (got %d, %d)", c->ns,
                        c->nv);
    if (c->layers < 1 || c->layers > PPD_SCORE_MAX_LAYERS)
        return ppd_fail(PPD_ERR_USAGE, "score model: num_conv_layers must be 1..%d (got %d)",
                        PPD_SCORE_MAX_LAYERS, c->layers);
    if (c->lm_dim < 0) return ppd_fail(PPD_ERR_USAGE, "score model: lm_embed_dim must be >= 0");
    if (c->temb_dim != 32)
        return ppd_fail(PPD_ERR_USAGE,
                        "score model: sigma_embed_dim %d is not supported (the sinusoidal time "
                        "embedding is 32 wide)",
                        c->temb_dim);
    if (c->dist_dim < 2 || c->dist_dim > 64 || c->cross_dist_dim < 2 || c->cross_dist_dim > 64)
        return ppd_fail(PPD_ERR_USAGE,
                        "score model: dist_embed_dim and cross_dist_embed_dim must be 2..64 (got "
                        "%d, %d)",
                        c->dist_dim, c->cross_dist_dim);
    if (!(c->dropout >= 0.0f && c->dropout < 1.0f))
        return ppd_fail(PPD_ERR_USAGE, "score model: model.dropout must be in [0, 1) (got %g)",
                        (double)c->dropout);
    if (c->chunk_edges < 1) return ppd_fail(PPD_ERR_USAGE, "score model: chunk_edges must be >= 1");
    if (c->num_atom_types < 1)
        return ppd_fail(PPD_ERR_USAGE, "score model: the embedding table needs >= 1 row");
    return PPD_OK;
}

static ppd_status build_tps(ppd_score_model *m) {
    const ppd_score_config *c = &m->cfg;
    ppd_irreps sh, in, out;
    PPD_TRY(ppd_irreps_parse(&sh, "0e+1o+2e"));
    for (int k = 0; k < c->layers; k++) {
        ppd_irreps_score(&in, c->ns, c->nv, layer_irreps(k));
        ppd_irreps_score(&out, c->ns, c->nv, layer_irreps(k + 1));
        PPD_TRY(ppd_tp_init(&m->tp[k], &in, &sh, &out));
    }
    ppd_irreps_score(&in, c->ns, c->nv, layer_irreps(c->layers));
    PPD_TRY(ppd_irreps_parse(&out, "2x1o+2x1e"));
    return ppd_tp_init(&m->tp_final, &in, &sh, &out);
}

static float *at(float *buf, const ppd_score_model *m, const char *name) {
    const ppd_param_entry *e = ppd_score_model_find(m, name);
    return e ? buf + e->offset : NULL;
}

static ppd_linear_params lin(float *buf, const ppd_score_model *m, const char *prefix) {
    char w[64], b[64];
    snprintf(w, sizeof w, "%s.weight", prefix);
    snprintf(b, sizeof b, "%s.bias", prefix);
    return (ppd_linear_params){at(buf, m, w), at(buf, m, b)};
}

static void mlp(ppd_linear_params out[2], float *buf, const ppd_score_model *m,
                const char *prefix) {
    char n[64];
    snprintf(n, sizeof n, "%s.0", prefix);
    out[0] = lin(buf, m, n);
    snprintf(n, sizeof n, "%s.3", prefix);
    out[1] = lin(buf, m, n);
}

static void bind(ppd_score_params *p, float *buf, const ppd_score_model *m) {
    memset(p, 0, sizeof *p);
    p->atom_ebd = at(buf, m, "encoder.atom_embed.atom_ebd.weight");
    p->sigma_ebd = lin(buf, m, "encoder.atom_embed.sigma_ebd");
    p->lm_ebd = lin(buf, m, "encoder.atom_embed.lm_ebd");
    mlp(p->rec_edge, buf, m, "encoder.rec_edge_embed");
    mlp(p->cross_edge, buf, m, "encoder.cross_edge_embed");
    char n[64];
    for (int k = 0; k < m->cfg.layers; k++) {
        snprintf(n, sizeof n, "encoder.intra_convs.%d.fc", k);
        mlp(p->intra_fc[k], buf, m, n);
        snprintf(n, sizeof n, "encoder.cross_convs.%d.fc", k);
        mlp(p->cross_fc[k], buf, m, n);
    }
    mlp(p->center_edge, buf, m, "encoder.center_edge_embed");
    mlp(p->final_fc, buf, m, "encoder.final_conv.fc");
    mlp(p->tr_head, buf, m, "encoder.tr_final_layer");
    mlp(p->rot_head, buf, m, "encoder.rot_final_layer");
    for (int conv = 0; conv < 2; conv++)
        for (int k = 0; k < m->cfg.layers; k++) {
            snprintf(n, sizeof n, "encoder.%s_convs.%d.batch_norm", conv ? "cross" : "intra", k);
            p->bn[conv][k] = lin(buf, m, n);
        }
}

ppd_status ppd_score_model_init(ppd_score_model *m, const ppd_score_config *c) {
    memset(m, 0, sizeof *m);
    PPD_TRY(check_config(c));
    m->cfg = *c;
    PPD_TRY(build_tps(m));
    int ns = c->ns, F = 3 * ns, T = c->temb_dim, D = c->dist_dim;
    /* state-dict order of the original TensorProductScoreModel (spec §3.9) */
    PPD_TRY(add(m, "encoder.atom_embed.atom_ebd.weight", c->num_atom_types, ns));
    PPD_TRY(add_linear(m, "encoder.atom_embed.sigma_ebd", ns, T));
    if (c->lm_dim > 0) PPD_TRY(add_linear(m, "encoder.atom_embed.lm_ebd", ns, ns + c->lm_dim));
    PPD_TRY(add_mlp(m, "encoder.rec_edge_embed", T + D, ns, ns));
    PPD_TRY(add_mlp(m, "encoder.cross_edge_embed", T + c->cross_dist_dim, ns, ns));
    char n[64];
    for (int conv = 0; conv < 2; conv++)
        for (int k = 0; k < c->layers; k++) {
            const char *kind = conv ? "cross" : "intra";
            snprintf(n, sizeof n, "encoder.%s_convs.%d.fc", kind, k);
            PPD_TRY(add_mlp(m, n, F, F, m->tp[k].wnum));
            if (!c->batch_norm) continue;
            /* e3nn BatchNorm(out irreps): weight per field, bias per 0e field */
            int fields = 0, scalars = 0;
            const ppd_irreps *o = &m->tp[k].out;
            for (int i = 0; i < o->n; i++) {
                fields += o->r[i].mul;
                if (o->r[i].l == 0 && o->r[i].p > 0) scalars += o->r[i].mul;
            }
            snprintf(n, sizeof n, "encoder.%s_convs.%d.batch_norm", kind, k);
            PPD_TRY(add_bn(m, n, fields, scalars));
        }
    PPD_TRY(add_mlp(m, "encoder.center_edge_embed", D + T, ns, ns));
    PPD_TRY(add_mlp(m, "encoder.final_conv.fc", 2 * ns, 2 * ns, m->tp_final.wnum));
    PPD_TRY(add_mlp(m, "encoder.tr_final_layer", 1 + T, ns, 1));
    PPD_TRY(add_mlp(m, "encoder.rot_final_layer", 1 + T, ns, 1));
    m->params = calloc(m->nparams, sizeof(float));
    m->grads = calloc(m->nparams, sizeof(float));
    if (!m->params || !m->grads) {
        ppd_score_model_free(m);
        return ppd_fail(PPD_ERR_NOMEM, "score model: cannot allocate %zu parameters", m->nparams);
    }
    bind(&m->p, m->params, m);
    bind(&m->g, m->grads, m);
    if (m->nbuffers) {
        m->buffers = calloc(m->nbuffer_floats, sizeof(float));
        if (!m->buffers) {
            ppd_score_model_free(m);
            return ppd_fail(PPD_ERR_NOMEM, "score model: cannot allocate its buffers");
        }
        for (int conv = 0; conv < 2; conv++)
            for (int k = 0; k < c->layers; k++) {
                char nm[96], nv[96];
                snprintf(nm, sizeof nm, "encoder.%s_convs.%d.batch_norm.running_mean",
                         conv ? "cross" : "intra", k);
                snprintf(nv, sizeof nv, "encoder.%s_convs.%d.batch_norm.running_var",
                         conv ? "cross" : "intra", k);
                for (int i = 0; i < m->nbuffers; i++) {
                    if (!strcmp(m->btab[i].name, nm))
                        m->bn_mean[conv][k] = m->buffers + m->btab[i].offset;
                    if (!strcmp(m->btab[i].name, nv))
                        m->bn_var[conv][k] = m->buffers + m->btab[i].offset;
                }
            }
        ppd_score_reset_buffers(m);
    }
    ppd_gaussian_smearing_offsets(m->off_intra, 0.0f, c->intra_max_dist, D);
    ppd_gaussian_smearing_offsets(m->off_cross, 0.0f, c->cross_max_dist, c->cross_dist_dim);
    m->gamma_intra = ppd_gaussian_smearing_gamma(m->off_intra);
    m->gamma_cross = ppd_gaussian_smearing_gamma(m->off_cross);
    return ppd_arena_init(&m->act, 0, 1);
}

void ppd_score_reset_buffers(ppd_score_model *m) {
    /* e3nn's initial running statistics: means 0, variances 1 */
    for (int i = 0; i < m->nbuffers; i++) {
        float v = strstr(m->btab[i].name, "running_var") ? 1.0f : 0.0f;
        for (size_t j = 0; j < m->btab[i].numel; j++) m->buffers[m->btab[i].offset + j] = v;
    }
}

const ppd_param_entry *ppd_score_model_find_buffer(const ppd_score_model *m, const char *name) {
    for (int i = 0; i < m->nbuffers; i++)
        if (strcmp(m->btab[i].name, name) == 0) return &m->btab[i];
    return NULL;
}

void ppd_score_model_free(ppd_score_model *m) {
    free(m->buffers);
    free(m->params);
    free(m->grads);
    ppd_arena_free(&m->act);
    memset(m, 0, sizeof *m);
}

const ppd_param_entry *ppd_score_model_find(const ppd_score_model *m, const char *name) {
    for (int i = 0; i < m->ntensors; i++)
        if (strcmp(m->tab[i].name, name) == 0) return &m->tab[i];
    return NULL;
}

void ppd_score_model_init_params(ppd_score_model *m, uint64_t seed) {
    ppd_rng r;
    ppd_rng_seed(&r, seed);
    if (m->nbuffers) ppd_score_reset_buffers(m);
    for (int i = 0; i < m->ntensors; i++) {
        const ppd_param_entry *e = &m->tab[i];
        float *p = m->params + e->offset;
        if (e->ndim == 1) {
            memset(p, 0, e->numel * sizeof(float));
            continue;
        }
        /* torch's xavier_normal_: fan_in = size(1), fan_out = size(0) */
        double std = sqrt(2.0 / (double)(e->shape[0] + e->shape[1]));
        for (size_t j = 0; j < e->numel; j++) p[j] = (float)(std * ppd_rng_normal(&r));
    }
}

void ppd_score_zero_grad(ppd_score_model *m) {
    memset(m->grads, 0, m->nparams * sizeof(float));
}
