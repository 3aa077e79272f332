/* ppdock/check.h — the checker behind cache-check: find, name and (with repair) drop bad records.
 *
 * A check reads a cache the way fsck reads a file system and reports every problem through a
 * callback, one ppd_problem each. Checks, in order:
 *   open         LMDB opens the directory (not: operational error, see ppd_cache_check)
 *   truncated    data.mdb is shorter than LMDB's meta page says (the walk is skipped: reading
 *                the missing pages would crash with SIGBUS)
 *   structure    the meta/records/index databases exist
 *   schema       meta schema is PPD_CACHE_SCHEMA (else nothing more is checked)
 *   meta         meta checksum, params vs params_hash, record_type known, count = records
 *   unsealed     the writer did not finish (detail says if a writer is still running)
 *   walk         a cursor walk of records and index completes (MDB_CORRUPTED, PAGE_NOTFOUND)
 *   io-fault     SIGBUS/SIGSEGV while reading the map (damaged file)
 * per record (key named):
 *   header       magic, version, lengths, array table (ppd_rec_parse)
 *   checksum     XXH3-64 over key, header and payload
 *   index        the index entry exists and matches the record's checksum and length
 *   missing-record  an index entry whose record is gone (a deleted record)
 *   record-type  the record's type is the cache's
 *   stale-params the record was built with other parameters than the cache's
 *   <type checks> graph records: ppd_graph_validate's names (edge-range, degree, self-loop,
 *                edge-order, seq-tokens, seq-letters, finite, centred, empty) and "shape"
 *                (arrays missing or inconsistent)
 * with inputs (opts.inputs):
 *   missing      an input listed in the cache's recorded inputs has no record
 *   stale        the record's source digest differs from the files now on disk
 *   input-error  an input's files cannot be read
 *
 * Repair (ppd_cache_repair) never patches in place: it copies every record that passed (and
 * the meta) into "<dir>.repair.<pid>", writes the dropped keys and reasons to meta "dropped",
 * seals the copy, checks it, and swaps it in with ppd_dir_swap; the damaged original is kept at
 * "<dir>.damaged.<UTC time>" for forensics. A truncated data file is read through a
 * zero-extended (sparse) temporary copy, so every record whose pages survive is kept. The next
 * build run then rebuilds exactly the dropped records.
 */
#ifndef PPDOCK_CHECK_H
#define PPDOCK_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "ppdock/fsutil.h"
#include "ppdock/status.h"

typedef struct {
    const char *dir;
    const char *key;    /* NULL for problems of the whole cache */
    const char *check;  /* short identifier, see above */
    const char *detail; /* human text */
    int repairable; /* ppd_cache_repair removes the problem (drops the record or rewrites meta) */
} ppd_problem;

typedef void (*ppd_problem_fn)(const ppd_problem *p, void *ctx);

typedef struct {
    int inputs;            /* also check against the recorded inputs */
    ppd_problem_fn report; /* may be NULL */
    void *ctx;
} ppd_check_opts;

typedef struct {
    char record_type[16];
    int sealed;
    int writer_running; /* a writer holds the cache now (an unsealed cache may still finish) */
    uint64_t records;   /* walked */
    uint64_t records_ok;
    uint64_t problems;   /* reported, of three kinds: */
    uint64_t repairable; /*   fixed by a repair (drop records, rewrite meta, seal) */
    uint64_t unfixable;  /*   not fixed by dropping records (schema, structure): rebuild */
                         /*   the rest: fixed by running the build stage (missing, stale) */
    uint64_t inputs;     /* inputs listed (with opts.inputs) */
    uint64_t missing, stale;
    uint64_t dropped_pending; /* keys a repair dropped that are not rebuilt yet (meta "dropped") */
    char damaged_path[4096];  /* after repair: where the original was kept */
} ppd_check_summary;

/* Check one cache. Returns PPD_OK when the check ran (problems or not: see s->problems);
 * an error status only when it could not run: PPD_ERR_NOTFOUND (no cache at dir), PPD_ERR_IO,
 * PPD_ERR_NOMEM. */
ppd_status ppd_cache_check(const char *dir, const ppd_check_opts *o, ppd_check_summary *s);

/* Check, then (if anything droppable was found or the cache is unsealed) rebuild the cache
 * from its good records as described above. s describes the original cache; repaired is set to
 * 1 if a new cache was swapped in. Refuses (PPD_ERR_USAGE) while a writer holds the cache, and
 * when the problems are not repairable by dropping records (schema, structure). */
ppd_status ppd_cache_repair(const char *dir, const ppd_check_opts *o, ppd_check_summary *s,
                            int *repaired);

/* Cross-cache check of a graph cache and an ESM cache: every receptor and ligand sequence of
 * every graph record must have an embedding in the ESM cache (its key computed from the side's
 * tokens and the ESM cache's esm.model / esm.policy params, ppdock/esm_record.h) with one row
 * per residue, the same tokens, and the ESM cache's width. Problems, keyed "<complex>:receptor"
 * or "<complex>:ligand":
 *   missing-embedding  no record: run esm-embed -g GRAPHS -o ESM (it embeds only what is missing)
 *   embedding-length   rows != residues (e.g. esm.long_policy=truncate cut the chain)
 *   embedding-tokens   same key, other tokens (damage or a digest collision)
 *   embedding-width    width != the ESM cache's
 * Damaged records in either cache are the single-cache check's business (run it first). */
ppd_status ppd_cache_cross_check(const char *graphs, const char *esm, const ppd_check_opts *o,
                                 ppd_check_summary *s);

#endif
