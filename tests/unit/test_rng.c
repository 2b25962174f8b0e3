/* test_rng.c - xoshiro256** stream, string round-trip, rng_below, normals,
 * shuffles. */
#include "rng.h"
#include "test.h"

#include <string.h>

/* Reference values from an independent Python implementation of
 * splitmix64 + xoshiro256** (Vigna's reference code, transcribed). */
TEST(rng_matches_reference_stream)
{
    rng r;
    rng_seed(&r, 0);
    CHECK(r.s[0] == 0xe220a8397b1dcdafULL);
    CHECK(r.s[1] == 0x6e789e6aa1b965f4ULL);
    CHECK(r.s[2] == 0x06c45d188009454fULL);
    CHECK(r.s[3] == 0xf88bb8a8724c81ecULL);
    CHECK(rng_u64(&r) == 0x99ec5f36cb75f2b4ULL);
    CHECK(rng_u64(&r) == 0xbf6e1f784956452aULL);
    CHECK(rng_u64(&r) == 0x1a5f849d4933e6e0ULL);
    for (int i = 3; i < 9; i++) rng_u64(&r);
    CHECK(rng_u64(&r) == 0xeb3a475a3e749a3dULL);   /* the 10th */
    for (int i = 10; i < 999; i++) rng_u64(&r);
    CHECK(rng_u64(&r) == 0x7aac8c483a2edd2fULL);   /* the 1000th */
    rng_seed(&r, 42);
    CHECK(rng_u64(&r) == 0x15780b2e0c2ec716ULL);
    CHECK(rng_u64(&r) == 0x6104d9866d113a7eULL);
}

TEST(rng_same_seed_same_stream)
{
    rng a, b, c;
    rng_seed(&a, 7);
    rng_seed(&b, 7);
    rng_seed(&c, 8);
    int same = 1, differs = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t x = rng_u64(&a);
        same &= x == rng_u64(&b);
        differs |= x != rng_u64(&c);
    }
    CHECK(same);
    CHECK(differs);
}

TEST(rng_string_round_trip)
{
    rng a, b;
    rng_seed(&a, 123);
    for (int i = 0; i < 10; i++) rng_normal(&a);   /* a state in mid-stream */
    char s[RNG_STRLEN];
    rng_to_string(&a, s);
    CHECK(strlen(s) == 64);
    CHECK(strspn(s, "0123456789abcdef") == 64);
    rng_seed(&b, 999);
    CHECK(rng_from_string(&b, s) == ERR_OK);
    int same = 1;
    for (int i = 0; i < 100; i++) same &= rng_u64(&a) == rng_u64(&b);
    CHECK(same);
    CHECK(rng_normal(&a) == rng_normal(&b));   /* no hidden cached deviate */
    /* Upper-case hex is the same state. */
    char up[RNG_STRLEN];
    rng_to_string(&a, s);
    for (int i = 0; i < RNG_STRLEN; i++) up[i] = (char)(s[i] >= 'a' ? s[i] - 32 : s[i]);
    CHECK(rng_from_string(&b, up) == ERR_OK);
    CHECK(rng_u64(&a) == rng_u64(&b));
}

TEST(rng_from_string_rejects_bad_strings)
{
    const char *good = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const char *bad[] = {
        "",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde",     /* 63 */
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0",   /* 65 */
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeg",
        " 123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "0x23456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n",
        "0000000000000000000000000000000000000000000000000000000000000000",    /* stuck state */
    };
    rng r, before;
    CHECK(rng_from_string(&r, good) == ERR_OK);
    before = r;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK(rng_from_string(&r, bad[i]) == ERR_FORMAT);
        CHECK(memcmp(&r, &before, sizeof r) == 0);   /* untouched on error */
    }
    CHECK(rng_from_string(&r, NULL) == ERR_FORMAT);
    CHECK(strlen(err_msg()) > 0);
}

TEST(rng_below_in_range_and_roughly_uniform)
{
    rng r;
    rng_seed(&r, 1);
    enum { N = 10, DRAWS = 100000 };
    int count[N] = { 0 }, in_range = 1;
    for (int i = 0; i < DRAWS; i++) {
        uint32_t x = rng_below(&r, N);
        if (x >= N) in_range = 0;
        else count[x]++;
    }
    CHECK(in_range);
    /* Expected 10000 per bucket, sd ~95: 5 sd either way. */
    for (int k = 0; k < N; k++) CHECK(count[k] > 10000 - 475 && count[k] < 10000 + 475);

    int ones = 1, big = 1;
    for (int i = 0; i < 1000; i++) {
        ones &= rng_below(&r, 1) == 0;
        big &= rng_below(&r, 3000000000u) < 3000000000u;
    }
    CHECK(ones);
    CHECK(big);
    /* n = 3e9: values above 2^31 must show up about 28% of the time. */
    int high = 0;
    for (int i = 0; i < 10000; i++) high += rng_below(&r, 3000000000u) >= 2147483648u;
    CHECK(high > 2400 && high < 3300);
}

/* The one draw that must be rejected: with s[1] == 0 the next output is 0,
 * below 2^64 mod 3 == 1, so rng_below(3) has to draw again. */
TEST(rng_below_rejects_biased_draw)
{
    rng r = { { 1, 0, 0, 0 } }, ref = r;
    CHECK(rng_u64(&ref) == 0);
    uint64_t second = rng_u64(&ref);
    CHECK(rng_below(&r, 3) == second % 3);
    CHECK(memcmp(&r, &ref, sizeof r) == 0);   /* exactly two draws used */
}

TEST(rng_uniform_and_normal_moments)
{
    rng r;
    rng_seed(&r, 2);
    enum { DRAWS = 100000 };
    double su = 0, sn = 0, sn2 = 0;
    int in_range = 1, finite = 1;
    for (int i = 0; i < DRAWS; i++) {
        double u = rng_uniform(&r);
        in_range &= u >= 0 && u < 1;
        su += u;
        double z = rng_normal(&r);
        finite &= isfinite(z);
        sn += z;
        sn2 += z * z;
    }
    CHECK(in_range);
    CHECK(finite);
    CHECK_NEAR(su / DRAWS, 0.5, 0.01);
    CHECK_NEAR(sn / DRAWS, 0.0, 0.02);
    CHECK_NEAR(sn2 / DRAWS, 1.0, 0.03);
}

TEST(rng_shuffle_permutes_uniformly)
{
    rng r;
    rng_seed(&r, 3);
    size_t a[5];
    int first[5] = { 0 };
    enum { ROUNDS = 20000 };
    int perm_ok = 1;
    for (int round = 0; round < ROUNDS; round++) {
        for (size_t i = 0; i < 5; i++) a[i] = i;
        rng_shuffle(&r, a, 5);
        int seen = 0;
        for (size_t i = 0; i < 5; i++) seen |= 1 << a[i];
        perm_ok &= seen == 0x1f;
        first[a[0]]++;
    }
    CHECK(perm_ok);
    for (int k = 0; k < 5; k++) CHECK(first[k] > 4000 - 300 && first[k] < 4000 + 300);

    /* Deterministic for a seed; empty and single arrays are fine. */
    size_t x[100], y[100];
    for (size_t i = 0; i < 100; i++) x[i] = y[i] = i;
    rng ra, rb;
    rng_seed(&ra, 9);
    rng_seed(&rb, 9);
    rng_shuffle(&ra, x, 100);
    rng_shuffle(&rb, y, 100);
    CHECK(memcmp(x, y, sizeof x) == 0);
    rng_shuffle(&ra, x, 0);
    rng_shuffle(&ra, x, 1);
}
