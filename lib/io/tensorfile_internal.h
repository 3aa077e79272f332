/* What the tensor-file readers share (lib/io/tensorfile.c, safetensors.c, torch_pickle.c).
 * Not installed: the public interface is ppdock/tensorfile.h. */
#ifndef PPDOCK_TENSORFILE_INTERNAL_H
#define PPDOCK_TENSORFILE_INTERNAL_H

#include "ppdock/tensorfile.h"

#include <stddef.h>
#include <stdint.h>

/* The formats assume little-endian storage and reinterpret bytes in place. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "ppdock's tensor-file readers assume a little-endian host"
#endif

struct ppd_tensor_file {
    char *name;               /* for messages: the path or the caller's name */
    const char *format;       /* "safetensors" | "pytorch" */
    const unsigned char *mem; /* the file's bytes */
    size_t len;
    int mapped; /* mem is our mmap (munmap on close) */

    ppd_tensor *tensors;
    size_t n_tensors, cap_tensors;
    ppd_tf_value *values;
    size_t n_values, cap_values;
    const ppd_tensor **tensor_sorted; /* by (name, position), for find */
    const ppd_tf_value **value_sorted;

    void **owned; /* inflated ZIP entries and other blocks freed on close */
    size_t n_owned, cap_owned;
};

/* Add a tensor (its name is copied; t->name is ignored) / a value (name and v->s copied).
 * PPD_ERR_NOMEM only. */
ppd_status ppd_tf_add_tensor(ppd_tensor_file *f, const char *name, const ppd_tensor *t);
ppd_status ppd_tf_add_value(ppd_tensor_file *f, const char *name, const ppd_tf_value *v);
/* Keep `p` (malloc'ed) until close. On failure p is freed and PPD_ERR_NOMEM returned. */
ppd_status ppd_tf_own(ppd_tensor_file *f, void *p);

/* Row-major strides for shape and whether `strides` are contiguous for it. */
void ppd_tf_rowmajor_strides(int ndim, const int64_t *shape, int64_t *strides);
int ppd_tf_is_contiguous(int ndim, const int64_t *shape, const int64_t *strides);

/* a * b and a + b on non-negative int64 values; 0 on overflow (result untouched). */
int ppd_tf_mul_ok(int64_t a, int64_t b, int64_t *out);
int ppd_tf_add_ok(int64_t a, int64_t b, int64_t *out);

/* The format loaders: fill f->tensors and f->values from f->mem / f->len. */
ppd_status ppd_tf_load_safetensors(ppd_tensor_file *f);
ppd_status ppd_tf_load_pytorch(ppd_tensor_file *f);

#endif
