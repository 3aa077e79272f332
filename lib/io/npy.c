/* NumPy .npy writer and reader (see ppdock/npy.h). The header is a Python dict literal; the
 * few forms NumPy writes are parsed by hand below (quoted strings, True/False, int tuples). */
#include "ppdock/npy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { ALIGN = 64, GROWTH_DIGITS = 21, PREAMBLE_V1 = 10 };

/* ---- writer ------------------------------------------------------------------------------ */

/* "(2, 3)", "(5,)" or "()": Python's repr of the shape tuple. */
static ppd_status shape_repr(ppd_buf *b, int ndim, const int64_t *shape) {
    PPD_TRY(ppd_buf_append(b, "(", 1));
    for (int d = 0; d < ndim; d++)
        PPD_TRY(ppd_buf_printf(b, d ? ", %lld" : "%lld", (long long)shape[d]));
    return ppd_buf_append(b, ndim == 1 ? ",)" : ")", ndim == 1 ? 2 : 1);
}

ppd_status ppd_npy_encode_f32(const float *data, int ndim, const int64_t *shape, ppd_buf *out) {
    if (ndim < 0 || ndim > PPD_TF_MAX_DIMS || (ndim && !shape))
        return ppd_fail(PPD_ERR_USAGE, "npy: rank %d not in 0..%d", ndim, PPD_TF_MAX_DIMS);
    int64_t numel = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0 || (shape[d] && numel > INT64_MAX / 4 / shape[d]))
            return ppd_fail(PPD_ERR_USAGE, "npy: bad dimension %lld", (long long)shape[d]);
        numel *= shape[d];
    }
    if (numel && !data) return ppd_fail(PPD_ERR_USAGE, "npy: NULL data");
    out->len = 0;
    PPD_TRY(ppd_buf_append(out, "\x93NUMPY\x01\x00\x00\x00", PREAMBLE_V1));
    PPD_TRY(ppd_buf_printf(out, "{'descr': '<f4', 'fortran_order': False, 'shape': "));
    PPD_TRY(shape_repr(out, ndim, shape));
    PPD_TRY(ppd_buf_printf(out, ", }"));
    if (ndim) { /* NumPy >= 1.23 leaves room for shape[0] to grow to 21 digits */
        char tmp[32];
        int n = snprintf(tmp, sizeof tmp, "%lld", (long long)shape[0]);
        for (int i = n; i < GROWTH_DIGITS; i++) PPD_TRY(ppd_buf_append(out, " ", 1));
    }
    while ((out->len + 1) % ALIGN) PPD_TRY(ppd_buf_append(out, " ", 1));
    PPD_TRY(ppd_buf_append(out, "\n", 1));
    size_t hlen = out->len - PREAMBLE_V1;
    out->data[8] = (unsigned char)(hlen & 0xff);
    out->data[9] = (unsigned char)(hlen >> 8);
    return ppd_buf_append(out, data, (size_t)numel * sizeof(float));
}

ppd_status ppd_npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape) {
    ppd_buf b = {0};
    ppd_status st = ppd_npy_encode_f32(data, ndim, shape, &b);
    if (!st) st = ppd_write_file_replace(path, b.data, b.len, 0); /* exports: no fsync each */
    ppd_buf_free(&b);
    return st;
}

/* ---- reader ------------------------------------------------------------------------------ */

typedef struct {
    const char *p, *end, *name;
} lit;

static ppd_status lfail(const lit *l, const char *what) {
    return ppd_fail(PPD_ERR_FORMAT, "%s: .npy header: %s", l->name, what);
}

static void lws(lit *l) {
    while (l->p < l->end && (*l->p == ' ' || *l->p == '\t' || *l->p == '\n' || *l->p == '\r'))
        l->p++;
}

static int accept(lit *l, char c) {
    lws(l);
    if (l->p < l->end && *l->p == c) {
        l->p++;
        return 1;
    }
    return 0;
}

/* A '...' or "..." string without escapes (NumPy writes none in these fields). */
static ppd_status lit_string(lit *l, char *out, size_t cap) {
    lws(l);
    if (l->p >= l->end || (*l->p != '\'' && *l->p != '"')) return lfail(l, "expected a string");
    char q = *l->p++;
    size_t n = 0;
    while (l->p < l->end && *l->p != q) {
        if (*l->p == '\\' || n + 1 >= cap) return lfail(l, "unexpected string");
        out[n++] = *l->p++;
    }
    if (l->p >= l->end) return lfail(l, "unterminated string");
    l->p++;
    out[n] = 0;
    return PPD_OK;
}

static ppd_status lit_bool(lit *l, int *out) {
    lws(l);
    if (l->end - l->p >= 4 && memcmp(l->p, "True", 4) == 0) {
        l->p += 4;
        *out = 1;
    } else if (l->end - l->p >= 5 && memcmp(l->p, "False", 5) == 0) {
        l->p += 5;
        *out = 0;
    } else {
        return lfail(l, "expected True or False");
    }
    return PPD_OK;
}

/* (d0, d1, ...) with an optional trailing comma; Python 2 longs ("3L") accepted. */
static ppd_status lit_shape(lit *l, ppd_tensor *t) {
    if (!accept(l, '(')) return lfail(l, "shape is not a tuple");
    t->ndim = 0;
    t->numel = 1;
    while (!accept(l, ')')) {
        lws(l);
        if (l->p >= l->end || *l->p < '0' || *l->p > '9') return lfail(l, "bad shape");
        int64_t v = 0;
        while (l->p < l->end && *l->p >= '0' && *l->p <= '9') {
            if (v > (INT64_MAX - 9) / 10) return lfail(l, "shape too large");
            v = v * 10 + (*l->p++ - '0');
        }
        if (l->p < l->end && *l->p == 'L') l->p++;
        if (t->ndim == PPD_TF_MAX_DIMS) return lfail(l, "more than 8 dimensions");
        if (v && t->numel > INT64_MAX / 8 / v) return lfail(l, "shape too large");
        t->shape[t->ndim++] = v;
        t->numel *= v;
        if (!accept(l, ',')) {
            if (!accept(l, ')')) return lfail(l, "bad shape");
            break;
        }
    }
    return PPD_OK;
}

static ppd_status parse_descr(lit *l, ppd_tensor *t) {
    char d[32];
    PPD_TRY(lit_string(l, d, sizeof d));
    if (strcmp(d, "<f4") == 0)
        t->dtype = PPD_TF_F32;
    else if (strcmp(d, "<f2") == 0)
        t->dtype = PPD_TF_F16;
    else if (strcmp(d, "<i8") == 0)
        t->dtype = PPD_TF_I64;
    else
        return ppd_fail(PPD_ERR_FORMAT,
                        "%s: .npy dtype '%s' is not read (only '<f4', '<f2', '<i8')", l->name, d);
    return PPD_OK;
}

static ppd_status parse_dict(lit *l, ppd_tensor *t) {
    int seen = 0, fortran = 0;
    if (!accept(l, '{')) return lfail(l, "not a dict");
    while (!accept(l, '}')) {
        char key[32];
        PPD_TRY(lit_string(l, key, sizeof key));
        if (!accept(l, ':')) return lfail(l, "expected ':'");
        int bit = strcmp(key, "descr") == 0           ? 1
                  : strcmp(key, "fortran_order") == 0 ? 2
                  : strcmp(key, "shape") == 0         ? 4
                                                      : 0;
        if (!bit || (seen & bit)) return lfail(l, "unexpected or repeated key");
        seen |= bit;
        if (bit == 1) PPD_TRY(parse_descr(l, t));
        if (bit == 2) PPD_TRY(lit_bool(l, &fortran));
        if (bit == 4) PPD_TRY(lit_shape(l, t));
        if (!accept(l, ',')) {
            if (!accept(l, '}')) return lfail(l, "expected ',' or '}'");
            break;
        }
    }
    lws(l);
    if (l->p != l->end) return lfail(l, "unexpected text after the dict");
    if (seen != 7) return lfail(l, "missing descr, fortran_order or shape");
    if (fortran && t->ndim > 1)
        return ppd_fail(PPD_ERR_FORMAT,
                        "%s: a Fortran-order array, which is not read (save "
                        "np.ascontiguousarray(a))",
                        l->name);
    return PPD_OK;
}

ppd_status ppd_npy_parse(const void *bytes, size_t len, const char *name, ppd_npy *out) {
    memset(out, 0, sizeof *out);
    const unsigned char *p = bytes;
    if (len < PREAMBLE_V1 || memcmp(p, "\x93NUMPY", 6) != 0)
        return ppd_fail(PPD_ERR_FORMAT, "%s: not a .npy file (no \\x93NUMPY magic)", name);
    size_t hlen, off;
    if (p[6] == 1) {
        hlen = (size_t)p[8] | (size_t)p[9] << 8;
        off = PREAMBLE_V1;
    } else if ((p[6] == 2 || p[6] == 3) && len >= 12) {
        hlen = (size_t)p[8] | (size_t)p[9] << 8 | (size_t)p[10] << 16 | (size_t)p[11] << 24;
        off = 12;
    } else {
        return ppd_fail(PPD_ERR_FORMAT, "%s: .npy format version %d.%d is not read", name, p[6],
                        p[7]);
    }
    if (hlen > len - off) return ppd_fail(PPD_ERR_FORMAT, "%s: truncated .npy header", name);
    lit l = {(const char *)p + off, (const char *)p + off + hlen, name};
    ppd_tensor t = {.contiguous = 1};
    PPD_TRY(parse_dict(&l, &t));
    size_t es = ppd_tf_dtype_size(t.dtype), have = len - off - hlen;
    if ((uint64_t)t.numel * es != have)
        return ppd_fail(
            PPD_ERR_FORMAT, "%s: .npy data is %zu bytes, but %lld %s elements need %llu (%s)", name,
            have, (long long)t.numel, ppd_tf_dtype_name(t.dtype), (unsigned long long)t.numel * es,
            have < (uint64_t)t.numel * es ? "truncated" : "trailing bytes");
    size_t alloc = (have + ALIGN - 1) / ALIGN * ALIGN;
    out->mem = aligned_alloc(ALIGN, alloc ? alloc : ALIGN);
    if (!out->mem) return ppd_fail(PPD_ERR_NOMEM, "%s: out of memory (%zu bytes)", name, have);
    if (have) memcpy(out->mem, p + off + hlen, have);
    int64_t stride = 1; /* row-major */
    for (int d = t.ndim - 1; d >= 0; d--) {
        t.strides[d] = stride;
        stride *= t.shape[d] > 0 ? t.shape[d] : 1;
    }
    t.data = out->mem;
    out->t = t;
    return PPD_OK;
}

ppd_status ppd_npy_read(const char *path, ppd_npy *out) {
    memset(out, 0, sizeof *out);
    ppd_buf b = {0};
    ppd_status st = ppd_read_file(path, &b);
    if (!st) st = ppd_npy_parse(b.data, b.len, path, out);
    ppd_buf_free(&b);
    return st;
}

void ppd_npy_free(ppd_npy *a) {
    if (!a) return;
    free(a->mem);
    memset(a, 0, sizeof *a);
}
