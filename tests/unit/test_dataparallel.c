/* test_dataparallel.c - data-parallel training (train.h): every trainable
 * kind's replicas give, summed over the shards, the gradient of the whole
 * batch on one tape; runs on 1, 2 and 3 threads follow the same loss curve
 * (no dropout); --resume is bit-exact on 2 threads; dropout runs are
 * reproducible; and several processes (an in-process tr_comm: threads that
 * sum through a barrier) follow the curve of one. */
#include "cli.h"
#include "mamba.h"
#include "mlp.h"
#include "rnn.h"
#include "test.h"
#include "train.h"
#include "transformer.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static const char *DATA = TEST_DATA("train_villes400.txt");

__attribute__((constructor)) static void name_program(void) { cli_init("test_dataparallel", NULL); }

/* ---- the kinds, small ------------------------------------------------------ */

typedef enum { K_MLP, K_RNN, K_GRU, K_TF, K_MAMBA, K_N } kind_id;
static const char *const kind_names[K_N] = { "mlp", "rnn", "gru", "transformer", "mamba" };

typedef struct net {
    kind_id    k;
    union { mlp_model mlp; rnn_model rnn; tf_model tf; mamba_model mamba; } u;
    tn_params *p;
    float     *grad;       /* the first step's summed gradient (after_backward) */
    bool       kept;
} net;

static tensor *loss_mlp(void *m, ag_tape *t, const ds_batch *b) { return mlp_loss(m, t, b); }
static tensor *loss_rnn(void *m, ag_tape *t, const ds_batch *b) { return rnn_loss(m, t, b); }
static tensor *loss_tf(void *m, ag_tape *t, const ds_batch *b) { return tf_loss(m, t, b); }
static tensor *loss_mamba(void *m, ag_tape *t, const ds_batch *b) { return mamba_loss(m, t, b); }
static char *no_config(const void *impl) { return strdup("{}"); }

/* after_backward: the summed gradient of the first step, kept.  The nets
 * of a test run one at a time on this thread, or (processes) each its own
 * first step: keyed by impl. */
static net *nets[4];
static void keep_grad(void *impl)
{
    for (int i = 0; i < 4; i++) {
        net *n = nets[i];
        if (n && (void *)&n->u == impl && !n->kept) {
            memcpy(n->grad, n->p->grad, n->p->n * sizeof *n->grad);
            n->kept = true;
        }
    }
}

/* A fresh net of kind k on V tokens (names up to max_len - 1 letters),
 * seeded 5; dropout for the transformer. */
static tr_model net_init(net *n, kind_id k, int V, int max_len, float dropout, int slot)
{
    memset(n, 0, sizeof *n);
    n->k = k;
    rng r;
    rng_seed(&r, 5);
    tr_model m = { .kind = kind_names[k], .impl = &n->u, .config_json = no_config,
                   .after_backward = keep_grad };
    if (k == K_MLP) {
        mlp_config c = { .vocab_size = V, .d_model = 8, .d_hidden = 32, .n_context = 3 };
        CHECK(mlp_init(&n->u.mlp, &c) == ERR_OK);
        mlp_init_weights(&n->u.mlp, &r);
        n->p = &n->u.mlp.p;
        m.loss = loss_mlp, m.replica_new = mlp_replica_new, m.replica_free = mlp_replica_free;
    } else if (k == K_RNN || k == K_GRU) {
        rnn_config c = RNN_DEFAULTS;
        c.vocab_size = V, c.d_model = 16, c.n_layers = 2;
        c.cell = k == K_RNN ? RNN_CELL_RNN : RNN_CELL_GRU;
        CHECK(rnn_init(&n->u.rnn, &c) == ERR_OK);
        rnn_init_weights(&n->u.rnn, &r);
        n->p = &n->u.rnn.p;
        m.loss = loss_rnn, m.replica_new = rnn_replica_new, m.replica_free = rnn_replica_free;
    } else if (k == K_TF) {
        tf_config c = TF_DEFAULTS;
        c.vocab_size = V, c.d_model = 16, c.n_heads = 2, c.max_len = max_len;
        c.dropout = dropout;
        CHECK(tf_init(&n->u.tf, &c) == ERR_OK);
        tf_init_weights(&n->u.tf, &r);
        n->p = &n->u.tf.p;
        m.loss = loss_tf, m.replica_new = tf_replica_new, m.replica_free = tf_replica_free;
    } else {
        mamba_config c = MAMBA_DEFAULTS;
        c.vocab_size = V, c.d_model = 16, c.d_state = 4, c.dt_rank = mamba_auto_dt_rank(16);
        CHECK(mamba_init(&n->u.mamba, &c) == ERR_OK);
        mamba_init_weights(&n->u.mamba, &r);
        n->p = &n->u.mamba.p;
        m.loss = loss_mamba, m.replica_new = mamba_replica_new, m.replica_free = mamba_replica_free;
    }
    m.params = n->p;
    n->grad = calloc(n->p->n, sizeof *n->grad);
    CHECK(n->grad != NULL);
    nets[slot] = n;
    return m;
}

static void net_free(net *n, int slot)
{
    switch (n->k) {
    case K_MLP: mlp_free(&n->u.mlp); break;
    case K_RNN: case K_GRU: rnn_free(&n->u.rnn); break;
    case K_TF: tf_free(&n->u.tf); break;
    default: mamba_free(&n->u.mamba); break;
    }
    free(n->grad);
    nets[slot] = NULL;
}

/* ---- runs ---------------------------------------------------------------- */

typedef struct result {
    err_code rc;
    double   train_loss, val_loss;
    float   *grad, *weights;   /* malloc'ed: first step's gradient, final weights */
    size_t   n;
} result;

typedef struct run_spec {
    kind_id        k;
    int            threads;
    long           steps;
    float          dropout;
    const char    *out, *resume;
    const tr_comm *comm;
    int            slot;
} run_spec;

static result run(const run_spec *r)
{
    result res = { 0 };
    tr_options o;
    tr_options_init(&o, kind_names[r->k], r->out);
    o.data = DATA;
    o.steps = r->steps;
    o.batch_size = 16;
    o.eval_every = 5;
    o.opt.lr = 0.01f;
    o.opt.clip = 1.0f;
    o.threads = r->threads;
    o.resume_path = r->resume;
    o.set = TR_SET_STEPS;
    tr_session s;
    res.rc = tr_open(&s, &o);
    if (!res.rc) res.rc = tr_load_names(&s);
    if (res.rc) return res;
    s.comm = r->comm;
    net n;
    tr_model m = net_init(&n, r->k, s.vocab->size, s.corpus.train.max_len + 2, r->dropout, r->slot);
    res.rc = tr_run(&s, &m, NULL, NULL);
    res.train_loss = s.sum.train_loss;
    res.val_loss = s.sum.val_loss;
    res.n = n.p->n;
    res.grad = malloc(res.n * sizeof *res.grad);
    res.weights = malloc(res.n * sizeof *res.weights);
    memcpy(res.grad, n.grad, res.n * sizeof *res.grad);
    memcpy(res.weights, n.p->data, res.n * sizeof *res.weights);
    net_free(&n, r->slot);
    tr_close(&s);
    return res;
}

static void result_free(result *r)
{
    free(r->grad);
    free(r->weights);
}

static double max_abs(const float *a, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fabs(a[i]) > m ? fabs(a[i]) : m;
    return m;
}

/* ---- tests ------------------------------------------------------------------ */

TEST(dp_shard_gradients_sum_to_the_batch_gradient_every_kind)
{
    for (int k = 0; k < K_N; k++) {
        run_spec one = { .k = k, .threads = 1, .steps = 1, .out = test_path("g1.safetensors") };
        run_spec two = one, three = one;
        two.threads = 2, three.threads = 3;
        result a = run(&one), b = run(&two), c = run(&three);
        CHECK(a.rc == ERR_OK && b.rc == ERR_OK && c.rc == ERR_OK);
        double scale = max_abs(a.grad, a.n);
        CHECK(scale > 0);
        if (test_max_abs_diff(a.grad, b.grad, a.n) > 1e-5 * scale ||
            test_max_abs_diff(a.grad, c.grad, a.n) > 1e-5 * scale)
            fprintf(stderr, "  %s: gradients differ by %g and %g (scale %g)\n", kind_names[k],
                    test_max_abs_diff(a.grad, b.grad, a.n), test_max_abs_diff(a.grad, c.grad, a.n),
                    scale);
        CHECK(test_max_abs_diff(a.grad, b.grad, a.n) <= 1e-5 * scale);
        CHECK(test_max_abs_diff(a.grad, c.grad, a.n) <= 1e-5 * scale);
        result_free(&a), result_free(&b), result_free(&c);
    }
}

TEST(dp_threads_follow_the_same_curve)
{
    for (int k = 0; k < K_N; k++) {
        run_spec one = { .k = k, .threads = 1, .steps = 30, .out = test_path("c.safetensors") };
        run_spec two = one;
        two.threads = 2;
        result a = run(&one), b = run(&two);
        CHECK(a.rc == ERR_OK && b.rc == ERR_OK);
        CHECK_NEAR(a.train_loss, b.train_loss, 1e-5);
        CHECK_NEAR(a.val_loss, b.val_loss, 1e-5);
        result_free(&a), result_free(&b);
    }
}

TEST(dp_resume_is_exact_on_two_threads_with_dropout)
{
    const char *straight = test_path("straight.safetensors"), *half = test_path("half.safetensors");
    run_spec full = { .k = K_TF, .threads = 2, .steps = 20, .dropout = 0.2f, .out = straight };
    run_spec first = full, second = full;
    first.steps = 10, first.out = half;
    second.out = half, second.resume = half;
    result a = run(&full), b = run(&first), c = run(&second), d = run(&full);
    CHECK(a.rc == ERR_OK && b.rc == ERR_OK && c.rc == ERR_OK && d.rc == ERR_OK);
    CHECK(!memcmp(a.weights, c.weights, a.n * sizeof *a.weights));   /* resumed */
    CHECK(!memcmp(a.weights, d.weights, a.n * sizeof *a.weights));   /* reproducible */
    CHECK(a.train_loss == c.train_loss && a.val_loss == c.val_loss);
    result_free(&a), result_free(&b), result_free(&c), result_free(&d);
}

/* ---- processes: ranks as threads of this test, summing through a barrier -- */

typedef struct fake_world {
    pthread_barrier_t barrier;
    int               size;
    float            *f[2];       /* each rank's buffer in the current sum */
    double           *d[2];
} fake_world;

typedef struct fake_rank { fake_world *w; int rank; tr_comm comm; run_spec spec; result res; } fake_rank;

/* Both ranks publish their buffer, wait, add the other's into a copy,
 * wait, and write it back: the sum in rank order on every rank. */
#define FAKE_SUM(NAME, TYPE, FIELD)                                                 \
    static err_code NAME(void *ctx, TYPE *buf, size_t n)                            \
    {                                                                               \
        fake_rank *r = ctx;                                                         \
        fake_world *w = r->w;                                                       \
        w->FIELD[r->rank] = buf;                                                    \
        pthread_barrier_wait(&w->barrier);                                          \
        TYPE *sum = malloc(n * sizeof *sum);                                        \
        for (size_t i = 0; i < n; i++) sum[i] = w->FIELD[0][i] + w->FIELD[1][i];    \
        pthread_barrier_wait(&w->barrier);                                          \
        memcpy(buf, sum, n * sizeof *sum);                                          \
        free(sum);                                                                  \
        return ERR_OK;                                                              \
    }
FAKE_SUM(fake_sum_floats, float, f)
FAKE_SUM(fake_sum_doubles, double, d)

static void *fake_main(void *arg)
{
    fake_rank *r = arg;
    r->res = run(&r->spec);
    return NULL;
}

TEST(dp_two_processes_follow_the_curve_of_one)
{
    run_spec one = { .k = K_TF, .threads = 1, .steps = 30, .out = test_path("p1.safetensors") };
    result a = run(&one);
    fake_world w = { .size = 2 };
    pthread_barrier_init(&w.barrier, NULL, 2);
    fake_rank r[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        r[i] = (fake_rank){ .w = &w, .rank = i, .spec = one };
        r[i].comm = (tr_comm){ .ctx = &r[i], .rank = i, .size = 2, .sum_floats = fake_sum_floats,
                               .sum_doubles = fake_sum_doubles };
        r[i].spec.comm = &r[i].comm;
        r[i].spec.slot = i;
        r[i].spec.out = test_path(i ? "p2b.safetensors" : "p2a.safetensors");
    }
    for (int i = 0; i < 2; i++) CHECK(pthread_create(&th[i], NULL, fake_main, &r[i]) == 0);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&w.barrier);
    CHECK(a.rc == ERR_OK && r[0].res.rc == ERR_OK && r[1].res.rc == ERR_OK);
    CHECK_NEAR(a.train_loss, r[0].res.train_loss, 1e-5);
    CHECK_NEAR(a.val_loss, r[0].res.val_loss, 1e-5);
    CHECK(!memcmp(r[0].res.weights, r[1].res.weights, a.n * sizeof *a.weights));
    CHECK(test_max_abs_diff(a.grad, r[1].res.grad, a.n) <= 1e-5 * max_abs(a.grad, a.n));
    result_free(&a), result_free(&r[0].res), result_free(&r[1].res);
}
