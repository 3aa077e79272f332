/* The next batch read on a worker thread (ppdock/loader.h).
 *
 * Reading a batch is LMDB page faults, record checks and the fp16-to-fp32 widening of the ESM
 * rows: 35–50 ms for 16 complexes of 300 residues with 1280-wide embeddings on a 2-core VM,
 * which a GPU step would otherwise wait for. One worker suffices: the read is a fraction of a
 * step, and one reader keeps the loader's scratch buffers single-owner. */
#include "ppdock/loader.h"
#include "ppdock/progress.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ppd_read_ahead {
    ppd_loader *loader;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* the job: posted by begin (pending = 1), taken by the worker, ended (done = 1) */
    int pending, busy, done, quit;
    const char *split;
    int64_t *idx;
    int n, cap;
    ppd_arena *arena;
    /* the result */
    ppd_status status;
    char msg[1024];
    ppd_train_batch batch;
    double seconds;
};

static void *worker(void *arg) {
    ppd_read_ahead *r = arg;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        while (!r->pending && !r->quit) pthread_cond_wait(&r->cv, &r->mu);
        if (r->quit && !r->pending) break;
        r->pending = 0;
        pthread_mutex_unlock(&r->mu);
        double t0 = ppd_now_seconds();
        ppd_train_batch b;
        ppd_status st = ppd_loader_load(r->loader, r->split, r->idx, r->n, r->arena, &b);
        double dt = ppd_now_seconds() - t0;
        pthread_mutex_lock(&r->mu);
        r->status = st;
        r->msg[0] = 0;
        if (st) snprintf(r->msg, sizeof r->msg, "%s", ppd_errmsg());
        r->batch = b;
        r->seconds = dt;
        r->done = 1;
        pthread_cond_broadcast(&r->cv);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

ppd_status ppd_read_ahead_start(ppd_loader *l, ppd_read_ahead **out) {
    *out = NULL;
    ppd_read_ahead *r = calloc(1, sizeof *r);
    if (!r) return ppd_fail(PPD_ERR_NOMEM, "read-ahead: out of memory");
    r->loader = l;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    if (pthread_create(&r->thread, NULL, worker, r) != 0) {
        pthread_cond_destroy(&r->cv);
        pthread_mutex_destroy(&r->mu);
        free(r);
        return ppd_fail(PPD_ERR_IO, "read-ahead: cannot start its thread");
    }
    *out = r;
    return PPD_OK;
}

ppd_status ppd_read_ahead_begin(ppd_read_ahead *r, const char *split, const int64_t *idx, int n,
                                ppd_arena *arena) {
    if (r->busy) return ppd_fail(PPD_ERR_USAGE, "read-ahead: a read is already in flight");
    if (n > r->cap) {
        int64_t *p = realloc(r->idx, sizeof(int64_t) * (size_t)n);
        if (!p) return ppd_fail(PPD_ERR_NOMEM, "read-ahead: out of memory");
        r->idx = p, r->cap = n;
    }
    if (n > 0) memcpy(r->idx, idx, sizeof(int64_t) * (size_t)n);
    pthread_mutex_lock(&r->mu);
    r->split = split, r->n = n, r->arena = arena;
    r->done = 0, r->pending = 1, r->busy = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return PPD_OK;
}

ppd_status ppd_read_ahead_wait(ppd_read_ahead *r, ppd_train_batch *out, double *read_seconds) {
    if (!r->busy) return ppd_fail(PPD_ERR_USAGE, "read-ahead: no read was begun");
    pthread_mutex_lock(&r->mu);
    while (!r->done) pthread_cond_wait(&r->cv, &r->mu);
    r->busy = 0;
    ppd_status st = r->status;
    *out = r->batch;
    if (read_seconds) *read_seconds = r->seconds;
    pthread_mutex_unlock(&r->mu);
    if (st) return ppd_fail(st, "%s", r->msg);
    return PPD_OK;
}

void ppd_read_ahead_stop(ppd_read_ahead *r) {
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    /* a read in flight ends first; its result is dropped without touching the caller's
     * error message, which may be the one being reported */
    while (r->busy && !r->done) pthread_cond_wait(&r->cv, &r->mu);
    r->busy = 0;
    r->quit = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->thread, NULL);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r->idx);
    free(r);
}
