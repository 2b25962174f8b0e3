/* states.h - one name through the Transformer, layer by layer: the path of
 * its residual states against the letter embeddings (norms, cosines, ranks,
 * 2-D PCA coordinates), and the attention weights of every head.  explore's
 * `path` and `attention` print and draw what these compute.
 *
 * Positions: 0 = <SOS>, p = after reading the p-th letter, T = letters + 1.
 * Layers: 0 = the embeddings (token + position) .. n_layers = the input of
 * the final norm, as tf_residual counts them.
 */
#ifndef VILLES_STATES_H
#define VILLES_STATES_H

#include "error.h"
#include "transformer.h"

/* The residual states of one name and their geometry.  "Predictable"
 * tokens are <EOS> and the characters (never <pad> or <SOS>); ranks count
 * from 1 among them, by cosine similarity to the state. */
typedef struct st_path {
    int     n_layers, T, d, V;
    int    *in, *next;        /* (T) the input token at each position, the token after it */
    int    *pred;             /* (T) the model's prediction there (argmax of the final logits) */
    double *norm;             /* (n_layers + 1, T) |state| */
    double *cos_next;         /* (n_layers + 1, T) cosine of the state to emb[next] */
    double *cos_in;           /* ... to emb[in] */
    double *cos_pred;         /* ... to emb[pred] */
    int    *rank_pred;        /* (n_layers + 1, T) rank of pred by cosine */
    int    *rank_next;        /* ... of next */
    double *emb_xy;           /* (n_layers + 1, T, 2) the state on the embeddings' 2 principal axes */
    double *dir_xy;           /* (n_layers + 1, T, 2) the state's direction (the state scaled to
                                 the embeddings' mean norm) on the embeddings' axes: where it
                                 points among the letters, its growing norm left out */
    double *state_xy;         /* (n_layers + 1, T, 2) on the axes of this name's own states */
    double *tok_xy;           /* (V, 2) each token's embedding on the embeddings' axes (row 0 unused) */
} st_path;

/* Layer L's cell at position p of a (n_layers + 1, T) table. */
static inline size_t st_at(const st_path *s, int L, int p) { return (size_t)L * s->T + p; }

/* tok: the name's n >= 0 letters; ERR_ARG when n + 1 > max_len.  The
 * embeddings' axes are fitted on every token but <pad>, as explore
 * embeddings does. */
err_code st_path_compute(st_path *out, const tf_model *tf, const int *tok, int n);
void     st_path_free(st_path *s);

/* w (n_layers, n_heads, T, T): the attention weight of query position i on
 * key position j <= i in each layer and head (softmax of q.k / sqrt(d_head)
 * over the causal prefix; 0 for j > i).  Caller frees *w. */
err_code st_attention(const tf_model *tf, const int *tok, int n, float **w);

#endif
