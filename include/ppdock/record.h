/* ppdock/record.h — the checksummed record format of every cache value.
 *
 * A value is one record: a fixed header, a table of named arrays, then the arrays themselves.
 * All integers little-endian (ppdock builds only on little-endian hosts; a static assert says
 * so). Full description for independent readers: docs/cache-format.md.
 *
 *   offset 0   ppd_rec_header (32 bytes)
 *   offset 32  ppd_rec_array[n_arrays] (48 bytes each)
 *              zero padding up to header_len (a multiple of 16)
 *   header_len payload (payload_len bytes): each array at header_len + offset, offset a
 *              multiple of 16, zero padding between arrays
 *
 * checksum = XXH3-64 (seed 0) over: the key bytes, then the header_len bytes of header and
 * table with the checksum field set to zero, then the payload_len bytes of payload. Covering the
 * key catches a value stored under the wrong key (LMDB itself checks nothing).
 *
 * Alignment: arrays start 16-byte aligned relative to the value. LMDB places values larger than
 * about 2 KB on their own pages, 16 bytes after a page boundary, so such arrays can be used in
 * place; ppd_rec_array_aligned() tells, and ppd_rec_copy_array() copies otherwise.
 */
#ifndef PPDOCK_RECORD_H
#define PPDOCK_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "ppdock/fsutil.h"
#include "ppdock/status.h"

#define PPD_REC_MAGIC      0x52445050u /* the bytes "PPDR" */
#define PPD_REC_VERSION    1
#define PPD_REC_MAX_ARRAYS 64
#define PPD_REC_NAME_LEN   16

typedef enum { PPD_REC_GRAPH = 1, PPD_REC_ESM = 2 } ppd_rec_type;

typedef enum {
    PPD_DT_U8 = 1, /* bytes, characters */
    PPD_DT_I32 = 2,
    PPD_DT_F32 = 3,
    PPD_DT_F16 = 4, /* IEEE binary16 */
    PPD_DT_U64 = 5,
    PPD_DT_F64 = 6,
} ppd_dtype;

typedef struct {
    uint32_t magic;       /* PPD_REC_MAGIC */
    uint16_t version;     /* PPD_REC_VERSION */
    uint16_t type;        /* ppd_rec_type */
    uint32_t header_len;  /* 32 + 48 * n_arrays, rounded up to 16 */
    uint32_t n_arrays;    /* <= PPD_REC_MAX_ARRAYS */
    uint64_t payload_len; /* bytes after the header; value length = header_len + payload_len */
    uint64_t checksum;    /* XXH3-64, see above */
} ppd_rec_header;

typedef struct {
    char name[PPD_REC_NAME_LEN]; /* NUL-padded ASCII; need not be NUL-terminated if 16 long */
    uint8_t dtype;               /* ppd_dtype */
    uint8_t ndim;                /* 1..3 */
    uint16_t reserved;           /* 0 */
    uint32_t shape[3];           /* dims beyond ndim are 0 */
    uint64_t offset;             /* from the start of the payload; multiple of 16 */
    uint64_t nbytes;             /* product(shape) * dtype size */
} ppd_rec_array;

_Static_assert(sizeof(ppd_rec_header) == 32, "record header is 32 bytes on disk");
_Static_assert(sizeof(ppd_rec_array) == 48, "array descriptor is 48 bytes on disk");
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "ppdock's cache format is little-endian; big-endian hosts are not supported"
#endif

size_t ppd_dtype_size(int dtype); /* 0 for an unknown dtype */
const char *ppd_dtype_name(int dtype);

/* ---- writing: declare every array, then lay out, fill, and seal ----------------------------- */

typedef struct {
    ppd_rec_type type;
    uint32_t n;
    ppd_rec_array arrays[PPD_REC_MAX_ARRAYS];
} ppd_rec_layout;

void ppd_rec_layout_init(ppd_rec_layout *l, ppd_rec_type type);
/* Declare an array; returns its index (for ppd_rec_array_ptr) or -1 when the table is full or
 * the name/shape is invalid (a programmer error: the caller's shapes come from its own data). */
int ppd_rec_layout_add(ppd_rec_layout *l, const char *name, ppd_dtype dtype, int ndim,
                       const uint32_t shape[]);
/* Size the value, write header and table into out (replacing its contents), zero the padding. */
ppd_status ppd_rec_layout_build(const ppd_rec_layout *l, ppd_buf *out);
/* Where array `idx` goes in a value built by ppd_rec_layout_build (valid until out changes). */
void *ppd_rec_array_ptr(ppd_buf *value, int idx);
/* Compute and store the checksum; call after filling every array. */
void ppd_rec_seal(ppd_buf *value, const void *key, size_t keylen);

/* ---- reading ----------------------------------------------------------------------------------
 */

typedef struct {
    ppd_rec_header header; /* copied out: the value need not be aligned */
    const unsigned char *value;
    size_t len;
} ppd_rec_view;

/* Validate a value's structure and (if verify) its checksum. Structural checks: length >= 32,
 * magic, version, header_len and n_arrays in bounds, header_len + payload_len == len, every
 * descriptor well-formed (known dtype, ndim 1..3, nbytes == product(shape) * size without
 * overflow, offset aligned and offset + nbytes <= payload_len, no two arrays overlapping, name
 * unique). Errors: PPD_ERR_CORRUPT with the failed check in the message ("bad magic 0x...",
 * "checksum mismatch: stored 0x..., computed 0x..."), PPD_ERR_VERSION for another version. */
ppd_status ppd_rec_parse(const void *value, size_t len, const void *key, size_t keylen, int verify,
                         ppd_rec_view *out);
/* The checksum a value should carry (for checkers that report both). */
uint64_t ppd_rec_compute_checksum(const void *value, size_t len, const void *key, size_t keylen);

/* Find an array by name. Fills *desc (copied) and *data (pointer into the value). Errors:
 * PPD_ERR_NOTFOUND "array 'x' missing", PPD_ERR_CORRUPT when dtype/ndim differ from want_dtype /
 * want_ndim (pass 0 to accept any). */
ppd_status ppd_rec_find(const ppd_rec_view *v, const char *name, int want_dtype, int want_ndim,
                        ppd_rec_array *desc, const void **data);
/* Descriptor i (0 <= i < n_arrays), copied out. */
void ppd_rec_array_at(const ppd_rec_view *v, uint32_t i, ppd_rec_array *desc);
/* Whether `data` is aligned for its dtype (so it can be used in place). */
int ppd_rec_array_aligned(const void *data, int dtype);

#endif
