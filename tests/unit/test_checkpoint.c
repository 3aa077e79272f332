/* The safetensors writer (read back by our reader; exact bytes of a tiny file; escaping; refusals;
 * atomic replacement under failures) and training checkpoints (bit-exact round trip, other model
 * sizes refused by tensor name, the DiffDock-PP golden .pth, a crafted .pth with Adam state, the
 * released confidence checkpoint refused). */
#include "../test.h"

#include "ppdock/checkpoint.h"
#include "ppdock/fsutil.h"
#include "ppdock/rng.h"
#include "ppdock/safetensors_write.h"
#include "ppdock/score_model.h"
#include "ppdock/status.h"
#include "ppdock/tensorfile.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static const char *tpath(const char *dir, const char *name) {
    static char buf[4][4096];
    static int slot;
    char *s = buf[slot++ & 3];
    snprintf(s, 4096, "%s/%s", dir, name);
    return s;
}

/* Number of entries of dir whose name contains ".tmp." (leftover temporary files). */
static int count_tmp(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    return n;
}

static int write_bytes(const char *path, const void *p, size_t n) {
    FILE *fp = fopen(path, "wb");
    if (!fp) return 0;
    int ok = fwrite(p, 1, n, fp) == n;
    return (fclose(fp) == 0) && ok;
}

/* ---- the writer --------------------------------------------------------------------------- */

TEST(safetensors_write_round_trip_through_reader) {
    const char *dir = ppt_tmpdir();
    const char *path = tpath(dir, "rt.safetensors");
    float f32[6] = {1.5f, -0.0f, 3e-39f, 1e30f, -7.25f, 0.1f};
    int64_t i64 = -1234567890123LL;
    unsigned char u8[5] = {0, 1, 127, 128, 255};
    uint16_t f16[3] = {0x3c00, 0x8001, 0x7bff};
    uint16_t bf16[2] = {0x3f80, 0xc000};
    double f64[4] = {1.0 / 3, -2.5, 1e300, 0};
    int32_t i32[3] = {-1, 0, 2147483647};
    unsigned char bools[2] = {1, 0};
    /* given order mixes element sizes; the file keeps each size's order, largest first */
    ppd_st_entry e[] = {
        {"u8.five", PPD_TF_U8, 1, {5}, u8},         {"f32.mat", PPD_TF_F32, 2, {2, 3}, f32},
        {"i64.scalar", PPD_TF_I64, 0, {0}, &i64},   {"f16.v", PPD_TF_F16, 1, {3}, f16},
        {"empty.f32", PPD_TF_F32, 2, {0, 4}, NULL}, {"f64.m", PPD_TF_F64, 3, {1, 2, 2}, f64},
        {"bf16.v", PPD_TF_BF16, 1, {2}, bf16},      {"i32.v", PPD_TF_I32, 1, {3}, i32},
        {"bool.v", PPD_TF_BOOL, 1, {2}, bools},     {"empty.u8", PPD_TF_U8, 1, {0}, NULL},
    };
    const int n = (int)(sizeof e / sizeof e[0]);
    ppd_st_meta meta[] = {{"format", "test"}, {"yaml", "a: 1\nb: [x, \"y\"]\n"}};
    REQUIRE_OK(ppd_safetensors_write(path, e, (size_t)n, meta, 2));
    CHECK_EQ(count_tmp(dir), 0);
    ppd_tensor_file *f;
    REQUIRE_OK(ppd_tensor_file_open(path, &f));
    CHECK_STR(ppd_tensor_file_format(f), "safetensors");
    REQUIRE_EQ(ppd_tensor_file_count(f), n);
    static const char *const want_order[] = {"i64.scalar", "f64.m",   "f32.mat", "empty.f32",
                                             "i32.v",      "f16.v",   "bf16.v",  "u8.five",
                                             "bool.v",     "empty.u8"};
    for (int i = 0; i < n; i++) CHECK_STR(ppd_tensor_file_at(f, (size_t)i)->name, want_order[i]);
    for (int i = 0; i < n; i++) {
        const ppd_tensor *t = ppd_tensor_file_find(f, e[i].name);
        REQUIRE(t);
        CHECK_EQ(t->dtype, e[i].dtype);
        REQUIRE_EQ(t->ndim, e[i].ndim);
        int64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            CHECK_EQ(t->shape[d], e[i].shape[d]);
            numel *= e[i].shape[d];
        }
        CHECK_EQ(t->numel, numel);
        size_t es = ppd_tf_dtype_size(t->dtype);
        /* the map is page-aligned, so this is the alignment within the file */
        CHECK_EQ((uintptr_t)t->data % es, 0);
        if (numel) CHECK(memcmp(t->data, e[i].data, (size_t)numel * es) == 0);
    }
    const ppd_tf_value *v = ppd_tensor_file_value(f, "__metadata__.yaml");
    REQUIRE(v);
    CHECK_STR(v->s, "a: 1\nb: [x, \"y\"]\n");
    v = ppd_tensor_file_value(f, "__metadata__.format");
    REQUIRE(v);
    CHECK_STR(v->s, "test");
    ppd_tensor_file_close(f);

    /* no tensors and no metadata: "{}" padded to 8 */
    path = tpath(dir, "empty.safetensors");
    REQUIRE_OK(ppd_safetensors_write(path, NULL, 0, NULL, 0));
    ppd_buf b = {0};
    REQUIRE_OK(ppd_read_file(path, &b));
    CHECK_EQ(b.len, 16);
    CHECK(b.len == 16 && memcmp(b.data, "\x08\0\0\0\0\0\0\0{}      ", 16) == 0);
    REQUIRE_OK(ppd_tensor_file_open(path, &f));
    CHECK_EQ(ppd_tensor_file_count(f), 0);
    ppd_tensor_file_close(f);
    ppd_buf_free(&b);
}

TEST(safetensors_write_exact_bytes_of_a_tiny_file) {
    const char *path = tpath(ppt_tmpdir(), "tiny.safetensors");
    unsigned char seven = 7;
    float a[2] = {1.0f, -2.0f};
    ppd_st_entry e[2] = {{"b", PPD_TF_U8, 0, {0}, &seven}, {"a", PPD_TF_F32, 1, {2}, a}};
    ppd_st_meta meta[1] = {{"k", "v"}};
    REQUIRE_OK(ppd_safetensors_write(path, e, 2, meta, 1));
    /* 130 bytes of JSON + 6 spaces = 136 = 0x88; F32 "a" first (larger elements), then U8 "b" */
    static const char json[] = "{\"__metadata__\":{\"k\":\"v\"},"
                               "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                               "\"b\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[8,9]}}";
    CHECK_EQ(sizeof json - 1, 130);
    unsigned char want[8 + 136 + 9];
    memcpy(want, "\x88\0\0\0\0\0\0\0", 8);
    memcpy(want + 8, json, 130);
    memset(want + 8 + 130, ' ', 6);
    memcpy(want + 144, "\x00\x00\x80\x3f\x00\x00\x00\xc0\x07", 9); /* 1.0f, -2.0f, 7 */
    ppd_buf b = {0};
    REQUIRE_OK(ppd_read_file(path, &b));
    CHECK_EQ(b.len, sizeof want);
    if (b.len == sizeof want && memcmp(b.data, want, sizeof want) != 0)
        ppt_fail(__FILE__, __LINE__, "bytes differ: got header \"%.*s\"", 136, (char *)b.data + 8);
    ppd_buf_free(&b);
}

TEST(safetensors_write_escapes_awkward_names) {
    const char *path = tpath(ppt_tmpdir(), "esc.safetensors");
    const char *name = "we\"ird\\na\nme\t\x01\x1f/\xc3\xa9\x7f";
    const char *val = "line 1\r\nquote \" back \\ bell \x07";
    float x = 2.0f;
    ppd_st_entry e[1] = {{name, PPD_TF_F32, 0, {0}, &x}};
    ppd_st_meta meta[1] = {{name, val}};
    REQUIRE_OK(ppd_safetensors_write(path, e, 1, meta, 1));
    ppd_buf b = {0};
    REQUIRE_OK(ppd_read_file(path, &b));
    const char *esc = "\"we\\\"ird\\\\na\\nme\\t\\u0001\\u001f/\xc3\xa9\x7f\"";
    CHECK(strstr((const char *)b.data + 8, esc) != NULL);
    CHECK(strstr((const char *)b.data + 8, "\"line 1\\r\\nquote \\\" back \\\\ bell \\u0007\"") !=
          NULL);
    ppd_buf_free(&b);
    ppd_tensor_file *f;
    REQUIRE_OK(ppd_tensor_file_open(path, &f));
    const ppd_tensor *t = ppd_tensor_file_at(f, 0);
    REQUIRE(t);
    CHECK_STR(t->name, name);
    char key[256];
    snprintf(key, sizeof key, "__metadata__.%s", name);
    const ppd_tf_value *v = ppd_tensor_file_value(f, key);
    REQUIRE(v);
    CHECK_STR(v->s, val);
    ppd_tensor_file_close(f);
}

TEST(safetensors_write_refuses_bad_entries) {
    const char *dir = ppt_tmpdir();
    const char *path = tpath(dir, "bad.safetensors");
    float x[2] = {1, 2};
    ppd_st_entry dup[3] = {
        {"x", PPD_TF_F32, 1, {2}, x}, {"y", PPD_TF_F32, 0, {0}, x}, {"x", PPD_TF_F32, 0, {0}, x}};
    CHECK_EQ(ppd_safetensors_write(path, dup, 3, NULL, 0), PPD_ERR_USAGE);
    CHECK_ERRMSG_HAS("tensor name x given twice");
    ppd_st_meta mdup[2] = {{"k", "1"}, {"k", "2"}};
    CHECK_EQ(ppd_safetensors_write(path, dup, 2, mdup, 2), PPD_ERR_USAGE);
    CHECK_ERRMSG_HAS("metadata key k given twice");
    ppd_st_entry reserved[1] = {{"__metadata__", PPD_TF_F32, 0, {0}, x}};
    CHECK_EQ(ppd_safetensors_write(path, reserved, 1, NULL, 0), PPD_ERR_USAGE);
    ppd_st_entry bad_utf8[1] = {{"\xc0\xaf", PPD_TF_F32, 0, {0}, x}}; /* overlong '/' */
    CHECK_EQ(ppd_safetensors_write(path, bad_utf8, 1, NULL, 0), PPD_ERR_USAGE);
    ppd_st_entry neg[1] = {{"n", PPD_TF_F32, 1, {-1}, x}};
    CHECK_EQ(ppd_safetensors_write(path, neg, 1, NULL, 0), PPD_ERR_USAGE);
    CHECK_ERRMSG_HAS("negative");
    ppd_st_entry null_data[1] = {{"n", PPD_TF_F32, 1, {2}, NULL}};
    CHECK_EQ(ppd_safetensors_write(path, null_data, 1, NULL, 0), PPD_ERR_USAGE);
    ppd_st_entry huge[1] = {{"h", PPD_TF_F32, 3, {1LL << 40, 1LL << 40, 0}, NULL}};
    CHECK_OK(ppd_safetensors_write(path, huge, 1, NULL, 0)); /* empty whatever the others */
    huge[0].shape[2] = 2;
    CHECK_EQ(ppd_safetensors_write(path, huge, 1, NULL, 0), PPD_ERR_USAGE);
    CHECK_ERRMSG_HAS("too large");
    ppd_st_entry bad_dtype[1] = {{"d", (ppd_tf_dtype)99, 0, {0}, x}};
    CHECK_EQ(ppd_safetensors_write(path, bad_dtype, 1, NULL, 0), PPD_ERR_USAGE);
    ppd_st_entry dims[1] = {{"d", PPD_TF_F32, 9, {0}, x}};
    CHECK_EQ(ppd_safetensors_write(path, dims, 1, NULL, 0), PPD_ERR_USAGE);
    CHECK_EQ(count_tmp(dir), 0);
}

TEST(safetensors_write_failures_keep_the_old_file) {
    const char *dir = ppt_tmpdir();
    float big[16384];
    for (int i = 0; i < 16384; i++) big[i] = (float)i;
    ppd_st_entry e[1] = {{"big", PPD_TF_F32, 1, {16384}, big}};

    /* the parent is a file: nothing can be created */
    const char *file = tpath(dir, "plain");
    REQUIRE(write_bytes(file, "x", 1));
    char path[4200];
    snprintf(path, sizeof path, "%s/x.safetensors", file);
    CHECK_EQ(ppd_safetensors_write(path, e, 1, NULL, 0), PPD_ERR_IO);
    CHECK_ERRMSG_HAS(path);
    CHECK_ERRMSG_HAS(strerror(ENOTDIR));

    /* the rename fails (the target is a non-empty directory): the temporary file is removed */
    const char *target = tpath(dir, "target");
    char keep[4200];
    snprintf(keep, sizeof keep, "%s/keep", target);
    REQUIRE(mkdir(target, 0777) == 0);
    REQUIRE(write_bytes(keep, "k", 1));
    CHECK_EQ(ppd_safetensors_write(target, e, 1, NULL, 0), PPD_ERR_IO);
    CHECK_ERRMSG_HAS(target);
    CHECK_ERRMSG_HAS("rename");
    CHECK(ppd_dir_exists(target) && ppd_file_exists(keep));
    CHECK_EQ(count_tmp(dir), 0);

    /* a write fails half-way (file size limit): the old file keeps its bytes */
    const char *old = tpath(dir, "ckpt.safetensors");
    REQUIRE(write_bytes(old, "old contents", 12));
    struct rlimit saved, lim;
    REQUIRE(getrlimit(RLIMIT_FSIZE, &saved) == 0);
    lim = saved;
    lim.rlim_cur = 4096;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN); /* EFBIG instead of being killed */
    REQUIRE(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    ppd_status st = ppd_safetensors_write(old, e, 1, NULL, 0);
    setrlimit(RLIMIT_FSIZE, &saved);
    signal(SIGXFSZ, prev);
    CHECK_EQ(st, PPD_ERR_IO);
    CHECK_ERRMSG_HAS(old);
    CHECK_ERRMSG_HAS(strerror(EFBIG));
    ppd_buf b = {0};
    REQUIRE_OK(ppd_read_file(old, &b));
    CHECK(b.len == 12 && memcmp(b.data, "old contents", 12) == 0);
    CHECK_EQ(count_tmp(dir), 0);

    /* and with no failure the old file is replaced */
    REQUIRE_OK(ppd_safetensors_write(old, e, 1, NULL, 0));
    REQUIRE_OK(ppd_read_file(old, &b));
    CHECK(b.len > sizeof big);
    CHECK_EQ(count_tmp(dir), 0);
    ppd_buf_free(&b);
}

/* ---- checkpoints -------------------------------------------------------------------------- */

static void small_config(ppd_score_config *c, int ns) {
    ppd_score_config_default(c);
    c->ns = ns;
    c->nv = 2;
    c->lm_dim = 3;
}

/* A model of small_config's size (ns 4) with the parameters of `seed`. */
static ppd_status small_model(ppd_score_config *c, ppd_score_model *m, uint64_t seed) {
    small_config(c, 4);
    PPD_TRY(ppd_score_model_init(m, c));
    ppd_score_model_init_params(m, seed);
    return PPD_OK;
}

/* Known, distinct moments: exp_avg of both signs, exp_avg_sq >= 0. */
static void fill_moments(float *m, float *v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        m[i] = (float)((double)((int64_t)(i % 97) - 48) * 1e-4 + (double)i * 1e-9);
        v[i] = (float)((double)(i % 13) * 3e-7 + (double)i * 1e-12);
    }
}

TEST(checkpoint_round_trip_is_bit_exact) {
    const char *dir = ppt_tmpdir();
    const char *path = tpath(dir, "last.safetensors");
    ppd_score_config c;
    ppd_score_model a, b;
    REQUIRE_OK(small_model(&c, &a, 11));
    size_t n = a.nparams;
    float *m = malloc(sizeof(float) * n * 4), *v = m + n, *m2 = m + 2 * n, *v2 = m + 3 * n;
    REQUIRE(m);
    fill_moments(m, v, n);
    ppd_train_state ts = {.step = 123456789012LL,
                          .epoch = 17,
                          .epoch_batch = 5,
                          .bad_epochs = 2,
                          .best_val = 0.1234567890123,
                          .batch_size = 16,
                          .seed = 0xfedcba9876543210ull}; /* above int64: stored bit for bit */
    ppd_rng_seed(&ts.rng, 99);
    for (int i = 0; i < 5; i++) ppd_rng_u64(&ts.rng);
    const char *yaml = "model:\n  ns: 4\n  nv: 2\nname: \"run \\\"1\\\"\"\n";
    REQUIRE_OK(ppd_checkpoint_save(path, &a, m, v, &ts, yaml));
    CHECK_EQ(count_tmp(dir), 0);

    REQUIRE_OK(ppd_score_model_init(&b, &c));
    ppd_train_state got;
    memset(&got, 0xab, sizeof got);
    ppd_checkpoint_info info;
    memset(m2, 0xff, sizeof(float) * n * 2);
    REQUIRE_OK(ppd_checkpoint_load(path, &b, m2, v2, &got, &info));
    CHECK(memcmp(a.params, b.params, sizeof(float) * n) == 0);
    CHECK(memcmp(m, m2, sizeof(float) * n) == 0);
    CHECK(memcmp(v, v2, sizeof(float) * n) == 0);
    CHECK_EQ(got.step, ts.step);
    CHECK_EQ(got.epoch, ts.epoch);
    CHECK(memcmp(got.rng.s, ts.rng.s, sizeof ts.rng.s) == 0);
    CHECK_EQ(got.epoch_batch, 5);
    CHECK_EQ(got.bad_epochs, 2);
    CHECK(got.best_val == ts.best_val);
    CHECK_EQ(got.batch_size, 16);
    CHECK(got.seed == ts.seed);
    CHECK_EQ(info.kind, PPD_CKPT_PPDOCK);
    CHECK_EQ(info.has_optimizer, 1);
    CHECK_EQ(info.has_train_state, 1);

    /* the layout the header documents */
    ppd_tensor_file *f;
    REQUIRE_OK(ppd_tensor_file_open(path, &f));
    CHECK_EQ(ppd_tensor_file_count(f), 3 * (size_t)a.ntensors + 5);
    const ppd_tensor *t = ppd_tensor_file_find(f, "encoder.intra_convs.0.fc.3.weight");
    REQUIRE(t);
    CHECK_EQ(t->dtype, PPD_TF_F32);
    CHECK(ppd_tensor_file_find(f, "optimizer.exp_avg.encoder.intra_convs.0.fc.3.weight"));
    CHECK(ppd_tensor_file_find(f, "optimizer.exp_avg_sq.encoder.atom_embed.atom_ebd.weight"));
    t = ppd_tensor_file_find(f, "train.rng");
    REQUIRE(t);
    CHECK(t->dtype == PPD_TF_I64 && t->ndim == 1 && t->shape[0] == 4);
    t = ppd_tensor_file_find(f, "train.step");
    REQUIRE(t);
    CHECK(t->dtype == PPD_TF_I64 && t->ndim == 1 && t->shape[0] == 1);
    const ppd_tf_value *val = ppd_tensor_file_value(f, "__metadata__.config");
    REQUIRE(val);
    CHECK_STR(val->s, yaml);
    val = ppd_tensor_file_value(f, "__metadata__.format");
    REQUIRE(val);
    CHECK_STR(val->s, "ppdock-train-checkpoint");
    val = ppd_tensor_file_value(f, "__metadata__.version");
    REQUIRE(val);
    CHECK_STR(val->s, "1");
    val = ppd_tensor_file_value(f, "__metadata__.producer");
    REQUIRE(val);
    CHECK(strncmp(val->s, "ppdock ", 7) == 0);
    ppd_tensor_file_close(f);

    /* weights only: the moments come back as zeros, the rng untouched */
    REQUIRE_OK(ppd_checkpoint_save(path, &a, NULL, NULL, NULL, NULL));
    memset(&got, 0, sizeof got);
    got.rng.s[0] = 5;
    got.step = 9;
    REQUIRE_OK(ppd_checkpoint_load(path, &b, m2, v2, &got, &info));
    CHECK(memcmp(a.params, b.params, sizeof(float) * n) == 0);
    int zeros = 1;
    for (size_t i = 0; i < 2 * n; i++) zeros &= m2[i] == 0.0f;
    CHECK(zeros);
    CHECK_EQ(info.has_optimizer, 0);
    CHECK_EQ(info.has_train_state, 0);
    CHECK_EQ(got.step, 0);
    CHECK_EQ(got.rng.s[0], 5);
    free(m);
    ppd_score_model_free(&a);
    ppd_score_model_free(&b);
}

/* A checkpoint written before train.order existed (its tensors and metadata, less that one)
 * loads with batch size and seed 0, "unknown", which train's resume check does not compare. */
TEST(checkpoint_without_train_order_loads_it_as_unknown) {
    const char *dir = ppt_tmpdir();
    const char *path = tpath(dir, "new.safetensors"), *old = tpath(dir, "old.safetensors");
    ppd_score_config c;
    ppd_score_model a;
    REQUIRE_OK(small_model(&c, &a, 5));
    size_t n = a.nparams;
    float *m = malloc(sizeof(float) * n * 4), *v = m + n, *m2 = m + 2 * n, *v2 = m + 3 * n;
    REQUIRE(m);
    fill_moments(m, v, n);
    ppd_train_state ts = {.step = 40, .epoch = 2, .epoch_batch = 3, .batch_size = 8, .seed = 7};
    ppd_rng_seed(&ts.rng, 3);
    REQUIRE_OK(ppd_checkpoint_save(path, &a, m, v, &ts, "model:\n  ns: 4\n"));

    ppd_tensor_file *f;
    REQUIRE_OK(ppd_tensor_file_open(path, &f));
    size_t nt = ppd_tensor_file_count(f), k = 0, nm = 0;
    ppd_st_entry *es = calloc(nt, sizeof *es);
    ppd_st_meta meta[8];
    REQUIRE(es);
    for (size_t i = 0; i < nt; i++) {
        const ppd_tensor *t = ppd_tensor_file_at(f, i);
        if (!strcmp(t->name, "train.order")) continue;
        es[k] = (ppd_st_entry){t->name, t->dtype, t->ndim, {0}, t->data};
        memcpy(es[k].shape, t->shape, sizeof t->shape);
        k++;
    }
    CHECK_EQ(k, nt - 1);
    for (size_t i = 0; i < ppd_tensor_file_value_count(f) && nm < 8; i++) {
        const ppd_tf_value *val = ppd_tensor_file_value_at(f, i);
        if (!strncmp(val->name, "__metadata__.", 13) && val->s)
            meta[nm++] = (ppd_st_meta){val->name + 13, val->s};
    }
    CHECK_EQ(nm, 4);
    REQUIRE_OK(ppd_safetensors_write(old, es, k, meta, nm));
    ppd_tensor_file_close(f);
    free(es);

    ppd_score_model b;
    REQUIRE_OK(ppd_score_model_init(&b, &c));
    ppd_train_state got;
    memset(&got, 0xab, sizeof got);
    ppd_checkpoint_info info;
    REQUIRE_OK(ppd_checkpoint_load(old, &b, m2, v2, &got, &info));
    CHECK(memcmp(a.params, b.params, sizeof(float) * n) == 0);
    CHECK(memcmp(m, m2, sizeof(float) * n * 2) == 0); /* both moments: v follows m */
    CHECK_EQ(got.step, 40);
    CHECK_EQ(got.epoch, 2);
    CHECK_EQ(got.epoch_batch, 3);
    CHECK(memcmp(got.rng.s, ts.rng.s, sizeof ts.rng.s) == 0);
    CHECK_EQ(got.batch_size, 0);
    CHECK_EQ(got.seed, 0);
    CHECK_EQ(info.has_train_state, 1);
    free(m);
    ppd_score_model_free(&a);
    ppd_score_model_free(&b);
}

TEST(checkpoint_refuses_another_model_size) {
    const char *dir = ppt_tmpdir();
    const char *path = tpath(dir, "ns4.safetensors");
    ppd_score_config c;
    ppd_score_model a, b;
    REQUIRE_OK(small_model(&c, &a, 1));
    REQUIRE_OK(ppd_checkpoint_save(path, &a, NULL, NULL, NULL, NULL));

    small_config(&c, 6);
    REQUIRE_OK(ppd_score_model_init(&b, &c));
    ppd_score_model_init_params(&b, 2);
    float *before = malloc(sizeof(float) * b.nparams);
    REQUIRE(before);
    memcpy(before, b.params, sizeof(float) * b.nparams);
    CHECK_EQ(ppd_checkpoint_load(path, &b, NULL, NULL, NULL, NULL), PPD_ERR_CONFIG);
    CHECK_ERRMSG_HAS("encoder.atom_embed.atom_ebd.weight is [24, 4] in the file, the model "
                     "wants [24, 6]");
    CHECK_ERRMSG_HAS(path);
    CHECK(memcmp(before, b.params, sizeof(float) * b.nparams) == 0); /* nothing half-loaded */
    free(before);
    ppd_score_model_free(&b);

    /* fewer layers in the model: the checkpoint has tensors it does not know */
    small_config(&c, 4);
    c.layers = 3;
    REQUIRE_OK(ppd_score_model_init(&b, &c));
    CHECK_EQ(ppd_checkpoint_load(path, &b, NULL, NULL, NULL, NULL), PPD_ERR_CONFIG);
    CHECK_ERRMSG_HAS("has tensor encoder.intra_convs.3.fc.0.weight");
    ppd_score_model_free(&b);

    /* more layers in the model than in the checkpoint: a tensor is missing */
    const char *path3 = tpath(dir, "l3.safetensors");
    REQUIRE_OK(ppd_score_model_init(&b, &c));
    REQUIRE_OK(ppd_checkpoint_save(path3, &b, NULL, NULL, NULL, NULL));
    CHECK_EQ(ppd_checkpoint_load(path3, &a, NULL, NULL, NULL, NULL), PPD_ERR_NOTFOUND);
    CHECK_ERRMSG_HAS("has no tensor encoder.intra_convs.3.fc.0.weight");
    ppd_score_model_free(&b);
    ppd_score_model_free(&a);
}

/* A file in the checkpoint layout written directly, with one value spoiled or metadata set. */
static ppd_status write_raw(const char *path, const ppd_score_model *m, const float *p,
                            const char *format, const char *version) {
    ppd_st_entry e[PPD_SCORE_MAX_TENSORS];
    for (int i = 0; i < m->ntensors; i++) {
        const ppd_param_entry *t = &m->tab[i];
        e[i] =
            (ppd_st_entry){t->name, PPD_TF_F32, t->ndim, {t->shape[0], t->shape[1]}, p + t->offset};
    }
    ppd_st_meta meta[2] = {{"format", format}, {"version", version}};
    return ppd_safetensors_write(path, e, (size_t)m->ntensors, meta, 2);
}

TEST(checkpoint_refuses_non_finite_values_and_foreign_files) {
    const char *dir = ppt_tmpdir();
    const char *path = tpath(dir, "c.safetensors");
    ppd_score_config c;
    ppd_score_model a;
    REQUIRE_OK(small_model(&c, &a, 5));
    size_t n = a.nparams;
    float *m = calloc(n * 2, sizeof(float)), *v = m + n;
    REQUIRE(m);
    REQUIRE_OK(ppd_checkpoint_save(path, &a, m, v, NULL, NULL));
    ppd_buf good = {0}, now = {0};
    REQUIRE_OK(ppd_read_file(path, &good));

    /* saving a diverged model is refused and keeps the old file */
    const ppd_param_entry *e = ppd_score_model_find(&a, "encoder.cross_convs.1.fc.0.bias");
    REQUIRE(e);
    a.params[e->offset + 2] = NAN;
    CHECK_EQ(ppd_checkpoint_save(path, &a, m, v, NULL, NULL), PPD_ERR_USAGE);
    CHECK_ERRMSG_HAS("encoder.cross_convs.1.fc.0.bias");
    REQUIRE_OK(ppd_read_file(path, &now));
    CHECK(now.len == good.len && memcmp(now.data, good.data, good.len) == 0);
    a.params[e->offset + 2] = 0.5f;
    v[e->offset] = -1e-9f;
    CHECK_EQ(ppd_checkpoint_save(path, &a, m, v, NULL, NULL), PPD_ERR_USAGE);
    CHECK_ERRMSG_HAS("exp_avg_sq of encoder.cross_convs.1.fc.0.bias");
    v[e->offset] = 0;

    /* loading one is refused, naming the tensor */
    float *p = malloc(sizeof(float) * n);
    REQUIRE(p);
    memcpy(p, a.params, sizeof(float) * n);
    p[e->offset + 1] = -INFINITY;
    REQUIRE_OK(write_raw(path, &a, p, PPD_CHECKPOINT_FORMAT, "1"));
    CHECK_EQ(ppd_checkpoint_load(path, &a, NULL, NULL, NULL, NULL), PPD_ERR_FORMAT);
    CHECK_ERRMSG_HAS("encoder.cross_convs.1.fc.0.bias holds -inf at element 1");
    CHECK(a.params[e->offset + 1] != -INFINITY);

    /* other safetensors files and versions */
    REQUIRE_OK(write_raw(path, &a, a.params, "something-else", "1"));
    CHECK_EQ(ppd_checkpoint_load(path, &a, NULL, NULL, NULL, NULL), PPD_ERR_FORMAT);
    CHECK_ERRMSG_HAS("not a ppdock training checkpoint");
    REQUIRE_OK(write_raw(path, &a, a.params, PPD_CHECKPOINT_FORMAT, "2"));
    CHECK_EQ(ppd_checkpoint_load(path, &a, NULL, NULL, NULL, NULL), PPD_ERR_VERSION);
    REQUIRE_OK(write_raw(path, &a, a.params, PPD_CHECKPOINT_FORMAT, "1"));
    CHECK_OK(ppd_checkpoint_load(path, &a, NULL, NULL, NULL, NULL));
    CHECK_EQ(ppd_checkpoint_load(tpath(dir, "nope"), &a, NULL, NULL, NULL, NULL), PPD_ERR_IO);
    CHECK_EQ(ppd_checkpoint_load(path, &a, m, NULL, NULL, NULL), PPD_ERR_USAGE);
    free(p);
    free(m);
    ppd_buf_free(&good);
    ppd_buf_free(&now);
    ppd_score_model_free(&a);
}

/* ---- DiffDock-PP .pth ------------------------------------------------------------------- */

static void golden_config(ppd_score_config *c) {
    ppd_score_config_default(c);
    c->ns = 8;
    c->nv = 3;
    c->layers = 4;
    c->lm_dim = 16;
}

TEST(checkpoint_loads_the_diffdock_golden_pth) {
    const char *path = ppt_data("diffdock-golden/model.pth");
    ppd_score_config c;
    golden_config(&c);
    ppd_score_model m;
    REQUIRE_OK(ppd_score_model_init(&m, &c));
    size_t n = m.nparams;
    float *mm = malloc(sizeof(float) * n * 2), *vv = mm + n;
    REQUIRE(mm);
    memset(mm, 0x7f, sizeof(float) * n * 2);
    ppd_train_state st = {.step = 5, .epoch = 6};
    ppd_rng_seed(&st.rng, 3);
    ppd_rng r0 = st.rng;
    ppd_checkpoint_info info;
    REQUIRE_OK(ppd_checkpoint_load(path, &m, mm, vv, &st, &info));
    CHECK_EQ(info.kind, PPD_CKPT_DIFFDOCK_PTH);
    CHECK_EQ(info.has_optimizer, 0); /* the golden file has no optimizer */
    CHECK_EQ(info.has_train_state, 0);
    CHECK_EQ(st.step, 0);
    CHECK_EQ(st.epoch, 0);
    CHECK(memcmp(&st.rng, &r0, sizeof r0) == 0);
    int zeros = 1;
    for (size_t i = 0; i < 2 * n; i++) zeros &= mm[i] == 0.0f;
    CHECK(zeros);
    ppd_tensor_file *f;
    REQUIRE_OK(ppd_tensor_file_open(path, &f));
    float *want = malloc(sizeof(float) * n);
    REQUIRE(want);
    for (int i = 0; i < m.ntensors; i++) {
        const ppd_param_entry *e = &m.tab[i];
        char name[128];
        snprintf(name, sizeof name, "model.%s", e->name);
        const ppd_tensor *t = ppd_tensor_file_find(f, name);
        REQUIRE(t);
        REQUIRE_EQ(t->numel, e->numel);
        REQUIRE_OK(ppd_tensor_to_f32(t, want));
        if (memcmp(want, m.params + e->offset, sizeof(float) * e->numel) != 0)
            ppt_fail(__FILE__, __LINE__, "%s differs from the file", name);
    }
    ppd_tensor_file_close(f);
    free(want);
    free(mm);
    ppd_score_model_free(&m);

    /* the same file into another size */
    c.ns = 16;
    REQUIRE_OK(ppd_score_model_init(&m, &c));
    CHECK_EQ(ppd_checkpoint_load(path, &m, NULL, NULL, NULL, NULL), PPD_ERR_CONFIG);
    CHECK_ERRMSG_HAS("model.encoder.atom_embed.atom_ebd.weight is [24, 8] in the file");
    ppd_score_model_free(&m);
}

TEST(checkpoint_refuses_the_confidence_model) {
    const char *gz = ppt_data("diffdock-pp/confidence_model_dips.pth.gz");
    ppd_buf raw = {0}, pth = {0};
    REQUIRE_OK(ppd_read_file(gz, &raw));
    REQUIRE_OK(ppd_gunzip(raw.data, raw.len, gz, &pth));
    const char *path = tpath(ppt_tmpdir(), "confidence_model_dips.pth");
    REQUIRE(write_bytes(path, pth.data, pth.len));
    ppd_buf_free(&raw);
    ppd_buf_free(&pth);
    /* its own sizes (ns 16, nv 4, lm 1280) and the score model's defaults: both refused */
    for (int k = 0; k < 2; k++) {
        ppd_score_config c;
        ppd_score_config_default(&c);
        if (k == 0) c.ns = 16, c.nv = 4;
        ppd_score_model m;
        REQUIRE_OK(ppd_score_model_init(&m, &c));
        size_t n = m.nparams;
        float *mm = calloc(n * 2, sizeof(float));
        REQUIRE(mm);
        CHECK_EQ(ppd_checkpoint_load(path, &m, mm, mm + n, NULL, NULL), PPD_ERR_FORMAT);
        CHECK_ERRMSG_HAS("confidence model");
        CHECK_ERRMSG_HAS("model.encoder.confidence_predictor.0.weight");
        free(mm);
        ppd_score_model_free(&m);
    }
}

/* ---- a crafted .pth with Adam state --------------------------------------------------------
 * torch.save's layout, built here so the optimizer path is tested without Python: a STORED ZIP
 * of archive/data.pkl (protocol 2), archive/data/0 (one float storage that every tensor views)
 * and archive/version. */

static void put(ppd_buf *b, uint64_t v, int bytes) {
    unsigned char x[8];
    for (int i = 0; i < bytes; i++) x[i] = (unsigned char)(v >> (8 * i));
    ppd_buf_append(b, x, (size_t)bytes);
}

typedef struct {
    const char *name;
    const void *data;
    size_t len;
} zent;

static void make_zip(ppd_buf *out, const zent *e, int n) {
    uint64_t off[8];
    out->len = 0;
    for (int i = 0; i < n; i++) {
        off[i] = out->len;
        put(out, 0x04034b50, 4);
        put(out, 20, 2);
        put(out, 0, 2);
        put(out, 0, 2); /* stored */
        put(out, 0, 4);
        put(out, (uint32_t)crc32(0, e[i].data, (uInt)e[i].len), 4);
        put(out, e[i].len, 4);
        put(out, e[i].len, 4);
        put(out, strlen(e[i].name), 2);
        put(out, 0, 2);
        ppd_buf_append(out, e[i].name, strlen(e[i].name));
        ppd_buf_append(out, e[i].data, e[i].len);
    }
    uint64_t cd = out->len;
    for (int i = 0; i < n; i++) {
        put(out, 0x02014b50, 4);
        put(out, 0x031e, 2);
        put(out, 20, 2);
        put(out, 0, 2);
        put(out, 0, 2);
        put(out, 0, 4);
        put(out, (uint32_t)crc32(0, e[i].data, (uInt)e[i].len), 4);
        put(out, e[i].len, 4);
        put(out, e[i].len, 4);
        put(out, strlen(e[i].name), 2);
        put(out, 0, 2);
        put(out, 0, 2);
        put(out, 0, 2);
        put(out, 0, 2);
        put(out, 0, 4);
        put(out, off[i], 4);
        ppd_buf_append(out, e[i].name, strlen(e[i].name));
    }
    uint64_t cd_size = out->len - cd;
    put(out, 0x06054b50, 4);
    put(out, 0, 2);
    put(out, 0, 2);
    put(out, (uint64_t)n, 2);
    put(out, (uint64_t)n, 2);
    put(out, cd_size, 4);
    put(out, cd, 4);
    put(out, 0, 2);
}

static void pk_op(ppd_buf *b, int op) {
    unsigned char c = (unsigned char)op;
    ppd_buf_append(b, &c, 1);
}
static void pk_str(ppd_buf *b, const char *s) {
    pk_op(b, 'X'); /* BINUNICODE */
    put(b, strlen(s), 4);
    ppd_buf_append(b, s, strlen(s));
}
static void pk_int(ppd_buf *b, int64_t v) {
    pk_op(b, 'J'); /* BININT */
    put(b, (uint32_t)v, 4);
}
static void pk_global(ppd_buf *b, const char *mod, const char *name) {
    pk_op(b, 'c');
    ppd_buf_append(b, mod, strlen(mod));
    pk_op(b, '\n');
    ppd_buf_append(b, name, strlen(name));
    pk_op(b, '\n');
}

/* _rebuild_tensor_v2(storage 0 of `total` floats, offset, size, row-major stride, False, {}) */
static void pk_tensor(ppd_buf *b, int64_t total, int64_t offset, int ndim, const int64_t *shape) {
    pk_global(b, "torch._utils", "_rebuild_tensor_v2");
    pk_op(b, '(');
    pk_op(b, '(');
    pk_str(b, "storage");
    pk_global(b, "torch", "FloatStorage");
    pk_str(b, "0");
    pk_str(b, "cpu");
    pk_int(b, total);
    pk_op(b, 't');
    pk_op(b, 'Q'); /* BINPERSID */
    pk_int(b, offset);
    pk_op(b, '(');
    for (int d = 0; d < ndim; d++) pk_int(b, shape[d]);
    pk_op(b, 't');
    pk_op(b, '(');
    for (int d = 0; d < ndim; d++) pk_int(b, d == ndim - 1 ? 1 : shape[d + 1]);
    pk_op(b, 't');
    pk_op(b, 0x89); /* NEWFALSE */
    pk_global(b, "collections", "OrderedDict");
    pk_op(b, ')');
    pk_op(b, 'R');
    pk_op(b, 't');
    pk_op(b, 'R');
}

typedef struct {
    const float *p, *m, *v; /* parameters and moments, the model's layout */
    const float *steps;     /* one per parameter */
    int nstates;            /* optimizer states written (0: none) */
    const char *extra;      /* a model.* tensor the model does not have, or NULL */
    float cross_max;        /* range of the written cross_dist_exp.offset */
} pth_spec;

/* {"model": {names...}, "optimizer": {"state": {i: {"step", "exp_avg", "exp_avg_sq"}}}} */
static void make_pth(ppd_buf *out, const ppd_score_model *mdl, const pth_spec *s) {
    size_t n = mdl->nparams;
    int D = mdl->cfg.dist_dim;
    size_t total = 3 * n + (size_t)mdl->ntensors + 2 * (size_t)D + 1;
    float *st = calloc(total, sizeof(float));
    memcpy(st, s->p, sizeof(float) * n);
    memcpy(st + n, s->m, sizeof(float) * n);
    memcpy(st + 2 * n, s->v, sizeof(float) * n);
    memcpy(st + 3 * n, s->steps, sizeof(float) * (size_t)mdl->ntensors);
    float *lig = st + 3 * n + mdl->ntensors, *cross = lig + D;
    memcpy(lig, mdl->off_intra, sizeof(float) * (size_t)D);
    for (int i = 0; i < D; i++) cross[i] = s->cross_max * (float)i / (float)(D - 1);
    ppd_buf pk = {0};
    pk_op(&pk, 0x80);
    pk_op(&pk, 2);
    pk_op(&pk, '}');
    pk_op(&pk, '(');
    pk_str(&pk, "model");
    pk_op(&pk, '}');
    pk_op(&pk, '(');
    int64_t dshape[1] = {D}, one[1] = {1};
    pk_str(&pk, "encoder.lig_dist_exp.offset");
    pk_tensor(&pk, (int64_t)total, (int64_t)(lig - st), 1, dshape);
    for (int i = 0; i < mdl->ntensors; i++) {
        const ppd_param_entry *e = &mdl->tab[i];
        pk_str(&pk, e->name);
        pk_tensor(&pk, (int64_t)total, (int64_t)e->offset, e->ndim, e->shape);
    }
    pk_str(&pk, "encoder.cross_dist_exp.offset");
    pk_tensor(&pk, (int64_t)total, (int64_t)(cross - st), 1, dshape);
    if (s->extra) {
        pk_str(&pk, s->extra);
        pk_tensor(&pk, (int64_t)total, 0, 1, one);
    }
    pk_op(&pk, 'u');
    if (s->nstates) {
        pk_str(&pk, "optimizer");
        pk_op(&pk, '}');
        pk_op(&pk, '(');
        pk_str(&pk, "state");
        pk_op(&pk, '}');
        pk_op(&pk, '(');
        for (int i = 0; i < s->nstates; i++) {
            const ppd_param_entry *e = &mdl->tab[i % mdl->ntensors];
            pk_int(&pk, i);
            pk_op(&pk, '}');
            pk_op(&pk, '(');
            pk_str(&pk, "step");
            pk_tensor(&pk, (int64_t)total, (int64_t)(3 * n) + i % mdl->ntensors, 0, NULL);
            pk_str(&pk, "exp_avg");
            pk_tensor(&pk, (int64_t)total, (int64_t)(n + e->offset), e->ndim, e->shape);
            pk_str(&pk, "exp_avg_sq");
            pk_tensor(&pk, (int64_t)total, (int64_t)(2 * n + e->offset), e->ndim, e->shape);
            pk_op(&pk, 'u');
        }
        pk_op(&pk, 'u');
        pk_op(&pk, 'u');
    }
    pk_op(&pk, 'u');
    pk_op(&pk, '.');
    zent z[3] = {{"archive/data.pkl", pk.data, pk.len},
                 {"archive/data/0", st, total * sizeof(float)},
                 {"archive/version", "3\n", 2}};
    make_zip(out, z, 3);
    ppd_buf_free(&pk);
    free(st);
}

TEST(checkpoint_loads_adam_state_from_a_pth) {
    const char *dir = ppt_tmpdir();
    const char *path = tpath(dir, "crafted.pth");
    ppd_score_config c;
    ppd_score_model a, b;
    REQUIRE_OK(small_model(&c, &a, 21));
    REQUIRE_OK(ppd_score_model_init(&b, &c));
    size_t n = a.nparams;
    float *m = malloc(sizeof(float) * n * 4), *v = m + n, *m2 = m + 2 * n, *v2 = m + 3 * n;
    float steps[PPD_SCORE_MAX_TENSORS];
    REQUIRE(m);
    fill_moments(m, v, n);
    for (int i = 0; i < a.ntensors; i++) steps[i] = 4321.0f;
    pth_spec s = {a.params, m, v, steps, a.ntensors, NULL, c.cross_max_dist};
    ppd_buf z = {0};
    make_pth(&z, &a, &s);
    REQUIRE(write_bytes(path, z.data, z.len));
    ppd_train_state st = {.step = 1, .epoch = 2};
    ppd_checkpoint_info info;
    REQUIRE_OK(ppd_checkpoint_load(path, &b, m2, v2, &st, &info));
    CHECK(memcmp(a.params, b.params, sizeof(float) * n) == 0);
    CHECK(memcmp(m, m2, sizeof(float) * n) == 0);
    CHECK(memcmp(v, v2, sizeof(float) * n) == 0);
    CHECK_EQ(st.step, 4321);
    CHECK_EQ(st.epoch, 0);
    CHECK_EQ(info.kind, PPD_CKPT_DIFFDOCK_PTH);
    CHECK_EQ(info.has_optimizer, 1);
    CHECK_EQ(info.has_train_state, 1);

    /* steps that differ between parameters */
    steps[3] = 4320.0f;
    make_pth(&z, &a, &s);
    REQUIRE(write_bytes(path, z.data, z.len));
    CHECK_EQ(ppd_checkpoint_load(path, &b, m2, v2, &st, &info), PPD_ERR_FORMAT);
    CHECK_ERRMSG_HAS("optimizer.state.3.step is 4320");
    steps[3] = 4321.0f;

    /* optimizer state for one parameter more than the model has */
    s.nstates = a.ntensors + 1;
    make_pth(&z, &a, &s);
    REQUIRE(write_bytes(path, z.data, z.len));
    CHECK_EQ(ppd_checkpoint_load(path, &b, m2, v2, &st, &info), PPD_ERR_CONFIG);
    char want[64];
    snprintf(want, sizeof want, "optimizer.state.%d.", a.ntensors);
    CHECK_ERRMSG_HAS(want);
    s.nstates = a.ntensors;

    /* a model tensor this model does not have */
    s.extra = "encoder.extra_head.weight";
    make_pth(&z, &a, &s);
    REQUIRE(write_bytes(path, z.data, z.len));
    CHECK_EQ(ppd_checkpoint_load(path, &b, m2, v2, &st, &info), PPD_ERR_CONFIG);
    CHECK_ERRMSG_HAS("model.encoder.extra_head.weight");
    s.extra = NULL;

    /* Gaussian offsets of another range */
    s.cross_max = 60.0f;
    make_pth(&z, &a, &s);
    REQUIRE(write_bytes(path, z.data, z.len));
    CHECK_EQ(ppd_checkpoint_load(path, &b, m2, v2, &st, &info), PPD_ERR_CONFIG);
    CHECK_ERRMSG_HAS("model.encoder.cross_dist_exp.offset");
    s.cross_max = c.cross_max_dist;

    /* a negative second moment */
    v[7] = -1.0f;
    make_pth(&z, &a, &s);
    REQUIRE(write_bytes(path, z.data, z.len));
    CHECK_EQ(ppd_checkpoint_load(path, &b, m2, v2, &st, &info), PPD_ERR_FORMAT);
    CHECK_ERRMSG_HAS("optimizer.state.0.exp_avg_sq holds -1 at element 7");
    v[7] = 0.0f;

    /* no optimizer at all: weights only */
    s.nstates = 0;
    make_pth(&z, &a, &s);
    REQUIRE(write_bytes(path, z.data, z.len));
    REQUIRE_OK(ppd_checkpoint_load(path, &b, m2, v2, &st, &info));
    CHECK_EQ(info.has_optimizer, 0);
    CHECK_EQ(st.step, 0);
    ppd_buf_free(&z);
    free(m);
    ppd_score_model_free(&a);
    ppd_score_model_free(&b);
}
