/* topk.h - the K best-scoring items of each of U units, kept while the
 * items stream by (one min-heap per unit: O(log K) per offer, no
 * allocation after tk_init).  explore uses it for the top activating names
 * of every feature or neuron in one pass over the data.
 *
 * Order: a higher score ranks first; equal scores rank the lower item
 * number first, so results do not depend on the order of the offers.
 */
#ifndef VILLES_TOPK_H
#define VILLES_TOPK_H

#include <stddef.h>

#include "error.h"

typedef struct tk_best {
    int     U, K;
    float  *score;   /* (U, K) */
    size_t *item;    /* (U, K) */
    int    *size;    /* (U) items held, at most K */
} tk_best;

err_code tk_init(tk_best *b, int U, int K);   /* K may be 0: keeps nothing */
void     tk_free(tk_best *b);
/* Offer item (score) to unit u; kept when among the K best so far. */
void     tk_offer(tk_best *b, int u, float score, size_t item);
/* After the last offer: each unit's items best first (the heaps are gone,
 * no more offers). */
void     tk_sort(tk_best *b);

static inline int    tk_count(const tk_best *b, int u) { return b->size[u]; }
static inline float  tk_score(const tk_best *b, int u, int rank) { return b->score[(size_t)u * b->K + rank]; }
static inline size_t tk_item(const tk_best *b, int u, int rank) { return b->item[(size_t)u * b->K + rank]; }

#endif
