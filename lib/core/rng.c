/* xoshiro256** seeded by splitmix64 (see ppdock/rng.h). Written from the published algorithm
 * (Blackman & Vigna); short enough that a dependency would cost more than it saves. */
#include "ppdock/rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

void ppd_rng_seed(ppd_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

uint64_t ppd_rng_u64(ppd_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t ppd_rng_below(ppd_rng *r, uint64_t n) {
    uint64_t limit = UINT64_MAX - UINT64_MAX % n; /* reject the biased tail */
    uint64_t x;
    do x = ppd_rng_u64(r);
    while (x >= limit);
    return x % n;
}

double ppd_rng_uniform(ppd_rng *r) {
    return (double)(ppd_rng_u64(r) >> 11) * 0x1.0p-53;
}

double ppd_rng_normal(ppd_rng *r) {
    double u1 = ppd_rng_uniform(r), u2 = ppd_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
