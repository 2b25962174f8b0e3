/* mix.h - mixtures of language models: several component models of any
 * kind (one vocabulary) whose next-token distributions are combined, in
 * one self-contained checkpoint.
 *
 * With p_k the distribution of component k after the same prefix, and b
 * the bucket of the position predicted (one bucket, or MIX_POSITION_BUCKETS
 * by position), the mixture predicts
 *   linear:     p(y) = sum_k w[b][k] p_k(y)             (w[b] >= 0, sums to 1)
 *   log-linear: p(y) ∝ exp(sum_k w[b][k] log p_k(y)     (any real w, renormalised)
 *                          + w[b][K] [y = <EOS>])       (with an <EOS> bias)
 * log p_k is floored at MIX_LOG_FLOOR, so a component that gives a
 * character probability 0 (an unsmoothed n-gram) cannot zero the product.
 * The <EOS> bias, a weight of its own per bucket, moves the odds of
 * ending there: by position it corrects the length of the names; with
 * weights by known names it learns how rarely a held-out name ends where
 * a training name does (never, in a split of distinct names), so the
 * mixture invents rather than copies.
 *
 * Fitting (mix_fit): linear weights by EM, log-linear ones by Newton's
 * method on the negative log-likelihood (convex in w), each bucket on its
 * own, over the targets of a set of names: the characters and the final
 * <EOS> of each.  Honest numbers come from cross-fitting: the names are
 * cut in two seeded halves, weights fitted on one half score the other
 * (mix_crossfit).
 *
 * Checkpoint (model "mix"): config {"vocab_size", "n_components", "mode",
 * "buckets", "n_buckets", "eos_bias"} ("eos_bias" false when absent), vocab,
 * the weights "mix.weights" F32 (n_buckets, n_components + eos_bias: the
 * <EOS> bias last), with weights by known names the set
 * "mix.known" I32 (n_known, 2): the sorted 64-bit hashes (mix_hash_token)
 * of the training names, as (low, high) 32-bit halves, and each
 * component k whole under the prefix
 * "components.k.": its tensors (without optimiser state) and its metadata
 * (format, model, config, vocab, ...), so it loads as it did on its own.
 */
#ifndef VILLES_MIX_H
#define VILLES_MIX_H

#include <stdbool.h>
#include <stdint.h>

#include "dataset.h"
#include "error.h"
#include "model.h"

#define MIX_KIND "mix"
#define MIX_LOG_FLOOR (-30.0f)

enum {
    MIX_MAX_COMPONENTS = 16,
    MIX_MAX_WEIGHTS = MIX_MAX_COMPONENTS + 1,   /* per bucket: the components', the <EOS> bias */
    MIX_POSITION_BUCKETS = 7,    /* positions 0, 1, 2, 3-4, 5-7, 8-11, 12+ */
    MIX_EVIDENCE_BUCKETS = 9,    /* evidence 0 .. 7, and 8 or more */
    MIX_KNOWN_BUCKETS = 2 * MIX_POSITION_BUCKETS,   /* position x (name so far known or not) */
    MIX_MAX_BUCKETS = MIX_KNOWN_BUCKETS,
    MIX_MAX_KNOWN = 1 << 24      /* known names a checkpoint may hold */
};

typedef enum mix_mode { MIX_LINEAR, MIX_LOGLINEAR } mix_mode;
/* Context-dependent weights: one set, a set per position of the letter
 * predicted, a set per value of the evidence (mdl_evidence) of the first
 * component that has one (an n-gram: the longest context order it saw in
 * training, so the mixture trusts it where its counts are rich), or a set
 * per position and per whether the name so far is itself one of the
 * training names (the mixture's known set): where a name could end as a
 * copy, the components that memorise are trusted as much as held-out
 * names show they should be. */
typedef enum mix_buckets { MIX_ONE_BUCKET, MIX_BY_POSITION, MIX_BY_EVIDENCE, MIX_BY_KNOWN } mix_buckets;

/* The words of the config and of mix's flags, NULL-terminated, in enum order. */
extern const char *const mix_mode_names[];
extern const char *const mix_bucket_names[];

typedef struct mix_config {
    int         vocab_size;
    int         n_components;   /* 1..MIX_MAX_COMPONENTS */
    mix_mode    mode;
    mix_buckets buckets;
    bool        eos_bias;       /* log-linear only: a bias on <EOS>'s logit per bucket */
} mix_config;

/* Where a prediction is made: its position (0 = the first character,
 * predicted after <SOS>), the evidence of the components (-1: none), and
 * whether the characters before it are a known name (0 or 1). */
typedef struct mix_where { int pos, evidence, known; } mix_where;

/* Buckets of a config: 1, MIX_POSITION_BUCKETS, MIX_EVIDENCE_BUCKETS or MIX_KNOWN_BUCKETS. */
int mix_n_buckets(const mix_config *c);
/* Weights per bucket: n_components, and the <EOS> bias when there is one. */
int mix_n_weights(const mix_config *c);
/* The bucket of a prediction made at w. */
int mix_bucket(const mix_config *c, mix_where w);
/* The component whose evidence MIX_BY_EVIDENCE uses: the first whose kind
 * has one; -1 when none has. */
int mix_evidence_component(const mdl *components, int K);

err_code mix_config_check(const mix_config *c);
err_code mix_config_to_json(const mix_config *c, char **json);
err_code mix_config_from_json(mix_config *c, const char *json);

/* The components (loaded models, owned), the weights (n_buckets, mix_n_weights), and
 * for MIX_BY_KNOWN the known names' hashes (sorted, distinct; owned). */
typedef struct mix_model {
    mix_config c;
    mdl        comp[MIX_MAX_COMPONENTS];
    float      w[MIX_MAX_BUCKETS * MIX_MAX_WEIGHTS];
    uint64_t  *known;
    size_t     n_known;
} mix_model;

/* ---- known names: a set of 64-bit hashes of token sequences ------------------ */

/* The hash of a name, token by token from MIX_HASH_START (FNV-1a over
 * each token's 4 bytes), so that a generation state keeps the hash of
 * the name so far in one word. */
#define MIX_HASH_START CK_FNV1A_BASIS
uint64_t mix_hash_token(uint64_t h, int tok);
/* The sorted, distinct hashes of every name of names, into *set (malloc'd). */
err_code mix_known_from_names(const ds_names *names, uint64_t **set, size_t *n);
bool     mix_known_has(const uint64_t *set, size_t n, uint64_t h);

/* Take the components (moved into m: the caller's mdl are emptied); they
 * must share one vocabulary (ERR_MISMATCH naming the first that differs),
 * and MIX_BY_EVIDENCE needs a component with evidence (ERR_ARG).
 * Weights start uniform (linear) or at 1/K (log-linear; no <EOS> bias). */
err_code mix_init(mix_model *m, const mix_config *c, mdl *components);
err_code mix_load(mix_model *m, const ck_file *f, const char *path, bool optim);
/* The vocabulary written is the components'. */
err_code mix_save(const mix_model *m, const char *path);
void     mix_free(mix_model *m);

/* ---- fitting ---------------------------------------------------------------- */

/* What the components say about every target of a set of names: for each
 * target its bucket position and, per component, the floored
 * log-probabilities of every token (n, K, V). */
typedef struct mix_data {
    int      K, V;
    size_t   n;           /* targets */
    size_t   n_names;
    size_t  *first;       /* (n_names + 1) first target of each name */
    mix_where *where;     /* (n) where each prediction is made */
    int     *target;      /* (n) */
    float   *logp;        /* (n, K, V) */
} mix_data;

/* Run every component over every name of d (their cached states: no
 * prefix is recomputed).  Names longer than a component can take are an
 * error naming the name's index.  Every where.known is 0. */
err_code mix_data_collect(mix_data *d, const mdl *components, int K, const ds_names *names);
/* Set where.known of every target of d (collected from names) against
 * the known set. */
void     mix_data_mark_known(mix_data *d, const ds_names *names, const uint64_t *set, size_t n);
/* The known set of m from known_names (the components' training names),
 * and d (collected from names) marked against it; mix_save writes the set
 * only when the weights are by known names. */
err_code mix_known_attach(mix_model *m, mix_data *d, const ds_names *known_names, const ds_names *names);
void     mix_data_free(mix_data *d);

/* Fit c's weights into w (n_buckets, mix_n_weights) on the targets of the names whose
 * side[i] == which (side NULL: every name). */
err_code mix_fit(const mix_data *d, const mix_config *c, const uint8_t *side, int which, float *w);
/* Negative log-likelihood (nats) of the same targets under weights w, and
 * their count in *n. */
double   mix_nll(const mix_data *d, const mix_config *c, const float *w, const uint8_t *side,
                 int which, size_t *n);
/* Component k alone on the same targets (its nats and count). */
double   mix_component_nll(const mix_data *d, int k, const uint8_t *side, int which, size_t *n);
/* Two seeded halves of the names: side[i] in {0, 1}, sizes differing by at most one. */
err_code mix_halves(size_t n_names, uint64_t seed, uint8_t **side);
/* Cross-fitted mean loss (nats per target): weights fitted on each half
 * score the other half; the two halves' nats over all targets. */
err_code mix_crossfit(const mix_data *d, const mix_config *c, const uint8_t *side, double *loss);

/* ---- generation: every component's state, combined ---------------------- */

typedef struct mix_state mix_state;

mix_state *mix_state_new(const mix_model *m);   /* NULL with err_set */
void       mix_state_free(mix_state *s);
void       mix_state_start(mix_state *s);
/* Feed tok to every component and write the mixture's log-probabilities
 * (V), which are logits. */
void       mix_state_next(mix_state *s, int tok, float *logits);
/* The shortest limit of the components (0 = none has one). */
int        mix_max_len(const mix_model *m);
/* Whether m is a mixture, or has one among its components at any depth,
 * whose weights are by known names: it tells a training name not to end
 * where it does, so it cannot teach training names (distillation). */
bool       mix_weighs_known_names(const mdl *m);

/* One mixture tried by mix_search: its config, its weights fitted on all
 * the names, their in-sample loss and the cross-fitted loss (nats per
 * target). */
typedef struct mix_trial {
    mix_config c;
    float      w[MIX_MAX_BUCKETS * MIX_MAX_WEIGHTS];
    double     fit_loss, crossfit_loss;
} mix_trial;

/* Which mixtures mix_search tries: a mode, a bucketing, with or without
 * the <EOS> bias (log-linear only), each MIX_ANY for all; evidence buckets
 * only when evidence (a component has some), known-name buckets only when
 * known (the data is marked). */
typedef struct mix_choices {
    int  mode, buckets, eos_bias;
    bool evidence, known;
} mix_choices;

enum { MIX_ANY = -1, MIX_MAX_TRIALS = 12 };

/* Every mixture of base that ch allows, into trials (MIX_MAX_TRIALS),
 * their count in *n; *best is the one of lowest cross-fitted loss. */
err_code mix_search(const mix_data *d, const mix_config *base, const mix_choices *ch,
                    const uint8_t *side, mix_trial *trials, int *n, int *best);

/* Behind the generic model interface (model.h). */
extern const mdl_kind mix_kind;

#endif
