/* topk.c - per-unit top-K lists as min-heaps; see topk.h. */
#include "topk.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

err_code tk_init(tk_best *b, int U, int K)
{
    memset(b, 0, sizeof *b);
    if (U < 0 || K < 0) return err_set(ERR_ARG, "tk_init: %d units, K %d", U, K);
    size_t n = (size_t)U * (size_t)K + 1;
    b->U = U;
    b->K = K;
    b->score = malloc(n * sizeof *b->score);
    b->item = malloc(n * sizeof *b->item);
    b->size = calloc((size_t)U + 1, sizeof *b->size);
    if (!b->score || !b->item || !b->size) {
        tk_free(b);
        return err_set(ERR_NOMEM, "out of memory for %d top-%d lists", U, K);
    }
    return ERR_OK;
}

void tk_free(tk_best *b)
{
    if (!b) return;
    free(b->score);
    free(b->item);
    free(b->size);
    memset(b, 0, sizeof *b);
}

/* (sa, ia) ranks below (sb, ib) */
static bool worse(float sa, size_t ia, float sb, size_t ib) { return sa < sb || (sa == sb && ia > ib); }

static void swap(float *s, size_t *it, int i, int j)
{
    float ts = s[i];
    size_t ti = it[i];
    s[i] = s[j];
    it[i] = it[j];
    s[j] = ts;
    it[j] = ti;
}

/* Min-heap of n entries: the worst at the root. */
static void sift_down(float *s, size_t *it, int n, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && worse(s[l], it[l], s[m], it[m])) m = l;
        if (r < n && worse(s[r], it[r], s[m], it[m])) m = r;
        if (m == i) return;
        swap(s, it, i, m);
        i = m;
    }
}

void tk_offer(tk_best *b, int u, float score, size_t item)
{
    if (b->K == 0) return;
    float *s = b->score + (size_t)u * b->K;
    size_t *it = b->item + (size_t)u * b->K;
    int *n = &b->size[u];
    if (*n < b->K) {   /* room: append and sift up */
        int i = (*n)++;
        s[i] = score;
        it[i] = item;
        for (; i > 0 && worse(s[i], it[i], s[(i - 1) / 2], it[(i - 1) / 2]); i = (i - 1) / 2)
            swap(s, it, i, (i - 1) / 2);
    } else if (worse(s[0], it[0], score, item)) {   /* better than the worst kept */
        s[0] = score;
        it[0] = item;
        sift_down(s, it, *n, 0);
    }
}

void tk_sort(tk_best *b)
{
    for (int u = 0; u < b->U; u++) {   /* heap sort: the worst goes last each time */
        float *s = b->score + (size_t)u * b->K;
        size_t *it = b->item + (size_t)u * b->K;
        for (int n = b->size[u]; n > 1; n--) {
            swap(s, it, 0, n - 1);
            sift_down(s, it, n - 1, 0);
        }
    }
}
