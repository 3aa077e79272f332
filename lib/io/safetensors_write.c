/* The safetensors writer (ppdock/safetensors_write.h). Everything is checked before the first
 * byte is written, so a usage error never leaves a temporary file behind; the header is built in
 * memory (it is small: ~100 bytes per tensor) and the tensor bytes go straight from the caller's
 * memory to the file. */
#include "ppdock/safetensors_write.h"
#include "ppdock/fsutil.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The format's dtype strings, by ppd_tf_dtype. */
static const char *const DTYPE_NAMES[PPD_TF_DTYPE_COUNT] = {
    [PPD_TF_F32] = "F32", [PPD_TF_F16] = "F16",   [PPD_TF_BF16] = "BF16", [PPD_TF_F64] = "F64",
    [PPD_TF_I64] = "I64", [PPD_TF_I32] = "I32",   [PPD_TF_I16] = "I16",   [PPD_TF_I8] = "I8",
    [PPD_TF_U8] = "U8",   [PPD_TF_BOOL] = "BOOL",
};

/* 1 if s is well-formed UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF): the
 * header must be, or our reader and the reference reader refuse the whole file. */
static int utf8_ok(const char *str) {
    const unsigned char *s = (const unsigned char *)str;
    while (*s) {
        unsigned c = *s, cp;
        int k;
        if (c < 0x80) {
            s++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            k = 1, cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            k = 2, cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 3, cp = c & 0x07;
        } else {
            return 0;
        }
        for (int m = 1; m <= k; m++) {
            if ((s[m] & 0xc0) != 0x80) return 0; /* also stops at the NUL */
            cp = cp << 6 | (s[m] & 0x3f);
        }
        if ((k == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (k == 3 && (cp < 0x10000 || cp > 0x10ffff)))
            return 0;
        s += k + 1;
    }
    return 1;
}

/* A JSON string literal: only '"', '\\' and control characters need escaping. */
static ppd_status json_string(ppd_buf *b, const char *s) {
    PPD_TRY(ppd_buf_append(b, "\"", 1));
    for (const char *run = s;; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        PPD_TRY(ppd_buf_append(b, run, (size_t)(s - run)));
        if (!c) break;
        run = s + 1;
        /* the two-character escapes JSON has, else \u00XX */
        static const char SET[] = "\"\\\b\f\n\r\t", LETTER[] = "\"\\bfnrt";
        const char *hit = strchr(SET, c);
        if (hit) {
            char esc[2] = {'\\', LETTER[hit - SET]};
            PPD_TRY(ppd_buf_append(b, esc, 2));
        } else {
            PPD_TRY(ppd_buf_printf(b, "\\u%04x", c));
        }
    }
    return ppd_buf_append(b, "\"", 1);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The first string given twice, or NULL. `tmp` holds n pointers (sorted here). */
static const char *find_duplicate(const char **tmp, size_t n) {
    if (n < 2) return NULL;
    qsort(tmp, n, sizeof *tmp, cmp_str);
    for (size_t i = 1; i < n; i++)
        if (strcmp(tmp[i - 1], tmp[i]) == 0) return tmp[i];
    return NULL;
}

typedef struct {
    size_t index;  /* position in the caller's array */
    size_t esize;  /* bytes per element */
    int64_t bytes; /* numel * esize */
} slot;

/* Largest element first, then the caller's order: stable, so equal sizes keep their order. */
static int cmp_slot(const void *a, const void *b) {
    const slot *x = a, *y = b;
    if (x->esize != y->esize) return x->esize > y->esize ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

static ppd_status check_entry(const char *path, const ppd_st_entry *e, size_t i, slot *s) {
    if (!e->name) return ppd_fail(PPD_ERR_USAGE, "%s: tensor %zu has no name", path, i);
    if (!utf8_ok(e->name))
        return ppd_fail(PPD_ERR_USAGE, "%s: tensor %zu: name is not UTF-8", path, i);
    if (strcmp(e->name, "__metadata__") == 0)
        return ppd_fail(PPD_ERR_USAGE,
                        "%s: a tensor cannot be named __metadata__ (the format reserves it)", path);
    if ((int)e->dtype < 0 || e->dtype >= PPD_TF_DTYPE_COUNT)
        return ppd_fail(PPD_ERR_USAGE, "%s: tensor %s: invalid dtype %d", path, e->name,
                        (int)e->dtype);
    if (e->ndim < 0 || e->ndim > PPD_TF_MAX_DIMS)
        return ppd_fail(PPD_ERR_USAGE, "%s: tensor %s: ndim %d is outside 0..%d", path, e->name,
                        e->ndim, PPD_TF_MAX_DIMS);
    int zero = 0;
    for (int d = 0; d < e->ndim; d++) {
        if (e->shape[d] < 0)
            return ppd_fail(PPD_ERR_USAGE, "%s: tensor %s: dimension %d is negative (%" PRId64 ")",
                            path, e->name, d, e->shape[d]);
        zero |= e->shape[d] == 0;
    }
    /* with a 0 dimension the tensor is empty whatever the others are */
    int64_t numel = zero ? 0 : 1;
    for (int d = 0; d < e->ndim && !zero; d++) {
        if (numel > INT64_MAX / e->shape[d])
            return ppd_fail(PPD_ERR_USAGE, "%s: tensor %s: shape too large", path, e->name);
        numel *= e->shape[d];
    }
    size_t esize = ppd_tf_dtype_size(e->dtype);
    if (numel > INT64_MAX / (int64_t)esize)
        return ppd_fail(PPD_ERR_USAGE, "%s: tensor %s: shape too large", path, e->name);
    *s = (slot){.index = i, .esize = esize, .bytes = numel * (int64_t)esize};
    if (s->bytes > 0 && !e->data)
        return ppd_fail(PPD_ERR_USAGE, "%s: tensor %s: data is NULL", path, e->name);
    return PPD_OK;
}

static ppd_status check_meta(const char *path, const ppd_st_meta *meta, size_t nmeta) {
    for (size_t i = 0; i < nmeta; i++) {
        if (!meta[i].key || !meta[i].value)
            return ppd_fail(PPD_ERR_USAGE, "%s: metadata entry %zu has a NULL key or value", path,
                            i);
        if (!utf8_ok(meta[i].key) || !utf8_ok(meta[i].value))
            return ppd_fail(PPD_ERR_USAGE, "%s: metadata %s: key or value is not UTF-8", path,
                            utf8_ok(meta[i].key) ? meta[i].key : "(not UTF-8)");
    }
    return PPD_OK;
}

/* The 8-byte length and the padded header, into b. */
static ppd_status build_header(const ppd_st_entry *entries, const slot *order, size_t n,
                               const ppd_st_meta *meta, size_t nmeta, ppd_buf *b) {
    b->len = 0;
    PPD_TRY(ppd_buf_append(b, "\0\0\0\0\0\0\0\0{", 9));
    if (nmeta) {
        PPD_TRY(ppd_buf_append(b, "\"__metadata__\":{", 16));
        for (size_t i = 0; i < nmeta; i++) {
            if (i) PPD_TRY(ppd_buf_append(b, ",", 1));
            PPD_TRY(json_string(b, meta[i].key));
            PPD_TRY(ppd_buf_append(b, ":", 1));
            PPD_TRY(json_string(b, meta[i].value));
        }
        PPD_TRY(ppd_buf_append(b, "}", 1));
    }
    int64_t at = 0;
    for (size_t k = 0; k < n; k++) {
        const ppd_st_entry *e = &entries[order[k].index];
        if (k || nmeta) PPD_TRY(ppd_buf_append(b, ",", 1));
        PPD_TRY(json_string(b, e->name));
        PPD_TRY(ppd_buf_printf(b, ":{\"dtype\":\"%s\",\"shape\":[", DTYPE_NAMES[e->dtype]));
        for (int d = 0; d < e->ndim; d++)
            PPD_TRY(ppd_buf_printf(b, "%s%" PRId64, d ? "," : "", e->shape[d]));
        PPD_TRY(ppd_buf_printf(b, "],\"data_offsets\":[%" PRId64 ",%" PRId64 "]}", at,
                               at + order[k].bytes));
        at += order[k].bytes;
    }
    PPD_TRY(ppd_buf_append(b, "}", 1));
    while ((b->len - 8) % 8) PPD_TRY(ppd_buf_append(b, " ", 1));
    uint64_t hlen = (uint64_t)(b->len - 8);
    for (int i = 0; i < 8; i++) b->data[i] = (unsigned char)(hlen >> (8 * i));
    return PPD_OK;
}

static ppd_status io_fail(const char *path, const char *tmp, const char *what, int err) {
    return ppd_fail(PPD_ERR_IO, "%s: %s (temporary file %s): %s", path, what, tmp, strerror(err));
}

/* Header and data into `tmp`, flushed and fsync'ed. The caller removes tmp on failure. */
static ppd_status write_tmp(const char *path, const char *tmp, const ppd_buf *hdr,
                            const ppd_st_entry *entries, const slot *order, size_t n) {
    FILE *fp = fopen(tmp, "wb");
    if (!fp) return io_fail(path, tmp, "cannot create the file", errno);
    int err = 0;
    const char *what = "write failed";
    errno = 0;
    if (fwrite(hdr->data, 1, hdr->len, fp) != hdr->len) err = errno ? errno : EIO;
    for (size_t k = 0; k < n && !err; k++) {
        size_t nb = (size_t)order[k].bytes;
        errno = 0;
        if (nb && fwrite(entries[order[k].index].data, 1, nb, fp) != nb) err = errno ? errno : EIO;
    }
    if (!err && fflush(fp) != 0) err = errno;
    if (!err && fsync(fileno(fp)) != 0) err = errno, what = "fsync failed";
    if (fclose(fp) != 0 && !err) err = errno;
    return err ? io_fail(path, tmp, what, err) : PPD_OK;
}

ppd_status ppd_safetensors_write(const char *path, const ppd_st_entry *entries, size_t n,
                                 const ppd_st_meta *meta, size_t nmeta) {
    if (!path) return ppd_fail(PPD_ERR_USAGE, "safetensors write: path is NULL");
    if ((n && !entries) || (nmeta && !meta))
        return ppd_fail(PPD_ERR_USAGE, "%s: entries or metadata NULL with a non-zero count", path);
    PPD_TRY(check_meta(path, meta, nmeta));
    size_t nptr = n > nmeta ? n : nmeta;
    slot *order = malloc(sizeof *order * (n ? n : 1));
    const char **names = malloc(sizeof *names * (nptr ? nptr : 1));
    char *tmp = malloc(strlen(path) + 32);
    ppd_buf hdr = {0};
    ppd_status st = PPD_OK;
    if (!order || !names || !tmp) {
        st = ppd_fail(PPD_ERR_NOMEM, "%s: out of memory", path);
        goto out;
    }
    int64_t total = 0;
    for (size_t i = 0; i < n && !st; i++) {
        st = check_entry(path, &entries[i], i, &order[i]);
        if (!st && order[i].bytes > INT64_MAX - total)
            st = ppd_fail(PPD_ERR_USAGE, "%s: the tensors are too large for one file", path);
        if (!st) total += order[i].bytes;
        names[i] = entries[i].name;
    }
    const char *dup;
    if (!st && (dup = find_duplicate(names, n)))
        st = ppd_fail(PPD_ERR_USAGE, "%s: tensor name %s given twice", path, dup);
    for (size_t i = 0; i < nmeta; i++) names[i] = meta[i].key;
    if (!st && (dup = find_duplicate(names, nmeta)))
        st = ppd_fail(PPD_ERR_USAGE, "%s: metadata key %s given twice", path, dup);
    if (st) goto out;
    if (n) qsort(order, n, sizeof *order, cmp_slot);
    if (build_header(entries, order, n, meta, nmeta, &hdr)) {
        st = ppd_fail(PPD_ERR_NOMEM, "%s: out of memory building the header", path);
        goto out;
    }
    sprintf(tmp, "%s.tmp.%ld", path, (long)getpid());
    st = write_tmp(path, tmp, &hdr, entries, order, n);
    if (!st && rename(tmp, path) != 0) st = io_fail(path, tmp, "cannot rename into place", errno);
    if (st) {
        unlink(tmp); /* may not exist (fopen failed): harmless */
        goto out;
    }
    char dir[PATH_MAX];
    ppd_path_dirname(path, dir, sizeof dir);
    st = ppd_fsync_dir(dir);
    if (st) st = ppd_fail_ctx(st, "%s: written, but syncing its directory failed", path);
out:
    free(order);
    free(names);
    free(tmp);
    ppd_buf_free(&hdr);
    return st;
}
