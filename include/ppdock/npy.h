/* ppdock/npy.h — NumPy .npy files: a float32 writer and a small reader.
 *
 * Enough for golden files (tests/ref writes them with numpy.save) and for --export round
 * trips; not a general NumPy reader.
 *
 * Format (NumPy's format.py, "NPY format version 1.0/2.0/3.0"): the magic "\x93NUMPY", a major
 * and minor version byte, the header length (u16 little-endian in 1.0, u32 in 2.0 and 3.0), and
 * the header: a Python dict literal such as
 *     {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
 * padded with spaces and ended by '\n' so that the data starts at a multiple of 64 bytes. The
 * data follows: the elements in C (row-major) order, little-endian.
 *
 * Writer: version 1.0, '<f4', fortran_order False, any rank up to PPD_TF_MAX_DIMS (0-d too).
 * The bytes are identical to numpy.save's (NumPy >= 1.23, which also leaves 21 - len(str(
 * shape[0])) spare spaces so that the first axis can grow in place).
 *
 * Reader: versions 1.0-3.0, descr '<f4', '<f2' or '<i8', C order (fortran_order True is
 * accepted only for rank <= 1, where the orders coincide), exactly numel elements of data.
 * The header dict must hold exactly the keys descr, fortran_order and shape (as NumPy requires).
 *
 * Errors: PPD_ERR_FORMAT "<name>: ..." (not .npy, bad header, a dtype or order not read,
 * truncated data or trailing bytes), PPD_ERR_IO (open/read/write/rename; errno text),
 * PPD_ERR_USAGE (bad writer arguments: rank, negative dims), PPD_ERR_NOMEM.
 */
#ifndef PPDOCK_NPY_H
#define PPDOCK_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "ppdock/fsutil.h"
#include "ppdock/status.h"
#include "ppdock/tensorfile.h"

typedef struct {
    /* The array as a tensor view: dtype PPD_TF_F32, F16 or I64; contiguous, row-major; name
     * NULL; data 64-byte aligned (owned by this struct). ppd_tensor_to_f32 converts it. */
    ppd_tensor t;
    void *mem;
} ppd_npy;

/* The .npy bytes of a float32 C-order array (shape[0..ndim), ndim 0..8) into out. */
ppd_status ppd_npy_encode_f32(const float *data, int ndim, const int64_t *shape, ppd_buf *out);

/* Write them to path (through "<path>.tmp.<pid>" and a rename, so a reader never sees half a
 * file). */
ppd_status ppd_npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape);

/* Parse .npy bytes (copied; `name` prefixes messages) / read a file. Free with ppd_npy_free. */
ppd_status ppd_npy_parse(const void *bytes, size_t len, const char *name, ppd_npy *out);
ppd_status ppd_npy_read(const char *path, ppd_npy *out);
void ppd_npy_free(ppd_npy *a);

#endif
