/* Worker threads and a bounded queue (see ppdock/threadpool.h). */
#include "ppdock/threadpool.h"

#include <pthread.h>
#include <stdlib.h>

struct ppd_pool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv_start, cv_done;
    ppd_pool_fn fn;
    void *ctx;
    uint64_t generation; /* bumped by each run */
    int running;         /* workers still inside fn */
    int quit;
};

typedef struct {
    ppd_pool *pool;
    int id;
} worker_arg;

static void *worker_main(void *p) {
    worker_arg wa = *(worker_arg *)p;
    free(p);
    ppd_pool *pool = wa.pool;
    uint64_t seen = 0;
    pthread_mutex_lock(&pool->mu);
    for (;;) {
        while (!pool->quit && pool->generation == seen)
            pthread_cond_wait(&pool->cv_start, &pool->mu);
        if (pool->quit) break;
        seen = pool->generation;
        ppd_pool_fn fn = pool->fn;
        void *ctx = pool->ctx;
        pthread_mutex_unlock(&pool->mu);
        fn(ctx, wa.id);
        pthread_mutex_lock(&pool->mu);
        if (--pool->running == 0) pthread_cond_broadcast(&pool->cv_done);
    }
    pthread_mutex_unlock(&pool->mu);
    return NULL;
}

ppd_status ppd_pool_create(int nthreads, ppd_pool **out) {
    *out = NULL;
    if (nthreads < 1) nthreads = 1;
    ppd_pool *pool = calloc(1, sizeof *pool);
    if (!pool) return ppd_fail(PPD_ERR_NOMEM, "cannot allocate a thread pool");
    pool->threads = calloc((size_t)nthreads, sizeof *pool->threads);
    if (!pool->threads) {
        free(pool);
        return ppd_fail(PPD_ERR_NOMEM, "cannot allocate a thread pool");
    }
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->cv_start, NULL);
    pthread_cond_init(&pool->cv_done, NULL);
    for (int i = 0; i < nthreads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (wa) *wa = (worker_arg){.pool = pool, .id = i};
        if (!wa || pthread_create(&pool->threads[i], NULL, worker_main, wa) != 0) {
            free(wa);
            pool->n = i;
            ppd_pool_destroy(pool);
            return ppd_fail(PPD_ERR_INTERNAL, "cannot start worker thread %d of %d", i, nthreads);
        }
    }
    pool->n = nthreads;
    *out = pool;
    return PPD_OK;
}

int ppd_pool_size(const ppd_pool *pool) {
    return pool->n;
}

void ppd_pool_run(ppd_pool *pool, ppd_pool_fn fn, void *ctx) {
    pthread_mutex_lock(&pool->mu);
    pool->fn = fn;
    pool->ctx = ctx;
    pool->running = pool->n;
    pool->generation++;
    pthread_cond_broadcast(&pool->cv_start);
    pthread_mutex_unlock(&pool->mu);
}

void ppd_pool_join(ppd_pool *pool) {
    pthread_mutex_lock(&pool->mu);
    while (pool->running > 0) pthread_cond_wait(&pool->cv_done, &pool->mu);
    pthread_mutex_unlock(&pool->mu);
}

void ppd_pool_destroy(ppd_pool *pool) {
    if (!pool) return;
    pthread_mutex_lock(&pool->mu);
    pool->quit = 1;
    pthread_cond_broadcast(&pool->cv_start);
    pthread_mutex_unlock(&pool->mu);
    for (int i = 0; i < pool->n; i++) pthread_join(pool->threads[i], NULL);
    pthread_mutex_destroy(&pool->mu);
    pthread_cond_destroy(&pool->cv_start);
    pthread_cond_destroy(&pool->cv_done);
    free(pool->threads);
    free(pool);
}

struct ppd_queue {
    void **items;
    size_t cap, head, count;
    int closed;
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
};

ppd_status ppd_queue_create(size_t capacity, ppd_queue **out) {
    *out = NULL;
    if (capacity == 0) capacity = 1;
    ppd_queue *q = calloc(1, sizeof *q);
    if (!q || !(q->items = calloc(capacity, sizeof *q->items))) {
        free(q);
        return ppd_fail(PPD_ERR_NOMEM, "cannot allocate a queue of %zu items", capacity);
    }
    q->cap = capacity;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->not_empty, NULL);
    pthread_cond_init(&q->not_full, NULL);
    *out = q;
    return PPD_OK;
}

int ppd_queue_push(ppd_queue *q, void *item) {
    pthread_mutex_lock(&q->mu);
    while (!q->closed && q->count == q->cap) pthread_cond_wait(&q->not_full, &q->mu);
    if (q->closed) {
        pthread_mutex_unlock(&q->mu);
        return 0;
    }
    q->items[(q->head + q->count) % q->cap] = item;
    q->count++;
    pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->mu);
    return 1;
}

int ppd_queue_pop(ppd_queue *q, void **item) {
    pthread_mutex_lock(&q->mu);
    while (!q->closed && q->count == 0) pthread_cond_wait(&q->not_empty, &q->mu);
    if (q->count == 0) {
        pthread_mutex_unlock(&q->mu);
        return 0;
    }
    *item = q->items[q->head];
    q->head = (q->head + 1) % q->cap;
    q->count--;
    pthread_cond_signal(&q->not_full);
    pthread_mutex_unlock(&q->mu);
    return 1;
}

void ppd_queue_close(ppd_queue *q) {
    pthread_mutex_lock(&q->mu);
    q->closed = 1;
    pthread_cond_broadcast(&q->not_empty);
    pthread_cond_broadcast(&q->not_full);
    pthread_mutex_unlock(&q->mu);
}

void ppd_queue_destroy(ppd_queue *q) {
    if (!q) return;
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->not_empty);
    pthread_cond_destroy(&q->not_full);
    free(q->items);
    free(q);
}
