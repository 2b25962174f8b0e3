/* mamba.h - the Mamba LM (a selective state-space model, the notebooks'
 * fourth family), its training graph and generation in recurrent form.
 *
 * Architecture, with the checkpoint names of the notebooks' LM and of the
 * PyTorch reference (tools/villes_torch.py); e = expand_factor * d_model,
 * N = d_state, R = dt_rank, K = d_conv:
 *   x = embedding.weight[tok]                                      (B, T, d)
 *   per layer i, x += mixer(RMSNorm(x; core.layers.{i}.norm)), the mixer
 *   (core.layers.{i}.mixer.) on n (B, T, d):
 *     [xi, z] = in_proj n                        in_proj.weight  (2e, d)
 *     xc = causal depthwise conv of xi over time conv1d.weight   (e, 1, K)
 *          xc_t = bias + sum_k w_k xi_{t-K+1+k}  conv1d.bias     (e)
 *     u  = silu(xc)
 *     [dtr, Bt, Ct] = x_proj u                   x_proj.weight   (R + 2N, e)
 *     dt = softplus(dt_proj dtr + bias)          dt_proj.weight  (e, R), .bias (e)
 *     A  = -exp(A_log)                           A_log           (e, N)
 *     h_t = exp(dt_t A) * h_{t-1} + dt_t Bt_t u_t   (e, N), h_{-1} = 0
 *     y_t = h_t Ct_t + D * u_t                   D               (e)
 *     out = out_proj (y * silu(z))               out_proj.weight (d, e)
 *   logits = RMSNorm(x; out_norm) . embedding.weight^T   (lm_head tied)
 * RMSNorm eps 1e-5; no biases but conv1d's and dt_proj's.
 * Initialisation as the notebooks' LM: embedding and every linear weight
 * normal(0, 0.02) (dt_proj's too: LM._init_weights overwrites the mixer's
 * own init), conv1d as nn.Conv1d (uniform +-1/sqrt(K), weight and bias),
 * A_log = log(1..N) in every row, D = 1, norms 1; dt_proj.bias the inverse
 * softplus of dt drawn log-uniform in [0.001, 0.1] (floored at 1e-4), as
 * mamba.py's own init and the Mamba paper (the notebooks' LM._init_weights
 * then zeroes it: the marker that would keep it is commented out).  Weight
 * decay on the tensors of 2 dimensions or more (the notebooks'
 * configure_optimizers).
 *
 * Training runs one fused op per layer ("mamba_ssm": conv, silu, x_proj,
 * dt_proj, softplus, the sequential selective scan and the gate) with a
 * hand-written backward; in_proj and out_proj are op_linear.  Generation
 * carries per layer the last K-1 conv inputs and h, so a step costs the
 * same at every position.
 */
#ifndef VILLES_MAMBA_H
#define VILLES_MAMBA_H

#include <stdbool.h>

#include "autograd.h"
#include "checkpoint.h"
#include "dataset.h"
#include "error.h"
#include "model.h"
#include "rng.h"
#include "tensor.h"
#include "text.h"

#define MAMBA_KIND "mamba"
#define MAMBA_NORM_EPS 1e-5f

enum {
    MAMBA_MAX_LAYERS = 32, MAMBA_MAX_DIM = 4096, MAMBA_MAX_VOCAB = 1 << 20,
    MAMBA_MAX_STATE = 256, MAMBA_MAX_EXPAND = 8, MAMBA_MAX_CONV = 16
};

typedef struct mamba_config {
    int vocab_size;
    int d_model;
    int n_layers;
    int d_state;        /* N */
    int expand_factor;  /* E: the mixer's width is E * d_model */
    int d_conv;         /* K */
    int dt_rank;        /* R; 0 in the defaults: ceil(d_model / 16) */
} mamba_config;

/* The notebooks' MambaConfig defaults, at the d_model 64 of the others. */
#define MAMBA_DEFAULTS ((mamba_config){ .vocab_size = 0, .d_model = 64, .n_layers = 1, \
    .d_state = 16, .expand_factor = 2, .d_conv = 4, .dt_rank = 0 })

/* ceil(d_model / 16), the notebooks' dt_rank "auto". */
int      mamba_auto_dt_rank(int d_model);
/* ERR_ARG naming the first field out of range (config JSON names). */
err_code mamba_config_check(const mamba_config *c);
/* {"vocab_size":46,"d_model":64,"n_layers":1,"d_state":16,"expand_factor":2,
 *  "d_conv":4,"dt_rank":4}.  Caller frees. */
err_code mamba_config_to_json(const mamba_config *c, char **json);
/* Parse, dt_rank 0 -> mamba_auto_dt_rank, check; ERR_FORMAT otherwise. */
err_code mamba_config_from_json(mamba_config *c, const char *json);

typedef struct mamba_layer {
    tensor *norm;                 /* (d) */
    tensor *in_proj;              /* (2e, d) */
    tensor *conv_w, *conv_b;      /* (e, 1, K), (e) */
    tensor *x_proj;               /* (R + 2N, e) */
    tensor *dt_w, *dt_b;          /* (e, R), (e) */
    tensor *A_log;                /* (e, N) */
    tensor *D;                    /* (e) */
    tensor *out_proj;             /* (d, e) */
} mamba_layer;

/* The tensors point into p's entries: a model must not be moved or copied
 * once initialised. */
typedef struct mamba_model {
    mamba_config c;
    tn_params    p;
    tensor      *emb;             /* (V, d), also the lm_head */
    tensor      *out_norm;        /* (d) */
    mamba_layer  layer[MAMBA_MAX_LAYERS];
} mamba_model;

err_code mamba_init(mamba_model *m, const mamba_config *c);
void     mamba_init_weights(mamba_model *m, rng *r);
err_code mamba_load(mamba_model *m, const ck_file *f, const char *path, bool optim);
err_code mamba_save(const mamba_model *m, const txt_vocab *v, const char *path);
void     mamba_free(mamba_model *m);
/* A worker's replica for data-parallel training (model.h's contract). */
void    *mamba_replica_new(const void *impl, float *grad);
void     mamba_replica_free(void *replica);

/* ---- Training graph (on tape t) ------------------------------------------ */

/* A batch runs packed: each row (B, T) keeps its positions up to its last
 * non-pad token, sequence b at rows off[b] .. off[b + 1] - 1, so no work
 * is spent on padding (the scan is causal: the positions dropped change
 * nothing before them). */

/* The mixer's inner part, one fused op: xz (n, 2e) from in_proj ->
 * y * silu(z) (n, e), the layer's conv, x_proj, dt_proj, A_log and D as
 * inputs; off (B + 1), off[0] = 0, off[B] = n.  NULL with err_set on a
 * shape mismatch. */
tensor *mamba_ssm(ag_tape *t, const mamba_layer *L, tensor *xz, int B, const int *off);
/* Next-token logits (n, V) of a (B, T) batch of tokens, packed rows. */
tensor *mamba_forward(const mamba_model *m, ag_tape *t, const int *x, int B, int T);
/* Mean cross-entropy over the non-pad targets of a batch (scalar). */
tensor *mamba_loss(const mamba_model *m, ag_tape *t, const ds_batch *b);

/* ---- Generation in recurrent form ------------------------------------------ */

typedef struct mamba_state mamba_state;

mamba_state *mamba_state_new(const mamba_model *m);   /* NULL with err_set */
void         mamba_state_free(mamba_state *s);
/* Conv windows and h back to zero. */
void         mamba_state_start(mamba_state *s);
/* Feed tok and write the next-token logits (V). */
void         mamba_state_next(mamba_state *s, int tok, float *logits);
/* 0: any length. */
int          mamba_max_len(const mamba_model *m);

extern const mdl_kind mamba_kind;

#endif
