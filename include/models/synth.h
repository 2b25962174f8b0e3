/* synth.h - synthesis of a concept: beam search under a Transformer for
 * names that make one SAE feature fire strongly while staying probable.
 *
 * A name c_1 .. c_n scores
 *   J = weight * a / a_ref - nll
 * where a is the feature's highest activation at the name's letters (the
 * residual after c_i, at the SAE's layer), a_ref a reference activation
 * (the feature's highest on the training names, so that weight reads
 * "nats for reaching the feature's usual top") and nll the name's negative
 * log-likelihood under the model, <EOS> included (nats).
 *
 * Beam search: W partial names, each extended by every character and by
 * <EOS>; the children are ranked first by the J their parent's activation
 * gives (a child's own activation needs its forward pass), the best 4 W of
 * them run through the model (their activation at the new letter and
 * their next-letter distribution), and the best W by J go on.  Finished
 * names of at least SYN_MIN_CHARS characters on which the feature fires
 * and that `keep` accepts (e.g. not
 * in the training data) are collected; the best K by J are returned.
 */
#ifndef VILLES_SYNTH_H
#define VILLES_SYNTH_H

#include <stdbool.h>

#include "error.h"
#include "sae.h"
#include "transformer.h"

enum { SYN_MIN_CHARS = 3, SYN_POOL_PER_BEAM = 4 };

typedef struct syn_config {
    int    feature;      /* in [0, n_features) */
    int    beam;         /* W >= 1 */
    int    count;        /* K >= 1: names returned */
    int    max_chars;    /* 0 = the model's limit (max_len - 1) */
    double weight;       /* nats per a_ref of activation (> 0) */
    double act_ref;      /* a_ref (> 0) */
    /* Optional: whether a finished name (tok, n characters) may be returned. */
    bool (*keep)(void *ctx, const int *tok, int n);
    void  *keep_ctx;
} syn_config;

typedef struct syn_name {
    int   *tok;          /* the characters (malloc'ed) */
    int    n;
    float  act;          /* highest activation of the feature over the letters */
    int    at;           /* the letter where it is reached (1 .. n) */
    double nll;          /* nats, <EOS> included: loss per char = nll / (n + 1) */
    double score;        /* J */
} syn_name;

/* The best names, best first: *out (malloc'ed, *n_out <= count of them).
 * ERR_ARG naming the feature when it is out of range. */
err_code syn_search(const sae_model *s, const tf_model *tf, const syn_config *c, syn_name **out,
                    int *n_out);
void     syn_names_free(syn_name *names, int n);

#endif
