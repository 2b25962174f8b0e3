/* rng.c - xoshiro256** seeded by splitmix64; see rng.h.
 *
 * The generator keeps no state outside `rng.s` (no cached second normal
 * deviate, for instance), so that rng_to_string / rng_from_string capture
 * the stream exactly and --resume continues it bit for bit. */
#include "rng.h"

#include <math.h>
#include <stdio.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t rng_at(uint64_t seed, uint64_t i)
{
    uint64_t x = seed + i * 0x9e3779b97f4a7c15ULL;
    return splitmix64(&x);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void rng_seed(rng *r, uint64_t seed)
{
    /* splitmix64 never yields four zero words, the one state xoshiro
     * cannot leave. */
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

uint64_t rng_u64(rng *r)
{
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

/* Uniform in [0, n) for n > 0, by rejection: draws below 2^64 mod n are
 * thrown away so that every residue is hit by the same number of draws. */
static uint64_t below64(rng *r, uint64_t n)
{
    if (n == 0) return 0;
    uint64_t threshold = (0 - n) % n;   /* == 2^64 mod n */
    uint64_t x;
    do x = rng_u64(r); while (x < threshold);
    return x % n;
}

uint32_t rng_below(rng *r, uint32_t n) { return (uint32_t)below64(r, n); }

double rng_uniform(rng *r) { return (double)(rng_u64(r) >> 11) * 0x1.0p-53; }

float rng_normal(rng *r)
{
    /* Box-Muller, using only the cosine half (see the file comment). */
    double u1 = 1.0 - rng_uniform(r);   /* (0, 1]: log(u1) is finite */
    double u2 = rng_uniform(r);
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

void rng_shuffle(rng *r, size_t *a, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)below64(r, i);
        size_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

void rng_to_string(const rng *r, char out[RNG_STRLEN])
{
    for (int i = 0; i < 4; i++)
        snprintf(out + 16 * i, RNG_STRLEN - 16 * i, "%016llx", (unsigned long long)r->s[i]);
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

err_code rng_from_string(rng *r, const char *s)
{
    uint64_t w[4] = { 0 };
    if (!s) return err_set(ERR_FORMAT, "RNG state is missing");
    for (int i = 0; i < 64; i++) {
        int h = hex_value(s[i]);   /* stops at the NUL of a short string */
        if (h < 0) return err_set(ERR_FORMAT, "RNG state is not 64 hex digits");
        w[i / 16] = (w[i / 16] << 4) | (uint64_t)h;
    }
    if (s[64] != '\0') return err_set(ERR_FORMAT, "RNG state is not 64 hex digits");
    if ((w[0] | w[1] | w[2] | w[3]) == 0)
        return err_set(ERR_FORMAT, "RNG state is all zeros");
    for (int i = 0; i < 4; i++) r->s[i] = w[i];
    return ERR_OK;
}
