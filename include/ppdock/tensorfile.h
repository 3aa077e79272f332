/* ppdock/tensorfile.h — safe readers for tensor files: safetensors and PyTorch checkpoints.
 *
 * Reads the weights of ESM-2 (fair-esm .pt, Hugging Face model.safetensors; docs/spec/esm2.md
 * §4) and DiffDock-PP checkpoints (.pth; docs/spec/diffdock-pp.md §9.2) without Python and
 * without ever running code from the file. The file is mapped read-only; tensors point into it.
 *
 *   ppd_tensor_file *f;
 *   PPD_TRY(ppd_tensor_file_open("model.safetensors", &f));
 *   const ppd_tensor *t = ppd_tensor_file_find(f, "esm.embeddings.word_embeddings.weight");
 *   if (t) ppd_tensor_to_f32(t, dst);  (dst holds t->numel floats)
 *   ppd_tensor_file_close(f);
 *
 * Formats (recognised by content, not by file name):
 *
 *  - safetensors: u64 little-endian header length N (at most 100,000,000, and 8+N within the
 *    file), a JSON object of N bytes, then the data section. Each entry maps a tensor name to
 *    {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the data section);
 *    "__metadata__" maps strings to strings. Checked as the reference reader checks them: the
 *    header is UTF-8 JSON (fields it does not know are skipped, whatever their JSON type);
 *    end - begin == numel * element size; the tensors, sorted by offset, cover the data
 *    section exactly (no gap, no overlap, nothing after the last one). Stricter than the
 *    reference: a tensor name given twice is an error. Sharded checkpoints
 *    (model.safetensors.index.json + shards) are not read: passing the index gives an error
 *    that says so; open each shard file instead.
 *
 *  - PyTorch (torch.save since 1.6, .pt/.pth/.bin): a ZIP archive (ZIP64 too) holding
 *    <prefix>/data.pkl (the object tree, a pickle), <prefix>/data/<key> (raw little-endian
 *    storages) and <prefix>/version. Entries may be STORED (what torch writes) or DEFLATE
 *    (an archive re-zipped by other tools; those entries are inflated into memory); CRC-32 is
 *    checked on every entry that is used (about 1 s per 2 GB). data.pkl is run by a restricted
 *    unpickler that builds plain values and never imports or calls anything:
 *      . opcodes implemented (protocols 2-5): PROTO FRAME STOP MARK POP POP_MARK DUP
 *        EMPTY_DICT EMPTY_LIST EMPTY_TUPLE DICT LIST TUPLE TUPLE1 TUPLE2 TUPLE3 APPEND APPENDS
 *        SETITEM SETITEMS BININT BININT1 BININT2 LONG1 LONG4 BINFLOAT NEWTRUE NEWFALSE NONE
 *        BINUNICODE SHORT_BINUNICODE BINUNICODE8 BINBYTES SHORT_BINBYTES BINPUT LONG_BINPUT
 *        BINGET LONG_BINGET MEMOIZE GLOBAL STACK_GLOBAL REDUCE NEWOBJ NEWOBJ_EX BUILD
 *        BINPERSID. Every other opcode (INST, OBJ, EXT*, PERSID, text-protocol ones, sets,
 *        out-of-band buffers) is refused with its name and byte offset.
 *      . globals are names, never code. These are interpreted: collections.OrderedDict (a
 *        dict), torch._utils._rebuild_tensor_v2 (a tensor), torch._utils._rebuild_parameter
 *        and _rebuild_parameter_with_state and torch._tensor._rebuild_from_type_v2 (the
 *        tensor inside), torch.Size (a tuple), and the storage types torch.FloatStorage,
 *        HalfStorage, BFloat16Storage, DoubleStorage, LongStorage, IntStorage, ShortStorage,
 *        CharStorage, ByteStorage, BoolStorage inside persistent ids ('storage', type, key,
 *        location, numel). Any other global called by REDUCE/NEWOBJ gives an opaque object
 *        that records the class name (argparse.Namespace, os.system: nothing is run); BUILD
 *        gives it its attributes, SETITEM(S)/APPEND(S) its items. A tensor whose storage type
 *        is not listed above (complex, quantized) is an opaque value named after the type.
 *      . tensors honour storage_offset and strides; tensors sharing a storage (tied weights)
 *        point into the same bytes. Every view must lie inside its storage, and each storage
 *        entry must hold exactly numel * element-size bytes.
 *      . limits: data.pkl at most 64 MiB and 2^24 objects (~48 bytes each), object nesting
 *        64 levels when naming, names 4096 bytes, at most 8 dimensions, memo indices below the
 *        pickle's length, and the named tree expands to at most 8 entries per pickle object
 *        (shared references cannot blow up); all other structures grow with the pickle.
 *    Refused with a clear message: the pre-1.6 format (a bare pickle; re-save with
 *    torch >= 1.6), TorchScript archives (torch.jit.save), big-endian archives, encrypted or
 *    multi-disk ZIPs, compression methods other than STORED and DEFLATE.
 *
 * Names. safetensors: the header's names. PyTorch: the object tree flattened with '.' —
 * dict keys (strings as they are; ints in decimal; True/False/None as words; entries with
 * other key types, or string keys holding a NUL, are skipped) and list/tuple indices: {"model":
 * {"encoder.w": T}} gives "model.encoder.w", {"optimizer": {"state": {0: {"exp_avg": T}}}} gives
 * "optimizer.state.0.exp_avg". A pickle whose root is a tensor names it "". Attributes that
 * BUILD sets on a dict (torch's state_dict()._metadata) are not listed; attributes of an opaque
 * object are listed under its name ("args.lr" for an argparse.Namespace "args"). An object
 * referenced twice is listed under both names; a key set twice (torch never writes that)
 * appears twice, and find returns the first.
 *
 * Values. Leaves that are not tensors are listed too (in file order, separately from the
 * tensors): None, bools, ints (int64; larger ones are opaque "int"), floats, strings (UTF-8 as
 * stored, NUL-terminated copies; an embedded NUL ends them), and opaque objects (their class as
 * "module.name"; bytes are opaque "bytes"). For safetensors the __metadata__ strings appear as
 * "__metadata__.<key>", and a tensor of a valid dtype this library does not convert (U16, U32,
 * U64, F8_*, C64, C128) as an opaque value "safetensors <DTYPE>" (checked like the others).
 *
 * Errors (the message starts with the file name): PPD_ERR_IO (open/stat/mmap), PPD_ERR_EMPTY
 * (a 0-byte file), PPD_ERR_FORMAT (anything malformed or refused, saying what and where: the
 * header or JSON byte offset, the ZIP entry, the pickle opcode and offset), PPD_ERR_CORRUPT
 * (a CRC-32 mismatch), PPD_ERR_NOMEM. Never a crash or a leak, whatever the bytes (fuzzed).
 *
 * Byte order: the library assumes a little-endian host (x86-64, ARM64), as the formats are.
 * A ppd_tensor_file is immutable after open: any number of threads may read it at once.
 */
#ifndef PPDOCK_TENSORFILE_H
#define PPDOCK_TENSORFILE_H

#include <stddef.h>
#include <stdint.h>

#include "ppdock/half.h"
#include "ppdock/status.h"

enum { PPD_TF_MAX_DIMS = 8 };

typedef enum {
    PPD_TF_F32,
    PPD_TF_F16,
    PPD_TF_BF16,
    PPD_TF_F64,
    PPD_TF_I64,
    PPD_TF_I32,
    PPD_TF_I16,
    PPD_TF_I8,
    PPD_TF_U8,
    PPD_TF_BOOL,
    PPD_TF_DTYPE_COUNT
} ppd_tf_dtype;

/* Bytes per element (0 for an invalid dtype) and a short name ("f32", "bf16", "bool"). */
size_t ppd_tf_dtype_size(ppd_tf_dtype dt);
const char *ppd_tf_dtype_name(ppd_tf_dtype dt);

typedef struct {
    const char *name; /* flattened key (see Names above) */
    ppd_tf_dtype dtype;
    int ndim; /* 0 for a scalar tensor (numel 1) */
    int64_t shape[PPD_TF_MAX_DIMS];
    int64_t numel; /* may exceed the bytes behind data for stride-0 (expanded) views */
    /* The element at index (i0, i1, ...) is at data + (sum i_k * strides[k]) * element size.
     * Points into the file's bytes (mmap or caller memory) or an inflated ZIP entry; may be
     * unaligned; little-endian. */
    const void *data;
    int64_t strides[PPD_TF_MAX_DIMS]; /* in elements; contiguous tensors: row-major ones */
    /* 1 when the elements are packed in row-major order (strides of size-1 dims ignored, as
     * torch does): then data holds numel * element-size consecutive bytes. */
    int contiguous;
} ppd_tensor;

typedef enum {
    PPD_TF_VAL_NONE,
    PPD_TF_VAL_BOOL,
    PPD_TF_VAL_INT,
    PPD_TF_VAL_FLOAT,
    PPD_TF_VAL_STR,
    PPD_TF_VAL_OPAQUE
} ppd_tf_value_kind;

typedef struct {
    const char *name;
    ppd_tf_value_kind kind;
    int64_t i;     /* BOOL: 0/1; INT: the value */
    double f;      /* FLOAT: the value; BOOL and INT: the same number as a double */
    const char *s; /* STR: the string; OPAQUE: the class ("argparse.Namespace"); else NULL */
} ppd_tf_value;

typedef struct ppd_tensor_file ppd_tensor_file;

/* Open and map `path` read-only, recognise the format, check it and list its tensors and
 * values. Errors: see the top of this file. */
ppd_status ppd_tensor_file_open(const char *path, ppd_tensor_file **out);

/* The same on bytes owned by the caller (they must outlive *out); `name` prefixes messages. */
ppd_status ppd_tensor_file_open_memory(const void *data, size_t len, const char *name,
                                       ppd_tensor_file **out);

/* "safetensors" or "pytorch". */
const char *ppd_tensor_file_format(const ppd_tensor_file *f);

/* Tensors in file order: safetensors header order; PyTorch: order of the object tree. */
size_t ppd_tensor_file_count(const ppd_tensor_file *f);
const ppd_tensor *ppd_tensor_file_at(const ppd_tensor_file *f, size_t i); /* NULL if out of range */
/* The first tensor with this exact name, or NULL (O(log n)). */
const ppd_tensor *ppd_tensor_file_find(const ppd_tensor_file *f, const char *name);

/* Non-tensor leaves, in file order; lookup by exact name (NULL if none). */
size_t ppd_tensor_file_value_count(const ppd_tensor_file *f);
const ppd_tf_value *ppd_tensor_file_value_at(const ppd_tensor_file *f, size_t i);
const ppd_tf_value *ppd_tensor_file_value(const ppd_tensor_file *f, const char *name);

/* A number by name: an int, float or bool value, or a tensor with exactly one element (Adam's
 * "step" is a 0-d float tensor since torch 1.12). Errors: PPD_ERR_NOTFOUND (no such name),
 * PPD_ERR_FORMAT (it is a string, None, opaque, or a tensor with numel != 1). */
ppd_status ppd_tensor_file_number(const ppd_tensor_file *f, const char *name, double *out);

/* Copy any tensor into dst (t->numel floats, row-major): f16 and bf16 widened exactly
 * (subnormals, inf, NaN kept), f64 and integers rounded to nearest, bool as 0/1; strides
 * honoured; unaligned data fine. Errors: PPD_ERR_USAGE (NULL argument or invalid dtype). */
ppd_status ppd_tensor_to_f32(const ppd_tensor *t, float *dst);

/* Unmap and free everything; tensors, names and values of f become invalid. NULL is fine. */
void ppd_tensor_file_close(ppd_tensor_file *f);

/* Element conversions used by ppd_tensor_to_f32 (exact): ppd_f16_to_f32 and ppd_bf16_to_f32 in
 * ppdock/half.h. */

#endif
