/* esm-embed — ESM-2 per-residue embeddings into an LMDB record cache.
 *
 * Reads sequences from graph caches (-g, every receptor and ligand) and/or FASTA files
 * (--fasta), embeds each UNIQUE sequence once with ESM-2 (weights from --weights, or
 * --random-init for tests and benchmarks), and writes one record per sequence, keyed by the
 * digest of model identity + long-sequence policy + tokens (ppdock/esm_record.h). Batches are
 * planned from a memory budget (ppdock/esm.h). Incremental and resumable: sequences already in
 * the cache with the same parameters are not embedded again. Manual: docs/esm-embed.md.
 */
#include "ppdock/blas.h"
#include "ppdock/cache.h"
#include "ppdock/cache_queue.h"
#include "ppdock/cli.h"
#include "ppdock/config.h"
#include "ppdock/dataset.h"
#include "ppdock/esm.h"
#include "ppdock/esm_record.h"
#include "ppdock/fasta.h"
#include "ppdock/graph.h"
#include "ppdock/hash.h"
#include "ppdock/index_set.h"
#include "ppdock/log.h"
#include "ppdock/npy.h"
#include "ppdock/progress.h"
#include "ppdock/tool.h"

#include <getopt.h>
#include <unistd.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef PPD_HAVE_CUDA
#include "ppdock/esm_cuda.h"
#endif

static void usage(FILE *f) {
    fputs("usage: esm-embed [options] (-g GRAPHS | --fasta FILE)... [-o DIR]\n"
          "\n"
          "Embed every unique sequence of graph caches (receptor and ligand chains) and/or FASTA\n"
          "files with ESM-2, into the LMDB cache DIR (default: esm). One record per unique "
          "sequence.\n"
          "\n"
          "  -g, --graphs DIR      a graph cache made by graph-build; repeatable\n"
          "      --fasta FILE      a FASTA file (.gz ok); repeatable\n"
          "  -o, --output DIR      output cache (default: esm)\n"
          "      --weights PATH    ESM-2 weights: model.safetensors (HF) or a fair-esm .pt "
          "(esm.weights)\n"
          "      --random-init L,d,H  deterministic random weights of that shape instead (tests,\n"
          "                        benchmarks; docs/esm-random-weights.md), e.g. 33,1280,20\n"
          "      --seed N          seed for --random-init (default 0)\n"
          "      --layer N         layer to store, -1 = last (esm.layer)\n"
          "      --dtype f16|f32   storage type (esm.dtype, default f16)\n"
          "      --long POLICY     whole | window | truncate | error (esm.long_policy)\n"
          "      --max-length N    window size / truncation length / limit (esm.max_length)\n"
          "      --overlap N       window overlap (esm.overlap)\n"
          "      --unknown P       x | unk | error: FASTA letters outside ESM's alphabet "
          "(esm.unknown)\n"
          "      --mem-gb X        host memory budget for the planner (esm.mem_gb)\n"
          "      --device D        auto | cpu | cuda (device.engine; auto: the GPU when there is "
          "one)\n"
          "      --gpu N           CUDA device ordinal (device.index)\n"
          "      --precision P     fp32 | tf32 | bf16: GPU projections (device.precision)\n"
          "      --device-mem-gb X device memory budget (device.budget_gb; 0: 95% of free)\n"
          "      --export DIR      also write each input's embedding as DIR/NAME.npy (float32;\n"
          "                        NAME: the FASTA name, or ID_r / ID_l for a graph cache)\n"
          "  -c, --config FILE     YAML config; repeatable\n"
          "      --set KEY=VALUE   override a setting; repeatable\n"
          "  -j, --jobs N          threads (default: all CPUs)\n"
          "      --json            one JSON summary object on stdout\n"
          "      --print-config    print every setting with its value and origin, then exit\n"
          "  -q, --quiet           warnings and errors only\n"
          "  -v, --verbose         print the batch plan (batches, padding waste, predicted peak)\n"
          "      --blas-coretype   print the OPENBLAS_CORETYPE esm-embed runs with, then exit\n"
          "  -h, --help, --version\n"
          "\n"
          "SIGTERM, SIGINT or SIGUSR1 stop the run after the sequence in progress, with every\n"
          "sequence embedded so far committed (the cache unsealed: rerun to embed the rest).\n"
          "\n"
          "Exit status: 0 all embedded or already cached, 1 some sequences were refused (policy\n"
          "error, unknown letters with --unknown error) or the run was stopped by a signal,\n"
          "2 usage or config error, 3 I/O or memory.\n",
          f);
}

/* ---- inputs: every named sequence, and the unique ones ----------------------------------------
 */

typedef struct {
    size_t name;   /* offset in names */
    size_t tokens; /* offset in toks */
    int n;
    int unique; /* index into the unique list */
} input;

typedef struct {
    char key[PPD_ESM_KEY_LEN + 1];
    size_t tokens;
    int n;
} unique_seq;

typedef struct {
    ppd_buf names, toks;
    input *in;
    size_t n_in, cap_in;
    unique_seq *uq;
    size_t n_uq, cap_uq;
    ppd_index_set uq_set; /* the unique sequences, by record key */
    uint64_t model;
    const char *policy;
    ppd_esm_unknown_policy unknown;
    uint64_t unknown_letters, refused;
} inputs;

/* The record key of unique sequence i (the set's key). */
static const void *unique_key(const void *I, size_t i, size_t *len) {
    *len = PPD_ESM_KEY_LEN;
    return ((const inputs *)I)->uq[i].key;
}

static ppd_status add_unique(inputs *I, input *it) {
    char key[PPD_ESM_KEY_LEN + 1];
    const uint8_t *t = I->toks.data + it->tokens;
    ppd_esm_record_key(I->model, I->policy, t, (size_t)it->n, key);
    size_t *slot;
    PPD_TRY(ppd_index_set_find(&I->uq_set, key, PPD_ESM_KEY_LEN, &slot));
    if (*slot) {
        it->unique = (int)(*slot - 1);
        return PPD_OK;
    }
    if (I->n_uq == I->cap_uq) {
        size_t nc = I->cap_uq ? I->cap_uq * 2 : 1024;
        unique_seq *u = realloc(I->uq, nc * sizeof *u);
        if (!u) return ppd_fail(PPD_ERR_NOMEM, "out of memory");
        I->uq = u;
        I->cap_uq = nc;
    }
    unique_seq *u = &I->uq[I->n_uq];
    memcpy(u->key, key, sizeof key);
    u->tokens = it->tokens;
    u->n = it->n;
    ppd_index_set_put(&I->uq_set, slot, I->n_uq);
    it->unique = (int)I->n_uq++;
    return PPD_OK;
}

static ppd_status add_input(inputs *I, const char *name, const uint8_t *tokens, int n) {
    if (I->n_in == I->cap_in) {
        size_t nc = I->cap_in ? I->cap_in * 2 : 1024;
        input *p = realloc(I->in, nc * sizeof *p);
        if (!p) return ppd_fail(PPD_ERR_NOMEM, "out of memory");
        I->in = p;
        I->cap_in = nc;
    }
    input *it = &I->in[I->n_in];
    it->name = I->names.len;
    it->tokens = I->toks.len;
    it->n = n;
    PPD_TRY(ppd_buf_append(&I->names, name, strlen(name) + 1));
    PPD_TRY(ppd_buf_append(&I->toks, tokens, (size_t)n));
    PPD_TRY(add_unique(I, it));
    I->n_in++;
    return PPD_OK;
}

static ppd_status read_graphs(inputs *I, const char *dir) {
    ppd_cache_reader *r;
    PPD_TRY(ppd_cache_reader_open(dir, &r));
    ppd_cache_cursor *cur = NULL;
    ppd_buf copy = {0};
    ppd_status st =
        ppd_cache_reader_record_type(r) == PPD_REC_GRAPH
            ? PPD_OK
            : ppd_fail(PPD_ERR_USAGE, "%s is not a graph cache (made by graph-build)", dir);
    if (!st && !ppd_cache_reader_sealed(r))
        ppd_warn("%s is not sealed (graph-build did not finish): embedding the records it has",
                 dir);
    if (!st) st = ppd_cache_reader_cursor(r, &cur);
    char key[PPD_CACHE_MAX_KEY + 1], name[PPD_CACHE_MAX_KEY + 8];
    int done = 0;
    while (!st && !done) {
        ppd_rec_view v;
        ppd_status s = ppd_cache_cursor_next(cur, key, &v, &done);
        if (s == PPD_ERR_CORRUPT && key[0]) { /* one bad record: cache-check names it */
            ppd_warn("%s (skipped; run cache-check --repair %s)", ppd_errmsg(), dir);
            continue;
        }
        if (s || done) {
            st = s;
            break;
        }
        ppd_graph g;
        if (ppd_graph_decode_copy(&v, &copy, &g) != PPD_OK) {
            ppd_warn("%s: record %s: %s (skipped)", dir, key, ppd_errmsg());
            continue;
        }
        const ppd_graph_side *sides[2] = {&g.rec, &g.lig};
        for (int k = 0; k < 2 && !st; k++) {
            snprintf(name, sizeof name, "%s_%c", key, k ? 'l' : 'r');
            st = ppd_esm_check_tokens(sides[k]->tokens, (size_t)sides[k]->n);
            if (!st) st = add_input(I, name, sides[k]->tokens, sides[k]->n);
        }
    }
    ppd_cache_cursor_close(cur);
    ppd_cache_reader_close(r);
    ppd_buf_free(&copy);
    return st;
}

typedef struct {
    inputs *I;
    const char *path;
    ppd_buf tok;
} fasta_ctx;

static ppd_status on_fasta(void *ctx, const char *name, const char *seq, size_t len, int line) {
    fasta_ctx *f = ctx;
    if (len == 0) {
        ppd_warn("%s:%d: '%s' has an empty sequence (skipped)", f->path, line, name);
        f->I->refused++;
        return PPD_OK;
    }
    if (len > INT32_MAX / 2)
        return ppd_fail(PPD_ERR_FORMAT, "%s:%d: '%s' is too long", f->path, line, name);
    PPD_TRY(ppd_buf_reserve(&f->tok, len));
    size_t unknown = 0;
    if (ppd_esm_tokenize(seq, len, f->I->unknown, f->tok.data, &unknown) != PPD_OK) {
        ppd_error("%s:%d: '%s': %s (skipped)", f->path, line, name, ppd_errmsg());
        f->I->refused++;
        return PPD_OK;
    }
    if (unknown) {
        ppd_warn("%s:%d: '%s': %zu letter%s outside ESM's alphabet mapped to %s", f->path, line,
                 name, unknown, unknown == 1 ? "" : "s",
                 f->I->unknown == PPD_ESM_UNKNOWN_AS_X ? "X" : "<unk>");
        f->I->unknown_letters += unknown;
    }
    return add_input(f->I, name, f->tok.data, (int)len);
}

static void inputs_free(inputs *I) {
    ppd_buf_free(&I->names);
    ppd_buf_free(&I->toks);
    free(I->in);
    free(I->uq);
    ppd_index_set_free(&I->uq_set);
}

/* ---- the run -----------------------------------------------------------------------------------
 */

typedef struct {
    const char *out_dir, *weights, *random_shape, *export_dir;
    const char **graphs, **fastas;
    int n_graphs, n_fastas;
    uint64_t seed;
    int jobs, json;
} options;

typedef struct {
    ppd_cache_queue *q; /* the writer's puts, on their own thread */
    uint64_t params_hash;
    inputs *I;
    int *pending_idx; /* plan sequence -> unique index */
    uint64_t model;
    int layer, half;
    ppd_buf value;
    ppd_progress *bar;
    uint64_t embedded, residues;
    const volatile sig_atomic_t *stop; /* set by a signal: the run stops after this sequence */
} sink_ctx;

static ppd_status sink(void *ctx, int seq, const float *emb, int n, int d) {
    sink_ctx *s = ctx;
    unique_seq *u = &s->I->uq[s->pending_idx[seq]];
    const uint8_t *t = s->I->toks.data + u->tokens;
    PPD_TRY(ppd_esm_record_build(u->key, emb, t, n, d, s->half, s->model, s->layer, &s->value));
    PPD_TRY(
        ppd_cache_queue_push(s->q, u->key, &s->value, ppd_hash64(t, (size_t)n), s->params_hash));
    s->embedded++;
    s->residues += (uint64_t)n;
    ppd_progress_add(s->bar, (uint64_t)u->n);
    return *s->stop ? ppd_fail(PPD_ERR_STOPPED, "stopped by a signal") : PPD_OK;
}

static ppd_status parse_long(const char *s, ppd_esm_long_policy *p) {
    if (!strcmp(s, "whole"))
        *p = PPD_ESM_LONG_WHOLE;
    else if (!strcmp(s, "window"))
        *p = PPD_ESM_LONG_WINDOW;
    else if (!strcmp(s, "truncate"))
        *p = PPD_ESM_LONG_TRUNCATE;
    else if (!strcmp(s, "error"))
        *p = PPD_ESM_LONG_ERROR;
    else
        return ppd_fail(PPD_ERR_CONFIG,
                        "long-sequence policy '%s': use whole, window, truncate or error", s);
    return PPD_OK;
}

static ppd_status parse_unknown(const char *s, ppd_esm_unknown_policy *p) {
    if (!strcmp(s, "x"))
        *p = PPD_ESM_UNKNOWN_AS_X;
    else if (!strcmp(s, "unk"))
        *p = PPD_ESM_UNKNOWN_AS_UNK;
    else if (!strcmp(s, "error"))
        *p = PPD_ESM_UNKNOWN_ERROR;
    else
        return ppd_fail(PPD_ERR_CONFIG, "esm.unknown '%s': use x, unk or error", s);
    return PPD_OK;
}

/* DIR/NAME.npy for an input name: '/', '\\', '%' and control bytes percent-encoded ("a/b" ->
 * a%2Fb.npy), "." and ".." as %2E and %2E%2E, so that distinct names never share a file. */
static void export_path(const char *dir, const char *name, char *path, size_t cap) {
    char safe[3 * PPD_CACHE_MAX_KEY + 8];
    size_t k = 0;
    int dots = !strcmp(name, ".") || !strcmp(name, "..");
    for (const char *c = name; *c && k + 4 < sizeof safe; c++) {
        unsigned char b = (unsigned char)*c;
        if (b == '/' || b == '\\' || b == '%' || b < 32 || b == 127 || (dots && b == '.'))
            k += (size_t)snprintf(safe + k, sizeof safe - k, "%%%02X", b);
        else
            safe[k++] = (char)b;
    }
    safe[k] = 0;
    snprintf(path, cap, "%s/%s.npy", dir, safe);
}

static ppd_status export_one(const char *path, const ppd_esm_embedding *e, float *row_buf) {
    for (int32_t i = 0; i < e->n; i++)
        ppd_esm_embedding_row(e, i, row_buf + (size_t)i * (size_t)e->d);
    int64_t shape[2] = {e->n, e->d};
    return ppd_npy_write_f32(path, row_buf, 2, shape);
}

/* The name of input i (the export set's key). */
static const void *input_name(const void *I, size_t i, size_t *len) {
    const inputs *in = I;
    const char *name = (const char *)in->names.data + in->in[i].name;
    *len = strlen(name);
    return name;
}

/* Whether input i's name was exported before in this run (a set of input indices by name);
 * warns when the earlier input has another sequence (its file is overwritten). */
static ppd_status export_seen(const inputs *I, ppd_index_set *seen, size_t i, int *done) {
    size_t len, *slot;
    const char *name = input_name(I, i, &len);
    PPD_TRY(ppd_index_set_find(seen, name, len, &slot));
    *done = *slot && I->in[*slot - 1].unique == I->in[i].unique; /* the same embedding: written */
    if (*slot && !*done)
        ppd_warn("two inputs are named '%s' and have different sequences: its export holds the "
                 "later one",
                 name);
    if (!*done) ppd_index_set_put(seen, slot, i);
    return PPD_OK;
}

static ppd_status export_all(const options *o, inputs *I) {
    PPD_TRY(ppd_mkdir_p(o->export_dir));
    ppd_cache_reader *r;
    PPD_TRY(ppd_cache_reader_open(o->out_dir, &r));
    ppd_buf copy = {0}, rows = {0};
    ppd_status st = PPD_OK;
    uint64_t written = 0;
    ppd_index_set seen;
    ppd_index_set_init(&seen, input_name, I);
    for (size_t i = 0; i < I->n_in && !st; i++) {
        int done;
        st = export_seen(I, &seen, i, &done);
        if (st) break;
        if (done) continue;
        unique_seq *u = &I->uq[I->in[i].unique];
        ppd_rec_view v;
        ppd_status g = ppd_cache_reader_get(r, u->key, &v);
        if (g == PPD_ERR_NOTFOUND) continue; /* refused: reported already */
        if (g) {
            st = g;
            break;
        }
        copy.len = 0;
        st = ppd_buf_append(&copy, v.value, v.len);
        v.value = copy.data;
        ppd_esm_embedding e;
        if (!st) st = ppd_esm_record_decode(&v, &e);
        if (!st) st = ppd_buf_reserve(&rows, (size_t)e.n * (size_t)e.d * sizeof(float));
        char path[PATH_MAX];
        export_path(o->export_dir, (const char *)I->names.data + I->in[i].name, path, sizeof path);
        if (!st) st = export_one(path, &e, (float *)rows.data);
        written += !st;
    }
    ppd_index_set_free(&seen);
    ppd_cache_reader_close(r);
    ppd_buf_free(&copy);
    ppd_buf_free(&rows);
    if (!st) ppd_info("exported %llu embeddings to %s", (unsigned long long)written, o->export_dir);
    return st;
}

typedef struct {
    uint64_t inputs, unique, cached, embedded, residues, refused, unknown;
    uint64_t pending; /* sequences this run had to embed */
    int stopped;      /* by a signal: what was embedded is committed, the cache unsealed */
    double load_s, embed_s;
    size_t predicted_peak;
    int cuda;                           /* the engine that ran: 1 the GPU */
    size_t device_planned, device_used; /* device arena: planned bytes, high-water mark */
    size_t device_measured;             /* what the driver counted for the arena */
    size_t device_runtime; /* and for the stream and cuBLAS handle (outside the plan) */
    double device_setup_s, device_loop_s, sink_s; /* where embed_s went on the GPU */
    double put_s; /* the cache queue thread's time in puts (beside the loop) */
    char device_name[256];
} stats;

/* device.engine: "cpu", "cuda", or "auto" (cuda when this build has CUDA and a GPU is visible). */
static ppd_status inputs_meta(ppd_cache_writer *w, const options *o, ppd_esm_unknown_policy unk) {
    ppd_buf in = {0};
    ppd_status st = ppd_cache_writer_get_meta(w, "inputs", &in);
    if (st == PPD_ERR_NOTFOUND) st = PPD_OK;
    char abs[PATH_MAX], line[PATH_MAX + 64];
    static const char *const unk_names[] = {"x", "unk", "error"};
    for (int i = 0; !st && i < o->n_graphs; i++) {
        st = ppd_path_absolute(o->graphs[i], abs, sizeof abs);
        snprintf(line, sizeof line, "graphs\t%s", abs);
        if (!st) st = ppd_inputs_merge(&in, line);
    }
    for (int i = 0; !st && i < o->n_fastas; i++) {
        st = ppd_path_absolute(o->fastas[i], abs, sizeof abs);
        snprintf(line, sizeof line, "fasta\t%s\t%s", abs, unk_names[unk]);
        if (!st) st = ppd_inputs_merge(&in, line);
    }
    if (!st) st = ppd_cache_writer_set_meta(w, "inputs", in.len ? (const char *)in.data : "");
    ppd_buf_free(&in);
    return st;
}

/* What esm-embed holds beyond the engine's plan and its own buffers, at most: LMDB's
 * write-transaction bookkeeping, libc arenas of the threads that built records. Measured: with
 * the 8M shape on all DB5.5 chains, peak RSS minus (plan + inputs + 2 x batch + records) was
 * 14-26 MB for cache.batch_mb 4 to 64; a run writing little gets about a quarter of what it
 * writes (single-chain runs: under 1 MB). */
#define ESM_EMBED_FIXED_BYTES ((size_t)20 << 20)

/* Records waiting for the cache writer's thread, at most. 4096 slots hold 2.2 MB; esm-embed's
 * batches are at most 16,384 tokens, so this is over 60 of the smallest batches (the byte bound,
 * cache.batch_mb, usually binds first). */
#define ESM_EMBED_QUEUE_RECORDS 4096

static ppd_status run(ppd_config *cfg, const options *o, stats *S) {
    ppd_esm_model m;
    memset(&m, 0, sizeof m);
    double t0 = ppd_now_seconds();
    const char *weights = o->weights ? o->weights : ppd_config_str(cfg, "esm.weights");
    ppd_status st;
    if (o->random_shape) {
        int L, d, H;
        st = ppd_esm_parse_shape(o->random_shape, &L, &d, &H);
        if (!st) st = ppd_esm_random_init(&m, L, d, H, o->seed);
    } else if (weights) {
        st = ppd_esm_load(&m, weights);
    } else {
        return ppd_fail(
            PPD_ERR_USAGE,
            "no ESM-2 weights: give --weights FILE (model.safetensors or a fair-esm .pt), "
            "set esm.weights, or --random-init L,d,H for random weights");
    }
    if (st) return st;
    S->load_s = ppd_now_seconds() - t0;
    ppd_debug("model: %d layers, d=%d, %d heads, identity %016llx (%.2f s)", m.cfg.n_layers,
              m.cfg.d, m.cfg.n_heads, (unsigned long long)m.identity, S->load_s);

    int layer = 0;
    ppd_esm_long_policy lp = PPD_ESM_LONG_WHOLE;
    ppd_esm_unknown_policy unk = PPD_ESM_UNKNOWN_AS_X;
    if (!st) st = ppd_esm_resolve_layer(&m.cfg, (int)ppd_config_int(cfg, "esm.layer"), &layer);
    if (!st) st = parse_long(ppd_config_str(cfg, "esm.long_policy"), &lp);
    if (!st) st = parse_unknown(ppd_config_str(cfg, "esm.unknown"), &unk);
    int maxlen = (int)ppd_config_int(cfg, "esm.max_length"),
        overlap = (int)ppd_config_int(cfg, "esm.overlap");
    if (!st && lp == PPD_ESM_LONG_WINDOW && overlap >= maxlen)
        st = ppd_fail(PPD_ERR_CONFIG, "esm.overlap (%d) must be smaller than esm.max_length (%d)",
                      overlap, maxlen);
    int half = !strcmp(ppd_config_str(cfg, "esm.dtype"), "f16");
    char policy[64];
    if (lp == PPD_ESM_LONG_WHOLE)
        snprintf(policy, sizeof policy, "whole");
    else if (lp == PPD_ESM_LONG_WINDOW)
        snprintf(policy, sizeof policy, "window:%d:%d", maxlen, overlap);
    else
        snprintf(policy, sizeof policy, "%s:%d", lp == PPD_ESM_LONG_TRUNCATE ? "truncate" : "error",
                 maxlen);

    /* inputs */
    inputs I = {.model = m.identity, .policy = policy, .unknown = unk};
    ppd_index_set_init(&I.uq_set, unique_key, &I);
    for (int i = 0; !st && i < o->n_graphs; i++) st = read_graphs(&I, o->graphs[i]);
    for (int i = 0; !st && i < o->n_fastas; i++) {
        fasta_ctx f = {.I = &I, .path = o->fastas[i]};
        st = ppd_fasta_read(o->fastas[i], on_fasta, &f);
        ppd_buf_free(&f.tok);
    }
    S->inputs = I.n_in;
    S->unique = I.n_uq;

    /* the cache: what is already there */
    ppd_buf params = {0};
    char producer[64];
    snprintf(producer, sizeof producer, "esm-embed %s", PPD_VERSION);
    if (!st)
        st = ppd_buf_printf(
            &params,
            "esm.format=1\nesm.model=%016llx\nesm.policy=%s\nesm.layer=%d\nesm.dtype=%s\n"
            "esm.width=%d\n",
            (unsigned long long)m.identity, policy, layer, half ? "f16" : "f32", m.cfg.d);
    ppd_cache_writer_opts wo = {.record_type = PPD_REC_ESM,
                                .producer = producer,
                                .params = (const char *)params.data,
                                .batch_bytes = (size_t)ppd_config_int(cfg, "cache.batch_mb") << 20,
                                .map_bytes = (size_t)ppd_config_int(cfg, "cache.map_mb") << 20};
    ppd_cache_writer *w = NULL;
    if (!st) st = ppd_cache_writer_open(o->out_dir, &wo, &w);
    int *pending_idx = NULL, *lens = NULL;
    const uint8_t **toks = NULL;
    int n_pending = 0;
    if (!st) {
        pending_idx = calloc(I.n_uq + 1, sizeof *pending_idx);
        lens = calloc(I.n_uq + 1, sizeof *lens);
        toks = calloc(I.n_uq + 1, sizeof *toks);
        if (!pending_idx || !lens || !toks)
            st = ppd_fail(PPD_ERR_NOMEM, "out of memory for %zu sequences", I.n_uq);
    }
    for (size_t i = 0; !st && i < I.n_uq; i++) {
        ppd_index_entry e;
        int found = 0, ok = 0;
        st = ppd_cache_writer_lookup(w, I.uq[i].key, &e, &found);
        if (!st && found && e.params_hash == ppd_cache_writer_params_hash(w))
            st = ppd_cache_writer_verify(w, I.uq[i].key, &e, &ok);
        if (st) break;
        if (ok) {
            S->cached++;
            continue;
        }
        if (found)
            ppd_debug("%s: stored record is stale or damaged; embedding it again", I.uq[i].key);
        pending_idx[n_pending] = (int)i;
        lens[n_pending] = I.uq[i].n;
        toks[n_pending] = I.toks.data + I.uq[i].tokens;
        n_pending++;
    }

    /* plan and run */
    ppd_esm_plan plan;
    memset(&plan, 0, sizeof plan);
    ppd_esm_plan_opts po = PPD_ESM_PLAN_OPTS_DEFAULT;
    /* The engine's plan covers the model, its workspace and fixed overheads; this tool adds what
     * it holds itself: the input sequences, the cache writer's batch in memory and LMDB's dirty
     * pages of the transaction being written (each up to cache.batch_mb), the records queued
     * for the writer's thread (up to cache.batch_mb and ESM_EMBED_QUEUE_RECORDS records, the
     * queue's ring of that many slots, and PPD_CACHE_QUEUE_SPARES + 2 records beside them:
     * ppdock/cache_queue.h), one record's float32 rows, and ESM_EMBED_FIXED_BYTES. */
    int longest = 0;
    size_t records = 0; /* bytes of all records this run writes */
    for (int i = 0; i < n_pending; i++) {
        if (lens[i] > longest) longest = lens[i];
        records += (size_t)lens[i] * (size_t)m.cfg.d * (half ? 2 : 4) + 1024;
    }
    size_t batch = wo.batch_bytes < records ? wo.batch_bytes : records;
    size_t queue_records =
        (size_t)n_pending < ESM_EMBED_QUEUE_RECORDS ? (size_t)n_pending : ESM_EMBED_QUEUE_RECORDS;
    if (queue_records == 0) queue_records = 1;
    size_t longest_record = (size_t)longest * (size_t)m.cfg.d * (half ? 2 : 4) + 1024;
    size_t fixed = records / 4 < ESM_EMBED_FIXED_BYTES ? records / 4 : ESM_EMBED_FIXED_BYTES;
    size_t tool_bytes = I.toks.cap + I.names.cap + I.cap_in * sizeof *I.in +
                        I.cap_uq * sizeof *I.uq + I.uq_set.cap * sizeof *I.uq_set.slots +
                        3 * batch + ppd_cache_queue_ring_bytes(queue_records) +
                        (PPD_CACHE_QUEUE_SPARES + 2) * longest_record +
                        (size_t)longest * (size_t)m.cfg.d * 4 + fixed;
    size_t budget = (size_t)(ppd_config_float(cfg, "esm.mem_gb") * (double)(1ull << 30));
    if (!st && n_pending && budget <= tool_bytes)
        st = ppd_fail(PPD_ERR_NOMEM,
                      "esm.mem_gb = %.2f GiB cannot even hold the inputs and the write batch "
                      "(%.1f MiB)",
                      (double)budget / (1u << 30), (double)tool_bytes / (1u << 20));
    po.memory_budget = budget - (budget > tool_bytes ? tool_bytes : 0);
    ppd_device_info info;
#ifdef PPD_HAVE_CUDA
    ppd_status (*select)(int, ppd_device_info *) = ppd_device_select;
#else
    ppd_status (*select)(int, ppd_device_info *) = NULL;
#endif
    if (!st)
        st = ppd_tool_pick_device("esm-embed", ppd_config_str(cfg, "device.engine"), select,
                                  (int)ppd_config_int(cfg, "device.index"), &info, &S->cuda);
#ifdef PPD_HAVE_CUDA
    ppd_cuda_esm_opts co = PPD_CUDA_ESM_OPTS_DEFAULT;
    co.device = (int)ppd_config_int(cfg, "device.index");
    if (!st) st = ppd_cuda_precision_parse(ppd_config_str(cfg, "device.precision"), &co.precision);
    if (!st && S->cuda && n_pending) { /* the device budget replaces the host one in the plan */
        double gb = ppd_config_float(cfg, "device.budget_gb");
        po.device = co.precision == PPD_CUDA_BF16 ? 2 : 1;
        po.memory_budget =
            gb > 0 ? (size_t)(gb * (double)(1ull << 30)) : (size_t)(0.95 * (double)info.free_bytes);
        if (!st) snprintf(S->device_name, sizeof S->device_name, "%s", info.name);
    }
#endif
    po.threads = o->jobs;
    po.long_policy = lp;
    po.long_limit = maxlen;
    po.overlap = overlap;
    if (!st && n_pending) st = ppd_esm_plan_make(&plan, &m.cfg, lens, n_pending, &po);
    /* the engine's host memory beside this tool's own: the CPU engine's plan, or on the GPU the
     * model's copy it uploads, the engine's pinned staging and tables, and the CUDA runtime (an
     * allowance); the host budget must hold them all */
    size_t engine_host = plan.peak_bytes;
#ifdef PPD_HAVE_CUDA
    if (!st && n_pending && S->cuda) {
        size_t host_model = m.n_params * sizeof(float);
        size_t engine = ppd_cuda_esm_host_bytes(&m.cfg, &plan);
        engine_host = host_model + engine + PPD_CUDA_HOST_RUNTIME_BYTES;
        size_t need = tool_bytes + engine_host;
        if (need > budget)
            st = ppd_fail(PPD_ERR_NOMEM,
                          "esm.mem_gb = %.2f GiB cannot hold the GPU run's host memory, %.1f MiB: "
                          "the model's host copy %.1f, pinned staging and tables %.1f, the CUDA "
                          "runtime %.1f (an allowance), the inputs and the write batches %.1f; "
                          "raise --mem-gb",
                          (double)budget / (1u << 30), (double)need / (1u << 20),
                          (double)host_model / (1u << 20), (double)engine / (1u << 20),
                          (double)PPD_CUDA_HOST_RUNTIME_BYTES / (1u << 20),
                          (double)tool_bytes / (1u << 20));
    }
#endif
    if (!st && n_pending) {
        S->predicted_peak = tool_bytes + engine_host;
        if (ppd_log_get_level() >= PPD_LOG_DEBUG) ppd_esm_plan_print(&plan, stderr);
        for (int i = 0; i < plan.n_rejected; i++) {
            unique_seq *u = &I.uq[pending_idx[plan.rejected[i]]];
            ppd_error("sequence %s (%d residues) is longer than esm.max_length=%d and "
                      "esm.long_policy=error (skipped)",
                      u->key, u->n, maxlen);
            I.refused++;
        }
        sink_ctx sc = {.params_hash = ppd_cache_writer_params_hash(w),
                       .I = &I,
                       .pending_idx = pending_idx,
                       .model = m.identity,
                       .layer = layer,
                       .half = half,
                       .stop = ppd_tool_catch_stop_signals()};
        uint64_t total = 0;
        for (int i = 0; i < n_pending; i++) total += (uint64_t)lens[i];
        sc.bar = ppd_progress_start("esm-embed residues", total);
        double t1 = ppd_now_seconds();
        st = ppd_cache_queue_start(w, batch, queue_records, &sc.q);
        if (!st) {
#ifdef PPD_HAVE_CUDA
            if (S->cuda) {
                ppd_cuda_esm_report rep;
                st = ppd_cuda_esm_run(&m, &plan, toks, layer, sink, &sc, &co, &rep);
                S->device_planned = rep.planned_bytes;
                S->device_used = rep.arena_high;
                S->device_measured = rep.measured_bytes;
                S->device_runtime = rep.runtime_bytes;
                S->device_setup_s = rep.setup_seconds;
                S->device_loop_s = rep.gpu_seconds;
                S->sink_s = rep.sink_seconds;
            } else
#endif
                st = ppd_esm_run(&m, &plan, toks, layer, sink, &sc);
        }
        if (sc.q) { /* the queued records go in even after an error, as direct puts would */
            ppd_status qst = ppd_cache_queue_finish(sc.q, &S->put_s);
            if (!st) st = qst;
        }
        S->embed_s = ppd_now_seconds() - t1;
        ppd_progress_finish(sc.bar);
        S->embedded = sc.embedded;
        S->residues = sc.residues;
        ppd_buf_free(&sc.value);
    }
    S->pending = (uint64_t)n_pending;
    if (st == PPD_ERR_STOPPED) { /* keep what was embedded; the cache is not complete: unsealed */
        S->stopped = 1;
        st = inputs_meta(w, o, unk);
        if (!st) st = ppd_cache_writer_commit(w);
    } else {
        if (!st) st = inputs_meta(w, o, unk);
        if (!st) st = ppd_cache_writer_seal(w); /* on an error the committed records stay */
    }
    ppd_cache_writer_close(w);
    S->refused = I.refused;
    S->unknown = I.unknown_letters;
    if (!st && o->export_dir && !S->stopped) st = export_all(o, &I);
    ppd_esm_plan_free(&plan);
    free(pending_idx);
    free(lens);
    free(toks);
    ppd_buf_free(&params);
    inputs_free(&I);
    ppd_esm_model_free(&m);
    return st;
}

int main(int argc, char **argv) {
    ppd_log_set_prog("esm-embed");
    for (int i = 1; i < argc; i++) /* for scripts that run a peer on the same libopenblas */
        if (!strcmp(argv[i], "--blas-coretype")) {
            const char *coretype = NULL;
            ppd_blas_advice(&coretype);
            const char *set = getenv("OPENBLAS_CORETYPE");
            printf("%s\n", set && *set ? set : coretype ? coretype : "");
            return 0;
        }
    ppd_blas_reexec(argv);
    enum {
        OPT_FASTA = 1,
        OPT_WEIGHTS,
        OPT_RANDOM,
        OPT_SEED,
        OPT_LAYER,
        OPT_DTYPE,
        OPT_LONG,
        OPT_MAXLEN,
        OPT_OVERLAP,
        OPT_UNKNOWN,
        OPT_MEM,
        OPT_EXPORT,
        OPT_DEVICE,
        OPT_GPU,
        OPT_PRECISION,
        OPT_DEVMEM
    };
    static const struct option longopts[] = {PPD_TOOL_LONGOPTS,
                                             {"graphs", required_argument, 0, 'g'},
                                             {"fasta", required_argument, 0, OPT_FASTA},
                                             {"output", required_argument, 0, 'o'},
                                             {"weights", required_argument, 0, OPT_WEIGHTS},
                                             {"random-init", required_argument, 0, OPT_RANDOM},
                                             {"seed", required_argument, 0, OPT_SEED},
                                             {"layer", required_argument, 0, OPT_LAYER},
                                             {"dtype", required_argument, 0, OPT_DTYPE},
                                             {"long", required_argument, 0, OPT_LONG},
                                             {"max-length", required_argument, 0, OPT_MAXLEN},
                                             {"overlap", required_argument, 0, OPT_OVERLAP},
                                             {"unknown", required_argument, 0, OPT_UNKNOWN},
                                             {"mem-gb", required_argument, 0, OPT_MEM},
                                             {"export", required_argument, 0, OPT_EXPORT},
                                             {"device", required_argument, 0, OPT_DEVICE},
                                             {"gpu", required_argument, 0, OPT_GPU},
                                             {"precision", required_argument, 0, OPT_PRECISION},
                                             {"device-mem-gb", required_argument, 0, OPT_DEVMEM},
                                             {0, 0, 0, 0}};
    /* the spellings of esm.* settings, in option order */
    static const ppd_tool_setting_opt as_set[] = {
        {OPT_LAYER, "esm.layer"},        {OPT_DTYPE, "esm.dtype"},
        {OPT_LONG, "esm.long_policy"},   {OPT_MAXLEN, "esm.max_length"},
        {OPT_OVERLAP, "esm.overlap"},    {OPT_UNKNOWN, "esm.unknown"},
        {OPT_MEM, "esm.mem_gb"},         {OPT_DEVICE, "device.engine"},
        {OPT_GPU, "device.index"},       {OPT_PRECISION, "device.precision"},
        {OPT_DEVMEM, "device.budget_gb"}};
    ppd_tool t;
    if (ppd_tool_init(&t, "esm-embed", argc)) return PPD_EXIT_IO;
    options o = {.out_dir = "esm"};
    o.graphs = calloc((size_t)argc + 1, sizeof *o.graphs);
    o.fastas = calloc((size_t)argc + 1, sizeof *o.fastas);
    int opt;
    while ((opt = getopt_long(argc, argv, PPD_TOOL_SHORTOPTS "g:o:", longopts, NULL)) != -1) {
        if (ppd_tool_option(&t, opt, optarg)) continue;
        if (ppd_tool_setting_option(&t, opt, optarg, as_set, sizeof as_set / sizeof as_set[0]))
            continue;
        switch (opt) {
        case 'g':
            o.graphs[o.n_graphs++] = optarg;
            break;
        case OPT_FASTA:
            o.fastas[o.n_fastas++] = optarg;
            break;
        case 'o':
            o.out_dir = optarg;
            break;
        case OPT_WEIGHTS:
            o.weights = optarg;
            break;
        case OPT_RANDOM:
            o.random_shape = optarg;
            break;
        case OPT_SEED:
            o.seed = strtoull(optarg, NULL, 0);
            break;
        case OPT_EXPORT:
            o.export_dir = optarg;
            break;
        default:
            t.usage_error = 2;
            break;
        }
    }
    if (!t.usage_error && !t.help && !t.version && !t.print_config &&
        o.n_graphs + o.n_fastas == 0) {
        ppd_error("give at least one input: -g GRAPHS or --fasta FILE (see --help)");
        t.usage_error = 1;
    }
    int rc = ppd_tool_options_done(&t, argc, argv, optind, usage);
    ppd_config *cfg = NULL;
    if (rc < 0 && ppd_tool_config(&t, &cfg)) rc = t.exit_code;
    o.jobs = t.jobs;
    o.json = t.json;
    int verbosity = t.verbosity;
    ppd_tool_free(&t);
    if (rc >= 0) goto done;
    stats S = {0};
    double t0 = ppd_now_seconds();
    ppd_status st = run(cfg, &o, &S);
    if (st) {
        rc = ppd_tool_failed(st, o.json);
        goto done;
    }
    double dt = ppd_now_seconds() - t0, rps = S.embed_s > 0 ? (double)S.residues / S.embed_s : 0;
    unsigned long long rss = (unsigned long long)(ppd_peak_rss_bytes() >> 20);
    if (o.json) {
        printf("{\"inputs\": %llu, \"unique\": %llu, \"cached\": %llu, \"embedded\": %llu, "
               "\"residues\": %llu, "
               "\"refused\": %llu, \"unknown_letters\": %llu, \"load_seconds\": %.3f, "
               "\"embed_seconds\": %.3f, "
               "\"residues_per_s\": %.1f, \"seconds\": %.3f, \"peak_rss_mb\": %llu, "
               "\"predicted_peak_mb\": %llu, \"device\": \"%s\", \"device_planned_mb\": %.1f, "
               "\"device_used_mb\": %.1f, \"device_measured_mb\": %.1f, "
               "\"device_runtime_mb\": %.1f, \"device_setup_seconds\": %.3f, "
               "\"device_loop_seconds\": %.3f, \"sink_seconds\": %.3f, "
               "\"cache_put_seconds\": %.3f, \"stopped\": %s, \"cache\": ",
               (unsigned long long)S.inputs, (unsigned long long)S.unique,
               (unsigned long long)S.cached, (unsigned long long)S.embedded,
               (unsigned long long)S.residues, (unsigned long long)S.refused,
               (unsigned long long)S.unknown, S.load_s, S.embed_s, rps, dt, rss,
               (unsigned long long)(S.predicted_peak >> 20), S.cuda ? "cuda" : "cpu",
               (double)S.device_planned / (1 << 20), (double)S.device_used / (1 << 20),
               (double)S.device_measured / (1 << 20), (double)S.device_runtime / (1 << 20),
               S.device_setup_s, S.device_loop_s, S.sink_s, S.put_s, S.stopped ? "true" : "false");
        ppd_json_str(stdout, o.out_dir);
        puts("}");
    } else if (verbosity >= PPD_LOG_INFO) {
        printf("esm-embed: %llu sequences (%llu unique): %llu embedded (%llu residues, %.1f "
               "residues/s), %llu "
               "already cached, %llu refused -> %s (%.2f s, peak RSS %llu MB, planned %llu MB)\n",
               (unsigned long long)S.inputs, (unsigned long long)S.unique,
               (unsigned long long)S.embedded, (unsigned long long)S.residues, rps,
               (unsigned long long)S.cached, (unsigned long long)S.refused, o.out_dir, dt, rss,
               (unsigned long long)(S.predicted_peak >> 20));
        if (S.cuda)
            printf("esm-embed: GPU %s: device memory planned %.1f MiB, used %.1f MiB (the "
                   "driver counted %.1f MiB, and %.1f MiB for CUDA's own)\n",
                   S.device_name, (double)S.device_planned / (1 << 20),
                   (double)S.device_used / (1 << 20), (double)S.device_measured / (1 << 20),
                   (double)S.device_runtime / (1 << 20));
    }
    if (S.stopped)
        ppd_info("stopped by a signal: the %llu sequences embedded are committed and the cache "
                 "stays unsealed; rerun the same command to embed the other %llu%s",
                 (unsigned long long)S.embedded, (unsigned long long)(S.pending - S.embedded),
                 o.export_dir ? " (and export)" : "");
    rc = S.refused || S.stopped ? PPD_EXIT_PARTIAL : PPD_EXIT_OK;
done:
    ppd_config_free(cfg);
    free(o.graphs);
    free(o.fastas);
    return rc;
}
