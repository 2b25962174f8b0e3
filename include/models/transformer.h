/* transformer.h - the decoder-only Transformer LM, its training graph,
 * cached generation, and the activations API used by the interpretability
 * programs (sae-train, explore, steer).
 *
 * Architecture, with the checkpoint names of the PyTorch reference
 * (tools/villes_torch.py):
 *   x = embedding.weight[tok] + core.PE.weight[pos]                 (B, T, d)
 *   per layer i (core.layers.{i}.):
 *     x += c_proj(MHA(RMSNorm(x; attention_norm)))   causal, no biases
 *     x += fc_2(silu(fc_1 n) * fc_3 n),  n = RMSNorm(x; mlp_norm), hidden 4d
 *   logits = RMSNorm(x; out_norm) . embedding.weight^T   (lm_head tied)
 * RMSNorm eps 1e-5.  Regularisation, training only, each rate 0 by default:
 *   dropout       where the reference puts it: on the embeddings (after
 *                 adding PE), after c_proj and after fc_2;
 *   attn_dropout  on the attention probabilities (GPT's attn_pdrop);
 *   emb_dropout   embedding dropout (Gal & Ghahramani; AWD-LSTM): per batch,
 *                 each token type is dropped with probability emb_dropout,
 *                 its embedding row zeroed at every occurrence on the input
 *                 side, the kept rows scaled by 1/(1 - emb_dropout); the
 *                 tied lm_head is unaffected.
 * The masks of the last two are drawn with op_keep (ops.h), addressed by
 * batch row, head and positions, so that the bucketed training loss and
 * the whole-batch graph drop the same entries, and the PyTorch reference
 * reproduces them.
 *
 * The residual stream "after layer L" is x after L blocks: L = 0 is the
 * embeddings (token + position), L = n_layers the input of the final norm.
 */
#ifndef VILLES_TRANSFORMER_H
#define VILLES_TRANSFORMER_H

#include "autograd.h"
#include "checkpoint.h"
#include "dataset.h"
#include "error.h"
#include "model.h"
#include "rng.h"
#include "tensor.h"

#define TF_KIND "transformer"
#define TF_NORM_EPS 1e-5f

enum { TF_MAX_LAYERS = 32, TF_MAX_DIM = 8192, TF_MAX_LEN = 4096, TF_MAX_VOCAB = 1 << 20 };

typedef struct tf_config {
    int   vocab_size;
    int   d_model;
    int   n_heads;     /* divides d_model */
    int   n_layers;
    int   max_len;     /* positions, <SOS> included */
    float dropout;       /* [0, 1), each of the three */
    float attn_dropout;
    float emb_dropout;
} tf_config;

/* d_model 64 / 8 heads as in the bench; 2 layers (the notebooks use 1). */
#define TF_DEFAULTS ((tf_config){ .vocab_size = 0, .d_model = 64, .n_heads = 8, \
    .n_layers = 2, .max_len = 0, .dropout = 0.0f, .attn_dropout = 0.0f, .emb_dropout = 0.0f })

/* ERR_ARG naming the first field out of range, by its config JSON name
 * ("n_heads 3 does not divide d_model 64"). */
err_code tf_config_check(const tf_config *c);
/* {"vocab_size":46,"d_model":64,"n_heads":8,"n_layers":2,"max_len":49,"dropout":0},
 * then "attn_dropout" and "emb_dropout" only when not 0.  Caller frees. */
err_code tf_config_to_json(const tf_config *c, char **json);
/* Parse and check; ERR_FORMAT on a missing or non-numeric field (the three
 * rates are optional, 0 when absent). */
err_code tf_config_from_json(tf_config *c, const char *json);

typedef struct tf_layer {
    tensor *attn_norm;             /* (d) */
    tensor *wq, *wk, *wv, *wo;     /* (d, d); wo = c_proj */
    tensor *mlp_norm;              /* (d) */
    tensor *fc1, *fc3;             /* (4d, d) */
    tensor *fc2;                   /* (d, 4d) */
} tf_layer;

/* The weight matrices laid out for cached generation (transformer.c). */
typedef struct tf_step tf_step;

/* The tensors point into p's entries: a tf_model must not be moved or
 * copied once initialised. */
typedef struct tf_model {
    tf_config c;
    tn_params p;
    tensor   *emb;                 /* (V, d), also the lm_head */
    tensor   *pe;                  /* (max_len, d) */
    tensor   *out_norm;            /* (d) */
    tf_layer  layer[TF_MAX_LAYERS];
    tf_step  *step;                /* built once when loaded through mdl_load (the
                                      weights are final), shared by its states;
                                      NULL otherwise */
} tf_model;

/* Declare and allocate the parameters (zeroed) for a checked config. */
err_code tf_init(tf_model *m, const tf_config *c);
/* Reference initialisation: normal(0, 0.02); fc_3 and c_proj normal(0,
 * 0.02/sqrt(2 n_layers)); norm weights 1. */
void     tf_init_weights(tf_model *m, rng *r);
/* Config from the checkpoint's metadata, then every parameter by name and
 * shape (optimiser moments too when optim).  The vocabulary in the
 * metadata must have config.vocab_size tokens. */
err_code tf_load(tf_model *m, const ck_file *f, const char *path, bool optim);
void     tf_free(tf_model *m);
/* A worker's replica for data-parallel training (model.h's contract). */
void    *tf_replica_new(const void *impl, float *grad);
void     tf_replica_free(void *replica);
/* Write the model alone (no training state) as a checkpoint that mdl_load
 * and tf_load read: parameters and format, format_version, model, config,
 * vocab (v->size must be vocab_size).  Trainers save through train.h. */
err_code tf_save(const tf_model *m, const txt_vocab *v, const char *path);

/* ---- Training graph (ops.h on tape t) ---------------------------------- */

/* Next-token logits (B, T, V) of token rows x (B, T), T <= max_len. */
tensor *tf_forward(const tf_model *m, ag_tape *t, const int *x, int B, int T);
/* Mean cross-entropy over the non-pad targets of a batch (scalar): the
 * same value and gradients as op_cross_entropy on tf_forward, computing
 * only each row's positions up to its last target, with attention on
 * buckets of rows of similar lengths (most of a names batch is padding). */
tensor *tf_loss(const tf_model *m, ag_tape *t, const ds_batch *b);

/* ---- Activations API ---------------------------------------------------- */

/* (a) The residual stream after layer L (0..n_layers) at every position of
 * token rows x (B, T) (e.g. a ds_batch's x): a (B, T, d) tensor on the
 * tape.  NULL with err_set (ERR_ARG) when L or T is out of range.  With
 * t->grad (ag_init's default) the graph is kept, so a loss computed from it
 * backpropagates to the parameters; set t->grad = false for inference. */
tensor *tf_residual(const tf_model *m, ag_tape *t, const int *x, int B, int T, int L);
/* (b) Finish the forward pass from a residual stream x (B, T, d) taken
 * after layer L (possibly modified, possibly a leaf the caller wrapped with
 * ag_wrap): blocks L+1..n_layers, final norm, logits (B, T, V). */
tensor *tf_logits_from(const tf_model *m, ag_tape *t, tensor *x, int L, int B, int T);
/* Logit lens on one residual vector x (d): RMSNorm(x; out_norm) . emb^T
 * into logits (V).  No tape, no allocation. */
void    tf_unembed(const tf_model *m, const float *x, float *logits);

/* (d) Accessors (0 / NULL for a NULL model). */
int          tf_d_model(const tf_model *m);
int          tf_n_layers(const tf_model *m);
int          tf_n_heads(const tf_model *m);
int          tf_max_len(const tf_model *m);
int          tf_vocab_size(const tf_model *m);
const float *tf_out_norm_weight(const tf_model *m);   /* (d) */
const float *tf_embedding(const tf_model *m);         /* (V, d), row per token */

/* ---- Cached generation -------------------------------------------------- */

/* (c) A residual hook: called in tf_state_next after layer `layer` of the
 * state's hook (0 = embeddings) at position pos with the residual x (d); it
 * may modify x in place, and everything after (later layers, their cached
 * keys and values, the logits) sees the modified vector. */
typedef void (*tf_hook_fn)(void *ctx, int layer, int pos, float *x, int d);

/* One generation stream: the keys and values of every layer for up to
 * max_len positions, and preallocated scratch, so a step allocates nothing
 * and never recomputes the prefix.  A state copies the model's weight
 * matrices when it is created (transposed, for one-position products),
 * unless the model was loaded through mdl_load (its states share one
 * copy): create states once the weights are final. */
typedef struct tf_state tf_state;

tf_state *tf_state_new(const tf_model *m);   /* NULL with err_set */
void      tf_state_free(tf_state *s);
/* Forget the sequence: the next token is at position 0.  Keeps the hook. */
void      tf_state_start(tf_state *s);
/* Feed tok at the next position and write the next-token logits (V).  Past
 * max_len positions nothing is computed and the logits allow only <EOS>
 * (every other entry -INFINITY), so a sampled name ends cleanly. */
void      tf_state_next(tf_state *s, int tok, float *logits);
/* n streams of one model at once: s[i] fed tok[i], its logits into row i
 * of logits (n, V).  Each weight matrix is read once for all the streams;
 * every stream gets the logits tf_state_next would give it, bit for bit. */
void      tf_state_next_batch(tf_state *const *s, int n, const int *tok, float *logits);
int       tf_state_pos(const tf_state *s);   /* tokens fed since start */
/* Install (fn non-NULL) or remove (fn NULL) the hook; layer in
 * 0..n_layers, else ERR_ARG. */
err_code  tf_state_set_hook(tf_state *s, int layer, tf_hook_fn fn, void *ctx);

/* ---- Behind the generic model interface (model.h) ------------------------ */

extern const mdl_kind tf_kind;
/* The transformer inside a loaded model / a stream of it; NULL with err_set
 * (ERR_MISMATCH) when the model is of another kind. */
const tf_model *tf_of_mdl(const mdl *m);
tf_state       *tf_state_of(const mdl_state *s);

#endif
