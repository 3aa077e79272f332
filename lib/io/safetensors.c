/* The safetensors format (docs/spec/esm2.md §4.3; see ppdock/tensorfile.h for what is checked).
 *
 * The JSON header is parsed by the small parser below: no JSON library is in our dependency
 * set, and the format needs only objects, arrays, strings and non-negative integers (other JSON
 * values are recognised only to be skipped in fields we do not know, as the reference reader
 * does). Strings are decoded in full, \uXXXX escapes and surrogate pairs included. */
#include "tensorfile_internal.h"
#include "ppdock/fsutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { HEADER_MAX = 100000000, JSON_DEPTH_MAX = 64 };

typedef struct {
    const unsigned char *s, *p, *end; /* header text, cursor, end */
    ppd_tensor_file *f;
} json;

/* File offset of the cursor, for messages: the header starts at byte 8. */
static size_t where(const json *j) {
    return 8 + (size_t)(j->p - j->s);
}

static ppd_status jfail(const json *j, const char *what) {
    return ppd_fail(PPD_ERR_FORMAT, "%s: safetensors header, byte %zu: %s", j->f->name, where(j),
                    what);
}

static void ws(json *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static ppd_status expect(json *j, char c) {
    ws(j);
    if (j->p >= j->end || *j->p != (unsigned char)c) {
        char msg[48];
        snprintf(msg, sizeof msg, "expected '%c'", c);
        return jfail(j, msg);
    }
    j->p++;
    return PPD_OK;
}

/* ---- strings ----------------------------------------------------------------------------- */

static int hex4(const unsigned char *p, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = p[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if ((c | 32) >= 'a' && (c | 32) <= 'f')
            d = (c | 32) - 'a' + 10;
        else
            return 0;
        v = v * 16 + d;
    }
    *out = v;
    return 1;
}

static ppd_status put_utf8(ppd_buf *b, unsigned cp) {
    unsigned char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (unsigned char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (unsigned char)(0xc0 | cp >> 6);
        u[1] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (unsigned char)(0xe0 | cp >> 12);
        u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        u[0] = (unsigned char)(0xf0 | cp >> 18);
        u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
        u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        u[3] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    return ppd_buf_append(b, u, n);
}

/* A \uXXXX escape at j->p (just after the backslash-u), joining surrogate pairs. */
static ppd_status unicode_escape(json *j, ppd_buf *out) {
    unsigned cp, lo;
    if (j->end - j->p < 4 || !hex4(j->p, &cp)) return jfail(j, "bad \\u escape");
    j->p += 4;
    if (cp >= 0xdc00 && cp <= 0xdfff) return jfail(j, "lone low surrogate in \\u escape");
    if (cp >= 0xd800 && cp <= 0xdbff) {
        if (j->end - j->p < 6 || j->p[0] != '\\' || j->p[1] != 'u' || !hex4(j->p + 2, &lo) ||
            lo < 0xdc00 || lo > 0xdfff)
            return jfail(j, "high surrogate not followed by a low one in \\u escape");
        j->p += 6;
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    }
    if (cp == 0) return jfail(j, "NUL character (\\u0000) in a string");
    return put_utf8(out, cp);
}

/* A JSON string into out (decoded, NUL-terminated). The header was checked to be UTF-8. */
static ppd_status parse_string(json *j, ppd_buf *out) {
    out->len = 0;
    PPD_TRY(ppd_buf_reserve(out, 64));
    out->data[0] = 0;
    PPD_TRY(expect(j, '"'));
    for (;;) {
        if (j->p >= j->end) return jfail(j, "unterminated string");
        unsigned char c = *j->p;
        if (c == '"') {
            j->p++;
            return PPD_OK;
        }
        if (c < 0x20) return jfail(j, "control character in a string");
        if (c != '\\') {
            const unsigned char *q = j->p;
            while (q < j->end && *q != '"' && *q != '\\' && *q >= 0x20) q++;
            PPD_TRY(ppd_buf_append(out, j->p, (size_t)(q - j->p)));
            j->p = q;
            continue;
        }
        if (j->end - j->p < 2) return jfail(j, "unterminated escape");
        char e = (char)j->p[1], lit;
        j->p += 2;
        switch (e) {
        case '"':
        case '\\':
        case '/':
            lit = e;
            break;
        case 'b':
            lit = '\b';
            break;
        case 'f':
            lit = '\f';
            break;
        case 'n':
            lit = '\n';
            break;
        case 'r':
            lit = '\r';
            break;
        case 't':
            lit = '\t';
            break;
        case 'u':
            PPD_TRY(unicode_escape(j, out));
            continue;
        default:
            j->p -= 2;
            return jfail(j, "bad escape in a string");
        }
        PPD_TRY(ppd_buf_append(out, &lit, 1));
    }
}

/* ---- numbers and skipping ---------------------------------------------------------------- */

/* A JSON integer that must be >= 0 and fit int64 (shapes, offsets). */
static ppd_status parse_uint(json *j, int64_t *out) {
    ws(j);
    if (j->p < j->end && *j->p == '-') return jfail(j, "negative number where a size is expected");
    if (j->p >= j->end || *j->p < '0' || *j->p > '9') return jfail(j, "expected an integer");
    if (*j->p == '0' && j->p + 1 < j->end && j->p[1] >= '0' && j->p[1] <= '9')
        return jfail(j, "leading zero in a number");
    int64_t v = 0;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
        int d = *j->p - '0';
        if (v > (INT64_MAX - d) / 10) return jfail(j, "integer too large");
        v = v * 10 + d;
        j->p++;
    }
    if (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E'))
        return jfail(j, "expected an integer, found a fraction or exponent");
    *out = v;
    return PPD_OK;
}

static ppd_status skip_value(json *j, int depth);

static ppd_status skip_number(json *j) {
    const unsigned char *q = j->p;
    if (q < j->end && *q == '-') q++;
    if (q >= j->end || *q < '0' || *q > '9') return jfail(j, "unexpected character");
    if (*q == '0')
        q++;
    else
        while (q < j->end && *q >= '0' && *q <= '9') q++;
    if (q < j->end && *q == '.') {
        q++;
        if (q >= j->end || *q < '0' || *q > '9') return jfail(j, "bad number");
        while (q < j->end && *q >= '0' && *q <= '9') q++;
    }
    if (q < j->end && (*q == 'e' || *q == 'E')) {
        q++;
        if (q < j->end && (*q == '+' || *q == '-')) q++;
        if (q >= j->end || *q < '0' || *q > '9') return jfail(j, "bad number");
        while (q < j->end && *q >= '0' && *q <= '9') q++;
    }
    j->p = q;
    return PPD_OK;
}

static ppd_status skip_container(json *j, int depth, char close) {
    ppd_buf tmp = {0};
    ppd_status st = PPD_OK;
    j->p++;
    ws(j);
    if (j->p < j->end && *j->p == (unsigned char)close) {
        j->p++;
        return PPD_OK;
    }
    for (;;) {
        if (close == '}') {
            st = parse_string(j, &tmp);
            if (!st) st = expect(j, ':');
        }
        if (!st) st = skip_value(j, depth + 1);
        if (st) break;
        ws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        st = expect(j, close);
        break;
    }
    ppd_buf_free(&tmp);
    return st;
}

/* Any JSON value (a field we do not know), nesting bounded. */
static ppd_status skip_value(json *j, int depth) {
    if (depth > JSON_DEPTH_MAX) return jfail(j, "JSON nested too deeply");
    ws(j);
    if (j->p >= j->end) return jfail(j, "unexpected end of header");
    unsigned char c = *j->p;
    if (c == '{' || c == '[') return skip_container(j, depth, c == '{' ? '}' : ']');
    if (c == '"') {
        ppd_buf tmp = {0};
        ppd_status st = parse_string(j, &tmp);
        ppd_buf_free(&tmp);
        return st;
    }
    static const char *const words[] = {"true", "false", "null"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(words[i]);
        if ((size_t)(j->end - j->p) >= n && memcmp(j->p, words[i], n) == 0) {
            j->p += n;
            return PPD_OK;
        }
    }
    return skip_number(j);
}

/* Continue an object or array after an element: 1 = another element follows, 0 = closed. */
static ppd_status next_elem(json *j, char close, int *more) {
    ws(j);
    if (j->p < j->end && *j->p == ',') {
        j->p++;
        *more = 1;
        return PPD_OK;
    }
    *more = 0;
    return expect(j, close);
}

/* Is the object or array just opened empty? (consumes the closing bracket if so) */
static int closes_now(json *j, char close) {
    ws(j);
    if (j->p < j->end && *j->p == (unsigned char)close) {
        j->p++;
        return 1;
    }
    return 0;
}

/* ---- UTF-8 -------------------------------------------------------------------------------- */

/* Offset of the first byte that is not well-formed UTF-8, or n. */
static size_t utf8_bad(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        unsigned cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            k = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            k = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 3;
            cp = c & 0x07;
        } else {
            return i;
        }
        if (n - i <= k) return i;
        for (size_t m = 1; m <= k; m++) {
            if ((s[i + m] & 0xc0) != 0x80) return i;
            cp = cp << 6 | (s[i + m] & 0x3f);
        }
        if ((k == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (k == 3 && (cp < 0x10000 || cp > 0x10ffff)))
            return i;
        i += k + 1;
    }
    return n;
}

/* ---- tensors ----------------------------------------------------------------------------- */

typedef struct {
    char *name;
    int dtype;         /* ppd_tf_dtype, or -1: a known dtype this library does not convert */
    const char *dname; /* the header's dtype string (static) */
    size_t esize;      /* bytes per element */
    int ndim;
    int64_t shape[PPD_TF_MAX_DIMS], numel, begin, end;
    size_t order; /* position in the header */
} entry;

typedef struct {
    const char *name;
    int dtype;
    size_t size;
} dtype_def;

/* The dtypes of the format; those without a ppd_tf_dtype are listed as opaque values. */
static const dtype_def DTYPES[] = {
    {"F32", PPD_TF_F32, 4},   {"F16", PPD_TF_F16, 2}, {"BF16", PPD_TF_BF16, 2},
    {"F64", PPD_TF_F64, 8},   {"I64", PPD_TF_I64, 8}, {"I32", PPD_TF_I32, 4},
    {"I16", PPD_TF_I16, 2},   {"I8", PPD_TF_I8, 1},   {"U8", PPD_TF_U8, 1},
    {"BOOL", PPD_TF_BOOL, 1}, {"U16", -1, 2},         {"U32", -1, 4},
    {"U64", -1, 8},           {"F8_E5M2", -1, 1},     {"F8_E4M3", -1, 1},
    {"F8_E8M0", -1, 1},       {"C64", -1, 8},         {"C128", -1, 16},
};

static const dtype_def *find_dtype(const char *s) {
    for (size_t i = 0; i < sizeof DTYPES / sizeof DTYPES[0]; i++)
        if (strcmp(DTYPES[i].name, s) == 0) return &DTYPES[i];
    return NULL;
}

static ppd_status parse_shape(json *j, entry *e) {
    PPD_TRY(expect(j, '['));
    e->ndim = 0;
    e->numel = 1;
    if (closes_now(j, ']')) return PPD_OK;
    for (int more = 1; more;) {
        int64_t d;
        PPD_TRY(parse_uint(j, &d));
        if (e->ndim == PPD_TF_MAX_DIMS) return jfail(j, "more than 8 dimensions");
        e->shape[e->ndim++] = d;
        if (!ppd_tf_mul_ok(e->numel, d, &e->numel)) return jfail(j, "shape too large");
        PPD_TRY(next_elem(j, ']', &more));
    }
    return PPD_OK;
}

static ppd_status parse_offsets(json *j, entry *e) {
    PPD_TRY(expect(j, '['));
    PPD_TRY(parse_uint(j, &e->begin));
    PPD_TRY(expect(j, ','));
    PPD_TRY(parse_uint(j, &e->end));
    ws(j);
    if (j->p < j->end && *j->p == ',') return jfail(j, "data_offsets must have two entries");
    return expect(j, ']');
}

/* {"dtype": ..., "shape": [...], "data_offsets": [b, e], other fields skipped} */
static ppd_status parse_info(json *j, entry *e, ppd_buf *tmp) {
    int seen = 0; /* bit 0 dtype, 1 shape, 2 offsets */
    PPD_TRY(expect(j, '{'));
    if (closes_now(j, '}')) return jfail(j, "empty tensor description");
    for (int more = 1; more;) {
        PPD_TRY(parse_string(j, tmp));
        PPD_TRY(expect(j, ':'));
        const char *k = (const char *)tmp->data;
        int bit = strcmp(k, "dtype") == 0          ? 1
                  : strcmp(k, "shape") == 0        ? 2
                  : strcmp(k, "data_offsets") == 0 ? 4
                                                   : 0;
        if (bit & seen) return jfail(j, "duplicate field in a tensor description");
        seen |= bit;
        if (bit == 1) {
            PPD_TRY(parse_string(j, tmp));
            const dtype_def *d = find_dtype((const char *)tmp->data);
            if (!d) {
                char msg[96];
                snprintf(msg, sizeof msg, "unknown dtype \"%.40s\"", (const char *)tmp->data);
                return jfail(j, msg);
            }
            e->dtype = d->dtype;
            e->dname = d->name;
            e->esize = d->size;
        } else if (bit == 2) {
            PPD_TRY(parse_shape(j, e));
        } else if (bit == 4) {
            PPD_TRY(parse_offsets(j, e));
        } else {
            PPD_TRY(skip_value(j, 1));
        }
        PPD_TRY(next_elem(j, '}', &more));
    }
    if (seen != 7)
        return jfail(j, !(seen & 1)   ? "tensor description without \"dtype\""
                        : !(seen & 2) ? "tensor description without \"shape\""
                                      : "tensor description without \"data_offsets\"");
    return PPD_OK;
}

/* "__metadata__": {"key": "string", ...} (or null), listed as values "__metadata__.key". */
static ppd_status parse_metadata(json *j, ppd_buf *key, ppd_buf *val) {
    ws(j);
    if ((size_t)(j->end - j->p) >= 4 && memcmp(j->p, "null", 4) == 0) {
        j->p += 4;
        return PPD_OK;
    }
    PPD_TRY(expect(j, '{'));
    if (closes_now(j, '}')) return PPD_OK;
    for (int more = 1; more;) {
        PPD_TRY(parse_string(j, key));
        PPD_TRY(expect(j, ':'));
        ws(j);
        if (j->p >= j->end || *j->p != '"') return jfail(j, "__metadata__ values must be strings");
        PPD_TRY(parse_string(j, val));
        ppd_buf name = {0};
        ppd_status st = ppd_buf_printf(&name, "__metadata__.%s", (const char *)key->data);
        ppd_tf_value v = {.kind = PPD_TF_VAL_STR, .s = (const char *)val->data};
        if (!st) st = ppd_tf_add_value(j->f, (const char *)name.data, &v);
        ppd_buf_free(&name);
        PPD_TRY(st);
        PPD_TRY(next_elem(j, '}', &more));
    }
    return PPD_OK;
}

typedef struct {
    entry *v;
    size_t n, cap;
} entries;

static void entries_free(entries *es) {
    for (size_t i = 0; i < es->n; i++) free(es->v[i].name);
    free(es->v);
}

static ppd_status parse_header(json *j, entries *es) {
    ppd_buf key = {0}, tmp = {0};
    int seen_meta = 0;
    ppd_status st = expect(j, '{');
    if (!st && closes_now(j, '}')) goto done;
    for (int more = 1; !st && more;) {
        st = parse_string(j, &key);
        if (!st) st = expect(j, ':');
        if (st) break;
        if (strcmp((const char *)key.data, "__metadata__") == 0) {
            st = seen_meta++ ? jfail(j, "__metadata__ given twice") : parse_metadata(j, &key, &tmp);
        } else {
            if (es->n == es->cap) {
                size_t nc = es->cap ? es->cap * 2 : 64;
                entry *nv = realloc(es->v, nc * sizeof *nv);
                if (!nv) {
                    st = ppd_fail(PPD_ERR_NOMEM, "%s: out of memory", j->f->name);
                    break;
                }
                es->v = nv;
                es->cap = nc;
            }
            entry *e = &es->v[es->n];
            memset(e, 0, sizeof *e);
            e->name = malloc(key.len + 1);
            if (!e->name) {
                st = ppd_fail(PPD_ERR_NOMEM, "%s: out of memory", j->f->name);
                break;
            }
            memcpy(e->name, key.data, key.len + 1);
            e->order = es->n++;
            st = parse_info(j, e, &tmp);
        }
        if (!st) st = next_elem(j, '}', &more);
    }
done:
    if (!st) {
        ws(j);
        if (j->p != j->end) st = jfail(j, "unexpected bytes after the JSON header");
    }
    ppd_buf_free(&key);
    ppd_buf_free(&tmp);
    return st;
}

static int cmp_name(const void *a, const void *b) {
    const entry *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->order > y->order) - (x->order < y->order);
}

static int cmp_begin(const void *a, const void *b) {
    const entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return (x->order > y->order) - (x->order < y->order);
}

static int cmp_order(const void *a, const void *b) {
    const entry *x = a, *y = b;
    return (x->order > y->order) - (x->order < y->order);
}

/* One tensor's bytes: as many as its dtype and shape need, inside the data section. */
static ppd_status check_extent(ppd_tensor_file *f, const entry *e, int64_t data_len) {
    int64_t nbytes;
    if (!ppd_tf_mul_ok(e->numel, (int64_t)e->esize, &nbytes))
        return ppd_fail(PPD_ERR_FORMAT, "%s: tensor %s: shape too large", f->name, e->name);
    if (e->end < e->begin)
        return ppd_fail(PPD_ERR_FORMAT,
                        "%s: tensor %s: data_offsets [%lld, %lld] end before they "
                        "begin",
                        f->name, e->name, (long long)e->begin, (long long)e->end);
    if (e->end - e->begin != nbytes)
        return ppd_fail(PPD_ERR_FORMAT,
                        "%s: tensor %s: data_offsets [%lld, %lld] hold %lld bytes, but %s with "
                        "%lld elements needs %lld",
                        f->name, e->name, (long long)e->begin, (long long)e->end,
                        (long long)(e->end - e->begin), e->dname, (long long)e->numel,
                        (long long)nbytes);
    if (e->end > data_len)
        return ppd_fail(PPD_ERR_FORMAT,
                        "%s: tensor %s: data_offsets [%lld, %lld] run past the data section (%lld "
                        "bytes): truncated file?",
                        f->name, e->name, (long long)e->begin, (long long)e->end,
                        (long long)data_len);
    return PPD_OK;
}

/* No name twice (the reference reader would keep the last; we refuse). Sorts by name. */
static ppd_status check_names(ppd_tensor_file *f, entries *es) {
    qsort(es->v, es->n, sizeof *es->v, cmp_name);
    for (size_t i = 1; i < es->n; i++)
        if (strcmp(es->v[i - 1].name, es->v[i].name) == 0)
            return ppd_fail(PPD_ERR_FORMAT, "%s: tensor name %s given twice in the header", f->name,
                            es->v[i].name);
    return PPD_OK;
}

/* Sorted by offset, the tensors tile the data section: no gap, no overlap, nothing after. */
static ppd_status check_tiling(ppd_tensor_file *f, entries *es, int64_t data_len) {
    qsort(es->v, es->n, sizeof *es->v, cmp_begin);
    int64_t at = 0;
    for (size_t i = 0; i < es->n; i++) {
        const entry *e = &es->v[i];
        if (e->begin < at)
            return ppd_fail(PPD_ERR_FORMAT,
                            "%s: tensor %s (bytes %lld-%lld) overlaps tensor %s (ends at %lld)",
                            f->name, e->name, (long long)e->begin, (long long)e->end,
                            es->v[i - 1].name, (long long)at);
        if (e->begin > at)
            return ppd_fail(PPD_ERR_FORMAT,
                            "%s: %lld unused bytes before tensor %s (data_offsets start at %lld, "
                            "previous data ends at %lld)",
                            f->name, (long long)(e->begin - at), e->name, (long long)e->begin,
                            (long long)at);
        at = e->end;
    }
    if (at != data_len)
        return ppd_fail(PPD_ERR_FORMAT,
                        "%s: %lld bytes after the last tensor (data section %lld bytes, tensors "
                        "end at %lld)",
                        f->name, (long long)(data_len - at), (long long)data_len, (long long)at);
    return PPD_OK;
}

/* Everything about the layout; es->v is back in header order afterwards. */
static ppd_status check_layout(ppd_tensor_file *f, entries *es, int64_t data_len) {
    for (size_t i = 0; i < es->n; i++) PPD_TRY(check_extent(f, &es->v[i], data_len));
    if (es->n) { /* qsort wants a non-NULL base */
        PPD_TRY(check_names(f, es));
        PPD_TRY(check_tiling(f, es, data_len));
        qsort(es->v, es->n, sizeof *es->v, cmp_order);
    } else if (data_len) {
        return ppd_fail(PPD_ERR_FORMAT, "%s: %lld bytes of data but no tensors", f->name,
                        (long long)data_len);
    }
    return PPD_OK;
}

static ppd_status add_entries(ppd_tensor_file *f, const entries *es, const unsigned char *data) {
    for (size_t i = 0; i < es->n; i++) {
        const entry *e = &es->v[i];
        if (e->dtype < 0) {
            char cls[48];
            snprintf(cls, sizeof cls, "safetensors %s", e->dname);
            ppd_tf_value v = {.kind = PPD_TF_VAL_OPAQUE, .s = cls};
            PPD_TRY(ppd_tf_add_value(f, e->name, &v));
            continue;
        }
        ppd_tensor t = {.dtype = (ppd_tf_dtype)e->dtype,
                        .ndim = e->ndim,
                        .numel = e->numel,
                        .data = data + e->begin,
                        .contiguous = 1};
        memcpy(t.shape, e->shape, sizeof t.shape);
        ppd_tf_rowmajor_strides(t.ndim, t.shape, t.strides);
        PPD_TRY(ppd_tf_add_tensor(f, e->name, &t));
    }
    return PPD_OK;
}

ppd_status ppd_tf_load_safetensors(ppd_tensor_file *f) {
    if (f->len < 8)
        return ppd_fail(PPD_ERR_FORMAT, "%s: %zu bytes: too short for a safetensors header",
                        f->name, f->len);
    uint64_t n;
    memcpy(&n, f->mem, 8);
    if (n > HEADER_MAX)
        return ppd_fail(PPD_ERR_FORMAT,
                        "%s: safetensors header length %llu is over the %d-byte limit (a corrupt "
                        "or non-safetensors file)",
                        f->name, (unsigned long long)n, HEADER_MAX);
    if (n > f->len - 8)
        return ppd_fail(PPD_ERR_FORMAT,
                        "%s: safetensors header length %llu runs past the end of the file (%zu "
                        "bytes): truncated file or wrong header length",
                        f->name, (unsigned long long)n, f->len);
    const unsigned char *hdr = f->mem + 8;
    size_t bad = utf8_bad(hdr, (size_t)n);
    if (bad != n)
        return ppd_fail(PPD_ERR_FORMAT, "%s: safetensors header, byte %zu: not UTF-8", f->name,
                        8 + bad);
    json j = {.s = hdr, .p = hdr, .end = hdr + n, .f = f};
    entries es = {0};
    ppd_status st = parse_header(&j, &es);
    if (!st) st = check_layout(f, &es, (int64_t)(f->len - 8 - n));
    if (!st) st = add_entries(f, &es, hdr + n);
    entries_free(&es);
    return st;
}
