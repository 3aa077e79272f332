/* ppdock/index_set.h — a hash set of values (array indices, buffer offsets) keyed by bytes the
 * caller derives from each value: finding repeated inputs (a data set's ids, esm-embed's
 * sequences and export names). Open addressing on ppd_hash64 (XXH3-64) with linear probing, at
 * most half full; a slot holds value + 1, and keys are read back through key_of at each probe,
 * so the caller's storage may move or grow between calls. Written here because no library of
 * ours has an in-memory hash set (glibc's hsearch_r cannot grow, and keys only strings).
 *
 *   ppd_index_set s;
 *   ppd_index_set_init(&s, key_of, ctx);
 *   size_t *slot;
 *   PPD_TRY(ppd_index_set_find(&s, key, len, &slot));
 *   if (*slot) ... present: value *slot - 1 ... else ppd_index_set_put(&s, slot, value);
 *   ppd_index_set_free(&s);
 */
#ifndef PPDOCK_INDEX_SET_H
#define PPDOCK_INDEX_SET_H

#include <stddef.h>

#include "ppdock/status.h"

/* The key of a stored value: its bytes, *len of them. */
typedef const void *(*ppd_index_key_fn)(const void *ctx, size_t value, size_t *len);

typedef struct {
    size_t *slots; /* cap slots: 0 empty, else value + 1 */
    size_t cap, used;
    ppd_index_key_fn key_of;
    const void *ctx;
} ppd_index_set;

void ppd_index_set_init(ppd_index_set *s, ppd_index_key_fn key_of, const void *ctx);

/* The slot of `key`: *slot is its value + 1 when present, 0 when absent (the slot
 * ppd_index_set_put fills). Makes room for one more value first, so a slot it returns stays
 * valid until the next find. Errors: PPD_ERR_NOMEM. */
ppd_status ppd_index_set_find(ppd_index_set *s, const void *key, size_t len, size_t **slot);

/* Store value in a slot ppd_index_set_find returned: a new key, or a new value for a present one
 * (the key of the new value must be the same bytes). */
void ppd_index_set_put(ppd_index_set *s, size_t *slot, size_t value);

void ppd_index_set_free(ppd_index_set *s);

#endif
