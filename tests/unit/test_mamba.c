/* test_mamba.c - the Mamba LM: config, finite differences of every
 * gradient of the fused scan op and the graph, padding, generation in
 * recurrent form against the batched forward, checkpoints through the
 * registry, and parity with the PyTorch reference fixture. */
#include "test.h"

#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "kinds.h"
#include "mamba.h"
#include "ops.h"

/* ---- helpers ------------------------------------------------------------ */

/* A small model with weights away from their initial values (the 0.02
 * matrices would leave the scan's gradients tiny), moderate so that the
 * loss is not too curved for finite differences: matrices normal with std
 * 0.6/sqrt(columns), vectors 0.3, norms 1 + 0.2 normal, A_log 0.5 normal,
 * the embedding (also the lm_head) 0.3. */
static void small_model(mamba_model *m, int V, int d, int layers, uint64_t seed)
{
    mamba_config c = MAMBA_DEFAULTS;
    c.vocab_size = V;
    c.d_model = d;
    c.n_layers = layers;
    c.d_state = 3;
    c.d_conv = 3;
    c.dt_rank = 2;
    CHECK(mamba_init(m, &c) == ERR_OK);
    rng r;
    rng_seed(&r, seed);
    mamba_init_weights(m, &r);
    for (int e = 0; e < m->p.count; e++) {
        tensor *t = &m->p.e[e].t;
        const char *name = m->p.e[e].name;
        const bool norm = strstr(name, "norm") != NULL;
        float std = t->ndim == 1 ? 0.3f : 0.6f / sqrtf((float)t->shape[t->ndim - 1]);
        if (strstr(name, "A_log")) std = 0.5f;
        if (norm) std = 0.2f;
        if (strcmp(name, "embedding.weight") == 0) std = 0.3f;
        for (int i = 0; i < t->n; i++) t->data[i] = (norm ? 1.0f : 0.0f) + std * rng_normal(&r);
    }
}

/* Rows of unequal length, trailing <pad>, like ds_batch_fill makes them. */
enum { TB = 3, TT = 7 };
static const int lens[TB] = { 4, 7, 2 };

static ds_batch test_batch(int V, uint64_t seed)
{
    static int x[TB * TT], y[TB * TT];
    ds_batch b;
    test_names_batch(&b, x, y, TB, TT, lens, V, seed);
    return b;
}

/* ---- config ----------------------------------------------------------------- */

TEST(mamba_config_json_roundtrip)
{
    mamba_config c = MAMBA_DEFAULTS, back;
    c.vocab_size = 46;
    char *json = NULL;
    CHECK(mamba_config_to_json(&c, &json) == ERR_OK);
    CHECK(strstr(json, "\"expand_factor\":2") && strstr(json, "\"dt_rank\":0"));
    CHECK(mamba_config_from_json(&back, json) == ERR_OK);
    CHECK(back.dt_rank == 4);   /* auto: ceil(64 / 16) */
    c.dt_rank = 4;
    CHECK(memcmp(&c, &back, sizeof c) == 0);
    free(json);
    CHECK(mamba_auto_dt_rank(17) == 2 && mamba_auto_dt_rank(16) == 1 && mamba_auto_dt_rank(1) == 1);
}

TEST(mamba_config_rejects_bad_fields)
{
    mamba_config c;
    const char *bad[] = {
        "{\"vocab_size\":46,\"d_model\":64,\"n_layers\":1,\"d_state\":16,\"expand_factor\":2,\"d_conv\":4}",
        "{\"vocab_size\":46,\"d_model\":64,\"n_layers\":1,\"d_state\":0,\"expand_factor\":2,\"d_conv\":4,\"dt_rank\":4}",
        "{\"vocab_size\":46,\"d_model\":64,\"n_layers\":99,\"d_state\":16,\"expand_factor\":2,\"d_conv\":4,\"dt_rank\":4}",
        "{\"vocab_size\":2,\"d_model\":64,\"n_layers\":1,\"d_state\":16,\"expand_factor\":2,\"d_conv\":4,\"dt_rank\":4}",
        "{\"vocab_size\":46,\"d_model\":64,\"n_layers\":1,\"d_state\":16,\"expand_factor\":\"2\",\"d_conv\":4,\"dt_rank\":4}",
        "[1]", NULL,
    };
    for (int i = 0; i < (int)(sizeof bad / sizeof bad[0]); i++)
        CHECK(mamba_config_from_json(&c, bad[i]) == ERR_FORMAT);
    mamba_config z = MAMBA_DEFAULTS;   /* vocab_size 0: the data decides it */
    CHECK(mamba_config_check(&z) == ERR_ARG);
}

TEST(mamba_init_is_the_notebooks)
{
    mamba_model m;
    mamba_config c = MAMBA_DEFAULTS;
    c.vocab_size = 10;
    c.dt_rank = mamba_auto_dt_rank(c.d_model);
    CHECK(mamba_init(&m, &c) == ERR_OK);
    rng r;
    rng_seed(&r, 1);
    mamba_init_weights(&m, &r);
    const mamba_layer *L = &m.layer[0];
    CHECK(L->in_proj->shape[0] == 256 && L->x_proj->shape[0] == 4 + 32 && L->conv_w->shape[2] == 4);
    CHECK_NEAR(L->A_log->data[0], 0.0, 0);
    CHECK_NEAR(L->A_log->data[15], logf(16.0f), 0);
    CHECK_NEAR(L->A_log->data[16], 0.0, 0);
    CHECK(L->D->data[5] == 1.0f && L->norm->data[3] == 1.0f);
    /* softplus(dt bias) in [0.001, 0.1] */
    for (int i = 0; i < L->dt_b->n; i++) {
        double dt = log1p(exp(L->dt_b->data[i]));
        CHECK(dt >= 0.001 * 0.999 && dt <= 0.1 * 1.001);
    }
    for (int i = 0; i < L->conv_w->n; i++) CHECK(fabsf(L->conv_w->data[i]) <= 0.5f);
    CHECK(tn_params_find(&m.p, "core.layers.0.mixer.dt_proj.bias") == L->dt_b);
    mamba_free(&m);
}

/* ---- finite differences ------------------------------------------------------ */

typedef struct fd_ctx { mamba_model *m; ag_tape *t; const ds_batch *b; } fd_ctx;

static double loss_of(void *ctx)
{
    fd_ctx *c = ctx;
    ag_reset(c->t);
    c->t->grad = false;
    tensor *l = mamba_loss(c->m, c->t, c->b);
    c->t->grad = true;
    return l ? l->data[0] : NAN;
}

/* For every parameter tensor (so every gradient of the fused op and of the
 * graph around it), the directional derivative along a random direction
 * against the central difference of the loss. */
TEST(mamba_gradients_finite_differences)
{
    enum { V = 9, D = 4, LAYERS = 2 };
    mamba_model m;
    small_model(&m, V, D, LAYERS, 7);
    ds_batch b = test_batch(V, 5);
    ag_tape t;
    CHECK(ag_init(&t, 1 << 20) == ERR_OK);
    tn_params_zero_grad(&m.p);
    tensor *loss = mamba_loss(&m, &t, &b);
    CHECK(loss != NULL);
    ag_backward(&t, loss);

    rng r;
    rng_seed(&r, 11);
    fd_ctx ctx = { &m, &t, &b };
    for (int e = 0; e < m.p.count; e++) {
        double analytic, numeric = test_param_fd(&m.p, e, loss_of, &ctx, 3e-3f, &r, &analytic);
        double tol = 2e-4 + 1e-2 * fabs(numeric);
        if (!(fabs(numeric - analytic) <= tol))
            fprintf(stderr, "  %s: numeric %.6g analytic %.6g\n", m.p.e[e].name, numeric, analytic);
        CHECK(fabs(numeric - analytic) <= tol);
        CHECK(analytic != 0.0);   /* every parameter is reached */
    }
    ag_free(&t);
    mamba_free(&m);
}

/* ---- padding and generation -------------------------------------------------- */

/* Logits (len, V) of row `row` of the batch, run alone with no padding. */
static void row_alone(const mamba_model *m, const ds_batch *b, int row, float *out)
{
    ag_tape t;
    CHECK(ag_init(&t, 1 << 16) == ERR_OK);
    t.grad = false;
    tensor *l = mamba_forward(m, &t, b->x + row * b->T, 1, lens[row]);
    CHECK(l != NULL);
    if (l) memcpy(out, l->data, (size_t)l->n * sizeof *out);
    ag_free(&t);
}

/* A padded batch gives each row the logits it has alone (the scan is
 * causal; padding never leaks), and the recurrent steps give them too. */
TEST(mamba_padding_and_steps_match_forward)
{
    enum { V = 9, D = 8 };
    mamba_model m;
    small_model(&m, V, D, 2, 3);
    ds_batch b = test_batch(V, 9);
    ag_tape t;
    CHECK(ag_init(&t, 1 << 16) == ERR_OK);
    t.grad = false;
    tensor *logits = mamba_forward(&m, &t, b.x, TB, TT);
    CHECK(logits && logits->n == (int)b.n_tokens * V);   /* packed: no padding */
    mamba_state *s = mamba_state_new(&m);
    CHECK(s != NULL);
    float alone[TT * V], step[V];
    for (int i = 0, off = 0; logits && s && i < TB; off += lens[i++]) {
        row_alone(&m, &b, i, alone);
        const float *batched = logits->data + (size_t)off * V;
        CHECK(test_max_abs_diff(batched, alone, (size_t)lens[i] * V) <= 1e-5);
        mamba_state_start(s);
        for (int k = 0; k < lens[i]; k++) {
            mamba_state_next(s, b.x[i * TT + k], step);
            CHECK(test_max_abs_diff(step, batched + (size_t)k * V, V) <= 1e-4);
        }
    }
    mamba_state_free(s);
    ag_free(&t);
    mamba_free(&m);
}

/* ---- checkpoints ------------------------------------------------------------ */

TEST(mamba_checkpoint_roundtrip_through_registry)
{
    const char *path = test_path("mamba.safetensors");
    mamba_model m;
    txt_vocab v = { 0 };
    int32_t cps[] = { 'a', 'b', 'c', 'd', 'e' };
    CHECK(txt_vocab_build(&v, cps, 5) == ERR_OK);
    small_model(&m, v.size, 6, 2, 5);
    CHECK(mamba_save(&m, &v, path) == ERR_OK);

    mdl g;
    CHECK(mdl_load(&g, path) == ERR_OK);
    CHECK(g.kind == &mamba_kind && mdl_vocab_size(&g) == v.size && mdl_max_len(&g) == 0);
    const mamba_model *back = g.impl;
    CHECK(back->p.n == m.p.n && memcmp(back->p.data, m.p.data, m.p.n * sizeof(float)) == 0);
    mdl_state gs;
    mamba_state *s = mamba_state_new(&m);
    CHECK(mdl_state_new(&gs, &g) == ERR_OK && s);
    float a[16], bb[16];
    mdl_start(&gs);
    mamba_state_start(s);
    int toks[] = { TOK_SOS, 4, 5, 6, 7 };
    for (int k = 0; k < 5; k++) {
        mdl_next(&gs, toks[k], a);
        mamba_state_next(s, toks[k], bb);
        CHECK(memcmp(a, bb, (size_t)v.size * sizeof *a) == 0);
    }
    mamba_state_free(s);
    mdl_state_free(&gs);
    mdl_free(&g);

    /* a damaged config is a one-line error, not a crash */
    ck_file f;
    CHECK(test_read_damaged_config(path, &f));
    mamba_model bad;
    CHECK(mamba_load(&bad, &f, path, false) == ERR_FORMAT);
    ck_free(&f);
    mamba_free(&m);
    txt_vocab_free(&v);
}

/* ---- parity with the PyTorch reference ------------------------------------------ */

TEST(mamba_parity_pytorch)
{
    const char *path = TEST_DATA("fixtures/mamba.safetensors");
    ck_file f;
    CHECK(ck_read(path, &f) == ERR_OK);
    mamba_model m;
    CHECK(mamba_load(&m, &f, path, false) == ERR_OK);
    const ck_tensor *fx = ck_get(&f, "fixture.x"), *fy = ck_get(&f, "fixture.y");
    const ck_tensor *fl = ck_get(&f, "fixture.logits"), *floss = ck_get(&f, "fixture.loss");
    bool ok = fx && fy && fl && floss && fx->dtype == CK_I32 && fx->ndim == 2 &&
              fy->numel == fx->numel && fl->numel == fx->numel * (size_t)m.c.vocab_size;
    CHECK(ok);
    if (!ok) {
        mamba_free(&m);
        ck_free(&f);
        return;
    }
    int B = (int)fx->shape[0], T = (int)fx->shape[1], V = m.c.vocab_size;
    const int *x = fx->data, *y = fy->data;
    ag_tape t;
    CHECK(ag_init(&t, 1 << 20) == ERR_OK);
    tn_params_zero_grad(&m.p);
    tensor *logits = mamba_forward(&m, &t, x, B, T);
    int *ys = malloc((size_t)B * T * sizeof *ys), n = 0;   /* the targets, packed */
    for (int i = 0; i < B * T; i++)
        if (y[i] != TOK_PAD) ys[n++] = y[i];
    tensor *loss = op_cross_entropy(&t, logits, ys, TOK_PAD);
    CHECK(loss != NULL);
    ag_backward(&t, loss);
    free(ys);
    CHECK_NEAR(loss->data[0], ((const float *)floss->data)[0], 1e-5);
    /* logits at every position with a target: the packed rows, in order
     * (the padding after a row's last input is not computed) */
    double worst = 0;
    int compared = 0;
    for (int i = 0; i < B * T; i++) {
        if (y[i] == TOK_PAD) continue;
        double dd = test_max_abs_diff(logits->data + (size_t)compared * V,
                                 (const float *)fl->data + (size_t)i * V, V);
        if (!(dd <= worst)) worst = dd;
        compared++;
    }
    CHECK(compared > 0 && compared * V == logits->n);
    CHECK_NEAR(worst, 0, 1e-4);
    for (int e = 0; e < m.p.count; e++) {
        const tn_param_entry *pe = &m.p.e[e];
        char name[TN_NAME_MAX + 16];
        snprintf(name, sizeof name, "fixture.grad.%s", pe->name);
        const ck_tensor *g = ck_get(&f, name);
        CHECK(g && g->numel == (size_t)pe->t.n);
        if (!g || g->numel != (size_t)pe->t.n) continue;
        double dd = test_max_abs_diff(m.p.grad + pe->offset, g->data, g->numel);
        if (!(dd <= 1e-4)) fprintf(stderr, "  %s differs by %g\n", name, dd);
        CHECK(dd <= 1e-4);
    }
    ag_free(&t);
    mamba_free(&m);
    ck_free(&f);
}
