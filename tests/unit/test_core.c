/* Core library: status/error context, arena, thread pool and queue, hashing, rng, gzip. */
#include "../test.h"

#include "ppdock/arena.h"
#include "ppdock/fsutil.h"
#include "ppdock/hash.h"
#include "ppdock/index_set.h"
#include "ppdock/log.h"
#include "ppdock/rng.h"
#include "ppdock/status.h"
#include "ppdock/threadpool.h"

#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

TEST(status_messages_carry_context) {
    ppd_status st = ppd_fail(PPD_ERR_FORMAT, "%s:%d: bad record", "x.pdb", 12);
    CHECK_EQ(st, PPD_ERR_FORMAT);
    CHECK_STR(ppd_errmsg(), "x.pdb:12: bad record");
    ppd_fail_ctx(st, "complex %s", "1A2K");
    CHECK_STR(ppd_errmsg(), "complex 1A2K: x.pdb:12: bad record");
    CHECK(strstr(ppd_strerror(PPD_ERR_FORMAT), "PPD_ERR_FORMAT") != NULL);
    CHECK(strstr(ppd_strerror((ppd_status)999), "unknown") != NULL);
}

TEST(arena_alignment_reset_and_high_water) {
    ppd_arena a;
    REQUIRE_OK(ppd_arena_init(&a, 1024, 0));
    void *p = ppd_arena_alloc(&a, 10, 1);
    void *q = ppd_arena_alloc(&a, 100, 64);
    CHECK(p != NULL && q != NULL);
    CHECK_EQ((uintptr_t)q % 64, 0);
    CHECK(ppd_arena_alloc(&a, 2000, 8) == NULL); /* fixed arena: no growth */
    void *r;
    CHECK_EQ(ppd_arena_alloc_st(&a, 5000, 8, &r), PPD_ERR_NOMEM);
    CHECK_ERRMSG_HAS("5000");
    size_t hw = a.high_water;
    CHECK(hw >= 110);
    ppd_arena_reset(&a);
    CHECK_EQ(a.used, 0);
    CHECK_EQ(a.high_water, hw);
    ppd_arena_free(&a);
}

TEST(arena_growable_consolidates_then_stops_allocating) {
    ppd_arena a;
    REQUIRE_OK(ppd_arena_init(&a, 0, 1));
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < 100; i++) REQUIRE(ppd_arena_alloc(&a, 10000, 16) != NULL);
        ppd_arena_reset(&a);
    }
    uint64_t m = a.mallocs;
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < 100; i++) REQUIRE(ppd_arena_alloc(&a, 10000, 16) != NULL);
        ppd_arena_reset(&a);
    }
    CHECK_EQ(a.mallocs, m); /* steady state: no malloc */
    ppd_arena_free(&a);
}

typedef struct {
    uint64_t next, n;
    ppd_queue *q;
    int *seen;
    int done_workers;
} pool_ctx;

static void produce(void *p, int worker) {
    pool_ctx *c = p;
    uint64_t i;
    while ((i = ppd_pool_next(&c->next)) < c->n) ppd_queue_push(c->q, (void *)(uintptr_t)(i + 1));
    if (__atomic_add_fetch(&c->done_workers, 1, __ATOMIC_ACQ_REL) == 3) ppd_queue_close(c->q);
}

TEST(pool_and_bounded_queue_deliver_every_item_once) {
    ppd_pool *pool;
    REQUIRE_OK(ppd_pool_create(3, &pool));
    for (int round = 0; round < 3; round++) {
        pool_ctx c = {.n = 5000};
        REQUIRE_OK(ppd_queue_create(4, &c.q));
        c.seen = calloc(c.n, sizeof *c.seen);
        ppd_pool_run(pool, produce, &c);
        void *item;
        size_t got = 0;
        while (ppd_queue_pop(c.q, &item)) {
            c.seen[(uintptr_t)item - 1]++;
            got++;
        }
        ppd_pool_join(pool);
        CHECK_EQ(got, c.n);
        int dup = 0;
        for (uint64_t i = 0; i < c.n; i++) dup += c.seen[i] != 1;
        CHECK_EQ(dup, 0);
        free(c.seen);
        ppd_queue_destroy(c.q);
    }
    ppd_pool_destroy(pool);
}

/* Keys of the index-set test: short strings in an array that is reallocated as it grows, as
 * the tools' input lists are (the set reads keys through the array, never through pointers). */
typedef struct {
    char (*keys)[12];
    size_t n, cap;
} key_list;

static const void *key_list_at(const void *ctx, size_t i, size_t *len) {
    const key_list *k = ctx;
    *len = strlen(k->keys[i]);
    return k->keys[i];
}

TEST(index_set_finds_exactly_the_keys_put_against_brute_force) {
    key_list kl = {0};
    ppd_index_set s;
    ppd_index_set_init(&s, key_list_at, &kl);
    ppd_rng r;
    ppd_rng_seed(&r, 4);
    size_t dups = 0, replaced = 0;
    for (int i = 0; i < 6000; i++) {
        char key[12];
        /* 3,000 distinct keys of 1 to 11 characters, most of them repeated */
        uint64_t v = ppd_rng_below(&r, 3000);
        snprintf(key, sizeof key, "%.*s", (int)(v % 8), "k0123456" + 0);
        snprintf(key + strlen(key), sizeof key - strlen(key), "%llu", (unsigned long long)v);
        if (kl.n == kl.cap) {
            kl.cap = kl.cap ? 2 * kl.cap : 4;
            kl.keys = realloc(kl.keys, kl.cap * sizeof *kl.keys);
            REQUIRE(kl.keys);
        }
        memcpy(kl.keys[kl.n], key, sizeof key);
        size_t brute = SIZE_MAX; /* the last index holding this key, as the set should say */
        for (size_t j = 0; j < kl.n; j++)
            if (!strcmp(kl.keys[j], key)) brute = j;
        size_t *slot;
        REQUIRE_OK(ppd_index_set_find(&s, key, strlen(key), &slot));
        if (brute == SIZE_MAX) {
            CHECK_EQ(*slot, 0);
        } else {
            CHECK_EQ(*slot, brute + 1);
            dups++;
        }
        /* every other repeat replaces the stored index with the new one */
        if (!*slot || (i & 1)) {
            replaced += *slot != 0;
            ppd_index_set_put(&s, slot, kl.n);
        } else {
            memcpy(kl.keys[kl.n], "\x01", 2); /* kept out: later repeats must not find it */
        }
        kl.n++;
    }
    CHECK(dups > 2000 && replaced > 1000);
    CHECK(s.used <= 3000 && 2 * s.used <= s.cap);
    ppd_index_set_free(&s);
    free(kl.keys);
}

TEST(hash_streaming_equals_one_shot) {
    const char *s = "key|header|payload";
    ppd_hasher *h = ppd_hasher_new();
    REQUIRE(h != NULL);
    ppd_hasher_update(h, s, 4);
    ppd_hasher_update(h, s + 4, strlen(s) - 4);
    CHECK(ppd_hasher_digest(h) == ppd_hash64(s, strlen(s)));
    ppd_hasher_free(h);
    /* XXH3-64 of the empty input, seed 0: published test vector */
    CHECK(ppd_hash64("", 0) == 0x2D06800538D394C2ull);
    char hex[17];
    ppd_hash_hex(0xabcull, hex);
    CHECK_STR(hex, "0000000000000abc");
}

TEST(rng_is_deterministic_and_uniform) {
    ppd_rng a, b;
    ppd_rng_seed(&a, 42);
    ppd_rng_seed(&b, 42);
    for (int i = 0; i < 100; i++) CHECK(ppd_rng_u64(&a) == ppd_rng_u64(&b));
    ppd_rng_seed(&a, 7);
    int hist[10] = {0};
    double sum = 0, sum2 = 0;
    for (int i = 0; i < 100000; i++) {
        hist[ppd_rng_below(&a, 10)]++;
        double z = ppd_rng_normal(&a);
        sum += z;
        sum2 += z * z;
    }
    for (int k = 0; k < 10; k++) CHECK(hist[k] > 9500 && hist[k] < 10500);
    CHECK_NEAR(sum / 1e5, 0.0, 0.02);
    CHECK_NEAR(sum2 / 1e5, 1.0, 0.02);
}

static size_t gz(const char *text, unsigned char *out, size_t cap) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
    zs.next_in = (Bytef *)text;
    zs.avail_in = (uInt)strlen(text);
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    deflate(&zs, Z_FINISH);
    size_t n = zs.total_out;
    deflateEnd(&zs);
    return n;
}

TEST(gunzip_members_truncation_and_garbage) {
    unsigned char z[4096];
    size_t n1 = gz("hello ", z, sizeof z);
    size_t n2 = gz("world\n", z + n1, sizeof z - n1);
    ppd_buf out = {0};
    REQUIRE_OK(ppd_gunzip(z, n1 + n2, "two.gz", &out));
    CHECK_STR((char *)out.data, "hello world\n");
    CHECK_EQ(ppd_gunzip(z, n1 - 5, "cut.gz", &out), PPD_ERR_FORMAT);
    CHECK_ERRMSG_HAS("cut.gz: truncated gzip stream");
    unsigned char bad[64];
    memcpy(bad, z, 10);
    memset(bad + 10, 0xff, 40);
    CHECK_EQ(ppd_gunzip(bad, 50, "junk.gz", &out), PPD_ERR_FORMAT);
    CHECK_ERRMSG_HAS("junk.gz");
    ppd_buf_free(&out);
}

/* A child process in which flock(2) fails with ENOSYS, as on a file system without locks
 * (Lustre mounted without -o flock): a seccomp filter answers that one system call. */
static int lock_without_flock(const char *path, const char *log_path) {
    struct sock_filter prog[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_flock, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog fprog = {sizeof prog / sizeof prog[0], prog};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog))
        return 10; /* no seccomp here: the test cannot make the condition */
    if (!freopen(log_path, "w", stderr)) return 11;
    ppd_log_set_level(PPD_LOG_WARN); /* the unit runner keeps only errors */
    int fd = 0;
    ppd_status st = ppd_lock_exclusive(path, "a test", &fd);
    fflush(stderr);
    return st == PPD_OK && fd == -1 ? 0 : 12;
}

TEST(lock_exclusive_refuses_a_held_lock_and_goes_on_where_locks_are_unsupported) {
    char path[512], log_path[512];
    snprintf(path, sizeof path, "%s/x.lock", ppt_tmpdir());
    snprintf(log_path, sizeof log_path, "%s/stderr.txt", ppt_tmpdir());
    int fd = -1, fd2 = -1;
    REQUIRE_OK(ppd_lock_exclusive(path, "a test", &fd));
    CHECK(fd >= 0);
    /* flock locks belong to the open file: a second open in this process conflicts as another
     * process's would */
    CHECK_EQ(ppd_lock_exclusive(path, "the first lock; wait", &fd2), PPD_ERR_IO);
    CHECK_ERRMSG_HAS("x.lock: locked by the first lock; wait");
    CHECK_EQ(fd2, -1);
    close(fd);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) _exit(lock_without_flock(path, log_path));
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK_EQ(WEXITSTATUS(status), 0);
    ppd_buf log = {0};
    CHECK_OK(ppd_read_file(log_path, &log));
    CHECK(log.len &&
          strstr((const char *)log.data, "does not support locks (Function not "
                                         "implemented): nothing stops a second") != NULL);
    ppd_buf_free(&log);
}
