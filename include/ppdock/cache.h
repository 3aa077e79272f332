/* ppdock/cache.h — LMDB record caches: one environment (directory) per stage output.
 *
 * A cache directory holds an LMDB environment (data.mdb, lock.mdb) with three databases:
 *   "meta"     text settings: schema, record type, producer, params (+ hash), inputs, count,
 *              sealed, created/updated times, dropped (keys removed by a repair), checksum
 *   "records"  key -> one record (ppdock/record.h), e.g. complex id -> residue graph
 *   "index"    key -> ppd_index_entry: the record's checksum and length and what it was made
 *              from; lets a checker name a deleted record and a builder skip unchanged work
 *              without reading the records
 * The exact layout is in docs/cache-format.md.
 *
 * Writers (one per cache; a second writer gets PPD_ERR_IO "locked by another process"):
 *  - unseal first (meta sealed=0 in the first transaction), so a crash leaves a cache that
 *    every reader sees as unfinished;
 *  - keep a batch of puts in memory and commit it when it reaches batch_bytes: a kill -9 loses
 *    at most the batch in memory, never a committed record;
 *  - on MDB_MAP_FULL (from put or from commit) abort, double the map, replay the batch;
 *  - seal last: count, sealed=1 and the meta checksum in one final transaction.
 * Readers open read-only (MDB_RDONLY; MDB_NOLOCK when the directory is not writable, e.g. a
 * published read-only cache), check the data file is as long as LMDB's meta page says (a
 * truncated file would otherwise crash the reader with SIGBUS), and map the file: host memory
 * does not grow with the cache size.
 *
 * Do not put caches on NFS/Lustre for writing (LMDB needs local locking); build on node-local
 * disk and publish with ppd_cache_publish (slurm/ scripts show how).
 */
#ifndef PPDOCK_CACHE_H
#define PPDOCK_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "ppdock/fsutil.h"
#include "ppdock/record.h"
#include "ppdock/status.h"

#define PPD_CACHE_SCHEMA  "ppdock-cache/1"
#define PPD_CACHE_MAX_KEY 511

/* Value of the "index" database, 32 bytes little-endian. */
typedef struct {
    uint64_t checksum;      /* copy of the record header's checksum */
    uint64_t value_len;     /* bytes of the record */
    uint64_t inputs_digest; /* what the record was made from (graph: XXH3 of the two files) */
    uint64_t params_hash;   /* the parameters that shaped it (graph: knn_size, resolution, ...) */
} ppd_index_entry;
_Static_assert(sizeof(ppd_index_entry) == 32, "index entry is 32 bytes on disk");

const char *ppd_rec_type_name(int type); /* "graph", "esm", "?" */

/* The value of a "name=value" line of a meta params text (NUL-terminated) into out (truncated
 * to cap); returns 0 if the name is absent. */
int ppd_cache_param(const char *params, const char *name, char *out, size_t cap);

/* ---- writer ------------------------------------------------------------------------------------
 */

typedef struct ppd_cache_writer ppd_cache_writer;

typedef struct {
    ppd_rec_type record_type;
    const char *producer; /* "graph-build 0.1.0" */
    const char *params;   /* canonical parameter text; meta params_hash = XXH3 of it */
    uint64_t params_hash; /* 0: XXH3 of params. Else this hash, with meta params_recovered=1
                           * (repair of a cache whose meta was lost: the records' hash is
                           * known, the text is not) */
    size_t batch_bytes;   /* commit threshold; 0 = 32 MiB */
    size_t map_bytes;     /* initial map size; 0 = 1 GiB (address space, not memory) */
} ppd_cache_writer_opts;

/* Create `dir` if needed and open it for writing. A writer is used by one thread at a time, not
 * necessarily the one that opened it (ppdock/cache_queue.h puts from its own thread). An existing
 * cache must have the same schema and record type (PPD_ERR_VERSION / PPD_ERR_USAGE otherwise,
 * naming both). Unseals it. Errors: PPD_ERR_IO (directory, lock held by another writer),
 * PPD_ERR_CORRUPT (data file shorter than LMDB expects: repair or delete it), PPD_ERR_LMDB. */
ppd_status ppd_cache_writer_open(const char *dir, const ppd_cache_writer_opts *o,
                                 ppd_cache_writer **out);
/* params_hash of the writer's params (what new records should carry). */
uint64_t ppd_cache_writer_params_hash(const ppd_cache_writer *w);
/* Index entry of a committed record (*found = 0 if absent). */
ppd_status ppd_cache_writer_lookup(ppd_cache_writer *w, const char *key, ppd_index_entry *e,
                                   int *found);
/* Whether a committed record exists, parses and matches its index entry's checksum and length
 * (*ok = 0 otherwise, with the reason in ppd_errmsg()). */
ppd_status ppd_cache_writer_verify(ppd_cache_writer *w, const char *key, const ppd_index_entry *e,
                                   int *ok);
/* Queue a record (copied). Commits the batch when it reaches batch_bytes. The value must be a
 * sealed record; its checksum and length go into the index with the two digests. */
ppd_status ppd_cache_writer_put(ppd_cache_writer *w, const char *key, const void *value, size_t len,
                                uint64_t inputs_digest, uint64_t params_hash);
/* Commit the batch in memory now. */
ppd_status ppd_cache_writer_commit(ppd_cache_writer *w);
/* Set a meta value in the next commit (e.g. "inputs"). Names "sealed", "count" and "checksum"
 * belong to the writer. */
ppd_status ppd_cache_writer_set_meta(ppd_cache_writer *w, const char *name, const char *value);
/* Committed meta value (PPD_ERR_NOTFOUND if absent). */
ppd_status ppd_cache_writer_get_meta(ppd_cache_writer *w, const char *name, ppd_buf *out);
/* Commit, then seal: count = records, removes rebuilt keys from "dropped", sealed = 1, checksum. */
ppd_status ppd_cache_writer_seal(ppd_cache_writer *w);
/* Records committed so far in this session, map growths (for reports and tests). */
uint64_t ppd_cache_writer_commits(const ppd_cache_writer *w);
uint64_t ppd_cache_writer_map_growths(const ppd_cache_writer *w);
/* Close; a batch not yet committed is dropped (as a crash would). NULL is fine. */
void ppd_cache_writer_close(ppd_cache_writer *w);

/* ---- reader ------------------------------------------------------------------------------------
 */

typedef struct ppd_cache_reader ppd_cache_reader;

/* Open read-only. Checks: LMDB opens, data file not truncated, meta schema is PPD_CACHE_SCHEMA.
 * Errors: PPD_ERR_NOTFOUND (no cache there), PPD_ERR_CORRUPT (truncated file, unreadable meta),
 * PPD_ERR_VERSION (another schema), PPD_ERR_LMDB. An unsealed cache opens (callers decide). */
ppd_status ppd_cache_reader_open(const char *dir, ppd_cache_reader **out);
/* Meta value as text into out (NUL-terminated). PPD_ERR_NOTFOUND if absent. */
ppd_status ppd_cache_reader_meta(ppd_cache_reader *r, const char *name, ppd_buf *out);
int ppd_cache_reader_sealed(ppd_cache_reader *r);
int ppd_cache_reader_record_type(ppd_cache_reader *r); /* ppd_rec_type or 0 */
/* Look up and verify one record (structure and checksum). The view points into the map and is
 * valid until the next get/refresh/close. PPD_ERR_NOTFOUND when absent, PPD_ERR_CORRUPT. */
ppd_status ppd_cache_reader_get(ppd_cache_reader *r, const char *key, ppd_rec_view *out);
/* Walk the records in key order. Each step copies the key (NUL-terminated) and verifies the
 * record (structure and checksum); *done = 1 after the last. The view is valid until the next
 * step. Errors: PPD_ERR_CORRUPT naming the key (the walk can go on with the next step),
 * PPD_ERR_LMDB / PPD_ERR_CORRUPT from a damaged B-tree (stop). */
typedef struct ppd_cache_cursor ppd_cache_cursor;
ppd_status ppd_cache_reader_cursor(ppd_cache_reader *r, ppd_cache_cursor **out);
ppd_status ppd_cache_cursor_next(ppd_cache_cursor *c, char key[PPD_CACHE_MAX_KEY + 1],
                                 ppd_rec_view *view, int *done);
void ppd_cache_cursor_close(ppd_cache_cursor *c);
/* Number of records (LMDB's count, not a walk). */
uint64_t ppd_cache_reader_count(ppd_cache_reader *r);

/* Drop this process's mappings of the pages under [data, data + len) of a record read from a
 * cache (madvise MADV_DONTNEED on the read-only map; the pages stay in the page cache). Readers
 * that visit many records call it once they have copied a record out, so that the resident set
 * holds the current records, not every record ever read: a cursor walk does it for each record
 * it moves past, the training loader for each record it loads. Harmless if the record is used
 * again: the next access faults the same bytes back in. */
void ppd_cache_release(const void *data, size_t len);
/* Start a fresh read snapshot (long-lived readers call this between batches). */
ppd_status ppd_cache_reader_refresh(ppd_cache_reader *r);
void ppd_cache_reader_close(ppd_cache_reader *r);

/* ---- publishing --------------------------------------------------------------------------------
 */

/* Compacting copy of a sealed cache `src` into "<dst>.tmp.<pid>", fsync, then put it at `dst`
 * atomically (ppd_dir_swap; a previous dst is removed). For node-local build -> shared FS. */
ppd_status ppd_cache_publish(const char *src, const char *dst);

#endif
