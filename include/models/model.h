/* model.h - the model-kind contract, and any trained language model behind
 * one interface.
 *
 * generate, explore and steer load a checkpoint with mdl_load() (kinds.h)
 * and drive it through mdl_start() / mdl_next() without knowing its kind.
 * Each kind (ngram, mlp, rnn, transformer, mamba, mix) supplies an mdl_kind
 * vtable; the state carries whatever makes the next step cheap (the n-1
 * previous tokens, an RNN's hidden state, a Transformer's key/value cache),
 * so producing a name never recomputes its prefix.
 *
 * ---- The contract of a model kind ----------------------------------------
 *
 * A kind with prefix P (mlp, rnn, tf; the SAE's sae; ngram and mix with the
 * exceptions below) declares in include/models/P.h, which includes this
 * header and never kinds.h, with exactly these names:
 *
 *   #define P_KIND "name"      the metadata "model" value, the registry's name
 *   typedef struct P_config { int vocab_size; ... } P_config;
 *   #define P_DEFAULTS ((P_config){ ... })   the trainer's defaults; vocab_size
 *                                            0 (the data decides it)
 *   err_code P_config_check(const P_config *c);
 *       ERR_ARG naming the first field out of range by its JSON name.
 *   err_code P_config_to_json(const P_config *c, char **json);
 *       Serialise only, no check (a trainer writes P_DEFAULTS before the
 *       vocabulary is known); the caller frees *json.
 *   err_code P_config_from_json(P_config *c, const char *json);
 *       Parse, then check: ERR_FORMAT "P config: ...".
 *   typedef struct P_model { P_config c; tn_params p; tensor *...; } P_model;
 *       Every parameter in p (one buffer: cheap AdamW, cheap saves); the
 *       tensor pointers are views into it, so a model is never moved.
 *   err_code P_init(P_model *m, const P_config *c);
 *       Check c, declare the parameters (a static function of P.c that
 *       P_load shares), then tn_params_alloc: allocated zeroed.
 *   void     P_init_weights(P_model *m, rng *r);
 *       The PyTorch reference's initialisation.
 *   err_code P_load(P_model *m, const ck_file *f, const char *path, bool optim);
 *       From a checkpoint already read: mdl_read_meta, P_config_from_json,
 *       declare(), then tn_params_alloc_load (the parameters, and the
 *       optimiser moments when optim): every declared tensor is checked
 *       against the file before anything is allocated, so a hostile config
 *       (a huge model beside small tensors) costs nothing.
 *       Messages name path; on failure nothing is left to free.
 *   err_code P_save(const P_model *m, const txt_vocab *v, const char *path);
 *       The model alone (mdl_save_params); the training state is the
 *       training loop's (train.h).
 *   void     P_free(P_model *m);   harmless on a zeroed or freed model
 * and, for a kind that trains (data-parallel --threads, train.h):
 *   void *P_replica_new(const void *impl, float *grad);
 *   void  P_replica_free(void *replica);
 *       A worker's replica of the P_model impl: the same config, its
 *       parameter tensors aliasing impl's values and accumulating their
 *       gradients into grad (tn_params_alias); NULL with err_set.  P.c
 *       defines both with MDL_REPLICA(P, P_model, declare) from the static
 *       function that checks a config and declares the parameters without
 *       allocating them.  P_loss must read nothing of the model but its
 *       config and parameter tensors, and write nothing of it: replicas
 *       run at once on several threads.  tr_model.replica_new/_free.
 * and, for a kind that generates:
 *   typedef struct P_state P_state;             one stream
 *   P_state *P_state_new(const P_model *m);     NULL with err_set
 *   void     P_state_free(P_state *s);
 *   void     P_state_start(P_state *s);         the next token is the first
 *   void     P_state_next(P_state *s, int tok, float *logits);
 *   int      P_max_len(const P_model *m);       positions, <SOS> included; 0 = unbounded
 *   extern const mdl_kind P_kind;   in P.c: MDL_KIND(P, P_KIND, P_model, P_state);
 *
 * Exceptions:
 *   sae    does not generate (it reads a Transformer's residual stream):
 *          no state, no sae_kind, not in the registry.  Its config has no
 *          vocab_size, SAE_DEFAULTS leaves d_model, n_features and layer to
 *          its trainer (saetrain.h), and its file also names its
 *          Transformer (sae_put_meta).  No replica: sae-train feeds it
 *          through a tr_source of its own (saetrain.h) whose batches and
 *          dead-feature counts live in the trainer, so it trains on one tape.
 *   ngram  is fitted, not trained: no ng_init / ng_init_weights, no
 *          optimiser state.  Its model is opaque and allocated by ng_fit and
 *          ng_load(ng_model **out, f, path); ng_free frees it.  So ngram.c
 *          writes its vtable's functions itself and MDL_KIND_TABLE(ng, NG_KIND).
 *   mix    is made of loaded models of any kind (mix_init takes them) and
 *          fitted: no MIX_DEFAULTS (the mix program tries every mode), no
 *          mix_init_weights, and mix_save takes no vocabulary (its
 *          components carry it).  It loads its components through the
 *          registry: mix.c is the one kind's source that includes kinds.h.
 *
 * ---- How to add a model kind ------------------------------------------------
 *
 *  1. include/models/P.h and src/models/P.c: everything above, plus the
 *     training graph (P_loss(m, tape, batch): the mean cross-entropy over
 *     the non-pad targets).  The header starts with the architecture and
 *     the checkpoint's parameter names (those of the PyTorch reference).
 *     Helpers: mdl_config_object and mdl_config_int (config parsers),
 *     mdl_read_meta (P_load), mdl_save_params (P_save).  P.c ends with
 *         MDL_KIND(P, P_KIND, P_model, P_state);
 *     Optional: a batched step (mdl_kind.next_batch: the same logits, bit
 *     for bit, as next), through MDL_KIND_FUNCS and a table of its own, as
 *     transformer.c and mix.c do.
 *  2. src/models/kinds.c: #include "P.h" and one line &P_kind in kinds[].
 *     generate and mix then take it as it is (explore and steer open
 *     Transformers).
 *  3. src/cmd/P-train.c: copy src/cmd/transformer-train.c (the model
 *     trainer): its model-flag table (trc_flag rows, include/app/trcli.h),
 *     usage text from P_DEFAULTS, start_config (P_DEFAULTS through
 *     P_config_to_json into trc_config) and finish_config
 *     (trc_config_finish, P_config_from_json), then P_init, P_init_weights with
 *     the seed, tr_model { .kind = P_KIND, .params = &net.p, .loss,
 *     .config_json, .replica_new = P_replica_new, .replica_free =
 *     P_replica_free } and trc_run (--threads N then splits every batch
 *     across N replicas).  The Makefile builds every src/cmd/X.c.
 *     A sequence model also trains on running text (--text, BPE) with the
 *     few lines of include/app/trtext.h (see transformer-train.c).
 *  4. tools/villes_torch.py: the PyTorch reference (a class with kind =
 *     P_KIND, config(), state_dict names = the checkpoint's) and its case
 *     in model_from_config();
 *     tools/make-fixtures.py: a small config in small_configs(), then run it
 *     to write tests/data/fixtures/P.safetensors (inputs, logits, loss).
 *     tools/import-pytorch.py: its spec, so notebook weights convert.
 *  5. tests/unit/test_P.c (built and run by make test): parity with the
 *     fixture (logits 1e-4, loss 1e-5), P_state_next against the batched
 *     forward, the config's round trip and rejects, P_save -> mdl_load.
 *     tests/unit/test_dataparallel.c: the kind in its list (net_init), so
 *     that its replicas' summed gradient is checked against one tape's.
 *  6. tests/cli/test_P_train.sh: copy tests/cli/test_transformer_train.sh
 *     (help, usage errors, train -> generate -> score, --resume).
 *  7. README.md: the program's row in "The programs", the kind in
 *     "Checkpoints", its line in "Results".
 */
#ifndef VILLES_MODEL_H
#define VILLES_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>

#include "bpe.h"
#include "checkpoint.h"
#include "error.h"
#include "rng.h"
#include "sampling.h"
#include "tensor.h"
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
    /* Optional (NULL when the kind has none): how much the model knows of
     * the context it predicts from, as a small integer >= 0 (an n-gram: the
     * longest order of context seen in training).  A mixture can weigh its
     * components by it. */
    int      (*evidence)(const void *impl, const void *st);
    /* Optional (NULL: mdl_next_batch calls next for each stream): feed
     * tok[i] to stream st[i] for i < n (n <= MDL_BATCH_MAX, distinct
     * streams of this model) and write each one's logits into row i of
     * logits (n, V) -- the very logits, bit for bit, that next would give
     * it, whatever n and whichever streams share the call.  A kind that has
     * one reads its weights once per step for all n streams. */
    void     (*next_batch)(const void *impl, void *const *st, const int *tok, int n, float *logits);
} mdl_kind;

/* Most streams one next_batch call takes (mdl_next_batch cuts larger
 * batches). */
enum { MDL_BATCH_MAX = 256 };

/* The interface glue, written once: in src/models/P.c, after the typed
 * functions of the contract,
 *     MDL_KIND(P, P_KIND, P_model, P_state);
 * expands to the untyped wrappers the vtable holds and the vtable itself:
 *     static void P_kind_free(void *impl) { P_free(impl); free(impl); }
 *     static err_code P_kind_load(f, path, void **impl)
 *         calloc a P_model, P_load(it, f, path, false), hand it out
 *     static void *P_kind_state_new(const void *impl) { return P_state_new(impl); }
 *     ... P_kind_state_free, P_kind_start, P_kind_next, P_kind_max_len alike
 *     const mdl_kind P_kind = { .name = P_KIND, .load = P_kind_load, ... };
 * MDL_KIND_TABLE(P, NAME) is the last line alone, for a kind that writes
 * its P_kind_* functions itself; MDL_KIND_MEMBERS(P, NAME) the members of
 * the vtable, for a kind (ngram) that adds an optional one.
 * MDL_KIND_FUNCS(P, MODEL, STATE, LOAD) is the wrappers alone, LOAD (P_load's
 * signature) loading the model, for a kind that adds an optional member to
 * the table:
 *     MDL_KIND_FUNCS(tf, tf_model, tf_state, load_for_generation);
 *     const mdl_kind tf_kind = { MDL_KIND_MEMBERS(tf, TF_KIND), .next_batch = ... }; */
#define MDL_KIND(P, NAME, MODEL, STATE)                                                  \
    MDL_KIND_FUNCS(P, MODEL, STATE, P##_load)                                            \
    MDL_KIND_TABLE(P, NAME)

#define MDL_KIND_FUNCS(P, MODEL, STATE, LOAD)                                            \
    static void P##_kind_free(void *impl)                                                \
    {                                                                                    \
        P##_free(impl);                                                                  \
        free(impl);                                                                      \
    }                                                                                    \
    static err_code P##_kind_load(const ck_file *f, const char *path, void **impl)       \
    {                                                                                    \
        MODEL *m = calloc(1, sizeof *m);                                                 \
        err_code e = m ? LOAD(m, f, path, false)                                         \
                       : err_set(ERR_NOMEM, "%s: out of memory for the model", path);    \
        if (e) {   /* P_load left nothing to free but m */                               \
            free(m);                                                                     \
            m = NULL;                                                                    \
        }                                                                                \
        *impl = m;                                                                       \
        return e;                                                                        \
    }                                                                                    \
    static void *P##_kind_state_new(const void *impl) { return P##_state_new(impl); }    \
    static void P##_kind_state_free(void *st) { P##_state_free((STATE *)st); }           \
    static void P##_kind_start(const void *impl, void *st)                               \
    {                                                                                    \
        P##_state_start((STATE *)st);                                                    \
    }                                                                                    \
    static void P##_kind_next(const void *impl, void *st, int tok, float *logits)        \
    {                                                                                    \
        P##_state_next((STATE *)st, tok, logits);                                        \
    }                                                                                    \
    static int P##_kind_max_len(const void *impl) { return P##_max_len(impl); }

/* P_replica_new and P_replica_free (the contract above): DECLARE(MODEL *,
 * const config *) checks the config and declares the parameters. */
#define MDL_REPLICA(P, MODEL, DECLARE)                                                   \
    void P##_replica_free(void *replica)                                                 \
    {                                                                                    \
        P##_free(replica);                                                               \
        free(replica);                                                                   \
    }                                                                                    \
    void *P##_replica_new(const void *impl, float *grad)                                 \
    {                                                                                    \
        const MODEL *m = impl;                                                           \
        MODEL *r = calloc(1, sizeof *r);                                                 \
        if (!r) {                                                                        \
            err_set(ERR_NOMEM, "out of memory for a model replica");                     \
            return NULL;                                                                 \
        }                                                                                \
        if (DECLARE(r, &m->c) || tn_params_alias(&r->p, &m->p, grad)) {                  \
            P##_replica_free(r);                                                         \
            return NULL;                                                                 \
        }                                                                                \
        return r;                                                                        \
    }

#define MDL_KIND_MEMBERS(P, NAME)                                                        \
    .name = NAME, .load = P##_kind_load, .free = P##_kind_free,                          \
    .state_new = P##_kind_state_new, .state_free = P##_kind_state_free,                  \
    .start = P##_kind_start, .next = P##_kind_next, .max_len = P##_kind_max_len

#define MDL_KIND_TABLE(P, NAME) const mdl_kind P##_kind = { MDL_KIND_MEMBERS(P, NAME) }

/* ---- Helpers of the contract's functions ---------------------------------- */

/* For P_config_from_json: json (may be NULL) parsed as a JSON object, which
 * the caller deletes; NULL with ERR_FORMAT "WHAT config is not a JSON
 * object" otherwise. */
struct cJSON;
struct cJSON *mdl_config_object(const char *json, const char *what);
/* The integer member `key` of a config object (|value| <= 1e9) into *out;
 * ERR_FORMAT "WHAT config: 'KEY' is missing or not an integer" otherwise. */
err_code mdl_config_int(const struct cJSON *config, const char *what, const char *key, int *out);

/* For P_load (and mdl_load): f, read from path, is a villes checkpoint of
 * model `kind` with a config (its text into *config unless config is NULL;
 * it lives as long as f) and a vocabulary that parses (into *v unless v is
 * NULL; the caller frees it) and has the config's vocab_size tokens when
 * the config has one.  ERR_FORMAT (ERR_MISMATCH for another kind) naming
 * path otherwise.  A subword tokenizer's merges (metadata "tokenizer" bpe,
 * "merges"; bpe.h) count among the config's tokens. */
err_code mdl_read_meta(const ck_file *f, const char *path, const char *kind,
                       const char **config, txt_vocab *v);

/* For P_save: the metadata every villes checkpoint has (format,
 * format_version, model = kind, config, vocab) into w (NULL: ERR_NOMEM),
 * for a kind that then puts more (an SAE's model_file, ngram's integer
 * tensors) and writes w itself.  ERR_ARG when v does not have the config's
 * vocab_size tokens. */
err_code mdl_put_meta(ck_writer *w, const char *kind, const char *config, const txt_vocab *v);
/* The usual P_save: a checkpoint of mdl_put_meta's metadata and the
 * parameters p without optimiser moments, written atomically to path. */
err_code mdl_save_params(const char *path, const char *kind, const char *config,
                         const txt_vocab *v, const tn_params *p);

/* ---- Any model, loaded ------------------------------------------------------ */

typedef struct mdl {
    const mdl_kind *kind;
    void           *impl;
    txt_vocab       vocab;    /* the characters */
    bpe             tokens;   /* the tokenizer: the characters and, for a model of
                                 running text with subwords, the merges (bpe.h) */
    ck_file         file;     /* the checkpoint, kept for metadata look-ups */
} mdl;

typedef struct mdl_state { const mdl *m; void *st; } mdl_state;

/* mdl_load and the registry of kinds are above the kinds: kinds.h. */
void     mdl_free(mdl *m);
/* Tokens: the vocabulary's and the tokenizer's merges. */
int      mdl_vocab_size(const mdl *m);
int      mdl_max_len(const mdl *m);
/* Most characters a name may have: max_len - 1 (<SOS> takes a position);
 * INT_MAX for an unbounded model. */
int      mdl_max_chars(const mdl *m);

err_code mdl_state_new(mdl_state *s, const mdl *m);
void     mdl_state_free(mdl_state *s);
void     mdl_start(mdl_state *s);
void     mdl_next(mdl_state *s, int tok, float *logits);
/* n streams at once: s[i] (streams of one model) fed tok[i], its logits
 * into row i of logits (n, V); the logits mdl_next gives, bit for bit, with
 * the kind's batched step when it has one. */
void     mdl_next_batch(mdl_state *const *s, int n, const int *tok, float *logits);
/* The kind's evidence for the next prediction (mdl_kind.evidence), or -1
 * when the kind has none. */
int      mdl_evidence(const mdl_state *s);

/* A name sampled a step at a time, so that many names can share batched
 * steps (mdl_next_batch): the tokens, random draws and logits are
 * mdl_sample_name's.
 *     int t = mdl_sampler_start(&sm, m, c, prefix, n_prefix, max_chars, tok);
 *     mdl_start(st);
 *     while (t >= 0) { mdl_next(st, t, logits); t = mdl_sampler_step(&sm, logits, r, scratch); }
 * then t is MDL_NAME_DONE (sm.n characters in tok) or MDL_NAME_IMPOSSIBLE
 * (every token has probability 0). */
typedef struct mdl_sampler {
    const smp_config *c;
    const int        *prefix;
    int               n_prefix, max_chars, V;
    int              *tok;      /* the characters so far (max_chars) */
    int               n;
} mdl_sampler;

enum { MDL_NAME_DONE = -1, MDL_NAME_IMPOSSIBLE = -2 };

/* Set s up (max_chars cut to the model's limit); the first token to feed (<SOS>). */
int mdl_sampler_start(mdl_sampler *s, const mdl *m, const smp_config *c, const int *prefix,
                      int n_prefix, int max_chars, int *tok);
/* Given the logits after the last token fed (overwritten): the next token
 * to feed, or MDL_NAME_DONE / MDL_NAME_IMPOSSIBLE.  scratch holds 2 V floats. */
int mdl_sampler_step(mdl_sampler *s, float *logits, rng *r, float *scratch);

/* A name scored a step at a time, as mdl_score_name does it: after
 *     int t = mdl_scorer_start(&sc, tok, n);  mdl_start(st);
 *     while (t >= 0) { mdl_next(st, t, logits); t = mdl_scorer_step(&sc, V, logits); }
 * sc.nll is the name's negative log-likelihood (n + 1 predictions).  The
 * caller checks n against mdl_max_chars. */
typedef struct mdl_scorer { const int *tok; int n, i; double nll; } mdl_scorer;
int mdl_scorer_start(mdl_scorer *s, const int *tok, int n);
int mdl_scorer_step(mdl_scorer *s, int V, float *logits);

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
