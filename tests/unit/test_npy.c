/* NumPy .npy: files written by numpy.save (tests/ref/tensorfile_ref.py) read back exactly, the
 * writer's bytes identical to numpy's, round trips, and malformed files refused. */
#include "../test.h"

#include "ppdock/fsutil.h"
#include "ppdock/npy.h"
#include "ppdock/status.h"

#include <stdint.h>
#include <stdlib.h>

/* One line of np_expected.txt: "name descr [shape] v0 v1 ..." checked against the file. */
static void check_npy_line(char *line) {
    char *save, *name = strtok_r(line, " ", &save), *descr = strtok_r(NULL, " ", &save);
    char *shape = strtok_r(NULL, " ", &save), path[256];
    REQUIRE(name && descr && shape);
    snprintf(path, sizeof path, "tensorfile/%s.npy", name);
    ppd_npy a;
    REQUIRE_OK(ppd_npy_read(ppt_data(path), &a));
    const char *want_dt = strcmp(descr, "<f4") == 0   ? "f32"
                          : strcmp(descr, "<f2") == 0 ? "f16"
                                                      : "i64";
    CHECK_STR(ppd_tf_dtype_name(a.t.dtype), want_dt);
    CHECK_EQ((uintptr_t)a.t.data % 64, 0);
    char got_shape[128] = "[";
    for (int d = 0; d < a.t.ndim; d++)
        snprintf(got_shape + strlen(got_shape), sizeof got_shape - strlen(got_shape), "%s%lld",
                 d ? "," : "", (long long)a.t.shape[d]);
    strcat(got_shape, "]");
    CHECK_STR(got_shape, shape);
    float *x = malloc(sizeof(float) * ((size_t)a.t.numel + 1));
    REQUIRE(x);
    CHECK_OK(ppd_tensor_to_f32(&a.t, x));
    int64_t i = 0;
    for (char *v; (v = strtok_r(NULL, " ", &save)) != NULL && i < a.t.numel; i++) {
        if (a.t.dtype == PPD_TF_I64) {
            int64_t got;
            memcpy(&got, (const char *)a.t.data + 8 * i, 8);
            CHECK_EQ(got, strtoll(v, NULL, 10));
        } else {
            CHECK(x[i] == (float)strtod(v, NULL));
        }
    }
    CHECK_EQ(i, a.t.numel);
    free(x);
    ppd_npy_free(&a);
}

TEST(npy_reads_numpy_files_exactly) {
    ppd_buf b = {0};
    REQUIRE_OK(ppd_read_file(ppt_data("tensorfile/np_expected.txt"), &b));
    int n = 0;
    char *save;
    for (char *line = strtok_r((char *)b.data, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save), n++)
        check_npy_line(line);
    CHECK_EQ(n, 3);
    ppd_buf_free(&b);
}

TEST(npy_writer_bytes_equal_numpy_save) {
    /* The float32 file numpy wrote, re-encoded from its own values, is the same bytes. */
    ppd_buf file = {0}, mine = {0};
    REQUIRE_OK(ppd_read_file(ppt_data("tensorfile/np_f32_2x3x4.npy"), &file));
    ppd_npy a;
    REQUIRE_OK(ppd_npy_parse(file.data, file.len, "np_f32_2x3x4.npy", &a));
    REQUIRE_OK(ppd_npy_encode_f32(a.t.data, a.t.ndim, a.t.shape, &mine));
    CHECK_EQ(mine.len, file.len);
    CHECK(mine.len == file.len && memcmp(mine.data, file.data, file.len) == 0);
    ppd_npy_free(&a);
    /* Headers numpy 1.24 writes for other ranks (from np.save of such arrays): 128 bytes with
     * the dict, spare spaces and '\n'. */
    struct {
        int ndim;
        int64_t shape[2];
        const char *dict;
    } cases[] = {
        {0, {0}, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }"},
        {1, {5}, "{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }"},
        {2, {2, 3}, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"},
        {2,
         {1000000000000, 0},
         "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000, 0), }"},
    };
    float data[6] = {1, 2, 3, 4, 5, 6};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        REQUIRE_OK(ppd_npy_encode_f32(data, cases[c].ndim, cases[c].shape, &mine));
        CHECK(memcmp(mine.data, "\x93NUMPY\x01\x00\x76\x00", 10) == 0); /* 118-byte header */
        size_t dl = strlen(cases[c].dict);
        CHECK(memcmp(mine.data + 10, cases[c].dict, dl) == 0);
        for (size_t k = 10 + dl; k < 127; k++) CHECK(mine.data[k] == ' ');
        CHECK(mine.data[127] == '\n');
    }
    ppd_buf_free(&file);
    ppd_buf_free(&mine);
}

TEST(npy_write_read_round_trip) {
    const char *dir = ppt_tmpdir();
    char path[600];
    snprintf(path, sizeof path, "%s/x.npy", dir);
    float data[24];
    for (int i = 0; i < 24; i++) data[i] = (float)i * 0.1f - 1.0f;
    int64_t shapes[][8] = {{0}, {24}, {2, 3, 4}, {1, 2, 1, 3, 1, 2, 1, 2}, {0, 5}};
    int ndims[] = {0, 1, 3, 8, 2};
    for (int c = 0; c < 5; c++) {
        REQUIRE_OK(ppd_npy_write_f32(path, data, ndims[c], shapes[c]));
        ppd_npy a;
        REQUIRE_OK(ppd_npy_read(path, &a));
        CHECK_EQ(a.t.dtype, PPD_TF_F32);
        CHECK_EQ(a.t.ndim, ndims[c]);
        for (int d = 0; d < ndims[c]; d++) CHECK_EQ(a.t.shape[d], shapes[c][d]);
        CHECK(a.t.contiguous);
        CHECK(memcmp(a.t.data, data, (size_t)a.t.numel * 4) == 0);
        ppd_npy_free(&a);
    }
    CHECK_EQ(ppd_npy_write_f32(path, data, 9, shapes[3]), PPD_ERR_USAGE);
    CHECK_EQ(ppd_npy_write_f32(path, data, 1, (int64_t[]){-1}), PPD_ERR_USAGE);
    snprintf(path, sizeof path, "%s/no/such/dir/x.npy", dir);
    CHECK_EQ(ppd_npy_write_f32(path, data, 1, shapes[1]), PPD_ERR_IO);
    CHECK_ERRMSG_HAS("x.npy");
}

/* A .npy with the given header dict and data bytes must fail naming `needle`. */
static void expect_npy_error(const char *dict, size_t data_len, const char *needle) {
    ppd_buf b = {0};
    ppd_buf_append(&b, "\x93NUMPY\x01\x00\x00\x00", 10);
    ppd_buf_printf(&b, "%s", dict);
    while ((b.len + 1) % 64) ppd_buf_append(&b, " ", 1);
    ppd_buf_append(&b, "\n", 1);
    b.data[8] = (unsigned char)((b.len - 10) & 0xff);
    b.data[9] = (unsigned char)((b.len - 10) >> 8);
    for (size_t i = 0; i < data_len; i++) ppd_buf_append(&b, "\0", 1);
    ppd_npy a;
    ppd_status st = ppd_npy_parse(b.data, b.len, "bad.npy", &a);
    if (st != PPD_ERR_FORMAT)
        ppt_fail(__FILE__, __LINE__, "%s: status %d", dict, st);
    else if (!strstr(ppd_errmsg(), needle) || !strstr(ppd_errmsg(), "bad.npy"))
        ppt_fail(__FILE__, __LINE__, "message \"%s\" lacks \"%s\"", ppd_errmsg(), needle);
    ppd_npy_free(&a);
    ppd_buf_free(&b);
}

TEST(npy_refuses_what_it_does_not_read) {
    expect_npy_error("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", 8, "'>f4'");
    expect_npy_error("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", 16, "Fortran");
    expect_npy_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", 15,
                     "truncated");
    expect_npy_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", 17, "trailing");
    expect_npy_error("{'descr': '<f4', 'shape': (2,), }", 8, "missing");
    expect_npy_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", 8,
                     "unexpected or repeated key");
    expect_npy_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2,x), }", 8, "bad shape");
    expect_npy_error("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", 8,
                     "expected a string");
    ppd_npy a;
    CHECK_EQ(ppd_npy_parse("hello", 5, "bad.npy", &a), PPD_ERR_FORMAT);
    CHECK_ERRMSG_HAS("magic");
    CHECK_EQ(ppd_npy_parse("\x93NUMPY\x04\x00\x00\x00\x00\x00", 12, "bad.npy", &a), PPD_ERR_FORMAT);
    CHECK_ERRMSG_HAS("version 4.0");
    CHECK_EQ(ppd_npy_parse("\x93NUMPY\x01\x00\xff\x00{", 11, "bad.npy", &a), PPD_ERR_FORMAT);
    CHECK_ERRMSG_HAS("truncated .npy header");
    /* Fortran order of a 1-D array is the same layout: read. */
    ppd_buf b = {0};
    ppd_buf_append(&b, "\x93NUMPY\x02\x00\x00\x00\x00\x00", 12);
    ppd_buf_printf(&b, "{'descr': '<f2', 'fortran_order': True, 'shape': (3L,), }\n");
    b.data[8] = (unsigned char)(b.len - 12);
    ppd_buf_append(&b, "\x00\x3c\x00\xc0\x00\x7c", 6); /* 1, -2, inf */
    REQUIRE_OK(ppd_npy_parse(b.data, b.len, "v2.npy", &a));
    float x[3];
    CHECK_OK(ppd_tensor_to_f32(&a.t, x));
    CHECK(x[0] == 1 && x[1] == -2 && isinf(x[2]));
    ppd_npy_free(&a);
    ppd_buf_free(&b);
}
