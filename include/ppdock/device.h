/* ppdock/device.h — CUDA devices and the device arena, callable from C.
 *
 * Device memory follows DESIGN.md rule 1: a tool plans its need, creates its device arenas at
 * start-up (one cudaMalloc each) and then only bump-allocates and resets. Nothing "empties" the
 * GPU. Every cudaMalloc that ppdock makes goes through ppd_device_malloc, which counts it, so a
 * test can assert that a training or inference loop makes none:
 *
 *   ppd_device_arena step;
 *   PPD_TRY(ppd_device_arena_create(&step, plan.step_bytes));   // fails here if it cannot fit
 *   for (each batch) {
 *       ppd_device_arena_reset(&step);
 *       float *d_out;
 *       PPD_TRY(ppd_device_arena_alloc_st(&step, bytes, (void **)&d_out));
 *       ...
 *   }
 *   ppd_device_arena_destroy(&step);
 *
 * Where the code lives: the arena's bookkeeping (wrap, alloc, reset) is plain pointer arithmetic
 * in the CPU library (lib/nn/device_arena.c, unit-tested without a GPU); everything that calls
 * the CUDA runtime (create, destroy, malloc, copies, device queries) is in libppdock_cuda.a
 * (lib/nn/cuda/device_arena.cu) and exists only in CUDA builds.
 *
 * No device: when the machine has no GPU or no (new enough) driver, every function here that
 * calls CUDA returns PPD_ERR_CUDA with a message that starts "no CUDA device" and names the
 * CUDA error; nothing aborts.
 *
 * Not thread-safe: one arena per thread (or per stream). The malloc counter is atomic.
 */
#ifndef PPDOCK_DEVICE_H
#define PPDOCK_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "ppdock/status.h"

/* The CUDA stream type, declared exactly as cuda_runtime_api.h does, so that C code can name
 * streams without the CUDA headers (and the two declarations agree when both are included). */
struct CUstream_st;
typedef struct CUstream_st *cudaStream_t;

/* Every arena allocation is aligned to this many bytes (cudaMalloc's own guarantee; enough for
 * vectorised float4/int4 loads and for cuBLAS). */
#define PPD_DEVICE_ALIGN 256

/* Host memory that a process running on a GPU pays for the CUDA runtime, beside its own
 * buffers: an allowance the tools add to their host-memory prediction (esm-embed's
 * predicted_peak_mb). Loading cuBLAS's libraries leaves 151 MiB resident (build/tests/cublas-load,
 * CUDA 13, measured without a GPU); the CUDA context's own host memory has not been measured
 * (no GPU since), and the allowance gives it 256 MiB. scripts/gpu-check.sh prints esm-embed's
 * predicted and measured peak on a GPU. */
#define PPD_CUDA_HOST_RUNTIME_BYTES ((size_t)408 << 20)

/* n rounded up to a multiple of PPD_DEVICE_ALIGN. */
static inline size_t ppd_device_align_up(size_t n) {
    return (n + PPD_DEVICE_ALIGN - 1) / PPD_DEVICE_ALIGN * PPD_DEVICE_ALIGN;
}

typedef struct {
    int index;              /* CUDA device ordinal */
    char name[256];         /* e.g. "NVIDIA H100 80GB HBM3" */
    int cc_major, cc_minor; /* compute capability */
    int sm_count;           /* multiprocessors */
    size_t total_bytes;     /* global memory */
    size_t free_bytes;      /* free global memory (cudaMemGetInfo) when described */
    double peak_gbs;        /* theoretical memory bandwidth in GB/s (1e9 B/s); 0 if unknown */
    int driver_version;     /* cudaDriverGetVersion, e.g. 13000 */
    int runtime_version;    /* cudaRuntimeGetVersion */
} ppd_device_info;

/* Number of CUDA devices. With no device or no usable driver, *n = 0 and the status is
 * PPD_ERR_CUDA, message "no CUDA device: ...". */
ppd_status ppd_device_count(int *n);

/* Describe device `device` (0 <= device < count). Creates the CUDA context on that device (free
 * memory cannot be read without one); the calling thread's current device is restored. */
ppd_status ppd_device_describe(int device, ppd_device_info *info);
/* Make `device` current for this thread and describe it: PPD_ERR_CUDA when there is no CUDA
 * device, PPD_ERR_USAGE when `device` does not exist. */
ppd_status ppd_device_select(int device, ppd_device_info *info);

/* ---- counted allocation: start-up only ------------------------------------------------------ */

/* cudaMalloc through the counter. Use at start-up (arenas, persistent buffers), never per batch.
 * PPD_ERR_NOMEM names the request and the device's free/total memory. */
ppd_status ppd_device_malloc(void **ptr, size_t bytes);
/* cudaFree; NULL is ignored. Errors from earlier asynchronous work are dropped (clean-up path). */
void ppd_device_free(void *ptr);
/* cudaMalloc calls made by ppdock in this process so far (successful or not). */
uint64_t ppd_device_malloc_count(void);

/* ---- synchronous copies --------------------------------------------------------------------- */

ppd_status ppd_device_upload(void *dst_device, const void *src_host, size_t bytes);
ppd_status ppd_device_download(void *dst_host, const void *src_device, size_t bytes);
/* Wait for all work on the current device; reports errors from earlier kernels. */
ppd_status ppd_device_synchronize(void);

/* ---- the device arena ----------------------------------------------------------------------- */

typedef struct {
    unsigned char *base; /* device memory (host memory in CPU tests of the bookkeeping) */
    size_t capacity;     /* bytes */
    size_t used;         /* bytes handed out since the last reset, alignment padding included */
    size_t high_water;   /* max of `used` over the arena's life */
    int device;          /* device ordinal of the memory, -1 for wrapped memory */
    int owned;           /* 1: created here; destroy frees it */
} ppd_device_arena;

/* One cudaMalloc of `capacity` bytes (> 0) on the current device. A budget that the device
 * cannot meet fails at once: PPD_ERR_NOMEM, and the message gives the bytes asked for and the
 * free and total memory that cudaMemGetInfo reports. No device: PPD_ERR_CUDA, "no CUDA device". */
ppd_status ppd_device_arena_create(ppd_device_arena *a, size_t capacity);

/* Free the memory if the arena owns it, and zero the struct. Safe on a zeroed struct. */
void ppd_device_arena_destroy(ppd_device_arena *a);

/* Use memory the caller owns (a piece of another arena, for instance) without allocating.
 * destroy will not free it. */
void ppd_device_arena_wrap(ppd_device_arena *a, void *base, size_t capacity);

/* Bump allocation aligned to PPD_DEVICE_ALIGN; NULL when the arena cannot fit it. The memory is
 * not initialised. Makes no CUDA call. */
void *ppd_device_arena_alloc(ppd_device_arena *a, size_t bytes);
/* Same, but a request that does not fit fails with PPD_ERR_NOMEM naming the request, the bytes in
 * use and the capacity. */
ppd_status ppd_device_arena_alloc_st(ppd_device_arena *a, size_t bytes, void **out);

/* Hand everything back (used = 0); the high-water mark stays. Makes no CUDA call: work still
 * queued on a stream may be using the memory, so reset only after the step's work is ordered
 * before the next use (same stream, or synchronised). */
void ppd_device_arena_reset(ppd_device_arena *a);

/* ---- inputs uploaded while the previous pass computes -------------------------------------
 *
 * A pass arena holds one pass at a time: its work area from offset 0 and its inputs, uploaded
 * from the host. For the next pass's upload to run on a copy stream while the previous pass
 * still computes, its inputs must go where the previous pass's pieces are not, and above the
 * next pass's own work area. */

typedef struct {
    size_t off, bytes; /* a piece of the arena: [off, off + bytes) */
} ppd_arena_span;

/* Where the next pass's inputs (`in` bytes) go in a pass arena of `capacity` bytes, given the
 * work area the next pass will use ([0, work)) and the previous pass's pieces, which may still be
 * in use ([0, prev_work) and prev_in; prev_in.bytes 0 when none). Sizes are rounded up to
 * PPD_DEVICE_ALIGN and the offset is a multiple of it. Tries the arena's top, then just above
 * the larger of the two work areas. Returns 1 with *off a place that overlaps none of those
 * (the upload may start at once), or 0 with *off the top (the upload must wait for the previous
 * pass); -1 when work + in do not fit at all. With capacity at least the largest (work + in) of
 * any pass plus twice the largest `in`, all rounded, it never returns 0 (tested). Pure
 * arithmetic: no CUDA call. */
int ppd_arena_place_inputs(size_t capacity, size_t prev_work, ppd_arena_span prev_in, size_t work,
                           size_t in, size_t *off);

#ifdef __cplusplus
}
#endif

#endif
