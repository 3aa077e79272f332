/* XXH3-64 wrappers (see ppdock/hash.h). */
#include "ppdock/hash.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

/* ppd_hasher is never defined: a ppd_hasher * is an XXH3_state_t * under another name, so the
 * public header need not include xxhash.h. */

uint64_t ppd_hash64(const void *data, size_t len) {
    return XXH3_64bits(data, len);
}

ppd_hasher *ppd_hasher_new(void) {
    XXH3_state_t *st = XXH3_createState();
    if (!st) return NULL;
    XXH3_64bits_reset(st);
    return (ppd_hasher *)st;
}
void ppd_hasher_reset(ppd_hasher *h) {
    XXH3_64bits_reset((XXH3_state_t *)h);
}
void ppd_hasher_update(ppd_hasher *h, const void *data, size_t len) {
    XXH3_64bits_update((XXH3_state_t *)h, data, len);
}
uint64_t ppd_hasher_digest(const ppd_hasher *h) {
    return XXH3_64bits_digest((const XXH3_state_t *)h);
}
void ppd_hasher_free(ppd_hasher *h) {
    XXH3_freeState((XXH3_state_t *)h);
}

ppd_status ppd_hash_file(const char *path, uint64_t *out) {
    FILE *f = fopen(path, "rb");
    if (!f) return ppd_fail(PPD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    XXH3_state_t *st = XXH3_createState();
    if (!st) {
        fclose(f);
        return ppd_fail(PPD_ERR_NOMEM, "out of memory hashing %s", path);
    }
    XXH3_64bits_reset(st);
    static _Thread_local unsigned char buf[1 << 20];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) XXH3_64bits_update(st, buf, n);
    int err = ferror(f);
    fclose(f);
    *out = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    if (err) return ppd_fail(PPD_ERR_IO, "%s: read error", path);
    return PPD_OK;
}

void ppd_hash_hex(uint64_t h, char out[17]) {
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}
