/* graph-build — residue graphs of protein complexes into an LMDB record cache.
 *
 * Reads a DiffDock-PP-style data set (data.data_path/structures + data.data_file CSV) or one
 * pair (--receptor/--ligand/--id), builds each complex's CA graph (docs/spec/diffdock-pp.md
 * §1.2) and stores one checksummed record per complex in the output cache (-o). Incremental:
 * a complex whose source files and parameters are unchanged, and whose record verifies, is
 * skipped; a crash loses at most the batch in memory and a rerun completes the cache. A bad
 * structure is reported and skipped, the others are built (exit 1). Manual: docs/graph-build.md.
 */
#include "ppdock/cache.h"
#include "ppdock/cli.h"
#include "ppdock/config.h"
#include "ppdock/dataset.h"
#include "ppdock/graph.h"
#include "ppdock/hash.h"
#include "ppdock/knn.h"
#include "ppdock/log.h"
#include "ppdock/pdb.h"
#include "ppdock/progress.h"
#include "ppdock/threadpool.h"
#include "ppdock/tool.h"

#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bump when the graph a given input and parameters produce changes (forces rebuilds). */
#define GRAPH_FORMAT "graph.format=1\n"

static const char *const PARAM_NAMES[] = {"data.resolution", "data.knn_size", "data.pdb_models"};

static void usage(FILE *f) {
    fputs(
        "usage: graph-build [options] [-o DIR]\n"
        "       graph-build [options] --receptor R.pdb[.gz] --ligand L.pdb[.gz] --id NAME -o DIR\n"
        "\n"
        "Build residue (CA) kNN graphs of protein complexes into the LMDB cache DIR (default "
        "graphs).\n"
        "The data set comes from the config: data.data_path (with structures/ID_r_b.pdb[.gz] and\n"
        "ID_l_b.pdb[.gz]; _u with data.use_unbound) and data.data_file (CSV with path,split).\n"
        "\n"
        "  -c, --config FILE     YAML config (DiffDock-PP's load as they are); repeatable\n"
        "      --set KEY=VALUE   override a setting, e.g. --set data.knn_size=16; repeatable\n"
        "  -o, --output DIR      output cache directory (default: graphs)\n"
        "      --receptor FILE   single pair: receptor structure\n"
        "      --ligand FILE     single pair: ligand structure\n"
        "      --id NAME         single pair: the record's key\n"
        "  -j, --jobs N          worker threads (default: all CPUs)\n"
        "      --json            one JSON object per complex on stdout, then a summary\n"
        "      --print-config    print every setting with its value and origin, then exit\n"
        "  -q, --quiet           warnings and errors only\n"
        "  -v, --verbose         more detail (-vv: trace)\n"
        "  -h, --help            this text\n"
        "      --version         print the version\n"
        "\n"
        "SIGTERM, SIGINT or SIGUSR1 stop the run: the complexes done are committed (the cache\n"
        "unsealed: rerun to build the rest).\n"
        "\n"
        "Exit status: 0 all built or unchanged, 1 some complexes failed (the rest are in the "
        "cache)\n"
        "or the run was stopped by a signal, 2 usage or config error, 3 I/O or resource failure.\n",
        f);
}

typedef enum { OUT_BUILT, OUT_UNCHANGED, OUT_FAILED } outcome;

typedef struct {
    size_t item;
    outcome out;
    uint64_t digest;
    int32_t n_rec, n_lig;
    int64_t edges;
    char err[1024];
    ppd_buf value;
} slot;

typedef struct {
    ppd_arena arena;
    ppd_buf raw_r, raw_l, txt_r, txt_l;
} worker_state;

typedef struct {
    const ppd_dataset *ds;
    const ppd_index_entry *prior; /* per item; value_len 0 = no record */
    uint64_t params_hash;
    int knn_k;
    ppd_pdb_options pdb;
    uint64_t next;
    int workers_left;
    ppd_queue *free_slots, *done;
    worker_state *ws;
    const volatile sig_atomic_t *stop; /* set by a signal: no new complexes are started */
} job;

/* Text of a structure file: its bytes, or their gunzip. */
static ppd_status structure_text(const char *path, const ppd_buf *raw, ppd_buf *txt,
                                 const char **text, size_t *len) {
    if (raw->len >= 2 && raw->data[0] == 0x1f && raw->data[1] == 0x8b) {
        PPD_TRY(ppd_gunzip(raw->data, raw->len, path, txt));
        *text = (const char *)txt->data;
        *len = txt->len;
    } else {
        *text = (const char *)raw->data;
        *len = raw->len;
    }
    return PPD_OK;
}

static ppd_status build_one(job *j, worker_state *w, slot *s, int force) {
    const ppd_complex_src *it = &j->ds->items[s->item];
    if (it->error) return ppd_fail(PPD_ERR_NOTFOUND, "%s", it->error);
    PPD_TRY(ppd_read_file(it->receptor, &w->raw_r));
    PPD_TRY(ppd_read_file(it->ligand, &w->raw_l));
    s->digest = ppd_graph_inputs_digest(ppd_hash64(w->raw_r.data, w->raw_r.len),
                                        ppd_hash64(w->raw_l.data, w->raw_l.len));
    const ppd_index_entry *p = &j->prior[s->item];
    if (!force && p->value_len && p->inputs_digest == s->digest &&
        p->params_hash == j->params_hash) {
        s->out = OUT_UNCHANGED;
        return PPD_OK;
    }
    ppd_arena_reset(&w->arena);
    const char *text;
    size_t len;
    ppd_protein rec, lig;
    PPD_TRY(structure_text(it->receptor, &w->raw_r, &w->txt_r, &text, &len));
    PPD_TRY(ppd_pdb_parse(text, len, it->receptor, &j->pdb, &w->arena, &rec));
    PPD_TRY(structure_text(it->ligand, &w->raw_l, &w->txt_l, &text, &len));
    PPD_TRY(ppd_pdb_parse(text, len, it->ligand, &j->pdb, &w->arena, &lig));
    PPD_TRY(ppd_graph_build_record(it->id, it->split, &rec, &lig, j->knn_k, s->digest,
                                   j->params_hash, &w->arena, &s->value));
    s->out = OUT_BUILT;
    s->n_rec = rec.n;
    s->n_lig = lig.n;
    s->edges = ppd_knn_edge_count(rec.n, j->knn_k) + ppd_knn_edge_count(lig.n, j->knn_k);
    return PPD_OK;
}

static void process(job *j, worker_state *w, slot *s, int force) {
    s->err[0] = 0;
    ppd_clear_error();
    if (build_one(j, w, s, force) != PPD_OK) {
        s->out = OUT_FAILED;
        snprintf(s->err, sizeof s->err, "%s", ppd_errmsg());
    }
}

static void worker(void *ctx, int id) {
    job *j = ctx;
    uint64_t i;
    while (!*j->stop && (i = ppd_pool_next(&j->next)) < j->ds->n) {
        void *p;
        if (!ppd_queue_pop(j->free_slots, &p)) break;
        slot *s = p;
        s->item = (size_t)i;
        process(j, &j->ws[id], s, 0);
        ppd_queue_push(j->done, s);
    }
    if (__atomic_sub_fetch(&j->workers_left, 1, __ATOMIC_ACQ_REL) == 0) ppd_queue_close(j->done);
}

typedef struct {
    uint64_t built, unchanged, failed, repaired;
    uint64_t listed; /* complexes in the data set */
    int stopped;     /* by a signal before every complex was seen: committed, unsealed */
} counts;

/* A complex built and put into the writer's batch, reported as "built" (event and count) only
 * once the batch holding it is committed: a run stopped by a failed commit never claims
 * complexes that are not in the cache. */
typedef struct {
    size_t item;
    int32_t n_rec, n_lig;
    int64_t edges;
} built_rec;

typedef struct {
    built_rec *v;
    size_t n, cap;
    uint64_t commits; /* the writer's commits when v was last emptied */
} built_log;

static void json_event(const char *event, const char *id, const built_rec *b, const char *err) {
    printf("{\"event\": \"%s\", \"id\": ", event);
    ppd_json_str(stdout, id);
    if (b)
        printf(", \"receptor_nodes\": %d, \"ligand_nodes\": %d, \"edges\": %lld", b->n_rec,
               b->n_lig, (long long)b->edges);
    if (err) {
        printf(", \"error\": ");
        ppd_json_str(stdout, err);
    }
    puts("}");
}

/* Report the logged complexes as built if the writer has committed since the log was emptied
 * (every put before a commit is in it). */
static void built_flush(built_log *l, const ppd_cache_writer *w, const ppd_dataset *ds, int json,
                        counts *c) {
    if (ppd_cache_writer_commits(w) == l->commits) return;
    for (size_t i = 0; i < l->n; i++)
        if (json) json_event("built", ds->items[l->v[i].item].id, &l->v[i], NULL);
    c->built += l->n;
    l->n = 0;
    l->commits = ppd_cache_writer_commits(w);
}

static ppd_status built_add(built_log *l, const slot *s) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        built_rec *v = realloc(l->v, cap * sizeof *v);
        if (!v) return ppd_fail(PPD_ERR_NOMEM, "out of memory for the build log");
        l->v = v, l->cap = cap;
    }
    l->v[l->n++] = (built_rec){s->item, s->n_rec, s->n_lig, s->edges};
    return PPD_OK;
}

/* The consumer: everything that touches the cache happens on this thread. */
static ppd_status consume(job *j, ppd_cache_writer *w, worker_state *mainws, int json, counts *c,
                          built_log *log) {
    ppd_progress *bar = ppd_progress_start("graph-build", j->ds->n);
    ppd_status st = PPD_OK;
    void *p;
    while (ppd_queue_pop(j->done, &p)) {
        slot *s = p;
        const char *id = j->ds->items[s->item].id;
        if (!st && s->out == OUT_UNCHANGED) {
            int ok = 0;
            st = ppd_cache_writer_verify(w, id, &j->prior[s->item], &ok);
            if (!st && !ok) { /* the stored record is damaged: rebuild it here */
                ppd_warn("%s: stored record is damaged (%s); rebuilding it", id, ppd_errmsg());
                process(j, mainws, s, 1);
                c->repaired += s->out == OUT_BUILT;
            }
        }
        if (!st && s->out == OUT_BUILT) {
            st = built_add(log, s);
            if (!st)
                st = ppd_cache_writer_put(w, id, s->value.data, s->value.len, s->digest,
                                          j->params_hash);
            if (!st) built_flush(log, w, j->ds, json, c);
            ppd_debug("%s: built (%d + %d residues)", id, s->n_rec, s->n_lig);
        } else if (s->out == OUT_UNCHANGED) {
            c->unchanged++;
            if (json && !st) json_event("unchanged", id, NULL, NULL);
        } else if (s->out == OUT_FAILED) {
            c->failed++;
            ppd_error("%s: %s (skipped)", id, s->err);
            if (json && !st) json_event("failed", id, NULL, s->err);
        }
        ppd_progress_add(bar, 1);
        ppd_queue_push(j->free_slots, s);
        if (st) break; /* cache write failed: stop handing out work */
    }
    if (st) { /* let the workers finish their items so the pool can be joined */
        ppd_queue_close(j->free_slots);
        while (ppd_queue_pop(j->done, &p)) {
        }
    }
    ppd_progress_finish(bar);
    return st;
}

static ppd_status inputs_line(const ppd_config *cfg, const char *rec, const char *lig,
                              const char *id, char *out, size_t cap) {
    char a[PATH_MAX], b[PATH_MAX], c[PATH_MAX];
    if (id) {
        PPD_TRY(ppd_path_absolute(rec, a, sizeof a));
        PPD_TRY(ppd_path_absolute(lig, b, sizeof b));
        snprintf(out, cap, "pair\t%s\t%s\t%s", id, a, b);
    } else {
        PPD_TRY(ppd_path_absolute(ppd_config_str(cfg, "data.data_path"), a, sizeof a));
        PPD_TRY(ppd_path_absolute(ppd_config_str(cfg, "data.data_file"), c, sizeof c));
        snprintf(out, cap, "dataset\t%s\t%s\t%d", a, c,
                 ppd_config_bool(cfg, "data.use_unbound") ? 1 : 0);
    }
    return PPD_OK;
}

typedef struct {
    const char *out_dir, *receptor, *ligand, *id;
    int jobs, json;
} options;

/* A data set without its structures/ directory (ppd_dataset.structures_missing) is a wrong
 * data.data_path: a setting to fix, said once at start (exit 2), not one "file not found" per
 * complex followed by an empty cache. */
static ppd_status structures_missing(const ppd_config *cfg) {
    const char *dir = ppd_config_str(cfg, "data.data_path"),
               *from = ppd_config_origin(cfg, "data.data_path");
    if (!ppd_dir_exists(dir))
        return ppd_fail(PPD_ERR_CONFIG, "data.data_path '%s' (from %s): no such directory", dir,
                        from);
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    if (n >= 10 && !strncmp(dir + n - 10, "structures", 10) && (n == 10 || dir[n - 11] == '/')) {
        char parent[PATH_MAX];
        int k = n > 11 ? (int)(n - 11) : 0; /* "structures", "/structures", "a/structures" */
        snprintf(parent, sizeof parent, "%.*s", k, dir);
        return ppd_fail(PPD_ERR_CONFIG,
                        "data.data_path '%s' (from %s) is the structures directory itself: "
                        "graph-build reads DATA_PATH/structures/ID_r_b.pdb[.gz] (DiffDock-PP's "
                        "layout), so set data.data_path=%s",
                        dir, from, k ? parent : (n == 11 ? "/" : "."));
    }
    return ppd_fail(PPD_ERR_CONFIG,
                    "data.data_path '%s' (from %s) has no structures/ directory: graph-build reads "
                    "DATA_PATH/structures/ID_r_b.pdb[.gz] and ID_l_b.pdb[.gz] (DiffDock-PP's "
                    "layout)",
                    dir, from);
}

static ppd_status check_settings(const ppd_config *cfg, const options *o) {
    const char *res = ppd_config_str(cfg, "data.resolution");
    if (!res || strcmp(res, "residue") != 0)
        return ppd_fail(
            PPD_ERR_CONFIG,
            "data.resolution '%s' (from %s): only 'residue' graphs are built (the released "
            "DiffDock-PP models use it)",
            res ? res : "null", ppd_config_origin(cfg, "data.resolution"));
    const char *dataset = ppd_config_str(cfg, "data.dataset");
    if (!o->id && dataset && !strcmp(dataset, "dips"))
        return ppd_fail(
            PPD_ERR_CONFIG,
            "data.dataset 'dips' (from %s): DIPS .dill pairs are not read; convert them to "
            "PDB files in the DB5 layout (structures/ID_r_b.pdb, ID_l_b.pdb)",
            ppd_config_origin(cfg, "data.dataset"));
    if (!o->id &&
        (!ppd_config_str(cfg, "data.data_path") || !ppd_config_str(cfg, "data.data_file")))
        return ppd_fail(
            PPD_ERR_CONFIG,
            "data.data_path and data.data_file must be set (or give --receptor/--ligand/--id)");
    const char *csv = ppd_config_str(cfg, "data.data_file");
    if (!o->id && !ppd_file_exists(csv))
        return ppd_fail(PPD_ERR_CONFIG, "data.data_file '%s' (from %s): no such file", csv,
                        ppd_config_origin(cfg, "data.data_file"));
    return PPD_OK;
}

static ppd_status run(ppd_config *cfg, const options *o, counts *c) {
    PPD_TRY(check_settings(cfg, o));
    ppd_dataset ds;
    if (o->id)
        PPD_TRY(ppd_dataset_pair(o->id, o->receptor, o->ligand, &ds));
    else
        PPD_TRY(ppd_dataset_load(ppd_config_str(cfg, "data.data_path"),
                                 ppd_config_str(cfg, "data.data_file"),
                                 ppd_config_bool(cfg, "data.use_unbound"), &ds));
    if (ds.structures_missing) {
        ppd_dataset_free(&ds);
        return structures_missing(cfg);
    }
    ppd_buf params = {0}, inputs = {0};
    ppd_status st = ppd_buf_append(&params, GRAPH_FORMAT, strlen(GRAPH_FORMAT));
    if (!st)
        st = ppd_config_canonical(cfg, PARAM_NAMES, sizeof PARAM_NAMES / sizeof *PARAM_NAMES,
                                  &params);
    char producer[64], line[3 * PATH_MAX];
    snprintf(producer, sizeof producer, "graph-build %s", PPD_VERSION);
    ppd_cache_writer_opts wo = {.record_type = PPD_REC_GRAPH,
                                .producer = producer,
                                .params = (const char *)params.data,
                                .batch_bytes = (size_t)ppd_config_int(cfg, "cache.batch_mb") << 20,
                                .map_bytes = (size_t)ppd_config_int(cfg, "cache.map_mb") << 20};
    ppd_cache_writer *w = NULL;
    if (!st) st = ppd_cache_writer_open(o->out_dir, &wo, &w);
    built_log log = {.commits = w ? ppd_cache_writer_commits(w) : 0};

    int nslots = 2 * o->jobs + 2;
    job j = {.ds = &ds,
             .knn_k = (int)ppd_config_int(cfg, "data.knn_size"),
             .workers_left = o->jobs,
             .stop = ppd_tool_catch_stop_signals()};
    const char *models = ppd_config_str(cfg, "data.pdb_models");
    j.pdb.first_model_only = models && !strcmp(models, "first");
    ppd_index_entry *prior = calloc(ds.n ? ds.n : 1, sizeof *prior);
    slot *slots = calloc((size_t)nslots, sizeof *slots);
    worker_state *ws = calloc((size_t)o->jobs + 1, sizeof *ws);
    if (!st && (!prior || !slots || !ws))
        st = ppd_fail(PPD_ERR_NOMEM, "out of memory for %zu complexes", ds.n);
    for (int i = 0; !st && i <= o->jobs; i++) st = ppd_arena_init(&ws[i].arena, 0, 1);
    if (!st) {
        j.params_hash = ppd_cache_writer_params_hash(w);
        j.prior = prior;
        j.ws = ws;
        for (size_t i = 0; !st && i < ds.n; i++) { /* what the cache already holds, by item */
            int found = 0;
            st = ppd_cache_writer_lookup(w, ds.items[i].id, &prior[i], &found);
            if (!found) memset(&prior[i], 0, sizeof prior[i]);
        }
    }
    ppd_pool *pool = NULL;
    if (!st) st = ppd_queue_create((size_t)nslots, &j.free_slots);
    if (!st) st = ppd_queue_create((size_t)nslots, &j.done);
    if (!st) st = ppd_pool_create(o->jobs, &pool);
    if (!st) {
        for (int i = 0; i < nslots; i++) ppd_queue_push(j.free_slots, &slots[i]);
        ppd_pool_run(pool, worker, &j);
        st = consume(&j, w, &ws[o->jobs], o->json, c, &log);
        ppd_pool_join(pool);
    }
    if (!st) { /* merge this run's source into the sources the cache already records */
        ppd_status m = ppd_cache_writer_get_meta(w, "inputs", &inputs);
        if (m != PPD_OK && m != PPD_ERR_NOTFOUND) st = m;
    }
    if (!st) st = inputs_line(cfg, o->receptor, o->ligand, o->id, line, sizeof line);
    if (!st) st = ppd_inputs_merge(&inputs, line);
    if (!st) st = ppd_cache_writer_set_meta(w, "inputs", (const char *)inputs.data);
    c->listed = ds.n;
    /* stopped by a signal: the complexes done are committed; the cache is not complete, so it
     * stays unsealed and a rerun builds the rest */
    c->stopped = *j.stop && c->built + log.n + c->unchanged + c->failed < ds.n;
    if (!st) st = c->stopped ? ppd_cache_writer_commit(w) : ppd_cache_writer_seal(w);
    if (!st) built_flush(&log, w, &ds, o->json, c); /* the seal committed the last batch */
    if (st && log.n)
        ppd_info("%zu complex(es) built after the last commit are not in the cache; a rerun builds "
                 "them",
                 log.n);
    free(log.v);
    ppd_cache_writer_close(w);
    ppd_pool_destroy(pool);
    ppd_queue_destroy(j.free_slots);
    ppd_queue_destroy(j.done);
    for (int i = 0; slots && i < nslots; i++) ppd_buf_free(&slots[i].value);
    for (int i = 0; ws && i <= o->jobs; i++) {
        ppd_arena_free(&ws[i].arena);
        ppd_buf_free(&ws[i].raw_r);
        ppd_buf_free(&ws[i].raw_l);
        ppd_buf_free(&ws[i].txt_r);
        ppd_buf_free(&ws[i].txt_l);
    }
    free(slots);
    free(ws);
    free(prior);
    ppd_buf_free(&params);
    ppd_buf_free(&inputs);
    ppd_dataset_free(&ds);
    return st;
}

int main(int argc, char **argv) {
    enum { OPT_REC = 1, OPT_LIG, OPT_ID };
    static const struct option longopts[] = {PPD_TOOL_LONGOPTS,
                                             {"output", required_argument, 0, 'o'},
                                             {"receptor", required_argument, 0, OPT_REC},
                                             {"ligand", required_argument, 0, OPT_LIG},
                                             {"id", required_argument, 0, OPT_ID},
                                             {0, 0, 0, 0}};
    ppd_tool t;
    if (ppd_tool_init(&t, "graph-build", argc)) return PPD_EXIT_IO;
    options o = {.out_dir = "graphs"};
    int opt;
    while ((opt = getopt_long(argc, argv, PPD_TOOL_SHORTOPTS "o:", longopts, NULL)) != -1) {
        if (ppd_tool_option(&t, opt, optarg)) continue;
        switch (opt) {
        case 'o':
            o.out_dir = optarg;
            break;
        case OPT_REC:
            o.receptor = optarg;
            break;
        case OPT_LIG:
            o.ligand = optarg;
            break;
        case OPT_ID:
            o.id = optarg;
            break;
        default:
            t.usage_error = 2;
            break;
        }
    }
    if (!t.usage_error && (o.receptor || o.ligand || o.id) && !(o.receptor && o.ligand && o.id)) {
        ppd_error("a single pair needs all of --receptor, --ligand and --id");
        t.usage_error = 1;
    }
    int rc = ppd_tool_options_done(&t, argc, argv, optind, usage);
    ppd_config *cfg = NULL;
    if (rc < 0 && ppd_tool_config(&t, &cfg)) rc = t.exit_code;
    o.jobs = t.jobs;
    o.json = t.json;
    int verbosity = t.verbosity;
    ppd_tool_free(&t);
    if (rc >= 0) return rc;
    double t0 = ppd_now_seconds();
    counts c = {0};
    ppd_status st = run(cfg, &o, &c);
    ppd_config_free(cfg);
    if (st) return ppd_tool_failed(st, o.json);
    double dt = ppd_now_seconds() - t0;
    unsigned long long rss = (unsigned long long)(ppd_peak_rss_bytes() >> 20);
    if (o.json)
        printf("{\"event\": \"summary\", \"built\": %llu, \"unchanged\": %llu, \"failed\": %llu, "
               "\"rebuilt_damaged\": %llu, \"stopped\": %s, "
               "\"seconds\": %.3f, \"peak_rss_mb\": %llu, \"cache\": ",
               (unsigned long long)c.built, (unsigned long long)c.unchanged,
               (unsigned long long)c.failed, (unsigned long long)c.repaired,
               c.stopped ? "true" : "false", dt, rss);
    if (o.json) {
        ppd_json_str(stdout, o.out_dir);
        puts("}");
    } else if (verbosity >= PPD_LOG_INFO) {
        printf("graph-build: %llu built, %llu unchanged, %llu failed -> %s (%.2f s, peak RSS %llu "
               "MB)\n",
               (unsigned long long)c.built, (unsigned long long)c.unchanged,
               (unsigned long long)c.failed, o.out_dir, dt, rss);
    }
    if (c.stopped)
        ppd_info("stopped by a signal: the complexes done are committed and the cache stays "
                 "unsealed; rerun the same command to build the other %llu",
                 (unsigned long long)(c.listed - c.built - c.unchanged - c.failed));
    return c.failed || c.stopped ? PPD_EXIT_PARTIAL : PPD_EXIT_OK;
}
