/* test_ops.c - every op of ops.h: forward against a naive reference where
 * the op is fused, backward against central finite differences of a random
 * scalar projection loss = sum(out * R), on small odd shapes. */
#include "ops.h"
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- harness ----------------------------------------------------------- */

typedef tensor *(*forward_fn)(ag_tape *t, tensor **in, const void *ctx);

/* loss = sum(x * R): a test-local op, which also shows that a node written
 * outside ops.c plugs into the tape. */
static void project_backward(ag_node *nd)
{
    const float *R = nd->saved;
    float g = ag_grad(nd->out)[0], *dx = ag_grad(nd->in[0]);
    for (int i = 0; i < nd->in[0]->n; i++) dx[i] += g * R[i];
}

static tensor *project(ag_tape *t, tensor *x, const float *R)
{
    tensor *loss = ag_tensor(t, 1, (const int[]){ 1 });
    double s = 0.0;
    for (int i = 0; i < x->n; i++) s += (double)x->data[i] * R[i];
    loss->data[0] = (float)s;
    ag_node *nd = ag_record(t, "project", project_backward, loss);
    nd->in[0] = x;
    nd->saved = (void *)R;
    return loss;
}

static double projected(const tensor *out, const float *R)
{
    double s = 0.0;
    for (int i = 0; i < out->n; i++) s += (double)out->data[i] * R[i];
    return s;
}

static rng test_rng;
static ag_tape inputs;   /* leaf tensors, with grads; never reset mid-test */

__attribute__((constructor)) static void harness_init(void)
{
    rng_seed(&test_rng, 1234);
    ag_init(&inputs, 1 << 20);
}

/* A leaf tensor of normal(0, std) values with a grad. */
static tensor *leaf(int ndim, const int *shape, float std)
{
    tensor *x = ag_tensor(&inputs, ndim, shape);
    tn_fill_normal(x, &test_rng, 0.0f, std);
    return x;
}

static const float FD_EPS = 1e-3f;

/* |analytic - numeric| <= FD_ABS + FD_REL * max(|a|, |n|): float32 forward
 * passes leave ~1e-4 of noise in a difference quotient over 2e-3. */
static const double FD_ABS = 5e-4, FD_REL = 3e-3;

/* Check d sum(f(in) * R) / d in[i] for every input that has a grad.  When
 * `reseed` is not NULL the tape's rng is reseeded to it before every
 * forward pass (dropout draws the same mask each time).  Returns the worst
 * error relative to the tolerance (<= 1 passes). */
static double gradcheck(forward_fn f, const void *ctx, tensor **in, int n_in, uint64_t *reseed)
{
    ag_tape t;
    ag_init(&t, 0);
    rng r;
    t.rng = &r;
    t.training = reseed != NULL;
    if (reseed) rng_seed(&r, *reseed);
    tensor *out = f(&t, in, ctx);
    CHECK(out != NULL);
    if (!out) {
        ag_free(&t);
        return INFINITY;
    }
    float *R = malloc((size_t)out->n * sizeof *R);
    for (int i = 0; i < out->n; i++) R[i] = rng_normal(&test_rng);
    for (int k = 0; k < n_in; k++)
        if (in[k] && in[k]->grad) in[k]->grad_lazy = true;   /* unset: backward writes or zeroes it */
    ag_backward(&t, project(&t, out, R));

    double worst = 0.0;
    t.grad = false;
    for (int k = 0; k < n_in; k++) {
        if (!in[k] || !in[k]->grad) continue;
        for (int j = 0; j < in[k]->n; j++) {
            float keep = in[k]->data[j];
            double l[2];
            for (int s = 0; s < 2; s++) {
                in[k]->data[j] = keep + (s ? -FD_EPS : FD_EPS);
                ag_reset(&t);
                if (reseed) rng_seed(&r, *reseed);
                l[s] = projected(f(&t, in, ctx), R);
            }
            in[k]->data[j] = keep;
            double num = (l[0] - l[1]) / (2.0 * (double)FD_EPS), ana = ag_grad(in[k])[j];
            double tol = FD_ABS + FD_REL * fmax(fabs(num), fabs(ana));
            double err = fabs(num - ana) / tol;
            if (err > 1.0)
                fprintf(stderr, "  input %d element %d: analytic %.6g numeric %.6g\n", k, j, ana, num);
            if (err > worst) worst = err;
        }
    }
    free(R);
    ag_free(&t);
    return worst;
}

#define CHECK_GRADS(f, ctx, ...)                                                  \
    do {                                                                          \
        tensor *in_[] = { __VA_ARGS__ };                                          \
        double w_ = gradcheck(f, ctx, in_, (int)(sizeof in_ / sizeof *in_), NULL); \
        CHECK(w_ <= 1.0);                                                         \
    } while (0)

static float max_abs_diff(const float *a, const float *b, int n)
{
    float m = 0.0f;
    for (int i = 0; i < n; i++) m = fmaxf(m, fabsf(a[i] - b[i]));
    return m;
}

/* ---- embedding, linear ------------------------------------------------- */

static const int emb_idx[6] = { 3, 0, 6, 3, 3, 1 };

static tensor *f_embedding(ag_tape *t, tensor **in, const void *ctx)
{
    return op_embedding(t, in[0], emb_idx, 6, 3, (const int[]){ 2, 3, 5 });
}

TEST(embedding_forward_and_grad)
{
    tensor *W = leaf(2, (const int[]){ 7, 5 }, 1.0f);
    ag_tape t;
    ag_init(&t, 0);
    tensor *y = op_embedding(&t, W, emb_idx, 6, 0, NULL);
    CHECK(y && y->ndim == 2 && y->shape[0] == 6 && y->shape[1] == 5);
    if (y) CHECK(memcmp(y->data + 3 * 5, W->data + 3 * 5, 5 * sizeof(float)) == 0);
    CHECK(op_embedding(&t, W, (const int[]){ 7 }, 1, 0, NULL) == NULL);
    CHECK(op_embedding(&t, W, emb_idx, 6, 2, (const int[]){ 5, 5 }) == NULL);
    ag_free(&t);
    CHECK_GRADS(f_embedding, NULL, W);
}

static tensor *f_linear(ag_tape *t, tensor **in, const void *ctx)
{
    return op_linear(t, in[0], in[1], in[2]);
}

static void check_linear(int ndim, const int *xshape, int out, bool bias)
{
    int in_dim = xshape[ndim - 1];
    tensor *x = leaf(ndim, xshape, 1.0f);
    tensor *W = leaf(2, (const int[]){ out, in_dim }, 0.5f);
    tensor *b = bias ? leaf(1, (const int[]){ out }, 0.5f) : NULL;
    ag_tape t;
    ag_init(&t, 0);
    tensor *y = op_linear(&t, x, W, b);
    CHECK(y && y->ndim == ndim && y->shape[ndim - 1] == out && y->shape[0] == xshape[0]);
    double worst = 0.0;
    for (int i = 0; y && i < tn_rows(x); i++)
        for (int o = 0; o < out; o++) {
            double s = b ? b->data[o] : 0.0;
            for (int k = 0; k < in_dim; k++) s += (double)x->data[i * in_dim + k] * W->data[o * in_dim + k];
            worst = fmax(worst, fabs(s - y->data[i * out + o]));
        }
    CHECK(worst < 1e-5);
    ag_free(&t);
    CHECK_GRADS(f_linear, NULL, x, W, b);
}

TEST(linear_forward_and_grads)
{
    check_linear(3, (const int[]){ 3, 4, 5 }, 6, true);
    check_linear(3, (const int[]){ 2, 1, 5 }, 3, false);   /* T = 1 */
    check_linear(2, (const int[]){ 9, 13 }, 11, true);
    check_linear(2, (const int[]){ 1, 1 }, 1, true);
}

TEST(linear_rejects_bad_shapes)
{
    ag_tape t;
    ag_init(&t, 0);
    tensor *x = leaf(2, (const int[]){ 3, 4 }, 1.0f), *W = leaf(2, (const int[]){ 2, 5 }, 1.0f);
    err_set(ERR_OK, "%s", "");
    CHECK(op_linear(&t, x, W, NULL) == NULL);
    CHECK(strlen(err_msg()) > 0);
    /* NULL propagates through any op */
    CHECK(op_tanh(&t, op_linear(&t, x, W, NULL)) == NULL);
    CHECK(op_add(&t, x, NULL) == NULL);
    ag_free(&t);
}

/* ---- element-wise ------------------------------------------------------ */

static tensor *f_tanh(ag_tape *t, tensor **in, const void *c) { return op_tanh(t, in[0]); }
static tensor *f_sigmoid(ag_tape *t, tensor **in, const void *c) { return op_sigmoid(t, in[0]); }
static tensor *f_silu(ag_tape *t, tensor **in, const void *c) { return op_silu(t, in[0]); }
static tensor *f_relu(ag_tape *t, tensor **in, const void *c) { return op_relu(t, in[0]); }
static tensor *f_add(ag_tape *t, tensor **in, const void *c) { return op_add(t, in[0], in[1]); }
static tensor *f_mul(ag_tape *t, tensor **in, const void *c) { return op_mul(t, in[0], in[1]); }
static tensor *f_swiglu(ag_tape *t, tensor **in, const void *c) { return op_swiglu(t, in[0], in[1]); }
/* a and b also feed a mul: one of the two backwards accumulates into grads
 * the other wrote */
static tensor *f_swiglu_shared(ag_tape *t, tensor **in, const void *c)
{
    return op_add(t, op_swiglu(t, in[0], in[1]), op_mul(t, in[0], in[1]));
}
static tensor *f_square(ag_tape *t, tensor **in, const void *c) { return op_mul(t, in[0], in[0]); }
static tensor *f_double(ag_tape *t, tensor **in, const void *c) { return op_add(t, in[0], in[0]); }

TEST(elementwise_values)
{
    ag_tape t;
    ag_init(&t, 0);
    tensor *x = leaf(2, (const int[]){ 3, 7 }, 2.0f);
    tensor *y[4] = { op_tanh(&t, x), op_sigmoid(&t, x), op_silu(&t, x), op_relu(&t, x) };
    float worst = 0.0f;
    for (int i = 0; i < x->n; i++) {
        float v = x->data[i], s = 1.0f / (1.0f + expf(-v));
        worst = fmaxf(worst, fabsf(y[0]->data[i] - tanhf(v)));
        worst = fmaxf(worst, fabsf(y[1]->data[i] - s));
        worst = fmaxf(worst, fabsf(y[2]->data[i] - v * s));
        worst = fmaxf(worst, fabsf(y[3]->data[i] - (v > 0 ? v : 0)));
    }
    CHECK(worst < 1e-6f);
    ag_free(&t);
}

/* The vectorised exp/tanh/sigmoid against libm over a dense sweep,
 * including arguments far outside the clamped range. */
TEST(elementwise_accuracy_sweep)
{
    enum { N = 40001 };
    ag_tape t;
    ag_init(&t, 0);
    t.grad = false;
    tensor *x = ag_tensor(&t, 1, (const int[]){ N });
    for (int i = 0; i < N; i++) x->data[i] = -20.0f + 0.001f * (float)i;
    x->data[0] = -1000.0f;
    x->data[N - 1] = 1000.0f;
    tensor *th = op_tanh(&t, x), *sg = op_sigmoid(&t, x), *si = op_silu(&t, x);
    double e_tanh = 0.0, e_sig = 0.0, e_silu = 0.0;
    for (int i = 0; i < N; i++) {
        double v = x->data[i], s = 1.0 / (1.0 + exp(-v));
        e_tanh = fmax(e_tanh, fabs(th->data[i] - tanh(v)));
        e_sig = fmax(e_sig, fabs(sg->data[i] - s));
        e_silu = fmax(e_silu, fabs(si->data[i] - v * s) / fmax(1.0, fabs(v)));
    }
    CHECK(e_tanh < 3e-7 && e_sig < 3e-7 && e_silu < 3e-7);
    if (!(e_tanh < 3e-7 && e_sig < 3e-7 && e_silu < 3e-7))
        fprintf(stderr, "  tanh %.3g sigmoid %.3g silu %.3g\n", e_tanh, e_sig, e_silu);
    /* cross-entropy stays finite and exact-ish with huge logits */
    tensor *l = ag_tensor(&t, 2, (const int[]){ 2, 3 });
    const float big[6] = { 1000.0f, -1000.0f, 0.0f, -500.0f, -500.0f, -501.0f };
    memcpy(l->data, big, sizeof big);
    tensor *loss = op_cross_entropy(&t, l, (const int[]){ 1, 0 }, -1);
    double want = (2000.0 + log1p(exp(-1000.0) + exp(-2000.0)) + log(1.0 + 1.0 + exp(-1.0))) / 2.0;
    CHECK(loss && isfinite(loss->data[0]));
    if (loss) CHECK_NEAR(loss->data[0], want, 1e-3);
    ag_free(&t);
}

TEST(elementwise_grads)
{
    tensor *x = leaf(2, (const int[]){ 3, 7 }, 1.5f);
    /* keep relu's kink out of the finite differences */
    for (int i = 0; i < x->n; i++)
        if (fabsf(x->data[i]) < 0.05f) x->data[i] = 0.1f;
    CHECK_GRADS(f_tanh, NULL, x);
    CHECK_GRADS(f_sigmoid, NULL, x);
    CHECK_GRADS(f_silu, NULL, x);
    CHECK_GRADS(f_relu, NULL, x);
    tensor *a = leaf(3, (const int[]){ 2, 3, 5 }, 1.0f), *b = leaf(3, (const int[]){ 2, 3, 5 }, 1.0f);
    CHECK_GRADS(f_add, NULL, a, b);
    CHECK_GRADS(f_mul, NULL, a, b);
    CHECK_GRADS(f_square, NULL, a);   /* the same tensor on both sides */
    CHECK_GRADS(f_double, NULL, a);
    CHECK_GRADS(f_swiglu, NULL, a, b);
    CHECK_GRADS(f_swiglu_shared, NULL, a, b);
    ag_tape t;
    ag_init(&t, 0);
    CHECK(op_add(&t, a, x) == NULL);
    CHECK(op_mul(&t, leaf(2, (const int[]){ 6, 5 }, 1.0f), a) == NULL);   /* same n, other shape */
    CHECK(op_swiglu(&t, a, a) == NULL);
    ag_free(&t);
}

/* The fused gate computes what silu then mul compute, to the bit, forward
 * and backward (the Transformer's results did not move when it came in). */
TEST(swiglu_is_silu_times_b)
{
    const int shape[] = { 4, 9 };
    tensor *a[2] = { leaf(2, shape, 2.0f), leaf(2, shape, 2.0f) };
    tensor *b[2] = { leaf(2, shape, 1.0f), leaf(2, shape, 1.0f) };
    memcpy(a[1]->data, a[0]->data, sizeof(float) * 36);
    memcpy(b[1]->data, b[0]->data, sizeof(float) * 36);
    ag_tape t;
    ag_init(&t, 0);
    tensor *y[2] = { op_swiglu(&t, a[0], b[0]), op_mul(&t, op_silu(&t, a[1]), b[1]) };
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 36; i++) ag_grad(y[k])[i] = (float)(i % 7) - 3.0f;
    for (int i = t.n_nodes - 1; i >= 0; i--) t.nodes[i].backward(&t.nodes[i]);
    CHECK(memcmp(y[0]->data, y[1]->data, sizeof(float) * 36) == 0);
    CHECK(memcmp(ag_grad(a[0]), ag_grad(a[1]), sizeof(float) * 36) == 0);
    CHECK(memcmp(ag_grad(b[0]), ag_grad(b[1]), sizeof(float) * 36) == 0);
    ag_free(&t);
}

/* ---- dropout ----------------------------------------------------------- */

static tensor *f_dropout(ag_tape *t, tensor **in, const void *c)
{
    return op_dropout(t, in[0], *(const float *)c);
}

TEST(dropout_eval_identity_and_training_scale)
{
    tensor *x = leaf(2, (const int[]){ 50, 40 }, 1.0f);
    ag_tape t;
    ag_init(&t, 0);
    rng r;
    rng_seed(&r, 5);
    t.rng = &r;
    CHECK(op_dropout(&t, x, 0.3f) == x);   /* eval: identity */
    t.training = true;
    tensor *y = op_dropout(&t, x, 0.25f);
    int dropped = 0, bad = 0;
    for (int i = 0; y && i < x->n; i++) {
        if (y->data[i] == 0.0f) dropped++;
        else if (fabsf(y->data[i] - x->data[i] / 0.75f) > 1e-6f * fabsf(x->data[i]) + 1e-7f) bad++;
    }
    CHECK(y != NULL && bad == 0);
    CHECK(dropped > 400 && dropped < 600);   /* 2000 * 0.25 = 500 expected */
    CHECK(op_dropout(&t, x, 0.0f) == x);
    t.rng = NULL;
    CHECK(op_dropout(&t, x, 0.5f) == NULL);   /* training needs an rng */
    ag_free(&t);

    float p = 0.4f;
    uint64_t seed = 99;
    tensor *z = leaf(2, (const int[]){ 3, 5 }, 1.0f);
    tensor *in[] = { z };
    CHECK(gradcheck(f_dropout, &p, in, 1, &seed) <= 1.0);
}

static tensor *f_mask(ag_tape *t, tensor **in, const void *c) { return op_mask(t, in[0], c); }

/* op_mask multiplies by the caller's factors; op_keep draws them: 0 or
 * 1/(1-p), about a fraction p of zeros, a function of (seed, index) only. */
TEST(mask_and_keep)
{
    enum { N = 4000 };
    static float keep[N];
    int zeros = 0, bad = 0;
    for (int i = 0; i < N; i++) {
        keep[i] = op_keep(77, (uint64_t)i, 0.25f);
        zeros += keep[i] == 0.0f;
        bad += keep[i] != 0.0f && keep[i] != 1.0f / 0.75f;
    }
    CHECK(bad == 0 && zeros > 900 && zeros < 1100);   /* 1000 expected */
    CHECK(op_keep(77, 123, 0.25f) == keep[123] && op_keep(77, 123, 0.0f) == 1.0f);
    int same = 0;
    for (int i = 0; i < N; i++) same += op_keep(78, (uint64_t)i, 0.25f) == keep[i];
    CHECK(same < N * 3 / 4);   /* another seed, another mask (5/8 agree by chance) */

    tensor *x = leaf(2, (const int[]){ 5, 4 }, 1.0f);
    ag_tape t;
    ag_init(&t, 0);
    tensor *y = op_mask(&t, x, keep);
    CHECK(y && y->data[3] == x->data[3] * keep[3] && y->data[19] == x->data[19] * keep[19]);
    CHECK(op_mask(&t, x, NULL) == NULL);
    ag_free(&t);
    CHECK_GRADS(f_mask, keep, x);

    /* seeds for such masks are drawn only when dropout applies */
    uint64_t seed = 0;
    ag_init(&t, 0);
    rng r;
    rng_seed(&r, 5);
    t.rng = &r;
    CHECK(op_dropout_seed(&t, 0.5f, &seed) == 0 && seed == 0);   /* not training */
    t.training = true;
    CHECK(op_dropout_seed(&t, 0.0f, &seed) == 0 && seed == 0);
    CHECK(op_dropout_seed(&t, 0.5f, &seed) == 1 && seed != 0);
    CHECK(op_dropout_seed(&t, 1.5f, &seed) == -1);
    t.rng = NULL;
    CHECK(op_dropout_seed(&t, 0.5f, &seed) == -1 && strstr(err_msg(), "without an rng"));
    ag_free(&t);
}

/* ---- concat, time steps, broadcast ------------------------------------- */

static tensor *f_concat(ag_tape *t, tensor **in, const void *c) { return op_concat(t, in[0], in[1]); }
static tensor *f_slice(ag_tape *t, tensor **in, const void *c) { return op_time_slice(t, in[0], *(const int *)c); }
static tensor *f_stack(ag_tape *t, tensor **in, const void *c) { return op_time_stack(t, in, *(const int *)c); }
static tensor *f_broadcast(ag_tape *t, tensor **in, const void *c) { return op_broadcast_rows(t, in[0], 3); }

TEST(plumbing_values_and_grads)
{
    tensor *a = leaf(2, (const int[]){ 4, 3 }, 1.0f), *b = leaf(2, (const int[]){ 4, 5 }, 1.0f);
    ag_tape t;
    ag_init(&t, 0);
    tensor *c = op_concat(&t, a, b);
    CHECK(c && c->shape[1] == 8 && c->data[2 * 8 + 3] == b->data[2 * 5] && c->data[8 + 2] == a->data[5]);
    tensor *x = leaf(3, (const int[]){ 2, 4, 3 }, 1.0f);
    tensor *s = op_time_slice(&t, x, 2);
    CHECK(s && s->ndim == 2 && s->data[3 + 1] == x->data[(1 * 4 + 2) * 3 + 1]);
    CHECK(op_time_slice(&t, x, 4) == NULL);
    tensor *xs[12];
    for (int i = 0; i < 12; i++) xs[i] = leaf(2, (const int[]){ 2, 3 }, 1.0f);
    tensor *st = op_time_stack(&t, xs, 12);
    CHECK(st && st->ndim == 3 && st->shape[1] == 12 && st->data[(1 * 12 + 9) * 3 + 2] == xs[9]->data[3 + 2]);
    tensor *row = leaf(1, (const int[]){ 4 }, 1.0f);
    tensor *br = op_broadcast_rows(&t, row, 3);
    CHECK(br && br->shape[0] == 3 && br->data[2 * 4 + 1] == row->data[1]);
    ag_free(&t);

    CHECK_GRADS(f_concat, NULL, a, b);
    int step = 2, n = 12;
    CHECK_GRADS(f_slice, &step, x);
    step = 0;
    CHECK_GRADS(f_slice, &step, x);
    tensor *in[12];
    memcpy(in, xs, sizeof in);
    CHECK(gradcheck(f_stack, &n, in, 12, NULL) <= 1.0);   /* more inputs than in[] holds */
    CHECK_GRADS(f_broadcast, NULL, row);
}

/* ---- RMSNorm ----------------------------------------------------------- */

static tensor *f_rmsnorm(ag_tape *t, tensor **in, const void *c) { return op_rmsnorm(t, in[0], in[1], 1e-5f); }

TEST(rmsnorm_forward_and_grads)
{
    tensor *x = leaf(3, (const int[]){ 2, 3, 9 }, 1.0f), *w = leaf(1, (const int[]){ 9 }, 1.0f);
    ag_tape t;
    ag_init(&t, 0);
    tensor *y = op_rmsnorm(&t, x, w, 1e-5f);
    double worst = 0.0;
    for (int i = 0; y && i < 6; i++) {
        double ss = 0.0;
        for (int j = 0; j < 9; j++) ss += (double)x->data[i * 9 + j] * x->data[i * 9 + j];
        double rs = 1.0 / sqrt(ss / 9 + 1e-5);
        for (int j = 0; j < 9; j++)
            worst = fmax(worst, fabs(x->data[i * 9 + j] * rs * w->data[j] - y->data[i * 9 + j]));
    }
    CHECK(y && worst < 1e-5);
    CHECK(op_rmsnorm(&t, x, leaf(1, (const int[]){ 8 }, 1.0f), 1e-5f) == NULL);
    ag_free(&t);
    CHECK_GRADS(f_rmsnorm, NULL, x, w);
    tensor *x1 = leaf(2, (const int[]){ 1, 1 }, 1.0f), *w1 = leaf(1, (const int[]){ 1 }, 1.0f);
    CHECK_GRADS(f_rmsnorm, NULL, x1, w1);
}

/* ---- cross-entropy ----------------------------------------------------- */

static const int ce_targets[7] = { 2, 0, 5, 1, 0, 3, 5 };   /* 0 = ignored */

static tensor *f_ce(ag_tape *t, tensor **in, const void *c)
{
    return op_cross_entropy(t, in[0], c, 0);
}

/* log sum_j exp(l_j), in double, the reference's way. */
static double ref_lse(const float *l, int V)
{
    double mx = -INFINITY, se = 0.0;
    for (int j = 0; j < V; j++) mx = fmax(mx, l[j]);
    for (int j = 0; j < V; j++) se += exp(l[j] - mx);
    return mx + log(se);
}

TEST(cross_entropy_forward_and_grads)
{
    tensor *l = leaf(3, (const int[]){ 1, 7, 6 }, 2.0f);
    l->data[5 * 6 + 3] = 40.0f;   /* a large logit: log-sum-exp must stay stable */
    ag_tape t;
    ag_init(&t, 0);
    tensor *loss = op_cross_entropy(&t, l, ce_targets, 0);
    double sum = 0.0;
    int count = 0;
    for (int i = 0; i < 7; i++) {
        if (!ce_targets[i]) continue;
        sum += ref_lse(l->data + i * 6, 6) - l->data[i * 6 + ce_targets[i]];
        count++;
    }
    CHECK(loss && loss->n == 1);
    if (loss) CHECK_NEAR(loss->data[0], sum / count, 1e-5);
    CHECK(op_cross_entropy(&t, l, (const int[]){ 1, 1, 1, 6, 1, 1, 1 }, 0) == NULL);
    ag_free(&t);
    CHECK_GRADS(f_ce, ce_targets, l);
}

/* ---- soft cross-entropy (distillation) -------------------------------------- */

typedef struct soft_ctx { const int *targets; const float *soft; float a; } soft_ctx;

static tensor *f_soft_ce(ag_tape *t, tensor **in, const void *ctx)
{
    const soft_ctx *c = ctx;
    return op_soft_cross_entropy(t, in[0], c->targets, 0, c->soft, c->a);
}

/* N soft rows of V that sum to 1 (their own rng: the other tests' draws
 * stay as they were). */
static void soft_rows(float *q, int N, int V)
{
    rng r;
    rng_seed(&r, (uint64_t)N * 131 + (uint64_t)V);
    for (int i = 0; i < N; i++) {
        float s = 0;
        for (int j = 0; j < V; j++) s += q[i * V + j] = (float)(rng_uniform(&r) + 0.05);
        for (int j = 0; j < V; j++) q[i * V + j] /= s;
    }
}

TEST(soft_cross_entropy_forward_and_grads)
{
    tensor *l = leaf(2, (const int[]){ 7, 6 }, 2.0f);
    float q[7 * 6];
    soft_rows(q, 7, 6);
    const float a = 0.35f;
    ag_tape t;
    ag_init(&t, 0);
    tensor *loss = op_soft_cross_entropy(&t, l, ce_targets, 0, q, a);
    double sum = 0.0;   /* -sum_j ((1-a) onehot + a q)_j log softmax(l)_j, in double */
    int count = 0;
    for (int i = 0; i < 7; i++) {
        if (!ce_targets[i]) continue;
        double lse = ref_lse(l->data + i * 6, 6);
        for (int j = 0; j < 6; j++) {
            double w = a * q[i * 6 + j] + (j == ce_targets[i] ? 1.0 - a : 0.0);
            sum -= w * (l->data[i * 6 + j] - lse);
        }
        count++;
    }
    CHECK(loss && loss->n == 1);
    if (loss) CHECK_NEAR(loss->data[0], sum / count, 1e-5);
    /* a = 0 and no soft rows are both the plain cross-entropy */
    float hard = op_cross_entropy(&t, l, ce_targets, 0)->data[0];
    CHECK(op_soft_cross_entropy(&t, l, ce_targets, 0, q, 0)->data[0] == hard);
    CHECK(op_soft_cross_entropy(&t, l, ce_targets, 0, NULL, 0.5f)->data[0] == hard);
    ag_free(&t);
    CHECK_GRADS(f_soft_ce, (&(soft_ctx){ ce_targets, q, a }), l);
    CHECK_GRADS(f_soft_ce, (&(soft_ctx){ ce_targets, q, 1.0f }), l);
}

TEST(batch_cross_entropy_follows_positions)
{
    /* rows given in another order than the batch's grid (as the models' packed
     * graphs give them) take the hard and soft targets of their positions */
    enum { B = 2, T = 3, V = 5, N = B * T };
    int x[N] = { 1, 3, 4, 1, 2, 0 }, y[N] = { 3, 4, 2, 2, 2, 0 };
    float q[N * V];
    soft_rows(q, N, V);
    ds_batch b = { .B = B, .T = T, .x = x, .y = y, .soft = q, .soft_weight = 0.4f };
    tensor *l = leaf(2, (const int[]){ N, V }, 1.0f);
    const int pos[N] = { 4, 0, 2, 1, 3, -1 };
    ag_tape t;
    ag_init(&t, 0);
    float *lp = ag_alloc(&t, sizeof(float) * N * V);
    float qp[N * V];
    int yp[N];
    for (int k = 0; k < N; k++) {   /* the same rows put back in grid order */
        int at = pos[k] < 0 ? 5 : pos[k];
        memcpy(lp + at * V, l->data + k * V, V * sizeof *lp);
        memcpy(qp + at * V, q + at * V, V * sizeof *qp);
        yp[at] = pos[k] < 0 ? 0 : y[at];
    }
    tensor *grid = ag_tensor(&t, 2, (const int[]){ N, V });
    memcpy(grid->data, lp, sizeof(float) * N * V);
    float want = op_soft_cross_entropy(&t, grid, yp, 0, qp, 0.4f)->data[0];
    CHECK_NEAR(op_batch_cross_entropy(&t, l, &b, pos)->data[0], want, 1e-6);
    CHECK_NEAR(op_batch_cross_entropy(&t, grid, &b, NULL)->data[0], want, 1e-6);
    b.soft = NULL;   /* hard targets only */
    CHECK_NEAR(op_batch_cross_entropy(&t, grid, &b, NULL)->data[0],
               op_cross_entropy(&t, grid, y, 0)->data[0], 0);
    CHECK(op_batch_cross_entropy(&t, l, &(ds_batch){ .B = 1, .T = 2, .y = y }, NULL) == NULL);
    ag_free(&t);
}

TEST(cross_entropy_all_ignored_is_zero)
{
    tensor *l = leaf(2, (const int[]){ 3, 4 }, 1.0f);
    ag_tape t;
    ag_init(&t, 0);
    memset(l->grad, 0, (size_t)l->n * sizeof(float));
    tensor *loss = op_cross_entropy(&t, l, (const int[]){ -1, -1, -1 }, -1);
    CHECK(loss && loss->data[0] == 0.0f);
    ag_backward(&t, loss);
    float mx = 0.0f;
    for (int i = 0; i < l->n; i++) mx = fmaxf(mx, fabsf(l->grad[i]));
    CHECK(mx == 0.0f);
    ag_free(&t);
}

/* ---- attention --------------------------------------------------------- */

/* keep: (B, H, T, T) attention dropout factors or NULL */
struct attn_dims { int B, T, H; const float *keep; };

static tensor *f_attention(ag_tape *t, tensor **in, const void *c)
{
    const struct attn_dims *a = c;
    return op_attention(t, in[0], in[1], in[2], a->B, a->T, a->H, a->keep);
}

/* Straightforward causal attention in double, for one output element; the
 * probabilities times keep (B, H, T, T) when it is not NULL. */
static double naive_attention(const tensor *q, const tensor *k, const tensor *v, const float *keep,
                              int T, int H, int b, int i, int h, int e)
{
    int C = tn_cols(q), dh = C / H;
    double s[64], mx = -INFINITY, z = 0.0, o = 0.0;
    for (int j = 0; j <= i; j++) {
        s[j] = 0.0;
        for (int c = 0; c < dh; c++)
            s[j] += (double)q->data[(b * T + i) * C + h * dh + c] * k->data[(b * T + j) * C + h * dh + c];
        s[j] /= sqrt((double)dh);
        mx = fmax(mx, s[j]);
    }
    for (int j = 0; j <= i; j++) z += exp(s[j] - mx);
    for (int j = 0; j <= i; j++) {
        double m = keep ? keep[(((size_t)b * H + h) * T + i) * T + j] : 1.0;
        o += exp(s[j] - mx) / z * m * v->data[(b * T + j) * C + h * dh + e];
    }
    return o;
}

/* Attention dropout factors (B, H, T, T) at rate p from op_keep, the
 * entries above the diagonal NaN (the op must not read them). */
static float *attention_keep(int B, int H, int T, float p, uint64_t seed)
{
    size_t n = (size_t)B * H * T * T;
    float *keep = malloc(n * sizeof *keep);
    for (size_t a = 0; a < n; a++)
        keep[a] = (int)(a % T) <= (int)(a / T % T) ? op_keep(seed, a, p) : NAN;
    return keep;
}

static void check_attention(int B, int T, int H, int dh, float p)
{
    const int shape[3] = { B, T, H * dh };
    tensor *q = leaf(3, shape, 1.0f), *k = leaf(3, shape, 1.0f), *v = leaf(3, shape, 1.0f);
    float *keep = p > 0.0f ? attention_keep(B, H, T, p, 41) : NULL;
    struct attn_dims dims = { B, T, H, keep };
    ag_tape t;
    ag_init(&t, 0);
    tensor *o = op_attention(&t, q, k, v, B, T, H, keep);
    CHECK(o != NULL);
    double worst = 0.0;
    for (int b = 0; o && b < B; b++)
        for (int i = 0; i < T; i++)
            for (int h = 0; h < H; h++)
                for (int e = 0; e < dh; e++)
                    worst = fmax(worst, fabs(naive_attention(q, k, v, keep, T, H, b, i, h, e) -
                                             o->data[(b * T + i) * H * dh + h * dh + e]));
    CHECK(worst < 1e-5);

    /* causality: changing positions > s leaves outputs at <= s unchanged */
    for (int s = 0; o && s + 1 < T; s++) {
        ag_reset(&t);
        tensor *before = op_attention(&t, q, k, v, B, T, H, NULL);
        float *saved = malloc((size_t)q->n * 3 * sizeof(float));
        tensor *qkv[3] = { q, k, v };
        for (int m = 0; m < 3; m++) {
            memcpy(saved + m * q->n, qkv[m]->data, (size_t)q->n * sizeof(float));
            for (int b = 0; b < B; b++)
                for (int i = s + 1; i < T; i++)
                    for (int c = 0; c < H * dh; c++) qkv[m]->data[(b * T + i) * H * dh + c] += 3.0f;
        }
        tensor *after = op_attention(&t, q, k, v, B, T, H, NULL);
        int changed = 0;
        for (int b = 0; b < B; b++)
            for (int i = 0; i <= s; i++)
                for (int c = 0; c < H * dh; c++) {
                    size_t at = (size_t)(b * T + i) * H * dh + c;
                    changed += before->data[at] != after->data[at];
                }
        CHECK(changed == 0);
        for (int m = 0; m < 3; m++) memcpy(qkv[m]->data, saved + m * q->n, (size_t)q->n * sizeof(float));
        free(saved);
    }
    CHECK(op_attention(&t, q, k, v, B, T + 1, H, NULL) == NULL);
    ag_free(&t);
    CHECK_GRADS(f_attention, &dims, q, k, v);
    free(keep);
}

TEST(attention_forward_causality_and_grads)
{
    check_attention(2, 5, 2, 3, 0.0f);
    check_attention(3, 1, 1, 4, 0.0f);   /* T = 1 */
    check_attention(1, 7, 3, 1, 0.0f);
}

/* Dropout on the attention probabilities: forward against the naive sum
 * with the factors, gradients through the mask (fixed factors); T = 11
 * spans a second block of 8 columns. */
TEST(attention_dropout_forward_and_grads)
{
    check_attention(2, 5, 2, 3, 0.3f);
    check_attention(1, 11, 2, 9, 0.5f);
    check_attention(3, 1, 1, 4, 0.3f);
}

/* Factors of 1 everywhere give exactly the result without dropout. */
TEST(attention_keep_of_ones_is_identity)
{
    const int B = 2, T = 6, H = 2, shape[3] = { B, T, H * 4 };
    tensor *q = leaf(3, shape, 1.0f), *k = leaf(3, shape, 1.0f), *v = leaf(3, shape, 1.0f);
    float *ones = attention_keep(B, H, T, 0.0f, 1);
    ag_tape t;
    ag_init(&t, 0);
    tensor *a = op_attention(&t, q, k, v, B, T, H, NULL), *b = op_attention(&t, q, k, v, B, T, H, ones);
    CHECK(a && b && memcmp(a->data, b->data, (size_t)a->n * sizeof *a->data) == 0);
    ag_free(&t);
    free(ones);
}

/* ---- GRU cell ---------------------------------------------------------- */

static tensor *f_gru(ag_tape *t, tensor **in, const void *c)
{
    return op_gru_cell(t, in[0], in[1], in[2], in[3], in[4], in[5], in[6], in[7]);
}

static double sig(double x) { return 1.0 / (1.0 + exp(-x)); }

/* Row i of the affine map W [a; b] + bias, one output unit o. */
static double affine(const tensor *W, const tensor *bias, const double *ab, int D, int o)
{
    double s = bias ? bias->data[o] : 0.0;
    for (int c = 0; c < D; c++) s += W->data[o * D + c] * ab[c];
    return s;
}

static void check_gru(int B, int dx, int d, bool biases)
{
    int D = dx + d;
    tensor *x = leaf(2, (const int[]){ B, dx }, 1.0f), *h = leaf(2, (const int[]){ B, d }, 1.0f);
    tensor *W[6];
    for (int i = 0; i < 6; i += 2) {
        W[i] = leaf(2, (const int[]){ d, D }, 0.5f);
        W[i + 1] = biases ? leaf(1, (const int[]){ d }, 0.5f) : NULL;
    }
    ag_tape t;
    ag_init(&t, 0);
    tensor *y = op_gru_cell(&t, x, h, W[0], W[1], W[2], W[3], W[4], W[5]);
    CHECK(y && y->shape[0] == B && y->shape[1] == d);
    double worst = 0.0, xh[64], xrh[64];
    for (int b = 0; y && b < B; b++) {
        for (int c = 0; c < dx; c++) xh[c] = xrh[c] = x->data[b * dx + c];
        for (int c = 0; c < d; c++) xh[dx + c] = h->data[b * d + c];
        for (int c = 0; c < d; c++) xrh[dx + c] = sig(affine(W[2], W[3], xh, D, c)) * xh[dx + c];
        for (int o = 0; o < d; o++) {
            double z = sig(affine(W[0], W[1], xh, D, o)), hh = tanh(affine(W[4], W[5], xrh, D, o));
            double want = (1 - z) * xh[dx + o] + z * hh;
            worst = fmax(worst, fabs(want - y->data[b * d + o]));
        }
    }
    CHECK(worst < 1e-5);
    CHECK(op_gru_cell(&t, h, x, W[0], W[1], W[2], W[3], W[4], W[5]) == NULL || dx == d);
    ag_free(&t);
    CHECK_GRADS(f_gru, NULL, x, h, W[0], W[1], W[2], W[3], W[4], W[5]);
}

TEST(gru_cell_forward_and_grads)
{
    check_gru(3, 4, 5, true);
    check_gru(1, 5, 5, true);
    check_gru(2, 3, 2, false);
}

/* ---- a whole graph: fan-out, accumulation, no-grad inputs -------------- */

static const int graph_tokens[6] = { 1, 4, 2, 2, 0, 3 };
static const int graph_targets[6] = { 4, 2, 2, 0, 3, 0 };

/* emb -> x; y = tanh(linear(x)) + x; logits = rmsnorm(y) E^T; CE. */
static tensor *f_graph(ag_tape *t, tensor **in, const void *c)
{
    tensor *x = op_embedding(t, in[0], graph_tokens, 6, 3, (const int[]){ 2, 3, 4 });
    tensor *y = op_add(t, op_tanh(t, op_linear(t, x, in[1], in[2])), x);
    tensor *logits = op_linear(t, op_rmsnorm(t, y, in[3], 1e-5f), in[0], NULL);
    return op_cross_entropy(t, logits, graph_targets, 0);
}

TEST(graph_grads_accumulate)
{
    tensor *E = leaf(2, (const int[]){ 5, 4 }, 1.0f), *W = leaf(2, (const int[]){ 4, 4 }, 0.5f);
    tensor *b = leaf(1, (const int[]){ 4 }, 0.5f), *w = leaf(1, (const int[]){ 4 }, 1.0f);
    CHECK_GRADS(f_graph, NULL, E, W, b, w);
}

/* Every op of ops.h, chained on one tape, records one node under its own
 * name, in call order. */
TEST(every_op_names_its_node)
{
    static const char *const want[] = {
        "embedding", "linear", "tanh", "sigmoid", "silu", "relu", "add", "mul", "swiglu",
        "dropout", "mask", "concat", "rmsnorm", "attention", "time_slice", "broadcast_rows",
        "gru_cell", "time_stack", "cross_entropy",
    };
    enum { N_OPS = sizeof want / sizeof *want };
    tensor *E = leaf(2, (const int[]){ 5, 4 }, 1.0f), *W = leaf(2, (const int[]){ 4, 4 }, 0.5f);
    tensor *w = leaf(1, (const int[]){ 8 }, 1.0f), *h0 = leaf(1, (const int[]){ 4 }, 1.0f);
    tensor *Wg[3];
    for (int i = 0; i < 3; i++) Wg[i] = leaf(2, (const int[]){ 4, 12 }, 0.5f);
    ag_tape t;
    ag_init(&t, 0);
    rng r;
    rng_seed(&r, 8);
    t.rng = &r;
    t.training = true;
    /* one op per statement: the order of evaluation of arguments is unspecified */
    tensor *x = op_embedding(&t, E, graph_tokens, 6, 3, (const int[]){ 2, 3, 4 });
    tensor *y = op_linear(&t, x, W, NULL);
    tensor *a = op_tanh(&t, y);
    tensor *b = op_sigmoid(&t, y);
    tensor *u = op_silu(&t, y);
    tensor *v = op_relu(&t, y);
    tensor *p = op_add(&t, a, b);
    tensor *q = op_mul(&t, u, v);
    tensor *g = op_dropout(&t, op_swiglu(&t, p, q), 0.5f);
    g = op_mask(&t, g, g->data);
    tensor *c = op_concat(&t, g, x);                                    /* (2, 3, 8) */
    tensor *n = op_rmsnorm(&t, c, w, 1e-5f);
    tensor *s = op_time_slice(&t, op_attention(&t, n, n, n, 2, 3, 2, NULL), 1);   /* (2, 8) */
    tensor *h = op_broadcast_rows(&t, h0, 2);
    h = op_gru_cell(&t, s, h, Wg[0], NULL, Wg[1], NULL, Wg[2], NULL);
    tensor *st = op_time_stack(&t, (tensor *[]){ h, h }, 2);            /* (2, 2, 4) */
    CHECK(op_cross_entropy(&t, st, (const int[]){ 1, 3, 0, 2 }, 0) != NULL);
    CHECK(t.n_nodes == N_OPS);
    for (int i = 0; i < t.n_nodes && i < N_OPS; i++)
        CHECK(t.nodes[i].op && strcmp(t.nodes[i].op, want[i]) == 0);
    ag_free(&t);
}

/* An empty batch (0 rows) flows through and gives a zero loss. */
TEST(empty_batch)
{
    ag_tape t;
    ag_init(&t, 0);
    tensor *x = ag_tensor(&t, 3, (const int[]){ 0, 5, 4 }), *W = leaf(2, (const int[]){ 3, 4 }, 1.0f);
    tensor *b = leaf(1, (const int[]){ 3 }, 1.0f), *w = leaf(1, (const int[]){ 3 }, 1.0f);
    tensor *y = op_rmsnorm(&t, op_tanh(&t, op_linear(&t, x, W, b)), w, 1e-5f);
    CHECK(y && y->n == 0 && y->shape[2] == 3);
    tensor *loss = op_cross_entropy(&t, y, (const int[]){ 0 }, 0);
    CHECK(loss && loss->data[0] == 0.0f);
    ag_backward(&t, loss);
    ag_free(&t);
}

TEST(no_grad_inputs_record_nothing)
{
    ag_tape t;
    ag_init(&t, 0);
    float xs[6] = { 1, 2, 3, 4, 5, 6 }, ws[6] = { 1, 0, 0, 1, 1, 1 };
    tensor *x = ag_wrap(&t, xs, 2, (const int[]){ 3, 2 });
    tensor *W = ag_wrap(&t, ws, 2, (const int[]){ 3, 2 });
    tensor *y = op_relu(&t, op_linear(&t, x, W, NULL));
    CHECK(y && y->grad == NULL && t.n_nodes == 0);
    if (y) CHECK(y->data[0] == 1.0f && y->data[2] == 3.0f && y->data[8] == 11.0f);
    tensor *p = leaf(2, (const int[]){ 3, 2 }, 1.0f);
    tensor *z = op_mul(&t, x, p);
    CHECK(z && z->grad != NULL && t.n_nodes == 1);
    t.grad = false;   /* inference: no grads even for parameters */
    tensor *u = op_mul(&t, x, p);
    CHECK(u && u->grad == NULL && t.n_nodes == 1);
    ag_free(&t);
}

/* A float32 relative check of two buffers, for the big-shape test. */
TEST(linear_large_matches_reference)
{
    tensor *x = leaf(2, (const int[]){ 37, 29 }, 1.0f), *W = leaf(2, (const int[]){ 19, 29 }, 1.0f);
    ag_tape t;
    ag_init(&t, 0);
    tensor *y = op_linear(&t, x, W, NULL);
    float *ref = malloc(37 * 19 * sizeof *ref);
    for (int i = 0; i < 37; i++)
        for (int o = 0; o < 19; o++) {
            double s = 0.0;
            for (int k = 0; k < 29; k++) s += (double)x->data[i * 29 + k] * W->data[o * 29 + k];
            ref[i * 19 + o] = (float)s;
        }
    CHECK(y && max_abs_diff(y->data, ref, 37 * 19) < 1e-4f);
    free(ref);
    ag_free(&t);
}
