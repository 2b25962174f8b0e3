/* model.h - any trained language model behind one interface.
 *
 * generate, explore and steer load a checkpoint with mdl_load() and drive it
 * through mdl_start() / mdl_next() without knowing its kind.  Each kind
 * (ngram, mlp, rnn, transformer) supplies an mdl_kind vtable; the state
 * carries whatever makes the next step cheap (the n-1 previous tokens, an
 * RNN's hidden state, a Transformer's key/value cache), so producing a name
 * never recomputes its prefix.
 */
#ifndef VILLES_MODEL_H
#define VILLES_MODEL_H

#include <stddef.h>

#include "checkpoint.h"
#include "error.h"
#include "rng.h"
#include "sampling.h"
#include "text.h"

typedef struct mdl_kind {
    const char *name;                                      /* metadata "model" value */
    /* Build the model from a checkpoint already read (format and kind checked). */
    err_code (*load)(const ck_file *f, const char *path, void **impl);
    void     (*free)(void *impl);
    /* Per-stream state; new returns NULL (err_set) on failure. */
    void    *(*state_new)(const void *impl);
    void     (*state_free)(void *st);
    /* Forget everything: the next token fed is the first one (<SOS>). */
    void     (*start)(const void *impl, void *st);
    /* Feed token `tok` at the next position; write next-token logits (V). */
    void     (*next)(const void *impl, void *st, int tok, float *logits);
    /* Longest sequence the model can take (positions incl. <SOS>); 0 = unbounded. */
    int      (*max_len)(const void *impl);
} mdl_kind;

/* A kind's load, for a kind whose model is one struct of `size` bytes:
 * allocate it zeroed, fill it with fill(m, f, path) and hand it out in
 * *impl.  When fill fails, the kind's free (which must accept what a failed
 * fill leaves) releases it and *impl is NULL. */
err_code mdl_load_struct(const ck_file *f, const char *path, void **impl, size_t size,
                         err_code (*fill)(void *m, const ck_file *f, const char *path),
                         void (*kind_free)(void *impl));

/* For the config parsers of the models: the integer member `key` of a
 * config object (|value| <= 1e9) into *out; ERR_FORMAT "WHAT config: 'KEY'
 * is missing or not an integer" otherwise. */
struct cJSON;
err_code mdl_config_int(const struct cJSON *config, const char *what, const char *key, int *out);

typedef struct mdl {
    const mdl_kind *kind;
    void           *impl;
    txt_vocab       vocab;
    ck_file         file;     /* the checkpoint, kept for metadata look-ups */
} mdl;

typedef struct mdl_state { const mdl *m; void *st; } mdl_state;

/* The registry of kinds (src/models/model.c). */
const mdl_kind *mdl_find_kind(const char *name);

/* Load any villes checkpoint: format checked, kind looked up in the
 * registry (ERR_FORMAT "unknown model kind 'x'" otherwise), vocab parsed. */
err_code mdl_load(mdl *m, const char *path);
/* The same from a checkpoint already read, which m takes over (*f is
 * emptied, also on error); path names it in messages. */
err_code mdl_load_file(mdl *m, ck_file *f, const char *path);
void     mdl_free(mdl *m);
int      mdl_vocab_size(const mdl *m);
int      mdl_max_len(const mdl *m);
/* Most characters a name may have: max_len - 1 (<SOS> takes a position);
 * INT_MAX for an unbounded model. */
int      mdl_max_chars(const mdl *m);

err_code mdl_state_new(mdl_state *s, const mdl *m);
void     mdl_state_free(mdl_state *s);
void     mdl_start(mdl_state *s);
void     mdl_next(mdl_state *s, int tok, float *logits);

/* Sample one name: <SOS>, then the forced prefix tokens, then sampled
 * characters until <EOS> or max_chars characters.  <pad> and <SOS> are never
 * sampled.  tok receives the characters (no <SOS>/<EOS>); returns their
 * count.  scratch holds 3 * V floats. */
int mdl_sample_name(mdl_state *s, const smp_config *c, rng *r, const int *prefix,
                    int n_prefix, int max_chars, int *tok, float *scratch);

/* Negative log-likelihood (nats) of a name: the sum over its characters and
 * the final <EOS>; *n_pred receives n + 1.  scratch holds V floats. */
double mdl_score_name(mdl_state *s, const int *tok, int n, int *n_pred, float *scratch);

#endif
