/* test_lanes.c - batched steps (mdl_next_batch) give every stream the
 * logits of its own single steps, bit for bit, whatever the batch (the
 * Transformer's lanes, the fallback loop), and the pool runs every item
 * once on any number of threads. */
#include "kinds.h"
#include "lanes.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>

enum { LANES = 9, STEPS = 14 };

/* LANES streams started at different times, fed the same token chains
 * one at a time (ref) and in batches of every size (got), some lanes idle
 * on some steps. */
static void check_batched(const char *path)
{
    mdl m;
    CHECK(mdl_load(&m, path) == ERR_OK);
    const int V = mdl_vocab_size(&m);
    mdl_state ref[LANES], got[LANES], *live[LANES];
    float *a = malloc((size_t)LANES * V * sizeof *a), *b = malloc((size_t)LANES * V * sizeof *b);
    int tok[LANES], differ = 0;
    for (int i = 0; i < LANES; i++) {
        CHECK(mdl_state_new(&ref[i], &m) == ERR_OK && mdl_state_new(&got[i], &m) == ERR_OK);
        mdl_start(&ref[i]);
        mdl_start(&got[i]);
    }
    for (int step = 0; step < STEPS; step++) {
        int n = 0;
        for (int i = 0; i < LANES; i++) {
            if ((i + step) % 4 == 0 && step > 0) continue;   /* idle this step */
            int t = step == 0 ? TOK_SOS : 3 + (i * 7 + step * 5) % (V - 3);
            mdl_next(&ref[i], t, a + (size_t)n * V);
            live[n] = &got[i];
            tok[n++] = t;
        }
        mdl_next_batch(live, n, tok, b);
        differ += memcmp(a, b, (size_t)n * V * sizeof *a) != 0;
    }
    CHECK(differ == 0);
    for (int i = 0; i < LANES; i++) {
        mdl_state_free(&ref[i]);
        mdl_state_free(&got[i]);
    }
    free(a);
    free(b);
    mdl_free(&m);
}

TEST(transformer_batch_is_bitwise_single) { check_batched(TEST_DATA("fixtures/transformer.safetensors")); }
TEST(fallback_batch_is_bitwise_single) { check_batched(TEST_DATA("fixtures/gru.safetensors")); }

/* A job that counts each item's steps: items of i % 5 + 1 tokens. */
typedef struct count_lane { long item; int left; } count_lane;
static int seen[1000];

static int count_begin(void *ctx, void *data, mdl_state *st, long i)
{
    count_lane *l = data;
    l->item = i;
    l->left = (int)(i % 5);
    mdl_start(st);
    return TOK_SOS;
}

static int count_step(void *ctx, void *data, mdl_state *st, float *logits, float *scratch)
{
    count_lane *l = data;
    seen[l->item]++;
    return l->left-- > 0 ? 3 : -1;
}

TEST(pool_runs_every_item_once)
{
    mdl m;
    CHECK(mdl_load(&m, TEST_DATA("fixtures/mlp.safetensors")) == ERR_OK);
    const ln_job job = { .begin = count_begin, .step = count_step };
    for (int threads = 1; threads <= 3; threads++) {
        ln_pool p;
        CHECK(ln_pool_new(&p, &m, 4, threads, sizeof(count_lane)) == ERR_OK);
        memset(seen, 0, sizeof seen);
        ln_pool_run(&p, &job, 10, 1000);
        int bad = 0;
        for (int i = 0; i < 1000; i++) bad += seen[i] != (i < 10 ? 0 : i % 5 + 1);
        CHECK(bad == 0);
        ln_pool_free(&p);
    }
    ln_pool p;
    CHECK(ln_pool_new(&p, &m, 0, 1, 8) == ERR_ARG);
    mdl_free(&m);
}
