/* test_sampling.c - temperature, top-k, top-p, -inf entries, log-softmax. */
#include "test.h"

#include <math.h>
#include <string.h>

#include "rng.h"
#include "sampling.h"

enum { V = 6, DRAWS = 200000 };

/* Frequencies of DRAWS samples into freq[V]; the scratch buffer carries a
 * canary past its 2 V floats to catch overruns. */
static void frequencies(const float *logits, const smp_config *c, double *freq)
{
    float scratch[2 * V + 1];
    scratch[2 * V] = 12345.0f;
    rng r;
    rng_seed(&r, 7);
    memset(freq, 0, V * sizeof *freq);
    for (int i = 0; i < DRAWS; i++) {
        int t = smp_sample(logits, V, c, &r, scratch);
        if (t >= 0 && t < V) freq[t] += 1.0 / DRAWS;
        else CHECK(!"token out of range");
    }
    CHECK(scratch[2 * V] == 12345.0f);
}

/* The softmax of logits / T over the tokens in keep (NULL = all). */
static void expected(const float *logits, float T, const int *keep, double *p)
{
    double sum = 0;
    for (int i = 0; i < V; i++) {
        p[i] = (keep && !keep[i]) || logits[i] == -INFINITY ? 0 : exp(logits[i] / T);
        sum += p[i];
    }
    for (int i = 0; i < V; i++) p[i] /= sum;
}

static void check_freq(const double *freq, const double *p)
{
    for (int i = 0; i < V; i++) {
        /* 5 standard deviations of a binomial share. */
        double tol = 5 * sqrt(p[i] * (1 - p[i]) / DRAWS) + 1e-12;
        CHECK_NEAR(freq[i], p[i], tol);
    }
}

static const float logits[V] = { 1.0f, -INFINITY, 2.0f, 0.5f, -1.0f, 1.5f };

TEST(sampling_matches_softmax_at_temperatures)
{
    const float temps[] = { 1.0f, 0.5f, 2.0f };
    for (int i = 0; i < 3; i++) {
        smp_config c = SMP_DEFAULTS;
        c.temperature = temps[i];
        double freq[V], p[V];
        frequencies(logits, &c, freq);
        expected(logits, temps[i], NULL, p);
        check_freq(freq, p);
        CHECK(freq[1] == 0);   /* -inf is never drawn */
    }
}

TEST(sampling_temperature_zero_is_argmax)
{
    smp_config c = SMP_DEFAULTS;
    c.temperature = 0;
    rng r;
    rng_seed(&r, 1);
    float scratch[2 * V];
    CHECK(smp_sample(logits, V, &c, &r, scratch) == 2);
    const float tie[V] = { -INFINITY, 3, 1, 3, 0, 0 };
    CHECK(smp_sample(tie, V, &c, &r, scratch) == 1);   /* lowest index among equals */
    const float none[V] = { -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY };
    CHECK(smp_sample(none, V, &c, &r, scratch) == -1);
    c.temperature = 1;
    CHECK(smp_sample(none, V, &c, &r, scratch) == -1);
}

TEST(sampling_top_k_keeps_the_k_most_probable)
{
    smp_config c = SMP_DEFAULTS;
    c.top_k = 2;
    double freq[V], p[V];
    frequencies(logits, &c, freq);
    const int keep[V] = { 0, 0, 1, 0, 0, 1 };   /* logits 2.0 and 1.5 */
    expected(logits, 1, keep, p);
    check_freq(freq, p);
    c.top_k = 100;   /* more than V: no limit */
    frequencies(logits, &c, freq);
    expected(logits, 1, NULL, p);
    check_freq(freq, p);
}

TEST(sampling_top_p_keeps_the_smallest_nucleus)
{
    /* Probabilities 0.5, 0.3, 0.15, 0.05 (and two impossible tokens). */
    const float l[V] = { logf(0.15f), logf(0.5f), -INFINITY, logf(0.05f), logf(0.3f), -INFINITY };
    smp_config c = SMP_DEFAULTS;
    double freq[V], p[V];
    c.top_p = 0.7f;   /* 0.5 < 0.7 <= 0.8: the two most probable */
    frequencies(l, &c, freq);
    const int keep2[V] = { 0, 1, 0, 0, 1, 0 };
    expected(l, 1, keep2, p);
    check_freq(freq, p);
    c.top_p = 0.4f;   /* the most probable alone reaches it */
    frequencies(l, &c, freq);
    CHECK_NEAR(freq[1], 1.0, 1e-9);
    c.top_p = 0.9f;   /* three tokens (0.95 >= 0.9) */
    c.top_k = 2;      /* ... but top-k first keeps two: 0.5 / 0.8 < 0.9 keeps both */
    frequencies(l, &c, freq);
    expected(l, 1, keep2, p);
    check_freq(freq, p);
}

TEST(sampling_same_seed_same_tokens)
{
    smp_config c = SMP_DEFAULTS;
    c.top_p = 0.9f;
    float scratch[2 * V];
    rng a, b;
    rng_seed(&a, 3);
    rng_seed(&b, 3);
    int same = 1;
    for (int i = 0; i < 1000; i++)
        same &= smp_sample(logits, V, &c, &a, scratch) == smp_sample(logits, V, &c, &b, scratch);
    CHECK(same);
}

TEST(log_softmax_normalises_and_may_alias)
{
    float out[V], copy[V];
    smp_log_softmax(logits, V, out);
    double sum = 0;
    for (int i = 0; i < V; i++) sum += exp(out[i]);
    CHECK_NEAR(sum, 1.0, 1e-6);
    CHECK(out[1] == -INFINITY);
    double p[V];
    expected(logits, 1, NULL, p);
    CHECK_NEAR(out[0], log(p[0]), 1e-6);
    memcpy(copy, logits, sizeof copy);
    smp_log_softmax(copy, V, copy);
    CHECK(memcmp(copy, out, sizeof out) == 0);
    const float big[3] = { 1000, 1000, -INFINITY };   /* no overflow */
    smp_log_softmax(big, 3, out);
    CHECK_NEAR(out[0], -log(2.0), 1e-6);
}
