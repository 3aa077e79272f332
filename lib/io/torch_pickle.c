/* PyTorch checkpoints: the ZIP container torch.save writes since 1.6, and a restricted
 * unpickler for its data.pkl (see ppdock/tensorfile.h for what is read and what is refused).
 *
 * Safety model: the unpickler is a small stack machine over plain values (None, bool, int,
 * float, str, bytes, tuple, list, dict) plus three inert kinds: GLOBAL (a "module.name" pair,
 * never imported), OBJECT (the recorded result of calling a global: class, arguments, BUILD
 * state and items, never constructed) and TENSOR/STORAGE (views into the archive's bytes). A
 * handful of torch globals are interpreted by name; nothing is ever executed. All tables are
 * indexed by int32 and grow with the pickle's length, which is bounded; every read is
 * bounds-checked. The format was learned from pickletools' documentation of the opcodes and
 * from disassembling torch.save output; no code was taken from PyTorch or CPython. */
#include "tensorfile_internal.h"
#include "ppdock/fsutil.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

enum {
    PICKLE_MAX = 64 << 20, /* data.pkl of a state dict is KBs to a few MB */
    VALUES_MAX = 1 << 24,  /* objects built; ~48 bytes each */
    NAME_MAX_LEN = 4096,
    DEPTH_MAX = 64,
    GLOBAL_NAME_MAX = 1024,
};

static uint16_t rd16(const unsigned char *p) {
    return (uint16_t)(p[0] | p[1] << 8);
}
static uint32_t rd32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const unsigned char *p) {
    return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

/* ======================================== ZIP ============================================== */

typedef struct {
    const unsigned char *name;
    size_t name_len;
    uint16_t method, flags;
    uint32_t crc;
    uint64_t csize, usize, local_off;
    const unsigned char *data; /* after zip_data(): usize bytes, CRC checked */
} zentry;

typedef struct {
    ppd_tensor_file *f;
    zentry *e;
    size_t n;
    zentry **sorted; /* by name, for lookup */
    uint64_t cd_off; /* entry data must lie before the central directory */
} zip;

static ppd_status zfail(const zip *z, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static ppd_status zfail(const zip *z, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ppd_fail(PPD_ERR_FORMAT, "%s: %s", z->f->name, msg);
}

/* The end-of-central-directory record: the last "PK\5\6" whose comment ends the file. */
static ppd_status zip_find_eocd(const zip *z, size_t *at) {
    const unsigned char *p = z->f->mem;
    size_t len = z->f->len;
    if (len < 22) return zfail(z, "%zu bytes: too short for a ZIP archive (truncated?)", len);
    size_t lo = len > 22 + 65535 ? len - 22 - 65535 : 0;
    for (size_t i = len - 22;; i--) {
        if (rd32(p + i) == 0x06054b50 && i + 22 + rd16(p + i + 20) == len) {
            *at = i;
            return PPD_OK;
        }
        if (i == lo) break;
    }
    return zfail(z, "no ZIP end-of-central-directory record: the file is truncated or not a "
                    "ZIP archive");
}

/* Central directory position and entry count, from the classic or the ZIP64 end record. */
static ppd_status zip_directory(const zip *z, uint64_t *cd_off, uint64_t *cd_size,
                                uint64_t *count) {
    const unsigned char *p = z->f->mem;
    size_t eocd = 0;
    PPD_TRY(zip_find_eocd(z, &eocd));
    if (rd16(p + eocd + 4) != rd16(p + eocd + 6) ||
        (rd16(p + eocd + 4) != 0 && rd16(p + eocd + 4) != 0xffff))
        return zfail(z, "a multi-disk ZIP archive, which is not read");
    *count = rd16(p + eocd + 10);
    *cd_size = rd32(p + eocd + 12);
    *cd_off = rd32(p + eocd + 16);
    uint64_t cd_end = eocd;
    if (eocd >= 20 && rd32(p + eocd - 20) == 0x07064b50) { /* ZIP64 locator */
        uint64_t z64 = rd64(p + eocd - 20 + 8);
        if (z64 > eocd - 20 || eocd - 20 - z64 < 56 || rd32(p + z64) != 0x06064b50)
            return zfail(z, "bad ZIP64 end-of-central-directory record");
        *count = rd64(p + z64 + 32);
        *cd_size = rd64(p + z64 + 40);
        *cd_off = rd64(p + z64 + 48);
        cd_end = z64;
    } else if (*count == 0xffff || *cd_size == 0xffffffffu || *cd_off == 0xffffffffu) {
        return zfail(z, "ZIP64 archive without its ZIP64 end record (truncated?)");
    }
    if (*cd_off > cd_end || *cd_size > cd_end - *cd_off)
        return zfail(z,
                     "central directory (offset %llu, %llu bytes) lies outside the file: "
                     "truncated?",
                     (unsigned long long)*cd_off, (unsigned long long)*cd_size);
    if (*count > *cd_size / 46)
        return zfail(z, "central directory of %llu bytes cannot hold %llu entries",
                     (unsigned long long)*cd_size, (unsigned long long)*count);
    return PPD_OK;
}

/* ZIP64 extended information (extra field 0x0001): the 64-bit values of the saturated fields,
 * in the order usize, csize, offset. */
static ppd_status zip64_extra(const zip *z, zentry *e, const unsigned char *x, size_t n) {
    while (n >= 4) {
        uint16_t id = rd16(x), sz = rd16(x + 2);
        if ((size_t)sz > n - 4) return zfail(z, "bad extra field in the ZIP central directory");
        if (id == 0x0001) {
            const unsigned char *q = x + 4, *qe = x + 4 + sz;
            uint64_t *fields[3] = {&e->usize, &e->csize, &e->local_off};
            for (int i = 0; i < 3; i++) {
                if (*fields[i] != 0xffffffffu) continue;
                if (qe - q < 8) return zfail(z, "short ZIP64 extra field");
                *fields[i] = rd64(q);
                q += 8;
            }
        }
        x += 4 + sz;
        n -= 4 + (size_t)sz;
    }
    return PPD_OK;
}

static ppd_status zip_entry(const zip *z, const unsigned char *p, const unsigned char *end,
                            zentry *e, const unsigned char **next) {
    if (end - p < 46 || rd32(p) != 0x02014b50) return zfail(z, "corrupt ZIP central directory");
    size_t nl = rd16(p + 28), xl = rd16(p + 30), cl = rd16(p + 32);
    if ((size_t)(end - p) - 46 < nl + xl + cl) return zfail(z, "corrupt ZIP central directory");
    memset(e, 0, sizeof *e);
    e->flags = rd16(p + 8);
    e->method = rd16(p + 10);
    e->crc = rd32(p + 16);
    e->csize = rd32(p + 20);
    e->usize = rd32(p + 24);
    e->local_off = rd32(p + 42);
    e->name = p + 46;
    e->name_len = nl;
    PPD_TRY(zip64_extra(z, e, p + 46 + nl, xl));
    *next = p + 46 + nl + xl + cl;
    return PPD_OK;
}

static int cmp_entry(const void *a, const void *b) {
    const zentry *x = *(const zentry *const *)a, *y = *(const zentry *const *)b;
    size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
    int c = memcmp(x->name, y->name, n);
    if (c) return c;
    if (x->name_len != y->name_len) return x->name_len < y->name_len ? -1 : 1;
    return (x > y) - (x < y);
}

static ppd_status zip_open(zip *z) {
    uint64_t cd_off = 0, cd_size = 0, count = 0;
    PPD_TRY(zip_directory(z, &cd_off, &cd_size, &count));
    z->cd_off = cd_off;
    if (count == 0) return zfail(z, "an empty ZIP archive");
    z->e = calloc((size_t)count, sizeof *z->e);
    z->sorted = malloc((size_t)count * sizeof *z->sorted);
    if (!z->e || !z->sorted) return ppd_fail(PPD_ERR_NOMEM, "%s: out of memory", z->f->name);
    const unsigned char *p = z->f->mem + cd_off, *end = p + cd_size;
    for (uint64_t i = 0; i < count; i++) {
        PPD_TRY(zip_entry(z, p, end, &z->e[i], &p));
        z->sorted[i] = &z->e[i];
        z->n++;
    }
    qsort(z->sorted, z->n, sizeof *z->sorted, cmp_entry);
    return PPD_OK;
}

static void zip_close(zip *z) {
    free(z->e);
    free(z->sorted);
}

static zentry *zip_find(const zip *z, const char *name, size_t len) {
    size_t lo = 0, hi = z->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const zentry *e = z->sorted[mid];
        size_t n = e->name_len < len ? e->name_len : len;
        int c = memcmp(e->name, name, n);
        if (!c) c = e->name_len < len ? -1 : e->name_len > len ? 1 : 0;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < z->n && z->sorted[lo]->name_len == len && memcmp(z->sorted[lo]->name, name, len) == 0)
        return z->sorted[lo];
    return NULL;
}

/* Where an entry's stored bytes start: after its local header. */
static ppd_status zip_raw(const zip *z, const zentry *e, const unsigned char **raw) {
    const unsigned char *p = z->f->mem;
    if (e->local_off > z->cd_off || z->cd_off - e->local_off < 30 ||
        rd32(p + e->local_off) != 0x04034b50)
        return zfail(z, "entry %.*s: bad local header offset", (int)e->name_len, e->name);
    uint64_t data = e->local_off + 30 + rd16(p + e->local_off + 26) + rd16(p + e->local_off + 28);
    if (data > z->cd_off || e->csize > z->cd_off - data)
        return zfail(z,
                     "entry %.*s: %llu bytes at offset %llu run past the archive's data "
                     "(truncated?)",
                     (int)e->name_len, e->name, (unsigned long long)e->csize,
                     (unsigned long long)data);
    *raw = p + data;
    return PPD_OK;
}

static ppd_status zip_inflate(const zip *z, const zentry *e, const unsigned char *raw,
                              unsigned char **out) {
    /* Deflate cannot expand more than ~1032:1; a larger claim is corrupt (and would make us
     * allocate for nothing). */
    if (e->usize > e->csize * 1032 + 1024)
        return zfail(z, "entry %.*s: %llu bytes cannot inflate to %llu", (int)e->name_len, e->name,
                     (unsigned long long)e->csize, (unsigned long long)e->usize);
    unsigned char *buf = malloc((size_t)e->usize + 1);
    if (!buf) return ppd_fail(PPD_ERR_NOMEM, "%s: out of memory inflating an entry", z->f->name);
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, -15) != Z_OK) {
        free(buf);
        return ppd_fail(PPD_ERR_NOMEM, "%s: zlib init failed", z->f->name);
    }
    uint64_t in_left = e->csize, out_left = e->usize;
    zs.next_in = (Bytef *)raw;
    zs.next_out = buf;
    int rc = Z_OK;
    while (rc == Z_OK) {
        /* zlib counts in uInt: feed at most 1 GiB at a time either way. */
        if (zs.avail_in == 0 && in_left) {
            zs.avail_in = (uInt)(in_left < (1u << 30) ? in_left : (1u << 30));
            in_left -= zs.avail_in;
        }
        if (zs.avail_out == 0 && out_left) {
            zs.avail_out = (uInt)(out_left < (1u << 30) ? out_left : (1u << 30));
            out_left -= zs.avail_out;
        }
        rc = inflate(&zs, Z_NO_FLUSH);
        /* No progress for want of a buffer: go on only if one can be refilled. */
        if (rc == Z_BUF_ERROR && ((!zs.avail_in && in_left) || (!zs.avail_out && out_left)))
            rc = Z_OK;
    }
    int ok = rc == Z_STREAM_END && zs.total_out == e->usize;
    inflateEnd(&zs);
    if (!ok) {
        free(buf);
        return zfail(z, "entry %.*s: corrupt DEFLATE data", (int)e->name_len, e->name);
    }
    *out = buf;
    return PPD_OK;
}

static uint32_t crc_of(const unsigned char *p, uint64_t n) {
    uLong c = crc32(0L, Z_NULL, 0);
    while (n) {
        uInt k = (uInt)(n < (1u << 30) ? n : (1u << 30));
        c = crc32(c, p, k);
        p += k;
        n -= k;
    }
    return (uint32_t)c;
}

/* An entry's bytes (usize of them), inflated if needed and CRC-checked, once. */
static ppd_status zip_data(zip *z, zentry *e, const unsigned char **out) {
    if (e->data) {
        *out = e->data;
        return PPD_OK;
    }
    if (e->flags & 0x41) return zfail(z, "entry %.*s is encrypted", (int)e->name_len, e->name);
    const unsigned char *raw = NULL, *data = NULL;
    PPD_TRY(zip_raw(z, e, &raw));
    if (e->method == 0) {
        if (e->csize != e->usize)
            return zfail(z, "stored entry %.*s: sizes differ (%llu vs %llu)", (int)e->name_len,
                         e->name, (unsigned long long)e->csize, (unsigned long long)e->usize);
        data = raw;
    } else if (e->method == 8) {
        unsigned char *buf = NULL;
        PPD_TRY(zip_inflate(z, e, raw, &buf));
        PPD_TRY(ppd_tf_own(z->f, buf));
        data = buf;
    } else {
        return zfail(z,
                     "entry %.*s uses ZIP compression method %u; only stored (0) and "
                     "deflate (8) are read",
                     (int)e->name_len, e->name, e->method);
    }
    uint32_t crc = crc_of(data, e->usize);
    if (crc != e->crc)
        return ppd_fail(PPD_ERR_CORRUPT,
                        "%s: entry %.*s: CRC-32 mismatch (stored %08x, computed %08x): the file "
                        "is corrupt",
                        z->f->name, (int)e->name_len, e->name, e->crc, crc);
    e->data = data;
    *out = data;
    return PPD_OK;
}

/* ==================================== unpickler ============================================ */

typedef enum {
    V_NONE,
    V_BOOL,
    V_INT,
    V_BIGINT, /* an int outside int64: kept opaque */
    V_FLOAT,
    V_STR,
    V_BYTES,
    V_TUPLE,
    V_LIST,
    V_DICT,
    V_GLOBAL,
    V_OBJECT,
    V_TENSOR,
    V_STORAGE
} vkind;

/* The globals that are interpreted; every other one is K_OTHER (opaque). */
typedef enum { K_OTHER, K_ODICT, K_REBUILD_V2, K_REBUILD_PARAM, K_FROM_TYPE_V2, K_SIZE } known;

typedef struct {
    uint8_t kind, known;
    uint32_t n, cap; /* kids: tuple/list items; dict/object (key, value) pairs */
    int32_t *kids;   /* a key of -1 in an object marks an APPENDed item */
    union {
        int64_t i;
        double f;
        struct {
            const char *p;
            size_t len;
        } s;
        struct {
            const char *mod, *name;
            uint32_t mod_len, name_len;
        } g;
        struct {
            int32_t cls, args, state;
        } obj;
        int32_t idx; /* tensor or storage table index */
    } u;
} pval;

typedef struct {
    int dtype;    /* ppd_tf_dtype, or -1 for a storage type that is not read */
    int32_t type; /* the GLOBAL naming its type */
    int64_t numel;
    const unsigned char *bytes;
} pstorage;

typedef struct {
    ppd_tensor_file *f;
    zip *z;
    const char *prefix; /* archive folder, e.g. "model_best" */
    size_t prefix_len;
    const unsigned char *pk;
    size_t len, pos, op_pos;
    unsigned char op;

    pval *v;
    size_t nv, capv;
    int32_t *stack;
    size_t sp, capst;
    size_t *marks;
    size_t nmarks, capmarks;
    int32_t *memo;
    size_t capmemo, memo_count;
    ppd_tensor *tensors;
    size_t nt, capt;
    pstorage *storages;
    size_t ns, caps;
    size_t visits, visit_budget;
} upk;

static const char *op_name(unsigned char op) {
    static const struct {
        unsigned char op;
        const char *name;
    } names[] = {
        {'(', "MARK"},
        {'.', "STOP"},
        {'0', "POP"},
        {'1', "POP_MARK"},
        {'2', "DUP"},
        {'F', "FLOAT"},
        {'I', "INT"},
        {'J', "BININT"},
        {'K', "BININT1"},
        {'L', "LONG"},
        {'M', "BININT2"},
        {'N', "NONE"},
        {'P', "PERSID"},
        {'Q', "BINPERSID"},
        {'R', "REDUCE"},
        {'S', "STRING"},
        {'T', "BINSTRING"},
        {'U', "SHORT_BINSTRING"},
        {'V', "UNICODE"},
        {'X', "BINUNICODE"},
        {'a', "APPEND"},
        {'b', "BUILD"},
        {'c', "GLOBAL"},
        {'d', "DICT"},
        {'}', "EMPTY_DICT"},
        {'e', "APPENDS"},
        {'g', "GET"},
        {'h', "BINGET"},
        {'i', "INST"},
        {'j', "LONG_BINGET"},
        {'l', "LIST"},
        {']', "EMPTY_LIST"},
        {'o', "OBJ"},
        {'p', "PUT"},
        {'q', "BINPUT"},
        {'r', "LONG_BINPUT"},
        {'s', "SETITEM"},
        {'t', "TUPLE"},
        {')', "EMPTY_TUPLE"},
        {'u', "SETITEMS"},
        {'G', "BINFLOAT"},
        {'B', "BINBYTES"},
        {'C', "SHORT_BINBYTES"},
        {0x80, "PROTO"},
        {0x81, "NEWOBJ"},
        {0x82, "EXT1"},
        {0x83, "EXT2"},
        {0x84, "EXT4"},
        {0x85, "TUPLE1"},
        {0x86, "TUPLE2"},
        {0x87, "TUPLE3"},
        {0x88, "NEWTRUE"},
        {0x89, "NEWFALSE"},
        {0x8a, "LONG1"},
        {0x8b, "LONG4"},
        {0x8c, "SHORT_BINUNICODE"},
        {0x8d, "BINUNICODE8"},
        {0x8e, "BINBYTES8"},
        {0x8f, "EMPTY_SET"},
        {0x90, "ADDITEMS"},
        {0x91, "FROZENSET"},
        {0x92, "NEWOBJ_EX"},
        {0x93, "STACK_GLOBAL"},
        {0x94, "MEMOIZE"},
        {0x95, "FRAME"},
        {0x96, "BYTEARRAY8"},
        {0x97, "NEXT_BUFFER"},
        {0x98, "READONLY_BUFFER"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].op == op) return names[i].name;
    return NULL;
}

static ppd_status pfail(const upk *u, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static ppd_status pfail(const upk *u, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *on = u->op_pos < u->len ? op_name(u->op) : NULL;
    return ppd_fail(PPD_ERR_FORMAT, "%s: %.*s/data.pkl, byte %zu%s%s%s: %s", u->f->name,
                    (int)u->prefix_len, u->prefix, u->op_pos, on ? " (" : "", on ? on : "",
                    on ? ")" : "", msg);
}

static ppd_status grow_array(const upk *u, void **arr, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return PPD_OK;
    size_t nc = *cap ? *cap * 2 : 256;
    while (nc < need) nc *= 2;
    void *p = realloc(*arr, nc * elem);
    if (!p) return ppd_fail(PPD_ERR_NOMEM, "%s: out of memory unpickling", u->f->name);
    *arr = p;
    *cap = nc;
    return PPD_OK;
}

/* ---- values and the stack ---------------------------------------------------------------- */

static ppd_status new_value(upk *u, vkind kind, int32_t *out) {
    if (u->nv >= VALUES_MAX) return pfail(u, "more than %d objects in the pickle", VALUES_MAX);
    PPD_TRY(grow_array(u, (void **)&u->v, &u->capv, u->nv + 1, sizeof *u->v));
    pval *v = &u->v[u->nv];
    memset(v, 0, sizeof *v);
    v->kind = (uint8_t)kind;
    *out = (int32_t)u->nv++;
    return PPD_OK;
}

static ppd_status add_kid(upk *u, int32_t container, int32_t kid) {
    pval *c = &u->v[container];
    if (c->n == c->cap) {
        if (c->cap >= UINT32_MAX / 2) return pfail(u, "container too large");
        uint32_t nc = c->cap ? c->cap * 2 : 4;
        int32_t *k = realloc(c->kids, nc * sizeof *k);
        if (!k) return ppd_fail(PPD_ERR_NOMEM, "%s: out of memory unpickling", u->f->name);
        c->kids = k;
        c->cap = nc;
    }
    c->kids[c->n++] = kid;
    return PPD_OK;
}

static ppd_status push(upk *u, int32_t v) {
    PPD_TRY(grow_array(u, (void **)&u->stack, &u->capst, u->sp + 1, sizeof *u->stack));
    u->stack[u->sp++] = v;
    return PPD_OK;
}

/* The stack above the innermost MARK is all an opcode may touch. */
static size_t fence(const upk *u) {
    return u->nmarks ? u->marks[u->nmarks - 1] : 0;
}

static ppd_status pop(upk *u, int32_t *v) {
    if (u->sp <= fence(u)) return pfail(u, "stack underflow");
    *v = u->stack[--u->sp];
    return PPD_OK;
}

static ppd_status top(upk *u, int32_t *v) {
    if (u->sp <= fence(u)) return pfail(u, "stack underflow");
    *v = u->stack[u->sp - 1];
    return PPD_OK;
}

/* Items pushed since the innermost MARK: stack[*start .. u->sp); the mark is removed, the items
 * stay until the caller drops them (u->sp = *start). */
static ppd_status pop_mark(upk *u, size_t *start) {
    if (!u->nmarks) return pfail(u, "no MARK on the stack");
    *start = u->marks[--u->nmarks];
    return PPD_OK;
}

static ppd_status new_seq(upk *u, vkind kind, size_t from, int32_t *out) {
    PPD_TRY(new_value(u, kind, out));
    for (size_t i = from; i < u->sp; i++) PPD_TRY(add_kid(u, *out, u->stack[i]));
    u->sp = from;
    return PPD_OK;
}

/* ---- reading operands -------------------------------------------------------------------- */

static ppd_status take(upk *u, size_t n, const unsigned char **p) {
    if (n > u->len - u->pos) return pfail(u, "truncated pickle: needs %zu more bytes", n);
    *p = u->pk + u->pos;
    u->pos += n;
    return PPD_OK;
}

static ppd_status arg_uint(upk *u, size_t width, uint64_t *out) {
    const unsigned char *p = NULL;
    PPD_TRY(take(u, width, &p));
    uint64_t v = 0;
    for (size_t i = width; i-- > 0;) v = v << 8 | p[i];
    *out = v;
    return PPD_OK;
}

/* ---- opcodes: scalars -------------------------------------------------------------------- */

static ppd_status push_int(upk *u, int64_t i) {
    int32_t v = -1;
    PPD_TRY(new_value(u, V_INT, &v));
    u->v[v].u.i = i;
    return push(u, v);
}

/* LONG1/LONG4: little-endian two's complement of n bytes. */
static ppd_status op_long(upk *u, size_t width) {
    uint64_t n = 0;
    const unsigned char *p = NULL;
    PPD_TRY(arg_uint(u, width, &n));
    if (width == 4 && n > 0x7fffffffu) return pfail(u, "negative LONG4 length");
    PPD_TRY(take(u, (size_t)n, &p));
    if (n == 0) return push_int(u, 0);
    int neg = (p[n - 1] & 0x80) != 0;
    /* It fits int64 when every byte above the 8th is sign extension and the 8th's top bit
     * agrees with the sign. */
    int fits = 1;
    for (uint64_t i = 8; i < n; i++) fits &= p[i] == (neg ? 0xff : 0x00);
    if (n > 8) fits &= ((p[7] & 0x80) != 0) == neg;
    if (!fits) {
        int32_t v = -1;
        PPD_TRY(new_value(u, V_BIGINT, &v));
        return push(u, v);
    }
    uint64_t x = neg ? ~(uint64_t)0 : 0;
    for (uint64_t i = 0; i < n && i < 8; i++) {
        x &= ~((uint64_t)0xff << (8 * i));
        x |= (uint64_t)p[i] << (8 * i);
    }
    int64_t s;
    memcpy(&s, &x, sizeof s);
    return push_int(u, s);
}

static ppd_status op_binfloat(upk *u) {
    const unsigned char *p = NULL;
    PPD_TRY(take(u, 8, &p));
    uint64_t bits = 0;
    for (int i = 0; i < 8; i++) bits = bits << 8 | p[i]; /* big-endian */
    int32_t v = -1;
    PPD_TRY(new_value(u, V_FLOAT, &v));
    memcpy(&u->v[v].u.f, &bits, sizeof bits);
    return push(u, v);
}

static ppd_status op_text(upk *u, vkind kind, size_t width) {
    uint64_t n = 0;
    const unsigned char *p = NULL;
    PPD_TRY(arg_uint(u, width, &n));
    if (n > u->len) return pfail(u, "string length %llu past the end", (unsigned long long)n);
    PPD_TRY(take(u, (size_t)n, &p));
    int32_t v = -1;
    PPD_TRY(new_value(u, kind, &v));
    u->v[v].u.s.p = (const char *)p;
    u->v[v].u.s.len = (size_t)n;
    return push(u, v);
}

static ppd_status push_kind(upk *u, vkind kind, int64_t i) {
    int32_t v = -1;
    PPD_TRY(new_value(u, kind, &v));
    u->v[v].u.i = i;
    return push(u, v);
}

/* ---- opcodes: memo ----------------------------------------------------------------------- */

static ppd_status memo_put(upk *u, uint64_t idx) {
    int32_t v = -1;
    PPD_TRY(top(u, &v));
    /* The pickler numbers memo entries 0, 1, 2, ...: an index beyond the pickle's length
     * cannot come from it. */
    if (idx >= u->len) return pfail(u, "memo index %llu out of range", (unsigned long long)idx);
    if (idx >= u->capmemo) {
        size_t old = u->capmemo;
        PPD_TRY(grow_array(u, (void **)&u->memo, &u->capmemo, (size_t)idx + 1, sizeof *u->memo));
        for (size_t i = old; i < u->capmemo; i++) u->memo[i] = -1;
    }
    if (u->memo[idx] < 0) u->memo_count++;
    u->memo[idx] = v;
    return PPD_OK;
}

static ppd_status memo_get(upk *u, uint64_t idx) {
    if (idx >= u->capmemo || u->memo[idx] < 0)
        return pfail(u, "memo entry %llu was never stored", (unsigned long long)idx);
    return push(u, u->memo[idx]);
}

/* ---- opcodes: containers ----------------------------------------------------------------- */

static int is_seq(const pval *v) {
    return v->kind == V_TUPLE || v->kind == V_LIST;
}

static ppd_status append_items(upk *u, int32_t target, size_t from) {
    pval *t = &u->v[target];
    if (t->kind != V_LIST && t->kind != V_OBJECT)
        return pfail(u, "APPEND to something that is not a list");
    for (size_t i = from; i < u->sp; i++) {
        if (u->v[target].kind == V_OBJECT) PPD_TRY(add_kid(u, target, -1));
        PPD_TRY(add_kid(u, target, u->stack[i]));
    }
    u->sp = from;
    return PPD_OK;
}

static ppd_status set_items(upk *u, int32_t target, size_t from) {
    pval *t = &u->v[target];
    if (t->kind != V_DICT && t->kind != V_OBJECT)
        return pfail(u, "SETITEM on something that is not a dict");
    if ((u->sp - from) % 2) return pfail(u, "odd number of items for SETITEMS");
    for (size_t i = from; i < u->sp; i++) PPD_TRY(add_kid(u, target, u->stack[i]));
    u->sp = from;
    return PPD_OK;
}

/* APPEND, SETITEM: the last one or two stack items go into the container below them. */
static ppd_status op_add(upk *u, int dict) {
    size_t n = dict ? 2 : 1;
    if (u->sp - fence(u) < n + 1) return pfail(u, "stack underflow");
    int32_t target = u->stack[u->sp - n - 1];
    return dict ? set_items(u, target, u->sp - n) : append_items(u, target, u->sp - n);
}

/* APPENDS, SETITEMS: the items since MARK go into the container below the MARK. */
static ppd_status op_add_mark(upk *u, int dict) {
    size_t from = 0;
    int32_t target = -1;
    PPD_TRY(pop_mark(u, &from));
    if (from <= fence(u)) return pfail(u, "stack underflow");
    target = u->stack[from - 1];
    return dict ? set_items(u, target, from) : append_items(u, target, from);
}

static ppd_status op_dict(upk *u) {
    size_t from = 0;
    int32_t d;
    PPD_TRY(pop_mark(u, &from));
    if ((u->sp - from) % 2) return pfail(u, "odd number of items for DICT");
    PPD_TRY(new_seq(u, V_DICT, from, &d));
    return push(u, d);
}

/* ---- opcodes: globals -------------------------------------------------------------------- */

static int str_is(const char *p, size_t n, const char *lit) {
    return strlen(lit) == n && memcmp(p, lit, n) == 0;
}

static known classify(const char *mod, size_t ml, const char *name, size_t nl) {
    if (str_is(mod, ml, "collections") && str_is(name, nl, "OrderedDict")) return K_ODICT;
    if (str_is(mod, ml, "torch._utils")) {
        if (str_is(name, nl, "_rebuild_tensor_v2")) return K_REBUILD_V2;
        if (str_is(name, nl, "_rebuild_parameter") ||
            str_is(name, nl, "_rebuild_parameter_with_state"))
            return K_REBUILD_PARAM;
    }
    if (str_is(mod, ml, "torch._tensor") && str_is(name, nl, "_rebuild_from_type_v2"))
        return K_FROM_TYPE_V2;
    if (str_is(mod, ml, "torch") && str_is(name, nl, "Size")) return K_SIZE;
    return K_OTHER;
}

static ppd_status push_global(upk *u, const char *mod, size_t ml, const char *name, size_t nl) {
    if (ml > GLOBAL_NAME_MAX || nl > GLOBAL_NAME_MAX) return pfail(u, "global name too long");
    int32_t v = -1;
    PPD_TRY(new_value(u, V_GLOBAL, &v));
    pval *g = &u->v[v];
    g->known = (uint8_t)classify(mod, ml, name, nl);
    g->u.g.mod = mod;
    g->u.g.mod_len = (uint32_t)ml;
    g->u.g.name = name;
    g->u.g.name_len = (uint32_t)nl;
    return push(u, v);
}

/* GLOBAL "module\nname\n" (text operands). */
static ppd_status op_global(upk *u) {
    const char *start[2];
    size_t n[2];
    for (int k = 0; k < 2; k++) {
        const unsigned char *p = u->pk + u->pos;
        const unsigned char *nl = memchr(p, '\n', u->len - u->pos);
        if (!nl) return pfail(u, "truncated pickle: unterminated GLOBAL name");
        start[k] = (const char *)p;
        n[k] = (size_t)(nl - p);
        u->pos += n[k] + 1;
    }
    return push_global(u, start[0], n[0], start[1], n[1]);
}

static ppd_status op_stack_global(upk *u) {
    int32_t name = -1, mod = -1;
    PPD_TRY(pop(u, &name));
    PPD_TRY(pop(u, &mod));
    if (u->v[name].kind != V_STR || u->v[mod].kind != V_STR)
        return pfail(u, "STACK_GLOBAL operands are not strings");
    return push_global(u, u->v[mod].u.s.p, u->v[mod].u.s.len, u->v[name].u.s.p, u->v[name].u.s.len);
}

/* ---- tensors ----------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    ppd_tf_dtype dtype;
} storage_def;

static const storage_def STORAGES[] = {
    {"FloatStorage", PPD_TF_F32},  {"HalfStorage", PPD_TF_F16}, {"BFloat16Storage", PPD_TF_BF16},
    {"DoubleStorage", PPD_TF_F64}, {"LongStorage", PPD_TF_I64}, {"IntStorage", PPD_TF_I32},
    {"ShortStorage", PPD_TF_I16},  {"CharStorage", PPD_TF_I8},  {"ByteStorage", PPD_TF_U8},
    {"BoolStorage", PPD_TF_BOOL},
};

static int storage_dtype(const pval *g) {
    if (g->kind != V_GLOBAL || !str_is(g->u.g.mod, g->u.g.mod_len, "torch")) return -1;
    for (size_t i = 0; i < sizeof STORAGES / sizeof STORAGES[0]; i++)
        if (str_is(g->u.g.name, g->u.g.name_len, STORAGES[i].name)) return (int)STORAGES[i].dtype;
    return -1;
}

/* BINPERSID: ('storage', type, key, location, numel) -> the storage data/<key>. */
static ppd_status persistent_load(upk *u, int32_t pid) {
    const pval *t = &u->v[pid];
    if (t->kind != V_TUPLE || t->n != 5 || u->v[t->kids[0]].kind != V_STR ||
        !str_is(u->v[t->kids[0]].u.s.p, u->v[t->kids[0]].u.s.len, "storage") ||
        u->v[t->kids[1]].kind != V_GLOBAL || u->v[t->kids[2]].kind != V_STR ||
        u->v[t->kids[4]].kind != V_INT || u->v[t->kids[4]].u.i < 0)
        return pfail(u, "persistent id is not ('storage', type, key, location, numel)");
    pstorage s = {.type = t->kids[1], .numel = u->v[t->kids[4]].u.i};
    s.dtype = storage_dtype(&u->v[s.type]);
    const pval *key = &u->v[t->kids[2]];
    if (s.dtype >= 0) {
        char path[1200];
        if (key->u.s.len > 1024) return pfail(u, "storage key too long");
        int n = snprintf(path, sizeof path, "%.*s/data/%.*s", (int)u->prefix_len, u->prefix,
                         (int)key->u.s.len, key->u.s.p);
        zentry *e = zip_find(u->z, path, (size_t)n);
        if (!e) return pfail(u, "storage %s is not in the archive", path);
        int64_t need;
        if (!ppd_tf_mul_ok(s.numel, (int64_t)ppd_tf_dtype_size((ppd_tf_dtype)s.dtype), &need) ||
            (uint64_t)need != e->usize)
            return pfail(u, "storage %s holds %llu bytes, not %lld elements of %s", path,
                         (unsigned long long)e->usize, (long long)s.numel,
                         ppd_tf_dtype_name((ppd_tf_dtype)s.dtype));
        PPD_TRY(zip_data(u->z, e, &s.bytes));
    }
    PPD_TRY(grow_array(u, (void **)&u->storages, &u->caps, u->ns + 1, sizeof *u->storages));
    u->storages[u->ns] = s;
    int32_t v = -1;
    PPD_TRY(new_value(u, V_STORAGE, &v));
    u->v[v].u.idx = (int32_t)u->ns++;
    return push(u, v);
}

/* A size or stride tuple: at most 8 non-negative ints. */
static ppd_status int_tuple(upk *u, int32_t vi, int64_t *out, int *n, const char *what) {
    const pval *t = &u->v[vi];
    if (!is_seq(t)) return pfail(u, "tensor %s is not a tuple", what);
    if (t->n > PPD_TF_MAX_DIMS) return pfail(u, "tensor has more than 8 dimensions");
    for (uint32_t i = 0; i < t->n; i++) {
        const pval *x = &u->v[t->kids[i]];
        if (x->kind != V_INT || x->u.i < 0) return pfail(u, "bad tensor %s", what);
        out[i] = x->u.i;
    }
    *n = (int)t->n;
    return PPD_OK;
}

/* The view must stay inside its storage: offset + sum (size-1)*stride < storage numel. */
static ppd_status check_view(upk *u, const ppd_tensor *t, int64_t offset, int64_t storage_numel) {
    int64_t last = offset;
    if (t->numel > 0) {
        for (int d = 0; d < t->ndim; d++) {
            int64_t step;
            if (!ppd_tf_mul_ok(t->shape[d] - 1, t->strides[d], &step) ||
                !ppd_tf_add_ok(last, step, &last))
                return pfail(u, "tensor view overflows");
        }
        if (last >= storage_numel)
            return pfail(u,
                         "tensor view (offset %lld, last element %lld) lies outside its "
                         "storage of %lld elements",
                         (long long)offset, (long long)last, (long long)storage_numel);
    } else if (offset > storage_numel) {
        return pfail(u, "tensor offset %lld outside its storage of %lld elements",
                     (long long)offset, (long long)storage_numel);
    }
    return PPD_OK;
}

static ppd_status make_opaque(upk *u, int32_t cls, int32_t args, int32_t *out) {
    PPD_TRY(new_value(u, V_OBJECT, out));
    u->v[*out].u.obj.cls = cls;
    u->v[*out].u.obj.args = args;
    u->v[*out].u.obj.state = -1;
    return PPD_OK;
}

/* _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks
 * [, metadata]) */
static ppd_status rebuild_tensor(upk *u, int32_t args, int32_t *out) {
    const pval *a = &u->v[args];
    if (a->kind != V_TUPLE || a->n < 4 || a->n > 7)
        return pfail(u, "_rebuild_tensor_v2 needs (storage, offset, size, stride, ...)");
    const pval *sv = &u->v[a->kids[0]], *off = &u->v[a->kids[1]];
    if (sv->kind != V_STORAGE) return pfail(u, "_rebuild_tensor_v2 without a storage");
    if (off->kind != V_INT || off->u.i < 0) return pfail(u, "bad tensor storage offset");
    const pstorage *s = &u->storages[sv->u.idx];
    if (s->dtype < 0) return make_opaque(u, s->type, args, out); /* complex, quantized, ... */
    ppd_tensor t = {.dtype = (ppd_tf_dtype)s->dtype, .numel = 1};
    int nstride;
    PPD_TRY(int_tuple(u, a->kids[2], t.shape, &t.ndim, "size"));
    PPD_TRY(int_tuple(u, a->kids[3], t.strides, &nstride, "stride"));
    if (nstride != t.ndim) return pfail(u, "tensor size and stride differ in length");
    for (int d = 0; d < t.ndim; d++)
        if (!ppd_tf_mul_ok(t.numel, t.shape[d], &t.numel)) return pfail(u, "tensor too large");
    PPD_TRY(check_view(u, &t, off->u.i, s->numel));
    t.data = s->bytes + (size_t)off->u.i * ppd_tf_dtype_size(t.dtype);
    t.contiguous = ppd_tf_is_contiguous(t.ndim, t.shape, t.strides);
    PPD_TRY(grow_array(u, (void **)&u->tensors, &u->capt, u->nt + 1, sizeof *u->tensors));
    u->tensors[u->nt] = t;
    PPD_TRY(new_value(u, V_TENSOR, out));
    u->v[*out].u.idx = (int32_t)u->nt++;
    return PPD_OK;
}

static ppd_status call(upk *u, int32_t fn, int32_t args, int depth, int32_t *out);

/* The whitelisted callables; anything else becomes an opaque object. */
static ppd_status call_known(upk *u, int32_t fn, int32_t args, int depth, int32_t *out) {
    const pval *a = &u->v[args];
    switch (u->v[fn].known) {
    case K_ODICT: /* OrderedDict() or OrderedDict([(k, v), ...]) */
        if (a->kind == V_TUPLE && a->n == 0) return new_value(u, V_DICT, out);
        if (a->kind == V_TUPLE && a->n == 1 && is_seq(&u->v[a->kids[0]])) {
            int32_t items = a->kids[0];
            PPD_TRY(new_value(u, V_DICT, out));
            for (uint32_t i = 0; i < u->v[items].n; i++) {
                const pval *kv = &u->v[u->v[items].kids[i]];
                if (!is_seq(kv) || kv->n != 2) return pfail(u, "OrderedDict item is not a pair");
                int32_t k = kv->kids[0], v = kv->kids[1];
                PPD_TRY(add_kid(u, *out, k));
                PPD_TRY(add_kid(u, *out, v));
            }
            return PPD_OK;
        }
        break;
    case K_REBUILD_V2:
        return rebuild_tensor(u, args, out);
    case K_REBUILD_PARAM: /* (data, requires_grad, hooks[, state]): the tensor itself */
        if (a->kind == V_TUPLE && a->n >= 1 &&
            (u->v[a->kids[0]].kind == V_TENSOR || u->v[a->kids[0]].kind == V_OBJECT)) {
            *out = a->kids[0];
            return PPD_OK;
        }
        break;
    case K_FROM_TYPE_V2: /* (func, type, args, state): apply func if it is whitelisted */
        if (a->kind == V_TUPLE && a->n == 4 && u->v[a->kids[0]].kind == V_GLOBAL &&
            u->v[a->kids[0]].known != K_OTHER && depth == 0)
            return call(u, a->kids[0], a->kids[2], depth + 1, out);
        break;
    case K_SIZE: /* torch.Size((d0, d1, ...)) is its tuple */
        if (a->kind == V_TUPLE && a->n == 1 && is_seq(&u->v[a->kids[0]])) {
            *out = a->kids[0];
            return PPD_OK;
        }
        break;
    }
    return make_opaque(u, fn, args, out);
}

static ppd_status call(upk *u, int32_t fn, int32_t args, int depth, int32_t *out) {
    if (u->v[fn].kind == V_GLOBAL && u->v[fn].known != K_OTHER)
        return call_known(u, fn, args, depth, out);
    return make_opaque(u, fn, args, out);
}

static ppd_status op_reduce(upk *u) {
    int32_t args = -1, fn = -1, out = -1;
    PPD_TRY(pop(u, &args));
    PPD_TRY(pop(u, &fn));
    PPD_TRY(call(u, fn, args, 0, &out));
    return push(u, out);
}

/* NEWOBJ / NEWOBJ_EX: cls.__new__(cls, *args): an OrderedDict or an opaque object. */
static ppd_status op_newobj(upk *u, int ex) {
    int32_t kwargs = -1, args = -1, cls = -1, out = -1;
    if (ex) PPD_TRY(pop(u, &kwargs));
    PPD_TRY(pop(u, &args));
    PPD_TRY(pop(u, &cls));
    if (u->v[cls].kind == V_GLOBAL && u->v[cls].known == K_ODICT)
        PPD_TRY(new_value(u, V_DICT, &out));
    else
        PPD_TRY(make_opaque(u, cls, args, &out));
    return push(u, out);
}

/* BUILD: an opaque object keeps its state (its attributes); on anything else (a dict's
 * _metadata, a tensor's Python attributes) the state is dropped. */
static ppd_status op_build(upk *u) {
    int32_t state = -1, target = -1;
    PPD_TRY(pop(u, &state));
    PPD_TRY(top(u, &target));
    if (u->v[target].kind == V_OBJECT) u->v[target].u.obj.state = state;
    return PPD_OK;
}

static ppd_status op_persid(upk *u) {
    int32_t pid = -1;
    PPD_TRY(pop(u, &pid));
    return persistent_load(u, pid);
}

/* ---- the machine ------------------------------------------------------------------------- */

static ppd_status op_refused(upk *u) {
    const char *n = op_name(u->op);
    if (n) return pfail(u, "pickle opcode %s (0x%02x) is not allowed in a checkpoint", n, u->op);
    return pfail(u, "unknown pickle opcode 0x%02x", u->op);
}

static ppd_status step(upk *u, int *stop, int32_t *root) {
    uint64_t x = 0;
    int32_t v = -1;
    size_t from = 0;
    switch (u->op) {
    case 0x80: /* PROTO */
        PPD_TRY(arg_uint(u, 1, &x));
        if (x > 5) return pfail(u, "pickle protocol %llu is newer than 5", (unsigned long long)x);
        return PPD_OK;
    case 0x95: /* FRAME: only a length hint */
        return arg_uint(u, 8, &x);
    case '.': /* STOP */
        PPD_TRY(pop(u, root));
        *stop = 1;
        return PPD_OK;
    case '(': /* MARK */
        PPD_TRY(grow_array(u, (void **)&u->marks, &u->capmarks, u->nmarks + 1, sizeof *u->marks));
        u->marks[u->nmarks++] = u->sp;
        return PPD_OK;
    case '0': /* POP: an item, or the MARK when none is above it */
        if (u->sp > fence(u)) return pop(u, &v);
        return pop_mark(u, &from);
    case '1': /* POP_MARK */
        PPD_TRY(pop_mark(u, &from));
        u->sp = from;
        return PPD_OK;
    case '2': /* DUP */
        PPD_TRY(top(u, &v));
        return push(u, v);
    case '}':
        return push_kind(u, V_DICT, 0);
    case ']':
        return push_kind(u, V_LIST, 0);
    case ')':
        return push_kind(u, V_TUPLE, 0);
    case 'd':
        return op_dict(u);
    case 'l':
    case 't':
        PPD_TRY(pop_mark(u, &from));
        PPD_TRY(new_seq(u, u->op == 'l' ? V_LIST : V_TUPLE, from, &v));
        return push(u, v);
    case 0x85:
    case 0x86:
    case 0x87: /* TUPLE1..3 */
        if (u->sp - fence(u) < (size_t)(u->op - 0x84)) return pfail(u, "stack underflow");
        PPD_TRY(new_seq(u, V_TUPLE, u->sp - (size_t)(u->op - 0x84), &v));
        return push(u, v);
    case 'a':
        return op_add(u, 0);
    case 'e':
        return op_add_mark(u, 0);
    case 's':
        return op_add(u, 1);
    case 'u':
        return op_add_mark(u, 1);
    case 'J': /* BININT: signed 32-bit */
        PPD_TRY(arg_uint(u, 4, &x));
        return push_int(u, (int32_t)(uint32_t)x);
    case 'K':
        PPD_TRY(arg_uint(u, 1, &x));
        return push_int(u, (int64_t)x);
    case 'M':
        PPD_TRY(arg_uint(u, 2, &x));
        return push_int(u, (int64_t)x);
    case 0x8a:
        return op_long(u, 1);
    case 0x8b:
        return op_long(u, 4);
    case 'G':
        return op_binfloat(u);
    case 0x88:
    case 0x89:
        return push_kind(u, V_BOOL, u->op == 0x88);
    case 'N':
        return push_kind(u, V_NONE, 0);
    case 'X':
        return op_text(u, V_STR, 4);
    case 0x8c:
        return op_text(u, V_STR, 1);
    case 0x8d:
        return op_text(u, V_STR, 8);
    case 'B':
        return op_text(u, V_BYTES, 4);
    case 'C':
        return op_text(u, V_BYTES, 1);
    case 0x8e:
        return op_text(u, V_BYTES, 8);
    case 'q':
        PPD_TRY(arg_uint(u, 1, &x));
        return memo_put(u, x);
    case 'r':
        PPD_TRY(arg_uint(u, 4, &x));
        return memo_put(u, x);
    case 0x94: /* MEMOIZE: the next free index, as Python numbers them */
        return memo_put(u, u->memo_count);
    case 'h':
        PPD_TRY(arg_uint(u, 1, &x));
        return memo_get(u, x);
    case 'j':
        PPD_TRY(arg_uint(u, 4, &x));
        return memo_get(u, x);
    case 'c':
        return op_global(u);
    case 0x93:
        return op_stack_global(u);
    case 'R':
        return op_reduce(u);
    case 0x81:
        return op_newobj(u, 0);
    case 0x92:
        return op_newobj(u, 1);
    case 'b':
        return op_build(u);
    case 'Q':
        return op_persid(u);
    default:
        return op_refused(u);
    }
}

static ppd_status run(upk *u, int32_t *root) {
    int stop = 0;
    while (!stop) {
        if (u->pos >= u->len) {
            u->op_pos = u->pos;
            u->op = 0;
            return pfail(u, "truncated pickle: no STOP opcode");
        }
        u->op_pos = u->pos;
        u->op = u->pk[u->pos++];
        PPD_TRY(step(u, &stop, root));
    }
    return PPD_OK;
}

/* ---- flattening the object tree into names ----------------------------------------------- */

static ppd_status flatten(upk *u, int32_t vi, ppd_buf *name, int depth);

/* Append ".component" (no dot at the root) to name. */
static ppd_status name_push(upk *u, ppd_buf *name, const char *s, size_t n) {
    if (name->len + 1 + n > NAME_MAX_LEN)
        return pfail(u, "a flattened name is longer than %d bytes", NAME_MAX_LEN);
    if (name->len) PPD_TRY(ppd_buf_append(name, ".", 1));
    return ppd_buf_append(name, s, n);
}

/* A dict key as a name component: str as is, int in decimal, True/False/None; 0 = skip. */
static int key_text(const pval *k, char *tmp, size_t cap, const char **s, size_t *n) {
    switch (k->kind) {
    case V_STR:
        if (memchr(k->u.s.p, 0, k->u.s.len)) return 0;
        *s = k->u.s.p;
        *n = k->u.s.len;
        return 1;
    case V_INT:
        *n = (size_t)snprintf(tmp, cap, "%lld", (long long)k->u.i);
        *s = tmp;
        return 1;
    case V_BOOL:
        *s = k->u.i ? "True" : "False";
        *n = strlen(*s);
        return 1;
    case V_NONE:
        *s = "None";
        *n = 4;
        return 1;
    default:
        return 0;
    }
}

static ppd_status flatten_child(upk *u, int32_t vi, ppd_buf *name, const char *s, size_t n,
                                int depth) {
    size_t keep = name->len;
    PPD_TRY(name_push(u, name, s, n));
    PPD_TRY(flatten(u, vi, name, depth + 1));
    name->len = keep;
    name->data[keep] = 0;
    return PPD_OK;
}

/* (key, value) pairs of a dict or object; a key of -1 is the next positional item. */
static ppd_status flatten_pairs(upk *u, int32_t vi, ppd_buf *name, int depth) {
    int64_t pos = 0;
    for (uint32_t i = 0; i + 1 < u->v[vi].n; i += 2) {
        int32_t k = u->v[vi].kids[i], val = u->v[vi].kids[i + 1];
        char tmp[32];
        const char *s;
        size_t n;
        if (k < 0) {
            n = (size_t)snprintf(tmp, sizeof tmp, "%lld", (long long)pos++);
            s = tmp;
        } else if (!key_text(&u->v[k], tmp, sizeof tmp, &s, &n)) {
            continue;
        }
        PPD_TRY(flatten_child(u, val, name, s, n, depth));
    }
    return PPD_OK;
}

static ppd_status flatten_items(upk *u, int32_t vi, ppd_buf *name, int depth) {
    for (uint32_t i = 0; i < u->v[vi].n; i++) {
        char tmp[32];
        size_t n = (size_t)snprintf(tmp, sizeof tmp, "%u", i);
        PPD_TRY(flatten_child(u, u->v[vi].kids[i], name, tmp, n, depth));
    }
    return PPD_OK;
}

/* "module.name" of a global, or a placeholder. */
static void class_name(const upk *u, int32_t g, char *out, size_t cap) {
    if (g < 0 || u->v[g].kind != V_GLOBAL) {
        snprintf(out, cap, "object");
        return;
    }
    const pval *x = &u->v[g];
    snprintf(out, cap, "%.*s.%.*s", (int)x->u.g.mod_len, x->u.g.mod, (int)x->u.g.name_len,
             x->u.g.name);
}

static ppd_status add_leaf(upk *u, const ppd_buf *name, ppd_tf_value_kind kind, int64_t i, double f,
                           const char *s) {
    ppd_tf_value v = {.kind = kind, .i = i, .f = f, .s = s};
    return ppd_tf_add_value(u->f, (const char *)name->data, &v);
}

static ppd_status add_opaque(upk *u, const ppd_buf *name, int32_t cls_global) {
    char cls[2 * GLOBAL_NAME_MAX + 2];
    class_name(u, cls_global, cls, sizeof cls);
    return add_leaf(u, name, PPD_TF_VAL_OPAQUE, 0, 0, cls);
}

/* An opaque object: its class as a value, then its BUILD state (a dict, or a (dict, slots)
 * pair) and its own items under its name. */
static ppd_status flatten_object(upk *u, int32_t vi, ppd_buf *name, int depth) {
    PPD_TRY(add_opaque(u, name, u->v[vi].u.obj.cls));
    int32_t st = u->v[vi].u.obj.state;
    if (st >= 0 && u->v[st].kind == V_DICT) PPD_TRY(flatten_pairs(u, st, name, depth));
    if (st >= 0 && u->v[st].kind == V_TUPLE && u->v[st].n == 2) {
        for (int k = 0; k < 2; k++) {
            int32_t part = u->v[st].kids[k];
            if (u->v[part].kind == V_DICT) PPD_TRY(flatten_pairs(u, part, name, depth));
        }
    }
    return flatten_pairs(u, vi, name, depth);
}

static ppd_status flatten(upk *u, int32_t vi, ppd_buf *name, int depth) {
    if (depth > DEPTH_MAX)
        return pfail(u, "the object tree nests deeper than %d levels (a cycle?)", DEPTH_MAX);
    if (++u->visits > u->visit_budget)
        return pfail(u, "shared references expand the object tree beyond %zu entries",
                     u->visit_budget);
    const pval *v = &u->v[vi];
    switch (v->kind) {
    case V_TENSOR:
        return ppd_tf_add_tensor(u->f, (const char *)name->data, &u->tensors[v->u.idx]);
    case V_DICT:
        return flatten_pairs(u, vi, name, depth);
    case V_LIST:
    case V_TUPLE:
        return flatten_items(u, vi, name, depth);
    case V_OBJECT:
        return flatten_object(u, vi, name, depth);
    case V_NONE:
        return add_leaf(u, name, PPD_TF_VAL_NONE, 0, 0, NULL);
    case V_BOOL:
        return add_leaf(u, name, PPD_TF_VAL_BOOL, v->u.i, (double)v->u.i, NULL);
    case V_INT:
        return add_leaf(u, name, PPD_TF_VAL_INT, v->u.i, (double)v->u.i, NULL);
    case V_FLOAT:
        return add_leaf(u, name, PPD_TF_VAL_FLOAT, 0, v->u.f, NULL);
    case V_STR: {
        char *s = malloc(v->u.s.len + 1);
        if (!s) return ppd_fail(PPD_ERR_NOMEM, "%s: out of memory", u->f->name);
        memcpy(s, v->u.s.p, v->u.s.len);
        s[v->u.s.len] = 0;
        ppd_status st = add_leaf(u, name, PPD_TF_VAL_STR, 0, 0, s);
        free(s);
        return st;
    }
    case V_BIGINT:
        return add_leaf(u, name, PPD_TF_VAL_OPAQUE, 0, 0, "int");
    case V_BYTES:
        return add_leaf(u, name, PPD_TF_VAL_OPAQUE, 0, 0, "bytes");
    case V_GLOBAL:
        return add_opaque(u, name, vi);
    case V_STORAGE:
        return add_opaque(u, name, u->storages[v->u.idx].type);
    default:
        return pfail(u, "internal: unknown value kind %d", v->kind);
    }
}

static void upk_free(upk *u) {
    for (size_t i = 0; i < u->nv; i++) free(u->v[i].kids);
    free(u->v);
    free(u->stack);
    free(u->marks);
    free(u->memo);
    free(u->tensors);
    free(u->storages);
}

static ppd_status unpickle(upk *u) {
    int32_t root = -1;
    PPD_TRY(run(u, &root));
    /* Each pickle object may be named a few times over (shared references); beyond that the
     * tree is a construction meant to explode. */
    u->visit_budget = 8 * u->nv + 1024;
    ppd_buf name = {0};
    ppd_status st = ppd_buf_reserve(&name, 256);
    if (!st) {
        name.data[0] = 0;
        st = flatten(u, root, &name, 0);
    }
    ppd_buf_free(&name);
    return st;
}

/* ==================================== the archive ========================================== */

static zentry *find_member(const zip *z, const char *prefix, size_t pl, const char *rest) {
    char path[1200];
    int n = snprintf(path, sizeof path, "%.*s/%s", (int)pl, prefix, rest);
    if (n < 0 || (size_t)n >= sizeof path) return NULL;
    return zip_find(z, path, (size_t)n);
}

/* The archive folder: torch names every entry "<prefix>/...", prefix from the first entry. */
static ppd_status archive_prefix(const zip *z, const char **prefix, size_t *pl) {
    const zentry *first = &z->e[0];
    const unsigned char *slash = memchr(first->name, '/', first->name_len);
    if (!slash || slash == first->name || slash - first->name > 1000)
        return zfail(z, "a ZIP archive whose entries are not in one folder: not a torch.save "
                        "checkpoint");
    *prefix = (const char *)first->name;
    *pl = (size_t)(slash - first->name);
    if (!find_member(z, *prefix, *pl, "data.pkl")) {
        if (find_member(z, *prefix, *pl, "constants.pkl"))
            return zfail(z, "a TorchScript archive (torch.jit.save), not a torch.save "
                            "checkpoint: save the state_dict() with torch.save instead");
        return zfail(z, "no %.*s/data.pkl: a ZIP archive, but not a torch.save checkpoint",
                     (int)*pl, *prefix);
    }
    if (find_member(z, *prefix, *pl, "constants.pkl"))
        return zfail(z, "a TorchScript archive (torch.jit.save), not a torch.save checkpoint: "
                        "save the state_dict() with torch.save instead");
    return PPD_OK;
}

/* version (a decimal number) and byteorder ("little"; absent before torch 2.1). */
static ppd_status archive_records(zip *z, const char *prefix, size_t pl) {
    zentry *ver = find_member(z, prefix, pl, "version");
    if (!ver) ver = find_member(z, prefix, pl, ".data/version");
    if (!ver)
        return zfail(z, "no %.*s/version record: not a torch.save checkpoint", (int)pl, prefix);
    const unsigned char *d;
    PPD_TRY(zip_data(z, ver, &d));
    uint64_t n = 0, i = 0;
    while (i < ver->usize && i < 8 && d[i] >= '0' && d[i] <= '9') n = n * 10 + (d[i++] - '0');
    while (i < ver->usize && (d[i] == '\n' || d[i] == '\r' || d[i] == ' ')) i++;
    if (i == 0 || i != ver->usize || n == 0)
        return zfail(z, "%.*s/version is not a format version number", (int)pl, prefix);
    zentry *bo = find_member(z, prefix, pl, "byteorder");
    if (bo) {
        PPD_TRY(zip_data(z, bo, &d));
        if (!(bo->usize == 6 && memcmp(d, "little", 6) == 0))
            return zfail(z,
                         "written on a big-endian machine (byteorder \"%.*s\"), which is not "
                         "read",
                         (int)(bo->usize < 16 ? bo->usize : 16), (const char *)d);
    }
    return PPD_OK;
}

ppd_status ppd_tf_load_pytorch(ppd_tensor_file *f) {
    zip z = {.f = f};
    upk u = {.f = f, .z = &z};
    ppd_status st = zip_open(&z);
    if (!st) st = archive_prefix(&z, &u.prefix, &u.prefix_len);
    if (!st) st = archive_records(&z, u.prefix, u.prefix_len);
    zentry *pkl = st ? NULL : find_member(&z, u.prefix, u.prefix_len, "data.pkl");
    if (pkl && pkl->usize > PICKLE_MAX)
        st = zfail(&z,
                   "data.pkl of %llu bytes is over the %d MiB limit for a checkpoint's "
                   "object tree",
                   (unsigned long long)pkl->usize, PICKLE_MAX >> 20);
    if (!st && pkl) st = zip_data(&z, pkl, &u.pk);
    if (!st && pkl) {
        u.len = (size_t)pkl->usize;
        st = unpickle(&u);
    }
    upk_free(&u);
    zip_close(&z);
    return st;
}
