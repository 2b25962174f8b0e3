/* ops.c - differentiable ops on the tape; see ops.h.  The fused attention
 * and the GRU cell live in attention.c and gru.c; the reference ops (the
 * tests' oracles, see ops.h) close this file.
 *
 * Each op is a *_forward over plain float* arrays, a *_backward node
 * function that accumulates (+=) into the grads of its inputs that have
 * one, and the op_* entry point that checks shapes, allocates the output
 * on the tape and hands it over under the op's name (op_node), which
 * records the node when a gradient flows.  A NULL input (an earlier op failed
 * and called err_set) makes every op return NULL, so a model checks for
 * errors once, at the loss.
 */
#include "ops_internal.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

/* ---- shared helpers ---------------------------------------------------- */

tensor *op_out(ag_tape *t, bool need, int ndim, const int *shape)
{
    if (need) return ag_tensor(t, ndim, shape);
    tensor *y = ag_wrap(t, NULL, ndim, shape);
    if (y) y->data = ag_alloc(t, (size_t)y->n * sizeof(float));
    return y;
}

ag_node *op_node(ag_tape *t, const char *op, ag_backward_fn fn, tensor *out, tensor *a, tensor *b)
{
    ag_node *n = ag_record(t, op, out->grad ? fn : NULL, out);
    if (n) {
        n->in[0] = a;
        n->in[1] = b;
    }
    return n;
}

void linear_forward(float *y, const float *x, const float *W, const float *b,
                    int N, int in, int out)
{
    if (N == 0 || out == 0) return;
    if (b)
        for (int i = 0; i < N; i++) memcpy(y + (size_t)i * out, b, (size_t)out * sizeof *y);
    if (in == 0) {
        if (!b) memset(y, 0, (size_t)N * out * sizeof *y);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, out, in,
                1.0f, x, in, W, in, b ? 1.0f : 0.0f, y, out);
}

void linear_backward(const float *dy, const float *x, const float *W,
                     float *dx, float *dW, float *db, int N, int in, int out)
{
    if (N == 0 || out == 0) return;
    if (dx && in)   /* (N, in) += (N, out) (out, in) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, in, out,
                    1.0f, dy, out, W, in, 1.0f, dx, in);
    if (dW && in)   /* (out, in) += (N, out)^T (N, in) */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, N,
                    1.0f, dy, out, x, in, 1.0f, dW, in);
    if (db)
        for (int i = 0; i < N; i++) {
            const float *restrict g = dy + (size_t)i * out;
            for (int j = 0; j < out; j++) db[j] += g[j];
        }
}

static bool same_shape(const tensor *a, const tensor *b)
{
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

/* x's shape with the last dimension replaced by `last`. */
static void shape_last(const tensor *x, int last, int *shape)
{
    memcpy(shape, x->shape, sizeof x->shape);
    shape[x->ndim - 1] = last;
}

/* ---- embedding --------------------------------------------------------- */

/* out (n, d) = W[idx] */
static void embedding_forward(float *restrict out, const float *restrict W, const int *idx,
                              int n, int d)
{
    for (int i = 0; i < n; i++)
        memcpy(out + (size_t)i * d, W + (size_t)idx[i] * d, (size_t)d * sizeof *out);
}

static void embedding_backward(ag_node *nd)
{
    tensor *W = nd->in[0];
    int n = nd->iarg[0], d = tn_cols(W);
    const float *dy = ag_grad(nd->out);
    float *dW = ag_grad(W);
    for (int i = 0; i < n; i++) {
        float *restrict dw = dW + (size_t)nd->idx[i] * d;
        const float *restrict g = dy + (size_t)i * d;
        for (int j = 0; j < d; j++) dw[j] += g[j];
    }
}

tensor *op_embedding(ag_tape *t, tensor *W, const int *idx, int n, int ndim, const int *shape)
{
    if (!W || !idx) return NULL;
    if (W->ndim != 2) {
        err_set(ERR_ARG, "op_embedding: the table must be a matrix (V, d)");
        return NULL;
    }
    int V = W->shape[0], d = W->shape[1];
    int def[2] = { n, d };
    if (ndim == 0) {
        ndim = 2;
        shape = def;
    }
    long long lead = 1;
    for (int i = 0; i + 1 < ndim; i++) lead *= shape[i];
    if (ndim < 1 || ndim > TN_MAX_DIMS || lead != n || shape[ndim - 1] != d) {
        err_set(ERR_ARG, "op_embedding: output shape does not hold %d rows of %d", n, d);
        return NULL;
    }
    for (int i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= V) {
            err_set(ERR_ARG, "op_embedding: index %d out of range [0, %d)", idx[i], V);
            return NULL;
        }
    bool need = ag_needs_grad(t, W, NULL);
    tensor *out = op_out(t, need, ndim, shape);
    if (!out) return NULL;
    embedding_forward(out->data, W->data, idx, n, d);
    ag_node *nd = op_node(t, "embedding", embedding_backward, out, W, NULL);
    if (nd) {
        nd->idx = ag_ints(t, idx, (size_t)n);
        nd->iarg[0] = n;
    }
    return out;
}

/* ---- linear ------------------------------------------------------------ */

static void linear_node_backward(ag_node *nd)
{
    tensor *x = nd->in[0], *W = nd->in[1], *b = nd->in[2];
    linear_backward(ag_grad(nd->out), x->data, W->data, ag_grad(x), ag_grad(W), ag_grad(b),
                    tn_rows(x), tn_cols(x), W->shape[0]);
}

tensor *op_linear(ag_tape *t, tensor *x, tensor *W, tensor *b)
{
    if (!x || !W) return NULL;
    int in = tn_cols(x);
    if (W->ndim != 2 || W->shape[1] != in || (b && b->n != W->shape[0])) {
        err_set(ERR_ARG, "op_linear: x has %d columns, W is (%d, %d), b has %d", in,
                W->shape[0], W->ndim == 2 ? W->shape[1] : -1, b ? b->n : 0);
        return NULL;
    }
    int out_dim = W->shape[0], shape[TN_MAX_DIMS];
    shape_last(x, out_dim, shape);
    bool need = ag_needs_grad(t, x, W) || ag_needs_grad(t, b, NULL);
    tensor *y = op_out(t, need, x->ndim, shape);
    if (!y) return NULL;
    linear_forward(y->data, x->data, W->data, b ? b->data : NULL, tn_rows(x), in, out_dim);
    ag_node *nd = op_node(t, "linear", linear_node_backward, y, x, W);
    if (nd) nd->in[2] = b;
    return y;
}

/* ---- element-wise ------------------------------------------------------ */

typedef void (*unary_fn)(float *restrict y, const float *restrict x, int n);

/* The shared frame of the one-input element-wise ops. */
static tensor *unary(ag_tape *t, const char *op, tensor *x, unary_fn forward,
                     ag_backward_fn backward)
{
    if (!x) return NULL;
    bool need = ag_needs_grad(t, x, NULL);
    tensor *y = op_out(t, need, x->ndim, x->shape);
    if (!y) return NULL;
    forward(y->data, x->data, x->n);
    op_node(t, op, backward, y, x, NULL);
    return y;
}

static void tanh_forward(float *restrict y, const float *restrict x, int n)
{
    for (int i = 0; i < n; i++) y[i] = vec_tanhf(x[i]);
}

static void tanh_backward(ag_node *nd)
{
    const float *restrict y = nd->out->data, *restrict dy = ag_grad(nd->out);
    float *restrict dx = ag_grad(nd->in[0]);
    for (int i = 0; i < nd->out->n; i++) dx[i] += dy[i] * (1.0f - y[i] * y[i]);
}

tensor *op_tanh(ag_tape *t, tensor *x) { return unary(t, "tanh", x, tanh_forward, tanh_backward); }

/* d/dx x s(x) = s + x s (1 - s); s recomputed from x instead of stored. */
static inline float silu_grad(float x, float dy)
{
    float s = vec_sigmoidf(x);
    return dy * s * (1.0f + x * (1.0f - s));
}

/* The output of add and mul: a and b of the same shape; y->grad says
 * whether a node is needed. */
static tensor *binary_out(ag_tape *t, tensor *a, tensor *b, const char *op)
{
    if (!a || !b) return NULL;
    if (!same_shape(a, b)) {
        err_set(ERR_ARG, "op_%s: operands of %d and %d elements differ in shape", op, a->n, b->n);
        return NULL;
    }
    return op_out(t, ag_needs_grad(t, a, b), a->ndim, a->shape);
}

/* dx += g (a loop apart from b's, so that a == b accumulates twice).  When
 * dx is `fresh` (unset, see ag_grad_fill) it is written: 0 + g has the bits
 * of zeroing then adding, without the pass that zeroes. */
static void accumulate(float *restrict dx, const float *restrict g, int n, bool fresh)
{
    if (fresh) for (int i = 0; i < n; i++) dx[i] = 0.0f + g[i];
    else       for (int i = 0; i < n; i++) dx[i] += g[i];
}

static void add_backward(ag_node *nd)
{
    const float *dy = ag_grad(nd->out);
    for (int k = 0; k < 2; k++) {
        bool fresh;
        float *dx = ag_grad_fill(nd->in[k], &fresh);
        if (dx) accumulate(dx, dy, nd->out->n, fresh);
    }
}

tensor *op_add(ag_tape *t, tensor *a, tensor *b)
{
    tensor *y = binary_out(t, a, b, "add");
    if (!y) return NULL;
    const float *restrict pa = a->data, *restrict pb = b->data;
    float *restrict py = y->data;
    for (int i = 0; i < y->n; i++) py[i] = pa[i] + pb[i];
    op_node(t, "add", add_backward, y, a, b);
    return y;
}

/* dx += g * other, for the whole of x's grad (see accumulate) */
static void accumulate_product(tensor *x, const float *restrict g, const float *restrict other)
{
    bool fresh;
    float *restrict dx = ag_grad_fill(x, &fresh);
    if (!dx) return;
    if (fresh) for (int i = 0; i < x->n; i++) dx[i] = 0.0f + g[i] * other[i];
    else       for (int i = 0; i < x->n; i++) dx[i] += g[i] * other[i];
}

/* SwiGLU's gate, fused: y = silu(a) * b, one pass each way instead of a
 * silu and a mul with the silu's output between them.
 * backward: da = dy * b * silu'(a), db = dy * silu(a). */
static void swiglu_backward(ag_node *nd)
{
    tensor *a = nd->in[0], *b = nd->in[1];
    const float *restrict pa = a->data, *restrict pb = b->data, *restrict dy = ag_grad(nd->out);
    const int n = nd->out->n;
    bool fresh;
    float *restrict da = ag_grad_fill(a, &fresh);
    if (da && fresh) for (int i = 0; i < n; i++) da[i] = 0.0f + silu_grad(pa[i], dy[i] * pb[i]);
    else if (da)     for (int i = 0; i < n; i++) da[i] += silu_grad(pa[i], dy[i] * pb[i]);
    float *restrict db = ag_grad_fill(b, &fresh);
    if (db && fresh) for (int i = 0; i < n; i++) db[i] = 0.0f + dy[i] * (pa[i] * vec_sigmoidf(pa[i]));
    else if (db)     for (int i = 0; i < n; i++) db[i] += dy[i] * (pa[i] * vec_sigmoidf(pa[i]));
}

tensor *op_swiglu(ag_tape *t, tensor *a, tensor *b)
{
    if (a == b && a) {   /* the backward writes a's and b's grads in turn */
        err_set(ERR_ARG, "op_swiglu: a and b must be different tensors");
        return NULL;
    }
    tensor *y = binary_out(t, a, b, "swiglu");
    if (!y) return NULL;
    const float *restrict pa = a->data, *restrict pb = b->data;
    float *restrict py = y->data;
    for (int i = 0; i < y->n; i++) py[i] = pa[i] * vec_sigmoidf(pa[i]) * pb[i];
    op_node(t, "swiglu", swiglu_backward, y, a, b);
    return y;
}

/* ---- dropout ----------------------------------------------------------- */

/* The mask holds 0 or 1/(1-p) per element: backward is one product. */
static void mask_backward(ag_node *nd)
{
    accumulate_product(nd->in[0], ag_grad(nd->out), nd->saved);
}

/* y = x * mask, recorded under the name op. */
static tensor *apply_mask(ag_tape *t, const char *op, tensor *x, const float *mask)
{
    tensor *y = op_out(t, ag_needs_grad(t, x, NULL), x->ndim, x->shape);
    if (!y) return NULL;
    for (int i = 0; i < x->n; i++) y->data[i] = x->data[i] * mask[i];
    ag_node *nd = op_node(t, op, mask_backward, y, x, NULL);
    if (nd) nd->saved = (void *)mask;
    return y;
}

tensor *op_mask(ag_tape *t, tensor *x, const float *mask)
{
    return x && mask ? apply_mask(t, "mask", x, mask) : NULL;
}

/* 1/(1-p), the factor of the elements dropout keeps (0 for p = 1). */
static float keep_factor(float p) { return p < 1.0f ? 1.0f / (1.0f - p) : 0.0f; }

/* Element dropped when a uniform 32-bit draw is below p * 2^32. */
static bool dropped(uint32_t bits, float p) { return (double)bits < (double)p * 4294967296.0; }

/* mask[i] = 0 with probability p, else keep_factor(p); each 64-bit draw
 * decides two elements, its low half first. */
static void dropout_mask(float *restrict mask, int n, float p, rng *r)
{
    const float keep = keep_factor(p);
    uint64_t bits = 0;
    for (int i = 0; i < n; i++) {
        if (!(i & 1)) bits = rng_u64(r);
        mask[i] = dropped((uint32_t)bits, p) ? 0.0f : keep;
        bits >>= 32;
    }
}

/* 1 when dropout at rate p applies (training, p > 0), 0 when it does not,
 * -1 with err_set when it cannot (no rng, p > 1). */
static int dropout_applies(const ag_tape *t, float p, const char *who)
{
    if (!t->training || p <= 0.0f) return 0;
    if (t->rng && p <= 1.0f) return 1;
    err_set(ERR_ARG, "%s: %s", who, t->rng ? "p outside [0, 1]" : "training without an rng");
    return -1;
}

int op_dropout_seed(ag_tape *t, float p, uint64_t *seed)
{
    int applies = dropout_applies(t, p, "dropout");
    if (applies == 1) *seed = rng_u64(t->rng);
    return applies;
}

float op_keep(uint64_t seed, uint64_t index, float p)
{
    return dropped((uint32_t)(rng_at(seed, index) >> 32), p) ? 0.0f : keep_factor(p);
}

tensor *op_dropout(ag_tape *t, tensor *x, float p)
{
    if (!x) return NULL;
    int applies = dropout_applies(t, p, "op_dropout");
    if (applies <= 0) return applies ? NULL : x;
    float *mask = ag_alloc(t, (size_t)x->n * sizeof *mask);
    dropout_mask(mask, x->n, p, t->rng);
    return apply_mask(t, "dropout", x, mask);
}

/* ---- RMSNorm ----------------------------------------------------------- */

/* y = x * rstd * w per row: x, y (N, d), w (d), rstd (N) saved for backward. */
static void rmsnorm_forward(float *restrict y, float *restrict rstd, const float *restrict x,
                            const float *restrict w, int N, int d, float eps)
{
    for (int i = 0; i < N; i++) {
        const float *restrict xi = x + (size_t)i * d;
        float *restrict yi = y + (size_t)i * d;
        float r = 1.0f / sqrtf(vdot(xi, xi, d) / (float)d + eps);
        rstd[i] = r;
        for (int j = 0; j < d; j++) yi[j] = xi[j] * r * w[j];
    }
}

/* With xh = x * rstd and gw = dy * w:  dx = rstd * (gw - xh * mean(gw * xh)),
 * dw = sum over rows of dy * xh. */
static void rmsnorm_backward(ag_node *nd)
{
    tensor *x = nd->in[0], *w = nd->in[1];
    int N = tn_rows(x), d = tn_cols(x);
    const float *rstd = nd->saved, *g = ag_grad(nd->out);
    float *dX = ag_grad(x), *dW = ag_grad(w);
    for (int i = 0; i < N; i++) {
        const float *restrict xi = x->data + (size_t)i * d;
        const float *restrict dy = g + (size_t)i * d;
        const float *restrict wd = w->data;
        float r = rstd[i];
        if (dW) {
            float *restrict dw = dW;
            for (int j = 0; j < d; j++) dw[j] += dy[j] * xi[j] * r;
        }
        if (!dX) continue;
        float c = vdot3(dy, wd, xi, d) * r * r / (float)d;   /* mean(gw * xh) / rstd */
        float *restrict dx = dX + (size_t)i * d;
        for (int j = 0; j < d; j++) dx[j] += r * (dy[j] * wd[j] - xi[j] * c);
    }
}

tensor *op_rmsnorm(ag_tape *t, tensor *x, tensor *w, float eps)
{
    if (!x || !w) return NULL;
    if (w->n != tn_cols(x)) {
        err_set(ERR_ARG, "op_rmsnorm: x has %d columns, the weight %d", tn_cols(x), w->n);
        return NULL;
    }
    bool need = ag_needs_grad(t, x, w);
    tensor *y = op_out(t, need, x->ndim, x->shape);
    if (!y) return NULL;
    float *rstd = ag_alloc(t, (size_t)tn_rows(x) * sizeof *rstd);
    rmsnorm_forward(y->data, rstd, x->data, w->data, tn_rows(x), tn_cols(x), eps);
    ag_node *nd = op_node(t, "rmsnorm", rmsnorm_backward, y, x, w);
    if (nd) nd->saved = rstd;
    return y;
}

/* ---- cross-entropy ----------------------------------------------------- */

/* Loss of one row, -log softmax(l)[target], by a stable log-sum-exp.  p (V)
 * is scratch; with `keep` it receives softmax(l) for backward. */
static double ce_row(const float *restrict l, float *restrict p, int V, int target, bool keep)
{
    float mx = vmax(l, V);
    for (int j = 0; j < V; j++) p[j] = vec_expf(l[j] - mx);
    float sum = vsum(p, V);
    if (keep) {
        float inv = 1.0f / sum;
        for (int j = 0; j < V; j++) p[j] *= inv;
    }
    return (double)mx + log((double)sum) - (double)l[target];
}

/* What backward needs: the softmax of every counted row (N, V) and the
 * soft targets (NULL: none), both living until backward. */
typedef struct ce_saved { const float *probs, *soft; } ce_saved;

/* d loss / d l = (softmax(l) - q) / count for counted rows, q the row's
 * target distribution (1 - a) onehot(target) + a soft. */
static void cross_entropy_backward(ag_node *nd)
{
    tensor *x = nd->in[0];
    int N = tn_rows(x), V = tn_cols(x), ignore = nd->iarg[0], count = nd->iarg[1];
    if (count == 0) return;
    float g = ag_grad(nd->out)[0] / (float)count, *gl = ag_grad(x), a = nd->farg[0];
    const ce_saved *sv = nd->saved;
    const float *probs = sv->probs, *soft = sv->soft;
    for (int i = 0; i < N; i++) {
        int target = nd->idx[i];
        if (target == ignore) continue;
        const float *restrict p = probs + (size_t)i * V;
        float *restrict dl = gl + (size_t)i * V;
        for (int j = 0; j < V; j++) dl[j] += g * p[j];
        if (soft) {
            const float *restrict q = soft + (size_t)i * V;
            for (int j = 0; j < V; j++) dl[j] -= g * a * q[j];
        }
        dl[target] -= g * (soft ? 1.0f - a : 1.0f);
    }
}

/* sum_j q_j l_j: the soft target's part of the loss, -sum q log p, is
 * lse - this (q sums to 1). */
static double soft_dot(const float *restrict l, const float *restrict q, int V)
{
    double s = 0;
    for (int j = 0; j < V; j++) s += (double)q[j] * (double)l[j];
    return s;
}

tensor *op_soft_cross_entropy(ag_tape *t, tensor *logits, const int *targets, int ignore,
                              const float *soft, float a)
{
    if (!logits || !targets) return NULL;
    int N = tn_rows(logits), V = tn_cols(logits);
    for (int i = 0; i < N; i++)
        if (targets[i] != ignore && (targets[i] < 0 || targets[i] >= V)) {
            err_set(ERR_ARG, "op_cross_entropy: target %d out of range [0, %d)", targets[i], V);
            return NULL;
        }
    if (!soft) a = 0;
    bool need = ag_needs_grad(t, logits, NULL);
    tensor *loss = op_out(t, need, 1, (const int[]){ 1 });
    if (!loss) return NULL;
    float *probs = ag_alloc(t, (size_t)(need ? N : 1) * V * sizeof *probs);
    double sum = 0.0;
    int count = 0;
    for (int i = 0; i < N; i++) {
        if (targets[i] == ignore) continue;
        const float *l = logits->data + (size_t)i * V;
        /* ce_row = lse - l[target]; the soft part moves a of it to lse - q.l */
        sum += ce_row(l, need ? probs + (size_t)i * V : probs, V, targets[i], need);
        if (soft) sum += (double)a * ((double)l[targets[i]] - soft_dot(l, soft + (size_t)i * V, V));
        count++;
    }
    loss->data[0] = count ? (float)(sum / count) : 0.0f;
    ag_node *nd = op_node(t, soft ? "soft_cross_entropy" : "cross_entropy",
                          cross_entropy_backward, loss, logits, NULL);
    ce_saved *sv = nd ? ag_alloc(t, sizeof *sv) : NULL;
    if (sv) {
        *sv = (ce_saved){ probs, soft };
        nd->idx = ag_ints(t, targets, (size_t)N);
        nd->iarg[0] = ignore;
        nd->iarg[1] = count;
        nd->farg[0] = a;
        nd->saved = sv;
    }
    return loss;
}

tensor *op_cross_entropy(ag_tape *t, tensor *logits, const int *targets, int ignore)
{
    return op_soft_cross_entropy(t, logits, targets, ignore, NULL, 0);
}

tensor *op_batch_cross_entropy(ag_tape *t, tensor *logits, const ds_batch *b, const int *pos)
{
    if (!logits || !b) return NULL;
    int N = tn_rows(logits), V = tn_cols(logits);
    if (!pos && N != b->B * b->T) {
        err_set(ERR_ARG, "op_batch_cross_entropy: %d rows for a (%d, %d) batch", N, b->B, b->T);
        return NULL;
    }
    int *y = ag_alloc(t, (size_t)(N ? N : 1) * sizeof *y);
    float *q = b->soft ? ag_alloc(t, (size_t)(N ? N : 1) * V * sizeof *q) : NULL;
    for (int i = 0; i < N; i++) {
        int at = pos ? pos[i] : i;
        y[i] = at < 0 ? TOK_PAD : b->y[at];
        if (q && at >= 0) memcpy(q + (size_t)i * V, b->soft + (size_t)at * V, (size_t)V * sizeof *q);
    }
    return op_soft_cross_entropy(t, logits, y, TOK_PAD, q, b->soft_weight);
}

/* ---- reference ops ------------------------------------------------------
 * Used only by the tests, as oracles for the fused ops (see ops.h). */

static void sigmoid_forward(float *restrict y, const float *restrict x, int n)
{
    for (int i = 0; i < n; i++) y[i] = vec_sigmoidf(x[i]);
}

static void sigmoid_backward(ag_node *nd)
{
    const float *restrict y = nd->out->data, *restrict dy = ag_grad(nd->out);
    float *restrict dx = ag_grad(nd->in[0]);
    for (int i = 0; i < nd->out->n; i++) dx[i] += dy[i] * y[i] * (1.0f - y[i]);
}

tensor *op_sigmoid(ag_tape *t, tensor *x)
{
    return unary(t, "sigmoid", x, sigmoid_forward, sigmoid_backward);
}

static void silu_forward(float *restrict y, const float *restrict x, int n)
{
    for (int i = 0; i < n; i++) y[i] = x[i] * vec_sigmoidf(x[i]);
}

/* dx is written when fresh (see accumulate), as a linear's output is. */
static void silu_backward(ag_node *nd)
{
    const float *restrict x = nd->in[0]->data, *restrict dy = ag_grad(nd->out);
    bool fresh;
    float *restrict dx = ag_grad_fill(nd->in[0], &fresh);
    const int n = nd->out->n;
    if (fresh) for (int i = 0; i < n; i++) dx[i] = 0.0f + silu_grad(x[i], dy[i]);
    else       for (int i = 0; i < n; i++) dx[i] += silu_grad(x[i], dy[i]);
}

tensor *op_silu(ag_tape *t, tensor *x) { return unary(t, "silu", x, silu_forward, silu_backward); }

static void relu_forward(float *restrict y, const float *restrict x, int n)
{
    for (int i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

static void relu_backward(ag_node *nd)
{
    const float *restrict x = nd->in[0]->data, *restrict dy = ag_grad(nd->out);
    float *restrict dx = ag_grad(nd->in[0]);
    for (int i = 0; i < nd->out->n; i++) dx[i] += x[i] > 0.0f ? dy[i] : 0.0f;
}

tensor *op_relu(ag_tape *t, tensor *x) { return unary(t, "relu", x, relu_forward, relu_backward); }

static void mul_backward(ag_node *nd)
{
    tensor *a = nd->in[0], *b = nd->in[1];
    const float *dy = ag_grad(nd->out);
    accumulate_product(a, dy, b->data);
    accumulate_product(b, dy, a->data);
}

tensor *op_mul(ag_tape *t, tensor *a, tensor *b)
{
    tensor *y = binary_out(t, a, b, "mul");
    if (!y) return NULL;
    const float *restrict pa = a->data, *restrict pb = b->data;
    float *restrict py = y->data;
    for (int i = 0; i < y->n; i++) py[i] = pa[i] * pb[i];
    op_node(t, "mul", mul_backward, y, a, b);
    return y;
}

/* y (N, p+q) = [a (N, p), b (N, q)] */
static void concat_forward(float *y, const float *a, const float *b, int N, int p, int q)
{
    for (int i = 0; i < N; i++) {
        memcpy(y + (size_t)i * (p + q), a + (size_t)i * p, (size_t)p * sizeof *y);
        memcpy(y + (size_t)i * (p + q) + p, b + (size_t)i * q, (size_t)q * sizeof *y);
    }
}

static void concat_backward(ag_node *nd)
{
    tensor *a = nd->in[0], *b = nd->in[1];
    int p = tn_cols(a), q = tn_cols(b), N = tn_rows(a);
    const float *dy = ag_grad(nd->out);
    float *da = ag_grad(a), *db = ag_grad(b);
    for (int i = 0; i < N; i++) {
        const float *g = dy + (size_t)i * (p + q);
        if (da) accumulate(da + (size_t)i * p, g, p, false);
        if (db) accumulate(db + (size_t)i * q, g + p, q, false);
    }
}

tensor *op_concat(ag_tape *t, tensor *a, tensor *b)
{
    if (!a || !b) return NULL;
    if (tn_rows(a) != tn_rows(b)) {
        err_set(ERR_ARG, "op_concat: %d rows and %d rows", tn_rows(a), tn_rows(b));
        return NULL;
    }
    int shape[TN_MAX_DIMS];
    shape_last(a, tn_cols(a) + tn_cols(b), shape);
    bool need = ag_needs_grad(t, a, b);
    tensor *y = op_out(t, need, a->ndim, shape);
    if (!y) return NULL;
    concat_forward(y->data, a->data, b->data, tn_rows(a), tn_cols(a), tn_cols(b));
    op_node(t, "concat", concat_backward, y, a, b);
    return y;
}

static void time_slice_backward(ag_node *nd)
{
    tensor *x = nd->in[0];
    int B = x->shape[0], T = x->shape[1], d = x->shape[2], s = nd->iarg[0];
    float *dx = ag_grad(x);
    const float *dy = ag_grad(nd->out);
    for (int b = 0; b < B; b++)
        accumulate(dx + ((size_t)b * T + s) * d, dy + (size_t)b * d, d, false);
}

tensor *op_time_slice(ag_tape *t, tensor *x, int s)
{
    if (!x) return NULL;
    if (x->ndim != 3 || s < 0 || s >= x->shape[1]) {
        err_set(ERR_ARG, "op_time_slice: step %d of a tensor that is not (B, T > %d, d)", s, s);
        return NULL;
    }
    int B = x->shape[0], T = x->shape[1], d = x->shape[2];
    bool need = ag_needs_grad(t, x, NULL);
    tensor *y = op_out(t, need, 2, (const int[]){ B, d });
    if (!y) return NULL;
    for (int b = 0; b < B; b++)
        memcpy(y->data + (size_t)b * d, x->data + ((size_t)b * T + s) * d, (size_t)d * sizeof(float));
    ag_node *nd = op_node(t, "time_slice", time_slice_backward, y, x, NULL);
    if (nd) nd->iarg[0] = s;
    return y;
}

/* The inputs (more than in[] holds) are kept in `saved`. */
static void time_stack_backward(ag_node *nd)
{
    tensor **xs = nd->saved;
    int n = nd->iarg[0], B = nd->out->shape[0], d = nd->out->shape[2];
    const float *dy = ag_grad(nd->out);
    for (int s = 0; s < n; s++) {
        float *dx = ag_grad(xs[s]);
        if (!dx) continue;
        for (int b = 0; b < B; b++)
            accumulate(dx + (size_t)b * d, dy + ((size_t)b * n + s) * d, d, false);
    }
}

tensor *op_time_stack(ag_tape *t, tensor **xs, int n)
{
    if (!xs || n < 1) {
        err_set(ERR_ARG, "op_time_stack: no time step");
        return NULL;
    }
    bool need = false;
    for (int s = 0; s < n; s++) {
        if (!xs[s]) return NULL;
        if (xs[s]->ndim != 2 || !same_shape(xs[s], xs[0])) {
            err_set(ERR_ARG, "op_time_stack: step %d is not (B, d) like step 0", s);
            return NULL;
        }
        need = need || ag_needs_grad(t, xs[s], NULL);
    }
    int B = xs[0]->shape[0], d = xs[0]->shape[1];
    tensor *y = op_out(t, need, 3, (const int[]){ B, n, d });
    if (!y) return NULL;
    for (int s = 0; s < n; s++)
        for (int b = 0; b < B; b++)
            memcpy(y->data + ((size_t)b * n + s) * d, xs[s]->data + (size_t)b * d,
                   (size_t)d * sizeof(float));
    ag_node *nd = op_node(t, "time_stack", time_stack_backward, y, NULL, NULL);
    if (nd) {
        tensor **keep = ag_alloc(t, (size_t)n * sizeof *keep);
        memcpy(keep, xs, (size_t)n * sizeof *keep);
        nd->saved = keep;
        nd->iarg[0] = n;
    }
    return y;
}

static void broadcast_rows_backward(ag_node *nd)
{
    int d = nd->in[0]->n, N = nd->out->n / (d ? d : 1);
    float *dx = ag_grad(nd->in[0]);
    const float *dy = ag_grad(nd->out);
    for (int i = 0; i < N; i++) accumulate(dx, dy + (size_t)i * d, d, false);
}

tensor *op_broadcast_rows(ag_tape *t, tensor *row, int N)
{
    if (!row) return NULL;
    if (N < 0) {
        err_set(ERR_ARG, "op_broadcast_rows: %d rows", N);
        return NULL;
    }
    int d = row->n;
    bool need = ag_needs_grad(t, row, NULL);
    tensor *y = op_out(t, need, 2, (const int[]){ N, d });
    if (!y) return NULL;
    for (int i = 0; i < N; i++) memcpy(y->data + (size_t)i * d, row->data, (size_t)d * sizeof(float));
    op_node(t, "broadcast_rows", broadcast_rows_backward, y, row, NULL);
    return y;
}
