/* ppdock/threadpool.h — a fixed set of worker threads and a bounded queue.
 *
 * The pool runs one function on every worker at once (ppd_pool_run), and the workers share the
 * work themselves, usually through an atomic counter (ppd_pool_next). This covers the pattern of
 * every tool: N workers produce results, the calling thread consumes them in order of arrival
 * through a bounded ppd_queue (bounded, so host memory holds at most `capacity` results).
 *
 *   ppd_pool *pool; ppd_pool_create(4, &pool);
 *   ppd_pool_run(pool, worker_fn, ctx);      // returns at once
 *   while (ppd_queue_pop(q, &item)) ...      // consume; workers close the queue when done
 *   ppd_pool_join(pool);
 *
 * Errors: ppd_pool_create fails with PPD_ERR_NOMEM/PPD_ERR_INTERNAL if threads cannot start.
 */
#ifndef PPDOCK_THREADPOOL_H
#define PPDOCK_THREADPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "ppdock/status.h"

typedef struct ppd_pool ppd_pool;
typedef void (*ppd_pool_fn)(void *ctx, int worker);

ppd_status ppd_pool_create(int nthreads, ppd_pool **out);
int ppd_pool_size(const ppd_pool *pool);
/* Start fn(ctx, worker) on every worker (worker = 0..n-1). Do not call again before join. */
void ppd_pool_run(ppd_pool *pool, ppd_pool_fn fn, void *ctx);
/* Wait until every worker has returned from fn. */
void ppd_pool_join(ppd_pool *pool);
void ppd_pool_destroy(ppd_pool *pool);

/* Shared work counter: returns the next index (0, 1, 2, ...) across all threads. */
static inline uint64_t ppd_pool_next(uint64_t *counter) {
    return __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
}

/* Bounded multi-producer / multi-consumer queue of pointers. */
typedef struct ppd_queue ppd_queue;
ppd_status ppd_queue_create(size_t capacity, ppd_queue **out);
/* Blocks while full. Returns 0 if the queue was closed (the item was not queued). */
int ppd_queue_push(ppd_queue *q, void *item);
/* Blocks while empty and open. Returns 0 when closed and drained. */
int ppd_queue_pop(ppd_queue *q, void **item);
/* After close, pushes fail and pops drain what is left. */
void ppd_queue_close(ppd_queue *q);
void ppd_queue_destroy(ppd_queue *q);

#endif
