/* The record format (see ppdock/record.h and docs/cache-format.md). */
#include "ppdock/record.h"
#include "ppdock/hash.h"

#include <string.h>

enum { HDR = sizeof(ppd_rec_header), DESC = sizeof(ppd_rec_array), ALIGN = 16 };

static uint64_t round16(uint64_t x) {
    return (x + (ALIGN - 1)) & ~(uint64_t)(ALIGN - 1);
}

size_t ppd_dtype_size(int dtype) {
    switch (dtype) {
    case PPD_DT_U8:
        return 1;
    case PPD_DT_I32:
        return 4;
    case PPD_DT_F32:
        return 4;
    case PPD_DT_F16:
        return 2;
    case PPD_DT_U64:
        return 8;
    case PPD_DT_F64:
        return 8;
    default:
        return 0;
    }
}

const char *ppd_dtype_name(int dtype) {
    switch (dtype) {
    case PPD_DT_U8:
        return "u8";
    case PPD_DT_I32:
        return "i32";
    case PPD_DT_F32:
        return "f32";
    case PPD_DT_F16:
        return "f16";
    case PPD_DT_U64:
        return "u64";
    case PPD_DT_F64:
        return "f64";
    default:
        return "?";
    }
}

void ppd_rec_layout_init(ppd_rec_layout *l, ppd_rec_type type) {
    memset(l, 0, sizeof *l);
    l->type = type;
}

int ppd_rec_layout_add(ppd_rec_layout *l, const char *name, ppd_dtype dtype, int ndim,
                       const uint32_t shape[]) {
    size_t nl = strlen(name);
    if (l->n >= PPD_REC_MAX_ARRAYS || nl == 0 || nl > PPD_REC_NAME_LEN || ndim < 1 || ndim > 3 ||
        !ppd_dtype_size(dtype))
        return -1;
    ppd_rec_array *a = &l->arrays[l->n];
    memset(a, 0, sizeof *a);
    memcpy(a->name, name, nl);
    a->dtype = (uint8_t)dtype;
    a->ndim = (uint8_t)ndim;
    uint64_t count = 1;
    for (int d = 0; d < ndim; d++) {
        a->shape[d] = shape[d];
        count *= shape[d];
    }
    a->nbytes = count * ppd_dtype_size(dtype);
    uint64_t off = 0;
    if (l->n) {
        const ppd_rec_array *p = &l->arrays[l->n - 1];
        off = round16(p->offset + p->nbytes);
    }
    a->offset = off;
    return (int)l->n++;
}

static uint32_t header_len_for(uint32_t n) {
    return (uint32_t)round16(HDR + (uint64_t)DESC * n);
}

ppd_status ppd_rec_layout_build(const ppd_rec_layout *l, ppd_buf *out) {
    uint64_t payload = 0;
    if (l->n) payload = round16(l->arrays[l->n - 1].offset + l->arrays[l->n - 1].nbytes);
    uint32_t hl = header_len_for(l->n);
    size_t total = (size_t)hl + (size_t)payload;
    PPD_TRY(ppd_buf_reserve(out, total + 1));
    memset(out->data, 0, total);
    out->len = total;
    ppd_rec_header h = {.magic = PPD_REC_MAGIC,
                        .version = PPD_REC_VERSION,
                        .type = (uint16_t)l->type,
                        .header_len = hl,
                        .n_arrays = l->n,
                        .payload_len = payload,
                        .checksum = 0};
    memcpy(out->data, &h, HDR);
    memcpy(out->data + HDR, l->arrays, (size_t)DESC * l->n);
    return PPD_OK;
}

void *ppd_rec_array_ptr(ppd_buf *value, int idx) {
    ppd_rec_header h;
    memcpy(&h, value->data, HDR);
    ppd_rec_array a;
    memcpy(&a, value->data + HDR + (size_t)DESC * (size_t)idx, DESC);
    return value->data + h.header_len + a.offset;
}

uint64_t ppd_rec_compute_checksum(const void *value, size_t len, const void *key, size_t keylen) {
    const unsigned char *v = value;
    ppd_rec_header h;
    if (len < HDR) return 0;
    memcpy(&h, v, HDR);
    size_t hl = h.header_len <= len ? h.header_len : len;
    ppd_hasher *s = ppd_hasher_new();
    if (!s) return 0;
    static const unsigned char zero8[8];
    size_t ck = offsetof(ppd_rec_header, checksum);
    ppd_hasher_update(s, key, keylen);
    ppd_hasher_update(s, v, ck);
    ppd_hasher_update(s, zero8, 8);
    if (hl > ck + 8) ppd_hasher_update(s, v + ck + 8, hl - ck - 8);
    ppd_hasher_update(s, v + hl, len - hl);
    uint64_t d = ppd_hasher_digest(s);
    ppd_hasher_free(s);
    return d;
}

void ppd_rec_seal(ppd_buf *value, const void *key, size_t keylen) {
    uint64_t c = ppd_rec_compute_checksum(value->data, value->len, key, keylen);
    memcpy(value->data + offsetof(ppd_rec_header, checksum), &c, 8);
}

void ppd_rec_array_at(const ppd_rec_view *v, uint32_t i, ppd_rec_array *desc) {
    memcpy(desc, v->value + HDR + (size_t)DESC * i, DESC);
}

static int name_eq(const ppd_rec_array *a, const char *name) {
    size_t n = strlen(name);
    if (n > PPD_REC_NAME_LEN) return 0;
    return memcmp(a->name, name, n) == 0 && (n == PPD_REC_NAME_LEN || a->name[n] == 0);
}

static void name_str(const ppd_rec_array *a, char out[PPD_REC_NAME_LEN + 1]) {
    memcpy(out, a->name, PPD_REC_NAME_LEN);
    out[PPD_REC_NAME_LEN] = 0;
    for (int i = 0; out[i]; i++)
        if (out[i] < 32 || out[i] > 126) out[i] = '?';
}

static ppd_status check_descriptors(const ppd_rec_view *v) {
    const ppd_rec_header *h = &v->header;
    for (uint32_t i = 0; i < h->n_arrays; i++) {
        ppd_rec_array a;
        ppd_rec_array_at(v, i, &a);
        char nm[PPD_REC_NAME_LEN + 1];
        name_str(&a, nm);
        size_t es = ppd_dtype_size(a.dtype);
        if (!es)
            return ppd_fail(PPD_ERR_CORRUPT, "array %u ('%s'): unknown dtype %u", i, nm, a.dtype);
        if (a.ndim < 1 || a.ndim > 3)
            return ppd_fail(PPD_ERR_CORRUPT, "array %u ('%s'): ndim %u not in 1..3", i, nm, a.ndim);
        if (!a.name[0]) return ppd_fail(PPD_ERR_CORRUPT, "array %u: empty name", i);
        uint64_t count = 1;
        for (int d = 0; d < a.ndim; d++) {
            if (a.shape[d] && count > UINT64_MAX / a.shape[d])
                return ppd_fail(PPD_ERR_CORRUPT, "array '%s': shape overflows", nm);
            count *= a.shape[d];
        }
        for (int d = a.ndim; d < 3; d++)
            if (a.shape[d])
                return ppd_fail(PPD_ERR_CORRUPT, "array '%s': shape[%d] set beyond ndim", nm, d);
        if (count > UINT64_MAX / es || count * es != a.nbytes)
            return ppd_fail(PPD_ERR_CORRUPT,
                            "array '%s': %llu bytes do not match shape and dtype %s", nm,
                            (unsigned long long)a.nbytes, ppd_dtype_name(a.dtype));
        if (a.offset % ALIGN)
            return ppd_fail(PPD_ERR_CORRUPT, "array '%s': offset %llu not 16-byte aligned", nm,
                            (unsigned long long)a.offset);
        if (a.offset > h->payload_len || a.nbytes > h->payload_len - a.offset)
            return ppd_fail(PPD_ERR_CORRUPT,
                            "array '%s': extends past the payload (%llu+%llu > %llu)", nm,
                            (unsigned long long)a.offset, (unsigned long long)a.nbytes,
                            (unsigned long long)h->payload_len);
        /* Arrays are laid out in table order; requiring that makes overlap a one-line check. */
        if (i > 0) {
            ppd_rec_array p;
            ppd_rec_array_at(v, i - 1, &p);
            if (a.offset < p.offset + p.nbytes)
                return ppd_fail(PPD_ERR_CORRUPT, "array '%s' overlaps the array before it", nm);
            for (uint32_t j = 0; j < i; j++) {
                ppd_rec_array q;
                ppd_rec_array_at(v, j, &q);
                if (!memcmp(q.name, a.name, PPD_REC_NAME_LEN))
                    return ppd_fail(PPD_ERR_CORRUPT, "array name '%s' appears twice", nm);
            }
        }
    }
    return PPD_OK;
}

ppd_status ppd_rec_parse(const void *value, size_t len, const void *key, size_t keylen, int verify,
                         ppd_rec_view *out) {
    memset(out, 0, sizeof *out);
    if (len < HDR)
        return ppd_fail(PPD_ERR_CORRUPT, "value is %zu bytes, shorter than a record header", len);
    ppd_rec_header *h = &out->header;
    memcpy(h, value, HDR);
    out->value = value;
    out->len = len;
    if (h->magic != PPD_REC_MAGIC)
        return ppd_fail(PPD_ERR_CORRUPT, "bad magic 0x%08x (expected 0x%08x \"PPDR\")", h->magic,
                        PPD_REC_MAGIC);
    if (h->version != PPD_REC_VERSION)
        return ppd_fail(PPD_ERR_VERSION, "record format version %u; this build reads version %u",
                        h->version, PPD_REC_VERSION);
    if (h->n_arrays > PPD_REC_MAX_ARRAYS)
        return ppd_fail(PPD_ERR_CORRUPT, "%u arrays (at most %d)", h->n_arrays, PPD_REC_MAX_ARRAYS);
    if (h->header_len != header_len_for(h->n_arrays))
        return ppd_fail(PPD_ERR_CORRUPT, "header length %u does not match %u arrays", h->header_len,
                        h->n_arrays);
    if (h->header_len > len || h->payload_len != len - h->header_len)
        return ppd_fail(PPD_ERR_CORRUPT, "value is %zu bytes but header says %u + %llu", len,
                        h->header_len, (unsigned long long)h->payload_len);
    PPD_TRY(check_descriptors(out));
    if (verify) {
        uint64_t c = ppd_rec_compute_checksum(value, len, key, keylen);
        if (c != h->checksum)
            return ppd_fail(PPD_ERR_CORRUPT,
                            "checksum mismatch: stored 0x%016llx, computed 0x%016llx",
                            (unsigned long long)h->checksum, (unsigned long long)c);
    }
    return PPD_OK;
}

ppd_status ppd_rec_find(const ppd_rec_view *v, const char *name, int want_dtype, int want_ndim,
                        ppd_rec_array *desc, const void **data) {
    for (uint32_t i = 0; i < v->header.n_arrays; i++) {
        ppd_rec_array a;
        ppd_rec_array_at(v, i, &a);
        if (!name_eq(&a, name)) continue;
        if (want_dtype && a.dtype != want_dtype)
            return ppd_fail(PPD_ERR_CORRUPT, "array '%s' is %s, expected %s", name,
                            ppd_dtype_name(a.dtype), ppd_dtype_name(want_dtype));
        if (want_ndim && a.ndim != want_ndim)
            return ppd_fail(PPD_ERR_CORRUPT, "array '%s' has %u dimensions, expected %d", name,
                            a.ndim, want_ndim);
        if (desc) *desc = a;
        if (data) *data = v->value + v->header.header_len + a.offset;
        return PPD_OK;
    }
    return ppd_fail(PPD_ERR_NOTFOUND, "array '%s' missing", name);
}

int ppd_rec_array_aligned(const void *data, int dtype) {
    size_t s = ppd_dtype_size(dtype);
    return s && ((uintptr_t)data % s) == 0;
}
