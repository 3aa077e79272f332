/* Host bump allocator (see ppdock/arena.h). */
#include "ppdock/arena.h"

#include <stdlib.h>
#include <string.h>

struct ppd_arena_block {
    ppd_arena_block *prev;
    size_t size, off;
    unsigned char data[]; /* bump() aligns each piece; malloc gives max_align_t alignment here */
};

static ppd_arena_block *block_new(size_t size) {
    ppd_arena_block *b = malloc(sizeof *b + size);
    if (!b) return NULL;
    b->prev = NULL;
    b->size = size;
    b->off = 0;
    return b;
}

ppd_status ppd_arena_init(ppd_arena *a, size_t capacity, int grow) {
    memset(a, 0, sizeof *a);
    a->grow = grow;
    if (capacity == 0 && grow) return PPD_OK;
    a->head = block_new(capacity);
    if (!a->head) return ppd_fail(PPD_ERR_NOMEM, "cannot allocate a %zu-byte host arena", capacity);
    a->capacity = capacity;
    a->mallocs = 1;
    return PPD_OK;
}

void ppd_arena_free(ppd_arena *a) {
    ppd_arena_block *b = a->head;
    while (b) {
        ppd_arena_block *p = b->prev;
        free(b);
        b = p;
    }
    memset(a, 0, sizeof *a);
}

static void *bump(ppd_arena_block *b, size_t bytes, size_t align, size_t *consumed) {
    if (!b) return NULL;
    uintptr_t base = (uintptr_t)b->data + b->off;
    uintptr_t p = (base + (align - 1)) & ~(uintptr_t)(align - 1);
    size_t pad = (size_t)(p - base);
    if (pad > b->size - b->off || bytes > b->size - b->off - pad) return NULL;
    b->off += pad + bytes;
    *consumed = pad + bytes;
    return (void *)p;
}

void *ppd_arena_alloc(ppd_arena *a, size_t bytes, size_t align) {
    if (align == 0) align = 1;
    size_t consumed = 0;
    void *p = bump(a->head, bytes, align, &consumed);
    if (!p) {
        if (!a->grow) return NULL;
        size_t want = bytes + align;
        size_t size = a->capacity > want ? a->capacity : want; /* doubles total capacity */
        if (size < 65536) size = 65536;
        ppd_arena_block *b = block_new(size);
        if (!b) return NULL;
        b->prev = a->head;
        a->head = b;
        a->capacity += size;
        a->mallocs++;
        p = bump(b, bytes, align, &consumed);
        if (!p) return NULL;
    }
    a->used += consumed;
    if (a->used > a->high_water) a->high_water = a->used;
    return p;
}

void *ppd_arena_calloc(ppd_arena *a, size_t bytes, size_t align) {
    void *p = ppd_arena_alloc(a, bytes, align);
    if (p) memset(p, 0, bytes);
    return p;
}

ppd_status ppd_arena_alloc_st(ppd_arena *a, size_t bytes, size_t align, void **out) {
    *out = ppd_arena_alloc(a, bytes, align);
    if (!*out)
        return ppd_fail(PPD_ERR_NOMEM,
                        "arena allocation of %zu bytes failed (capacity %zu, in use %zu%s)", bytes,
                        a->capacity, a->used, a->grow ? ", malloc failed" : ", fixed arena");
    return PPD_OK;
}

void ppd_arena_reset(ppd_arena *a) {
    if (a->head && a->head->prev) {
        /* Several blocks: replace them by one that holds the high-water mark. */
        size_t want = a->high_water + 4096;
        ppd_arena_block *b = a->head;
        while (b) {
            ppd_arena_block *p = b->prev;
            free(b);
            b = p;
        }
        a->head = block_new(want);
        a->capacity = a->head ? want : 0;
        a->mallocs++;
    }
    if (a->head) a->head->off = 0;
    a->used = 0;
}
