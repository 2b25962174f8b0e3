/* mlp.h - the Bengio (2003) MLP language model.
 *
 * For the target at position t, the context is the inputs x[t-n+1 .. t]
 * of its row (n = n_context; positions before the row start are <SOS>),
 * embedded and concatenated oldest first:
 *   e = [E[x[t-n+1]]; ...; E[x[t]]]        (n*d)
 *   h = tanh(W1 e + b1)                    (H)
 *   logits = W2 h + b2                     (V)
 * Parameters (checkpoint names, PyTorch layout): embedding.weight (V, d),
 * fc1.weight (H, n*d), fc1.bias (H), fc2.weight (V, H), fc2.bias (V).
 *
 * Only the positions with a real (non-pad) target are computed, and the
 * first layer is one fused op (mlp_context_linear) that never builds the
 * (rows, n*d) concatenation.
 */
#ifndef VILLES_MLP_H
#define VILLES_MLP_H

#include <stdbool.h>

#include "autograd.h"
#include "checkpoint.h"
#include "dataset.h"
#include "model.h"
#include "rng.h"
#include "tensor.h"
#include "text.h"

#define MLP_KIND "mlp"

typedef struct mlp_config {
    int vocab_size;
    int d_model;     /* embedding size d (32) */
    int d_hidden;    /* hidden units H (512) */
    int n_context;   /* previous tokens seen (8) */
} mlp_config;

/* Context 8, not the 20 of the speed benchmark: on villes.txt's validation
 * names it reaches 1.650 nats/char after 14000 steps where 20 bottoms out
 * at 1.684 (fc1 over 20 mostly-<SOS> slots overfits). */
#define MLP_DEFAULTS ((mlp_config){ .vocab_size = 0, .d_model = 32, .d_hidden = 512, \
    .n_context = 8 })

/* ERR_ARG naming the first field out of range (config JSON names), or a
 * model too large for the fused op's int counts. */
err_code mlp_config_check(const mlp_config *c);
/* {"vocab_size":46,"d_model":32,"d_hidden":512,"n_context":8}.  Caller frees. */
err_code mlp_config_to_json(const mlp_config *c, char **json);
/* Parse and check; ERR_FORMAT on a missing or ill-typed field. */
err_code mlp_config_from_json(mlp_config *c, const char *json);

/* The tensors point into p's entries: an mlp_model must not be moved or
 * copied once initialised. */
typedef struct mlp_model {
    mlp_config c;
    tn_params  p;
    tensor    *emb, *w1, *b1, *w2, *b2;   /* views into p */
} mlp_model;

/* Declare and allocate the parameters (zeroed) for a checked config. */
err_code mlp_init(mlp_model *m, const mlp_config *c);
/* PyTorch's default initialisation: embedding N(0, 1); each Linear's weight
 * and bias U(-1/sqrt(in), 1/sqrt(in)). */
void     mlp_init_weights(mlp_model *m, rng *r);
/* Config from the checkpoint's metadata, then every parameter by name and
 * shape (optimiser moments too when optim). */
err_code mlp_load(mlp_model *m, const ck_file *f, const char *path, bool optim);
/* The model alone (no training state), as a checkpoint mdl_load reads. */
err_code mlp_save(const mlp_model *m, const txt_vocab *v, const char *path);
void     mlp_free(mlp_model *m);
/* A worker's replica for data-parallel training (model.h's contract). */
void    *mlp_replica_new(const void *impl, float *grad);
void     mlp_replica_free(void *replica);

/* Logits for every position of a (B, T) batch: (B*T, V), row b*T+t.
 * Positions are all computed (used by the parity test and scoring). */
tensor  *mlp_logits(mlp_model *m, ag_tape *t, const int *x, int B, int T);
/* Mean cross-entropy over the non-pad targets of b (only those positions
 * are computed); a scalar on t. */
tensor  *mlp_loss(mlp_model *m, ag_tape *t, const ds_batch *b);

/* The fused first layer: for each of the N rows, with ctx (N, n) token ids,
 *   y[r] = b + sum_j W[:, j*d:(j+1)*d] E[ctx[r][j]]     -> (N, H)
 * E (V, d), W (H, n*d), b (H).  Same as embedding + concat + linear, with
 * the products E W_j^T precomputed once per call (V rows instead of N). */
tensor  *mlp_context_linear(ag_tape *t, tensor *E, tensor *W, tensor *b, const int *ctx,
                            int N, int n);

/* ---- Generation: the state is the last n_context tokens -------------------- */

typedef struct mlp_state mlp_state;

mlp_state *mlp_state_new(const mlp_model *m);   /* NULL with err_set */
void       mlp_state_free(mlp_state *s);
/* The context back to n_context <SOS>. */
void       mlp_state_start(mlp_state *s);
/* Feed tok and write the next-token logits (V), without a tape. */
void       mlp_state_next(mlp_state *s, int tok, float *logits);
/* 0: any length. */
int        mlp_max_len(const mlp_model *m);

/* ---- Behind the generic model interface (model.h) ------------------------ */

extern const mdl_kind mlp_kind;

#endif
