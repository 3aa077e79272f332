/* Loading ESM-2 weights from fair-esm .pt or Hugging Face safetensors (spec esm2.md §4; see
 * ppdock/esm.h). Names are resolved once per file: the prefix and naming scheme under which the
 * token embedding is found are used for every other tensor. */
#include "esm_internal.h"

#include "ppdock/tensorfile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Every tensor the encoder uses: fair-esm stripped name and Hugging Face name (%d: layer). */
enum {
    T_EMBED,
    T_LN1_W,
    T_LN1_B,
    T_Q_W,
    T_Q_B,
    T_K_W,
    T_K_B,
    T_V_W,
    T_V_B,
    T_O_W,
    T_O_B,
    T_INV_FREQ,
    T_LN2_W,
    T_LN2_B,
    T_FC1_W,
    T_FC1_B,
    T_FC2_W,
    T_FC2_B,
    T_LNF_W,
    T_LNF_B,
    T_COUNT
};

static const char *const names[T_COUNT][2] = {
    [T_EMBED] = {"embed_tokens.weight", "embeddings.word_embeddings.weight"},
    [T_LN1_W] = {"layers.%d.self_attn_layer_norm.weight",
                 "encoder.layer.%d.attention.LayerNorm.weight"},
    [T_LN1_B] = {"layers.%d.self_attn_layer_norm.bias",
                 "encoder.layer.%d.attention.LayerNorm.bias"},
    [T_Q_W] = {"layers.%d.self_attn.q_proj.weight", "encoder.layer.%d.attention.self.query.weight"},
    [T_Q_B] = {"layers.%d.self_attn.q_proj.bias", "encoder.layer.%d.attention.self.query.bias"},
    [T_K_W] = {"layers.%d.self_attn.k_proj.weight", "encoder.layer.%d.attention.self.key.weight"},
    [T_K_B] = {"layers.%d.self_attn.k_proj.bias", "encoder.layer.%d.attention.self.key.bias"},
    [T_V_W] = {"layers.%d.self_attn.v_proj.weight", "encoder.layer.%d.attention.self.value.weight"},
    [T_V_B] = {"layers.%d.self_attn.v_proj.bias", "encoder.layer.%d.attention.self.value.bias"},
    [T_O_W] = {"layers.%d.self_attn.out_proj.weight",
               "encoder.layer.%d.attention.output.dense.weight"},
    [T_O_B] = {"layers.%d.self_attn.out_proj.bias", "encoder.layer.%d.attention.output.dense.bias"},
    [T_INV_FREQ] = {"layers.%d.self_attn.rot_emb.inv_freq",
                    "encoder.layer.%d.attention.self.rotary_embeddings.inv_freq"},
    [T_LN2_W] = {"layers.%d.final_layer_norm.weight", "encoder.layer.%d.LayerNorm.weight"},
    [T_LN2_B] = {"layers.%d.final_layer_norm.bias", "encoder.layer.%d.LayerNorm.bias"},
    [T_FC1_W] = {"layers.%d.fc1.weight", "encoder.layer.%d.intermediate.dense.weight"},
    [T_FC1_B] = {"layers.%d.fc1.bias", "encoder.layer.%d.intermediate.dense.bias"},
    [T_FC2_W] = {"layers.%d.fc2.weight", "encoder.layer.%d.output.dense.weight"},
    [T_FC2_B] = {"layers.%d.fc2.bias", "encoder.layer.%d.output.dense.bias"},
    [T_LNF_W] = {"emb_layer_norm_after.weight", "encoder.emb_layer_norm_after.weight"},
    [T_LNF_B] = {"emb_layer_norm_after.bias", "encoder.emb_layer_norm_after.bias"},
};

/* Where the state dict lives: fair-esm checkpoints hold {"model": state_dict, "cfg": ...} with
 * raw "encoder.sentence_encoder." keys; state dicts saved on their own, Hugging Face files
 * ("esm." for EsmForMaskedLM, none for EsmModel) and stripped fair-esm names are also seen. */
static const struct {
    const char *prefix;
    int hf;
} layouts[] = {
    {"model.encoder.sentence_encoder.", 0},
    {"encoder.sentence_encoder.", 0},
    {"model.", 0},
    {"", 0},
    {"esm.", 1},
    {"", 1},
    {"model.esm.", 1},
    {"state_dict.esm.", 1},
    {"state_dict.", 0},
};

typedef struct {
    const ppd_tensor_file *f;
    const char *path;
    const char *prefix;
    int hf;
} loader;

static const ppd_tensor *find(const loader *ld, int which, int layer, char *name, size_t cap) {
    char rel[160];
    snprintf(rel, sizeof rel, names[which][ld->hf], layer);
    snprintf(name, cap, "%s%s", ld->prefix, rel);
    return ppd_tensor_file_find(ld->f, name);
}

static void shape_str(const ppd_tensor *t, char *buf, size_t cap) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < t->ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

/* Copy tensor `which` of `layer` (shape [r] or [r, c]; c = 0 for 1-d) into dst. */
static ppd_status load_tensor(const loader *ld, int which, int layer, int64_t r, int64_t c,
                              float *dst) {
    char name[256], got[96];
    const ppd_tensor *t = find(ld, which, layer, name, sizeof name);
    if (!t)
        return ppd_fail(PPD_ERR_NOTFOUND, "%s: ESM checkpoint has no tensor \"%s\"", ld->path,
                        name);
    int ndim = c ? 2 : 1;
    if (t->ndim != ndim || t->shape[0] != r || (c && t->shape[1] != c)) {
        shape_str(t, got, sizeof got);
        if (c)
            return ppd_fail(PPD_ERR_FORMAT, "%s: tensor \"%s\" has shape %s, expected [%lld, %lld]",
                            ld->path, name, got, (long long)r, (long long)c);
        return ppd_fail(PPD_ERR_FORMAT, "%s: tensor \"%s\" has shape %s, expected [%lld]", ld->path,
                        name, got, (long long)r);
    }
    ppd_status st = ppd_tensor_to_f32(t, dst);
    if (st) return ppd_fail_ctx(st, "%s: tensor \"%s\"", ld->path, name);
    return PPD_OK;
}

/* Heads when no inv_freq is stored: the checkpoint's own config, then the published shapes. */
static int heads_without_inv_freq(const loader *ld, const char *dir, int d) {
    double v;
    if (ppd_tensor_file_number(ld->f, "cfg.model.encoder_attention_heads", &v) == PPD_OK && v >= 1)
        return (int)v;
    if (ppd_tensor_file_number(ld->f, "args.encoder_attention_heads", &v) == PPD_OK && v >= 1)
        return (int)v;
    ppd_clear_error();
    if (dir) {
        char p[4096];
        snprintf(p, sizeof p, "%s/config.json", dir);
        FILE *fp = fopen(p, "rb");
        if (fp) {
            char buf[8192];
            size_t n = fread(buf, 1, sizeof buf - 1, fp);
            fclose(fp);
            buf[n] = 0;
            const char *k = strstr(buf, "\"num_attention_heads\"");
            if (k && (k = strchr(k, ':'))) {
                int h = atoi(k + 1);
                if (h >= 1) return h;
            }
        }
    }
    switch (d) { /* spec §3 */
    case 320:
    case 480:
    case 640:
    case 1280:
        return 20;
    case 2560:
    case 5120:
        return 40;
    default:
        return 0;
    }
}

static ppd_status load_from(ppd_esm_model *m, const ppd_tensor_file *f, const char *path,
                            const char *dir) {
    loader ld = {.f = f, .path = path};
    char name[256];
    const ppd_tensor *emb = NULL;
    for (size_t i = 0; i < sizeof layouts / sizeof layouts[0] && !emb; i++) {
        ld.prefix = layouts[i].prefix;
        ld.hf = layouts[i].hf;
        emb = find(&ld, T_EMBED, 0, name, sizeof name);
    }
    if (!emb)
        return ppd_fail(PPD_ERR_NOTFOUND,
                        "%s: no ESM-2 token embedding (looked for embed_tokens.weight with and "
                        "without the fair-esm prefixes, and esm.embeddings.word_embeddings.weight)",
                        path);
    if (emb->ndim != 2 || emb->shape[0] != PPD_ESM_VOCAB || emb->shape[1] < 2 ||
        emb->shape[1] > 65536) {
        char got[96];
        shape_str(emb, got, sizeof got);
        return ppd_fail(PPD_ERR_FORMAT, "%s: token embedding \"%s\" has shape %s, expected [33, d]",
                        path, name, got);
    }
    ppd_esm_config c = {.d = (int)emb->shape[1]};
    while (c.n_layers < 4096 && find(&ld, T_Q_W, c.n_layers, name, sizeof name)) c.n_layers++;
    if (c.n_layers == 0)
        return ppd_fail(PPD_ERR_NOTFOUND, "%s: ESM checkpoint has no layers (no \"%s\")", path,
                        name);
    const ppd_tensor *fc1 = find(&ld, T_FC1_W, 0, name, sizeof name);
    if (!fc1 || fc1->ndim != 2)
        return ppd_fail(PPD_ERR_NOTFOUND, "%s: ESM checkpoint has no 2-d \"%s\"", path, name);
    c.ffn = (int)fc1->shape[0];
    const ppd_tensor *inv = find(&ld, T_INV_FREQ, 0, name, sizeof name);
    int computed = 0;
    if (inv) {
        if (inv->ndim != 1 || inv->shape[0] < 1 || c.d % (2 * (int)inv->shape[0]) != 0)
            return ppd_fail(PPD_ERR_FORMAT,
                            "%s: \"%s\" has %lld entries: not half a head dim of d=%d", path, name,
                            (long long)inv->numel, c.d);
        c.head_dim = 2 * (int)inv->shape[0];
        c.n_heads = c.d / c.head_dim;
    } else {
        c.n_heads = heads_without_inv_freq(&ld, dir, c.d);
        if (c.n_heads < 1 || c.d % c.n_heads || (c.d / c.n_heads) % 2)
            return ppd_fail(PPD_ERR_FORMAT,
                            "%s: no inv_freq buffer and no usable head count for d=%d", path, c.d);
        c.head_dim = c.d / c.n_heads;
        computed = 1;
    }
    PPD_TRY(ppd_esm_model_alloc(m, &c));
    m->inv_freq_computed = computed;
    const ppd_esm_params *p = &m->p;
    int64_t d = c.d, F = c.ffn, h2 = c.head_dim / 2;
    size_t D = (size_t)d;
    ppd_status st = load_tensor(&ld, T_EMBED, 0, PPD_ESM_VOCAB, d, p->embed);
    for (int l = 0; l < c.n_layers && !st; l++) {
        size_t li = (size_t)l;
        float *wqkv = p->wqkv + li * 3 * D * D, *bqkv = p->bqkv + li * 3 * D;
        const struct {
            int which;
            int64_t r, c;
            float *dst;
        } parts[] = {
            {T_LN1_W, d, 0, p->ln1_w + li * D},
            {T_LN1_B, d, 0, p->ln1_b + li * D},
            {T_Q_W, d, d, wqkv},
            {T_K_W, d, d, wqkv + D * D},
            {T_V_W, d, d, wqkv + 2 * D * D},
            {T_Q_B, d, 0, bqkv},
            {T_K_B, d, 0, bqkv + D},
            {T_V_B, d, 0, bqkv + 2 * D},
            {T_O_W, d, d, p->wo + li * D * D},
            {T_O_B, d, 0, p->bo + li * D},
            {T_LN2_W, d, 0, p->ln2_w + li * D},
            {T_LN2_B, d, 0, p->ln2_b + li * D},
            {T_FC1_W, F, d, p->w1 + li * (size_t)F * D},
            {T_FC1_B, F, 0, p->b1 + li * (size_t)F},
            {T_FC2_W, d, F, p->w2 + li * D * (size_t)F},
            {T_FC2_B, d, 0, p->b2 + li * D},
        };
        for (size_t i = 0; i < sizeof parts / sizeof parts[0] && !st; i++)
            st = load_tensor(&ld, parts[i].which, l, parts[i].r, parts[i].c, parts[i].dst);
        if (st) break;
        float *fr = p->inv_freq + li * (size_t)h2;
        if (computed || !find(&ld, T_INV_FREQ, l, name, sizeof name))
            ppd_esm_default_inv_freq(fr, c.head_dim);
        else
            st = load_tensor(&ld, T_INV_FREQ, l, h2, 0, fr);
    }
    if (!st) st = load_tensor(&ld, T_LNF_W, 0, d, 0, p->lnf_w);
    if (!st) st = load_tensor(&ld, T_LNF_B, 0, d, 0, p->lnf_b);
    if (!st) st = ppd_esm_model_finish(m);
    if (st) ppd_esm_model_free(m);
    return st;
}

ppd_status ppd_esm_load(ppd_esm_model *m, const char *path) {
    memset(m, 0, sizeof *m);
    struct stat sb;
    char file[4096];
    const char *dir = NULL;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        dir = path;
        static const char *const cands[] = {"model.safetensors", "pytorch_model.bin", "model.pt"};
        size_t i;
        for (i = 0; i < sizeof cands / sizeof cands[0]; i++) {
            snprintf(file, sizeof file, "%s/%s", path, cands[i]);
            if (stat(file, &sb) == 0) break;
        }
        if (i == sizeof cands / sizeof cands[0])
            return ppd_fail(PPD_ERR_NOTFOUND,
                            "%s: directory has no model.safetensors, pytorch_model.bin or model.pt",
                            path);
        path = file;
    }
    ppd_tensor_file *f;
    PPD_TRY(ppd_tensor_file_open(path, &f));
    ppd_status st = load_from(m, f, path, dir);
    ppd_tensor_file_close(f);
    return st;
}
