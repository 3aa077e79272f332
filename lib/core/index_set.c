/* A hash set of values keyed through the caller (ppdock/index_set.h). */
#include "ppdock/index_set.h"

#include "ppdock/hash.h"

#include <stdlib.h>
#include <string.h>

void ppd_index_set_init(ppd_index_set *s, ppd_index_key_fn key_of, const void *ctx) {
    *s = (ppd_index_set){.key_of = key_of, .ctx = ctx};
}

/* The first slot of key's probe sequence that is empty or holds key. */
static size_t *probe(const ppd_index_set *s, size_t *slots, size_t cap, const void *key,
                     size_t len) {
    size_t h = (size_t)ppd_hash64(key, len) & (cap - 1);
    for (; slots[h]; h = (h + 1) & (cap - 1)) {
        size_t n;
        const void *k = s->key_of(s->ctx, slots[h] - 1, &n);
        if (n == len && !memcmp(k, key, len)) break;
    }
    return &slots[h];
}

ppd_status ppd_index_set_find(ppd_index_set *s, const void *key, size_t len, size_t **slot) {
    if (2 * (s->used + 1) > s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 1024;
        size_t *slots = calloc(cap, sizeof *slots);
        if (!slots) return ppd_fail(PPD_ERR_NOMEM, "out of memory for a set of %zu keys", cap / 2);
        for (size_t i = 0; i < s->cap; i++) {
            if (!s->slots[i]) continue;
            size_t n; /* keys are distinct: the first empty slot */
            const void *k = s->key_of(s->ctx, s->slots[i] - 1, &n);
            size_t h = (size_t)ppd_hash64(k, n) & (cap - 1);
            while (slots[h]) h = (h + 1) & (cap - 1);
            slots[h] = s->slots[i];
        }
        free(s->slots);
        s->slots = slots, s->cap = cap;
    }
    *slot = probe(s, s->slots, s->cap, key, len);
    return PPD_OK;
}

void ppd_index_set_put(ppd_index_set *s, size_t *slot, size_t value) {
    if (!*slot) s->used++;
    *slot = value + 1;
}

void ppd_index_set_free(ppd_index_set *s) {
    free(s->slots);
    s->slots = NULL, s->cap = s->used = 0;
}
