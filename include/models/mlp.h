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

#include "autograd.h"
#include "checkpoint.h"
#include "dataset.h"
#include "model.h"
#include "rng.h"
#include "tensor.h"

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

typedef struct mlp {
    mlp_config c;
    tn_params  params;
    tensor    *emb, *w1, *b1, *w2, *b2;   /* views into params */
} mlp;

/* Declare and allocate the parameters (zeroed); ERR_ARG for a bad config. */
err_code mlp_init(mlp *m, const mlp_config *c);
/* PyTorch's default initialisation: embedding N(0, 1); each Linear's weight
 * and bias U(-1/sqrt(in), 1/sqrt(in)). */
void     mlp_init_weights(mlp *m, rng *r);
void     mlp_free(mlp *m);

/* Config JSON {"vocab_size":..,"d_model":..,"d_hidden":..,"n_context":..}
 * (malloc'ed; NULL on out of memory) and its parser (ERR_FORMAT). */
char    *mlp_config_to_json(const mlp_config *c);
err_code mlp_config_from_json(mlp_config *c, const char *json);

/* Build from a checkpoint (kind "mlp" already checked): config, then every
 * parameter with its shape checked. */
err_code mlp_from_checkpoint(mlp *m, const ck_file *f);

/* Logits for every position of a (B, T) batch: (B*T, V), row b*T+t.
 * Positions are all computed (used by the parity test and scoring). */
tensor  *mlp_logits(mlp *m, ag_tape *t, const int *x, int B, int T);
/* Mean cross-entropy over the non-pad targets of b (only those positions
 * are computed); a scalar on t. */
tensor  *mlp_loss(mlp *m, ag_tape *t, const ds_batch *b);

/* The fused first layer: for each of the N rows, with ctx (N, n) token ids,
 *   y[r] = b + sum_j W[:, j*d:(j+1)*d] E[ctx[r][j]]     -> (N, H)
 * E (V, d), W (H, n*d), b (H).  Same as embedding + concat + linear, with
 * the products E W_j^T precomputed once per call (V rows instead of N). */
tensor  *mlp_context_linear(ag_tape *t, tensor *E, tensor *W, tensor *b, const int *ctx,
                            int N, int n);

/* The generation / scoring interface (model.h); registered as "mlp". */
extern const mdl_kind mlp_kind;

#endif
