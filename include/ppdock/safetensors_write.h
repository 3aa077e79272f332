/* ppdock/safetensors_write.h — write a safetensors file, atomically.
 *
 * The writing half of ppdock/tensorfile.h (which reads these files back): training checkpoints
 * (ppdock/checkpoint.h) and any other tensors ppdock hands to Python tools. What it writes is
 * what the reference writer (the `safetensors` package) writes:
 *
 *   bytes 0..7      N, the header length, u64 little-endian; N is a multiple of 8
 *   bytes 8..8+N    the header: compact JSON (no spaces), then ' ' padding up to N, so that the
 *                   data section starts 8-byte aligned (the reference pads the same way)
 *   bytes 8+N..     the data section: each tensor's bytes, row-major, little-endian, one after
 *                   the other, no gaps
 *
 *   {"__metadata__":{"format":"x"},"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},...}
 *
 * "__metadata__" (only when metadata is given) comes first, its keys in the given order. The
 * tensors follow in data order, which is the given order stably sorted by element size, largest
 * first: every tensor then starts at a multiple of its element size in the file (as the
 * reference writer, which sorts by dtype, also guarantees), so readers may map the file and use
 * the tensors in place. A caller that gives all tensors of one element size keeps its order.
 * A 0-d tensor has shape [] and one element; a tensor with a 0 dimension has data_offsets
 * [x, x]. Strings are written as UTF-8 with JSON escapes for '"', '\\' and the control
 * characters below 0x20 (\b \f \n \r \t, others \u00XX); nothing else is escaped.
 *
 * Atomic replacement: the file is written as "<path>.tmp.<pid>" in the same directory, flushed
 * and fsync'ed, renamed over <path>, and then the directory is fsync'ed, so that after a crash
 * <path> is either the old file or the complete new one. Two threads of one process must not
 * write the same path at the same time (they would share the temporary name).
 *
 * Errors:
 *   PPD_ERR_USAGE  NULL path, or entries NULL with n > 0; an entry with a NULL or non-UTF-8
 *                  name, the name "__metadata__", a dtype outside ppd_tf_dtype, ndim outside
 *                  0..PPD_TF_MAX_DIMS, a negative dimension, a byte size over INT64_MAX, or NULL
 *                  data with a non-zero byte size; a tensor name given twice (named); a NULL or
 *                  non-UTF-8 metadata key or value, or a metadata key given twice. Nothing is
 *                  written then.
 *   PPD_ERR_IO     creating, writing, flushing, syncing or renaming the temporary file, or
 *                  syncing the directory: the message names the file and gives the errno text.
 *                  The temporary file is removed and an existing <path> is left untouched —
 *                  except when only the final directory fsync fails: the new file is then in
 *                  place but possibly not yet durable.
 *   PPD_ERR_NOMEM  building the header.
 */
#ifndef PPDOCK_SAFETENSORS_WRITE_H
#define PPDOCK_SAFETENSORS_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "ppdock/status.h"
#include "ppdock/tensorfile.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const char *name;
    ppd_tf_dtype dtype;
    int ndim;                       /* 0 for a scalar (one element) */
    int64_t shape[PPD_TF_MAX_DIMS]; /* shape[0..ndim) */
    const void *data;               /* numel * element-size bytes, row-major, little-endian */
} ppd_st_entry;

typedef struct {
    const char *key, *value;
} ppd_st_meta;

/* Write n tensors and nmeta metadata strings (nmeta may be 0, meta then NULL) to `path`. */
ppd_status ppd_safetensors_write(const char *path, const ppd_st_entry *entries, size_t n,
                                 const ppd_st_meta *meta, size_t nmeta);

#ifdef __cplusplus
}
#endif

#endif
