/* test_topk.c - per-unit top-K lists against sorting everything. */
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "test.h"
#include "topk.h"

TEST(keeps_the_k_best_in_order)
{
    enum { U = 3, K = 5, N = 200 };
    tk_best b;
    CHECK(tk_init(&b, U, K) == ERR_OK);
    float score[U][N];
    rng r;
    rng_seed(&r, 1);
    for (int i = 0; i < N; i++)
        for (int u = 0; u < U; u++) {
            /* unit 2 has many ties: the lower item wins them */
            score[u][i] = u == 2 ? (float)rng_below(&r, 4) : rng_normal(&r);
            tk_offer(&b, u, score[u][i], (size_t)i);
        }
    tk_sort(&b);
    for (int u = 0; u < U; u++) {
        CHECK(tk_count(&b, u) == K);
        for (int k = 0; k < K; k++) {
            /* the k-th best by brute force: rank = number of items ranking above */
            size_t it = tk_item(&b, u, k);
            CHECK(tk_score(&b, u, k) == score[u][it]);
            int above = 0;
            for (int i = 0; i < N; i++)
                above += score[u][i] > score[u][it] || (score[u][i] == score[u][it] && i < (int)it);
            CHECK(above == k);
        }
    }
    CHECK(tk_item(&b, 2, 0) < tk_item(&b, 2, 1));
    tk_free(&b);
}

TEST(fewer_items_than_k_and_k_zero)
{
    tk_best b;
    CHECK(tk_init(&b, 2, 4) == ERR_OK);
    tk_offer(&b, 1, 0.5f, 7);
    tk_offer(&b, 1, 2.0f, 3);
    tk_sort(&b);
    CHECK(tk_count(&b, 0) == 0 && tk_count(&b, 1) == 2);
    CHECK(tk_item(&b, 1, 0) == 3 && tk_item(&b, 1, 1) == 7);
    tk_free(&b);
    CHECK(tk_init(&b, 2, 0) == ERR_OK);
    tk_offer(&b, 0, 1.0f, 0);
    tk_sort(&b);
    CHECK(tk_count(&b, 0) == 0);
    tk_free(&b);
    CHECK(tk_init(&b, -1, 2) == ERR_ARG);
}
