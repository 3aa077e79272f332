/* The cache writer's puts on a background thread (ppdock/cache_queue.h): the same cache as direct
 * puts, the writer handed between threads, the first error reported and nothing after it. */
#include "../test.h"
#include "../common/fake_cache.h"

#include "ppdock/cache.h"
#include "ppdock/cache_queue.h"
#include "ppdock/check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { N_RECORDS = 60 };

static ppd_cache_writer *open_writer(const char *dir) {
    /* 64 KiB batches: the 60 records of about 5 KiB commit in several transactions */
    ppd_cache_writer_opts o = {.record_type = PPD_REC_GRAPH,
                               .producer = "test",
                               .params = PPT_FAKE_PARAMS,
                               .batch_bytes = 64 << 10};
    ppd_cache_writer *w = NULL;
    CHECK_OK(ppd_cache_writer_open(dir, &o, &w));
    return w;
}

static void print_problem(const ppd_problem *p, void *ctx) {
    (void)ctx;
    printf("  %s %s: %s\n", p->key ? p->key : "-", p->check, p->detail);
}

static void record_key(int i, char key[16]) {
    snprintf(key, 16, "K%04d", i);
}

/* Pushes N_RECORDS records through a queue of the given bounds and the same records directly
 * into a second cache: both caches must be the same. */
static void queued_cache_matches_direct(size_t max_bytes, size_t max_records) {
    char direct[512], queued[512];
    snprintf(direct, sizeof direct, "%s/direct", ppt_tmpdir());
    snprintf(queued, sizeof queued, "%s/queued", ppt_tmpdir());
    ppd_cache_writer *wd = open_writer(direct), *wq = open_writer(queued);
    REQUIRE(wd && wq);
    /* a lookup first: the writer's read snapshot is made on this thread, then dropped and
     * remade by the queue's commits on its own (MDB_NOTLS) */
    ppd_index_entry e;
    int found = 1;
    CHECK_OK(ppd_cache_writer_lookup(wq, "K0000", &e, &found));
    CHECK_EQ(found, 0);
    ppd_cache_queue *q;
    REQUIRE_OK(ppd_cache_queue_start(wq, max_bytes, max_records, &q));
    ppd_buf v = {0}, qv = {0};
    int recycled = 0;
    for (int i = 0; i < N_RECORDS; i++) { /* inputs digest 7 i: the records' own (fake_cache.h) */
        char key[16];
        record_key(i, key);
        REQUIRE_OK(ppt_fake_graph_record(key, 40 + i % 7, 12, (uint64_t)i, &v));
        REQUIRE_OK(ppd_cache_writer_put(wd, key, v.data, v.len, (uint64_t)i * 7,
                                        ppd_cache_writer_params_hash(wd)));
        REQUIRE_OK(ppt_fake_graph_record(key, 40 + i % 7, 12, (uint64_t)i, &qv));
        REQUIRE_OK(
            ppd_cache_queue_push(q, key, &qv, (uint64_t)i * 7, ppd_cache_writer_params_hash(wq)));
        CHECK_EQ(qv.len, 0); /* the bytes were taken; a finished buffer (or none) came back */
        recycled += qv.cap > 0;
    }
    double busy = -1;
    REQUIRE_OK(ppd_cache_queue_finish(q, &busy));
    CHECK(busy >= 0);
    CHECK(recycled > 0); /* room for two records: the thread hands buffers back */
    /* the same batches were committed, and the writer works on this thread again */
    CHECK_EQ(ppd_cache_writer_commits(wq), ppd_cache_writer_commits(wd));
    CHECK(ppd_cache_writer_commits(wq) >= 3);
    CHECK_OK(ppd_cache_writer_seal(wd));
    CHECK_OK(ppd_cache_writer_seal(wq));
    int same_index = 0;
    for (int i = 0; i < N_RECORDS; i++) {
        char key[16];
        record_key(i, key);
        ppd_index_entry ed, eq;
        int fd = 0, fq = 0;
        if (ppd_cache_writer_lookup(wd, key, &ed, &fd) ||
            ppd_cache_writer_lookup(wq, key, &eq, &fq))
            continue;
        same_index += fd && fq && !memcmp(&ed, &eq, sizeof ed);
    }
    CHECK_EQ(same_index, N_RECORDS);
    ppd_cache_writer_close(wd);
    ppd_cache_writer_close(wq);
    ppd_buf_free(&v);
    ppd_buf_free(&qv);

    ppd_check_summary s;
    ppd_check_opts co = {.report = print_problem};
    REQUIRE_OK(ppd_cache_check(queued, &co, &s));
    CHECK_EQ(s.problems, 0);
    CHECK_EQ(s.records_ok, N_RECORDS);
    ppd_cache_reader *rd, *rq;
    REQUIRE_OK(ppd_cache_reader_open(direct, &rd));
    REQUIRE_OK(ppd_cache_reader_open(queued, &rq));
    int same = 0;
    for (int i = 0; i < N_RECORDS; i++) {
        char key[16];
        record_key(i, key);
        ppd_rec_view a, b;
        if (ppd_cache_reader_get(rd, key, &a) || ppd_cache_reader_get(rq, key, &b)) continue;
        same += a.len == b.len && !memcmp(a.value, b.value, a.len);
    }
    CHECK_EQ(same, N_RECORDS);
    ppd_cache_reader_close(rd);
    ppd_cache_reader_close(rq);
}

TEST(cache_queue_bounded_by_bytes_writes_the_cache_direct_puts_write) {
    queued_cache_matches_direct(12 << 10, 4096); /* room for about two records */
}

TEST(cache_queue_bounded_by_slots_writes_the_cache_direct_puts_write) {
    queued_cache_matches_direct((size_t)1 << 30, 2); /* the ring of two slots wraps 30 times */
}

TEST(cache_queue_reports_the_first_failed_put_and_stores_nothing_after_it) {
    const char *dir = ppt_tmpdir();
    ppd_cache_writer *w = open_writer(dir);
    REQUIRE(w);
    ppd_cache_queue *q;
    /* one byte of room: a push waits until the queue is empty, so the second push after the
     * bad record finds the thread has put it */
    REQUIRE_OK(ppd_cache_queue_start(w, 1, 4096, &q));
    ppd_buf v = {0};
    uint64_t ph = ppd_cache_writer_params_hash(w);
    for (int i = 0; i < 5; i++) {
        char key[16];
        record_key(i, key);
        REQUIRE_OK(ppt_fake_graph_record(key, 30, 10, (uint64_t)i, &v));
        REQUIRE_OK(ppd_cache_queue_push(q, key, &v, 1, ph));
    }
    REQUIRE_OK(ppt_fake_graph_record("K0005", 30, 10, 5, &v));
    v.data[v.len / 2] ^= 0x10; /* its checksum no longer matches: the writer refuses it */
    REQUIRE_OK(ppd_cache_queue_push(q, "K0005", &v, 1, ph));
    ppd_status st = PPD_OK;
    int pushes = 0;
    for (int i = 6; i < 9 && !st; i++, pushes++) {
        char key[16];
        record_key(i, key);
        REQUIRE_OK(ppt_fake_graph_record(key, 30, 10, (uint64_t)i, &v));
        st = ppd_cache_queue_push(q, key, &v, 1, ph);
    }
    CHECK_EQ(st, PPD_ERR_INTERNAL);
    CHECK(pushes <= 2);
    CHECK(strstr(ppd_errmsg(), "K0005") != NULL);
    CHECK_EQ(ppd_cache_queue_finish(q, NULL), PPD_ERR_INTERNAL);
    CHECK(strstr(ppd_errmsg(), "invalid record under 'K0005'") != NULL);
    /* the records before it are the writer's, as after direct puts; none after it */
    CHECK_OK(ppd_cache_writer_commit(w));
    for (int i = 0; i < 9; i++) {
        char key[16];
        record_key(i, key);
        ppd_index_entry e;
        int found = -1;
        CHECK_OK(ppd_cache_writer_lookup(w, key, &e, &found));
        CHECK_EQ(found, i < 5);
    }
    ppd_cache_writer_close(w);
    ppd_buf_free(&v);
}
