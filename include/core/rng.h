/* rng.h - deterministic pseudo-random numbers (xoshiro256**, seeded by
 * splitmix64).  The whole state round-trips through a string so that a
 * checkpoint can store it and --resume continue the exact same stream. */
#ifndef VILLES_RNG_H
#define VILLES_RNG_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef struct rng { uint64_t s[4]; } rng;

enum { RNG_STRLEN = 4 * 16 + 1 };   /* 64 hex digits + NUL */

void     rng_seed(rng *r, uint64_t seed);
uint64_t rng_u64(rng *r);
uint32_t rng_below(rng *r, uint32_t n);        /* uniform in [0, n), n > 0, unbiased */
double   rng_uniform(rng *r);                  /* uniform in [0, 1) */
float    rng_normal(rng *r);                   /* standard normal */
void     rng_shuffle(rng *r, size_t *a, size_t n);   /* Fisher-Yates */
/* Random access, no state: output i (from 0) of splitmix64 started at seed,
 * i.e. mixed seed + (i + 1) * 0x9e3779b97f4a7c15.  For values that must
 * depend on where they sit rather than on the order they are drawn in
 * (dropout masks, ops.h: op_keep). */
uint64_t rng_at(uint64_t seed, uint64_t i);

void     rng_to_string(const rng *r, char out[RNG_STRLEN]);
err_code rng_from_string(rng *r, const char *s);     /* ERR_FORMAT if not 64 hex digits */

#endif
