/* Tensor files, the common part (see ppdock/tensorfile.h): mapping, recognising the format,
 * the tensor and value lists, lookup by name, conversion to float32. The formats themselves
 * are in safetensors.c and torch_pickle.c. */
#include "tensorfile_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

size_t ppd_tf_dtype_size(ppd_tf_dtype dt) {
    static const unsigned char size[PPD_TF_DTYPE_COUNT] = {4, 2, 2, 8, 8, 4, 2, 1, 1, 1};
    return (unsigned)dt < PPD_TF_DTYPE_COUNT ? size[dt] : 0;
}

const char *ppd_tf_dtype_name(ppd_tf_dtype dt) {
    static const char *const name[PPD_TF_DTYPE_COUNT] = {"f32", "f16", "bf16", "f64", "i64",
                                                         "i32", "i16", "i8",   "u8",  "bool"};
    return (unsigned)dt < PPD_TF_DTYPE_COUNT ? name[dt] : "?";
}

/* ---- building the lists (used by the loaders) -------------------------------------------- */

static ppd_status grow(void **arr, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return PPD_OK;
    size_t ncap = *cap ? *cap * 2 : 64;
    while (ncap < need) ncap *= 2;
    void *p = realloc(*arr, ncap * elem);
    if (!p) return ppd_fail(PPD_ERR_NOMEM, "cannot grow a list to %zu entries", ncap);
    *arr = p;
    *cap = ncap;
    return PPD_OK;
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

ppd_status ppd_tf_add_tensor(ppd_tensor_file *f, const char *name, const ppd_tensor *t) {
    PPD_TRY(grow((void **)&f->tensors, &f->cap_tensors, f->n_tensors + 1, sizeof *f->tensors));
    char *n = dup_str(name);
    if (!n) return ppd_fail(PPD_ERR_NOMEM, "%s: out of memory for a tensor name", f->name);
    ppd_tensor *d = &f->tensors[f->n_tensors++];
    *d = *t;
    d->name = n;
    return PPD_OK;
}

ppd_status ppd_tf_add_value(ppd_tensor_file *f, const char *name, const ppd_tf_value *v) {
    PPD_TRY(grow((void **)&f->values, &f->cap_values, f->n_values + 1, sizeof *f->values));
    char *n = dup_str(name);
    char *s = v->s ? dup_str(v->s) : NULL;
    if (!n || (v->s && !s)) {
        free(n);
        free(s);
        return ppd_fail(PPD_ERR_NOMEM, "%s: out of memory for a value", f->name);
    }
    ppd_tf_value *d = &f->values[f->n_values++];
    *d = *v;
    d->name = n;
    d->s = s;
    return PPD_OK;
}

ppd_status ppd_tf_own(ppd_tensor_file *f, void *p) {
    ppd_status st = grow((void **)&f->owned, &f->cap_owned, f->n_owned + 1, sizeof *f->owned);
    if (st) {
        free(p);
        return st;
    }
    f->owned[f->n_owned++] = p;
    return PPD_OK;
}

void ppd_tf_rowmajor_strides(int ndim, const int64_t *shape, int64_t *strides) {
    int64_t s = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        strides[d] = s;
        s *= shape[d] > 0 ? shape[d] : 1;
    }
}

int ppd_tf_is_contiguous(int ndim, const int64_t *shape, const int64_t *strides) {
    int64_t want = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        if (shape[d] == 0) return 1; /* no elements: any strides will do */
        if (shape[d] != 1 && strides[d] != want) return 0;
        want *= shape[d];
    }
    return 1;
}

int ppd_tf_mul_ok(int64_t a, int64_t b, int64_t *out) {
    if (a < 0 || b < 0 || (b && a > INT64_MAX / b)) return 0;
    *out = a * b;
    return 1;
}

int ppd_tf_add_ok(int64_t a, int64_t b, int64_t *out) {
    if (a < 0 || b < 0 || a > INT64_MAX - b) return 0;
    *out = a + b;
    return 1;
}

/* ---- lookup ------------------------------------------------------------------------------ */

/* Lookup tables: pointers sorted by (name, position), so that the first of equal names wins. */
static int cmp_tensor(const void *a, const void *b) {
    const ppd_tensor *x = *(const ppd_tensor *const *)a, *y = *(const ppd_tensor *const *)b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x > y) - (x < y);
}

static int cmp_value(const void *a, const void *b) {
    const ppd_tf_value *x = *(const ppd_tf_value *const *)a, *y = *(const ppd_tf_value *const *)b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x > y) - (x < y);
}

static ppd_status build_index(ppd_tensor_file *f) {
    if (f->n_tensors) {
        const ppd_tensor **ix = malloc(f->n_tensors * sizeof *ix);
        if (!ix) return ppd_fail(PPD_ERR_NOMEM, "%s: out of memory", f->name);
        for (size_t i = 0; i < f->n_tensors; i++) ix[i] = &f->tensors[i];
        qsort(ix, f->n_tensors, sizeof *ix, cmp_tensor);
        f->tensor_sorted = ix;
    }
    if (f->n_values) {
        const ppd_tf_value **ix = malloc(f->n_values * sizeof *ix);
        if (!ix) return ppd_fail(PPD_ERR_NOMEM, "%s: out of memory", f->name);
        for (size_t i = 0; i < f->n_values; i++) ix[i] = &f->values[i];
        qsort(ix, f->n_values, sizeof *ix, cmp_value);
        f->value_sorted = ix;
    }
    return PPD_OK;
}

/* First position whose name is >= `name` in a sorted table of named things. */
#define LOWER_BOUND(tab, n, key, out)                                                              \
    do {                                                                                           \
        size_t lo_ = 0, hi_ = (n);                                                                 \
        while (lo_ < hi_) {                                                                        \
            size_t mid_ = lo_ + (hi_ - lo_) / 2;                                                   \
            if (strcmp((tab)[mid_]->name, (key)) < 0)                                              \
                lo_ = mid_ + 1;                                                                    \
            else                                                                                   \
                hi_ = mid_;                                                                        \
        }                                                                                          \
        (out) = lo_;                                                                               \
    } while (0)

const ppd_tensor *ppd_tensor_file_find(const ppd_tensor_file *f, const char *name) {
    if (!f || !name || !f->n_tensors) return NULL;
    size_t i;
    LOWER_BOUND(f->tensor_sorted, f->n_tensors, name, i);
    if (i < f->n_tensors && strcmp(f->tensor_sorted[i]->name, name) == 0)
        return f->tensor_sorted[i];
    return NULL;
}

const ppd_tf_value *ppd_tensor_file_value(const ppd_tensor_file *f, const char *name) {
    if (!f || !name || !f->n_values) return NULL;
    size_t i;
    LOWER_BOUND(f->value_sorted, f->n_values, name, i);
    if (i < f->n_values && strcmp(f->value_sorted[i]->name, name) == 0) return f->value_sorted[i];
    return NULL;
}

const char *ppd_tensor_file_format(const ppd_tensor_file *f) {
    return f->format;
}

size_t ppd_tensor_file_count(const ppd_tensor_file *f) {
    return f->n_tensors;
}

const ppd_tensor *ppd_tensor_file_at(const ppd_tensor_file *f, size_t i) {
    return i < f->n_tensors ? &f->tensors[i] : NULL;
}

size_t ppd_tensor_file_value_count(const ppd_tensor_file *f) {
    return f->n_values;
}

const ppd_tf_value *ppd_tensor_file_value_at(const ppd_tensor_file *f, size_t i) {
    return i < f->n_values ? &f->values[i] : NULL;
}

ppd_status ppd_tensor_file_number(const ppd_tensor_file *f, const char *name, double *out) {
    const ppd_tf_value *v = ppd_tensor_file_value(f, name);
    if (v) {
        if (v->kind == PPD_TF_VAL_BOOL || v->kind == PPD_TF_VAL_INT ||
            v->kind == PPD_TF_VAL_FLOAT) {
            *out = v->f;
            return PPD_OK;
        }
        return ppd_fail(PPD_ERR_FORMAT, "%s: %s is not a number (%s)", f->name, name,
                        v->kind == PPD_TF_VAL_STR    ? "a string"
                        : v->kind == PPD_TF_VAL_NONE ? "None"
                                                     : v->s);
    }
    const ppd_tensor *t = ppd_tensor_file_find(f, name);
    if (!t) return ppd_fail(PPD_ERR_NOTFOUND, "%s: no value or tensor named %s", f->name, name);
    if (t->numel != 1)
        return ppd_fail(PPD_ERR_FORMAT, "%s: %s is a tensor of %lld elements, not a number",
                        f->name, name, (long long)t->numel);
    float x;
    PPD_TRY(ppd_tensor_to_f32(t, &x));
    /* f64 and i64 one-element tensors keep their full value. */
    if (t->dtype == PPD_TF_F64) {
        memcpy(out, t->data, sizeof *out);
    } else if (t->dtype == PPD_TF_I64) {
        int64_t i;
        memcpy(&i, t->data, sizeof i);
        *out = (double)i;
    } else {
        *out = x;
    }
    return PPD_OK;
}

/* ---- conversion -------------------------------------------------------------------------- */

/* One element at p (any alignment) as a float. */
static float load_elem(const unsigned char *p, ppd_tf_dtype dt) {
    switch (dt) {
    case PPD_TF_F32: {
        float v;
        memcpy(&v, p, 4);
        return v;
    }
    case PPD_TF_F16:
    case PPD_TF_BF16: {
        uint16_t v;
        memcpy(&v, p, 2);
        return dt == PPD_TF_F16 ? ppd_f16_to_f32(v) : ppd_bf16_to_f32(v);
    }
    case PPD_TF_F64: {
        double v;
        memcpy(&v, p, 8);
        return (float)v;
    }
    case PPD_TF_I64: {
        int64_t v;
        memcpy(&v, p, 8);
        return (float)v;
    }
    case PPD_TF_I32: {
        int32_t v;
        memcpy(&v, p, 4);
        return (float)v;
    }
    case PPD_TF_I16: {
        int16_t v;
        memcpy(&v, p, 2);
        return (float)v;
    }
    case PPD_TF_I8:
        return (float)(int8_t)p[0];
    case PPD_TF_U8:
        return (float)p[0];
    case PPD_TF_BOOL:
        return p[0] ? 1.0f : 0.0f;
    default:
        return 0.0f;
    }
}

ppd_status ppd_tensor_to_f32(const ppd_tensor *t, float *dst) {
    if (!t || !dst) return ppd_fail(PPD_ERR_USAGE, "ppd_tensor_to_f32: NULL argument");
    size_t es = ppd_tf_dtype_size(t->dtype);
    if (!es || t->ndim < 0 || t->ndim > PPD_TF_MAX_DIMS)
        return ppd_fail(PPD_ERR_USAGE, "ppd_tensor_to_f32: %s: invalid dtype %d or rank %d",
                        t->name ? t->name : "tensor", (int)t->dtype, t->ndim);
    if (t->numel <= 0) return PPD_OK;
    const unsigned char *base = t->data;
    if (t->contiguous) {
        if (t->dtype == PPD_TF_F32) {
            memcpy(dst, base, (size_t)t->numel * 4);
        } else {
            for (int64_t i = 0; i < t->numel; i++)
                dst[i] = load_elem(base + (size_t)i * es, t->dtype);
        }
        return PPD_OK;
    }
    /* Strided: walk the multi-index like an odometer, keeping the element offset in step. */
    int64_t idx[PPD_TF_MAX_DIMS] = {0}, off = 0;
    for (int64_t i = 0; i < t->numel; i++) {
        dst[i] = load_elem(base + (size_t)off * es, t->dtype);
        for (int d = t->ndim - 1; d >= 0; d--) {
            off += t->strides[d];
            if (++idx[d] < t->shape[d]) break;
            off -= t->strides[d] * t->shape[d];
            idx[d] = 0;
        }
    }
    return PPD_OK;
}

/* ---- open / close ------------------------------------------------------------------------ */

static int has_nul(const unsigned char *p, size_t n) {
    return memchr(p, 0, n) != NULL;
}

/* A JSON text rather than a binary file: the first non-blank byte is '{' and the first bytes
 * hold no NUL (a safetensors length prefix below 100 MB always has NULs in bytes 4-7). */
static int looks_like_json(const unsigned char *p, size_t n) {
    size_t i = 0;
    if (n >= 3 && p[0] == 0xef && p[1] == 0xbb && p[2] == 0xbf) i = 3; /* UTF-8 BOM */
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r')) i++;
    return i < n && p[i] == '{' && !has_nul(p, n < 8 ? n : 8);
}

static ppd_status load_by_content(ppd_tensor_file *f) {
    const unsigned char *p = f->mem;
    size_t n = f->len;
    /* A ZIP starts with a local header (its version field is never 0) or, when empty, with
     * the end record; a safetensors length of exactly 0x04034b50 would also start "PK\3\4". */
    int st_like = n >= 9 && p[8] == '{' && !p[4] && !p[5] && !p[6] && !p[7];
    if (n >= 4 && p[0] == 'P' && p[1] == 'K' && (p[2] == 3 || p[2] == 5) && !st_like) {
        f->format = "pytorch";
        return ppd_tf_load_pytorch(f);
    }
    if (looks_like_json(p, n)) {
        size_t scan = n < (1u << 20) ? n : (1u << 20);
        if (memmem(p, scan, "\"weight_map\"", 12))
            return ppd_fail(PPD_ERR_FORMAT,
                            "%s: a sharded-checkpoint index (weight_map), not a tensor file; "
                            "sharded checkpoints are not read as one: open each shard file it "
                            "lists",
                            f->name);
        return ppd_fail(PPD_ERR_FORMAT, "%s: a JSON text, not a safetensors or PyTorch file",
                        f->name);
    }
    if (n >= 9 && p[8] == '{') {
        f->format = "safetensors";
        return ppd_tf_load_safetensors(f);
    }
    if (p[0] == 0x80 || (n > 262 && memcmp(p + 257, "ustar", 5) == 0))
        return ppd_fail(PPD_ERR_FORMAT,
                        "%s: a bare pickle (or tar), not a ZIP archive: the legacy torch.save "
                        "format of torch < 1.6, which is not read; re-save it with torch >= 1.6 "
                        "(torch.save(torch.load(old), new))",
                        f->name);
    return ppd_fail(PPD_ERR_FORMAT,
                    "%s: neither safetensors nor a PyTorch ZIP checkpoint (%zu bytes, starting "
                    "%02x %02x %02x %02x)",
                    f->name, n, p[0], n > 1 ? p[1] : 0, n > 2 ? p[2] : 0, n > 3 ? p[3] : 0);
}

static ppd_status finish_open(ppd_tensor_file *f, ppd_tensor_file **out) {
    ppd_status st = load_by_content(f);
    if (st == PPD_OK) st = build_index(f);
    if (st) {
        ppd_tensor_file_close(f);
        return st;
    }
    *out = f;
    return PPD_OK;
}

static ppd_tensor_file *new_file(const char *name) {
    ppd_tensor_file *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->name = dup_str(name ? name : "(memory)");
    if (!f->name) {
        free(f);
        return NULL;
    }
    return f;
}

ppd_status ppd_tensor_file_open_memory(const void *data, size_t len, const char *name,
                                       ppd_tensor_file **out) {
    *out = NULL;
    if (!data && len) return ppd_fail(PPD_ERR_USAGE, "ppd_tensor_file_open_memory: NULL data");
    if (!len) return ppd_fail(PPD_ERR_EMPTY, "%s: empty file", name ? name : "(memory)");
    ppd_tensor_file *f = new_file(name);
    if (!f) return ppd_fail(PPD_ERR_NOMEM, "out of memory opening %s", name);
    f->mem = data;
    f->len = len;
    return finish_open(f, out);
}

ppd_status ppd_tensor_file_open(const char *path, ppd_tensor_file **out) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ppd_fail(PPD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return ppd_fail(PPD_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return ppd_fail(PPD_ERR_IO, "%s: not a regular file", path);
    }
    if (sb.st_size == 0) {
        close(fd);
        return ppd_fail(PPD_ERR_EMPTY, "%s: empty file", path);
    }
    void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd); /* the mapping stays valid */
    if (m == MAP_FAILED) return ppd_fail(PPD_ERR_IO, "%s: cannot map: %s", path, strerror(e));
    ppd_tensor_file *f = new_file(path);
    if (!f) {
        munmap(m, (size_t)sb.st_size);
        return ppd_fail(PPD_ERR_NOMEM, "out of memory opening %s", path);
    }
    f->mem = m;
    f->len = (size_t)sb.st_size;
    f->mapped = 1;
    return finish_open(f, out);
}

void ppd_tensor_file_close(ppd_tensor_file *f) {
    if (!f) return;
    for (size_t i = 0; i < f->n_tensors; i++) free((void *)f->tensors[i].name);
    for (size_t i = 0; i < f->n_values; i++) {
        free((void *)f->values[i].name);
        free((void *)f->values[i].s);
    }
    for (size_t i = 0; i < f->n_owned; i++) free(f->owned[i]);
    free(f->tensors);
    free(f->values);
    free(f->tensor_sorted);
    free(f->value_sorted);
    free(f->owned);
    if (f->mapped) munmap((void *)f->mem, f->len);
    free(f->name);
    free(f);
}
