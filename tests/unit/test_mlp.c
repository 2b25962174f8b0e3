/* test_mlp.c - the Bengio MLP: PyTorch parity on the fixture (logits, loss,
 * every gradient, through both the all-positions and the packed training
 * path), the fused first layer against a naive loop and central finite
 * differences, generation through the mdl interface, config and init. */
#include "kinds.h"
#include "mlp.h"
#include "ops.h"
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *FIXTURE = TEST_DATA("fixtures/mlp.safetensors");

static float max_abs_diff(const float *a, const float *b, size_t n)
{
    float m = 0.0f;
    for (size_t i = 0; i < n; i++) m = fmaxf(m, fabsf(a[i] - b[i]));
    return m;
}

typedef struct fixture {
    ck_file f;
    mlp_model m;
    const int *x, *y;
    int B, T;
} fixture;

static bool fixture_load(fixture *fx)
{
    memset(fx, 0, sizeof *fx);
    if (ck_read(FIXTURE, &fx->f) || mlp_load(&fx->m, &fx->f, FIXTURE, false)) {
        fprintf(stderr, "  %s\n", err_msg());
        return false;
    }
    const ck_tensor *x = ck_get(&fx->f, "fixture.x"), *y = ck_get(&fx->f, "fixture.y");
    if (!x || !y || x->dtype != CK_I32 || x->ndim != 2 || y->numel != x->numel) return false;
    fx->x = x->data;
    fx->y = y->data;
    fx->B = (int)x->shape[0];
    fx->T = (int)x->shape[1];
    return true;
}

static void fixture_free(fixture *fx)
{
    mlp_free(&fx->m);
    ck_free(&fx->f);
}

/* Every parameter's gradient against fixture.grad.<name>. */
static void check_grads(fixture *fx)
{
    for (int i = 0; i < fx->m.p.count; i++) {
        const tn_param_entry *e = &fx->m.p.e[i];
        char name[TN_NAME_MAX + 16];
        snprintf(name, sizeof name, "fixture.grad.%s", e->name);
        const ck_tensor *g = ck_get(&fx->f, name);
        CHECK(g && g->numel == (size_t)e->t.n);
        if (!g || g->numel != (size_t)e->t.n) continue;
        float d = max_abs_diff(e->t.grad, g->data, g->numel);
        if (d > 1e-4f) fprintf(stderr, "  %s: max abs diff %g\n", e->name, (double)d);
        CHECK(d <= 1e-4f);
    }
}

TEST(mlp_fixture_parity_all_positions)
{
    fixture fx;
    CHECK(fixture_load(&fx));
    if (!fx.x) { fixture_free(&fx); return; }
    ag_tape t;
    ag_init(&t, 0);
    tn_params_zero_grad(&fx.m.p);
    tensor *logits = mlp_logits(&fx.m, &t, fx.x, fx.B, fx.T);
    const ck_tensor *want = ck_get(&fx.f, "fixture.logits");
    CHECK(logits && want && want->numel == (size_t)logits->n);
    if (logits && want && want->numel == (size_t)logits->n)
        CHECK(max_abs_diff(logits->data, want->data, want->numel) <= 1e-4f);
    tensor *loss = op_cross_entropy(&t, logits, fx.y, TOK_PAD);
    CHECK_NEAR(loss->data[0], ((const float *)ck_get(&fx.f, "fixture.loss")->data)[0], 1e-5);
    ag_backward(&t, loss);
    check_grads(&fx);
    ag_free(&t);
    fixture_free(&fx);
}

/* The training path computes only the positions with a real target. */
TEST(mlp_fixture_parity_packed_loss)
{
    fixture fx;
    CHECK(fixture_load(&fx));
    if (!fx.x) { fixture_free(&fx); return; }
    ds_batch b = { .B = fx.B, .T = fx.T, .x = (int *)fx.x, .y = (int *)fx.y };
    for (int i = 0; i < fx.B * fx.T; i++) b.n_tokens += fx.y[i] != TOK_PAD;
    ag_tape t;
    ag_init(&t, 0);
    tn_params_zero_grad(&fx.m.p);
    tensor *loss = mlp_loss(&fx.m, &t, &b);
    CHECK(loss != NULL);
    CHECK_NEAR(loss->data[0], ((const float *)ck_get(&fx.f, "fixture.loss")->data)[0], 1e-5);
    ag_backward(&t, loss);
    check_grads(&fx);
    ag_free(&t);
    fixture_free(&fx);
}

/* Feeding a row token by token through the generation interface gives the
 * batched forward's logits at every position. */
TEST(mlp_generation_matches_batched_forward)
{
    fixture fx;
    CHECK(fixture_load(&fx));
    if (!fx.x) { fixture_free(&fx); return; }
    const mdl_kind *k = mdl_find_kind(MLP_KIND);
    CHECK(k == &mlp_kind);
    void *impl = NULL;
    CHECK(mlp_kind.load(&fx.f, FIXTURE, &impl) == ERR_OK);
    void *st = mlp_kind.state_new(impl);
    CHECK(st != NULL);
    const float *want = ck_get(&fx.f, "fixture.logits")->data;
    int V = fx.m.c.vocab_size;
    float *logits = malloc((size_t)V * sizeof *logits);
    float worst = 0.0f;
    for (int b = 0; b < fx.B; b++) {
        mlp_kind.start(impl, st);
        for (int p = 0; p < fx.T; p++) {
            mlp_kind.next(impl, st, fx.x[b * fx.T + p], logits);
            worst = fmaxf(worst, max_abs_diff(logits, want + ((size_t)b * fx.T + p) * V, (size_t)V));
        }
    }
    CHECK(worst <= 1e-4f);
    CHECK(mlp_kind.max_len(impl) == 0);
    free(logits);
    mlp_kind.state_free(st);
    mlp_kind.free(impl);
    fixture_free(&fx);
}

/* ---- the fused first layer ---------------------------------------------- */

enum { FV = 7, FD = 3, FH = 5, FN = 6, FC = 4 };
static const int fused_ctx[FN * FC] = { 1, 1, 1, 4,  1, 1, 4, 6,  1, 4, 6, 0,  4, 6, 0, 2,
                                        3, 3, 3, 3,  5, 2, 6, 1 };

static void random_model(mlp_model *m, uint64_t seed)
{
    mlp_config c = { .vocab_size = FV, .d_model = FD, .d_hidden = FH, .n_context = FC };
    CHECK(mlp_init(m, &c) == ERR_OK);
    rng r;
    rng_seed(&r, seed);
    mlp_init_weights(m, &r);
}

TEST(mlp_context_linear_forward_matches_naive)
{
    mlp_model m;
    random_model(&m, 5);
    ag_tape t;
    ag_init(&t, 0);
    tensor *y = mlp_context_linear(&t, m.emb, m.w1, m.b1, fused_ctx, FN, FC);
    CHECK(y && y->shape[0] == FN && y->shape[1] == FH);
    double worst = 0;
    for (int r = 0; y && r < FN; r++)
        for (int h = 0; h < FH; h++) {
            double s = m.b1->data[h];
            for (int j = 0; j < FC; j++)
                for (int k = 0; k < FD; k++)
                    s += (double)m.w1->data[h * FC * FD + j * FD + k] *
                         m.emb->data[fused_ctx[r * FC + j] * FD + k];
            worst = fmax(worst, fabs(s - y->data[r * FH + h]));
        }
    CHECK(worst < 1e-5);
    ag_free(&t);
    mlp_free(&m);
}

/* loss = sum(y * R) over the fused op's output (the op is linear in each
 * input, so the difference quotient is exact up to rounding). */
static double projected_loss(mlp_model *m, ag_tape *t, const float *R, bool backward)
{
    ag_reset(t);
    tensor *y = mlp_context_linear(t, m->emb, m->w1, m->b1, fused_ctx, FN, FC);
    double s = 0;
    for (int i = 0; i < y->n; i++) s += (double)y->data[i] * R[i];
    if (backward) {
        float *dy = ag_grad(y);
        for (int i = 0; i < y->n; i++) dy[i] = R[i];
        for (int i = t->n_nodes - 1; i >= 0; i--) t->nodes[i].backward(&t->nodes[i]);
    }
    return s;
}

TEST(mlp_context_linear_backward_finite_differences)
{
    mlp_model m;
    random_model(&m, 6);
    ag_tape t;
    ag_init(&t, 0);
    float R[FN * FH];
    rng r;
    rng_seed(&r, 7);
    for (int i = 0; i < FN * FH; i++) R[i] = rng_normal(&r);
    tn_params_zero_grad(&m.p);
    projected_loss(&m, &t, R, true);
    t.grad = false;
    const float eps = 1e-2f;
    double worst = 0;
    tensor *xs[3] = { m.emb, m.w1, m.b1 };
    for (int p = 0; p < 3; p++) {
        tensor *x = xs[p];
        for (int i = 0; i < x->n; i++) {
            float keep = x->data[i];
            x->data[i] = keep + eps;
            double lp = projected_loss(&m, &t, R, false);
            x->data[i] = keep - eps;
            double lm = projected_loss(&m, &t, R, false);
            x->data[i] = keep;
            double num = (lp - lm) / (2.0 * eps), ana = x->grad[i];
            double err = fabs(num - ana) / (1e-3 + 1e-3 * fmax(fabs(num), fabs(ana)));
            if (err > 1.0) fprintf(stderr, "  param %d [%d]: analytic %g numeric %g\n", p, i, ana, num);
            worst = fmax(worst, err);
        }
    }
    CHECK(worst <= 1.0);
    ag_free(&t);
    mlp_free(&m);
}

TEST(mlp_context_linear_inference_records_nothing)
{
    mlp_model m;
    random_model(&m, 8);
    ag_tape t;
    ag_init(&t, 0);
    t.grad = false;
    tensor *y = mlp_context_linear(&t, m.emb, m.w1, m.b1, fused_ctx, FN, FC);
    CHECK(y && y->grad == NULL && t.n_nodes == 0);
    ag_free(&t);
    mlp_free(&m);
}

/* ---- config, init ----------------------------------------------------- */

TEST(mlp_config_round_trip_and_rejects)
{
    mlp_config c = { .vocab_size = 46, .d_model = 32, .d_hidden = 512, .n_context = 20 }, back;
    char *json = NULL;
    CHECK(mlp_config_to_json(&c, &json) == ERR_OK);
    CHECK(json && !strcmp(json, "{\"vocab_size\":46,\"d_model\":32,\"d_hidden\":512,\"n_context\":20}"));
    CHECK(mlp_config_from_json(&back, json) == ERR_OK);
    CHECK(!memcmp(&back, &c, sizeof c));
    free(json);
    CHECK(mlp_config_from_json(&back, "{\"vocab_size\":46,\"d_model\":32,\"d_hidden\":512}") == ERR_FORMAT);
    CHECK(mlp_config_from_json(&back, "{\"vocab_size\":46,\"d_model\":-1,\"d_hidden\":5,\"n_context\":2}") == ERR_FORMAT);
    CHECK(mlp_config_from_json(&back, "[1]") == ERR_FORMAT);
    CHECK(mlp_config_from_json(&back, NULL) == ERR_FORMAT);
    mlp_model m;
    mlp_config huge = { .vocab_size = 46, .d_model = 4096, .d_hidden = 65536, .n_context = 4096 };
    CHECK(mlp_init(&m, &huge) == ERR_ARG);
    mlp_config tiny_vocab = { .vocab_size = 2, .d_model = 4, .d_hidden = 4, .n_context = 2 };
    CHECK(mlp_init(&m, &tiny_vocab) == ERR_ARG);
}

/* PyTorch's defaults: embedding N(0,1), linears U(-1/sqrt(in), 1/sqrt(in)). */
TEST(mlp_init_like_pytorch)
{
    mlp_model m;
    mlp_config c = { .vocab_size = 46, .d_model = 32, .d_hidden = 512, .n_context = 20 };
    CHECK(mlp_init(&m, &c) == ERR_OK);
    rng r;
    rng_seed(&r, 1);
    mlp_init_weights(&m, &r);
    double s = 0, s2 = 0;
    for (int i = 0; i < m.emb->n; i++) s += m.emb->data[i], s2 += (double)m.emb->data[i] * m.emb->data[i];
    double mean = s / m.emb->n, sd = sqrt(s2 / m.emb->n - mean * mean);
    CHECK_NEAR(mean, 0.0, 0.1);
    CHECK_NEAR(sd, 1.0, 0.05);
    float bound = 1.0f / sqrtf(640.0f), mx = 0.0f;
    for (int i = 0; i < m.w1->n; i++) mx = fmaxf(mx, fabsf(m.w1->data[i]));
    CHECK(mx <= bound && mx > 0.99f * bound);
    mx = 0.0f;
    for (int i = 0; i < m.b2->n; i++) mx = fmaxf(mx, fabsf(m.b2->data[i]));
    CHECK(mx <= 1.0f / sqrtf(512.0f) && mx > 0.5f / sqrtf(512.0f));
    mlp_free(&m);
}

/* A checkpoint of another kind, or with a broken mlp config, is refused
 * with a message that names the file. */
TEST(mlp_load_rejects_bad_config)
{
    static const char *path = "build/tests/test_mlp_bad.safetensors";
    static const char *vocab = "[\"<pad>\",\"<SOS>\",\"<EOS>\",\"a\",\"b\"]";
    const struct { const char *kind, *config; err_code e; } cases[] = {
        { "rnn", "{\"vocab_size\":5,\"d_model\":2,\"d_hidden\":3,\"n_context\":2}", ERR_MISMATCH },
        { MLP_KIND, "{\"vocab_size\":5}", ERR_FORMAT },
        { MLP_KIND, "{\"vocab_size\":6,\"d_model\":2,\"d_hidden\":3,\"n_context\":2}", ERR_FORMAT },
        { MLP_KIND, "{\"vocab_size\":5,\"d_model\":0,\"d_hidden\":3,\"n_context\":2}", ERR_FORMAT },
        { MLP_KIND, "{\"vocab_size\":5,\"d_model\":2,\"d_hidden\":3,\"n_context\":2}", ERR_FORMAT },
    };   /* the last: no tensors */
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ck_writer *w = ck_writer_new();
        CHECK(w && !ck_put_meta(w, "format", CK_FORMAT) &&
              !ck_put_meta(w, "format_version", CK_FORMAT_VERSION) &&
              !ck_put_meta(w, "model", cases[i].kind) && !ck_put_meta(w, "vocab", vocab) &&
              !ck_put_meta(w, "config", cases[i].config) && !ck_write(w, path));
        ck_writer_free(w);
        ck_file f;
        CHECK(ck_read(path, &f) == ERR_OK);
        mlp_model m;
        CHECK(mlp_load(&m, &f, path, false) == cases[i].e);
        CHECK(strstr(err_msg(), path) != NULL);
        ck_free(&f);
    }
    remove(path);
}

/* mlp_save writes the model alone, as a file mdl_load reads back whole. */
TEST(mlp_save_round_trip_through_registry)
{
    static const char *path = "build/tests/test_mlp_save.safetensors";
    fixture fx;
    CHECK(fixture_load(&fx));
    txt_vocab v;
    CHECK(txt_vocab_from_json(&v, ck_meta(&fx.f, "vocab")) == ERR_OK);
    CHECK(mlp_save(&fx.m, &v, path) == ERR_OK);
    mdl g;
    CHECK(mdl_load(&g, path) == ERR_OK);
    const mlp_model *back = g.impl;
    CHECK(g.kind == &mlp_kind && back->p.n == fx.m.p.n &&
          !memcmp(back->p.data, fx.m.p.data, fx.m.p.n * sizeof(float)));
    CHECK(ck_get(&g.file, "optim.m.fc1.weight") == NULL && !ck_meta(&g.file, "step"));
    mdl_free(&g);
    v.size--;   /* a vocabulary that does not fit the model */
    CHECK(mlp_save(&fx.m, &v, path) == ERR_ARG);
    v.size++;
    txt_vocab_free(&v);
    remove(path);
    fixture_free(&fx);
}
