/* test_transformer.c - the Transformer LM: config, PyTorch parity, the
 * activations API, cached generation against the batched forward, the
 * residual hook, overflow past max_len, checkpoints through model.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "autograd.h"
#include "kinds.h"
#include "ops.h"
#include "optim.h"
#include "test.h"
#include "transformer.h"

#define FIXTURE TEST_DATA("fixtures/transformer.safetensors")

/* Tiny config: 2 layers so a hook or a residual sits between blocks. */
static tf_config tiny(void)
{
    return (tf_config){ .vocab_size = 11, .d_model = 16, .n_heads = 4, .n_layers = 2,
                        .max_len = 9, .dropout = 0.0f };
}

/* Weights far from the initial ones, so that attention is not uniform and
 * every norm weight matters. */
static tf_model *random_model(const tf_config *c, uint64_t seed)
{
    tf_model *m = malloc(sizeof *m);
    if (!m || tf_init(m, c)) {
        free(m);
        return NULL;
    }
    rng r;
    rng_seed(&r, seed);
    for (int i = 0; i < m->p.count; i++) {
        tensor *t = &m->p.e[i].t;
        if (t->ndim == 1) tn_fill_normal(t, &r, 1.0f, 0.3f);
        else tn_fill_normal(t, &r, 0.0f, 0.4f);
    }
    return m;
}

static void free_model(tf_model *m)
{
    tf_free(m);
    free(m);
}

/* Random token rows (B, T): <SOS> first, then characters, some rows padded. */
static int *random_rows(int B, int T, int V, uint64_t seed)
{
    int *x = malloc((size_t)B * T * sizeof *x);
    rng r;
    rng_seed(&r, seed);
    for (int b = 0; b < B; b++) {
        int len = T - (int)rng_below(&r, 3);
        for (int t = 0; t < T; t++)
            x[b * T + t] = t == 0 ? TOK_SOS : t < len ? TOK_FIRST + (int)rng_below(&r, V - TOK_FIRST) : TOK_PAD;
    }
    return x;
}

/* Targets of rows x: the next token, <EOS> after the last one, <pad> after that. */
static int *targets_of(const int *x, int B, int T)
{
    int *y = malloc((size_t)B * T * sizeof *y);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            int i = b * T + t;
            y[i] = x[i] == TOK_PAD ? TOK_PAD : t + 1 < T && x[i + 1] != TOK_PAD ? x[i + 1] : TOK_EOS;
        }
    return y;
}

static double max_abs_diff(const float *a, const float *b, size_t n)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d;   /* NaN counts as the largest difference */
    }
    return m;
}

/* ---- config --------------------------------------------------------------- */

TEST(config_json_roundtrip)
{
    tf_config c = tiny(), back;
    c.dropout = 0.25f;
    char *json = NULL;
    CHECK(tf_config_to_json(&c, &json) == ERR_OK);
    /* rates at 0 are not written: the JSON of a config without them is as it was */
    CHECK(json && strcmp(json, "{\"vocab_size\":11,\"d_model\":16,\"n_heads\":4,\"n_layers\":2,"
                               "\"max_len\":9,\"dropout\":0.25}") == 0);
    CHECK(tf_config_from_json(&back, json) == ERR_OK);
    CHECK(memcmp(&c, &back, sizeof c) == 0);
    free(json);
    c.attn_dropout = 0.1f;
    c.emb_dropout = 0.2f;
    CHECK(tf_config_to_json(&c, &json) == ERR_OK);
    CHECK(json && strstr(json, "\"dropout\":0.25,\"attn_dropout\":0.100000001,"
                               "\"emb_dropout\":0.200000003}"));
    CHECK(tf_config_from_json(&back, json) == ERR_OK);
    CHECK(memcmp(&c, &back, sizeof c) == 0);
    free(json);
    CHECK(tf_config_from_json(&back, "{\"vocab_size\":46,\"d_model\":64,\"n_heads\":8,"
                                     "\"n_layers\":2,\"max_len\":49,\"dropout\":0}") == ERR_OK);
    CHECK(back.d_model == 64 && back.n_heads == 8 && back.max_len == 49);
}

TEST(config_rejects_bad_values)
{
    tf_config c = tiny();
    c.n_heads = 3;
    CHECK(tf_config_check(&c) == ERR_ARG);
    CHECK(strstr(err_msg(), "n_heads 3 does not divide d_model 16") != NULL);
    c = tiny();
    c.n_layers = 0;
    CHECK(tf_config_check(&c) == ERR_ARG);
    c = tiny();
    c.dropout = 1.0f;
    CHECK(tf_config_check(&c) == ERR_ARG);
    c = tiny();
    c.attn_dropout = -0.1f;
    CHECK(tf_config_check(&c) == ERR_ARG && strstr(err_msg(), "attn_dropout -0.1 out of range"));
    c = tiny();
    c.emb_dropout = 1.0f;
    CHECK(tf_config_check(&c) == ERR_ARG && strstr(err_msg(), "emb_dropout 1 out of range"));
    tf_config back;
    CHECK(tf_config_from_json(&back, "{\"vocab_size\":46,\"d_model\":64,\"n_heads\":8,"
                                     "\"n_layers\":2,\"max_len\":49,\"attn_dropout\":\"0.1\"}") == ERR_FORMAT);
    CHECK(tf_config_from_json(&back, "{\"vocab_size\":46,\"d_model\":64,\"n_heads\":8,"
                                     "\"n_layers\":2,\"max_len\":49,\"emb_dropout\":1.5}") == ERR_FORMAT);
    CHECK(tf_config_from_json(&back, "[1]") == ERR_FORMAT);
    CHECK(tf_config_from_json(&back, "{\"vocab_size\":46,\"d_model\":64}") == ERR_FORMAT);
    CHECK(tf_config_from_json(&back, "{\"vocab_size\":46,\"d_model\":64.5,\"n_heads\":8,"
                                     "\"n_layers\":2,\"max_len\":49}") == ERR_FORMAT);
    CHECK(tf_config_from_json(&back, "{\"vocab_size\":46,\"d_model\":64,\"n_heads\":7,"
                                     "\"n_layers\":2,\"max_len\":49}") == ERR_FORMAT);
}

TEST(init_follows_reference)
{
    tf_config c = tiny();
    c.d_model = 64;
    c.n_heads = 8;
    tf_model *m = malloc(sizeof *m);
    CHECK(tf_init(m, &c) == ERR_OK);
    rng r;
    rng_seed(&r, 3);
    tf_init_weights(m, &r);
    CHECK(m->p.count == 3 + 9 * c.n_layers);
    CHECK(tn_params_find(&m->p, "core.layers.1.sa.c_proj.weight") == m->layer[1].wo);
    CHECK(tn_params_find(&m->p, "core.layers.0.mlp.fc_3.weight") == m->layer[0].fc3);
    double ss = 0.0, ss_out = 0.0;
    const tensor *w = m->layer[0].wq, *wo = m->layer[0].wo;
    for (int i = 0; i < w->n; i++) ss += (double)w->data[i] * w->data[i];
    for (int i = 0; i < wo->n; i++) ss_out += (double)wo->data[i] * wo->data[i];
    CHECK_NEAR(sqrt(ss / w->n), 0.02, 0.002);
    CHECK_NEAR(sqrt(ss_out / wo->n), 0.02 / sqrt(2.0 * c.n_layers), 0.001);
    CHECK(m->out_norm->data[0] == 1.0f && m->layer[1].mlp_norm->data[63] == 1.0f);
    CHECK(tf_d_model(m) == 64 && tf_n_layers(m) == 2 && tf_n_heads(m) == 8 && tf_max_len(m) == 9);
    CHECK(tf_embedding(m) == m->emb->data && tf_out_norm_weight(m) == m->out_norm->data);
    CHECK(tf_d_model(NULL) == 0 && tf_embedding(NULL) == NULL);
    free_model(m);
}

/* ---- PyTorch parity --------------------------------------------------------- */

/* A PyTorch fixture: the file (its fixture.* tensors) in *f and its
 * model; NULL, the test failed and nothing to free, when either fails. */
static tf_model *load_fixture(const char *path, ck_file *f)
{
    tf_model *m = malloc(sizeof *m);
    if (m && ck_read(path, f) == ERR_OK) {
        if (tf_load(m, f, path, false) == ERR_OK) return m;
        tf_free(m);
        ck_free(f);
    }
    test_fail(__FILE__, __LINE__, err_msg());
    free(m);
    return NULL;
}

static tf_model *fixture_model(ck_file *f) { return load_fixture(FIXTURE, f); }

/* Before a pass on t: with the fixture's seed (a fixture of the dropouts),
 * a training pass whose rng starts there, as the reference's did. */
static void start_pass(ag_tape *t, const ck_file *f)
{
    const ck_tensor *seed = ck_get(f, "fixture.seed");
    t->training = seed != NULL;
    if (seed) rng_seed(t->rng, (uint64_t)((const int *)seed->data)[0]);
}

static void check_parity(const char *path)
{
    ck_file f;
    tf_model *m = load_fixture(path, &f);
    if (!m) return;
    const ck_tensor *x = ck_get(&f, "fixture.x"), *y = ck_get(&f, "fixture.y");
    const ck_tensor *lg = ck_get(&f, "fixture.logits"), *ls = ck_get(&f, "fixture.loss");
    CHECK(x && y && lg && ls && x->dtype == CK_I32 && x->ndim == 2);
    if (!x || !y || !lg || !ls) goto out;
    const int B = (int)x->shape[0], T = (int)x->shape[1], V = m->c.vocab_size;
    CHECK(lg->numel == (size_t)B * T * V);

    /* Logits from the whole-grid forward (the activations API's path), loss
     * and gradients from the training loss (which skips trailing padding);
     * both against PyTorch. */
    ag_tape t;
    CHECK(ag_init(&t, 1 << 20) == ERR_OK);
    rng r;
    t.rng = &r;
    start_pass(&t, &f);
    tensor *logits = tf_forward(m, &t, x->data, B, T);
    CHECK(max_abs_diff(logits->data, lg->data, lg->numel) <= 1e-4);
    /* a distillation fixture: soft targets at a weight (op_batch_cross_entropy) */
    const ck_tensor *soft = ck_get(&f, "fixture.soft"), *a = ck_get(&f, "fixture.distill_weight");
    CHECK(!soft || (a && soft->numel == lg->numel));
    const ds_batch b = { .B = B, .T = T, .x = x->data, .y = y->data,
                         .soft = soft ? soft->data : NULL,
                         .soft_weight = a ? ((const float *)a->data)[0] : 0 };
    CHECK_NEAR(op_batch_cross_entropy(&t, logits, &b, NULL)->data[0], ((const float *)ls->data)[0], 1e-5);
    ag_reset(&t);
    start_pass(&t, &f);
    tn_params_zero_grad(&m->p);
    tensor *loss = tf_loss(m, &t, &b);
    ag_backward(&t, loss);
    CHECK_NEAR(loss->data[0], ((const float *)ls->data)[0], 1e-5);
    for (int i = 0; i < m->p.count; i++) {
        char name[TN_NAME_MAX + 16];
        snprintf(name, sizeof name, "fixture.grad.%s", m->p.e[i].name);
        const ck_tensor *g = ck_get(&f, name);
        CHECK(g && g->numel == (size_t)m->p.e[i].t.n);
        if (!g || g->numel != (size_t)m->p.e[i].t.n) continue;
        double d = max_abs_diff(m->p.e[i].t.grad, g->data, g->numel);
        if (d > 1e-4) {
            char msg[200];
            snprintf(msg, sizeof msg, "gradient of %s differs by %g", m->p.e[i].name, d);
            test_fail(__FILE__, __LINE__, msg);
        }
    }
    ag_free(&t);
out:
    free_model(m);
    ck_free(&f);
}

TEST(parity_with_pytorch) { check_parity(FIXTURE); }
/* attention dropout and embedding dropout, masks drawn as the reference draws them */
TEST(parity_with_pytorch_dropouts) { check_parity(TEST_DATA("fixtures/transformer_dropout.safetensors")); }
/* soft targets (distillation): loss and gradients through the bucketed training graph */
TEST(parity_with_pytorch_distill) { check_parity(TEST_DATA("fixtures/transformer_distill.safetensors")); }

/* ---- gradient wiring (independent of the fixture) ---------------------------- */

/* The loss of batch b on a reset tape; a training pass's rng restarts at
 * the same seed, so that dropout draws the same masks every time. */
static double fresh_loss(const tf_model *m, ag_tape *t, const ds_batch *b)
{
    ag_reset(t);
    if (t->training) rng_seed(t->rng, 17);
    return tf_loss(m, t, b)->data[0];
}

/* A few entries of every parameter against central differences of the loss:
 * catches a block whose gradient does not reach a weight (the tied lm_head,
 * positions, norms).  With the dropouts, a training pass with fixed masks. */
static void check_finite_differences(const tf_config *c)
{
    tf_model *m = random_model(c, 5);
    const int B = 2, T = 6;
    int *x = random_rows(B, T, c->vocab_size, 9), *y = targets_of(x, B, T);
    ds_batch b = { .B = B, .T = T, .x = x, .y = y };
    ag_tape t;
    CHECK(ag_init(&t, 1 << 20) == ERR_OK);
    rng drop;
    t.rng = &drop;
    t.training = c->attn_dropout > 0.0f || c->emb_dropout > 0.0f;
    ag_reset(&t);
    tn_params_zero_grad(&m->p);
    if (t.training) rng_seed(&drop, 17);
    tensor *loss = tf_loss(m, &t, &b);
    ag_backward(&t, loss);
    t.grad = false;
    rng r;
    rng_seed(&r, 4);
    for (int i = 0; i < m->p.count; i++) {
        tensor *p = &m->p.e[i].t;
        for (int k = 0; k < 3; k++) {
            int j = (int)rng_below(&r, (uint32_t)p->n);
            if (p == m->emb) j = (x[1 + k] * c->d_model) + k;   /* a row that is used */
            const float keep = p->data[j], h = 1e-2f;
            p->data[j] = keep + h;
            double up = fresh_loss(m, &t, &b);
            p->data[j] = keep - h;
            double down = fresh_loss(m, &t, &b);
            p->data[j] = keep;
            double fd = (up - down) / (2.0 * h);
            CHECK_NEAR(p->grad[j], fd, 2e-3 + 2e-2 * fabs(fd));
        }
    }
    ag_free(&t);
    free(x);
    free(y);
    free_model(m);
}

/* tiny() with attention and embedding dropout at rate p */
static tf_config with_dropouts(float p)
{
    tf_config c = tiny();
    c.attn_dropout = p;
    c.emb_dropout = p;
    return c;
}

/* without, then with attention and embedding dropout */
TEST(gradients_match_finite_differences)
{
    const tf_config plain = tiny(), dropouts = with_dropouts(0.3f);
    check_finite_differences(&plain);
    check_finite_differences(&dropouts);
}

/* The training loss computes sequences only up to their last target, in
 * buckets of similar lengths; loss and every gradient must equal those of
 * the whole padded batch.  40 sequences of random lengths (one empty) make
 * several buckets.  The dropouts addressed by position drop the same
 * entries in both (a training pass from the same rng state). */
static void check_bucketed_loss(const tf_config *cfg)
{
    tf_config c = *cfg;
    tf_model *m = random_model(&c, 81);
    const int B = 40, T = c.max_len;
    int *x = calloc((size_t)B * T, sizeof *x);
    rng r;
    rng_seed(&r, 82);
    for (int b = 1; b < B; b++) {
        int len = 1 + (int)rng_below(&r, T);
        for (int t = 0; t < len; t++)
            x[b * T + t] = t ? TOK_FIRST + (int)rng_below(&r, c.vocab_size - TOK_FIRST) : TOK_SOS;
    }
    int *y = targets_of(x, B, T);
    const ds_batch b = { .B = B, .T = T, .x = x, .y = y };
    const size_t n = m->p.n;
    float *want = malloc(n * sizeof *want);
    ag_tape t;
    CHECK(ag_init(&t, 1 << 20) == ERR_OK);
    t.training = c.attn_dropout > 0.0f || c.emb_dropout > 0.0f;
    t.rng = &r;
    rng_seed(&r, 83);
    tn_params_zero_grad(&m->p);
    tensor *whole = op_cross_entropy(&t, tf_forward(m, &t, x, B, T), y, TOK_PAD);
    ag_backward(&t, whole);
    const double want_loss = whole->data[0];
    memcpy(want, m->p.grad, n * sizeof *want);
    ag_reset(&t);
    rng_seed(&r, 83);
    tn_params_zero_grad(&m->p);
    tensor *loss = tf_loss(m, &t, &b);
    ag_backward(&t, loss);
    CHECK_NEAR(loss->data[0], want_loss, 1e-6);
    CHECK(max_abs_diff(m->p.grad, want, n) <= 1e-6);
    ag_reset(&t);
    rng_seed(&r, 84);   /* other masks, another loss */
    if (t.training) CHECK(fabs(tf_loss(m, &t, &b)->data[0] - want_loss) > 1e-3);
    ag_free(&t);
    free(want);
    free(x);
    free(y);
    free_model(m);
}

TEST(training_loss_matches_whole_batch_loss)
{
    const tf_config plain = tiny(), dropouts = with_dropouts(0.2f);
    check_bucketed_loss(&plain);
    check_bucketed_loss(&dropouts);
}

/* Embedding dropout drops token types: at layer 0 (token + position) each
 * token's embedding is scaled by the same 0 or 1/(1-p) at all its
 * occurrences, some tokens dropped and some kept. */
TEST(embedding_dropout_drops_token_types)
{
    tf_config c = tiny();
    c.emb_dropout = 0.5f;
    tf_model *m = random_model(&c, 31);
    const int B = 6, T = c.max_len, d = c.d_model;
    int *x = random_rows(B, T, c.vocab_size, 32);
    ag_tape t;
    CHECK(ag_init(&t, 1 << 20) == ERR_OK);
    rng r;
    rng_seed(&r, 33);
    t.rng = &r;
    t.training = true;
    const tensor *h = tf_residual(m, &t, x, B, T, 0);
    float factor[64];
    int seen[64] = { 0 }, bad = 0, dropped = 0, kept = 0;
    for (int i = 0; h && i < B * T; i++) {
        const int tok = x[i];
        const float *e = m->emb->data + (size_t)tok * d, *p = m->pe->data + (size_t)(i % T) * d;
        const float f = (h->data[(size_t)i * d] - p[0]) / e[0];   /* the factor this occurrence got */
        if (fabsf(f) > 0.01f && fabsf(f - 2.0f) > 0.01f) bad++;
        if (!seen[tok]++) {
            factor[tok] = f;
            dropped += fabsf(f) <= 0.01f;
            kept += fabsf(f) > 0.01f;
        } else if (fabsf(f - factor[tok]) > 0.01f) {
            bad++;
        }
    }
    CHECK(h && bad == 0 && dropped > 0 && kept > 0);
    ag_free(&t);
    free(x);
    free_model(m);
}

/* ---- activations API ------------------------------------------------------ */

TEST(residual_then_logits_reproduces_forward)
{
    tf_config c = tiny();
    tf_model *m = random_model(&c, 1);
    const int B = 3, T = 7, V = c.vocab_size;
    int *x = random_rows(B, T, V, 2);
    ag_tape t;
    CHECK(ag_init(&t, 1 << 20) == ERR_OK);
    tensor *full = tf_forward(m, &t, x, B, T);
    for (int L = 0; L <= c.n_layers; L++) {
        tensor *h = tf_residual(m, &t, x, B, T, L);
        CHECK(h && h->n == B * T * c.d_model);
        tensor *lg = tf_logits_from(m, &t, h, L, B, T);
        CHECK(lg && lg->n == B * T * V);
        if (lg) CHECK(max_abs_diff(lg->data, full->data, (size_t)full->n) <= 1e-6);
    }
    CHECK(tf_residual(m, &t, x, B, T, c.n_layers + 1) == NULL);
    CHECK(tf_residual(m, &t, x, B, c.max_len + 1, 0) == NULL);
    ag_free(&t);
    free(x);
    free_model(m);
}

TEST(logit_lens_of_last_residual_is_the_logits)
{
    tf_config c = tiny();
    tf_model *m = random_model(&c, 11);
    const int B = 2, T = 5, V = c.vocab_size, d = c.d_model;
    int *x = random_rows(B, T, V, 12);
    ag_tape t;
    CHECK(ag_init(&t, 1 << 20) == ERR_OK);
    tensor *full = tf_forward(m, &t, x, B, T);
    tensor *h = tf_residual(m, &t, x, B, T, c.n_layers);
    float lg[64];
    for (int i = 0; i < B * T; i++) {
        tf_unembed(m, h->data + (size_t)i * d, lg);
        CHECK(max_abs_diff(lg, full->data + (size_t)i * V, (size_t)V) <= 1e-5);
    }
    ag_free(&t);
    free(x);
    free_model(m);
}

/* ---- cached generation ---------------------------------------------------- */

/* Feeding a row token by token gives the batched logits at every position. */
static void check_cached_matches_batched(const tf_model *m, const int *x, int B, int T)
{
    const int V = m->c.vocab_size;
    ag_tape t;
    CHECK(ag_init(&t, 1 << 20) == ERR_OK);
    tensor *full = tf_forward(m, &t, x, B, T);
    tf_state *s = tf_state_new(m);
    float *lg = malloc((size_t)V * sizeof *lg);
    double worst = 0.0;
    for (int b = 0; b < B; b++) {
        tf_state_start(s);
        for (int i = 0; i < T; i++) {
            tf_state_next(s, x[b * T + i], lg);
            double dd = max_abs_diff(lg, full->data + ((size_t)b * T + i) * V, (size_t)V);
            if (!(dd <= worst)) worst = dd;
        }
    }
    CHECK(worst <= 1e-4);
    CHECK(tf_state_pos(s) == T);
    free(lg);
    tf_state_free(s);
    ag_free(&t);
}

TEST(cached_generation_matches_batched_forward)
{
    tf_config c = tiny();
    tf_model *m = random_model(&c, 21);
    int *x = random_rows(3, c.max_len, c.vocab_size, 22);
    check_cached_matches_batched(m, x, 3, c.max_len);
    free(x);
    free_model(m);
}

TEST(cached_generation_matches_fixture_model)
{
    ck_file f;
    tf_model *m = fixture_model(&f);
    if (!m) return;
    const ck_tensor *x = ck_get(&f, "fixture.x");
    if (x) check_cached_matches_batched(m, x->data, (int)x->shape[0], (int)x->shape[1]);
    free_model(m);
    ck_free(&f);
}

/* A hook adding u at layer L changes the logits exactly as adding u to the
 * residual stream after layer L of the batched forward at every position. */
typedef struct add_hook { const float *u; int calls; } add_hook;

static void add_vector(void *ctx, int layer, int pos, float *x, int d)
{
    add_hook *a = ctx;
    for (int i = 0; i < d; i++) x[i] += a->u[i];
    a->calls++;
}

TEST(hook_matches_modified_residual)
{
    tf_config c = tiny();
    tf_model *m = random_model(&c, 31);
    const int T = 6, V = c.vocab_size, d = c.d_model;
    int *x = random_rows(1, T, V, 32);
    float u[16], lg[16];
    rng r;
    rng_seed(&r, 33);
    for (int i = 0; i < d; i++) u[i] = rng_normal(&r);
    ag_tape t;
    CHECK(ag_init(&t, 1 << 20) == ERR_OK);
    tf_state *s = tf_state_new(m);
    for (int L = 0; L <= c.n_layers; L++) {
        ag_reset(&t);
        tensor *h = tf_residual(m, &t, x, 1, T, L);
        for (int i = 0; i < h->n; i++) h->data[i] += u[i % d];
        tensor *want = tf_logits_from(m, &t, h, L, 1, T);
        add_hook a = { u, 0 };
        CHECK(tf_state_set_hook(s, L, add_vector, &a) == ERR_OK);
        tf_state_start(s);
        double worst = 0.0;
        for (int i = 0; i < T; i++) {
            tf_state_next(s, x[i], lg);
            double dd = max_abs_diff(lg, want->data + (size_t)i * V, (size_t)V);
            if (!(dd <= worst)) worst = dd;
        }
        CHECK(worst <= 1e-4);
        CHECK(a.calls == T);
    }
    CHECK(tf_state_set_hook(s, c.n_layers + 1, add_vector, NULL) == ERR_ARG);
    CHECK(tf_state_set_hook(s, 0, NULL, NULL) == ERR_OK);   /* removed: plain logits again */
    ag_reset(&t);
    tensor *plain = tf_forward(m, &t, x, 1, T);
    tf_state_start(s);
    for (int i = 0; i < T; i++) tf_state_next(s, x[i], lg);
    CHECK(max_abs_diff(lg, plain->data + (size_t)(T - 1) * V, (size_t)V) <= 1e-4);
    tf_state_free(s);
    ag_free(&t);
    free(x);
    free_model(m);
}

TEST(past_max_len_only_eos_remains)
{
    tf_config c = tiny();
    tf_model *m = random_model(&c, 41);
    tf_state *s = tf_state_new(m);
    float lg[16];
    tf_state_start(s);
    for (int i = 0; i < c.max_len + 5; i++) tf_state_next(s, i ? TOK_FIRST : TOK_SOS, lg);
    CHECK(lg[TOK_EOS] == 0.0f);
    for (int v = 0; v < c.vocab_size; v++)
        if (v != TOK_EOS) CHECK(isinf(lg[v]) && lg[v] < 0);
    tf_state_start(s);   /* usable again */
    tf_state_next(s, TOK_SOS, lg);
    CHECK(isfinite(lg[TOK_FIRST]));
    tf_state_free(s);
    free_model(m);
}

/* ---- checkpoints through the generic interface ----------------------------- */

TEST(saved_model_generates_through_mdl)
{
    tf_config c = tiny();
    tf_model *m = random_model(&c, 51);
    int32_t cps[8] = { 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h' };
    txt_vocab v;
    CHECK(txt_vocab_build(&v, cps, 8) == ERR_OK);
    CHECK(v.size == c.vocab_size);
    char path[] = "/tmp/villes-tf-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd >= 0) close(fd);
    CHECK(tf_save(m, &v, path) == ERR_OK);

    mdl md;
    CHECK(mdl_load(&md, path) == ERR_OK);
    const tf_model *back = tf_of_mdl(&md);
    CHECK(back && back->c.d_model == c.d_model && mdl_max_len(&md) == c.max_len);
    if (back) {
        CHECK(max_abs_diff(back->p.data, m->p.data, m->p.n) == 0.0);
        mdl_state st;
        CHECK(mdl_state_new(&st, &md) == ERR_OK);
        CHECK(tf_state_of(&st) != NULL);
        tf_state *ref = tf_state_new(m);
        float a[16], b[16];
        mdl_start(&st);
        tf_state_start(ref);
        const int toks[] = { TOK_SOS, 4, 5, 6 };
        for (int i = 0; i < 4; i++) {
            mdl_next(&st, toks[i], a);
            tf_state_next(ref, toks[i], b);
        }
        CHECK(max_abs_diff(a, b, (size_t)c.vocab_size) == 0.0);
        tf_state_free(ref);
        mdl_state_free(&st);
    }
    mdl_free(&md);
    unlink(path);
    txt_vocab_free(&v);
    free_model(m);
}

TEST(load_rejects_inconsistent_vocab)
{
    tf_config c = tiny();
    tf_model *m = random_model(&c, 61);
    int32_t cps[7] = { 'a', 'b', 'c', 'd', 'e', 'f', 'g' };
    txt_vocab v;
    CHECK(txt_vocab_build(&v, cps, 7) == ERR_OK);
    char path[] = "/tmp/villes-tf-XXXXXX";
    int fd = mkstemp(path);
    if (fd >= 0) close(fd);
    CHECK(tf_save(m, &v, path) == ERR_ARG);   /* 10 tokens for a model of 11 */
    unlink(path);
    txt_vocab_free(&v);
    free_model(m);
}

/* A hostile config (huge d_model, many layers) over a small file is refused
 * before anything is allocated. */
TEST(load_refuses_config_larger_than_file)
{
    tf_config c = tiny();
    tf_model *m = random_model(&c, 91);
    int32_t cps[8] = { 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h' };
    txt_vocab v;
    CHECK(txt_vocab_build(&v, cps, 8) == ERR_OK);
    char *vj = NULL;
    CHECK(txt_vocab_to_json(&v, &vj) == ERR_OK);
    char path[] = "/tmp/villes-tf-XXXXXX";
    int fd = mkstemp(path);
    if (fd >= 0) close(fd);
    ck_writer *w = ck_writer_new();
    CHECK(ck_put_meta(w, "format", CK_FORMAT) == ERR_OK);
    CHECK(ck_put_meta(w, "format_version", CK_FORMAT_VERSION) == ERR_OK);
    CHECK(ck_put_meta(w, "model", TF_KIND) == ERR_OK);
    CHECK(ck_put_meta(w, "vocab", vj) == ERR_OK);
    CHECK(ck_put_meta(w, "config", "{\"vocab_size\":11,\"d_model\":8192,\"n_heads\":8,"
                                    "\"n_layers\":32,\"max_len\":4096,\"dropout\":0}") == ERR_OK);
    CHECK(tn_params_save(&m->p, w, false) == ERR_OK);
    CHECK(ck_write(w, path) == ERR_OK);
    ck_writer_free(w);
    ck_file f;
    CHECK(ck_read(path, &f) == ERR_OK);
    tf_model *back = malloc(sizeof *back);
    CHECK(tf_load(back, &f, path, false) == ERR_FORMAT);
    CHECK(strstr(err_msg(), "has shape") != NULL);
    tf_free(back);
    free(back);
    ck_free(&f);
    unlink(path);
    free(vj);
    txt_vocab_free(&v);
    free_model(m);
}

/* ---- training ------------------------------------------------------------ */

TEST(adamw_steps_lower_the_loss)
{
    tf_config c = tiny();
    tf_model *m = malloc(sizeof *m);
    CHECK(tf_init(m, &c) == ERR_OK);
    rng r;
    rng_seed(&r, 71);
    tf_init_weights(m, &r);
    const int B = 4, T = 8;
    int *x = random_rows(B, T, c.vocab_size, 72), *y = targets_of(x, B, T);
    ds_batch b = { .B = B, .T = T, .x = x, .y = y };
    opt_config oc = OPT_DEFAULTS;
    oc.lr = 1e-2f;
    ag_tape t;
    CHECK(ag_init(&t, 1 << 20) == ERR_OK);
    t.grad = true;
    double first = 0.0, last = 0.0;
    for (int step = 1; step <= 40; step++) {
        ag_reset(&t);
        tn_params_zero_grad(&m->p);
        tensor *loss = tf_loss(m, &t, &b);
        ag_backward(&t, loss);
        opt_adamw_step(&m->p, &oc, step, oc.lr);
        if (step == 1) first = loss->data[0];
        last = loss->data[0];
    }
    CHECK(last < 0.5 * first);
    ag_free(&t);
    free(x);
    free(y);
    free_model(m);
}
