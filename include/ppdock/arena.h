/* ppdock/arena.h — host bump allocator with a high-water mark.
 *
 * An arena hands out aligned pieces of one block and frees them all at once with
 * ppd_arena_reset(). Per-item or per-batch scratch comes from an arena reset at the start of each
 * item, so the steady state does no malloc at all.
 *
 * Two modes:
 *  - fixed (grow = 0): the capacity is planned up front; an allocation that does not fit returns
 *    NULL and ppd_arena_alloc_st() fails with PPD_ERR_NOMEM naming the request and the capacity.
 *  - growable (grow = 1): when the block is full a new block is chained; the next reset
 *    consolidates into one block as large as the high-water mark, so growth happens only while
 *    the largest item is still unseen (e.g. the biggest PDB file in a data set).
 *
 * Not thread-safe: one arena per thread.
 */
#ifndef PPDOCK_ARENA_H
#define PPDOCK_ARENA_H

#include <stddef.h>
#include <stdint.h>

#include "ppdock/status.h"

typedef struct ppd_arena_block ppd_arena_block;

typedef struct {
    ppd_arena_block *head; /* current block (most recent) */
    size_t used;           /* bytes handed out since the last reset, all blocks */
    size_t high_water;     /* max of `used` over the arena's life */
    size_t capacity;       /* total bytes of all blocks */
    uint64_t mallocs;      /* blocks allocated over the arena's life (tests assert steady state) */
    int grow;
} ppd_arena;

/* Allocate the first block. capacity 0 is allowed for growable arenas. */
ppd_status ppd_arena_init(ppd_arena *a, size_t capacity, int grow);
void ppd_arena_free(ppd_arena *a);

/* Aligned allocation (align: power of two, >= 1). NULL when a fixed arena is full or malloc
 * fails. Memory is not zeroed. */
void *ppd_arena_alloc(ppd_arena *a, size_t bytes, size_t align);
/* Same, zeroed. */
void *ppd_arena_calloc(ppd_arena *a, size_t bytes, size_t align);
/* Same as ppd_arena_alloc, but reports failure as PPD_ERR_NOMEM with the sizes in ppd_errmsg. */
ppd_status ppd_arena_alloc_st(ppd_arena *a, size_t bytes, size_t align, void **out);

/* Free everything handed out; keeps (or consolidates to) one block. */
void ppd_arena_reset(ppd_arena *a);

#endif
