/* LMDB record caches: writer, reader, publishing (see ppdock/cache.h, docs/cache-format.md). */
#include "cache_internal.h"

#include "ppdock/hash.h"
#include "ppdock/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

/* ---- shared helpers ----------------------------------------------------------------------------
 */

ppd_status cache_mdb_fail(int rc, const char *dir, const char *what) {
    ppd_status st = PPD_ERR_LMDB;
    if (rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND || rc == MDB_INVALID)
        st = PPD_ERR_CORRUPT;
    else if (rc == MDB_VERSION_MISMATCH)
        st = PPD_ERR_VERSION;
    else if (rc == ENOENT)
        st = PPD_ERR_NOTFOUND;
    else if (rc == EACCES || rc == EROFS || rc == ENOSPC || rc == EIO)
        st = PPD_ERR_IO;
    else if (rc == ENOMEM)
        st = PPD_ERR_NOMEM;
    return ppd_fail(st, "%s: %s: %s", dir, what, mdb_strerror(rc));
}

const char *ppd_rec_type_name(int type) {
    switch (type) {
    case PPD_REC_GRAPH:
        return "graph";
    case PPD_REC_ESM:
        return "esm";
    default:
        return "?";
    }
}

int cache_rec_type_from_name(const char *name) {
    if (!strcmp(name, "graph")) return PPD_REC_GRAPH;
    if (!strcmp(name, "esm")) return PPD_REC_ESM;
    return 0;
}

void cache_now_iso(char out[32]) {
    time_t t = time(NULL);
    struct tm tmv;
    gmtime_r(&t, &tmv);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tmv);
}

ppd_status cache_check_truncation(MDB_env *env, const char *dir) {
    MDB_envinfo info;
    MDB_stat st;
    int rc = mdb_env_info(env, &info);
    if (!rc) rc = mdb_env_stat(env, &st);
    if (rc) return cache_mdb_fail(rc, dir, "reading LMDB environment info");
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    struct stat sb;
    if (stat(path, &sb) != 0) return ppd_fail(PPD_ERR_IO, "%s: %s", path, strerror(errno));
    uint64_t need = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
    if ((uint64_t)sb.st_size < need)
        return ppd_fail(PPD_ERR_CORRUPT,
                        "%s is %lld bytes but LMDB's meta page needs %llu: the file is truncated "
                        "(interrupted copy or full disk?); rebuild it, or run cache-check --repair "
                        "to save the readable records",
                        path, (long long)sb.st_size, (unsigned long long)need);
    return PPD_OK;
}

ppd_status cache_meta_get(MDB_txn *txn, MDB_dbi meta, const char *name, ppd_buf *out, int *found) {
    MDB_val k = {strlen(name), (void *)name}, v;
    int rc = mdb_get(txn, meta, &k, &v);
    *found = 0;
    out->len = 0;
    if (rc == MDB_NOTFOUND) return ppd_buf_append(out, "", 0);
    if (rc) return cache_mdb_fail(rc, "meta", name);
    *found = 1;
    return ppd_buf_append(out, v.mv_data, v.mv_size);
}

ppd_status cache_meta_checksum(MDB_txn *txn, MDB_dbi meta, uint64_t *out) {
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, meta, &c);
    if (rc) return cache_mdb_fail(rc, "meta", "cursor");
    ppd_hasher *h = ppd_hasher_new();
    if (!h) {
        mdb_cursor_close(c);
        return ppd_fail(PPD_ERR_NOMEM, "out of memory");
    }
    MDB_val k, v;
    while ((rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) == 0) {
        if (k.mv_size == 8 && !memcmp(k.mv_data, "checksum", 8)) continue;
        uint32_t kl = (uint32_t)k.mv_size, vl = (uint32_t)v.mv_size;
        ppd_hasher_update(h, &kl, 4);
        ppd_hasher_update(h, k.mv_data, k.mv_size);
        ppd_hasher_update(h, &vl, 4);
        ppd_hasher_update(h, v.mv_data, v.mv_size);
    }
    mdb_cursor_close(c);
    *out = ppd_hasher_digest(h);
    ppd_hasher_free(h);
    if (rc != MDB_NOTFOUND) return cache_mdb_fail(rc, "meta", "walking the meta database");
    return PPD_OK;
}

int cache_env_never_committed(MDB_env *env) {
    MDB_envinfo info;
    return mdb_env_info(env, &info) == 0 && info.me_last_txnid == 0;
}

ppd_status cache_env_open_readonly(const char *dir, MDB_env **out, int *nolock) {
    *out = NULL;
    *nolock = 0;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    if (!ppd_dir_exists(dir)) return ppd_fail(PPD_ERR_NOTFOUND, "%s: no such cache directory", dir);
    if (!ppd_file_exists(path))
        return ppd_fail(PPD_ERR_NOTFOUND, "%s: not a cache (no data.mdb in the directory)", dir);
    for (int attempt = 0; attempt < 2; attempt++) {
        MDB_env *env;
        int rc = mdb_env_create(&env);
        if (rc) return cache_mdb_fail(rc, dir, "mdb_env_create");
        mdb_env_set_maxdbs(env, 4);
        unsigned flags = MDB_RDONLY | MDB_NOTLS | (attempt ? MDB_NOLOCK : 0);
        rc = mdb_env_open(env, dir, flags, 0664);
        if (rc == 0) {
            ppd_status st = cache_check_truncation(env, dir);
            if (st) {
                mdb_env_close(env);
                return st;
            }
            *out = env;
            *nolock = attempt;
            return PPD_OK;
        }
        mdb_env_close(env);
        /* A published cache may sit in a read-only directory where lock.mdb cannot be made. */
        if (attempt == 0 && (rc == EACCES || rc == EROFS || rc == EPERM)) continue;
        if (rc == MDB_INVALID)
            return ppd_fail(PPD_ERR_CORRUPT,
                            "%s: data.mdb is not an LMDB file (or its header is damaged)", dir);
        return cache_mdb_fail(rc, dir, "opening read-only");
    }
    return ppd_fail(PPD_ERR_INTERNAL, "unreachable");
}

/* ---- writer ------------------------------------------------------------------------------------
 */

struct ppd_cache_writer {
    char dir[PATH_MAX];
    MDB_env *env;
    MDB_dbi meta, recs, index;
    int lock_fd;
    ppd_rec_type type;
    uint64_t params_hash;
    size_t batch_bytes;
    size_t map_size;
    ppd_buf batch; /* entries: u32 keylen, u64 vlen, index entry, key, value */
    size_t batch_items;
    ppd_buf pending_meta; /* "name\0value\0" pairs */
    uint64_t commits, growths;
    MDB_txn *rtxn; /* read snapshot for lookups; reset between uses */
};

typedef struct {
    uint32_t keylen;
    uint64_t vlen;
    ppd_index_entry ie;
} batch_head;

uint64_t ppd_cache_writer_params_hash(const ppd_cache_writer *w) {
    return w->params_hash;
}
uint64_t ppd_cache_writer_commits(const ppd_cache_writer *w) {
    return w->commits;
}
uint64_t ppd_cache_writer_map_growths(const ppd_cache_writer *w) {
    return w->growths;
}

static void drop_rtxn(ppd_cache_writer *w) {
    if (w->rtxn) mdb_txn_abort(w->rtxn);
    w->rtxn = NULL;
}

static ppd_status grow_map(ppd_cache_writer *w) {
    drop_rtxn(w);
    size_t next = w->map_size * 2;
    int rc = mdb_env_set_mapsize(w->env, next);
    if (rc) return cache_mdb_fail(rc, w->dir, "growing the map");
    ppd_debug("%s: map full at %zu MB, grown to %zu MB", w->dir, w->map_size >> 20, next >> 20);
    w->map_size = next;
    w->growths++;
    return PPD_OK;
}

static int put_str(MDB_txn *txn, MDB_dbi dbi, const char *name, const char *value) {
    MDB_val k = {strlen(name), (void *)name}, v = {strlen(value), (void *)value};
    return mdb_put(txn, dbi, &k, &v, 0);
}

/* A failed write of data.mdb: LMDB reports a full disk (a short write) or a file size limit as
 * an I/O error, so say which of the two it looks like, and what is kept. */
static ppd_status write_fail(ppd_cache_writer *w, int rc, const char *what) {
    if (rc != EIO && rc != ENOSPC && rc != EFBIG && rc != EDQUOT)
        return cache_mdb_fail(rc, w->dir, what);
    char path[PATH_MAX + 16], why[160] = "";
    snprintf(path, sizeof path, "%s/data.mdb", w->dir);
    struct stat sb;
    struct rlimit lim;
    struct statvfs vfs;
    double file_mb = stat(path, &sb) == 0 ? (double)sb.st_size / (1 << 20) : 0;
    if (getrlimit(RLIMIT_FSIZE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY &&
        (double)lim.rlim_cur / (1 << 20) <= file_mb + (double)w->batch_bytes / (1 << 20))
        snprintf(why, sizeof why, "data.mdb is at the file size limit (ulimit -f: %.1f MiB)",
                 (double)lim.rlim_cur / (1 << 20));
    else if (statvfs(w->dir, &vfs) == 0)
        snprintf(why, sizeof why,
                 "the file system has %.1f MiB free (data.mdb: %.1f MiB), and a full disk or "
                 "quota shows as this error",
                 (double)vfs.f_bavail * (double)vfs.f_frsize / (1 << 20), file_mb);
    char kept[96] = "no batch was committed before it: make room and rerun";
    if (w->commits)
        snprintf(kept, sizeof kept,
                 "the %llu batch%s committed before it %s kept: make room and rerun to resume",
                 (unsigned long long)w->commits, w->commits == 1 ? "" : "es",
                 w->commits == 1 ? "is" : "are");
    return ppd_fail(PPD_ERR_IO, "%s: %s: %s; %s; %s", w->dir, what, mdb_strerror(rc), why, kept);
}

/* A write transaction body; returns an LMDB code (MDB_MAP_FULL triggers grow-and-replay). */
typedef int (*txn_body)(ppd_cache_writer *w, MDB_txn *txn, void *ctx);

static ppd_status run_write_txn(ppd_cache_writer *w, txn_body body, void *ctx, const char *what) {
    for (;;) {
        drop_rtxn(w);
        MDB_txn *txn;
        int rc = mdb_txn_begin(w->env, NULL, 0, &txn);
        if (rc == MDB_MAP_RESIZED) { /* another process grew it: adopt the new size */
            mdb_env_set_mapsize(w->env, 0);
            rc = mdb_txn_begin(w->env, NULL, 0, &txn);
        }
        if (rc) return cache_mdb_fail(rc, w->dir, what);
        rc = body(w, txn, ctx);
        if (rc) {
            mdb_txn_abort(txn);
        } else {
            rc = mdb_txn_commit(txn);
        }
        if (rc == MDB_MAP_FULL) {
            PPD_TRY(grow_map(w)); /* the batch is still in memory: replay it */
            continue;
        }
        if (rc) return write_fail(w, rc, what);
        return PPD_OK;
    }
}

static int body_pending_meta(ppd_cache_writer *w, MDB_txn *txn) {
    const char *p = (const char *)w->pending_meta.data, *end = p + w->pending_meta.len;
    while (p && p < end) {
        const char *name = p, *value = name + strlen(name) + 1;
        int rc = put_str(txn, w->meta, name, value);
        if (rc) return rc;
        p = value + strlen(value) + 1;
    }
    return 0;
}

static int body_batch(ppd_cache_writer *w, MDB_txn *txn, void *ctx) {
    int rc = body_pending_meta(w, txn);
    if (rc) return rc;
    size_t off = 0;
    while (off < w->batch.len) {
        batch_head h;
        memcpy(&h, w->batch.data + off, sizeof h);
        unsigned char *key = w->batch.data + off + sizeof h;
        MDB_val k = {h.keylen, key}, v = {h.vlen, key + h.keylen}, iv = {sizeof h.ie, &h.ie};
        rc = mdb_put(txn, w->recs, &k, &v, 0);
        if (!rc) rc = mdb_put(txn, w->index, &k, &iv, 0);
        if (rc) return rc;
        off += sizeof h + h.keylen + h.vlen;
    }
    return 0;
}

ppd_status ppd_cache_writer_commit(ppd_cache_writer *w) {
    if (w->batch_items == 0 && w->pending_meta.len == 0) return PPD_OK;
    PPD_TRY(run_write_txn(w, body_batch, NULL, "committing a batch"));
    w->commits++;
    w->batch.len = 0;
    w->batch_items = 0;
    w->pending_meta.len = 0;
    return PPD_OK;
}

typedef struct {
    const ppd_cache_writer_opts *o;
    ppd_status st;
    char msg[512];
} open_ctx;

static int body_open(ppd_cache_writer *w, MDB_txn *txn, void *p) {
    open_ctx *c = p;
    int rc;
    if ((rc = mdb_dbi_open(txn, CACHE_DB_META, MDB_CREATE, &w->meta))) return rc;
    if ((rc = mdb_dbi_open(txn, CACHE_DB_RECORDS, MDB_CREATE, &w->recs))) return rc;
    if ((rc = mdb_dbi_open(txn, CACHE_DB_INDEX, MDB_CREATE, &w->index))) return rc;
    ppd_buf b = {0};
    int found = 0;
    if (cache_meta_get(txn, w->meta, "schema", &b, &found) == PPD_OK && found) {
        if (strcmp((char *)b.data, PPD_CACHE_SCHEMA) != 0) {
            c->st = PPD_ERR_VERSION;
            snprintf(c->msg, sizeof c->msg,
                     "%s: cache schema '%s'; this build writes '%s' (use a new directory)", w->dir,
                     (char *)b.data, PPD_CACHE_SCHEMA);
        } else if (cache_meta_get(txn, w->meta, "record_type", &b, &found) == PPD_OK && found &&
                   cache_rec_type_from_name((char *)b.data) != (int)c->o->record_type) {
            c->st = PPD_ERR_USAGE;
            snprintf(c->msg, sizeof c->msg,
                     "%s holds '%s' records, not '%s': choose another output directory", w->dir,
                     (char *)b.data, ppd_rec_type_name(c->o->record_type));
        }
    } else if (found == 0) {
        /* New cache (or an empty environment): write the identity once. */
        char now[32];
        cache_now_iso(now);
        if ((rc = put_str(txn, w->meta, "schema", PPD_CACHE_SCHEMA)) ||
            (rc = put_str(txn, w->meta, "record_type", ppd_rec_type_name(c->o->record_type))) ||
            (rc = put_str(txn, w->meta, "record_format", "1")) ||
            (rc = put_str(txn, w->meta, "created", now))) {
            ppd_buf_free(&b);
            return rc;
        }
    }
    ppd_buf_free(&b);
    if (c->st) return 0;
    char hex[17];
    ppd_hash_hex(w->params_hash, hex);
    if ((rc = put_str(txn, w->meta, "sealed", "0")) ||
        (rc = put_str(txn, w->meta, "producer", c->o->producer ? c->o->producer : "ppdock")) ||
        (rc = put_str(txn, w->meta, "params", c->o->params ? c->o->params : "")) ||
        (rc = put_str(txn, w->meta, "params_hash", hex)))
        return rc;
    MDB_val rk = {16, "params_recovered"};
    if (c->o->params_hash)
        rc = put_str(txn, w->meta, "params_recovered", "1");
    else if ((rc = mdb_del(txn, w->meta, &rk, NULL)) == MDB_NOTFOUND)
        rc = 0;
    return rc;
}

static ppd_status take_writer_lock(ppd_cache_writer *w) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/writer.lock", w->dir);
    return ppd_lock_exclusive(
        path, "another process writing this cache; wait for it or use another output directory",
        &w->lock_fd);
}

ppd_status ppd_cache_writer_open(const char *dir, const ppd_cache_writer_opts *o,
                                 ppd_cache_writer **out) {
    *out = NULL;
    ppd_cache_writer *w = calloc(1, sizeof *w);
    if (!w) return ppd_fail(PPD_ERR_NOMEM, "out of memory");
    w->lock_fd = -1;
    snprintf(w->dir, sizeof w->dir, "%s", dir);
    w->type = o->record_type;
    w->batch_bytes = o->batch_bytes ? o->batch_bytes : (size_t)32 << 20;
    w->map_size = o->map_bytes ? o->map_bytes : (size_t)1 << 30;
    w->params_hash =
        o->params_hash ? o->params_hash
                       : ppd_hash64(o->params ? o->params : "", o->params ? strlen(o->params) : 0);
    ppd_status st = ppd_mkdir_p(dir);
    if (!st) st = take_writer_lock(w);
    int rc = 0;
    if (!st && (rc = mdb_env_create(&w->env))) st = cache_mdb_fail(rc, dir, "mdb_env_create");
    if (!st) {
        mdb_env_set_maxdbs(w->env, 4);
        /* LMDB never shrinks a map below the existing file; set_mapsize(0) below adopts it. */
        mdb_env_set_mapsize(w->env, w->map_size);
        /* MDB_NOTLS: the read snapshot belongs to the txn, not to the thread, so a writer may
         * move between threads (ppdock/cache_queue.h puts on its own thread) */
        rc = mdb_env_open(w->env, dir, MDB_NOTLS, 0664);
        if (rc == MDB_INVALID)
            st = ppd_fail(PPD_ERR_CORRUPT,
                          "%s: data.mdb is not an LMDB file (or its header is damaged); "
                          "move it away or choose another directory",
                          dir);
        else if (rc)
            st = cache_mdb_fail(rc, dir, "opening for writing");
    }
    if (!st) {
        MDB_envinfo info;
        mdb_env_info(w->env, &info);
        if (info.me_mapsize > w->map_size) w->map_size = info.me_mapsize;
        st = cache_check_truncation(w->env, dir);
    }
    if (!st) {
        open_ctx c = {.o = o};
        st = run_write_txn(w, body_open, &c, "initialising meta");
        if (!st && c.st) st = ppd_fail(c.st, "%s", c.msg);
    }
    if (st) {
        ppd_cache_writer_close(w);
        return st;
    }
    *out = w;
    return PPD_OK;
}

static ppd_status begin_read(ppd_cache_writer *w) {
    int rc;
    if (w->rtxn)
        rc = mdb_txn_renew(w->rtxn);
    else
        rc = mdb_txn_begin(w->env, NULL, MDB_RDONLY, &w->rtxn);
    if (rc) {
        w->rtxn = NULL;
        return cache_mdb_fail(rc, w->dir, "starting a read transaction");
    }
    return PPD_OK;
}

static ppd_status check_key(const char *key) {
    size_t n = strlen(key);
    if (n == 0 || n > PPD_CACHE_MAX_KEY)
        return ppd_fail(PPD_ERR_USAGE, "cache key '%.40s%s' is %zu bytes; keys are 1 to %d bytes",
                        key, n > 40 ? "..." : "", n, PPD_CACHE_MAX_KEY);
    return PPD_OK;
}

ppd_status ppd_cache_writer_lookup(ppd_cache_writer *w, const char *key, ppd_index_entry *e,
                                   int *found) {
    *found = 0;
    PPD_TRY(check_key(key));
    PPD_TRY(begin_read(w));
    MDB_val k = {strlen(key), (void *)key}, v;
    int rc = mdb_get(w->rtxn, w->index, &k, &v);
    ppd_status st = PPD_OK;
    if (rc == 0 && v.mv_size == sizeof *e) {
        memcpy(e, v.mv_data, sizeof *e);
        *found = 1;
    } else if (rc == 0) {
        st = PPD_OK; /* a malformed index entry counts as absent: the record gets rebuilt */
    } else if (rc != MDB_NOTFOUND) {
        st = cache_mdb_fail(rc, w->dir, key);
    }
    mdb_txn_reset(w->rtxn);
    return st;
}

ppd_status ppd_cache_writer_verify(ppd_cache_writer *w, const char *key, const ppd_index_entry *e,
                                   int *ok) {
    *ok = 0;
    PPD_TRY(check_key(key));
    PPD_TRY(begin_read(w));
    MDB_val k = {strlen(key), (void *)key}, v;
    int rc = mdb_get(w->rtxn, w->recs, &k, &v);
    ppd_status st = PPD_OK;
    if (rc == 0) {
        ppd_rec_view view;
        if (ppd_rec_parse(v.mv_data, v.mv_size, key, strlen(key), 1, &view) == PPD_OK) {
            if (view.header.checksum == e->checksum && v.mv_size == e->value_len &&
                view.header.type == w->type)
                *ok = 1;
            else
                ppd_fail(PPD_ERR_CORRUPT, "record does not match its index entry");
        }
    } else if (rc == MDB_NOTFOUND) {
        ppd_fail(PPD_ERR_NOTFOUND, "record missing");
    } else {
        st = cache_mdb_fail(rc, w->dir, key);
    }
    mdb_txn_reset(w->rtxn);
    return st;
}

ppd_status ppd_cache_writer_put(ppd_cache_writer *w, const char *key, const void *value, size_t len,
                                uint64_t inputs_digest, uint64_t params_hash) {
    PPD_TRY(check_key(key));
    ppd_rec_view view;
    if (ppd_rec_parse(value, len, key, strlen(key), 1, &view) != PPD_OK)
        return ppd_fail_ctx(PPD_ERR_INTERNAL, "refusing to store an invalid record under '%s'",
                            key);
    batch_head h = {.keylen = (uint32_t)strlen(key), .vlen = len};
    h.ie = (ppd_index_entry){view.header.checksum, len, inputs_digest, params_hash};
    size_t need = w->batch.len + sizeof h + h.keylen + len + 1;
    if (need > w->batch.cap) { /* grow to the batch size at once, never by doubling past it */
        size_t want = need > w->batch_bytes + sizeof h + h.keylen + len + 1
                          ? need
                          : w->batch_bytes + sizeof h + h.keylen + len + 1;
        unsigned char *p = realloc(w->batch.data, want);
        if (!p) return ppd_fail(PPD_ERR_NOMEM, "cannot hold a %zu-byte write batch", want);
        w->batch.data = p;
        w->batch.cap = want;
    }
    ppd_buf_append(&w->batch, &h, sizeof h);
    ppd_buf_append(&w->batch, key, h.keylen);
    ppd_buf_append(&w->batch, value, len);
    w->batch_items++;
    if (w->batch.len >= w->batch_bytes) return ppd_cache_writer_commit(w);
    return PPD_OK;
}

ppd_status ppd_cache_writer_set_meta(ppd_cache_writer *w, const char *name, const char *value) {
    PPD_TRY(ppd_buf_append(&w->pending_meta, name, strlen(name) + 1));
    return ppd_buf_append(&w->pending_meta, value, strlen(value) + 1);
}

ppd_status ppd_cache_writer_get_meta(ppd_cache_writer *w, const char *name, ppd_buf *out) {
    PPD_TRY(begin_read(w));
    int found;
    ppd_status st = cache_meta_get(w->rtxn, w->meta, name, out, &found);
    mdb_txn_reset(w->rtxn);
    if (!st && !found) st = ppd_fail(PPD_ERR_NOTFOUND, "%s: meta '%s' not set", w->dir, name);
    return st;
}

/* "dropped" lines are "key\tcheck\tdetail\n"; keep those whose key is still absent. */
static int prune_dropped(ppd_cache_writer *w, MDB_txn *txn) {
    ppd_buf cur = {0}, keep = {0};
    int found, rc = 0;
    if (cache_meta_get(txn, w->meta, "dropped", &cur, &found) != PPD_OK || !found) goto done;
    for (char *line = (char *)cur.data; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        char *tab = strchr(line, '\t');
        MDB_val k = {tab ? (size_t)(tab - line) : strlen(line), line}, v;
        if (mdb_get(txn, w->recs, &k, &v) == MDB_NOTFOUND) ppd_buf_printf(&keep, "%s\n", line);
        line = nl ? nl + 1 : NULL;
    }
    if (keep.len) {
        rc = put_str(txn, w->meta, "dropped", (char *)keep.data);
    } else {
        MDB_val k = {7, "dropped"};
        rc = mdb_del(txn, w->meta, &k, NULL);
        if (rc == MDB_NOTFOUND) rc = 0;
    }
done:
    ppd_buf_free(&cur);
    ppd_buf_free(&keep);
    return rc;
}

static int body_seal(ppd_cache_writer *w, MDB_txn *txn, void *ctx) {
    int rc = body_pending_meta(w, txn);
    if (rc) return rc;
    MDB_stat ms;
    if ((rc = mdb_stat(txn, w->recs, &ms))) return rc;
    char count[32], now[32], hex[17];
    snprintf(count, sizeof count, "%zu", ms.ms_entries);
    cache_now_iso(now);
    if ((rc = prune_dropped(w, txn)) || (rc = put_str(txn, w->meta, "count", count)) ||
        (rc = put_str(txn, w->meta, "updated", now)) || (rc = put_str(txn, w->meta, "sealed", "1")))
        return rc;
    uint64_t sum;
    if (cache_meta_checksum(txn, w->meta, &sum) != PPD_OK) return MDB_CORRUPTED;
    ppd_hash_hex(sum, hex);
    return put_str(txn, w->meta, "checksum", hex);
}

ppd_status ppd_cache_writer_seal(ppd_cache_writer *w) {
    PPD_TRY(ppd_cache_writer_commit(w));
    PPD_TRY(run_write_txn(w, body_seal, NULL, "sealing"));
    w->pending_meta.len = 0;
    return PPD_OK;
}

void ppd_cache_writer_close(ppd_cache_writer *w) {
    if (!w) return;
    drop_rtxn(w);
    if (w->env) mdb_env_close(w->env);
    if (w->lock_fd >= 0) close(w->lock_fd); /* releases the flock */
    ppd_buf_free(&w->batch);
    ppd_buf_free(&w->pending_meta);
    free(w);
}

/* ---- reader ------------------------------------------------------------------------------------
 */

struct ppd_cache_reader {
    char dir[PATH_MAX];
    MDB_env *env;
    MDB_dbi meta, recs, index;
    MDB_txn *txn;
    int type, sealed;
};

void ppd_cache_reader_close(ppd_cache_reader *r) {
    if (!r) return;
    if (r->txn) mdb_txn_abort(r->txn);
    if (r->env) mdb_env_close(r->env);
    free(r);
}

ppd_status ppd_cache_reader_open(const char *dir, ppd_cache_reader **out) {
    *out = NULL;
    ppd_cache_reader *r = calloc(1, sizeof *r);
    if (!r) return ppd_fail(PPD_ERR_NOMEM, "out of memory");
    snprintf(r->dir, sizeof r->dir, "%s", dir);
    int nolock;
    ppd_status st = cache_env_open_readonly(dir, &r->env, &nolock);
    int rc = 0;
    if (!st && (rc = mdb_txn_begin(r->env, NULL, MDB_RDONLY, &r->txn)))
        st = cache_mdb_fail(rc, dir, "read transaction");
    if (!st && ((rc = mdb_dbi_open(r->txn, CACHE_DB_META, 0, &r->meta)) ||
                (rc = mdb_dbi_open(r->txn, CACHE_DB_RECORDS, 0, &r->recs)) ||
                (rc = mdb_dbi_open(r->txn, CACHE_DB_INDEX, 0, &r->index))))
        st = rc != MDB_NOTFOUND ? cache_mdb_fail(rc, dir, "opening databases")
             : cache_env_never_committed(r->env)
                 ? ppd_fail(PPD_ERR_CORRUPT,
                            "%s: nothing was committed to this cache (its writer stopped before "
                            "the first commit); rerun the stage that builds it",
                            dir)
                 : ppd_fail(PPD_ERR_CORRUPT,
                            "%s: not a ppdock cache (no meta/records/index databases)", dir);
    ppd_buf b = {0};
    int found = 0;
    if (!st) st = cache_meta_get(r->txn, r->meta, "schema", &b, &found);
    if (!st && (!found || strcmp((char *)b.data, PPD_CACHE_SCHEMA) != 0))
        st = ppd_fail(PPD_ERR_VERSION, "%s: cache schema '%s', this build reads '%s'", dir,
                      found ? (char *)b.data : "(none)", PPD_CACHE_SCHEMA);
    if (!st && !(st = cache_meta_get(r->txn, r->meta, "record_type", &b, &found)) && found)
        r->type = cache_rec_type_from_name((char *)b.data);
    if (!st && !(st = cache_meta_get(r->txn, r->meta, "sealed", &b, &found)))
        r->sealed = found && !strcmp((char *)b.data, "1");
    ppd_buf_free(&b);
    if (st) {
        ppd_cache_reader_close(r);
        return st;
    }
    *out = r;
    return PPD_OK;
}

int ppd_cache_reader_sealed(ppd_cache_reader *r) {
    return r->sealed;
}
int ppd_cache_reader_record_type(ppd_cache_reader *r) {
    return r->type;
}

ppd_status ppd_cache_reader_meta(ppd_cache_reader *r, const char *name, ppd_buf *out) {
    int found;
    PPD_TRY(cache_meta_get(r->txn, r->meta, name, out, &found));
    if (!found) return ppd_fail(PPD_ERR_NOTFOUND, "%s: meta '%s' not set", r->dir, name);
    return PPD_OK;
}

ppd_status ppd_cache_reader_get(ppd_cache_reader *r, const char *key, ppd_rec_view *out) {
    PPD_TRY(check_key(key));
    MDB_val k = {strlen(key), (void *)key}, v;
    int rc = mdb_get(r->txn, r->recs, &k, &v);
    if (rc == MDB_NOTFOUND) return ppd_fail(PPD_ERR_NOTFOUND, "%s: no record '%s'", r->dir, key);
    if (rc) return cache_mdb_fail(rc, r->dir, key);
    if (ppd_rec_parse(v.mv_data, v.mv_size, key, strlen(key), 1, out) != PPD_OK)
        return ppd_fail_ctx(PPD_ERR_CORRUPT, "%s: record '%s'", r->dir, key);
    return PPD_OK;
}

struct ppd_cache_cursor {
    ppd_cache_reader *r;
    MDB_cursor *cur;
    const void *last; /* the record returned last, released on the next call */
    size_t last_len;
};

ppd_status ppd_cache_reader_cursor(ppd_cache_reader *r, ppd_cache_cursor **out) {
    *out = NULL;
    ppd_cache_cursor *c = calloc(1, sizeof *c);
    if (!c) return ppd_fail(PPD_ERR_NOMEM, "out of memory");
    c->r = r;
    int rc = mdb_cursor_open(r->txn, r->recs, &c->cur);
    if (rc) {
        free(c);
        return cache_mdb_fail(rc, r->dir, "opening a cursor");
    }
    *out = c;
    return PPD_OK;
}

ppd_status ppd_cache_cursor_next(ppd_cache_cursor *c, char key[PPD_CACHE_MAX_KEY + 1],
                                 ppd_rec_view *view, int *done) {
    MDB_val k, v;
    *done = 0;
    key[0] = 0;
    int rc = mdb_cursor_get(c->cur, &k, &v, MDB_NEXT);
    if (rc == MDB_NOTFOUND) {
        *done = 1;
        return PPD_OK;
    }
    if (rc) return cache_mdb_fail(rc, c->r->dir, "walking the records");
    ppd_cache_release(c->last, c->last_len); /* the previous record: RSS bounded (cache.h) */
    c->last = v.mv_data;
    c->last_len = v.mv_size;
    size_t n = k.mv_size > PPD_CACHE_MAX_KEY ? PPD_CACHE_MAX_KEY : k.mv_size;
    memcpy(key, k.mv_data, n);
    key[n] = 0;
    if (ppd_rec_parse(v.mv_data, v.mv_size, k.mv_data, k.mv_size, 1, view) != PPD_OK)
        return ppd_fail_ctx(PPD_ERR_CORRUPT, "%s: record '%s'", c->r->dir, key);
    return PPD_OK;
}

void ppd_cache_cursor_close(ppd_cache_cursor *c) {
    if (!c) return;
    mdb_cursor_close(c->cur);
    free(c);
}

uint64_t ppd_cache_reader_count(ppd_cache_reader *r) {
    MDB_stat ms;
    return mdb_stat(r->txn, r->recs, &ms) == 0 ? ms.ms_entries : 0;
}

ppd_status ppd_cache_reader_refresh(ppd_cache_reader *r) {
    mdb_txn_reset(r->txn);
    int rc = mdb_txn_renew(r->txn);
    if (rc) return cache_mdb_fail(rc, r->dir, "renewing the read transaction");
    return PPD_OK;
}

/* ---- publishing --------------------------------------------------------------------------------
 */

static ppd_status fsync_file(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ppd_fail(PPD_ERR_IO, "%s: %s", path, strerror(errno));
    int rc = fsync(fd);
    close(fd);
    if (rc != 0) return ppd_fail(PPD_ERR_IO, "%s: fsync: %s", path, strerror(errno));
    return PPD_OK;
}

ppd_status ppd_cache_publish(const char *src, const char *dst) {
    ppd_cache_reader *r;
    PPD_TRY(ppd_cache_reader_open(src, &r));
    if (!r->sealed) {
        ppd_cache_reader_close(r);
        return ppd_fail(PPD_ERR_USAGE,
                        "%s is not sealed (its writer did not finish); rerun the stage first", src);
    }
    char tmp[PATH_MAX], file[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", dst, (long)getpid());
    ppd_remove_tree(tmp);
    ppd_status st = ppd_mkdir_p(tmp);
    if (!st) {
        int rc = mdb_env_copy2(r->env, tmp, MDB_CP_COMPACT);
        if (rc) st = cache_mdb_fail(rc, tmp, "compacting copy");
    }
    ppd_cache_reader_close(r);
    snprintf(file, sizeof file, "%s/data.mdb", tmp);
    if (!st) st = fsync_file(file);
    if (!st) st = ppd_fsync_dir(tmp);
    if (!st) { /* the copy must open and be sealed before it replaces anything */
        ppd_cache_reader *chk;
        st = ppd_cache_reader_open(tmp, &chk);
        if (!st && !chk->sealed) st = ppd_fail(PPD_ERR_INTERNAL, "%s: copy is not sealed", tmp);
        ppd_cache_reader_close(chk);
    }
    snprintf(file, sizeof file, "%s/lock.mdb", tmp);
    unlink(file);
    if (!st) st = ppd_dir_swap(tmp, dst);
    if (!st && ppd_dir_exists(tmp)) st = ppd_remove_tree(tmp); /* the replaced cache */
    if (st) ppd_remove_tree(tmp);
    return st;
}

int ppd_cache_param(const char *params, const char *name, char *out, size_t cap) {
    size_t n = strlen(name);
    for (const char *p = params; p && *p;) {
        if (!strncmp(p, name, n) && p[n] == '=') {
            const char *v = p + n + 1, *e = strchr(v, '\n');
            size_t len = e ? (size_t)(e - v) : strlen(v);
            snprintf(out, cap, "%.*s", (int)len, v);
            return 1;
        }
        p = strchr(p, '\n');
        if (p) p++;
    }
    return 0;
}

void ppd_cache_release(const void *data, size_t len) {
    if (!data || !len) return;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), a = (uintptr_t)data;
    uintptr_t start = a & ~(page - 1), end = (a + len + page - 1) & ~(page - 1);
    madvise((void *)start, end - start, MADV_DONTNEED);
}
