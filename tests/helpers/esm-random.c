/* esm-random — an ESM cache of random embeddings for every chain of a graph cache, in exactly
 * the layout esm-embed writes (ppdock/esm_record.h), for scale tests and benchmarks of `train`
 * that need 1280-wide features but not ESM-2 itself.
 *
 *   esm-random GRAPHS OUT WIDTH [SEED]
 *
 * Each unique sequence gets float16 values uniform in (-0.9, 0.9) from a stream seeded by
 * (SEED, the record key), so the same sequence gets the same embedding in any run. (-0.9, 0.9)
 * keeps feature 0 a valid embedding index for DiffDock-PP's model (spec §3.2). The model
 * identity is a fixed made-up value, so these caches never pass for real ESM-2 output.
 * Exit 0 on success, 2 on bad arguments, 3 on a cache error.
 */
#include "ppdock/cache.h"
#include "ppdock/esm_record.h"
#include "ppdock/fsutil.h"
#include "ppdock/graph.h"
#include "ppdock/hash.h"
#include "ppdock/rng.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { IDENTITY = 0x52414e444f4d4553ull }; /* "RANDOMES" */

static ppd_status side(ppd_cache_writer *w, const ppd_graph_side *g, int width, uint64_t seed,
                       ppd_buf *rec, float **emb, size_t *cap, int64_t *written) {
    char key[PPD_ESM_KEY_LEN + 1];
    ppd_esm_record_key(IDENTITY, "whole", g->tokens, (size_t)g->n, key);
    ppd_index_entry e;
    int found = 0;
    PPD_TRY(ppd_cache_writer_lookup(w, key, &e, &found));
    if (found) return PPD_OK; /* a chain seen before (committed) */
    size_t need = (size_t)g->n * (size_t)width;
    if (need > *cap) {
        float *p = realloc(*emb, need * sizeof(float));
        if (!p) return ppd_fail(PPD_ERR_NOMEM, "esm-random: out of memory");
        *emb = p, *cap = need;
    }
    ppd_rng r;
    ppd_rng_seed(&r, seed ^ strtoull(key, NULL, 16));
    for (size_t i = 0; i < need; i++) (*emb)[i] = (float)(1.8 * ppd_rng_uniform(&r) - 0.9);
    rec->len = 0;
    PPD_TRY(ppd_esm_record_build(key, *emb, g->tokens, g->n, width, 1, IDENTITY, -1, rec));
    PPD_TRY(ppd_cache_writer_put(w, key, rec->data, rec->len, 0, ppd_cache_writer_params_hash(w)));
    PPD_TRY(ppd_cache_writer_commit(w)); /* so that lookup sees it for the next chain */
    (*written)++;
    return PPD_OK;
}

int main(int argc, char **argv) {
    if (argc < 4 || atoi(argv[3]) < 1) {
        fprintf(stderr, "usage: esm-random GRAPHS OUT WIDTH [SEED]\n");
        return 2;
    }
    int width = atoi(argv[3]);
    uint64_t seed = argc > 4 ? strtoull(argv[4], NULL, 10) : 0;
    char params[256];
    snprintf(params, sizeof params,
             "esm.format=1\nesm.model=%016llx\nesm.policy=whole\nesm.layer=-1\nesm.dtype=f16\n"
             "esm.width=%d\n",
             (unsigned long long)IDENTITY, width);
    ppd_cache_reader *g = NULL;
    ppd_cache_writer *w = NULL;
    ppd_cache_cursor *cur = NULL;
    ppd_cache_writer_opts wo = {
        .record_type = PPD_REC_ESM, .producer = "esm-random", .params = params};
    ppd_status st = ppd_cache_reader_open(argv[1], &g);
    if (!st) st = ppd_cache_writer_open(argv[2], &wo, &w);
    if (!st) st = ppd_cache_reader_cursor(g, &cur);
    ppd_buf copy = {0}, rec = {0};
    float *emb = NULL;
    size_t cap = 0;
    int64_t complexes = 0, written = 0;
    char key[PPD_CACHE_MAX_KEY + 1];
    while (!st) {
        ppd_rec_view v;
        int done = 0;
        st = ppd_cache_cursor_next(cur, key, &v, &done);
        if (st || done) break;
        ppd_graph gr;
        st = ppd_graph_decode_copy(&v, &copy, &gr);
        if (!st) st = side(w, &gr.rec, width, seed, &rec, &emb, &cap, &written);
        if (!st) st = side(w, &gr.lig, width, seed, &rec, &emb, &cap, &written);
        complexes++;
    }
    if (cur) ppd_cache_cursor_close(cur);
    if (!st) st = ppd_cache_writer_seal(w);
    if (w) ppd_cache_writer_close(w);
    if (g) ppd_cache_reader_close(g);
    ppd_buf_free(&copy);
    ppd_buf_free(&rec);
    free(emb);
    if (st) {
        fprintf(stderr, "esm-random: %s\n", ppd_errmsg());
        return 3;
    }
    fprintf(stderr, "esm-random: %lld complexes, %lld embeddings of width %d -> %s\n",
            (long long)complexes, (long long)written, width, argv[2]);
    return 0;
}
