/* Training batches from the graph and ESM caches (ppdock/loader.h). */
#include "ppdock/loader.h"

#include "ppdock/cache.h"
#include "ppdock/esm_record.h"
#include "ppdock/fsutil.h"
#include "ppdock/graph.h"
#include "ppdock/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { NSPLIT = 3 };
static const char *const SPLITS[NSPLIT] = {"train", "val", "test"};

/* A complex's counts, kept from the scan at open for ppd_loader_worst_pass. */
typedef struct {
    int32_t nr, nl;
    int64_t er, el;
} complex_sizes;

typedef struct {
    ppd_buf names;   /* NUL-terminated ids, back to back */
    ppd_buf offsets; /* int64 offsets into names */
    ppd_buf sizes;   /* complex_sizes per id */
    int64_t n;
} id_list;

struct ppd_loader {
    ppd_loader_opts o;
    ppd_cache_reader *graphs, *esm;
    uint64_t esm_model;
    char esm_policy[128];
    id_list split[NSPLIT];
    ppd_buf gcopy; /* aligned copy of the current graph record */
    ppd_buf ecopy; /* aligned copy of the current ESM record */
};

static int split_index(const char *s, size_t len) {
    for (int i = 0; i < NSPLIT; i++)
        if (strlen(SPLITS[i]) == len && !strncmp(SPLITS[i], s, len)) return i;
    return -1;
}

static ppd_status id_add(id_list *l, const char *id, const ppd_graph *g) {
    int64_t off = (int64_t)l->names.len;
    complex_sizes z = {g->rec.n, g->lig.n, g->rec.n_edges, g->lig.n_edges};
    PPD_TRY(ppd_buf_append(&l->names, id, strlen(id) + 1));
    PPD_TRY(ppd_buf_append(&l->offsets, &off, sizeof off));
    PPD_TRY(ppd_buf_append(&l->sizes, &z, sizeof z));
    l->n++;
    return PPD_OK;
}

static ppd_status check_meta(ppd_loader *l) {
    ppd_buf params = {0};
    char v[64];
    ppd_status st = ppd_cache_reader_meta(l->graphs, "params", &params);
    if (!st && ppd_cache_param((const char *)params.data, "data.knn_size", v, sizeof v) &&
        atoi(v) != l->o.knn_k)
        st = ppd_fail(PPD_ERR_USAGE,
                      "%s was built with data.knn_size=%s but the config says %d: rebuild the "
                      "graphs or set data.knn_size=%s",
                      l->o.graphs, v, l->o.knn_k, v);
    if (!st && l->esm) {
        st = ppd_cache_reader_meta(l->esm, "params", &params);
        char model[32] = "";
        if (!st && (!ppd_cache_param((const char *)params.data, "esm.model", model, sizeof model) ||
                    !ppd_cache_param((const char *)params.data, "esm.policy", l->esm_policy,
                                     sizeof l->esm_policy)))
            st = ppd_fail(PPD_ERR_CORRUPT, "%s: meta params lack esm.model / esm.policy", l->o.esm);
        if (!st) l->esm_model = strtoull(model, NULL, 16);
        if (!st && ppd_cache_param((const char *)params.data, "esm.width", v, sizeof v) &&
            atoi(v) != l->o.lm_dim)
            st = ppd_fail(PPD_ERR_USAGE,
                          "%s holds %s-wide embeddings but model.lm_embed_dim is %d: embed with "
                          "the matching ESM-2 model or set model.lm_embed_dim=%s",
                          l->o.esm, v, l->o.lm_dim, v);
    }
    ppd_buf_free(&params);
    return st;
}

static ppd_status scan_ids(ppd_loader *l) {
    ppd_cache_cursor *cur;
    PPD_TRY(ppd_cache_reader_cursor(l->graphs, &cur));
    char key[PPD_CACHE_MAX_KEY + 1];
    ppd_status st = PPD_OK;
    for (;;) {
        ppd_rec_view v;
        int done = 0;
        ppd_status r = ppd_cache_cursor_next(cur, key, &v, &done);
        if (done) break;
        if (r) { /* a bad record: skip it here; cache-check names it */
            ppd_warn("%s: record %s unreadable (%s); it is left out: run cache-check --repair",
                     l->o.graphs, key, ppd_errmsg());
            continue;
        }
        ppd_graph g;
        if (ppd_graph_decode_copy(&v, &l->gcopy, &g) != PPD_OK) {
            ppd_warn("%s: complex %s: %s; it is left out", l->o.graphs, key, ppd_errmsg());
            continue;
        }
        int s = split_index(g.split, g.split_len);
        if (s >= 0 && (st = id_add(&l->split[s], key, &g))) break;
    }
    ppd_cache_cursor_close(cur);
    return st;
}

/* An ESM cache given to a model without ESM features is not read: say so, with the width that
 * would use it, rather than train without the embeddings in silence. A warning, not an error:
 * slurm/train.sbatch passes an ESM cache whatever the config. */
static void warn_esm_unused(const char *esm) {
    ppd_cache_reader *r;
    ppd_buf params = {0};
    char width[32] = "";
    if (ppd_cache_reader_open(esm, &r) == PPD_OK) {
        if (ppd_cache_reader_meta(r, "params", &params) == PPD_OK)
            ppd_cache_param((const char *)params.data, "esm.width", width, sizeof width);
        ppd_cache_reader_close(r);
    }
    ppd_buf_free(&params);
    ppd_warn("--esm %s is not used: model.lm_embed_dim is 0, so the model trains on residue ids "
             "alone; set model.lm_embed_dim=%s to use the embeddings",
             esm, width[0] ? width : "(the cache's width)");
}

ppd_status ppd_loader_open(const ppd_loader_opts *o, ppd_loader **out) {
    *out = NULL;
    ppd_loader *l = calloc(1, sizeof *l);
    if (!l) return ppd_fail(PPD_ERR_NOMEM, "loader: out of memory");
    l->o = *o;
    ppd_status st = ppd_cache_reader_open(o->graphs, &l->graphs);
    if (!st && ppd_cache_reader_record_type(l->graphs) != PPD_REC_GRAPH)
        st = ppd_fail(PPD_ERR_USAGE, "%s is not a graph cache (made by graph-build)", o->graphs);
    if (!st && o->lm_dim > 0 && !o->esm)
        st = ppd_fail(PPD_ERR_USAGE,
                      "model.lm_embed_dim is %d: give the ESM cache with --esm DIR (or train on "
                      "residue ids with --set model.lm_embed_dim=0)",
                      o->lm_dim);
    if (!st && o->lm_dim == 0 && o->esm) warn_esm_unused(o->esm);
    if (!st && o->lm_dim > 0) {
        st = ppd_cache_reader_open(o->esm, &l->esm);
        if (!st && ppd_cache_reader_record_type(l->esm) != PPD_REC_ESM)
            st = ppd_fail(PPD_ERR_USAGE, "%s is not an ESM cache (made by esm-embed)", o->esm);
    }
    if (!st) st = check_meta(l);
    if (!st) st = scan_ids(l);
    if (st) {
        ppd_loader_close(l);
        return st;
    }
    *out = l;
    return PPD_OK;
}

void ppd_loader_close(ppd_loader *l) {
    if (!l) return;
    if (l->graphs) ppd_cache_reader_close(l->graphs);
    if (l->esm) ppd_cache_reader_close(l->esm);
    for (int i = 0; i < NSPLIT; i++) {
        ppd_buf_free(&l->split[i].names);
        ppd_buf_free(&l->split[i].offsets);
        ppd_buf_free(&l->split[i].sizes);
    }
    ppd_buf_free(&l->gcopy);
    ppd_buf_free(&l->ecopy);
    free(l);
}

static const id_list *find_split(const ppd_loader *l, const char *split) {
    int s = split_index(split, strlen(split));
    return s < 0 ? NULL : &l->split[s];
}

int64_t ppd_loader_count(const ppd_loader *l, const char *split) {
    const id_list *ids = find_split(l, split);
    return ids ? ids->n : 0;
}

const char *ppd_loader_id(const ppd_loader *l, const char *split, int64_t i) {
    const id_list *ids = find_split(l, split);
    if (!ids || i < 0 || i >= ids->n) return NULL;
    const int64_t *off = (const int64_t *)ids->offsets.data;
    return (const char *)ids->names.data + off[i];
}

/* Residue-name ids for lm_dim = 0: 1-based rank among the sorted 20 standard names, 21 else. */
static float residue_id(const char name[4]) {
    static const char *const STD[20] = {"ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU",
                                        "GLY", "HIS", "ILE", "LEU", "LYS", "MET", "PHE",
                                        "PRO", "SER", "THR", "TRP", "TYR", "VAL"};
    for (int i = 0; i < 20; i++)
        if (!strncmp(name, STD[i], 4)) return (float)(i + 1);
    return 21.0f;
}

/* Node features of one side into x (n rows of 1 + lm). */
static ppd_status side_features(ppd_loader *l, const char *id, const char *side,
                                const ppd_graph_side *g, float *x) {
    int lm = l->o.lm_dim, X = 1 + lm;
    if (lm == 0) {
        for (int32_t i = 0; i < g->n; i++) x[i] = residue_id(g->resname[i]);
        return PPD_OK;
    }
    char key[PPD_ESM_KEY_LEN + 1];
    ppd_esm_record_key(l->esm_model, l->esm_policy, g->tokens, (size_t)g->n, key);
    ppd_rec_view v;
    ppd_status st = ppd_cache_reader_get(l->esm, key, &v);
    if (st == PPD_ERR_NOTFOUND)
        return ppd_fail(PPD_ERR_NOTFOUND,
                        "complex %s: no embedding %s for its %d-residue %s in %s: run esm-embed "
                        "-g GRAPHS -o ESM",
                        id, key, g->n, side, l->o.esm);
    if (st) return ppd_fail_ctx(st, "complex %s: %s embedding %s", id, side, key);
    /* records are aligned in the cache; copy only when they are not */
    ppd_esm_embedding e;
    if (ppd_esm_record_decode(&v, &e) != PPD_OK) {
        l->ecopy.len = 0;
        PPD_TRY(ppd_buf_append(&l->ecopy, v.value, v.len));
        ppd_rec_view c;
        PPD_TRY(ppd_rec_parse(l->ecopy.data, l->ecopy.len, key, strlen(key), 0, &c));
        PPD_TRY(ppd_esm_record_decode(&c, &e));
    }
    if (e.n != g->n || e.d != lm || memcmp(e.tokens, g->tokens, (size_t)g->n) != 0)
        return ppd_fail(PPD_ERR_CORRUPT,
                        "complex %s: %s embedding %s is %d x %d for a %d-residue chain (width %d): "
                        "run cache-check GRAPHS ESM --repair, then esm-embed",
                        id, side, key, e.n, e.d, g->n, lm);
    for (int32_t i = 0; i < g->n; i++) {
        ppd_esm_embedding_row(&e, i, x + (size_t)i * X);
        x[(size_t)i * X + lm] = (float)g->tokens[i];
        float x0 = x[(size_t)i * X];
        if (l->o.index_rows > 0 && !(x0 > -1.0f && x0 < (float)l->o.index_rows))
            return ppd_fail(PPD_ERR_USAGE,
                            "complex %s: %s residue %d: ESM feature 0 is %g, which DiffDock-PP's "
                            "model reads as an embedding index (spec §3.2: it must truncate to "
                            "0..%d); ESM-2 650M's final layer keeps it within (-1, 1): were these "
                            "embeddings made by another model?",
                            id, side, i, (double)x0, l->o.index_rows - 1);
    }
    ppd_cache_release(v.value, v.len); /* copied out: RSS bounded (ppdock/cache.h) */
    return PPD_OK;
}

static int by_size_descending(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* The sum of the k largest of v[0..n) (reorders v). */
static int64_t sum_of_largest(int64_t *v, int64_t n, int k) {
    qsort(v, (size_t)n, sizeof *v, by_size_descending);
    int64_t s = 0;
    for (int64_t i = 0; i < n && i < k; i++) s += v[i];
    return s;
}

ppd_status ppd_loader_worst_pass(const ppd_loader *l, const char *split, int B,
                                 ppd_pass_sizes *out) {
    memset(out, 0, sizeof *out);
    const id_list *ids = find_split(l, split);
    int64_t n = ids ? ids->n : 0;
    if (n == 0 || B < 1) return PPD_OK;
    int64_t *v = malloc(sizeof(int64_t) * 5 * (size_t)n);
    if (!v)
        return ppd_fail(PPD_ERR_NOMEM, "loader: out of memory for the sizes of %lld complexes",
                        (long long)n);
    const complex_sizes *z = (const complex_sizes *)ids->sizes.data;
    for (int64_t i = 0; i < n; i++) {
        v[i] = z[i].nr, v[n + i] = z[i].nl, v[2 * n + i] = z[i].er, v[3 * n + i] = z[i].el;
        v[4 * n + i] = (int64_t)z[i].nr * z[i].nl;
    }
    out->Nr = sum_of_largest(v, n, B);
    out->Nl = sum_of_largest(v + n, n, B);
    out->Er = sum_of_largest(v + 2 * n, n, B);
    out->El = sum_of_largest(v + 3 * n, n, B);
    out->Ec = sum_of_largest(v + 4 * n, n, B);
    free(v);
    return PPD_OK;
}

ppd_status ppd_loader_load(ppd_loader *l, const char *split, const int64_t *idx, int n,
                           ppd_arena *a, ppd_train_batch *out) {
    memset(out, 0, sizeof *out);
    const id_list *ids = find_split(l, split);
    if (!ids) return ppd_fail(PPD_ERR_USAGE, "loader: unknown split \"%s\"", split);
    /* pass 1: sizes */
    int64_t Nr = 0, Nl = 0, Er = 0, El = 0;
    for (int i = 0; i < n; i++) {
        const char *id = ppd_loader_id(l, split, idx[i]);
        ppd_rec_view v;
        ppd_graph g;
        if (!id || ppd_cache_reader_get(l->graphs, id, &v) ||
            ppd_graph_decode_copy(&v, &l->gcopy, &g))
            continue; /* reported in pass 2 */
        ppd_cache_release(v.value, v.len);
        Nr += g.rec.n, Nl += g.lig.n, Er += g.rec.n_edges, El += g.lig.n_edges;
    }
    int X = 1 + l->o.lm_dim;
#define GET(ptr, count)                                                                            \
    do {                                                                                           \
        void *p_;                                                                                  \
        PPD_TRY(                                                                                   \
            ppd_arena_alloc_st(a, sizeof(*(ptr)) * (size_t)((count) > 0 ? (count) : 1), 64, &p_)); \
        (ptr) = p_;                                                                                \
    } while (0)
    GET(out->rec_pos, 3 * Nr);
    GET(out->lig_pos, 3 * Nl);
    GET(out->rec_x, X * Nr);
    GET(out->lig_x, X * Nl);
    GET(out->rec_batch, Nr);
    GET(out->lig_batch, Nl);
    GET(out->rec_src, Er);
    GET(out->rec_dst, Er);
    GET(out->lig_src, El);
    GET(out->lig_dst, El);
    GET(out->rec_start, n + 1);
    GET(out->lig_start, n + 1);
    GET(out->rec_estart, n + 1);
    GET(out->lig_estart, n + 1);
    GET(out->ids, n);
#undef GET
    /* pass 2: fill; a complex that fails is skipped and its rows are reused */
    int B = 0;
    int64_t nr = 0, nl = 0, er = 0, el = 0;
    for (int i = 0; i < n; i++) {
        const char *id = ppd_loader_id(l, split, idx[i]);
        ppd_rec_view v;
        ppd_graph g;
        ppd_status st = id ? ppd_cache_reader_get(l->graphs, id, &v) : PPD_ERR_NOTFOUND;
        if (!st) st = ppd_graph_decode_copy(&v, &l->gcopy, &g);
        if (!st) ppd_cache_release(v.value, v.len);
        if (!st && (nr + g.rec.n > Nr || nl + g.lig.n > Nl))
            st = ppd_fail(PPD_ERR_INTERNAL, "complex %s changed while loading", id);
        if (!st) st = side_features(l, id, "receptor", &g.rec, out->rec_x + nr * X);
        if (!st) st = side_features(l, id, "ligand", &g.lig, out->lig_x + nl * X);
        if (st) {
            ppd_warn("%s: complex %s skipped: %s", l->o.graphs, id ? id : "?", ppd_errmsg());
            out->skipped++;
            continue;
        }
        out->rec_start[B] = nr;
        out->lig_start[B] = nl;
        out->rec_estart[B] = er;
        out->lig_estart[B] = el;
        out->ids[B] = id;
        memcpy(out->rec_pos + 3 * nr, g.rec.pos, sizeof(float) * 3 * (size_t)g.rec.n);
        memcpy(out->lig_pos + 3 * nl, g.lig.pos, sizeof(float) * 3 * (size_t)g.lig.n);
        for (int32_t k = 0; k < g.rec.n; k++) out->rec_batch[nr + k] = B;
        for (int32_t k = 0; k < g.lig.n; k++) out->lig_batch[nl + k] = B;
        for (int64_t e = 0; e < g.rec.n_edges; e++) {
            out->rec_src[er + e] = nr + g.rec.src[e];
            out->rec_dst[er + e] = nr + g.rec.dst[e];
        }
        for (int64_t e = 0; e < g.lig.n_edges; e++) {
            out->lig_src[el + e] = nl + g.lig.src[e];
            out->lig_dst[el + e] = nl + g.lig.dst[e];
        }
        nr += g.rec.n, nl += g.lig.n, er += g.rec.n_edges, el += g.lig.n_edges;
        B++;
    }
    out->rec_start[B] = nr;
    out->lig_start[B] = nl;
    out->rec_estart[B] = er;
    out->lig_estart[B] = el;
    out->B = B;

    out->Nr = nr, out->Nl = nl, out->Er = er, out->El = el;
    return PPD_OK;
}
