/* Record format, LMDB cache writer/reader, checker and repair, on synthetic graph records. */
#include "../test.h"
#include "../common/fake_cache.h"

#include "ppdock/cache.h"
#include "ppdock/check.h"
#include "ppdock/graph.h"
#include "ppdock/hash.h"
#include "ppdock/record.h"
#include "ppdock/rng.h"

#include <lmdb.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    int n;
    char keys[64][64], checks[64][32];
} seen;

static void collect(const ppd_problem *p, void *ctx) {
    seen *s = ctx;
    if (s->n < 64) {
        snprintf(s->keys[s->n], 64, "%s", p->key ? p->key : "-");
        snprintf(s->checks[s->n], 32, "%s", p->check);
        s->n++;
    }
}

static int saw(const seen *s, const char *key, const char *check) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->keys[i], key) && !strcmp(s->checks[i], check)) return 1;
    return 0;
}

/* Direct LMDB access for fault injection (what a bad disk or a buggy tool would do). */
static int tamper(const char *dir, const char *db, const char *key, int mode, size_t off) {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    mdb_env_create(&env);
    mdb_env_set_maxdbs(env, 4);
    int rc = mdb_env_open(env, dir, 0, 0664);
    if (!rc) rc = mdb_txn_begin(env, NULL, 0, &txn);
    if (rc) return rc;
    rc = mdb_dbi_open(txn, db, 0, &dbi);
    MDB_val k = {strlen(key), (void *)key}, v;
    if (!rc) rc = mdb_get(txn, dbi, &k, &v);
    if (!rc) {
        if (mode == 0) { /* flip one bit at off */
            unsigned char *copy = malloc(v.mv_size);
            memcpy(copy, v.mv_data, v.mv_size);
            copy[off % v.mv_size] ^= 0x10;
            MDB_val nv = {v.mv_size, copy};
            rc = mdb_put(txn, dbi, &k, &nv, 0);
            free(copy);
        } else if (mode == 1) { /* delete */
            rc = mdb_del(txn, dbi, &k, NULL);
        } else if (mode == 2) { /* garbage of the same length */
            unsigned char *g = malloc(v.mv_size);
            for (size_t i = 0; i < v.mv_size; i++) g[i] = (unsigned char)(i * 131 + 7);
            MDB_val nv = {v.mv_size, g};
            rc = mdb_put(txn, dbi, &k, &nv, 0);
            free(g);
        } else if (mode == 3) { /* set a meta text value */
            MDB_val nv = {strlen((const char *)(uintptr_t)off), (void *)(uintptr_t)off};
            rc = mdb_put(txn, dbi, &k, &nv, 0);
        }
    }
    if (!rc)
        rc = mdb_txn_commit(txn);
    else
        mdb_txn_abort(txn);
    mdb_env_close(env);
    return rc;
}

TEST(cache_record_round_trip_and_alignment) {
    ppd_buf v = {0};
    REQUIRE_OK(ppt_fake_graph_record("K1", 57, 13, 3, &v));
    ppd_rec_view view;
    REQUIRE_OK(ppd_rec_parse(v.data, v.len, "K1", 2, 1, &view));
    CHECK_EQ(view.header.type, PPD_REC_GRAPH);
    CHECK_EQ(v.len % 16, 0);
    ppd_graph g;
    REQUIRE_OK(ppd_graph_decode(&view, &g));
    CHECK_EQ(g.rec.n, 57);
    CHECK_EQ(g.lig.n, 13);
    CHECK_EQ(g.rec.n_edges, 570);
    CHECK_EQ(g.lig.n_edges, 130);
    CHECK_EQ((uintptr_t)g.rec.pos % 16, 0);
    CHECK_EQ((uintptr_t)g.lig.src % 16, 0);
    CHECK(g.split_len == 5 && !memcmp(g.split, "train", 5));
    const char *check;
    CHECK_OK(ppd_graph_validate(&g, 10, &check));
    /* the checksum covers the key: the same value under another key fails */
    CHECK_EQ(ppd_rec_parse(v.data, v.len, "K2", 2, 1, &view), PPD_ERR_CORRUPT);
    CHECK_ERRMSG_HAS("checksum mismatch");
    ppd_buf_free(&v);
}

TEST(cache_record_every_single_bit_flip_is_caught) {
    ppd_buf v = {0};
    REQUIRE_OK(ppt_fake_graph_record("K", 25, 9, 5, &v));
    int missed = 0;
    for (size_t byte = 0; byte < v.len; byte += (byte < 512 ? 1 : 37)) {
        for (int bit = 0; bit < 8; bit += 3) {
            v.data[byte] ^= (unsigned char)(1u << bit);
            ppd_rec_view view;
            if (ppd_rec_parse(v.data, v.len, "K", 1, 1, &view) == PPD_OK) missed++;
            v.data[byte] ^= (unsigned char)(1u << bit);
        }
    }
    CHECK_EQ(missed, 0);
    ppd_rec_view view;
    CHECK_OK(ppd_rec_parse(v.data, v.len, "K", 1, 1, &view));
    /* truncation and garbage are structural errors, not crashes */
    CHECK_EQ(ppd_rec_parse(v.data, 20, "K", 1, 1, &view), PPD_ERR_CORRUPT);
    CHECK_EQ(ppd_rec_parse(v.data, v.len - 16, "K", 1, 1, &view), PPD_ERR_CORRUPT);
    memset(v.data + 8, 0xff, 24);
    CHECK_EQ(ppd_rec_parse(v.data, v.len, "K", 1, 0, &view), PPD_ERR_CORRUPT);
    ppd_buf_free(&v);
}

TEST(cache_record_other_version_is_a_version_error) {
    ppd_buf v = {0};
    REQUIRE_OK(ppt_fake_graph_record("K", 20, 5, 1, &v));
    v.data[4] = 9; /* version field */
    ppd_rec_view view;
    CHECK_EQ(ppd_rec_parse(v.data, v.len, "K", 1, 0, &view), PPD_ERR_VERSION);
    ppd_buf_free(&v);
}

TEST(cache_write_read_seal_and_meta) {
    const char *dir = ppt_tmpdir();
    REQUIRE_OK(ppt_fake_graph_cache(dir, 40, 64 << 10, 0));
    ppd_cache_reader *r;
    REQUIRE_OK(ppd_cache_reader_open(dir, &r));
    CHECK(ppd_cache_reader_sealed(r));
    CHECK_EQ(ppd_cache_reader_record_type(r), PPD_REC_GRAPH);
    ppd_buf b = {0};
    CHECK_OK(ppd_cache_reader_meta(r, "count", &b));
    CHECK_STR((char *)b.data, "40");
    CHECK_OK(ppd_cache_reader_meta(r, "params", &b));
    CHECK_STR((char *)b.data, PPT_FAKE_PARAMS);
    ppd_rec_view v;
    CHECK_OK(ppd_cache_reader_get(r, "C017", &v));
    CHECK_EQ(ppd_cache_reader_get(r, "nope", &v), PPD_ERR_NOTFOUND);
    ppd_buf_free(&b);
    ppd_cache_reader_close(r);
    ppd_check_summary s;
    REQUIRE_OK(ppd_cache_check(dir, NULL, &s));
    CHECK_EQ(s.problems, 0);
    CHECK_EQ(s.records, 40);
    CHECK_EQ(s.records_ok, 40);
}

TEST(cache_map_full_grows_and_replays) {
    const char *dir = ppt_tmpdir();
    /* 300 records of ~20 KB with a 256 KB initial map: many MAP_FULLs, nothing lost */
    ppd_cache_writer_opts o = {.record_type = PPD_REC_GRAPH,
                               .producer = "test",
                               .params = PPT_FAKE_PARAMS,
                               .batch_bytes = 1 << 20,
                               .map_bytes = 256 << 10};
    ppd_cache_writer *w;
    REQUIRE_OK(ppd_cache_writer_open(dir, &o, &w));
    ppd_buf v = {0};
    for (int i = 0; i < 300; i++) {
        char key[16];
        snprintf(key, sizeof key, "K%04d", i);
        REQUIRE_OK(ppt_fake_graph_record(key, 200, 20, (uint64_t)i, &v));
        REQUIRE_OK(ppd_cache_writer_put(w, key, v.data, v.len, (uint64_t)i * 7,
                                        ppd_cache_writer_params_hash(w)));
    }
    REQUIRE_OK(ppd_cache_writer_seal(w));
    CHECK(ppd_cache_writer_map_growths(w) >= 3);
    ppd_cache_writer_close(w);
    ppd_buf_free(&v);
    ppd_check_summary s;
    REQUIRE_OK(ppd_cache_check(dir, NULL, &s));
    CHECK_EQ(s.records_ok, 300);
    CHECK_EQ(s.problems, 0);
}

TEST(cache_uncommitted_batch_is_lost_committed_kept_and_unsealed) {
    const char *dir = ppt_tmpdir();
    ppd_cache_writer_opts o = {.record_type = PPD_REC_GRAPH,
                               .producer = "test",
                               .params = PPT_FAKE_PARAMS,
                               .batch_bytes = 1 << 30};
    ppd_cache_writer *w;
    REQUIRE_OK(ppd_cache_writer_open(dir, &o, &w));
    ppd_buf v = {0};
    REQUIRE_OK(ppt_fake_graph_record("A", 30, 10, 1, &v));
    REQUIRE_OK(ppd_cache_writer_put(w, "A", v.data, v.len, 7, ppd_cache_writer_params_hash(w)));
    REQUIRE_OK(ppd_cache_writer_commit(w));
    REQUIRE_OK(ppt_fake_graph_record("B", 30, 10, 2, &v));
    REQUIRE_OK(ppd_cache_writer_put(w, "B", v.data, v.len, 14, ppd_cache_writer_params_hash(w)));
    ppd_cache_writer_close(w); /* as if killed: B was never committed */
    ppd_buf_free(&v);
    seen sn = {0};
    ppd_check_opts co = {.report = collect, .ctx = &sn};
    ppd_check_summary s;
    REQUIRE_OK(ppd_cache_check(dir, &co, &s));
    CHECK(!s.sealed);
    CHECK(saw(&sn, "-", "unsealed"));
    CHECK_EQ(s.records_ok, 1);
    ppd_cache_reader *r;
    REQUIRE_OK(ppd_cache_reader_open(dir, &r));
    ppd_rec_view rv;
    CHECK_OK(ppd_cache_reader_get(r, "A", &rv));
    CHECK_EQ(ppd_cache_reader_get(r, "B", &rv), PPD_ERR_NOTFOUND);
    ppd_cache_reader_close(r);
}

TEST(cache_second_writer_is_refused) {
    const char *dir = ppt_tmpdir();
    ppd_cache_writer_opts o = {
        .record_type = PPD_REC_GRAPH, .producer = "t", .params = PPT_FAKE_PARAMS};
    ppd_cache_writer *w1, *w2;
    REQUIRE_OK(ppd_cache_writer_open(dir, &o, &w1));
    CHECK_EQ(ppd_cache_writer_open(dir, &o, &w2), PPD_ERR_IO);
    CHECK_ERRMSG_HAS("locked by another process");
    ppd_cache_writer_close(w1);
    o.record_type = PPD_REC_ESM; /* a graph cache is not an ESM cache */
    CHECK_EQ(ppd_cache_writer_open(dir, &o, &w2), PPD_ERR_USAGE);
    CHECK_ERRMSG_HAS("holds 'graph' records");
}

static void check_fault(const char *db, const char *key, int mode, size_t off, const char *want_key,
                        const char *want_check) {
    const char *dir = ppt_tmpdir();
    if (ppt_fake_graph_cache(dir, 12, 1 << 20, 0) != PPD_OK) {
        ppt_fail(__FILE__, __LINE__, "make_cache: %s", ppd_errmsg());
        return;
    }
    int rc = tamper(dir, db, key, mode, off);
    if (rc) {
        ppt_fail(__FILE__, __LINE__, "tamper: %s", mdb_strerror(rc));
        return;
    }
    seen sn = {0};
    ppd_check_opts co = {.report = collect, .ctx = &sn};
    ppd_check_summary s;
    if (ppd_cache_check(dir, &co, &s) != PPD_OK) {
        ppt_fail(__FILE__, __LINE__, "check: %s", ppd_errmsg());
        return;
    }
    if (!saw(&sn, want_key, want_check))
        ppt_fail(__FILE__, __LINE__, "expected %s/%s; got %d problem(s), first %s/%s", want_key,
                 want_check, sn.n, sn.n ? sn.keys[0] : "", sn.n ? sn.checks[0] : "");
    if (!strcmp(want_check, "schema")) return; /* not repairable: nothing more to test */
    int repaired = 0;
    if (ppd_cache_repair(dir, NULL, &s, &repaired) != PPD_OK || !repaired) {
        ppt_fail(__FILE__, __LINE__, "repair failed: %s", ppd_errmsg());
        return;
    }
    ppd_check_summary after;
    ppd_cache_check(dir, NULL, &after);
    if (after.problems)
        ppt_fail(__FILE__, __LINE__, "%llu problems after repair",
                 (unsigned long long)after.problems);
    if (strcmp(want_key, "-") && after.records_ok != 11)
        ppt_fail(__FILE__, __LINE__, "%llu good records after repair, expected 11",
                 (unsigned long long)after.records_ok);
    ppd_cache_reader *r;
    ppd_buf b = {0};
    if (ppd_cache_reader_open(dir, &r) == PPD_OK) {
        if (strcmp(want_key, "-") &&
            (ppd_cache_reader_meta(r, "dropped", &b) || !strstr((char *)b.data, want_key)))
            ppt_fail(__FILE__, __LINE__, "meta 'dropped' does not name %s", want_key);
        ppd_cache_reader_close(r);
    }
    ppd_buf_free(&b);
    if (!ppd_dir_exists(s.damaged_path))
        ppt_fail(__FILE__, __LINE__, "damaged original not kept at %s", s.damaged_path);
}

TEST(cache_fault_bit_flip_in_header) {
    check_fault("records", "C003", 0, 9, "C003", "header");
}
TEST(cache_fault_bit_flip_in_payload) {
    check_fault("records", "C004", 0, 3000, "C004", "checksum");
}
TEST(cache_fault_bit_flip_in_checksum_field) {
    check_fault("records", "C005", 0, 26, "C005", "checksum");
}
TEST(cache_fault_deleted_record) {
    check_fault("records", "C006", 1, 0, "C006", "missing-record");
}
TEST(cache_fault_garbage_value) {
    check_fault("records", "C007", 2, 0, "C007", "header");
}
TEST(cache_fault_index_entry_damaged) {
    check_fault("index", "C008", 0, 3, "C008", "index");
}
TEST(cache_fault_meta_value_changed) {
    check_fault("meta", "count", 3, (size_t)(uintptr_t) "13", "-", "meta");
}
TEST(cache_fault_wrong_schema) {
    check_fault("meta", "schema", 3, (size_t)(uintptr_t) "ppdock-cache/9", "-", "schema");
}
TEST(cache_fault_unsealed) {
    check_fault("meta", "sealed", 3, (size_t)(uintptr_t) "0", "-", "unsealed");
}

TEST(cache_value_swapped_between_keys_is_caught) {
    const char *dir = ppt_tmpdir();
    REQUIRE_OK(ppt_fake_graph_cache(dir, 5, 1 << 20, 0));
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    mdb_env_create(&env);
    mdb_env_set_maxdbs(env, 4);
    REQUIRE_EQ(mdb_env_open(env, dir, 0, 0664), 0);
    mdb_txn_begin(env, NULL, 0, &txn);
    mdb_dbi_open(txn, "records", 0, &dbi);
    MDB_val k1 = {4, "C001"}, k2 = {4, "C002"}, v1;
    mdb_get(txn, dbi, &k1, &v1);
    void *copy = malloc(v1.mv_size);
    memcpy(copy, v1.mv_data, v1.mv_size);
    MDB_val nv = {v1.mv_size, copy};
    mdb_put(txn, dbi, &k2, &nv, 0); /* C002 now returns C001's (valid) record */
    mdb_txn_commit(txn);
    mdb_env_close(env);
    free(copy);
    seen sn = {0};
    ppd_check_opts co = {.report = collect, .ctx = &sn};
    ppd_check_summary s;
    REQUIRE_OK(ppd_cache_check(dir, &co, &s));
    CHECK(saw(&sn, "C002", "checksum"));
    CHECK_EQ(s.records_ok, 4);
}

TEST(cache_truncated_file_is_an_error_not_sigbus_and_repairs) {
    const char *dir = ppt_tmpdir();
    REQUIRE_OK(ppt_fake_graph_cache(dir, 60, 256 << 10, 0));
    char path[4200];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    struct stat sb;
    REQUIRE(stat(path, &sb) == 0);
    REQUIRE(truncate(path, sb.st_size * 6 / 10) == 0);
    ppd_cache_reader *r;
    CHECK_EQ(ppd_cache_reader_open(dir, &r), PPD_ERR_CORRUPT);
    CHECK_ERRMSG_HAS("truncated");
    seen sn = {0};
    ppd_check_opts co = {.report = collect, .ctx = &sn};
    ppd_check_summary s;
    REQUIRE_OK(ppd_cache_check(dir, &co, &s));
    CHECK(saw(&sn, "-", "truncated"));
    int repaired = 0;
    REQUIRE_OK(ppd_cache_repair(dir, NULL, &s, &repaired));
    CHECK(repaired);
    ppd_check_summary after;
    REQUIRE_OK(ppd_cache_check(dir, NULL, &after));
    CHECK_EQ(after.problems, 0);
    CHECK(after.records_ok > 0 && after.records_ok < 60);   /* the surviving pages' records */
    CHECK_EQ(after.records_ok + after.dropped_pending, 60); /* every lost key is listed */
}

TEST(cache_publish_compacts_and_swaps) {
    const char *dir = ppt_tmpdir();
    char src[4200], dst[4200];
    snprintf(src, sizeof src, "%s/build", dir);
    snprintf(dst, sizeof dst, "%s/published", dir);
    REQUIRE_OK(ppt_fake_graph_cache(src, 20, 64 << 10, 0));
    REQUIRE_OK(ppd_cache_publish(src, dst));
    REQUIRE_OK(ppd_cache_publish(src, dst)); /* replacing an existing one */
    ppd_check_summary s;
    REQUIRE_OK(ppd_cache_check(dst, NULL, &s));
    CHECK_EQ(s.records_ok, 20);
    CHECK_EQ(s.problems, 0);
    /* an unsealed cache is not published */
    REQUIRE_EQ(tamper(src, "meta", "sealed", 3, (size_t)(uintptr_t) "0"), 0);
    CHECK_EQ(ppd_cache_publish(src, dst), PPD_ERR_USAGE);
}

TEST(cache_cursor_walks_every_record_in_key_order) {
    const char *dir = ppt_tmpdir();
    REQUIRE_OK(ppt_fake_graph_cache(dir, 25, 64 << 10, 0));
    ppd_cache_reader *r;
    REQUIRE_OK(ppd_cache_reader_open(dir, &r));
    CHECK_EQ(ppd_cache_reader_count(r), 25);
    ppd_cache_cursor *c;
    REQUIRE_OK(ppd_cache_reader_cursor(r, &c));
    char key[PPD_CACHE_MAX_KEY + 1], prev[PPD_CACHE_MAX_KEY + 1] = "";
    int n = 0, done = 0;
    ppd_rec_view v;
    while (ppd_cache_cursor_next(c, key, &v, &done) == PPD_OK && !done) {
        CHECK(strcmp(prev, key) < 0);
        CHECK_EQ(v.header.type, PPD_REC_GRAPH);
        snprintf(prev, sizeof prev, "%s", key);
        n++;
    }
    CHECK(done);
    CHECK_EQ(n, 25);
    ppd_cache_cursor_close(c);
    ppd_cache_reader_close(r);
}
