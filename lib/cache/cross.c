/* Cross-cache check: graph cache x ESM cache (see ppdock/check.h). */
#include "ppdock/cache.h"
#include "ppdock/check.h"
#include "ppdock/esm_record.h"
#include "ppdock/graph.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *dir;
    const ppd_check_opts *o;
    ppd_check_summary *s;
    ppd_cache_reader *esm;
    uint64_t model;
    char policy[128];
    int width;
    ppd_buf copy;
} cross;

static void report(cross *x, const char *key, const char *check, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void report(cross *x, const char *key, const char *check, const char *fmt, ...) {
    char detail[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    x->s->problems++;
    if (!strcmp(check, "missing-embedding"))
        x->s->missing++;
    else
        x->s->unfixable++; /* a consistent pair of caches cannot produce these: rebuild */
    if (x->o && x->o->report) {
        ppd_problem p = {x->dir, key, check, detail, 0};
        x->o->report(&p, x->o->ctx);
    }
}

static void check_side(cross *x, const char *complex, const char *side, const ppd_graph_side *g) {
    char key[PPD_ESM_KEY_LEN + 1], name[PPD_CACHE_MAX_KEY + 16];
    snprintf(name, sizeof name, "%s:%s", complex, side);
    ppd_esm_record_key(x->model, x->policy, g->tokens, (size_t)g->n, key);
    ppd_rec_view v;
    ppd_status st = ppd_cache_reader_get(x->esm, key, &v);
    if (st == PPD_ERR_NOTFOUND) {
        report(x, name, "missing-embedding",
               "no embedding %s for this %d-residue sequence; run esm-embed -g", key, g->n);
        return;
    }
    if (st) return; /* damaged: reported by the ESM cache's own check */
    x->copy.len = 0;
    if (ppd_buf_append(&x->copy, v.value, v.len)) return;
    ppd_cache_release(v.value, v.len); /* copied: RSS bounded (ppdock/cache.h) */
    v.value = x->copy.data;
    ppd_esm_embedding e;
    if (ppd_esm_record_decode(&v, &e)) return;
    if (e.n != g->n)
        report(x, name, "embedding-length", "embedding %s has %d rows, the graph %d residues", key,
               e.n, g->n);
    else if (memcmp(e.tokens, g->tokens, (size_t)g->n) != 0)
        report(x, name, "embedding-tokens",
               "embedding %s holds other tokens than the graph's sequence", key);
    else if (x->width && e.d != x->width)
        report(x, name, "embedding-width", "embedding %s is %d wide, the cache's width is %d", key,
               e.d, x->width);
}

ppd_status ppd_cache_cross_check(const char *graphs, const char *esm, const ppd_check_opts *o,
                                 ppd_check_summary *s) {
    memset(s, 0, sizeof *s);
    snprintf(s->record_type, sizeof s->record_type, "graph+esm");
    cross x = {.dir = graphs, .o = o, .s = s};
    ppd_cache_reader *g = NULL;
    ppd_cache_cursor *cur = NULL;
    ppd_buf params = {0}, gcopy = {0};
    ppd_status st = ppd_cache_reader_open(graphs, &g);
    if (!st) st = ppd_cache_reader_open(esm, &x.esm);
    if (!st && ppd_cache_reader_record_type(g) != PPD_REC_GRAPH)
        st = ppd_fail(PPD_ERR_USAGE, "%s is not a graph cache", graphs);
    if (!st && ppd_cache_reader_record_type(x.esm) != PPD_REC_ESM)
        st = ppd_fail(PPD_ERR_USAGE, "%s is not an ESM cache", esm);
    char model[32] = "", width[16] = "";
    if (!st) st = ppd_cache_reader_meta(x.esm, "params", &params);
    if (!st &&
        (!ppd_cache_param((const char *)params.data, "esm.model", model, sizeof model) ||
         !ppd_cache_param((const char *)params.data, "esm.policy", x.policy, sizeof x.policy)))
        st = ppd_fail(PPD_ERR_CORRUPT, "%s: meta params lack esm.model / esm.policy", esm);
    if (!st) {
        x.model = strtoull(model, NULL, 16);
        if (ppd_cache_param((const char *)params.data, "esm.width", width, sizeof width))
            x.width = atoi(width);
        s->sealed = ppd_cache_reader_sealed(g) && ppd_cache_reader_sealed(x.esm);
        st = ppd_cache_reader_cursor(g, &cur);
    }
    char key[PPD_CACHE_MAX_KEY + 1];
    int done = 0;
    while (!st && !done) {
        ppd_rec_view v;
        ppd_status r = ppd_cache_cursor_next(cur, key, &v, &done);
        if (r == PPD_ERR_CORRUPT && key[0]) continue; /* the graph cache's own check reports it */
        if (r) {
            st = r;
            break;
        }
        if (done) break;
        s->records++;
        ppd_graph gr;
        if (ppd_graph_decode_copy(&v, &gcopy, &gr) != PPD_OK) continue;
        uint64_t before = s->problems;
        check_side(&x, key, "receptor", &gr.rec);
        check_side(&x, key, "ligand", &gr.lig);
        if (s->problems == before) s->records_ok++;
    }
    ppd_cache_cursor_close(cur);
    ppd_cache_reader_close(g);
    ppd_cache_reader_close(x.esm);
    ppd_buf_free(&params);
    ppd_buf_free(&gcopy);
    ppd_buf_free(&x.copy);
    return st;
}
