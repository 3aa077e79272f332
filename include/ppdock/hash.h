/* ppdock/hash.h — XXH3-64 wrappers (libxxhash).
 *
 * One hash everywhere: XXH3-64 with seed 0 (record checksums, source digests, parameter hashes,
 * cache keys). The streaming form hashes several pieces as if they were one buffer.
 */
#ifndef PPDOCK_HASH_H
#define PPDOCK_HASH_H

#include <stddef.h>
#include <stdint.h>

#include "ppdock/status.h"

uint64_t ppd_hash64(const void *data, size_t len);

typedef struct ppd_hasher ppd_hasher; /* opaque XXH3 state */
ppd_hasher *ppd_hasher_new(void);     /* NULL only when out of memory */
void ppd_hasher_reset(ppd_hasher *h);
void ppd_hasher_update(ppd_hasher *h, const void *data, size_t len);
uint64_t ppd_hasher_digest(const ppd_hasher *h);
void ppd_hasher_free(ppd_hasher *h);

/* XXH3-64 of a whole file's bytes, read in 1 MiB pieces. PPD_ERR_IO names the file. */
ppd_status ppd_hash_file(const char *path, uint64_t *out);

/* 16 lowercase hex digits + NUL. */
void ppd_hash_hex(uint64_t h, char out[17]);

#endif
