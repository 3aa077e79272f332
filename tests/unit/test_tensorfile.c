/* Tensor files (safetensors, PyTorch checkpoints): files written by the real writers and the
 * values torch itself reads from them (tests/ref/tensorfile_ref.py), the released DiffDock-PP
 * checkpoint against spec §9.2, crafted hostile inputs, and a mutation fuzz loop. */
#include "../test.h"

#include "ppdock/fsutil.h"
#include "ppdock/rng.h"
#include "ppdock/status.h"
#include "ppdock/tensorfile.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* ---- expected-value files ---------------------------------------------------------------- */

/* "[3,4]" -> ndim 2, {3, 4}; "[]" -> 0. */
static int parse_shape(const char *s, int64_t *shape) {
    int n = 0;
    if (*s++ != '[') return -1;
    while (*s && *s != ']') {
        char *end;
        shape[n++] = strtoll(s, &end, 10);
        s = *end == ',' ? end + 1 : end;
        if (n > PPD_TF_MAX_DIMS) return -1;
    }
    return n;
}

static int same_shape(const ppd_tensor *t, const char *shape_text) {
    int64_t shape[PPD_TF_MAX_DIMS + 1];
    int n = parse_shape(shape_text, shape);
    if (n != t->ndim) return 0;
    for (int d = 0; d < n; d++)
        if (shape[d] != t->shape[d]) return 0;
    return 1;
}

/* Element i (row-major logical order) of an integer tensor, through its strides. */
static int64_t int_at(const ppd_tensor *t, int64_t i) {
    int64_t off = 0;
    for (int d = t->ndim - 1; d >= 0; d--) {
        off += (i % t->shape[d]) * t->strides[d];
        i /= t->shape[d];
    }
    const unsigned char *p =
        (const unsigned char *)t->data + off * (int64_t)ppd_tf_dtype_size(t->dtype);
    switch (t->dtype) {
    case PPD_TF_I64: {
        int64_t v;
        memcpy(&v, p, 8);
        return v;
    }
    case PPD_TF_I32: {
        int32_t v;
        memcpy(&v, p, 4);
        return v;
    }
    case PPD_TF_I16: {
        int16_t v;
        memcpy(&v, p, 2);
        return v;
    }
    case PPD_TF_I8:
        return (int8_t)p[0];
    default:
        return p[0]; /* u8, bool */
    }
}

static int is_float_dtype(ppd_tf_dtype dt) {
    return dt == PPD_TF_F32 || dt == PPD_TF_F16 || dt == PPD_TF_BF16 || dt == PPD_TF_F64;
}

static int same_float(float a, float b) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    return memcmp(&a, &b, sizeof a) == 0; /* -0.0 differs from 0.0 */
}

/* "T name dtype [shape] v0 v1 ...": every value exactly, in logical order. */
static void check_tensor_line(const ppd_tensor_file *f, char *line, const ppd_tensor *at) {
    char *save, *name, *dtype, *shape;
    strtok_r(line, " ", &save);
    name = strtok_r(NULL, " ", &save);
    dtype = strtok_r(NULL, " ", &save);
    shape = strtok_r(NULL, " ", &save);
    REQUIRE(name && dtype && shape);
    const ppd_tensor *t = ppd_tensor_file_find(f, name);
    if (!t) {
        ppt_fail(__FILE__, __LINE__, "tensor %s not found", name);
        return;
    }
    if (at) CHECK_STR(at->name, name); /* file order */
    CHECK_STR(ppd_tf_dtype_name(t->dtype), dtype);
    if (!same_shape(t, shape))
        ppt_fail(__FILE__, __LINE__, "%s: shape differs from %s", name, shape);
    float *x = calloc((size_t)t->numel + 1, sizeof *x);
    REQUIRE(x);
    CHECK_OK(ppd_tensor_to_f32(t, x));
    int64_t i = 0;
    for (char *v; (v = strtok_r(NULL, " ", &save)) != NULL; i++) {
        if (i >= t->numel) break;
        if (is_float_dtype(t->dtype)) {
            float want = (float)strtod(v, NULL);
            if (!same_float(x[i], want))
                ppt_fail(__FILE__, __LINE__, "%s[%lld]: %.9g != %s", name, (long long)i, x[i], v);
        } else {
            long long want = strtoll(v, NULL, 10);
            if (int_at(t, i) != want || !same_float(x[i], (float)want))
                ppt_fail(__FILE__, __LINE__, "%s[%lld]: %lld != %s", name, (long long)i,
                         (long long)int_at(t, i), v);
        }
    }
    CHECK_EQ(i, t->numel);
    free(x);
}

static int hexval(char c) {
    return c <= '9' ? c - '0' : (c | 32) - 'a' + 10;
}

/* "V name kind value" (strings as hex of their UTF-8 bytes, "-" for empty or none). */
static void check_value_line(const ppd_tensor_file *f, char *line, const ppd_tf_value *at) {
    char *save, *name, *kind, *val;
    strtok_r(line, " ", &save);
    name = strtok_r(NULL, " ", &save);
    kind = strtok_r(NULL, " ", &save);
    val = strtok_r(NULL, " ", &save);
    REQUIRE(name && kind && val);
    const ppd_tf_value *v = ppd_tensor_file_value(f, name);
    if (!v) {
        ppt_fail(__FILE__, __LINE__, "value %s not found", name);
        return;
    }
    if (at) CHECK_STR(at->name, name);
    if (strcmp(kind, "none") == 0) {
        CHECK_EQ(v->kind, PPD_TF_VAL_NONE);
    } else if (strcmp(kind, "bool") == 0) {
        CHECK_EQ(v->kind, PPD_TF_VAL_BOOL);
        CHECK_EQ(v->i, atoi(val));
    } else if (strcmp(kind, "int") == 0) {
        CHECK_EQ(v->kind, PPD_TF_VAL_INT);
        CHECK_EQ(v->i, strtoll(val, NULL, 10));
    } else if (strcmp(kind, "float") == 0) {
        CHECK_EQ(v->kind, PPD_TF_VAL_FLOAT);
        CHECK(v->f == strtod(val, NULL));
    } else if (strcmp(kind, "str") == 0) {
        char s[256] = {0};
        for (size_t k = 0; strcmp(val, "-") && val[2 * k] && k + 1 < sizeof s; k++)
            s[k] = (char)(hexval(val[2 * k]) << 4 | hexval(val[2 * k + 1]));
        CHECK_EQ(v->kind, PPD_TF_VAL_STR);
        CHECK_STR(v->s, s);
    } else {
        CHECK_EQ(v->kind, PPD_TF_VAL_OPAQUE);
        CHECK_STR(v->s, val);
    }
}

/* Every line of an expected file against f, in file order when `ordered`; the "V" lines only
 * when `values` (safetensors files hold tensors only). */
static void check_expected(const ppd_tensor_file *f, const char *path, int ordered, int values) {
    ppd_buf b = {0};
    REQUIRE_OK(ppd_read_file(path, &b));
    size_t nt = 0, nv = 0;
    char *save;
    for (char *line = strtok_r((char *)b.data, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == 'T') {
            check_tensor_line(f, line, ordered ? ppd_tensor_file_at(f, nt) : NULL);
            nt++;
        } else if (line[0] == 'V' && values) {
            check_value_line(f, line, ordered ? ppd_tensor_file_value_at(f, nv) : NULL);
            nv++;
        }
    }
    CHECK_EQ(ppd_tensor_file_count(f), nt);
    if (values) CHECK_EQ(ppd_tensor_file_value_count(f), nv);
    ppd_buf_free(&b);
}

/* ---- a small ZIP writer and reader (tests only; STORED entries) -------------------------- */

typedef struct {
    const char *name;
    const void *data;
    size_t len;
} zent;

static void put(ppd_buf *b, uint64_t v, int bytes) {
    unsigned char x[8];
    for (int i = 0; i < bytes; i++) x[i] = (unsigned char)(v >> (8 * i));
    ppd_buf_append(b, x, (size_t)bytes);
}

/* A ZIP as torch writes it (STORED), optionally in ZIP64 form (every size and offset in the
 * ZIP64 extra fields and a ZIP64 end record). */
static void make_zip(ppd_buf *out, const zent *e, int n, int zip64) {
    uint64_t off[64];
    out->len = 0;
    for (int i = 0; i < n; i++) {
        off[i] = out->len;
        uint32_t crc = (uint32_t)crc32(0, e[i].data, (uInt)e[i].len);
        put(out, 0x04034b50, 4);
        put(out, zip64 ? 45 : 20, 2);
        put(out, 0, 2);
        put(out, 0, 2); /* stored */
        put(out, 0, 4);
        put(out, crc, 4);
        put(out, zip64 ? 0xffffffffu : e[i].len, 4);
        put(out, zip64 ? 0xffffffffu : e[i].len, 4);
        put(out, strlen(e[i].name), 2);
        put(out, zip64 ? 20 : 0, 2);
        ppd_buf_append(out, e[i].name, strlen(e[i].name));
        if (zip64) {
            put(out, 1, 2);
            put(out, 16, 2);
            put(out, e[i].len, 8);
            put(out, e[i].len, 8);
        }
        ppd_buf_append(out, e[i].data, e[i].len);
    }
    uint64_t cd = out->len;
    for (int i = 0; i < n; i++) {
        put(out, 0x02014b50, 4);
        put(out, 0x031e, 2);
        put(out, zip64 ? 45 : 20, 2);
        put(out, 0, 2);
        put(out, 0, 2);
        put(out, 0, 4);
        put(out, (uint32_t)crc32(0, e[i].data, (uInt)e[i].len), 4);
        put(out, zip64 ? 0xffffffffu : e[i].len, 4);
        put(out, zip64 ? 0xffffffffu : e[i].len, 4);
        put(out, strlen(e[i].name), 2);
        put(out, zip64 ? 28 : 0, 2);
        put(out, 0, 2);
        put(out, 0, 2);
        put(out, 0, 2);
        put(out, 0, 4);
        put(out, zip64 ? 0xffffffffu : off[i], 4);
        ppd_buf_append(out, e[i].name, strlen(e[i].name));
        if (zip64) {
            put(out, 1, 2);
            put(out, 24, 2);
            put(out, e[i].len, 8);
            put(out, e[i].len, 8);
            put(out, off[i], 8);
        }
    }
    uint64_t cd_size = out->len - cd;
    if (zip64) {
        uint64_t z64 = out->len;
        put(out, 0x06064b50, 4);
        put(out, 44, 8);
        put(out, 45, 2);
        put(out, 45, 2);
        put(out, 0, 4);
        put(out, 0, 4);
        put(out, (uint64_t)n, 8);
        put(out, (uint64_t)n, 8);
        put(out, cd_size, 8);
        put(out, cd, 8);
        put(out, 0x07064b50, 4);
        put(out, 0, 4);
        put(out, z64, 8);
        put(out, 1, 4);
    }
    put(out, 0x06054b50, 4);
    put(out, 0, 2);
    put(out, 0, 2);
    put(out, zip64 ? 0xffff : (uint64_t)n, 2);
    put(out, zip64 ? 0xffff : (uint64_t)n, 2);
    put(out, zip64 ? 0xffffffffu : cd_size, 4);
    put(out, zip64 ? 0xffffffffu : cd, 4);
    put(out, 0, 2);
}

static uint32_t rd32le(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint16_t rd16le(const unsigned char *p) {
    return (uint16_t)(p[0] | p[1] << 8);
}

/* The entries of a small STORED ZIP without a comment (what torch.save writes), with their
 * data offsets. Names are copied into `names` (NUL-separated). Returns the count. */
static int read_zip(const unsigned char *z, size_t len, zent *e, size_t *data_off, int max,
                    char *names, size_t names_cap) {
    const unsigned char *eocd = z + len - 22;
    int n = rd16le(eocd + 10);
    const unsigned char *p = z + rd32le(eocd + 16);
    size_t used = 0;
    for (int i = 0; i < n && i < max; i++) {
        size_t nl = rd16le(p + 28), xl = rd16le(p + 30), cl = rd16le(p + 32);
        uint32_t size = rd32le(p + 20), lo = rd32le(p + 42);
        if (used + nl + 1 > names_cap) return -1;
        memcpy(names + used, p + 46, nl);
        names[used + nl] = 0;
        e[i].name = names + used;
        used += nl + 1;
        data_off[i] = lo + 30 + rd16le(z + lo + 26) + rd16le(z + lo + 28);
        e[i].data = z + data_off[i];
        e[i].len = size;
        p += 46 + nl + xl + cl;
    }
    return n;
}

/* A torch-like archive "archive/" holding pkl as data.pkl, storages data/0.., and version. */
static void make_pt(ppd_buf *out, const void *pkl, size_t pkl_len, const zent *storages, int ns,
                    int zip64) {
    zent e[16];
    int n = 0;
    e[n++] = (zent){"archive/data.pkl", pkl, pkl_len};
    for (int i = 0; i < ns && n < 15; i++) e[n++] = storages[i];
    e[n++] = (zent){"archive/version", "3\n", 2};
    make_zip(out, e, n, zip64);
}

/* ---- a small pickle writer (tests only) ------------------------------------------------- */

static void pk_raw(ppd_buf *b, const char *s, size_t n) {
    ppd_buf_append(b, s, n);
}
static void pk_op(ppd_buf *b, int op) {
    unsigned char c = (unsigned char)op;
    ppd_buf_append(b, &c, 1);
}
static void pk_str(ppd_buf *b, const char *s) {
    pk_op(b, 'X');
    put(b, strlen(s), 4);
    pk_raw(b, s, strlen(s));
}
static void pk_int(ppd_buf *b, int32_t v) {
    pk_op(b, 'J');
    put(b, (uint32_t)v, 4);
}
static void pk_global(ppd_buf *b, const char *mod, const char *name) {
    pk_op(b, 'c');
    pk_raw(b, mod, strlen(mod));
    pk_op(b, '\n');
    pk_raw(b, name, strlen(name));
    pk_op(b, '\n');
}
static void pk_ints(ppd_buf *b, int n, const int *v) {
    pk_op(b, '(');
    for (int i = 0; i < n; i++) pk_int(b, v[i]);
    pk_op(b, 't');
}

/* The argument tuple of _rebuild_tensor_v2 over storage `key` of type `stype`. */
static void pk_tensor_args(ppd_buf *b, const char *stype, const char *key, int numel, int offset,
                           int ndim, const int *size, const int *stride) {
    pk_op(b, '(');
    pk_op(b, '(');
    pk_str(b, "storage");
    pk_global(b, "torch", stype);
    pk_str(b, key);
    pk_str(b, "cpu");
    pk_int(b, numel);
    pk_op(b, 't');
    pk_op(b, 'Q');
    pk_int(b, offset);
    pk_ints(b, ndim, size);
    pk_ints(b, ndim, stride);
    pk_op(b, 0x89);
    pk_global(b, "collections", "OrderedDict");
    pk_op(b, ')');
    pk_op(b, 'R');
    pk_op(b, 't');
}

static void pk_tensor(ppd_buf *b, const char *stype, const char *key, int numel, int offset,
                      int ndim, const int *size, const int *stride) {
    pk_global(b, "torch._utils", "_rebuild_tensor_v2");
    pk_tensor_args(b, stype, key, numel, offset, ndim, size, stride);
    pk_op(b, 'R');
}

/* Open a pickle wrapped as archive/data.pkl with storage "archive/data/0" = 16 floats 0..15. */
static ppd_status open_pickle(const ppd_buf *pkl, ppd_buf *zipbuf, ppd_tensor_file **f) {
    static float s0[16];
    for (int i = 0; i < 16; i++) s0[i] = (float)i;
    zent st[1] = {{"archive/data/0", s0, sizeof s0}};
    make_pt(zipbuf, pkl->data, pkl->len, st, 1, 0);
    return ppd_tensor_file_open_memory(zipbuf->data, zipbuf->len, "crafted.pt", f);
}

/* ---- files written by torch and by safetensors ------------------------------------------ */

TEST(tensorfile_small_pt_values_match_torch) {
    ppd_tensor_file *f;
    REQUIRE_OK(ppd_tensor_file_open(ppt_data("tensorfile/small.pt"), &f));
    CHECK_STR(ppd_tensor_file_format(f), "pytorch");
    check_expected(f, ppt_data("tensorfile/small_expected.txt"), 1, 1);
    ppd_tensor_file_close(f);
}

TEST(tensorfile_small_pt_views_share_storage) {
    ppd_tensor_file *f;
    REQUIRE_OK(ppd_tensor_file_open(ppt_data("tensorfile/small.pt"), &f));
    const ppd_tensor *base = ppd_tensor_file_find(f, "base"),
                     *vt = ppd_tensor_file_find(f, "view_t");
    const ppd_tensor *sl = ppd_tensor_file_find(f, "slice"),
                     *flat = ppd_tensor_file_find(f, "flat");
    const ppd_tensor *tail = ppd_tensor_file_find(f, "tail");
    const ppd_tensor *eo = ppd_tensor_file_find(f, "every_other");
    REQUIRE(base && vt && sl && flat && tail && eo);
    CHECK(base->contiguous && !vt->contiguous && !sl->contiguous && tail->contiguous &&
          !eo->contiguous);
    CHECK(vt->data == base->data); /* the transpose is a view of the same bytes */
    CHECK_EQ(vt->strides[0], 1);
    CHECK_EQ(vt->strides[1], 5);
    CHECK((const char *)sl->data == (const char *)base->data + 11 * 4); /* base[2:, 1:4] */
    CHECK_EQ(sl->strides[0], 5);
    CHECK((const char *)tail->data == (const char *)flat->data + 7 * 4);
    CHECK((const char *)eo->data == (const char *)flat->data + 4);
    CHECK_EQ(eo->strides[0], 2);
    const ppd_tensor *s0 = ppd_tensor_file_find(f, "scalar0d"),
                     *em = ppd_tensor_file_find(f, "empty");
    REQUIRE(s0 && em);
    CHECK_EQ(s0->ndim, 0);
    CHECK_EQ(s0->numel, 1);
    CHECK_EQ(em->numel, 0);
    float none[1];
    CHECK_OK(ppd_tensor_to_f32(em, none)); /* no elements: nothing written */
    /* Names of dict keys that are ints, and the Namespace as an opaque object with attributes. */
    CHECK(ppd_tensor_file_find(f, "3") != NULL);
    const ppd_tf_value *args = ppd_tensor_file_value(f, "args");
    REQUIRE(args);
    CHECK_EQ(args->kind, PPD_TF_VAL_OPAQUE);
    CHECK_STR(args->s, "argparse.Namespace");
    double lr;
    CHECK_OK(ppd_tensor_file_number(f, "args.lr", &lr));
    CHECK(lr == 0.01);
    ppd_tensor_file_close(f);
}

TEST(tensorfile_safetensors_values_match_torch) {
    ppd_tensor_file *f;
    REQUIRE_OK(ppd_tensor_file_open(ppt_data("tensorfile/small.safetensors"), &f));
    CHECK_STR(ppd_tensor_file_format(f), "safetensors");
    check_expected(f, ppt_data("tensorfile/small_expected.txt"), 0, 0);
    const ppd_tf_value *fmt = ppd_tensor_file_value(f, "__metadata__.format");
    const ppd_tf_value *note = ppd_tensor_file_value(f, "__metadata__.note");
    REQUIRE(fmt && note);
    CHECK_STR(fmt->s, "pt");
    CHECK_STR(note->s, "tab\there \"q\" \x01 \xc3\xa9"); /* written with \t, \", \u0001 escapes */
    for (size_t i = 0; i < ppd_tensor_file_count(f); i++)
        CHECK(ppd_tensor_file_at(f, i)->contiguous);
    ppd_tensor_file_close(f);

    /* The same bytes from memory. */
    ppd_buf b = {0};
    REQUIRE_OK(ppd_read_file(ppt_data("tensorfile/small.safetensors"), &b));
    REQUIRE_OK(ppd_tensor_file_open_memory(b.data, b.len, "mem.safetensors", &f));
    check_expected(f, ppt_data("tensorfile/small_expected.txt"), 0, 0);
    ppd_tensor_file_close(f);
    ppd_buf_free(&b);
}

TEST(tensorfile_deflate_archive_reads_the_same) {
    ppd_tensor_file *f;
    REQUIRE_OK(ppd_tensor_file_open(ppt_data("tensorfile/small_deflate.pt"), &f));
    check_expected(f, ppt_data("tensorfile/small_expected.txt"), 1, 1);
    ppd_tensor_file_close(f);
}

/* ---- the released DiffDock-PP confidence checkpoint -------------------------------------- */

static ppd_status open_confidence(ppd_buf *gz, ppd_buf *raw, ppd_tensor_file **f) {
    const char *path = ppt_data("diffdock-pp/confidence_model_dips.pth.gz");
    PPD_TRY(ppd_read_file(path, gz));
    PPD_TRY(ppd_gunzip(gz->data, gz->len, path, raw));
    return ppd_tensor_file_open_memory(raw->data, raw->len, "confidence_model_dips.pth", f);
}

TEST(tensorfile_diffdock_pp_checkpoint_matches_spec_listing) {
    ppd_buf gz = {0}, raw = {0}, listing = {0};
    ppd_tensor_file *f;
    REQUIRE_OK(open_confidence(&gz, &raw, &f));
    CHECK_EQ(raw.len, 3150210);
    REQUIRE_OK(ppd_read_file(ppt_data("diffdock-pp/confidence_listing.txt"), &listing));
    /* The state dict comes first, in the spec's order, with the spec's shapes. */
    size_t i = 0;
    int64_t numbers = 0;
    char *save;
    for (char *line = strtok_r((char *)listing.data, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save), i++) {
        char *sp = strchr(line, ' ');
        REQUIRE(sp);
        *sp = 0;
        const ppd_tensor *t = ppd_tensor_file_at(f, i);
        REQUIRE(t);
        char want[512];
        snprintf(want, sizeof want, "model.%s", line);
        CHECK_STR(t->name, want);
        if (!same_shape(t, sp + 1)) ppt_fail(__FILE__, __LINE__, "%s: shape != %s", want, sp + 1);
        CHECK_EQ(t->dtype, PPD_TF_F32);
        CHECK(t->contiguous);
        numbers += t->numel;
    }
    CHECK_EQ(i, 82);
    CHECK_EQ(numbers, 256489); /* spec §9.2: 256,489 numbers including buffers */
    /* Then the optimizer: 51 states of (step, exp_avg, exp_avg_sq). */
    CHECK_EQ(ppd_tensor_file_count(f), 82 + 51 * 3);
    const ppd_tensor *t = ppd_tensor_file_at(f, 82);
    REQUIRE(t);
    CHECK_STR(t->name, "optimizer.state.0.step");
    ppd_tensor_file_close(f);
    ppd_buf_free(&gz);
    ppd_buf_free(&raw);
    ppd_buf_free(&listing);
}

TEST(tensorfile_diffdock_pp_checkpoint_values_match_torch) {
    ppd_buf gz = {0}, raw = {0}, exp = {0};
    ppd_tensor_file *f;
    REQUIRE_OK(open_confidence(&gz, &raw, &f));
    REQUIRE_OK(ppd_read_file(ppt_data("diffdock-pp/confidence_expected.txt"), &exp));
    size_t nt = 0, nv = 0;
    char *save;
    float *x = malloc(sizeof(float) * 65536);
    REQUIRE(x);
    for (char *line = strtok_r((char *)exp.data, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == 'V') {
            check_value_line(f, line, ppd_tensor_file_value_at(f, nv++));
            continue;
        }
        char name[256], shape[64], first[64], last[64];
        double sum, sumabs;
        REQUIRE(sscanf(line, "T %255s %63s %63s %63s %lf %lf", name, shape, first, last, &sum,
                       &sumabs) == 6);
        const ppd_tensor *t = ppd_tensor_file_at(f, nt++);
        REQUIRE(t);
        CHECK_STR(t->name, name);
        CHECK(same_shape(t, shape));
        REQUIRE(t->numel <= 65536);
        CHECK_OK(ppd_tensor_to_f32(t, x));
        double s = 0, sa = 0;
        for (int64_t k = 0; k < t->numel; k++) {
            s += x[k];
            sa += fabs(x[k]);
        }
        if (t->numel) {
            CHECK(x[0] == (float)strtod(first, NULL));
            CHECK(x[t->numel - 1] == (float)strtod(last, NULL));
        }
        /* float64 sums of the same float32 numbers in another order: ~1e-16 relative */
        CHECK_NEAR(s, sum, 1e-12 * (sumabs + 1));
        CHECK_NEAR(sa, sumabs, 1e-12 * (sumabs + 1));
    }
    CHECK_EQ(nt, ppd_tensor_file_count(f));
    CHECK_EQ(nv, ppd_tensor_file_value_count(f));
    /* The optimizer scalars a resumed run needs (spec §9.2). */
    double v;
    CHECK_OK(ppd_tensor_file_number(f, "optimizer.state.0.step", &v));
    CHECK(v == 151089.0);
    CHECK_OK(ppd_tensor_file_number(f, "optimizer.param_groups.0.lr", &v));
    CHECK(v == 0.001);
    CHECK_OK(ppd_tensor_file_number(f, "optimizer.param_groups.0.betas.1", &v));
    CHECK(v == 0.999);
    CHECK_OK(ppd_tensor_file_number(f, "optimizer.param_groups.0.amsgrad", &v));
    CHECK(v == 0.0);
    free(x);
    ppd_tensor_file_close(f);
    ppd_buf_free(&gz);
    ppd_buf_free(&raw);
    ppd_buf_free(&exp);
}

/* ---- lookups and conversions ------------------------------------------------------------- */

TEST(tensorfile_number_lookup_errors) {
    ppd_tensor_file *f;
    REQUIRE_OK(ppd_tensor_file_open(ppt_data("tensorfile/small.pt"), &f));
    double v;
    CHECK_OK(ppd_tensor_file_number(f, "int", &v));
    CHECK(v == 42);
    CHECK_OK(ppd_tensor_file_number(f, "scalar0d", &v));
    CHECK(v == 3.5);
    CHECK_OK(ppd_tensor_file_number(f, "nested.tuple.1", &v));
    CHECK(v == 2.5);
    CHECK_EQ(ppd_tensor_file_number(f, "no.such.name", &v), PPD_ERR_NOTFOUND);
    CHECK_ERRMSG_HAS("no.such.name");
    CHECK_EQ(ppd_tensor_file_number(f, "str", &v), PPD_ERR_FORMAT);
    CHECK_ERRMSG_HAS("a string");
    CHECK_EQ(ppd_tensor_file_number(f, "none", &v), PPD_ERR_FORMAT);
    CHECK_EQ(ppd_tensor_file_number(f, "big", &v), PPD_ERR_FORMAT);
    CHECK_EQ(ppd_tensor_file_number(f, "f32", &v), PPD_ERR_FORMAT);
    CHECK_ERRMSG_HAS("12 elements");
    CHECK(ppd_tensor_file_find(f, "args.lr") == NULL);
    CHECK(ppd_tensor_file_at(f, 1000) == NULL);
    CHECK(ppd_tensor_file_value_at(f, 1000) == NULL);
    ppd_tensor_file_close(f);
    ppd_tensor_file_close(NULL);
}

/* The widening conversions against the definition of the formats, for every bit pattern. */
TEST(tensorfile_f16_bf16_widening_is_exact) {
    for (uint32_t h = 0; h < 65536; h++) {
        int sign = h >> 15, e = (h >> 10) & 31, m = h & 1023;
        double want = e == 0    ? ldexp(m, -24)
                      : e == 31 ? (m ? NAN : INFINITY)
                                : ldexp(1024 + m, e - 25);
        float got = ppd_f16_to_f32((uint16_t)h);
        if (!same_float(got, (float)(sign ? -want : want)) && !(isnan(want) && isnan(got))) {
            ppt_fail(__FILE__, __LINE__, "f16 %04x -> %.9g, want %.9g", h, got, want);
            break;
        }
        e = (h >> 7) & 255;
        m = h & 127;
        want = e == 0 ? ldexp(m, -133) : e == 255 ? (m ? NAN : INFINITY) : ldexp(128 + m, e - 134);
        got = ppd_bf16_to_f32((uint16_t)h);
        if (!same_float(got, (float)(sign ? -want : want)) && !(isnan(want) && isnan(got))) {
            ppt_fail(__FILE__, __LINE__, "bf16 %04x -> %.9g, want %.9g", h, got, want);
            break;
        }
    }
    CHECK_EQ(ppd_tensor_to_f32(NULL, NULL), PPD_ERR_USAGE);
    ppd_tensor bad = {.dtype = (ppd_tf_dtype)99, .numel = 1};
    float x;
    CHECK_EQ(ppd_tensor_to_f32(&bad, &x), PPD_ERR_USAGE);
}

/* ---- hostile and broken inputs ----------------------------------------------------------- */

TEST(tensorfile_malicious_globals_are_never_called) {
    char marker[512], cmd[600];
    snprintf(marker, sizeof marker, "%s/pwned", ppt_tmpdir());
    snprintf(cmd, sizeof cmd, "touch %s", marker);
    ppd_buf pkl = {0}, zb = {0};
    pk_raw(&pkl, "\x80\x02}(", 4);
    pk_str(&pkl, "cmd"); /* os.system("touch ...") */
    pk_global(&pkl, "os", "system");
    pk_str(&pkl, cmd);
    pk_op(&pkl, 0x85);
    pk_op(&pkl, 'R');
    pk_str(&pkl, "ev"); /* builtins.eval via STACK_GLOBAL */
    pk_str(&pkl, "builtins");
    pk_str(&pkl, "eval");
    pk_op(&pkl, 0x93);
    pk_str(&pkl, "__import__('os').system('touch /tmp/ppdock-should-not-exist')");
    pk_op(&pkl, 0x85);
    pk_op(&pkl, 'R');
    pk_str(&pkl, "obj"); /* NEWOBJ + BUILD of an arbitrary class */
    pk_global(&pkl, "subprocess", "Popen");
    pk_op(&pkl, ')');
    pk_op(&pkl, 0x81);
    pk_op(&pkl, '}');
    pk_str(&pkl, "args");
    pk_str(&pkl, cmd);
    pk_op(&pkl, 's');
    pk_op(&pkl, 'b');
    pk_raw(&pkl, "u.", 2);
    ppd_tensor_file *f;
    REQUIRE_OK(open_pickle(&pkl, &zb, &f));
    const ppd_tf_value *v = ppd_tensor_file_value(f, "cmd");
    REQUIRE(v);
    CHECK_EQ(v->kind, PPD_TF_VAL_OPAQUE);
    CHECK_STR(v->s, "os.system");
    v = ppd_tensor_file_value(f, "ev");
    REQUIRE(v);
    CHECK_STR(v->s, "builtins.eval");
    v = ppd_tensor_file_value(f, "obj");
    REQUIRE(v);
    CHECK_STR(v->s, "subprocess.Popen");
    v = ppd_tensor_file_value(f, "obj.args"); /* its BUILD state, as plain data */
    REQUIRE(v);
    CHECK_STR(v->s, cmd);
    CHECK(!ppd_file_exists(marker));
    CHECK(!ppd_file_exists("/tmp/ppdock-should-not-exist"));
    ppd_tensor_file_close(f);
    ppd_buf_free(&pkl);
    ppd_buf_free(&zb);
}

/* A pickle (as C bytes) in a valid archive must fail with PPD_ERR_FORMAT naming `needle`. */
static void expect_pickle_error(const char *bytes, size_t n, const char *needle) {
    ppd_buf pkl = {0}, zb = {0};
    pk_raw(&pkl, bytes, n);
    ppd_tensor_file *f = NULL;
    ppd_status st = open_pickle(&pkl, &zb, &f);
    if (st != PPD_ERR_FORMAT)
        ppt_fail(__FILE__, __LINE__, "pickle %s: status %d, want PPD_ERR_FORMAT", needle, st);
    else if (!strstr(ppd_errmsg(), needle) || !strstr(ppd_errmsg(), "crafted.pt"))
        ppt_fail(__FILE__, __LINE__, "message \"%s\" lacks \"%s\"", ppd_errmsg(), needle);
    CHECK(f == NULL);
    ppd_buf_free(&pkl);
    ppd_buf_free(&zb);
}

#define PICKLE_ERROR(lit, needle) expect_pickle_error(lit, sizeof(lit) - 1, needle)

TEST(tensorfile_refuses_opcodes_outside_the_set) {
    PICKLE_ERROR("\x80\x02\xff.", "unknown pickle opcode 0xff");
    PICKLE_ERROR("\x80\x02\xff.", "byte 2");
    PICKLE_ERROR("\x80\x02(ios\nsystem\n.", "INST");
    PICKLE_ERROR("\x80\x02(cos\nsystem\no.", "OBJ");
    PICKLE_ERROR("\x80\x02\x82\x01.", "EXT1");
    PICKLE_ERROR("\x80\x02P1\n.", "PERSID");
    PICKLE_ERROR("\x80\x02I1\n.", "opcode INT");
    PICKLE_ERROR("\x80\x02S'x'\n.", "STRING");
    PICKLE_ERROR("\x80\x02\x8f.", "EMPTY_SET");
    PICKLE_ERROR("\x80\x05\x97.", "NEXT_BUFFER");
    PICKLE_ERROR("\x80\x06}.", "protocol 6");
}

TEST(tensorfile_pickle_structure_errors) {
    PICKLE_ERROR("\x80\x02}", "no STOP");
    PICKLE_ERROR("\x80\x02X\x05\x00\x00\x00"
                 "ab",
                 "truncated pickle");
    PICKLE_ERROR("\x80\x02R.", "stack underflow");
    PICKLE_ERROR("\x80\x02(R.", "stack underflow"); /* may not reach below a MARK */
    PICKLE_ERROR("\x80\x02h\x05.", "memo entry 5");
    PICKLE_ERROR("\x80\x02}r\xff\xff\xff\x7f.", "memo index");
    PICKLE_ERROR("\x80\x02}K\x01"
                 "a.",
                 "APPEND to something");
    PICKLE_ERROR("\x80\x02]K\x01K\x02s.", "SETITEM on something");
    PICKLE_ERROR("\x80\x02}(K\x01u.", "odd number");
    PICKLE_ERROR("\x80\x02"
                 "e.",
                 "no MARK");
    PICKLE_ERROR("\x80\x02K\x01Q.", "persistent id");
    PICKLE_ERROR("\x80\x02]q\x00h\x00"
                 "a.",
                 "deeper than 64"); /* a list inside itself */
    /* 2^40 paths through shared tuples: refused before the names explode */
    char dag[128];
    size_t n = 0;
    memcpy(dag, "\x80\x02K\x01\x85", 5);
    n = 5;
    for (int i = 0; i < 40; i++) {
        dag[n++] = '2';
        dag[n++] = (char)0x86;
    }
    dag[n++] = '.';
    expect_pickle_error(dag, n, "beyond");
}

TEST(tensorfile_crafted_tensor_views) {
    ppd_buf pkl = {0}, zb = {0};
    ppd_tensor_file *f;
    /* {'a': 2x2 view at offset 1 with strides (1, 2)}, {'c': a complex tensor} */
    pk_raw(&pkl, "\x80\x02}(", 4);
    pk_str(&pkl, "a");
    pk_tensor(&pkl, "FloatStorage", "0", 16, 1, 2, (int[]){2, 2}, (int[]){1, 2});
    pk_str(&pkl, "c");
    pk_tensor(&pkl, "ComplexFloatStorage", "7", 4, 0, 1, (int[]){4}, (int[]){1});
    pk_str(&pkl, "w"); /* _rebuild_from_type_v2(_rebuild_tensor_v2, Tensor, args, {}) */
    pk_global(&pkl, "torch._tensor", "_rebuild_from_type_v2");
    pk_op(&pkl, '(');
    pk_global(&pkl, "torch._utils", "_rebuild_tensor_v2");
    pk_global(&pkl, "torch._tensor", "Tensor");
    pk_tensor_args(&pkl, "FloatStorage", "0", 16, 15, 0, NULL, NULL);
    pk_op(&pkl, '}');
    pk_op(&pkl, 't');
    pk_op(&pkl, 'R');
    pk_raw(&pkl, "u.", 2);
    REQUIRE_OK(open_pickle(&pkl, &zb, &f));
    const ppd_tensor *a = ppd_tensor_file_find(f, "a");
    REQUIRE(a);
    float x[4];
    CHECK_OK(ppd_tensor_to_f32(a, x));
    CHECK(x[0] == 1 && x[1] == 3 && x[2] == 2 && x[3] == 4);
    CHECK(!a->contiguous);
    const ppd_tf_value *c = ppd_tensor_file_value(f, "c");
    REQUIRE(c);
    CHECK_STR(c->s, "torch.ComplexFloatStorage");
    CHECK(ppd_tensor_file_find(f, "c") == NULL);
    double w;
    CHECK_OK(ppd_tensor_file_number(f, "w", &w));
    CHECK(w == 15);
    ppd_tensor_file_close(f);

    /* A view reaching past its storage; a storage of the wrong size; a missing storage. */
    struct {
        int numel, offset, size0, size1, stride0;
        const char *key, *needle;
    } bad[] = {
        {16, 10, 2, 4, 4, "0", "outside its storage"},
        {16, 17, 0, 4, 4, "0", "outside its storage"},
        {15, 0, 2, 2, 2, "0", "holds 64 bytes"},
        {16, 0, 2, 2, 2, "9", "archive/data/9 is not in the archive"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        pkl.len = 0;
        pk_raw(&pkl, "\x80\x02", 2);
        pk_tensor(&pkl, "FloatStorage", bad[i].key, bad[i].numel, bad[i].offset, 2,
                  (int[]){bad[i].size0, bad[i].size1}, (int[]){bad[i].stride0, 1});
        pk_op(&pkl, '.');
        expect_pickle_error((const char *)pkl.data, pkl.len, bad[i].needle);
    }
    ppd_buf_free(&pkl);
    ppd_buf_free(&zb);
}

/* An archive from parts; expect PPD_ERR_FORMAT (or `want`) and `needle` in the message. */
static void expect_zip_error(const zent *e, int n, ppd_status want, const char *needle) {
    ppd_buf zb = {0};
    make_zip(&zb, e, n, 0);
    ppd_tensor_file *f = NULL;
    ppd_status st = ppd_tensor_file_open_memory(zb.data, zb.len, "crafted.pt", &f);
    if (st != want)
        ppt_fail(__FILE__, __LINE__, "%s: status %d, want %d", needle, st, want);
    else if (!strstr(ppd_errmsg(), needle))
        ppt_fail(__FILE__, __LINE__, "message \"%s\" lacks \"%s\"", ppd_errmsg(), needle);
    ppd_tensor_file_close(f);
    ppd_buf_free(&zb);
}

TEST(tensorfile_archive_errors) {
    const char *pkl = "\x80\x02}.";
    zent ok_pkl = {"archive/data.pkl", pkl, 4}, ver = {"archive/version", "3\n", 2};
    expect_zip_error((zent[]){ok_pkl, {"archive/constants.pkl", pkl, 4}, ver}, 3, PPD_ERR_FORMAT,
                     "TorchScript");
    expect_zip_error((zent[]){{"archive/other.pkl", pkl, 4}, ver}, 2, PPD_ERR_FORMAT,
                     "no archive/data.pkl");
    expect_zip_error((zent[]){{"data.pkl", pkl, 4}}, 1, PPD_ERR_FORMAT, "not in one folder");
    expect_zip_error((zent[]){ok_pkl}, 1, PPD_ERR_FORMAT, "no archive/version");
    expect_zip_error((zent[]){ok_pkl, {"archive/version", "x", 1}}, 2, PPD_ERR_FORMAT,
                     "not a format version");
    expect_zip_error((zent[]){ok_pkl, ver, {"archive/byteorder", "big", 3}}, 3, PPD_ERR_FORMAT,
                     "big-endian");
    expect_zip_error((zent[]){ok_pkl, ver, {"archive/byteorder", "little", 6}}, 3, PPD_OK, "");

    /* ZIP64 form of a good archive reads; then a CRC error, another compression method and
     * an encrypted entry are refused. */
    ppd_buf zb = {0};
    ppd_tensor_file *f;
    float s0[4] = {1, 2, 3, 4};
    ppd_buf p = {0};
    pk_raw(&p, "\x80\x02}(", 4);
    pk_str(&p, "t");
    pk_tensor(&p, "FloatStorage", "0", 4, 0, 1, (int[]){4}, (int[]){1});
    pk_raw(&p, "u.", 2);
    zent st[1] = {{"archive/data/0", s0, sizeof s0}};
    make_pt(&zb, p.data, p.len, st, 1, 1);
    REQUIRE_OK(ppd_tensor_file_open_memory(zb.data, zb.len, "zip64.pt", &f));
    const ppd_tensor *t = ppd_tensor_file_find(f, "t");
    REQUIRE(t);
    CHECK(memcmp(t->data, s0, sizeof s0) == 0);
    ppd_tensor_file_close(f);

    make_pt(&zb, p.data, p.len, st, 1, 0);
    unsigned char *hit = memmem(zb.data, zb.len, s0, sizeof s0);
    REQUIRE(hit);
    hit[3] ^= 0x40;
    CHECK_EQ(ppd_tensor_file_open_memory(zb.data, zb.len, "crc.pt", &f), PPD_ERR_CORRUPT);
    CHECK_ERRMSG_HAS("CRC-32 mismatch");
    CHECK_ERRMSG_HAS("archive/data/0");
    hit[3] ^= 0x40;
    /* central directory fields of the storage entry (the second one) */
    unsigned char *cd = memmem(zb.data, zb.len, "PK\x01\x02", 4);
    REQUIRE(cd);
    cd = memmem(cd + 4, zb.len - (size_t)(cd + 4 - zb.data), "PK\x01\x02", 4);
    REQUIRE(cd);
    cd[10] = 12; /* bzip2 */
    CHECK_EQ(ppd_tensor_file_open_memory(zb.data, zb.len, "bz.pt", &f), PPD_ERR_FORMAT);
    CHECK_ERRMSG_HAS("compression method 12");
    cd[10] = 0;
    cd[8] = 1; /* encrypted */
    CHECK_EQ(ppd_tensor_file_open_memory(zb.data, zb.len, "enc.pt", &f), PPD_ERR_FORMAT);
    CHECK_ERRMSG_HAS("encrypted");
    ppd_buf_free(&zb);
    ppd_buf_free(&p);
}

TEST(tensorfile_truncated_or_legacy_torch_files) {
    ppd_buf b = {0};
    REQUIRE_OK(ppd_read_file(ppt_data("tensorfile/small.pt"), &b));
    size_t cuts[] = {b.len - 1, b.len - 22, b.len - 200, b.len / 2, 100, 21, 4};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        ppd_tensor_file *f = NULL;
        ppd_status st = ppd_tensor_file_open_memory(b.data, cuts[i], "small.pt", &f);
        if (st != PPD_ERR_FORMAT)
            ppt_fail(__FILE__, __LINE__, "cut at %zu: status %d", cuts[i], st);
        CHECK_ERRMSG_HAS("small.pt: ");
        CHECK(f == NULL);
    }
    ppd_tensor_file *f;
    CHECK_EQ(ppd_tensor_file_open_memory(b.data, b.len - 1, "small.pt", &f), PPD_ERR_FORMAT);
    CHECK_ERRMSG_HAS("end-of-central-directory");
    CHECK_EQ(ppd_tensor_file_open(ppt_data("tensorfile/legacy.pt"), &f), PPD_ERR_FORMAT);
    CHECK_ERRMSG_HAS("torch >= 1.6");
    CHECK_ERRMSG_HAS("legacy.pt");
    ppd_buf_free(&b);
}

TEST(tensorfile_open_errors) {
    ppd_tensor_file *f;
    const char *dir = ppt_tmpdir();
    char path[600];
    CHECK_EQ(ppd_tensor_file_open(dir, &f), PPD_ERR_IO);
    snprintf(path, sizeof path, "%s/none.pt", dir);
    CHECK_EQ(ppd_tensor_file_open(path, &f), PPD_ERR_IO);
    CHECK_ERRMSG_HAS("none.pt");
    FILE *fp = fopen(path, "w");
    REQUIRE(fp);
    fclose(fp);
    CHECK_EQ(ppd_tensor_file_open(path, &f), PPD_ERR_EMPTY);
    CHECK_EQ(ppd_tensor_file_open_memory("hello world", 11, "text", &f), PPD_ERR_FORMAT);
    CHECK_ERRMSG_HAS("neither safetensors nor");
    const char *idx = "{\n  \"metadata\": {\"total_size\": 8},\n  \"weight_map\": {\"a\": "
                      "\"model-00001-of-00002.safetensors\"}\n}\n";
    CHECK_EQ(ppd_tensor_file_open_memory(idx, strlen(idx), "model.safetensors.index.json", &f),
             PPD_ERR_FORMAT);
    CHECK_ERRMSG_HAS("model.safetensors.index.json: a sharded-checkpoint index");
    CHECK_ERRMSG_HAS("open each shard");
}

/* ---- safetensors: crafted headers -------------------------------------------------------- */

static ppd_status open_st(const char *json, size_t data_len, ppd_buf *b, ppd_tensor_file **f) {
    b->len = 0;
    put(b, strlen(json), 8);
    ppd_buf_append(b, json, strlen(json));
    for (size_t i = 0; i < data_len; i++) {
        unsigned char c = (unsigned char)i;
        ppd_buf_append(b, &c, 1);
    }
    return ppd_tensor_file_open_memory(b->data, b->len, "crafted.safetensors", f);
}

static void expect_st_error(const char *json, size_t data_len, const char *needle) {
    ppd_buf b = {0};
    ppd_tensor_file *f = NULL;
    ppd_status st = open_st(json, data_len, &b, &f);
    if (st != PPD_ERR_FORMAT)
        ppt_fail(__FILE__, __LINE__, "%s: status %d, want PPD_ERR_FORMAT", json, st);
    else if (!strstr(ppd_errmsg(), needle) || !strstr(ppd_errmsg(), "crafted.safetensors"))
        ppt_fail(__FILE__, __LINE__, "message \"%s\" lacks \"%s\"", ppd_errmsg(), needle);
    ppd_tensor_file_close(f);
    ppd_buf_free(&b);
}

#define T32(name, a, b)                                                                            \
    "\"" name "\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[" #a "," #b "]}"

TEST(tensorfile_safetensors_header_is_parsed_exactly) {
    ppd_buf b = {0};
    ppd_tensor_file *f;
    const char *json = "{\"__metadata__\":{\"k\\u00e9\":\"v\\n\\\"\\\\\\/\"},"
                       "\"a\":{\"shape\":[2],\"extra\":{\"x\":[1,-2.5e-3,true,null,\"s\",{}]},"
                       "\"dtype\":\"F32\",\"data_offsets\":[0,8]},"
                       "\"b\\ud83d\\ude00\" : { \"dtype\" : \"BF16\" , \"shape\" : [ ] , "
                       "\"data_offsets\" : [ 8 , 10 ] },"
                       "\"u\":{\"dtype\":\"U32\",\"shape\":[1],\"data_offsets\":[10,14]}}   ";
    REQUIRE_OK(open_st(json, 14, &b, &f));
    CHECK_EQ(ppd_tensor_file_count(f), 2);
    const ppd_tensor *a = ppd_tensor_file_find(f, "a");
    const ppd_tensor *e = ppd_tensor_file_find(f, "b\xf0\x9f\x98\x80"); /* U+1F600 */
    REQUIRE(a && e);
    CHECK((const unsigned char *)a->data == b.data + 8 + strlen(json));
    CHECK_EQ(e->ndim, 0);
    CHECK_EQ(e->numel, 1);
    const ppd_tf_value *m = ppd_tensor_file_value(f, "__metadata__.k\xc3\xa9");
    REQUIRE(m);
    CHECK_STR(m->s, "v\n\"\\/");
    const ppd_tf_value *u = ppd_tensor_file_value(f, "u");
    REQUIRE(u);
    CHECK_STR(u->s, "safetensors U32");
    ppd_tensor_file_close(f);
    REQUIRE_OK(open_st("{}", 0, &b, &f)); /* no tensors at all is a valid file */
    CHECK_EQ(ppd_tensor_file_count(f), 0);
    ppd_tensor_file_close(f);
    ppd_buf_free(&b);
}

TEST(tensorfile_safetensors_layout_errors) {
    expect_st_error("{" T32("a", 0, 8) "," T32("b", 4, 12) "}", 12, "overlaps");
    expect_st_error("{" T32("a", 0, 8) "," T32("b", 12, 20) "}", 20,
                    "unused bytes before tensor b");
    expect_st_error("{" T32("a", 0, 8) "}", 9, "bytes after the last tensor");
    expect_st_error("{" T32("a", 0, 8) "}", 6, "run past the data section");
    expect_st_error("{" T32("a", 0, 12) "}", 12, "needs 8");
    expect_st_error("{" T32("a", 8, 0) "}", 8, "end before");
    expect_st_error("{" T32("a", 0, 8) "," T32("a", 8, 16) "}", 16, "given twice");
    expect_st_error("{\"a\":{\"dtype\":\"F4\",\"shape\":[2],\"data_offsets\":[0,1]}}", 1,
                    "unknown dtype \"F4\"");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 0, "without \"data_offsets\"");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,0]}}", 0,
                    "negative");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,0]}}", 0,
                    "fraction");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],"
                    "\"data_offsets\":[0,0]}}",
                    0, "too large");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],"
                    "\"data_offsets\":[0,4]}}",
                    4, "more than 8 dimensions");
    expect_st_error("{\"__metadata__\":{\"k\":1}}", 0, "must be strings");
    expect_st_error("{\"a\\ud800\":1}", 0, "surrogate");
    expect_st_error("{\"a\\q\":1}", 0, "bad escape");
    expect_st_error("{\"a\tb\":1}", 0, "control character");
    expect_st_error("{" T32("a", 0, 8) " x", 8, "expected '}'");
    expect_st_error("{} x", 0, "unexpected bytes after the JSON header");
    expect_st_error("{\"\xc3\x28\":1}", 0, "not UTF-8");
    char deep[300] = "{\"a\":{\"dtype\":\"F32\",\"x\":";
    size_t n = strlen(deep);
    for (int i = 0; i < 100; i++) deep[n++] = '[';
    deep[n] = 0;
    expect_st_error(deep, 0, "nested too deeply");
}

TEST(tensorfile_safetensors_truncated_or_bad_length) {
    ppd_buf b = {0};
    REQUIRE_OK(ppd_read_file(ppt_data("tensorfile/small.safetensors"), &b));
    ppd_tensor_file *f;
    uint64_t n;
    memcpy(&n, b.data, 8);
    CHECK_EQ(ppd_tensor_file_open_memory(b.data, b.len - 1, "small.safetensors", &f),
             PPD_ERR_FORMAT);
    CHECK_ERRMSG_HAS("small.safetensors: ");
    CHECK_ERRMSG_HAS("truncated");
    CHECK_EQ(ppd_tensor_file_open_memory(b.data, 8 + n - 5, "small.safetensors", &f),
             PPD_ERR_FORMAT);
    CHECK_ERRMSG_HAS("runs past the end of the file");
    uint64_t wrong[] = {n + 1, n - 1, n + 4096, (uint64_t)1 << 40, 0};
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        memcpy(b.data, &wrong[i], 8);
        ppd_status st = ppd_tensor_file_open_memory(b.data, b.len, "small.safetensors", &f);
        if (st != PPD_ERR_FORMAT)
            ppt_fail(__FILE__, __LINE__, "header length %llu: status %d",
                     (unsigned long long)wrong[i], st);
        CHECK_ERRMSG_HAS("small.safetensors: ");
    }
    memcpy(b.data, &wrong[3], 8);
    CHECK_EQ(ppd_tensor_file_open_memory(b.data, b.len, "small.safetensors", &f), PPD_ERR_FORMAT);
    CHECK_ERRMSG_HAS("over the 100000000-byte limit");
    ppd_buf_free(&b);
}

/* ---- mutation fuzzing -------------------------------------------------------------------- */

/* Open whatever the bytes are; on success touch every tensor and value the way a user would. */
static void open_and_use(const unsigned char *p, size_t n) {
    ppd_tensor_file *f = NULL;
    ppd_status st = ppd_tensor_file_open_memory(p, n, "fuzz", &f);
    if (st) {
        if (st != PPD_ERR_FORMAT && st != PPD_ERR_CORRUPT && st != PPD_ERR_EMPTY)
            ppt_fail(__FILE__, __LINE__, "unexpected status %d: %s", st, ppd_errmsg());
        if (f) ppt_fail(__FILE__, __LINE__, "failure left a file behind");
        return;
    }
    for (size_t i = 0; i < ppd_tensor_file_count(f); i++) {
        const ppd_tensor *t = ppd_tensor_file_at(f, i);
        CHECK(ppd_tensor_file_find(f, t->name) != NULL);
        if (t->numel > (1 << 20)) continue; /* stride-0 (expanded) views can be huge */
        float *x = malloc(sizeof(float) * ((size_t)t->numel + 1));
        if (x) CHECK_OK(ppd_tensor_to_f32(t, x));
        free(x);
    }
    for (size_t i = 0; i < ppd_tensor_file_value_count(f); i++) {
        double v;
        const ppd_tf_value *val = ppd_tensor_file_value_at(f, i);
        CHECK(ppd_tensor_file_value(f, val->name) != NULL);
        (void)ppd_tensor_file_number(f, val->name, &v);
    }
    ppd_tensor_file_close(f);
}

static void mutate(ppd_rng *r, ppd_buf *b, const unsigned char *src, size_t n) {
    static const unsigned char interesting[] = {0,    0xff, 0x7f, 0x80, '(', ')', '.',  'R',
                                                'b',  'h',  'q',  's',  't', 'u', 0x85, 0x93,
                                                0x95, 'Q',  '}',  ']',  '[', '{', '"',  '\\'};
    b->len = 0;
    ppd_buf_append(b, src, n);
    int k = 1 + (int)ppd_rng_below(r, 6);
    for (int m = 0; m < k && b->len > 1; m++) {
        size_t at = ppd_rng_below(r, b->len), len = 1 + ppd_rng_below(r, 16);
        switch (ppd_rng_below(r, 6)) {
        case 0:
            b->data[at] ^= (unsigned char)(1u << ppd_rng_below(r, 8));
            break;
        case 1:
            b->data[at] = interesting[ppd_rng_below(r, sizeof interesting)];
            break;
        case 2: /* delete */
            if (at + len > b->len) len = b->len - at;
            memmove(b->data + at, b->data + at + len, b->len - at - len);
            b->len -= len;
            break;
        case 3: /* duplicate a chunk in place */
            if (at + len <= b->len && b->len + len < 1 << 20) {
                ppd_buf_reserve(b, b->len + len + 1);
                memmove(b->data + at + len, b->data + at, b->len - at);
                b->len += len;
            }
            break;
        case 4:
            b->len = at + 1; /* truncate */
            break;
        default:
            b->data[at] = (unsigned char)ppd_rng_u64(r);
            break;
        }
    }
}

TEST(tensorfile_fuzz_mutations_never_crash) {
    ppd_buf pt = {0}, st = {0}, work = {0}, zb = {0};
    REQUIRE_OK(ppd_read_file(ppt_data("tensorfile/small.pt"), &pt));
    REQUIRE_OK(ppd_read_file(ppt_data("tensorfile/small.safetensors"), &st));
    zent e[32];
    size_t off[32];
    char names[4096];
    int n = read_zip(pt.data, pt.len, e, off, 32, names, sizeof names);
    REQUIRE(n > 2 && n <= 32 && strcmp(e[0].name, "small/data.pkl") == 0);
    ppd_rng r;
    ppd_rng_seed(&r, 20240601);
    const int iters = getenv("PPD_FUZZ_ITERS") ? atoi(getenv("PPD_FUZZ_ITERS")) : 1500;
    for (int i = 0; i < iters && !ppt_failed_now(); i++) {
        mutate(&r, &work, pt.data, pt.len); /* the archive itself */
        open_and_use(work.data, work.len);
        mutate(&r, &work, st.data, st.len); /* safetensors header and data */
        open_and_use(work.data, work.len);
        /* data.pkl mutated inside an otherwise valid archive (CRCs recomputed) */
        mutate(&r, &work, e[0].data, e[0].len);
        zent m[32];
        memcpy(m, e, sizeof m);
        m[0].data = work.data;
        m[0].len = work.len;
        make_zip(&zb, m, n, (int)ppd_rng_below(&r, 2));
        open_and_use(zb.data, zb.len);
    }
    ppd_buf_free(&pt);
    ppd_buf_free(&st);
    ppd_buf_free(&work);
    ppd_buf_free(&zb);
}
