/* A cache writer's puts on one background thread (see ppdock/cache_queue.h).
 *
 * A ring of (key, record) slots, allocated at start, under one mutex: push fills the slot after
 * the last and waits for room (bytes or slots), the thread puts the oldest with the mutex
 * released. Record buffers travel, never copied: the pushed buffer goes into the slot, and the
 * slot's finished buffer goes back to the next pusher (at most PPD_CACHE_QUEUE_SPARES kept), so a
 * steady stream of equal-sized records allocates nothing. The writer is LMDB's and is used by one
 * thread at a time (the queue's, then the caller's after finish); ppd_cache_writer_open sets
 * MDB_NOTLS so that its read snapshot may change threads.
 */
#include "ppdock/cache_queue.h"

#include "ppdock/progress.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct slot {
    ppd_buf record;
    uint64_t inputs_digest, params_hash;
    char key[PPD_CACHE_MAX_KEY + 1];
} slot;

struct ppd_cache_queue {
    ppd_cache_writer *w;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t room, work;             /* push waits for room, the thread for work */
    slot *ring;                            /* max_records slots */
    size_t head, count, max_records;       /* oldest slot; slots queued or being put */
    size_t bytes, max_bytes;               /* record bytes queued or being put */
    ppd_buf spare[PPD_CACHE_QUEUE_SPARES]; /* finished buffers for the next pushes */
    int n_spare, stop;
    ppd_status status; /* the first put's error; later puts are skipped */
    char msg[1024];
    double busy_seconds;
};

static void *put_thread(void *arg) {
    ppd_cache_queue *q = arg;
    pthread_mutex_lock(&q->mu);
    for (;;) {
        while (!q->count && !q->stop) pthread_cond_wait(&q->work, &q->mu);
        if (!q->count) break; /* stopped and drained */
        /* the slot stays counted while it is put, so push cannot refill it */
        slot *n = &q->ring[q->head];
        ppd_status st = q->status;
        pthread_mutex_unlock(&q->mu);
        if (!st) {
            double t0 = ppd_now_seconds();
            st = ppd_cache_writer_put(q->w, n->key, n->record.data, n->record.len, n->inputs_digest,
                                      n->params_hash);
            q->busy_seconds += ppd_now_seconds() - t0;
        }
        pthread_mutex_lock(&q->mu);
        if (st && !q->status) {
            q->status = st;
            snprintf(q->msg, sizeof q->msg, "%s", ppd_errmsg());
        }
        q->bytes -= n->record.len;
        if (q->n_spare < PPD_CACHE_QUEUE_SPARES)
            q->spare[q->n_spare++] = n->record;
        else
            ppd_buf_free(&n->record);
        n->record = (ppd_buf){0};
        q->head = (q->head + 1) % q->max_records;
        q->count--;
        pthread_cond_broadcast(&q->room);
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

size_t ppd_cache_queue_ring_bytes(size_t max_records) {
    return max_records * sizeof(slot);
}

ppd_status ppd_cache_queue_start(ppd_cache_writer *w, size_t max_bytes, size_t max_records,
                                 ppd_cache_queue **out) {
    *out = NULL;
    if (max_records == 0) return ppd_fail(PPD_ERR_USAGE, "cache queue: max_records is 0");
    ppd_cache_queue *q = calloc(1, sizeof *q);
    if (q) q->ring = calloc(max_records, sizeof *q->ring);
    if (!q || !q->ring) {
        free(q);
        return ppd_fail(PPD_ERR_NOMEM, "cache queue: out of memory for %zu slots", max_records);
    }
    q->w = w;
    q->max_bytes = max_bytes;
    q->max_records = max_records;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->room, NULL);
    pthread_cond_init(&q->work, NULL);
    if (pthread_create(&q->thread, NULL, put_thread, q)) {
        pthread_cond_destroy(&q->work);
        pthread_cond_destroy(&q->room);
        pthread_mutex_destroy(&q->mu);
        free(q->ring);
        free(q);
        return ppd_fail(PPD_ERR_INTERNAL, "cache queue: cannot start its thread");
    }
    *out = q;
    return PPD_OK;
}

static ppd_status queue_error(ppd_cache_queue *q) {
    return ppd_fail(q->status, "%s", q->msg);
}

ppd_status ppd_cache_queue_push(ppd_cache_queue *q, const char *key, ppd_buf *record,
                                uint64_t inputs_digest, uint64_t params_hash) {
    size_t keylen = strlen(key);
    if (keylen > PPD_CACHE_MAX_KEY)
        return ppd_fail(PPD_ERR_USAGE, "cache key of %zu bytes (the limit is %d): %.64s...", keylen,
                        PPD_CACHE_MAX_KEY, key);
    pthread_mutex_lock(&q->mu);
    while (!q->status && !q->stop && q->count &&
           (q->count == q->max_records || q->bytes + record->len > q->max_bytes))
        pthread_cond_wait(&q->room, &q->mu);
    if (q->status || q->stop) {
        ppd_status st =
            q->status ? queue_error(q) : ppd_fail(PPD_ERR_USAGE, "cache queue: push after finish");
        pthread_mutex_unlock(&q->mu);
        return st;
    }
    slot *n = &q->ring[(q->head + q->count) % q->max_records];
    memcpy(n->key, key, keylen + 1);
    n->inputs_digest = inputs_digest;
    n->params_hash = params_hash;
    n->record = *record;
    *record = q->n_spare ? q->spare[--q->n_spare] : (ppd_buf){0};
    record->len = 0;
    q->bytes += n->record.len;
    q->count++;
    pthread_cond_signal(&q->work);
    pthread_mutex_unlock(&q->mu);
    return PPD_OK;
}

ppd_status ppd_cache_queue_finish(ppd_cache_queue *q, double *busy_seconds) {
    pthread_mutex_lock(&q->mu);
    q->stop = 1;
    pthread_cond_signal(&q->work);
    pthread_mutex_unlock(&q->mu);
    pthread_join(q->thread, NULL);
    ppd_status st = q->status ? queue_error(q) : PPD_OK;
    if (busy_seconds) *busy_seconds = q->busy_seconds;
    for (int i = 0; i < q->n_spare; i++) ppd_buf_free(&q->spare[i]);
    pthread_cond_destroy(&q->work);
    pthread_cond_destroy(&q->room);
    pthread_mutex_destroy(&q->mu);
    free(q->ring);
    free(q);
    return st;
}
