/* Internals shared by the cache writer, reader and checker (not a public header). */
#ifndef PPDOCK_CACHE_INTERNAL_H
#define PPDOCK_CACHE_INTERNAL_H

#include <limits.h>
#include <lmdb.h>

#include "ppdock/cache.h"

#define CACHE_DB_META    "meta"
#define CACHE_DB_RECORDS "records"
#define CACHE_DB_INDEX   "index"

/* LMDB error -> ppd_status with context ("<dir>: <what>: MDB_...: message"). */
ppd_status cache_mdb_fail(int rc, const char *dir, const char *what);

/* The data file must be at least (last page + 1) * page size long; otherwise reading the map
 * would SIGBUS. PPD_ERR_CORRUPT with both sizes when it is not. */
ppd_status cache_check_truncation(MDB_env *env, const char *dir);

/* XXH3-64 over every meta entry except "checksum", in key order: for each entry the key length
 * (u32 LE), key, value length (u32 LE), value. */
ppd_status cache_meta_checksum(MDB_txn *txn, MDB_dbi meta, uint64_t *out);

/* Read a meta value as text into out; *found = 0 if absent. */
ppd_status cache_meta_get(MDB_txn *txn, MDB_dbi meta, const char *name, ppd_buf *out, int *found);

/* Open an environment read-only (falls back to MDB_NOLOCK when the lock file cannot be made),
 * with the truncation guard. *nolock tells which. */
ppd_status cache_env_open_readonly(const char *dir, MDB_env **env, int *nolock);

/* 1 if no write transaction was ever committed to env (LMDB's last transaction id is 0): a writer
 * stopped between creating data.mdb and its first commit, which creates the meta database. Nothing
 * is lost; rerunning the writer builds the cache. */
int cache_env_never_committed(MDB_env *env);

/* Record type named in meta ("graph" -> PPD_REC_GRAPH), 0 if unknown. */
int cache_rec_type_from_name(const char *name);

/* Current UTC time as ISO 8601 into out[32]. */
void cache_now_iso(char out[32]);

#endif
