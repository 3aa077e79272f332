/* ppdock/rng.h — seedable pseudo-random numbers (xoshiro256**, seeded through splitmix64).
 *
 * Deterministic across platforms for a given seed; the full state is 32 bytes, so checkpoints
 * can store it and resume bit-exactly. Not for cryptography.
 */
#ifndef PPDOCK_RNG_H
#define PPDOCK_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];
} ppd_rng;

void ppd_rng_seed(ppd_rng *r, uint64_t seed);
uint64_t ppd_rng_u64(ppd_rng *r);
/* Uniform in [0, n) without modulo bias; n > 0. */
uint64_t ppd_rng_below(ppd_rng *r, uint64_t n);
/* Uniform double in [0, 1) with 53 random bits. */
double ppd_rng_uniform(ppd_rng *r);
/* Standard normal (Box–Muller, one value per call, no cached state). */
double ppd_rng_normal(ppd_rng *r);

#endif
