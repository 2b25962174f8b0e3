/* interp.h - the analyses behind explore, over a Transformer and an SAE
 * trained on it: the top activating names of every SAE feature or residual
 * neuron with their activation at each letter, activation frequencies,
 * rankings of tokens by logit, the logit lens, and the letter embeddings'
 * principal components and cosine neighbours.  explore parses flags and
 * prints what these compute.
 *
 * A "unit" is one SAE feature (f of sae.h, U = n_features) or, without an
 * SAE, one dimension of the residual stream (U = d_model).
 *
 * Rankings: a higher value ranks first; equal values rank the lower index
 * first, so that every ranking is deterministic.
 */
#ifndef VILLES_INTERP_H
#define VILLES_INTERP_H

#include <stdbool.h>
#include <stddef.h>

#include "dataset.h"
#include "error.h"
#include "sae.h"
#include "topk.h"
#include "transformer.h"

/* order (n) = 0 .. n-1 by v (n) descending. */
err_code ip_rank(const double *v, int n, int *order);

/* ---- Top names and frequencies of every unit ------------------------------ */

/* One pass over the residual rows of many names (sae_acts: row 0 of a name
 * is <SOS>, skipped; the letters are rows 1 .. len). */
typedef struct ip_scan {
    int     U;            /* units */
    int     first, n;     /* the units with top lists: first .. first + n - 1 */
    int     L;            /* the longest name (letters): the stride of letters */
    size_t  positions;    /* letters seen */
    size_t *active;       /* (U) letters where the unit is > 0 */
    tk_best best;         /* (n, K) names, as indices of the acts, by their
                             highest activation over their letters */
    float  *letters;      /* (n, K, L) each kept name's activation at its letters */
} ip_scan;

/* Every unit's active count; and for unit `only` (every unit when only is
 * -1) the K names of highest maximum activation, with the activation at
 * each of their letters.  sae NULL: the units are the residual dimensions.
 * positive_only: a name enters a unit's list only if the unit fires on it
 * (> 0).  ERR_ARG "feature N out of range" ("neuron" without an SAE) when
 * only >= U. */
err_code ip_scan_units(ip_scan *sc, const sae_acts *a, const sae_model *sae, int K, int only,
                       bool positive_only);
void     ip_scan_free(ip_scan *sc);

/* Fraction of the letters where unit u is active; 0 before any letter. */
double ip_freq(const ip_scan *sc, int u);
/* The names kept for unit u (0 for a unit without a list), best first:
 * rank 0 .. ip_top_count - 1; the three below take only such a rank. */
int    ip_top_count(const ip_scan *sc, int u);
size_t ip_top_name(const ip_scan *sc, int u, int rank);     /* index of the name in the acts */
float  ip_top_score(const ip_scan *sc, int u, int rank);    /* its highest letter activation */
/* Its activation at letters 1 .. len (len = the name's length). */
const float *ip_top_letters(const ip_scan *sc, int u, int rank);

/* ---- Logits -------------------------------------------------------------- */

/* The letters feature `feature` pushes up and down: logit (V) its decoder
 * direction through the final RMSNorm weight and the unembedding
 * (sae_feature_logits); order (V) the tokens a model can predict (<EOS>
 * and the characters, never <pad> or <SOS>) ranked by it, *n of them.
 * ERR_ARG when the feature is out of range. */
err_code ip_feature_logits(const sae_model *s, const tf_model *tf, int feature, float *logit,
                           int *order, int *n);

/* The logit lens of one name: the residual stream after each layer L (0 =
 * the embeddings .. n_layers) at each position (0 = <SOS>, p = after the
 * p-th letter) read through the final norm and the unembedding
 * (tf_unembed), softmaxed; the K most probable next tokens of each. */
typedef struct ip_lens {
    int     n_layers, T, K;   /* layers 0 .. n_layers, T = letters + 1 positions */
    int    *tok;              /* (n_layers + 1, T, K) predictions, best first */
    double *prob;             /* (n_layers + 1, T, K) their probabilities */
} ip_lens;

/* tok: the name's n letters; K is cut to the predictable tokens. */
err_code ip_logit_lens(ip_lens *out, const tf_model *tf, const int *tok, int n, int K);
void     ip_lens_free(ip_lens *l);
static inline size_t ip_lens_at(const ip_lens *l, int layer, int pos)   /* first of its K */
{
    return ((size_t)layer * l->T + pos) * l->K;
}

/* ---- Embeddings ----------------------------------------------------------- */

/* xy (n, 2) = the rows of E (n, d) centred and projected on their first two
 * principal components (power iteration with deflation; each component's
 * sign makes its largest coordinate positive). */
err_code ip_pca2(const float *E, int n, int d, double *xy);
/* The same in two steps, to project other vectors on the rows' axes:
 * mean (d) of the n >= 1 rows, axes (2, d) the two unit principal axes; */
err_code ip_pca2_axes(const float *E, int n, int d, double *mean, double *axes);
/* xy (2) = (x (d) - mean) . axes. */
void     ip_pca2_project(const double *mean, const double *axes, int d, const float *x, double xy[2]);

/* For each row r of E (n, d): nb (n, K) the K other rows of highest cosine
 * similarity, cos (n, K) those similarities (0 against a zero row).
 * 0 <= K <= n - 1. */
err_code ip_cosine_neighbours(const float *E, int n, int d, int K, int *nb, float *cos);

#endif
