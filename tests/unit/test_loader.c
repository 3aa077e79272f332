/* The training loader's read-ahead (ppdock/loader.h): a batch read on the worker thread is the
 * batch ppd_loader_load reads, its errors reach the caller with their message, and misuse is
 * refused. Synthetic graph caches (lm_dim 0, so no ESM cache is needed). */
#include "../test.h"
#include "../common/fake_cache.h"

#include "ppdock/loader.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static ppd_loader *open_fake(int n) {
    char dir[4300];
    snprintf(dir, sizeof dir, "%s/graphs", ppt_tmpdir());
    if (ppt_fake_graph_cache(dir, n, 1 << 20, 0) != PPD_OK) return NULL;
    /* the loader keeps the path: give it one that outlives this frame */
    static char keep[4300];
    snprintf(keep, sizeof keep, "%s", dir);
    ppd_loader_opts o = {.graphs = keep, .lm_dim = 0, .knn_k = 10};
    ppd_loader *l = NULL;
    return ppd_loader_open(&o, &l) == PPD_OK ? l : NULL;
}

#define SAME(field, count)                                                                         \
    CHECK(memcmp(a->field, b->field, sizeof(*a->field) * (size_t)(count)) == 0)

static void check_same_batch(const ppd_train_batch *a, const ppd_train_batch *b) {
    CHECK_EQ(a->B, b->B);
    CHECK_EQ(a->skipped, b->skipped);
    CHECK_EQ(a->Nr, b->Nr);
    CHECK_EQ(a->Nl, b->Nl);
    CHECK_EQ(a->Er, b->Er);
    CHECK_EQ(a->El, b->El);
    if (ppt_failed_now()) return;
    SAME(rec_pos, 3 * a->Nr);
    SAME(lig_pos, 3 * a->Nl);
    SAME(rec_x, a->Nr);
    SAME(lig_x, a->Nl);
    SAME(rec_batch, a->Nr);
    SAME(lig_batch, a->Nl);
    SAME(rec_src, a->Er);
    SAME(rec_dst, a->Er);
    SAME(lig_src, a->El);
    SAME(lig_dst, a->El);
    SAME(rec_start, a->B + 1);
    SAME(lig_start, a->B + 1);
    SAME(rec_estart, a->B + 1);
    SAME(lig_estart, a->B + 1);
    for (int i = 0; i < a->B; i++) CHECK_STR(a->ids[i], b->ids[i]);
}

TEST(read_ahead_reads_what_the_loader_reads) {
    ppd_loader *l = open_fake(20);
    REQUIRE(l != NULL);
    REQUIRE_EQ(ppd_loader_count(l, "train"), 20);
    ppd_read_ahead *r;
    REQUIRE_OK(ppd_read_ahead_start(l, &r));
    ppd_arena now, ahead;
    REQUIRE_OK(ppd_arena_init(&now, 0, 1));
    REQUIRE_OK(ppd_arena_init(&ahead, 0, 1));
    /* batches of several sizes and orders, the read-ahead's arena reused between them */
    const int64_t sets[3][6] = {{3, 17, 0, 9, 12, 5}, {19, 1}, {7, 7, 2, 11}};
    const int sizes[3] = {6, 2, 4};
    for (int k = 0; k < 3; k++) {
        ppd_train_batch a, b;
        ppd_arena_reset(&now);
        ppd_arena_reset(&ahead);
        /* the truth first: the loader is the worker's alone between begin and wait */
        REQUIRE_OK(ppd_loader_load(l, "train", sets[k], sizes[k], &now, &a));
        REQUIRE_OK(ppd_read_ahead_begin(r, "train", sets[k], sizes[k], &ahead));
        double secs = -1;
        REQUIRE_OK(ppd_read_ahead_wait(r, &b, &secs));
        CHECK(secs >= 0);
        CHECK_EQ(b.B, sizes[k]);
        check_same_batch(&a, &b);
        CHECK(b.rec_pos != a.rec_pos); /* in the arena the read-ahead was given */
    }
    ppd_read_ahead_stop(r);
    ppd_arena_free(&now);
    ppd_arena_free(&ahead);
    ppd_loader_close(l);
}

TEST(read_ahead_errors_reach_the_caller_and_misuse_is_refused) {
    ppd_loader *l = open_fake(4);
    REQUIRE(l != NULL);
    ppd_read_ahead *r;
    REQUIRE_OK(ppd_read_ahead_start(l, &r));
    ppd_arena a;
    REQUIRE_OK(ppd_arena_init(&a, 0, 1));
    ppd_train_batch b;
    CHECK_EQ(ppd_read_ahead_wait(r, &b, NULL), PPD_ERR_USAGE); /* nothing begun */
    /* the worker's failure comes back with its message, on this thread */
    const int64_t idx[2] = {0, 1};
    REQUIRE_OK(ppd_read_ahead_begin(r, "bogus", idx, 2, &a));
    CHECK_EQ(ppd_read_ahead_begin(r, "train", idx, 2, &a), PPD_ERR_USAGE); /* one at a time */
    CHECK_EQ(ppd_read_ahead_wait(r, &b, NULL), PPD_ERR_USAGE);
    CHECK(strstr(ppd_errmsg(), "unknown split \"bogus\"") != NULL);
    /* and it goes on working */
    REQUIRE_OK(ppd_read_ahead_begin(r, "train", idx, 2, &a));
    REQUIRE_OK(ppd_read_ahead_wait(r, &b, NULL));
    CHECK_EQ(b.B, 2);
    CHECK_STR(b.ids[1], "C001");
    /* stopping with a read in flight waits for it, and keeps the caller's error message */
    ppd_arena_reset(&a);
    REQUIRE_OK(ppd_read_ahead_begin(r, "bogus", idx, 2, &a));
    ppd_fail(PPD_ERR_IO, "the caller's own error");
    ppd_read_ahead_stop(r);
    CHECK_STR(ppd_errmsg(), "the caller's own error");
    ppd_read_ahead_stop(NULL);
    ppd_arena_free(&a);
    ppd_loader_close(l);
}

TEST(worst_pass_sums_the_largest_counts_of_the_split) {
    ppd_loader *l = open_fake(20);
    REQUIRE(l != NULL);
    int64_t n = ppd_loader_count(l, "train");
    REQUIRE_EQ(n, 20);
    /* brute force: every complex's counts from the loader itself */
    int64_t v[5][20];
    ppd_arena a;
    REQUIRE_OK(ppd_arena_init(&a, 0, 1));
    for (int64_t i = 0; i < n; i++) {
        ppd_train_batch b;
        ppd_arena_reset(&a);
        REQUIRE_OK(ppd_loader_load(l, "train", &i, 1, &a, &b));
        v[0][i] = b.Nr, v[1][i] = b.Nl, v[2][i] = b.Er, v[3][i] = b.El, v[4][i] = b.Nr * b.Nl;
    }
    for (int B = 1; B <= 21; B += 4) {
        int64_t want[5] = {0};
        for (int k = 0; k < 5; k++) { /* the B largest by selection, not by sorting */
            unsigned char used[20] = {0};
            for (int j = 0; j < B && j < n; j++) {
                int best = -1;
                for (int i = 0; i < n; i++)
                    if (!used[i] && (best < 0 || v[k][i] > v[k][best])) best = i;
                used[best] = 1, want[k] += v[k][best];
            }
        }
        ppd_pass_sizes w;
        REQUIRE_OK(ppd_loader_worst_pass(l, "train", B, &w));
        CHECK_EQ(w.Nr, want[0]);
        CHECK_EQ(w.Nl, want[1]);
        CHECK_EQ(w.Er, want[2]);
        CHECK_EQ(w.El, want[3]);
        CHECK_EQ(w.Ec, want[4]);
    }
    ppd_pass_sizes none;
    REQUIRE_OK(ppd_loader_worst_pass(l, "val", 4, &none));
    CHECK_EQ(none.Nr + none.Nl + none.Er + none.El + none.Ec, 0);
    ppd_arena_free(&a);
    ppd_loader_close(l);
}
