/* Synthetic graph records and caches for the unit tests (fake_cache.h). */
#include "fake_cache.h"

#include "ppdock/arena.h"
#include "ppdock/cache.h"
#include "ppdock/graph.h"
#include "ppdock/hash.h"
#include "ppdock/rng.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

const char *const PPT_FAKE_PARAMS = "graph.format=1\ndata.knn_size=10\n";

/* A synthetic protein: n residues on a noisy helix, all alanine except every 7th 'X'. */
typedef struct {
    float pos[3 * 400];
    char seq[401];
    uint8_t tok[400];
    char resname[400][4];
    int32_t resnum[400], model[400];
    char icode[400], chain[400];
} fake_storage;

static void fake_protein(fake_storage *fs, ppd_protein *p, int n, uint64_t seed, float shift) {
    ppd_rng r;
    ppd_rng_seed(&r, seed);
    memset(p, 0, sizeof *p);
    for (int i = 0; i < n; i++) {
        fs->pos[3 * i] = 2.3f * cosf(1.7f * (float)i) + (float)ppd_rng_normal(&r) + shift;
        fs->pos[3 * i + 1] = 2.3f * sinf(1.7f * (float)i) + (float)ppd_rng_normal(&r);
        fs->pos[3 * i + 2] = 1.5f * (float)i;
        int odd = i % 7 == 3;
        fs->seq[i] = odd ? 'X' : 'A';
        fs->tok[i] = odd ? 3 : 5;
        snprintf(fs->resname[i], 4, "%s", odd ? "MSE" : "ALA");
        fs->resnum[i] = i + 1;
        fs->icode[i] = ' ';
        fs->chain[i] = 'A';
        fs->model[i] = 0;
    }
    fs->seq[n] = 0;
    p->n = n;
    p->pos = fs->pos;
    p->seq = fs->seq;
    p->tokens = fs->tok;
    p->resname = fs->resname;
    p->resnum = fs->resnum;
    p->icode = fs->icode;
    p->chain = fs->chain;
    p->model = fs->model;
    p->n_models = 1;
}

ppd_status ppt_fake_graph_record(const char *key, int nr, int nl, uint64_t seed, ppd_buf *out) {
    static fake_storage a, b;
    ppd_protein rec, lig;
    fake_protein(&a, &rec, nr, seed, 0);
    fake_protein(&b, &lig, nl, seed + 1, 20);
    ppd_arena ar;
    ppd_arena_init(&ar, 0, 1);
    uint64_t ph = ppd_hash64(PPT_FAKE_PARAMS, strlen(PPT_FAKE_PARAMS));
    ppd_status st = ppd_graph_build_record(key, "train", &rec, &lig, 10, seed * 7, ph, &ar, out);
    ppd_arena_free(&ar);
    return st;
}

ppd_status ppt_fake_graph_cache(const char *dir, int n, size_t batch_bytes, size_t map_bytes) {
    ppd_cache_writer_opts o = {.record_type = PPD_REC_GRAPH,
                               .producer = "test",
                               .params = PPT_FAKE_PARAMS,
                               .batch_bytes = batch_bytes,
                               .map_bytes = map_bytes};
    ppd_cache_writer *w;
    PPD_TRY(ppd_cache_writer_open(dir, &o, &w));
    ppd_buf v = {0};
    ppd_status st = PPD_OK;
    for (int i = 0; i < n && !st; i++) {
        char key[16];
        snprintf(key, sizeof key, "C%03d", i);
        st = ppt_fake_graph_record(key, 30 + i % 50, 12 + i % 9, (uint64_t)i, &v);
        if (!st)
            st = ppd_cache_writer_put(w, key, v.data, v.len, (uint64_t)i * 7,
                                      ppd_cache_writer_params_hash(w));
    }
    if (!st) st = ppd_cache_writer_seal(w);
    ppd_cache_writer_close(w);
    ppd_buf_free(&v);
    return st;
}
