/* ppdock/cache_queue.h — a cache writer's puts on a background thread.
 *
 * A producer that must not wait for the disk (esm-embed's sink, fed by the GPU: LMDB's commits
 * and their fdatasync take about as long as the GPU's embedding of the same sequences) hands its
 * sealed records to the queue; one thread puts them into the writer in push order, so the cache
 * ends up with the same records, committed in the same batches, as direct puts would give.
 *
 *   ppd_cache_queue *q;
 *   ppd_cache_queue_start(w, 256u << 20, 4096, &q); // at most 256 MiB and 4096 records waiting
 *   ppd_cache_queue_push(q, key, &rec, digest, params_hash);
 *                                                  // takes rec's bytes, leaves a spare buffer
 *   ppd_cache_queue_finish(q);                     // every put done; the thread joined
 *
 * While the queue runs, the writer belongs to its thread: the caller must not use `w` (lookups,
 * meta, commit, seal) until finish returns. push blocks while max_records records, or max_bytes
 * of records, are waiting (a record larger than max_bytes is still taken when the queue is
 * empty). Host memory: max_records slots of about PPD_CACHE_MAX_KEY bytes, allocated at start
 * (nothing is allocated per record), and the records waiting, at most max_bytes plus
 * PPD_CACHE_QUEUE_SPARES + 2 records (the spare buffers, the one being put, the one handed
 * back), besides the writer's own batch.
 *
 * Errors: start: PPD_ERR_NOMEM, PPD_ERR_INTERNAL (no thread), PPD_ERR_USAGE (max_records 0). push
 * and finish return the first error of a put (PPD_ERR_IO, PPD_ERR_LMDB, ... with the writer's
 * message); records pushed after it are not stored, and records put before it stay committed or in
 * the writer's batch as with direct puts. PPD_ERR_USAGE: push after finish; a key over
 * PPD_CACHE_MAX_KEY bytes.
 */
#ifndef PPDOCK_CACHE_QUEUE_H
#define PPDOCK_CACHE_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "ppdock/cache.h"
#include "ppdock/fsutil.h"
#include "ppdock/status.h"

typedef struct ppd_cache_queue ppd_cache_queue;

/* finished record buffers kept for the next pushes */
#define PPD_CACHE_QUEUE_SPARES 4

ppd_status ppd_cache_queue_start(ppd_cache_writer *w, size_t max_bytes, size_t max_records,
                                 ppd_cache_queue **out);
/* Host bytes of the ring that ppd_cache_queue_start allocates for max_records slots. */
size_t ppd_cache_queue_ring_bytes(size_t max_records);

/* Queue record->data (record->len bytes, sealed) under key for ppd_cache_writer_put. The bytes
 * are taken, not copied: *record comes back holding a buffer the queue has finished with (or
 * empty), to build the next record in. */
ppd_status ppd_cache_queue_push(ppd_cache_queue *q, const char *key, ppd_buf *record,
                                uint64_t inputs_digest, uint64_t params_hash);
/* Wait for every queued put, stop the thread and free the queue (q is gone even on an error).
 * *busy_seconds (may be NULL): the thread's time inside ppd_cache_writer_put. */
ppd_status ppd_cache_queue_finish(ppd_cache_queue *q, double *busy_seconds);

#endif
