/* sampling.c - next-token logits to a token; see sampling.h.
 *
 * Scratch layout (2 * V floats): up to V (probability, token) pairs of the
 * drawable tokens, sorted by decreasing probability when top-k or top-p
 * cut the tail.  Tokens are stored as floats, exact below 2^24 tokens.
 */
#include "sampling.h"

#include <math.h>
#include <stdlib.h>

typedef struct smp_pair { float p, tok; } smp_pair;

/* Most probable first; ties by lower token, so the order is deterministic. */
static int by_prob_desc(const void *a, const void *b)
{
    const smp_pair *x = a, *y = b;
    if (x->p != y->p) return x->p < y->p ? 1 : -1;
    return (x->tok > y->tok) - (x->tok < y->tok);
}

static float max_logit(const float *logits, int V)
{
    float m = -INFINITY;
    for (int i = 0; i < V; i++)
        if (logits[i] > m) m = logits[i];
    return m;
}

/* Lowest-index maximum among drawable entries; -1 when there is none. */
static int argmax(const float *logits, int V)
{
    int best = -1;
    for (int i = 0; i < V; i++)
        if (logits[i] != -INFINITY && (best < 0 || logits[i] > logits[best])) best = i;
    return best;
}

/* Draw from n pairs with positive probabilities summing to total; the
 * last pair absorbs rounding. */
static int draw(const smp_pair *pairs, int n, double total, rng *r)
{
    double u = rng_uniform(r) * total, cum = 0;
    for (int i = 0; i < n - 1; i++) {
        cum += pairs[i].p;
        if (u < cum) return (int)pairs[i].tok;
    }
    return (int)pairs[n - 1].tok;
}

int smp_sample(const float *logits, int V, const smp_config *c, rng *r, float *scratch)
{
    if (c->temperature <= 0) return argmax(logits, V);
    float m = max_logit(logits, V);
    if (m == -INFINITY) return -1;

    smp_pair *pairs = (smp_pair *)scratch;
    double total = 0;
    int n = 0;   /* drawable tokens */
    for (int i = 0; i < V; i++) {
        if (logits[i] == -INFINITY) continue;
        float p = expf((logits[i] - m) / c->temperature);
        if (p > 0) {
            pairs[n++] = (smp_pair){ p, (float)i };
            total += p;
        }
    }
    if (n == 0) return -1;
    if ((c->top_k <= 0 || c->top_k >= n) && c->top_p >= 1.0f) return draw(pairs, n, total, r);

    qsort(pairs, (size_t)n, sizeof *pairs, by_prob_desc);
    if (c->top_k > 0 && c->top_k < n) n = c->top_k;
    double kept = 0;
    for (int i = 0; i < n; i++) kept += pairs[i].p;
    /* Nucleus: the smallest head of the (top-k) distribution whose mass
     * reaches top_p of it; the most probable token is always kept. */
    double mass = 0, target = (double)c->top_p * kept;
    int n_nucleus = 0;
    while (n_nucleus < n && (n_nucleus == 0 || mass < target)) mass += pairs[n_nucleus++].p;
    return draw(pairs, n_nucleus, mass, r);
}

void smp_log_softmax(const float *logits, int V, float *out)
{
    float m = max_logit(logits, V);
    if (m == -INFINITY) {   /* nothing is possible: every log-probability is -inf */
        for (int i = 0; i < V; i++) out[i] = -INFINITY;
        return;
    }
    double sum = 0;
    for (int i = 0; i < V; i++) sum += exp((double)logits[i] - m);
    /* (l - m) - log(sum), not l - (m + log(sum)): exact when l is large. */
    float log_sum = (float)log(sum);
    for (int i = 0; i < V; i++) out[i] = (logits[i] - m) - log_sum;
}
