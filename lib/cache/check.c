/* The cache checker and repair (see ppdock/check.h). */
#include "cache_internal.h"

#include "ppdock/check.h"
#include "ppdock/dataset.h"
#include "ppdock/esm.h"
#include "ppdock/esm_record.h"
#include "ppdock/fasta.h"
#include "ppdock/graph.h"
#include "ppdock/hash.h"
#include "ppdock/log.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    const char *dir;
    const ppd_check_opts *o;
    ppd_check_summary *s;
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi meta, recs, index;
    int type;         /* record type from meta */
    int opened;       /* env and the three databases are open */
    int meta_trusted; /* meta checksum verified: params_hash and knn_k usable */
    uint64_t params_hash;
    int knn_k;        /* from params "data.knn_size=", 0 if unknown */
    int esm_width;    /* from params "esm.width=", 0 if unknown */
    int quiet;        /* re-validation during repair: no reports */
    ppd_buf *dropped; /* repair: "key\tcheck\tdetail\n" lines */
    char last_dropped[PPD_CACHE_MAX_KEY + 1];
    ppd_buf scratch; /* aligned copy of a value for decoding */
    char detail[1024];
} checker;

/* ---- reporting ---------------------------------------------------------------------------------
 */

static void printable_key(const MDB_val *k, char *out, size_t cap) {
    size_t o = 0;
    const unsigned char *p = k->mv_data;
    for (size_t i = 0; i < k->mv_size && o + 5 < cap; i++) {
        if (p[i] >= 32 && p[i] < 127 && p[i] != '\\')
            out[o++] = (char)p[i];
        else
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", p[i]);
    }
    out[o] = 0;
}

/* What fixes a problem: nothing short of a rebuild of the whole cache, a repair (dropping
 * records, rewriting meta), or running the build stage (missing or stale records). */
enum { UNFIXABLE = 0, REPAIRABLE = 1, REBUILD = 2 };

static void report(checker *c, const char *key, const char *check, int kind, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void report(checker *c, const char *key, const char *check, int kind, const char *fmt, ...) {
    if (c->quiet) return;
    char text[sizeof c->detail]; /* the arguments may point into c->detail */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    memcpy(c->detail, text, sizeof text);
    c->s->problems++;
    if (kind == UNFIXABLE) c->s->unfixable++;
    if (kind == REPAIRABLE) c->s->repairable++;
    int repairable = kind == REPAIRABLE;
    if (c->dropped && key && repairable && strcmp(key, c->last_dropped) != 0) {
        /* one line per dropped key: the first reason found */
        ppd_buf_printf(c->dropped, "%s\t%s\t%s\n", key, check, c->detail);
        snprintf(c->last_dropped, sizeof c->last_dropped, "%s", key);
    }
    if (c->o && c->o->report) {
        ppd_problem p = {c->dir, key, check, c->detail, repairable};
        c->o->report(&p, c->o->ctx);
    }
}

/* ---- fault guard: a damaged map must give a report, not a core dump ----------------------------
 */

static sigjmp_buf fault_jmp;
static volatile sig_atomic_t fault_armed;

static void on_fault(int sig) {
    if (fault_armed) {
        fault_armed = 0;
        siglongjmp(fault_jmp, sig);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

typedef struct {
    struct sigaction bus, segv;
} fault_saved;

static void fault_install(fault_saved *old) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fault;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, &old->bus);
    sigaction(SIGSEGV, &sa, &old->segv);
}

/* LMDB asserts (and aborts) on pages it cannot interpret, e.g. the zeros of a truncated file
 * read through a zero-extended copy. Its assert callback runs first: leave through the guard. */
static void on_lmdb_assert(MDB_env *env, const char *msg) {
    (void)env;
    (void)msg;
    if (fault_armed) {
        fault_armed = 0;
        siglongjmp(fault_jmp, SIGABRT);
    }
}

static void fault_restore(const fault_saved *old) {
    fault_armed = 0;
    sigaction(SIGBUS, &old->bus, NULL);
    sigaction(SIGSEGV, &old->segv, NULL);
}

/* ---- per-record validation ---------------------------------------------------------------------
 */

static int finite_arrays(checker *c, const ppd_rec_view *v, const char **bad) {
    for (uint32_t i = 0; i < v->header.n_arrays; i++) {
        ppd_rec_array a;
        ppd_rec_array_at(v, i, &a);
        const unsigned char *p = v->value + v->header.header_len + a.offset;
        uint64_t n = a.nbytes / (ppd_dtype_size(a.dtype) ? ppd_dtype_size(a.dtype) : 1);
        for (uint64_t j = 0; j < n; j++) {
            int ok = 1;
            if (a.dtype == PPD_DT_F32) {
                float f;
                memcpy(&f, p + 4 * j, 4);
                ok = isfinite(f);
            } else if (a.dtype == PPD_DT_F64) {
                double d;
                memcpy(&d, p + 8 * j, 8);
                ok = isfinite(d);
            } else if (a.dtype == PPD_DT_F16) {
                uint16_t h;
                memcpy(&h, p + 2 * j, 2);
                ok = (h & 0x7c00) != 0x7c00; /* exponent all ones: inf or NaN */
            } else {
                break;
            }
            if (!ok) {
                snprintf(c->detail, sizeof c->detail, "array '%.16s' element %llu is not finite",
                         a.name, (unsigned long long)j);
                *bad = c->detail;
                return 0;
            }
        }
    }
    return 1;
}

/* Returns 1 if the record is good; else 0 with *check and c->detail set. */
static int validate_record(checker *c, const MDB_val *k, const MDB_val *v, const char **check) {
    ppd_rec_view view;
    ppd_status st = ppd_rec_parse(v->mv_data, v->mv_size, k->mv_data, k->mv_size, 0, &view);
    if (st) {
        *check = "header";
        snprintf(c->detail, sizeof c->detail, "%s", ppd_errmsg());
        return 0;
    }
    uint64_t sum = ppd_rec_compute_checksum(v->mv_data, v->mv_size, k->mv_data, k->mv_size);
    if (sum != view.header.checksum) {
        *check = "checksum";
        snprintf(
            c->detail, sizeof c->detail,
            "stored 0x%016llx, computed 0x%016llx (value damaged, or stored under the wrong key)",
            (unsigned long long)view.header.checksum, (unsigned long long)sum);
        return 0;
    }
    if (c->type && view.header.type != c->type) {
        *check = "record-type";
        snprintf(c->detail, sizeof c->detail, "record type %u (%s) in a '%s' cache",
                 view.header.type, ppd_rec_type_name(view.header.type), ppd_rec_type_name(c->type));
        return 0;
    }
    MDB_val iv;
    int rc = mdb_get(c->txn, c->index, (MDB_val *)k, &iv);
    ppd_index_entry ie;
    if (rc || iv.mv_size != sizeof ie) {
        *check = "index";
        if (rc)
            snprintf(c->detail, sizeof c->detail, "no index entry (%s)", mdb_strerror(rc));
        else
            snprintf(c->detail, sizeof c->detail, "index entry is %zu bytes, not 32", iv.mv_size);
        return 0;
    }
    memcpy(&ie, iv.mv_data, sizeof ie);
    if (ie.checksum != view.header.checksum || ie.value_len != v->mv_size) {
        *check = "index";
        snprintf(c->detail, sizeof c->detail,
                 "index says checksum 0x%016llx / %llu bytes, record has 0x%016llx / %zu "
                 "(an old or foreign value)",
                 (unsigned long long)ie.checksum, (unsigned long long)ie.value_len,
                 (unsigned long long)view.header.checksum, v->mv_size);
        return 0;
    }
    if (c->meta_trusted && ie.params_hash != c->params_hash) {
        *check = "stale-params";
        snprintf(c->detail, sizeof c->detail,
                 "built with parameters 0x%016llx, the cache's are 0x%016llx",
                 (unsigned long long)ie.params_hash, (unsigned long long)c->params_hash);
        return 0;
    }
    const char *bad;
    if (!finite_arrays(c, &view, &bad)) {
        *check = "finite";
        return 0;
    }
    if (view.header.type == PPD_REC_ESM) {
        ppd_rec_view copy = view; /* aligned copy: values under ~2 KB sit unaligned in the map */
        c->scratch.len = 0;
        ppd_esm_embedding e;
        if (ppd_buf_append(&c->scratch, v->mv_data, v->mv_size) != PPD_OK) {
            *check = "shape";
            snprintf(c->detail, sizeof c->detail, "out of memory copying the record");
            return 0;
        }
        copy.value = c->scratch.data;
        if (ppd_esm_record_decode(&copy, &e) != PPD_OK) {
            *check = "shape";
            snprintf(c->detail, sizeof c->detail, "%s", ppd_errmsg());
            return 0;
        }
        if (ppd_esm_record_validate(&e, check) != PPD_OK) {
            snprintf(c->detail, sizeof c->detail, "%s", ppd_errmsg());
            return 0;
        }
        if (c->esm_width && e.d != c->esm_width) {
            *check = "shape";
            snprintf(c->detail, sizeof c->detail, "embedding width %d, the cache's is %d", e.d,
                     c->esm_width);
            return 0;
        }
    }
    if (view.header.type == PPD_REC_GRAPH) {
        ppd_graph g;
        if (ppd_graph_decode_copy(&view, &c->scratch, &g) != PPD_OK) {
            *check = "shape";
            snprintf(c->detail, sizeof c->detail, "%s", ppd_errmsg());
            return 0;
        }
        if (ppd_graph_validate(&g, c->meta_trusted ? c->knn_k : 0, check) != PPD_OK) {
            snprintf(c->detail, sizeof c->detail, "%s", ppd_errmsg());
            return 0;
        }
        if (g.params_hash != ie.params_hash || g.inputs_digest != ie.inputs_digest) {
            *check = "index";
            snprintf(c->detail, sizeof c->detail,
                     "record's inputs/params digests differ from its index entry");
            return 0;
        }
    }
    return 1;
}

/* ---- walks -------------------------------------------------------------------------------------
 */

/* Each phase reads in a fresh snapshot: an LMDB error marks its transaction unusable, and the
 * next phase should still run. */
static int begin(checker *c) {
    if (c->txn) mdb_txn_abort(c->txn);
    c->txn = NULL;
    return c->env ? mdb_txn_begin(c->env, NULL, MDB_RDONLY, &c->txn) : EINVAL;
}

static void walk_records(checker *c) {
    MDB_cursor *cur;
    int rc = begin(c);
    if (!rc) rc = mdb_cursor_open(c->txn, c->recs, &cur);
    if (rc) {
        report(c, NULL, "walk", REPAIRABLE, "cannot open a cursor on records: %s",
               mdb_strerror(rc));
        return;
    }
    MDB_val k, v;
    char key[4 * PPD_CACHE_MAX_KEY + 8];
    while ((rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
        c->s->records++;
        printable_key(&k, key, sizeof key);
        const char *check = "";
        if (validate_record(c, &k, &v, &check))
            c->s->records_ok++;
        else
            report(c, key, check, REPAIRABLE, "%s", c->detail);
        ppd_cache_release(v.mv_data, v.mv_size); /* RSS bounded: ppdock/cache.h */
    }
    if (rc != MDB_NOTFOUND)
        report(c, NULL, "walk", REPAIRABLE,
               "record walk stopped after %llu records: %s (the B-tree is damaged)",
               (unsigned long long)c->s->records, mdb_strerror(rc));
    mdb_cursor_close(cur);
}

static void walk_index(checker *c) {
    MDB_cursor *cur;
    int rc = begin(c);
    if (!rc) rc = mdb_cursor_open(c->txn, c->index, &cur);
    if (rc) {
        report(c, NULL, "walk", REPAIRABLE, "cannot open a cursor on index: %s", mdb_strerror(rc));
        return;
    }
    MDB_val k, v, rv;
    char key[4 * PPD_CACHE_MAX_KEY + 8];
    uint64_t n = 0;
    while ((rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
        n++;
        int g = mdb_get(c->txn, c->recs, &k, &rv);
        if (g == MDB_NOTFOUND) {
            printable_key(&k, key, sizeof key);
            report(c, key, "missing-record", REPAIRABLE,
                   "the index lists this record but it is gone (deleted?)");
        } else if (g) {
            printable_key(&k, key, sizeof key);
            report(c, key, "walk", REPAIRABLE, "record unreadable: %s", mdb_strerror(g));
        }
    }
    if (rc != MDB_NOTFOUND)
        report(c, NULL, "walk", REPAIRABLE,
               "index walk stopped after %llu entries: %s (the B-tree is damaged)",
               (unsigned long long)n, mdb_strerror(rc));
    mdb_cursor_close(cur);
}

/* ---- meta --------------------------------------------------------------------------------------
 */

static int writer_running(const char *dir) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/writer.lock", dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    int busy = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    close(fd);
    return busy;
}

/* Value of the "name=" line of a params text, or NULL. */
static const char *param_value(const char *params, const char *name) {
    size_t n = strlen(name);
    for (const char *p = params; p && *p;) {
        if (!strncmp(p, name, n) && p[n] == '=') return p + n + 1;
        p = strchr(p, '\n');
        if (p) p++;
    }
    return NULL;
}

static int param_int(const char *params, const char *name) {
    const char *v = param_value(params, name);
    return v ? atoi(v) : 0;
}

/* Returns 0 if the rest of the check can run (schema known). */
static int check_meta(checker *c) {
    ppd_buf b = {0}, params = {0};
    int found, ok = 1;
    if (begin(c)) {
        report(c, NULL, "walk", REPAIRABLE, "cannot start a read transaction");
        return -1;
    }
    if (cache_meta_get(c->txn, c->meta, "schema", &b, &found) != PPD_OK) {
        report(c, NULL, "meta", REPAIRABLE, "the meta database is unreadable: %s", ppd_errmsg());
        ppd_buf_free(&b);
        return -1;
    }
    if (!found || strcmp((char *)b.data, PPD_CACHE_SCHEMA) != 0) {
        report(c, NULL, "schema", UNFIXABLE,
               "schema '%s'; this build reads '%s' (rebuild the cache with this version)",
               found ? (char *)b.data : "(missing)", PPD_CACHE_SCHEMA);
        ok = 0;
        goto done;
    }
    cache_meta_get(c->txn, c->meta, "record_type", &b, &found);
    c->type = found ? cache_rec_type_from_name((char *)b.data) : 0;
    snprintf(c->s->record_type, sizeof c->s->record_type, "%s", found ? (char *)b.data : "?");
    if (!c->type)
        report(c, NULL, "meta", REPAIRABLE, "record_type '%s' is unknown",
               found ? (char *)b.data : "(missing)");

    cache_meta_get(c->txn, c->meta, "sealed", &b, &found);
    c->s->sealed = found && !strcmp((char *)b.data, "1");
    c->s->writer_running = writer_running(c->dir);
    if (!c->s->sealed)
        report(c, NULL, "unsealed", REPAIRABLE, "%s",
               c->s->writer_running
                   ? "a writer is still running on this cache (it seals when it finishes)"
                   : "the writer did not finish (killed, crashed, stopped by an error or by a "
                     "signal); rerun it to complete the cache, or --repair");

    uint64_t sum = 0;
    int meta_ok = 1;
    if (cache_meta_checksum(c->txn, c->meta, &sum) == PPD_OK && c->s->sealed) {
        char hex[17];
        ppd_hash_hex(sum, hex);
        cache_meta_get(c->txn, c->meta, "checksum", &b, &found);
        if (!found || strcmp((char *)b.data, hex) != 0) {
            report(c, NULL, "meta", REPAIRABLE,
                   "meta checksum %s, computed %s: meta values were changed or damaged",
                   found ? (char *)b.data : "(missing)", hex);
            meta_ok = 0;
        }
    }
    cache_meta_get(c->txn, c->meta, "params", &params, &found);
    c->params_hash = ppd_hash64(params.data, params.len);
    c->knn_k = param_int((char *)params.data, "data.knn_size");
    c->esm_width = param_int((char *)params.data, "esm.width");
    int recovered;
    cache_meta_get(c->txn, c->meta, "params_recovered", &b, &recovered);
    cache_meta_get(c->txn, c->meta, "params_hash", &b, &found);
    if (recovered && found) { /* a repair kept the records' hash but lost the text */
        c->params_hash = strtoull((char *)b.data, NULL, 16);
        c->knn_k = 0;
        c->esm_width = 0;
    } else {
        char want[17];
        ppd_hash_hex(c->params_hash, want);
        if (!found || strcmp((char *)b.data, want) != 0) {
            report(c, NULL, "meta", REPAIRABLE,
                   "params_hash %s does not match the params text (%s)",
                   found ? (char *)b.data : "(missing)", want);
            meta_ok = 0;
        }
    }
    c->meta_trusted = meta_ok;

    MDB_stat ms;
    if (mdb_stat(c->txn, c->recs, &ms) == 0 && c->s->sealed) {
        cache_meta_get(c->txn, c->meta, "count", &b, &found);
        if (!found || strtoull((char *)b.data, NULL, 10) != ms.ms_entries)
            report(c, NULL, "meta", REPAIRABLE, "meta count %s, but the records database holds %zu",
                   found ? (char *)b.data : "(missing)", ms.ms_entries);
    }
    cache_meta_get(c->txn, c->meta, "dropped", &b, &found);
    if (found)
        for (char *line = (char *)b.data; line && *line;) {
            char *nl = strchr(line, '\n'), *tab = strchr(line, '\t');
            MDB_val k = {tab ? (size_t)(tab - line) : (nl ? (size_t)(nl - line) : strlen(line)),
                         line},
                    v;
            if (mdb_get(c->txn, c->recs, &k, &v) == MDB_NOTFOUND) c->s->dropped_pending++;
            line = nl ? nl + 1 : NULL;
        }
done:
    ppd_buf_free(&b);
    ppd_buf_free(&params);
    return ok ? 0 : -1;
}

/* ---- inputs ------------------------------------------------------------------------------------
 */

/* ---- inputs of an ESM cache: graph caches and FASTA files --------------------------------------
 */

typedef struct {
    checker *c;
    uint64_t model;
    char policy[128];
    ppd_esm_unknown_policy unknown;
    ppd_buf tok;
} esm_inputs;

/* One input sequence of an ESM cache: is its embedding there? */
static void esm_input_present(esm_inputs *e, const char *name, const uint8_t *tokens, size_t n) {
    char key[PPD_ESM_KEY_LEN + 1];
    ppd_esm_record_key(e->model, e->policy, tokens, n, key);
    e->c->s->inputs++;
    MDB_val k = {PPD_ESM_KEY_LEN, key}, iv;
    if (mdb_get(e->c->txn, e->c->index, &k, &iv) == MDB_NOTFOUND) {
        e->c->s->missing++;
        report(e->c, name, "missing", REBUILD,
               "no embedding %s for this %zu-residue sequence (run esm-embed)", key, n);
    }
}

static ppd_status on_fasta_input(void *ctx, const char *name, const char *seq, size_t len,
                                 int line) {
    esm_inputs *e = ctx;
    if (!len || ppd_buf_reserve(&e->tok, len) != PPD_OK) return PPD_OK;
    if (ppd_esm_tokenize(seq, len, e->unknown, e->tok.data, NULL) != PPD_OK)
        return PPD_OK; /* refused by policy */
    esm_input_present(e, name, e->tok.data, len);
    return PPD_OK;
}

static void esm_graph_inputs(esm_inputs *e, const char *dir) {
    ppd_cache_reader *r;
    ppd_cache_cursor *cur = NULL;
    if (ppd_cache_reader_open(dir, &r) != PPD_OK) {
        report(e->c, NULL, "input-error", REBUILD, "%s", ppd_errmsg());
        return;
    }
    ppd_buf copy = {0};
    char key[PPD_CACHE_MAX_KEY + 1], name[PPD_CACHE_MAX_KEY + 16];
    int done = 0;
    if (ppd_cache_reader_cursor(r, &cur) == PPD_OK)
        while (!done) {
            ppd_rec_view v;
            ppd_status st = ppd_cache_cursor_next(cur, key, &v, &done);
            if (st == PPD_ERR_CORRUPT && key[0]) continue; /* the graph cache's own check */
            if (st || done) break;
            ppd_graph g;
            if (ppd_graph_decode_copy(&v, &copy, &g) != PPD_OK) continue;
            snprintf(name, sizeof name, "%s:receptor", key);
            esm_input_present(e, name, g.rec.tokens, (size_t)g.rec.n);
            snprintf(name, sizeof name, "%s:ligand", key);
            esm_input_present(e, name, g.lig.tokens, (size_t)g.lig.n);
        }
    ppd_cache_cursor_close(cur);
    ppd_cache_reader_close(r);
    ppd_buf_free(&copy);
}

/* "graphs\t<dir>" and "fasta\t<file>\t<x|unk|error>" lines of an ESM cache. */
static void check_esm_input(checker *c, const char *line) {
    ppd_buf params = {0};
    int found;
    cache_meta_get(c->txn, c->meta, "params", &params, &found);
    esm_inputs e = {.c = c};
    const char *model = param_value((char *)params.data, "esm.model");
    const char *policy = param_value((char *)params.data, "esm.policy");
    if (!model || !policy) {
        report(c, NULL, "input-error", REBUILD, "meta params lack esm.model / esm.policy");
        ppd_buf_free(&params);
        return;
    }
    e.model = strtoull(model, NULL, 16);
    size_t pl = strcspn(policy, "\n");
    snprintf(e.policy, sizeof e.policy, "%.*s",
             (int)(pl < sizeof e.policy ? pl : sizeof e.policy - 1), policy);
    const char *arg = strchr(line, '\t');
    if (!strncmp(line, "graphs\t", 7)) {
        esm_graph_inputs(&e, arg + 1);
    } else {
        char path[PATH_MAX];
        const char *tab = strchr(arg + 1, '\t');
        snprintf(path, sizeof path, "%.*s", (int)(tab ? (size_t)(tab - arg - 1) : strlen(arg + 1)),
                 arg + 1);
        e.unknown = tab && !strcmp(tab + 1, "unk")     ? PPD_ESM_UNKNOWN_AS_UNK
                    : tab && !strcmp(tab + 1, "error") ? PPD_ESM_UNKNOWN_ERROR
                                                       : PPD_ESM_UNKNOWN_AS_X;
        if (ppd_fasta_read(path, on_fasta_input, &e) != PPD_OK)
            report(c, NULL, "input-error", REBUILD, "%s", ppd_errmsg());
    }
    ppd_buf_free(&e.tok);
    ppd_buf_free(&params);
}

static void check_inputs(checker *c) {
    ppd_buf inputs = {0};
    int found = 0;
    if (!begin(c)) cache_meta_get(c->txn, c->meta, "inputs", &inputs, &found);
    if (!found || !inputs.len) {
        report(c, NULL, "inputs", REBUILD,
               "the cache does not record its inputs; nothing to compare with");
        ppd_buf_free(&inputs);
        return;
    }
    for (char *line = (char *)inputs.data; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        ppd_dataset ds;
        if (!strncmp(line, "graphs\t", 7) || !strncmp(line, "fasta\t", 6)) {
            check_esm_input(c, line);
        } else if (ppd_dataset_from_input(line, &ds) != PPD_OK) {
            report(c, NULL, "input-error", REBUILD, "%s", ppd_errmsg());
        } else {
            /* a data set whose structures/ directory is gone (moved, or a scratch copy removed)
             * is said once, not as one input-error per record */
            int gone = ds.structures_missing;
            if (gone)
                report(c, NULL, "input-error", REBUILD,
                       "%s: no such directory: the sources of the %zu complexes this data set "
                       "lists cannot be compared (run cache-check where they are, or graph-build "
                       "with the data set's new data.data_path)",
                       ds.structures, ds.n);
            for (size_t i = 0; i < ds.n; i++) {
                const ppd_complex_src *it = &ds.items[i];
                c->s->inputs++;
                MDB_val k = {strlen(it->id), (void *)it->id}, iv;
                int rc = mdb_get(c->txn, c->index, &k, &iv);
                if (rc == MDB_NOTFOUND || (rc == 0 && iv.mv_size != sizeof(ppd_index_entry))) {
                    c->s->missing++;
                    report(c, it->id, "missing", REBUILD,
                           "listed in the inputs, no record (run the build stage to make it)%s%s",
                           it->error ? ": " : "", it->error ? it->error : "");
                    continue;
                }
                if (rc || gone) continue; /* reported by the walk, or above */
                if (it->error) {
                    report(c, it->id, "input-error", REBUILD, "%s", it->error);
                    continue;
                }
                ppd_index_entry ie;
                memcpy(&ie, iv.mv_data, sizeof ie);
                uint64_t hr, hl;
                if (ppd_hash_file(it->receptor, &hr) || ppd_hash_file(it->ligand, &hl)) {
                    report(c, it->id, "input-error", REBUILD, "%s", ppd_errmsg());
                    continue;
                }
                if (ppd_graph_inputs_digest(hr, hl) != ie.inputs_digest) {
                    c->s->stale++;
                    report(c, it->id, "stale", REBUILD,
                           "source files changed since the record was built (%s, %s)", it->receptor,
                           it->ligand);
                }
            }
            ppd_dataset_free(&ds);
        }
        line = nl ? nl + 1 : NULL;
    }
    ppd_buf_free(&inputs);
}

/* ---- open and run ------------------------------------------------------------------------------
 */

static void checker_close(checker *c) {
    if (c->txn) mdb_txn_abort(c->txn);
    if (c->env) mdb_env_close(c->env);
    c->txn = NULL;
    c->env = NULL;
    ppd_buf_free(&c->scratch);
}

/* Open env (read-only) without the truncation guard; *truncated set if the file is short. */
static ppd_status open_env(checker *c, const char *dir, int *truncated) {
    *truncated = 0;
    MDB_env *env = NULL;
    int nolock;
    ppd_status st = cache_env_open_readonly(dir, &env, &nolock);
    if (st == PPD_ERR_CORRUPT && strstr(ppd_errmsg(), "truncated")) {
        *truncated = 1;
        report(c, NULL, "truncated", REPAIRABLE, "%s", ppd_errmsg());
        return PPD_OK;
    }
    if (st == PPD_ERR_CORRUPT) { /* not LMDB at all, or its header pages are damaged */
        report(c, NULL, "open", UNFIXABLE, "%s", ppd_errmsg());
        return PPD_OK;
    }
    if (st) return st;
    c->env = env;
    mdb_env_set_assert(env, on_lmdb_assert);
    int rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &c->txn);
    if (rc) return cache_mdb_fail(rc, dir, "read transaction");
    if (cache_env_never_committed(env)) {
        /* Not damage: the writer's first commit creates the databases, so a kill before it leaves
         * an empty environment. Rerunning the writer builds the cache; a repair has nothing to
         * keep. */
        c->s->writer_running = writer_running(dir);
        report(c, NULL, "unsealed", REBUILD, "%s",
               c->s->writer_running
                   ? "a writer is starting on this cache and has not committed yet"
                   : "nothing was committed: the writer was killed or crashed before its first "
                     "commit; rerun it to build the cache (a repair has nothing to keep)");
        return PPD_OK;
    }
    const char *names[3] = {CACHE_DB_META, CACHE_DB_RECORDS, CACHE_DB_INDEX};
    MDB_dbi *dbis[3] = {&c->meta, &c->recs, &c->index};
    for (int i = 0; i < 3; i++) {
        rc = mdb_dbi_open(c->txn, names[i], 0, dbis[i]);
        if (rc) {
            report(c, NULL, "structure", UNFIXABLE, "database '%s' cannot be opened: %s", names[i],
                   mdb_strerror(rc));
            mdb_txn_abort(c->txn);
            c->txn = NULL;
            return PPD_OK;
        }
    }
    /* Committing the read transaction keeps the database handles for the later phases. */
    rc = mdb_txn_commit(c->txn);
    c->txn = NULL;
    if (rc) return cache_mdb_fail(rc, dir, "opening databases");
    c->opened = 1;
    return PPD_OK;
}

typedef void (*walk_fn)(checker *c);

static void guarded_walk(checker *c, walk_fn fn, const char *what) {
    fault_saved old;
    fault_install(&old);
    int sig = sigsetjmp(fault_jmp, 1);
    if (sig == 0) {
        fault_armed = 1;
        fn(c);
        fault_armed = 0;
    } else {
        report(c, NULL, "io-fault", REPAIRABLE, "%s while walking the %s: the data file is damaged",
               sig == SIGABRT ? "LMDB found an unreadable page" : "a memory fault", what);
        c->txn = NULL; /* abandoned: its pages cannot be trusted */
    }
    fault_restore(&old);
}

static void run_walks(checker *c) {
    guarded_walk(c, walk_records, "records");
    guarded_walk(c, walk_index, "index");
}

static ppd_status check_open_env(checker *c) {
    if (check_meta(c) != 0) return PPD_OK;
    run_walks(c);
    if (c->o && c->o->inputs) check_inputs(c);
    return PPD_OK;
}

ppd_status ppd_cache_check(const char *dir, const ppd_check_opts *o, ppd_check_summary *s) {
    memset(s, 0, sizeof *s);
    snprintf(s->record_type, sizeof s->record_type, "?");
    checker c = {.dir = dir, .o = o, .s = s};
    int truncated;
    ppd_status st = open_env(&c, dir, &truncated);
    if (!st && c.opened) st = check_open_env(&c);
    checker_close(&c);
    return st;
}

/* ---- repair ------------------------------------------------------------------------------------
 */

/* A zero-extended copy of a truncated data file: the missing pages read as zeros, which LMDB
 * reports as damaged pages (or our checksums catch) instead of crashing with SIGBUS. Sparse:
 * the extension costs no disk. */
static ppd_status zero_extended_copy(const char *dir, const char *tmpdir) {
    char src[PATH_MAX], dst[PATH_MAX];
    snprintf(src, sizeof src, "%s/data.mdb", dir);
    snprintf(dst, sizeof dst, "%s/data.mdb", tmpdir);
    PPD_TRY(ppd_mkdir_p(tmpdir));
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) return ppd_fail(PPD_ERR_IO, "%s: %s", src, strerror(errno));
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
        close(in);
        return ppd_fail(PPD_ERR_IO, "%s: %s", dst, strerror(errno));
    }
    ppd_status st = PPD_OK;
    static unsigned char buf[1 << 20]; /* streamed: memory does not grow with the cache */
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0)
        for (ssize_t off = 0; off < n && !st;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w <= 0)
                st = ppd_fail(PPD_ERR_IO, "%s: write: %s", dst, strerror(errno));
            else
                off += w;
        }
    if (n < 0 && !st) st = ppd_fail(PPD_ERR_IO, "%s: read: %s", src, strerror(errno));
    close(in);
    /* LMDB's meta page knows the length the file must have: open the copy to ask, then extend. */
    MDB_env *env = NULL;
    MDB_envinfo info;
    MDB_stat ms;
    if (!st && mdb_env_create(&env) == 0) {
        mdb_env_set_maxdbs(env, 4);
        if (mdb_env_open(env, tmpdir, MDB_RDONLY | MDB_NOLOCK, 0644) == 0 &&
            mdb_env_info(env, &info) == 0 && mdb_env_stat(env, &ms) == 0) {
            off_t need = (off_t)(info.me_last_pgno + 1) * ms.ms_psize;
            if (ftruncate(out, need) != 0)
                st = ppd_fail(PPD_ERR_IO, "%s: extend: %s", dst, strerror(errno));
        } else {
            st = ppd_fail(PPD_ERR_CORRUPT, "%s: cannot read LMDB's header from the truncated file",
                          dir);
        }
        mdb_env_close(env);
    }
    close(out);
    return st;
}

static ppd_status copy_meta(checker *c, ppd_cache_writer *w) {
    static const char *const owned[] = {
        "schema", "record_type", "record_format",    "sealed",   "count",   "checksum",
        "params", "params_hash", "params_recovered", "producer", "dropped", NULL};
    MDB_cursor *cur;
    int rc = begin(c);
    if (!rc) rc = mdb_cursor_open(c->txn, c->meta, &cur);
    if (rc) return PPD_OK; /* unreadable meta: the writer's own identity stands */
    MDB_val k, v;
    ppd_status st = PPD_OK;
    char name[256];
    ppd_buf val = {0};
    while (!st && (rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
        if (k.mv_size >= sizeof name) continue;
        memcpy(name, k.mv_data, k.mv_size);
        name[k.mv_size] = 0;
        int skip = 0;
        for (int i = 0; owned[i]; i++) skip |= !strcmp(name, owned[i]);
        if (skip) continue;
        val.len = 0;
        st = ppd_buf_append(&val, v.mv_data, v.mv_size);
        if (!st) st = ppd_cache_writer_set_meta(w, name, (char *)val.data);
    }
    mdb_cursor_close(cur);
    ppd_buf_free(&val);
    return st;
}

/* What a repair needs from the old meta. When the meta cannot be read (e.g. its pages were in
 * the truncated part of the file), the record type and parameter hash come from the first
 * record that validates, and the parameter text is lost (meta params_recovered = 1). */
typedef struct {
    ppd_buf producer, params, dropped;
    int type, lost;
    uint64_t params_hash; /* only when lost */
} old_meta;

static void learn_meta(checker *c, old_meta *m) {
    int f1 = 0, f2 = 0, f3 = 0;
    ppd_buf t = {0};
    m->lost = begin(c) != 0 || cache_meta_get(c->txn, c->meta, "record_type", &t, &f1) != PPD_OK ||
              cache_meta_get(c->txn, c->meta, "params", &m->params, &f2) != PPD_OK ||
              cache_meta_get(c->txn, c->meta, "producer", &m->producer, &f3) != PPD_OK || !f1 ||
              !f2;
    if (!m->lost) {
        int found;
        m->type = cache_rec_type_from_name((char *)t.data);
        cache_meta_get(c->txn, c->meta, "dropped", &m->dropped, &found);
        ppd_check_summary tmp = {0}; /* the checker's own view: trusted params for validation */
        checker q = *c;
        q.s = &tmp;
        q.quiet = 1;
        q.dropped = NULL;
        check_meta(&q);
        c->txn = q.txn;
        c->type = q.type;
        c->meta_trusted = q.meta_trusted;
        c->params_hash = q.params_hash;
        c->knn_k = q.knn_k;
        c->esm_width = q.esm_width;
    } else { /* first record that validates without meta */
        c->type = 0;
        c->meta_trusted = 0;
        MDB_cursor *cur;
        MDB_val k, v, iv;
        if (!begin(c) && !mdb_cursor_open(c->txn, c->recs, &cur)) {
            char key[PPD_CACHE_MAX_KEY + 1];
            while (mdb_cursor_get(cur, &k, &v, MDB_NEXT) == 0) {
                const char *check;
                if (k.mv_size > PPD_CACHE_MAX_KEY) continue;
                memcpy(key, k.mv_data, k.mv_size);
                key[k.mv_size] = 0;
                if (!validate_record(c, &k, &v, &check) || mdb_get(c->txn, c->index, &k, &iv))
                    continue;
                ppd_rec_header h;
                ppd_index_entry ie;
                memcpy(&h, v.mv_data, sizeof h);
                memcpy(&ie, iv.mv_data, sizeof ie);
                m->type = h.type;
                m->params_hash = ie.params_hash;
                break;
            }
            mdb_cursor_close(cur);
        }
        c->type = m->type;
        c->params_hash = m->params_hash;
        c->meta_trusted = m->params_hash != 0;
    }
    ppd_buf_free(&t);
}

static void old_meta_free(old_meta *m) {
    ppd_buf_free(&m->producer);
    ppd_buf_free(&m->params);
    ppd_buf_free(&m->dropped);
}

static int dropped_has(const ppd_buf *dropped, const char *key) {
    if (!dropped->len) return 0;
    size_t n = strlen(key);
    for (const char *p = (const char *)dropped->data; p && *p;) {
        if (!strncmp(p, key, n) && p[n] == '\t') return 1;
        p = strchr(p, '\n');
        if (p) p++;
    }
    return 0;
}

static ppd_status copy_good_records(checker *c, ppd_cache_writer *w, uint64_t *kept) {
    MDB_cursor *cur;
    int rc = begin(c);
    if (!rc) rc = mdb_cursor_open(c->txn, c->recs, &cur);
    if (rc) return PPD_OK; /* nothing readable: every indexed key is dropped below */
    MDB_val k, v, iv;
    char key[PPD_CACHE_MAX_KEY + 1];
    ppd_status st = PPD_OK;
    fault_saved old;
    fault_install(&old);
    if (sigsetjmp(fault_jmp, 1) == 0) {
        fault_armed = 1;
        while (!st && (rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
            const char *check;
            if (k.mv_size > PPD_CACHE_MAX_KEY || memchr(k.mv_data, 0, k.mv_size)) continue;
            memcpy(key, k.mv_data, k.mv_size);
            key[k.mv_size] = 0;
            if (!validate_record(c, &k, &v, &check)) {
                if (!dropped_has(c->dropped, key))
                    ppd_buf_printf(c->dropped, "%s\t%s\t%s\n", key, check, c->detail);
                continue;
            }
            if (mdb_get(c->txn, c->index, &k, &iv) != 0) continue;
            ppd_index_entry ie;
            memcpy(&ie, iv.mv_data, sizeof ie);
            st = ppd_cache_writer_put(w, key, v.mv_data, v.mv_size, ie.inputs_digest,
                                      ie.params_hash);
            if (!st) (*kept)++;
        }
        fault_armed = 0;
        mdb_cursor_close(cur);
    } else {
        c->txn = NULL; /* faulted mid-walk: abandon the transaction and its cursor */
    }
    fault_restore(&old);
    return st;
}

/* mdb_get under the fault guard: 0, MDB_NOTFOUND, another LMDB code, or -1 after a fault (the
 * read transaction is then restarted). */
static int guarded_get(checker *c, MDB_dbi dbi, MDB_val *k, MDB_val *v) {
    fault_saved old;
    fault_install(&old);
    volatile int rc = -1;
    if (sigsetjmp(fault_jmp, 1) == 0) {
        fault_armed = 1;
        rc = mdb_get(c->txn, dbi, k, v);
        fault_armed = 0;
    }
    fault_restore(&old);
    if (rc == -1) {
        c->txn = NULL;
        begin(c);
    }
    return rc;
}

/* Every key the index lists that the cursor walk did not copy: look it up directly (a walk
 * stops at the first damaged leaf; lookups from the root reach the leaves after it). Copied if
 * it validates, listed in `dropped` otherwise. */
static ppd_status recover_indexed_keys(checker *c, ppd_cache_writer *w, ppd_buf *dropped) {
    PPD_TRY(ppd_cache_writer_commit(w));
    ppd_buf keys = {0}; /* "key\0" + index entry, collected first: the walk has its own guard */
    MDB_cursor *cur;
    MDB_val k, v;
    fault_saved old;
    fault_install(&old);
    if (!begin(c) && !mdb_cursor_open(c->txn, c->index, &cur) && sigsetjmp(fault_jmp, 1) == 0) {
        fault_armed = 1;
        while (mdb_cursor_get(cur, &k, &v, MDB_NEXT) == 0) {
            if (k.mv_size > PPD_CACHE_MAX_KEY || memchr(k.mv_data, 0, k.mv_size) ||
                v.mv_size != sizeof(ppd_index_entry))
                continue;
            ppd_buf_append(&keys, k.mv_data, k.mv_size);
            ppd_buf_append(&keys, "", 1);
            ppd_buf_append(&keys, v.mv_data, v.mv_size);
        }
        fault_armed = 0;
        mdb_cursor_close(cur);
    } else {
        c->txn = NULL; /* faulted mid-walk: abandoned with its cursor */
    }
    fault_restore(&old);
    begin(c);
    ppd_status st = PPD_OK;
    for (size_t off = 0; !st && off < keys.len;) {
        const char *key = (const char *)keys.data + off;
        size_t kl = strlen(key);
        ppd_index_entry ie;
        memcpy(&ie, keys.data + off + kl + 1, sizeof ie);
        off += kl + 1 + sizeof ie;
        ppd_index_entry e;
        int found;
        if (ppd_cache_writer_lookup(w, key, &e, &found) || found || dropped_has(dropped, key))
            continue;
        MDB_val rk = {kl, (void *)key}, rv;
        int rc = guarded_get(c, c->recs, &rk, &rv);
        const char *check = "walk";
        if (rc == 0 && validate_record(c, &rk, &rv, &check))
            st = ppd_cache_writer_put(w, key, rv.mv_data, rv.mv_size, ie.inputs_digest,
                                      ie.params_hash);
        else if (rc == 0)
            ppd_buf_printf(dropped, "%s\t%s\t%s\n", key, check, c->detail);
        else
            ppd_buf_printf(dropped, "%s\twalk\tnot readable from the damaged file\n", key);
    }
    ppd_buf_free(&keys);
    return st;
}

/* Write the good records and the meta into new_dir and seal it. */
static ppd_status write_repaired(checker *c, const char *new_dir, ppd_buf *dropped) {
    old_meta m = {0};
    learn_meta(c, &m);
    if (!m.type) {
        old_meta_free(&m);
        return ppd_fail(PPD_ERR_CORRUPT,
                        "%s: neither the meta nor any record is readable; rebuild the cache",
                        c->dir);
    }
    ppd_cache_writer_opts wo = {.record_type = (ppd_rec_type)m.type,
                                .producer = m.producer.len ? (char *)m.producer.data
                                                           : "cache-check --repair",
                                .params = m.lost ? "" : (char *)m.params.data,
                                .params_hash = m.lost ? m.params_hash : 0};
    ppd_cache_writer *w = NULL;
    uint64_t kept = 0;
    c->quiet = 1;
    ppd_status st = ppd_cache_writer_open(new_dir, &wo, &w);
    if (!st && !m.lost) st = copy_meta(c, w);
    if (!st) st = copy_good_records(c, w, &kept);
    if (!st) st = recover_indexed_keys(c, w, dropped);
    if (!st) {
        ppd_buf all = {0};
        ppd_buf_append(&all, m.dropped.data, m.dropped.len);
        ppd_buf_append(&all, dropped->data, dropped->len);
        st = ppd_cache_writer_set_meta(w, "dropped", all.len ? (char *)all.data : "");
        ppd_buf_free(&all);
    }
    if (!st) st = ppd_cache_writer_seal(w);
    ppd_cache_writer_close(w);
    ppd_debug("repair: kept %llu records%s", (unsigned long long)kept,
              m.lost ? " (meta was unreadable)" : "");
    old_meta_free(&m);
    return st;
}

ppd_status ppd_cache_repair(const char *dir, const ppd_check_opts *o, ppd_check_summary *s,
                            int *repaired) {
    *repaired = 0;
    memset(s, 0, sizeof *s);
    snprintf(s->record_type, sizeof s->record_type, "?");
    ppd_buf dropped = {0};
    checker c = {.dir = dir, .o = o, .s = s, .dropped = &dropped};
    char src_tmp[PATH_MAX] = "", new_dir[PATH_MAX];
    int truncated;
    ppd_status st = open_env(&c, dir, &truncated);
    if (!st && c.opened) st = check_open_env(&c);
    if (st) goto out;
    if (s->unfixable) {
        st =
            ppd_fail(PPD_ERR_USAGE,
                     "%s: %llu problem(s) cannot be repaired by dropping records (see the report); "
                     "rebuild the cache",
                     dir, (unsigned long long)s->unfixable);
        goto out;
    }
    if (s->repairable == 0) goto out;
    if (writer_running(dir)) {
        st = ppd_fail(
            PPD_ERR_USAGE,
            "%s: a writer is still running on this cache; repair it after the writer ends", dir);
        goto out;
    }
    if (truncated) { /* read through a zero-extended copy; the walk was skipped, keys come from it
                      */
        snprintf(src_tmp, sizeof src_tmp, "%s.repair-src.%ld", dir, (long)getpid());
        checker_close(&c);
        st = zero_extended_copy(dir, src_tmp);
        int t2;
        c.quiet = 1;
        if (!st) st = open_env(&c, src_tmp, &t2);
        if (!st && !c.opened)
            st =
                ppd_fail(PPD_ERR_CORRUPT,
                         "%s: the roots of LMDB's B-trees were in the lost part of the file, so no "
                         "record can be located; delete the directory and rerun the build stage",
                         dir);
    }
    snprintf(new_dir, sizeof new_dir, "%s.repair.%ld", dir, (long)getpid());
    ppd_remove_tree(new_dir);
    if (!st) st = write_repaired(&c, new_dir, &dropped);
    checker_close(&c);
    if (src_tmp[0]) ppd_remove_tree(src_tmp);
    if (!st) { /* the new cache must check clean before it replaces anything */
        ppd_check_summary verify;
        st = ppd_cache_check(new_dir, NULL, &verify);
        if (!st && verify.problems)
            st = ppd_fail(PPD_ERR_INTERNAL,
                          "%s: the repaired copy still has %llu problem(s); original left in place",
                          new_dir, (unsigned long long)verify.problems);
    }
    if (!st) {
        char stamp[32];
        time_t t = time(NULL);
        struct tm tmv;
        gmtime_r(&t, &tmv);
        strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tmv);
        snprintf(s->damaged_path, sizeof s->damaged_path, "%s.damaged.%s", dir, stamp);
        st = ppd_dir_swap(new_dir, dir);
        if (!st && ppd_dir_exists(new_dir) && rename(new_dir, s->damaged_path) != 0)
            st = ppd_fail(PPD_ERR_IO, "rename %s -> %s: %s", new_dir, s->damaged_path,
                          strerror(errno));
        if (!st) *repaired = 1;
    } else {
        ppd_remove_tree(new_dir);
    }
out:
    checker_close(&c);
    ppd_buf_free(&dropped);
    return st;
}
