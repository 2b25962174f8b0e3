/* dataset.h - the names dataset, its seeded split, and batches.
 *
 * A name is stored as its character tokens only; a batch row is
 *   x = <SOS> c1 ... cn            y = c1 ... cn <EOS>
 * padded with <pad> (0) to T = the longest name in the batch + 1, so
 * sequences are trimmed to the batch rather than padded to the dataset max.
 */
#ifndef VILLES_DATASET_H
#define VILLES_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "rng.h"
#include "text.h"

enum { DS_MIN_NAME_LEN = 3 };   /* shorter lines are skipped, as tools/villes_torch.py does */

typedef struct ds_names {
    int    *tok;      /* character tokens of all names, concatenated */
    size_t *start;    /* n + 1 offsets into tok */
    size_t  n;        /* number of names */
    int     max_len;  /* longest name, in characters */
} ds_names;

static inline int ds_len(const ds_names *d, size_t i) { return (int)(d->start[i + 1] - d->start[i]); }
static inline const int *ds_name(const ds_names *d, size_t i) { return d->tok + d->start[i]; }

/* Encode every line of at least DS_MIN_NAME_LEN characters. */
err_code ds_from_lines(ds_names *out, const txt_lines *lines, const txt_vocab *v);
void     ds_free(ds_names *d);

/* *order (d->n, malloc'ed, the caller frees it) = the indices of d's names
 * by length, then by index: batches cut from this order waste little on
 * padding, and the order is the same on every run. */
err_code ds_length_order(const ds_names *d, size_t **order);

/* out = the distinct names of all, each once, in the order of its first
 * row (explore counts every name once, however often the file repeats it).
 * Names compare by their tokens, as the split below does. */
err_code ds_distinct(ds_names *out, const ds_names *all);

/* A training corpus: the vocabulary and the train / validation names.
 * Without val_path: a seeded split of the *distinct* names, val_frac of
 * them for validation; every row of a name goes to that name's side, so no
 * validation name is a training name.  With val_path: that file is the
 * validation set.  The vocabulary covers the characters of both sides. */
typedef struct ds_corpus {
    txt_vocab vocab;
    ds_names  train, val;
    uint64_t  split_seed;
} ds_corpus;

err_code ds_load(ds_corpus *c, const char *data_path, const char *val_path,
                 uint64_t split_seed, double val_frac);
/* Same, but encode with a fixed vocabulary (a checkpoint's); a character
 * outside it is an error naming the file. */
err_code ds_load_with_vocab(ds_corpus *c, const txt_vocab *v, const char *data_path,
                            const char *val_path, uint64_t split_seed, double val_frac);
void     ds_corpus_free(ds_corpus *c);

/* ---- folds (out-of-fold teachers, --fold K/N) -----------------------------
 * Fold of a name: a seeded hash of its code points (not of its tokens, so
 * any vocabulary that encodes it agrees) modulo n_folds.  It depends only
 * on the name and the seed, never on the train/validation split or on the
 * order of the file, so that every row of a name, in every trainer, falls
 * in the same fold. */
enum { DS_MAX_FOLDS = 64 };

int ds_fold_of(const txt_vocab *v, const int *tok, int len, uint64_t seed, int n_folds);
/* Drop from c->train every name of fold k of n_folds (seed c->split_seed);
 * the validation names stay.  c->train.max_len stays the longest name of
 * the whole training side (an upper bound of those left), so that a model
 * sized on it (a Transformer's positions) can score every training name
 * when it teaches the names it did not see.  ERR_ARG for k outside [0, n_folds) or
 * n_folds outside [2, DS_MAX_FOLDS], or when no training name is left. */
err_code ds_drop_fold(ds_corpus *c, int k, int n_folds);
/* "K/N" (as --fold and the checkpoints' "fold" metadata write it) into *k,
 * *n; ERR_ARG unless 0 <= K < N, 2 <= N <= DS_MAX_FOLDS. */
err_code ds_fold_parse(const char *s, int *k, int *n_folds);

typedef struct ds_batch {
    int    B, T;       /* rows, time steps (T = longest name in the batch + 1) */
    int   *x, *y;      /* (B, T) inputs and targets, row-major, <pad> = 0 */
    size_t n_tokens;   /* non-pad targets */
    int    cap_B, cap_T;
    /* Optional soft targets (distillation, train.h): (B, T, V) next-token
     * distributions at the non-pad targets, mixed into the loss at weight
     * soft_weight (ops.h: op_batch_cross_entropy); NULL = hard targets only.
     * Set by the training loop; ds_batch_fill leaves them alone. */
    const float *soft;
    float        soft_weight;
} ds_batch;

/* Fill a batch from names idx[0..B).  Grows the buffers only when needed,
 * so a batch reused across steps allocates nothing after the first. */
err_code ds_batch_fill(ds_batch *b, const ds_names *d, const size_t *idx, int B);
void     ds_batch_free(ds_batch *b);

/* Data noising (the trainers' --input-noise): cdf (V) = the cumulative
 * frequencies of d's letters (<pad>, <SOS> and <EOS> never occur in names,
 * so are never drawn); ds_noise_inputs replaces each input letter of b (not
 * the <SOS> of column 0, not padding) with probability p by a letter drawn
 * from cdf with r, leaving the targets as they are. */
void     ds_letter_cdf(const ds_names *d, size_t V, double *cdf);
void     ds_noise_inputs(ds_batch *b, const double *cdf, size_t V, float p, rng *r);

#endif
