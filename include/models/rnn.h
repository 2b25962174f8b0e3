/* rnn.h - the recurrent LM: plain tanh RNN or GRU cells, one or more
 * layers, its training graph and generation with a carried state.
 *
 * Architecture, with the checkpoint names of the PyTorch reference
 * (tools/villes_torch.py):
 *   x = embedding.weight[tok]                                     (d)
 *   per layer i (core.layers.{i}.), state h starting at h0 (d):
 *     rnn: h = tanh(fc [x; h] + b)                 cell.fc          (d, 2d)
 *     gru: z = sigmoid(fc_z [x; h] + b_z)          cell.fc_z        (d, 2d)
 *          r = sigmoid(fc_r [x; h] + b_r)          cell.fc_r        (d, 2d)
 *          hh = tanh(fc_h_hat [x; r*h] + b_h)      cell.fc_h_hat    (d, 2d)
 *          h = (1 - z) * h + z * hh
 *     the layer's output h is the next layer's x
 *   logits = RMSNorm(h_top; out_norm, eps 1e-5) . embedding.weight^T   (tied)
 * Initialisation as the PyTorch reference (tools/villes_torch.py): linear
 * weights and biases uniform(+-1/sqrt(2d)) (nn.Linear), embedding
 * uniform(+-1/sqrt(d)) (it is also the lm_head, so nn.Linear(d, V)'s init),
 * h0 zero, norm weight one.
 * Dropout (config.dropout, training only) is applied to the input of every
 * layer (the embeddings for layer 0, as the reference's in_dropout) and to
 * the top layer's output before the norm.  Its masks are drawn per element
 * (dropout_mode standard), or, variational (Gal & Ghahramani; AWD-LSTM's
 * locked dropout), one mask per sequence and site, the same at every time
 * step: op_keep (ops.h) at index b * d + j for batch row b, unit j, one
 * seed per site in graph order, as the PyTorch reference draws them.
 *
 * Training runs on *packed* batches (rnn_pack): rows sorted longest first
 * and stored time-major, so that step t works on the contiguous rows of the
 * sequences still running and no work is spent on padding.  Each layer is
 * one fused tape op over the whole sequence: the input half of every
 * matrix product is done for all steps in one GEMM, only the recurrent half
 * runs step by step, and backpropagation goes through the whole sequence.
 */
#ifndef VILLES_RNN_H
#define VILLES_RNN_H

#include <stdbool.h>

#include "autograd.h"
#include "checkpoint.h"
#include "dataset.h"
#include "error.h"
#include "model.h"
#include "rng.h"
#include "tensor.h"
#include "text.h"

#define RNN_KIND "rnn"
#define RNN_NORM_EPS 1e-5f

enum { RNN_MAX_LAYERS = 32, RNN_MAX_DIM = 8192, RNN_MAX_VOCAB = 1 << 20, RNN_MAX_GATES = 3 };

typedef enum rnn_cell { RNN_CELL_RNN, RNN_CELL_GRU } rnn_cell;
typedef enum rnn_dropout_mode { RNN_DROPOUT_STANDARD, RNN_DROPOUT_VARIATIONAL } rnn_dropout_mode;

typedef struct rnn_config {
    int      vocab_size;
    rnn_cell cell;
    int      d_model;
    int      n_layers;
    float    dropout;    /* [0, 1) */
    rnn_dropout_mode dropout_mode;
    bool     text;       /* trained on running text (rnn-train --text) */
} rnn_config;

#define RNN_DEFAULTS ((rnn_config){ .vocab_size = 0, .cell = RNN_CELL_GRU, .d_model = 256, \
    .n_layers = 1, .dropout = 0.0f, .dropout_mode = RNN_DROPOUT_STANDARD, .text = false })

/* "rnn" / "gru"; rnn_cell_parse returns -1 for any other word. */
const char *rnn_cell_name(rnn_cell c);
int         rnn_cell_parse(const char *s);
/* Matrices per cell: 1 (rnn) or 3 (gru). */
int         rnn_n_gates(rnn_cell c);

/* ERR_ARG naming the first field out of range (config JSON field names). */
err_code rnn_config_check(const rnn_config *c);
/* {"vocab_size":46,"cell":"gru","d_model":256,"n_layers":1,"dropout":0}, plus
 * "dropout_mode":"variational" when it is, and "text":true for a
 * running-text model.  Caller frees. */
err_code rnn_config_to_json(const rnn_config *c, char **json);
/* Parse and check; ERR_FORMAT on a missing or ill-typed field ("text" is
 * optional, default false; "dropout_mode" too, "standard" or
 * "variational", default standard). */
err_code rnn_config_from_json(rnn_config *c, const char *json);

typedef struct rnn_layer {
    tensor *h0;                       /* (d) learned initial state */
    tensor *w[RNN_MAX_GATES];         /* (d, 2d): rnn fc; gru fc_z, fc_r, fc_h_hat */
    tensor *b[RNN_MAX_GATES];         /* (d) */
} rnn_layer;

/* The tensors point into p's entries: an rnn_model must not be moved or
 * copied once initialised. */
typedef struct rnn_model {
    rnn_config c;
    tn_params  p;
    tensor    *emb;                   /* (V, d), also the lm_head */
    tensor    *out_norm;              /* (d) */
    rnn_layer  layer[RNN_MAX_LAYERS];
} rnn_model;

/* Declare and allocate the parameters (zeroed) for a checked config. */
err_code rnn_init(rnn_model *m, const rnn_config *c);
/* Reference initialisation (see the top of this file). */
void     rnn_init_weights(rnn_model *m, rng *r);
/* Config from the checkpoint's metadata, then every parameter by name and
 * shape (optimiser moments too when optim).  The vocabulary in the
 * metadata must have config.vocab_size tokens. */
err_code rnn_load(rnn_model *m, const ck_file *f, const char *path, bool optim);
void     rnn_free(rnn_model *m);
/* A worker's replica for data-parallel training (model.h's contract). */
void    *rnn_replica_new(const void *impl, float *grad);
void     rnn_replica_free(void *replica);
/* The model alone (no training state), as a checkpoint mdl_load reads. */
err_code rnn_save(const rnn_model *m, const txt_vocab *v, const char *path);

/* ---- Packed batches ------------------------------------------------------ */

/* A (B, T) batch packed time-major, longest sequence first (as PyTorch's
 * PackedSequence).  The length of a row is 1 + its last position whose
 * target is not <pad>; rank k is the k-th longest row (ties in row order).
 * Step s holds the n[s] sequences longer than s, as packed rows off[s] ..
 * off[s] + n[s] - 1 (rank order) of every (N, d) activation, so the rows
 * of step s + 1 are a prefix of the ranks of step s. */
typedef struct rnn_pack {
    int  B, T, N;        /* rows, steps (the longest length), packed rows */
    int *n;              /* (T) sequences running at step s, non-increasing */
    int *off;            /* (T + 1) first packed row of step s; off[T] = N */
    int *row;            /* (B) rank -> batch row */
    int *len;            /* (B) length by rank */
    int *x, *y;          /* (N) packed inputs and targets */
    int *pos;            /* (N) their positions in the (B, T) batch */
} rnn_pack;

/* Pack x, y (B, T) on the tape's arena (nothing to free). */
rnn_pack *rnn_pack_batch(ag_tape *t, const int *x, const int *y, int B, int T);

/* ---- Training graph (on tape t) ------------------------------------------ */

/* Next-token logits (N, V) of a packed batch, packed rows.  The state
 * before step 0 is each layer's h0, or h_in (n_layers, B, d) by batch row:
 * a constant (truncated backpropagation: no gradient flows into it).  With
 * h_out (may alias h_in) the state after each row's last step is written
 * there (n_layers, B, d) by batch row.  NULL with err_set on error. */
tensor *rnn_forward(const rnn_model *m, ag_tape *t, const rnn_pack *p, const float *h_in,
                    float *h_out);
/* Mean cross-entropy over the non-pad targets of a batch (scalar), from
 * the learned initial states. */
tensor *rnn_loss(const rnn_model *m, ag_tape *t, const ds_batch *b);
/* Same with a carried state, as rnn_forward. */
tensor *rnn_loss_state(const rnn_model *m, ag_tape *t, const ds_batch *b, const float *h_in,
                       float *h_out);

/* Accessors (0 for a NULL model). */
int rnn_d_model(const rnn_model *m);
int rnn_n_layers(const rnn_model *m);
int rnn_vocab_size(const rnn_model *m);

/* ---- Generation with a carried state ------------------------------------- */

/* One stream: the hidden state of every layer and preallocated scratch,
 * so a step is a few matrix-vector products and allocates nothing. */
typedef struct rnn_state rnn_state;

rnn_state *rnn_state_new(const rnn_model *m);   /* NULL with err_set */
void       rnn_state_free(rnn_state *s);
/* Every layer back to its h0. */
void       rnn_state_start(rnn_state *s);
/* Feed tok and write the next-token logits (V). */
void       rnn_state_next(rnn_state *s, int tok, float *logits);
/* 0: any length. */
int        rnn_max_len(const rnn_model *m);

/* ---- Behind the generic model interface (model.h) ------------------------ */

extern const mdl_kind rnn_kind;

#endif
