/* ngram.h - n-gram language models of any order, with smoothing.
 *
 * Order n: the next token is predicted from the previous n-1 tokens, the
 * context, padded with <SOS> at the start of a name (the context of c1 is
 * <SOS>^(n-1)).  Order 0 is the uniform distribution, order 1 the unigram.
 * Predictions are over the support {<EOS>, characters}: <pad> and <SOS> are
 * never targets and get probability 0.
 *
 * Smoothing (c = count, h = context, S = support size, D = discount):
 *   none  maximum likelihood c(h w) / c(h); an unseen n-gram has probability
 *         0 (loss inf).  A context never seen in training has no maximum
 *         likelihood estimate: it gets the uniform distribution (the k -> 0
 *         limit of add-k), so that every context is a distribution.
 *   addk  (c(h w) + k) / (c(h) + k S).
 *   kn    interpolated Kneser-Ney, recursively down to the uniform
 *         distribution:
 *           P_k(w|h) = (max(a(h w) - D_k(a(h w)), 0) + m(h) P_{k-1}(w|h')) / a(h .)
 *         a = the raw count at the highest order, the continuation count
 *         N1+(. h w) below; m(h) = sum over w of D_k(a(h w)), the mass left
 *         to the lower order.  By default the discounts are those of
 *         modified Kneser-Ney (Chen & Goodman): three per order, for counts
 *         1, 2 and 3+, estimated from the counts of counts (villes.txt, 7-gram:
 *         validation 1.557 nats/char, against 1.580 with one D = 0.75 and
 *         1.564 with the best single D); a fixed discount D replaces them
 *         all.  A context with a(h .) = 0 backs off entirely to P_{k-1}.
 *
 * Counts are sparse: per order, an open-addressing hash table of the
 * contexts seen, keyed by the token tuple packed into 64 bits (ceil(log2 V)
 * bits a token), each with the list of its continuations.  Only the
 * distinct order-n grams and their counts are stored in a checkpoint; the
 * lower orders are recomputed from them when it is loaded.
 */
#ifndef VILLES_NGRAM_H
#define VILLES_NGRAM_H

#include <stddef.h>

#include "checkpoint.h"
#include "dataset.h"
#include "error.h"
#include "model.h"
#include "text.h"

#define NG_KIND "ngram"

typedef enum ng_smoothing { NG_NONE, NG_ADDK, NG_KN } ng_smoothing;

/* The words of --smoothing and of the checkpoint config, NULL-terminated,
 * in ng_smoothing order. */
extern const char *const ng_smoothing_names[];

typedef struct ng_config {
    int          vocab_size;
    int          order;      /* n >= 0 */
    ng_smoothing smoothing;
    double       k;          /* add-k pseudo-count, > 0 */
    double       discount;   /* Kneser-Ney discount in [0, 1], or NG_DISCOUNT_ESTIMATED */
} ng_config;

/* add-k default: the best of 1, 0.1, 0.05, 0.03, 0.01 on villes.txt for orders 3 to 7. */
#define NG_DEFAULT_K 0.05
/* The discount of modified Kneser-Ney's estimates when they are undefined. */
#define NG_DEFAULT_DISCOUNT 0.75
/* discount: estimate three discounts per order from the counts of counts. */
#define NG_DISCOUNT_ESTIMATED (-1.0)

/* ngram's defaults; smoothing none is the program's choice for order 0. */
#define NG_DEFAULTS ((ng_config){ .vocab_size = 0, .order = 3, .smoothing = NG_KN, \
    .k = NG_DEFAULT_K, .discount = NG_DISCOUNT_ESTIMATED })

/* Largest order whose grams fit the 64-bit key for a vocabulary of V tokens. */
int ng_max_order(int V);

/* ERR_ARG naming the first field out of range; the order must fit the key
 * (ng_max_order). */
err_code ng_config_check(const ng_config *c);
/* {"vocab_size":46,"order":3,"smoothing":"kn","k":0.05,"discount":-1}
 * (discount -1 = estimated).  Caller frees. */
err_code ng_config_to_json(const ng_config *c, char **json);
/* Parse and check; ERR_FORMAT on a missing or ill-typed field. */
err_code ng_config_from_json(ng_config *c, const char *json);

/* The model is fitted, not trained (model.h's exceptions): opaque, built
 * and allocated by ng_fit or ng_load, released by ng_free. */
typedef struct ng_model ng_model;

/* Count the n-grams of the names in d (tokens of a vocabulary of
 * c->vocab_size tokens).  ERR_ARG for a config out of range. */
err_code ng_fit(ng_model **out, const ng_config *c, const ds_names *d);
/* From a checkpoint already read: config, then the stored n-grams (every
 * one checked), the lower orders recomputed.  Messages name path. */
err_code ng_load(ng_model **out, const ck_file *f, const char *path);
void     ng_free(ng_model *m);

/* Number of distinct order-n grams stored (the "params" of the summary). */
size_t ng_size(const ng_model *m);

/* The next-token distribution given ctx, the previous n-1 tokens (oldest
 * first), into p (V entries); ng_prob is its entry w. */
void   ng_dist(const ng_model *m, const int *ctx, double *p);
double ng_prob(const ng_model *m, const int *ctx, int w);

/* Negative log-likelihood of every target of every name in d (the
 * characters and each final <EOS>): returns the sum in nats (INFINITY when a
 * target has probability 0) and sets *n_pred to the number of targets. */
double ng_nll(const ng_model *m, const ds_names *d, size_t *n_pred);

/* Write a villes checkpoint (model NG_KIND) with the vocabulary v: its
 * config and tensors grams I32 (N, n) and counts I32 (N). */
err_code ng_save(const ng_model *m, const txt_vocab *v, const char *path);
/* The same with n_meta more metadata entries {key, value} (e.g. the
 * "fold" and "split_seed" of a model fitted with --fold, distill.h). */
err_code ng_save_meta(const ng_model *m, const txt_vocab *v, const char *path,
                      const char *const (*meta)[2], int n_meta);

/* Behind the generic model interface (model.h): the state is the context. */
extern const mdl_kind ng_kind;

#endif
