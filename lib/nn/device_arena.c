/* Device arena bookkeeping: wrap, bump allocation, reset (see ppdock/device.h). Plain pointer
 * arithmetic, no CUDA call, so it is in the CPU library and unit-tested without a GPU; create and
 * destroy are in lib/nn/cuda/device_arena.cu. */
#include "ppdock/device.h"

#include <string.h>

void ppd_device_arena_wrap(ppd_device_arena *a, void *base, size_t capacity) {
    memset(a, 0, sizeof *a);
    a->base = base;
    a->capacity = base ? capacity : 0;
    a->device = -1;
}

/* Offset of the next PPD_DEVICE_ALIGN-aligned address at or after base + used, or SIZE_MAX if
 * `bytes` does not fit. Alignment is of the address, so wrapped memory need not be aligned. */
static size_t fit(const ppd_device_arena *a, size_t bytes) {
    if (!a->base) return SIZE_MAX;
    uintptr_t at = (uintptr_t)a->base + a->used;
    uintptr_t p = (at + (PPD_DEVICE_ALIGN - 1)) & ~(uintptr_t)(PPD_DEVICE_ALIGN - 1);
    size_t off = a->used + (size_t)(p - at);
    if (off > a->capacity || bytes > a->capacity - off) return SIZE_MAX;
    return off;
}

void *ppd_device_arena_alloc(ppd_device_arena *a, size_t bytes) {
    size_t off = fit(a, bytes);
    if (off == SIZE_MAX) return NULL;
    a->used = off + bytes;
    if (a->used > a->high_water) a->high_water = a->used;
    return a->base + off;
}

ppd_status ppd_device_arena_alloc_st(ppd_device_arena *a, size_t bytes, void **out) {
    *out = ppd_device_arena_alloc(a, bytes);
    if (*out) return PPD_OK;
    if (!a->base)
        return ppd_fail(PPD_ERR_USAGE, "device arena: allocation from an arena with no memory");
    return ppd_fail(PPD_ERR_NOMEM,
                    "device arena full: %zu bytes requested, %zu of %zu bytes in use (high water "
                    "%zu); the memory plan is too small for this batch",
                    bytes, a->used, a->capacity, a->high_water);
}

void ppd_device_arena_reset(ppd_device_arena *a) {
    a->used = 0;
}

static int disjoint(size_t a, size_t alen, size_t b, size_t blen) {
    return alen == 0 || blen == 0 || a + alen <= b || b + blen <= a;
}

int ppd_arena_place_inputs(size_t capacity, size_t prev_work, ppd_arena_span prev_in, size_t work,
                           size_t in, size_t *off) {
    size_t cap = capacity / PPD_DEVICE_ALIGN * PPD_DEVICE_ALIGN;
    work = ppd_device_align_up(work), in = ppd_device_align_up(in);
    prev_work = ppd_device_align_up(prev_work);
    *off = 0;
    if (work > cap || in > cap - work) return -1;
    size_t top = cap - in, floor = work > prev_work ? work : prev_work;
    *off = top;
    /* the previous pass's inputs: the next ones must not overwrite them while it runs */
    size_t po = prev_in.off, pn = ppd_device_align_up(prev_in.bytes);
    if (top >= floor && disjoint(top, in, po, pn)) return 1;
    if (floor <= cap - in && disjoint(floor, in, po, pn)) {
        *off = floor;
        return 1;
    }
    return 0;
}
