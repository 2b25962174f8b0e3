/* ops.h - differentiable operations on the tape (autograd.h).
 *
 * Every op allocates its output on the tape, computes it, and hands it to
 * the tape under its name ("linear", "rmsnorm", ...), which records a
 * backward node when gradients are on (see autograd.h: ag_record, ag_dump,
 * check_finite).  Matrix products go through cblas_sgemm.  The ops that
 * matter for speed are fused, with hand-written backward passes: softmax
 * cross-entropy, RMSNorm, causal attention, SwiGLU's gate.  Shapes below:
 * N rows, d / in / out columns; a (B, T, d) tensor is also a matrix of B*T
 * rows.
 *
 * The last section holds the reference ops, which no model uses: the
 * tests build the fused ops' results from them step by step.
 *
 * All linear weights use PyTorch's layout, (out, in), so checkpoints move
 * between villes and PyTorch unchanged.
 */
#ifndef VILLES_OPS_H
#define VILLES_OPS_H

#include "autograd.h"
#include "dataset.h"

/* out[i] = W[idx[i]]: W (V, d), idx n ints in [0, V) -> (n, d).
 * The caller passes an output shape whose product of leading dims is n
 * (e.g. {B, T, d}); ndim 0 means (n, d). */
tensor *op_embedding(ag_tape *t, tensor *W, const int *idx, int n, int ndim, const int *shape);

/* y = x W^T + b: x (N, in), W (out, in), b (out) or NULL -> (N, out),
 * keeping x's leading dims. */
tensor *op_linear(ag_tape *t, tensor *x, tensor *W, tensor *b);

/* Element-wise, same shape as x. */
tensor *op_tanh(ag_tape *t, tensor *x);
tensor *op_add(ag_tape *t, tensor *a, tensor *b);      /* a, b same shape */
tensor *op_swiglu(ag_tape *t, tensor *a, tensor *b);   /* silu(a) * b, fused; a != b */
/* Inverted dropout with keep probability 1-p; identity unless t->training.
 * The mask is drawn from t->rng element by element. */
tensor *op_dropout(ag_tape *t, tensor *x, float p);
/* y = x * mask, mask (x->n values) a constant that lives until backward
 * (on the tape's arena): a dropout mask its caller built, e.g. one shared
 * by the rows of a sequence, or by every occurrence of a token. */
tensor *op_mask(ag_tape *t, tensor *x, const float *mask);

/* Dropout masks addressed by position: the keep factor of element `index`
 * of the mask that `seed` names, 0 when the high 32 bits of
 * rng_at(seed, index) are below p * 2^32, else 1/(1-p).  A mask built this
 * way does not depend on the order in which a graph visits its elements
 * (the Transformer's length buckets, the RNN's packed rows), and the
 * PyTorch reference draws the same one (tools/villes_torch.py, keep_mask). */
float op_keep(uint64_t seed, uint64_t index, float p);
/* When dropout at rate p applies (t->training, p > 0): draws the seed of
 * one such mask from t->rng and returns 1.  0 when it does not apply; -1
 * with err_set when it cannot (no rng, p > 1). */
int   op_dropout_seed(ag_tape *t, float p, uint64_t *seed);

/* y = x / sqrt(mean(x^2) + eps) * w over the last dim: x (N, d), w (d). */
tensor *op_rmsnorm(ag_tape *t, tensor *x, tensor *w, float eps);

/* Mean softmax cross-entropy over the rows whose target != ignore:
 * logits (N, V), targets N ints -> scalar (1).  With no counted row the
 * loss is 0.  Fused: the softmax is never stored apart from backward's need. */
tensor *op_cross_entropy(ag_tape *t, tensor *logits, const int *targets, int ignore);
/* The same against mixed targets (distillation): row i's target
 * distribution is (1 - a) onehot(targets[i]) + a soft[i], soft (N, V) rows
 * that sum to 1 and live until backward (e.g. on the tape's arena); the
 * loss is the mean over counted rows of -sum_j q_ij log softmax(l_i)_j,
 * i.e. (1 - a) CE(hard) + a CE(soft).  soft NULL: op_cross_entropy. */
tensor *op_soft_cross_entropy(ag_tape *t, tensor *logits, const int *targets, int ignore,
                              const float *soft, float a);
/* A model's training loss on batch b: logits (N, V) whose row k predicts
 * position pos[k] of b's (B, T) grid (pos NULL: row k is position k, N =
 * B*T; pos[k] < 0: an ignored row), targets b->y there, ignoring <pad>;
 * with b->soft, mixed with those soft rows at weight b->soft_weight.  A
 * model whose loss goes through this takes soft targets (tr_model). */
tensor *op_batch_cross_entropy(ag_tape *t, tensor *logits, const ds_batch *b, const int *pos);

/* Causal multi-head self-attention core: q, k, v (B, T, H*dh) -> (B, T, H*dh);
 * out = (softmax(q k^T / sqrt(dh) + causal mask) * keep) v per head.  keep
 * NULL: no dropout (the fast path); else (B, H, T, T) dropout factors on
 * the attention probabilities (entries above the diagonal unread), e.g.
 * from op_keep, living until backward.  Fused. */
tensor *op_attention(ag_tape *t, tensor *q, tensor *k, tensor *v, int B, int T, int H,
                     const float *keep);

/* ---- Reference ops, used only by the tests as oracles for the fused ops ----
 *
 * No model calls these (grep src/models).  Each has its own finite-difference
 * test; composed, they compute step by step what a fused op computes at once:
 *   op_silu, op_mul                   SwiGLU's gate: op_swiglu (test_ops, to the bit)
 *   op_broadcast_rows, op_time_slice,
 *   op_concat + op_linear + op_tanh,
 *   op_gru_cell, op_time_stack        the recurrent layers' fused sequence op
 *                                     (rnn.c, "rnn_seq" / "gru_seq"; test_rnn)
 *   op_sigmoid, op_relu               no fused op yet: element-wise, tested alone */

/* Element-wise, same shape as x (a, b same shape). */
tensor *op_sigmoid(ag_tape *t, tensor *x);
tensor *op_silu(ag_tape *t, tensor *x);
tensor *op_relu(ag_tape *t, tensor *x);
tensor *op_mul(ag_tape *t, tensor *a, tensor *b);

/* Last-dim concatenation: a (N, p), b (N, q) -> (N, p + q). */
tensor *op_concat(ag_tape *t, tensor *a, tensor *b);

/* One GRU step (the cell of rnn.h): x (B, dx), h (B, d); Wz, Wr, Wh (d, dx + d);
 * bz, br, bh (d) -> h' (B, d).
 *   z = sigmoid(Wz [x; h] + bz), r = sigmoid(Wr [x; h] + br),
 *   hh = tanh(Wh [x; r*h] + bh), h' = (1 - z) * h + z * hh.  One op (gru.c). */
tensor *op_gru_cell(ag_tape *t, tensor *x, tensor *h, tensor *Wz, tensor *bz,
                    tensor *Wr, tensor *br, tensor *Wh, tensor *bh);

/* Time-step plumbing: x (B, T, d) -> (B, d) at time step s; n tensors
 * (B, d) -> (B, n, d); a (d) row broadcast to (N, d), e.g. a learned
 * initial state to a batch. */
tensor *op_time_slice(ag_tape *t, tensor *x, int s);
tensor *op_time_stack(ag_tape *t, tensor **xs, int n);
tensor *op_broadcast_rows(ag_tape *t, tensor *row, int N);

#endif
