/* trsamples.h - names sampled during training (the trainers' --samples N).
 *
 * At each evaluation the program samples N names from the model being
 * trained, through the model-kind interface (model.h) on the live weights,
 * with an rng of its own seeded from --seed and the step: the training run
 * (its rng, its weights) is untouched, and a resumed run samples what the
 * uninterrupted one does.  What it measures goes into the --log learning
 * curve (TRS_LOG_COLUMNS); a few names are shown on a terminal.
 *
 *   trs_sampler t;
 *   if (trs_init(&t, &session, &model, n)) ...   // the kind must generate names
 *   at each evaluation: trs_sample(&t, seed, step); t.copied, t.distinct, t.mean_len
 *   trs_free(&t);
 */
#ifndef VILLES_TRSAMPLES_H
#define VILLES_TRSAMPLES_H

#include <stdio.h>

#include "model.h"
#include "train.h"

/* The --log columns the samples add: share of the names already in the
 * training data, share of distinct names among them, mean length in
 * characters. */
#define TRS_LOG_COLUMNS "\tcopied\tdistinct\tmean_len"

enum { TRS_MAX_CHARS = 64 };   /* a name is cut there (an untrained model rambles) */

/* A name as tokens, for sorting and look-ups. */
typedef struct trs_key { const int *tok; int len; } trs_key;

typedef struct trs_sampler {
    mdl             model;      /* a view of the trained model: nothing of it is owned */
    trs_key        *sorted;     /* the training names in token order, for look-ups */
    size_t          n_train;
    long            n;          /* names per evaluation */
    int            *tok;        /* n * TRS_MAX_CHARS: the names of the last round */
    trs_key        *names;      /* n: the last round's names, into tok */
    float          *scratch;    /* 3 V */
    double          copied, distinct, mean_len;   /* of the last round */
} trs_sampler;

/* For m (the kind must be in the registry and generate names) trained on
 * s's names: ERR_ARG "KIND does not generate names" otherwise. */
err_code trs_init(trs_sampler *t, const tr_session *s, const tr_model *m, long n);
/* Sample t->n names with an rng seeded from (seed, step); fill the shares
 * (NaN when it fails). */
err_code trs_sample(trs_sampler *t, uint64_t seed, long step);
/* The first names of the last round, UTF-8, ", " between them, cut to at
 * most width bytes of out (width < cap). */
void     trs_show(const trs_sampler *t, char *out, size_t cap, size_t width);
/* The TRS_LOG_COLUMNS values of the last round, each after a tab. */
void     trs_log_values(const trs_sampler *t, FILE *f);
void     trs_free(trs_sampler *t);

#endif
