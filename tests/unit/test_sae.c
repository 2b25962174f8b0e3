/* test_sae.c - the sparse autoencoder: config, PyTorch parity, gradients
 * against finite differences (l1 and topk with AuxK), the decoder
 * constraint, activations of names, evaluation, steering, attribution. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd.h"
#include "ops.h"
#include "sae.h"
#include "sampling.h"
#include "test.h"
#include "transformer.h"

#define FIXTURE TEST_DATA("fixtures/sae.safetensors")
#define TF_FIXTURE TEST_DATA("fixtures/transformer.safetensors")

static double max_abs_diff(const float *a, const float *b, size_t n)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d;
    }
    return m;
}

static sae_config tiny(sae_variant v)
{
    return (sae_config){ .d_model = 6, .n_features = 10, .layer = 1, .variant = v,
                         .l1 = v == SAE_L1 ? 0.05f : 0.0f, .k = v == SAE_TOPK ? 3 : 0 };
}

/* Random weights, decoder rows unit-norm, and a b_enc that leaves some
 * features on and some off. */
static sae_model *random_sae(const sae_config *c, uint64_t seed)
{
    sae_model *m = malloc(sizeof *m);
    if (!m || sae_init(m, c)) {
        free(m);
        return NULL;
    }
    rng r;
    rng_seed(&r, seed);
    sae_init_weights(m, &r);
    tn_fill_normal(m->W_enc, &r, 0.0f, 0.5f);
    tn_fill_normal(m->b_enc, &r, 0.1f, 0.3f);
    tn_fill_normal(m->b_dec, &r, 0.0f, 0.3f);
    return m;
}

static void free_sae(sae_model *m)
{
    sae_free(m);
    free(m);
}

static tf_model *load_tf(const char *path)
{
    ck_file f;
    tf_model *m = malloc(sizeof *m);
    if (!m || ck_read(path, &f)) {
        free(m);
        return NULL;
    }
    err_code e = tf_load(m, &f, path, false);
    ck_free(&f);
    if (e) {
        tf_free(m);
        free(m);
        return NULL;
    }
    return m;
}

static void free_tf(tf_model *m)
{
    tf_free(m);
    free(m);
}

/* ---- config --------------------------------------------------------------- */

TEST(config_json_roundtrip)
{
    for (int v = 0; v < 2; v++) {
        sae_config c = tiny((sae_variant)v), back;
        char *json = NULL;
        CHECK(sae_config_to_json(&c, &json) == ERR_OK);
        CHECK(sae_config_from_json(&back, json) == ERR_OK);
        CHECK(memcmp(&c, &back, sizeof c) == 0);
        free(json);
    }
    sae_config c;
    CHECK(sae_config_from_json(&c, "{\"d_model\":64,\"n_features\":256,\"layer\":2,"
                                   "\"variant\":\"l1\",\"l1\":0.0003,\"k\":0}") == ERR_OK);
    CHECK(c.d_model == 64 && c.n_features == 256 && c.layer == 2 && c.variant == SAE_L1);
    CHECK(sae_config_from_json(&c, "{\"d_model\":64,\"n_features\":256,\"layer\":2,"
                                   "\"variant\":\"relu\",\"l1\":0.0003,\"k\":0}") == ERR_FORMAT);
    CHECK(sae_config_from_json(&c, "{\"d_model\":64,\"n_features\":256,\"layer\":2,"
                                   "\"variant\":\"topk\",\"l1\":0,\"k\":300}") == ERR_FORMAT);
    CHECK(sae_config_from_json(&c, "[]") == ERR_FORMAT);
    c = tiny(SAE_L1);
    c.n_features = 0;
    CHECK(sae_config_check(&c) == ERR_ARG);
    CHECK(strstr(err_msg(), "n_features 0") != NULL);
    c = tiny(SAE_TOPK);
    CHECK(sae_aux_k(&c) == 3);
}

/* ---- PyTorch parity --------------------------------------------------------- */

TEST(parity_with_pytorch)
{
    ck_file f;
    sae_model m;
    if (ck_read(FIXTURE, &f) != ERR_OK) {
        test_fail(__FILE__, __LINE__, err_msg());
        return;
    }
    CHECK(sae_load(&m, &f, FIXTURE, false) == ERR_OK);
    CHECK(m.model_file && !strcmp(m.model_file, TF_FIXTURE));
    CHECK(strlen(m.model_hash) == 16);
    const ck_tensor *acts = ck_get(&f, "fixture.acts"), *feat = ck_get(&f, "fixture.features");
    const ck_tensor *recon = ck_get(&f, "fixture.recon"), *loss = ck_get(&f, "fixture.loss");
    CHECK(acts && feat && recon && loss);
    if (!acts || !feat || !recon || !loss) goto out;
    const int N = (int)acts->shape[0], F = m.c.n_features, d = m.c.d_model;
    float *fb = malloc((size_t)N * F * sizeof *fb), *xh = malloc((size_t)N * d * sizeof *xh);
    float *scratch = malloc(sae_scratch_floats(&m.c) * sizeof *scratch);
    sae_encode(&m, acts->data, N, fb, scratch);
    sae_decode(&m, fb, N, xh);
    CHECK(max_abs_diff(fb, feat->data, feat->numel) <= 1e-4);
    CHECK(max_abs_diff(xh, recon->data, recon->numel) <= 1e-4);

    ag_tape t;
    CHECK(ag_init(&t, 1 << 16) == ERR_OK);
    tn_params_zero_grad(&m.p);
    tensor *x = ag_wrap(&t, acts->data, 2, (const int[]){ N, d });
    tensor *l = sae_loss(&m, &t, x, NULL, NULL);
    CHECK_NEAR(l->data[0], ((const float *)loss->data)[0], 1e-5);
    ag_backward(&t, l);
    for (int i = 0; i < m.p.count; i++) {
        char name[TN_NAME_MAX + 16];
        snprintf(name, sizeof name, "fixture.grad.%s", m.p.e[i].name);
        const ck_tensor *g = ck_get(&f, name);
        CHECK(g && g->numel == (size_t)m.p.e[i].t.n);
        if (g && g->numel == (size_t)m.p.e[i].t.n && max_abs_diff(m.p.e[i].t.grad, g->data, g->numel) > 1e-4)
            test_fail(__FILE__, __LINE__, m.p.e[i].name);
    }
    ag_free(&t);
    free(fb);
    free(xh);
    free(scratch);
out:
    sae_free(&m);
    ck_free(&f);
}

/* ---- gradients ---------------------------------------------------------------- */

static double loss_of(sae_model *m, ag_tape *t, float *x, int N, const uint8_t *dead)
{
    ag_reset(t);
    bool grad = t->grad;
    t->grad = false;
    tensor *xt = ag_wrap(t, x, 2, (const int[]){ N, m->c.d_model });
    double v = sae_loss(m, t, xt, dead, NULL)->data[0];
    t->grad = grad;
    return v;
}

/* Every parameter's gradient against central differences.  Entries whose
 * perturbation crosses a ReLU / TopK boundary are skipped (the loss has a
 * kink there): they are detected by comparing the two one-sided slopes. */
static void check_fd(sae_model *m, const uint8_t *dead, uint64_t seed)
{
    const int N = 7, d = m->c.d_model;
    float *x = malloc((size_t)N * d * sizeof *x);
    rng r;
    rng_seed(&r, seed);
    for (int i = 0; i < N * d; i++) x[i] = rng_normal(&r);
    ag_tape t;
    CHECK(ag_init(&t, 1 << 16) == ERR_OK);
    tn_params_zero_grad(&m->p);
    tensor *xt = ag_wrap(&t, x, 2, (const int[]){ N, d });
    tensor *l = sae_loss(m, &t, xt, dead, NULL);
    ag_backward(&t, l);
    float *grad = malloc(m->p.n * sizeof *grad);
    memcpy(grad, m->p.grad, m->p.n * sizeof *grad);
    const float h = 1e-3f;
    int checked = 0;
    for (int p = 0; p < m->p.count; p++) {
        tensor *w = &m->p.e[p].t;
        for (int i = 0; i < w->n; i++) {
            float keep = w->data[i];
            double l0 = loss_of(m, &t, x, N, dead);
            w->data[i] = keep + h;
            double lp = loss_of(m, &t, x, N, dead);
            w->data[i] = keep - h;
            double lm = loss_of(m, &t, x, N, dead);
            w->data[i] = keep;
            double up = (lp - l0) / h, down = (l0 - lm) / h;
            if (fabs(up - down) > 1e-2 * (1 + fabs(up))) continue;   /* a kink */
            double fd = (lp - lm) / (2 * h), an = grad[w->data - m->p.data + i];
            if (fabs(fd - an) > 2e-3 * (1 + fabs(fd))) {
                char msg[160];
                snprintf(msg, sizeof msg, "%s[%d]: analytic %g, finite differences %g",
                         m->p.e[p].name, i, an, fd);
                test_fail(__FILE__, __LINE__, msg);
                goto out;
            }
            checked++;
        }
    }
    CHECK(checked > (int)m->p.n / 2);
out:
    ag_free(&t);
    free(grad);
    free(x);
}

TEST(l1_gradients_match_finite_differences)
{
    sae_config c = tiny(SAE_L1);
    sae_model *m = random_sae(&c, 5);
    check_fd(m, NULL, 11);
    free_sae(m);
}

TEST(topk_gradients_match_finite_differences)
{
    sae_config c = tiny(SAE_TOPK);
    sae_model *m = random_sae(&c, 6);
    check_fd(m, NULL, 12);
    free_sae(m);
}

/* AuxK by hand: e0 = x - x^ (a constant), z = ReLU of the k_aux largest
 * pre-activations among the dead features, aux = mean_rows |e0 - z W_dec|^2. */
static double aux_by_hand(const sae_model *m, const float *x, int N, const float *e0,
                          const uint8_t *dead)
{
    const int d = m->c.d_model, F = m->c.n_features, k = sae_aux_k(&m->c);
    double total = 0;
    for (int r = 0; r < N; r++) {
        double pre[16], z[16] = { 0 }, eh[16] = { 0 };
        bool taken[16] = { false };
        for (int i = 0; i < F; i++) {
            pre[i] = m->b_enc->data[i];
            for (int j = 0; j < d; j++)
                pre[i] += ((double)x[r * d + j] - m->b_dec->data[j]) * m->W_enc->data[j * F + i];
        }
        for (int n = 0; n < k; n++) {   /* the k largest dead ones, one at a time */
            int best = -1;
            for (int i = 0; i < F; i++)
                if (dead[i] && !taken[i] && (best < 0 || pre[i] > pre[best])) best = i;
            if (best < 0) break;
            taken[best] = true;
            z[best] = pre[best] > 0 ? pre[best] : 0;
        }
        for (int i = 0; i < F; i++)
            for (int j = 0; j < d; j++) eh[j] += z[i] * m->W_dec->data[i * d + j];
        for (int j = 0; j < d; j++) total += (e0[r * d + j] - eh[j]) * (e0[r * d + j] - eh[j]);
    }
    return total / N;
}

/* The AuxK part of the gradient (with dead features minus without) against
 * central differences of the auxiliary loss with the residual error fixed. */
TEST(auxk_gradients_match_finite_differences)
{
    sae_config c = tiny(SAE_TOPK);
    sae_model *m = random_sae(&c, 6);
    const int N = 5, d = c.d_model;
    uint8_t dead[10] = { 0, 1, 0, 1, 1, 0, 0, 1, 0, 1 };
    float x[5 * 6], e0[5 * 6], scratch[20], f[5 * 10], xh[5 * 6];
    rng r;
    rng_seed(&r, 14);
    for (int i = 0; i < N * d; i++) x[i] = rng_normal(&r);
    sae_encode(m, x, N, f, scratch);
    sae_decode(m, f, N, xh);
    for (int i = 0; i < N * d; i++) e0[i] = x[i] - xh[i];
    ag_tape t;
    CHECK(ag_init(&t, 1 << 16) == ERR_OK);
    float *g[2];   /* gradients without and with AuxK */
    double loss[2];
    for (int with = 0; with < 2; with++) {
        ag_reset(&t);
        tn_params_zero_grad(&m->p);
        tensor *l = sae_loss(m, &t, ag_wrap(&t, x, 2, (const int[]){ N, d }), with ? dead : NULL, NULL);
        loss[with] = l->data[0];
        ag_backward(&t, l);
        g[with] = malloc(m->p.n * sizeof(float));
        memcpy(g[with], m->p.grad, m->p.n * sizeof(float));
    }
    CHECK_NEAR(loss[1] - loss[0], SAE_AUX_COEF * aux_by_hand(m, x, N, e0, dead), 1e-5);
    const double h = 1e-3;
    int checked = 0;
    for (int p = 0; p < m->p.count; p++) {
        tensor *w = &m->p.e[p].t;
        for (int i = 0; i < w->n; i++) {
            float keep = w->data[i];
            size_t at = (size_t)(w->data - m->p.data) + (size_t)i;
            double a0 = aux_by_hand(m, x, N, e0, dead);
            w->data[i] = (float)(keep + h);
            double ap = aux_by_hand(m, x, N, e0, dead);
            w->data[i] = (float)(keep - h);
            double am = aux_by_hand(m, x, N, e0, dead);
            w->data[i] = keep;
            if (fabs((ap - a0) - (a0 - am)) > 1e-2 * (1e-3 + fabs(ap - a0))) continue;   /* a kink */
            double fd = SAE_AUX_COEF * (ap - am) / (2 * h), an = g[1][at] - g[0][at];
            if (fabs(fd - an) > 1e-3 * (1 + fabs(fd))) {
                char msg[160];
                snprintf(msg, sizeof msg, "%s[%d]: analytic %g, finite differences %g",
                         m->p.e[p].name, i, an, fd);
                test_fail(__FILE__, __LINE__, msg);
                p = m->p.count;
                break;
            }
            checked += fd != 0;
        }
    }
    CHECK(checked > 20);
    free(g[0]);
    free(g[1]);
    ag_free(&t);
    free_sae(m);
}

TEST(topk_keeps_at_most_k)
{
    sae_config c = tiny(SAE_TOPK);
    sae_model *m = random_sae(&c, 7);
    tn_fill(m->b_enc, 5.0f);   /* every pre-activation positive */
    float x[6] = { 0.3f, -1, 2, 0.5f, 0, 1 }, f[10], scratch[20];
    sae_encode(m, x, 1, f, scratch);
    int on = 0;
    for (int i = 0; i < 10; i++) on += f[i] > 0;
    CHECK(on == 3);
    /* ties at the threshold: the lowest indices win */
    memset(m->W_enc->data, 0, (size_t)m->W_enc->n * sizeof(float));
    sae_encode(m, x, 1, f, scratch);
    CHECK(f[0] == 5.0f && f[1] == 5.0f && f[2] == 5.0f && f[3] == 0.0f && f[9] == 0.0f);
    free_sae(m);
}

/* ---- decoder constraint ------------------------------------------------------ */

TEST(decoder_projection_and_renormalisation)
{
    sae_config c = tiny(SAE_L1);
    sae_model *m = random_sae(&c, 8);
    const int d = c.d_model;
    rng r;
    rng_seed(&r, 9);
    for (size_t i = 0; i < m->p.n; i++) m->p.grad[i] = rng_normal(&r);
    float g0[6];
    memcpy(g0, m->W_dec->grad, sizeof g0);
    sae_project_decoder_grad(m);
    for (int i = 0; i < c.n_features; i++) {
        const float *g = m->W_dec->grad + i * d, *w = m->W_dec->data + i * d;
        double along = 0, norm = 0;
        for (int j = 0; j < d; j++) {
            along += (double)g[j] * w[j];
            norm += (double)w[j] * w[j];
        }
        CHECK_NEAR(along, 0.0, 1e-5);
        CHECK_NEAR(norm, 1.0, 1e-5);
    }
    /* the perpendicular part is left as it was: g - g0 is along w */
    double a = 0;
    for (int j = 0; j < d; j++) a += (double)g0[j] * m->W_dec->data[j];
    for (int j = 0; j < d; j++) CHECK_NEAR(m->W_dec->grad[j], g0[j] - a * m->W_dec->data[j], 1e-5);
    /* a step off the sphere, then back to unit rows, directions kept */
    for (int i = 0; i < m->W_dec->n; i++) m->W_dec->data[i] *= 1.0f + 0.1f * (float)(i % 3);
    float w0[6];
    memcpy(w0, m->W_dec->data, sizeof w0);
    sae_normalize_decoder(m);
    double n0 = 0;
    for (int j = 0; j < d; j++) n0 += (double)w0[j] * w0[j];
    for (int j = 0; j < d; j++) CHECK_NEAR(m->W_dec->data[j], w0[j] / sqrt(n0), 1e-6);
    free_sae(m);
}

/* ---- activations, evaluation ------------------------------------------------- */

/* Three names of the fixture's vocabulary (tokens >= 3), of lengths 3, 5, 2. */
static ds_names three_names(void)
{
    static int tok[] = { 6, 7, 8, 10, 11, 12, 13, 14, 20, 21 };
    static size_t start[] = { 0, 3, 8, 10 };
    return (ds_names){ .tok = tok, .start = start, .n = 3, .max_len = 5 };
}

TEST(activations_of_names_match_residual)
{
    tf_model *tf = load_tf(TF_FIXTURE);
    CHECK(tf != NULL);
    if (!tf) return;
    ds_names names = three_names();
    sae_acts a;
    CHECK(sae_acts_compute(&a, tf, &names, 1) == ERR_OK);
    CHECK(a.n_rows == 13 && a.row[1] == 4 && a.row[2] == 10 && a.row[3] == 13);
    ag_tape t;
    CHECK(ag_init(&t, 1 << 16) == ERR_OK);
    t.grad = false;
    int x[6] = { TOK_SOS, 10, 11, 12, 13, 14 };
    tensor *h = tf_residual(tf, &t, x, 1, 6, 1);
    CHECK(max_abs_diff(a.x + a.row[1] * a.d, h->data, 6 * (size_t)a.d) <= 1e-5);
    float mean[16];
    sae_acts_mean(&a, mean);
    double m0 = 0;
    for (size_t r = 0; r < a.n_rows; r++) m0 += a.x[r * a.d];
    CHECK_NEAR(mean[0], m0 / 13, 1e-5);
    ag_free(&t);
    sae_acts_free(&a);
    free_tf(tf);
}

/* An SAE that reconstructs exactly: F = d, identity encoder and decoder,
 * b_dec = -c so that every pre-activation x + c is positive. */
TEST(evaluation_of_a_perfect_sae)
{
    tf_model *tf = load_tf(TF_FIXTURE);
    CHECK(tf != NULL);
    if (!tf) return;
    const int d = tf_d_model(tf);
    sae_config c = { .d_model = d, .n_features = d, .layer = 1, .variant = SAE_L1, .l1 = 0 };
    sae_model m;
    CHECK(sae_init(&m, &c) == ERR_OK);
    for (int i = 0; i < d; i++) {
        m.W_enc->data[i * d + i] = 1.0f;
        m.W_dec->data[i * d + i] = 1.0f;
        m.b_dec->data[i] = -100.0f;
    }
    ds_names names = three_names();
    sae_stats s;
    double freq[64];
    CHECK(sae_evaluate(&m, tf, &names, 2, &s, freq) == ERR_OK);
    CHECK(s.n_rows == 13);
    CHECK_NEAR(s.l0, d, 1e-9);
    CHECK_NEAR(s.explained_var, 1.0, 1e-4);
    CHECK(s.mse < 1e-8);
    CHECK_NEAR(s.ce_sae, s.ce_clean, 1e-4);
    CHECK_NEAR(s.ce_score, 1.0, 1e-3);
    CHECK(isfinite(s.ce_zero) && s.ce_zero != s.ce_clean);   /* random weights: either side */
    CHECK(s.n_dead == 0 && s.n_dense == d && s.dense_frac == 1.0);
    CHECK(freq[0] == 1.0);
    /* one feature switched off: dead, and the reconstruction suffers */
    m.b_enc->data[3] = -1000.0f;
    CHECK(sae_evaluate(&m, tf, &names, 64, &s, freq) == ERR_OK);
    CHECK(s.n_dead == 1 && freq[3] == 0.0 && s.explained_var < 1.0);
    int hist[SAE_HIST_BINS];
    sae_freq_histogram(freq, d, hist);
    CHECK(hist[0] == 1 && hist[SAE_HIST_BINS - 1] == d - 1);
    double lo, hi;
    sae_hist_bounds(SAE_HIST_BINS - 1, &lo, &hi);
    CHECK(lo == -0.5 && hi == 0.0);
    /* a name too long for the transformer is an error, not a crash */
    static int tok[20];
    static size_t start[] = { 0, 20 };
    ds_names longer = { .tok = tok, .start = start, .n = 1, .max_len = 20 };
    for (int i = 0; i < 20; i++) tok[i] = 6;
    CHECK(sae_evaluate(&m, tf, &longer, 4, &s, NULL) == ERR_ARG);
    sae_free(&m);
    free_tf(tf);
}

/* ---- pairing ------------------------------------------------------------------ */

TEST(pair_check)
{
    tf_model *tf = load_tf(TF_FIXTURE);
    sae_model s;
    CHECK(tf && sae_read(&s, FIXTURE) == ERR_OK);
    if (!tf) return;
    CHECK(sae_check_pair(&s, FIXTURE, tf, TF_FIXTURE) == ERR_OK);
    CHECK(sae_check_pair(&s, FIXTURE, tf, TEST_DATA("fixtures/mlp.safetensors")) == ERR_MISMATCH);
    CHECK(strstr(err_msg(), "trained on another model") != NULL);
    s.c.d_model = 8;
    CHECK(sae_check_pair(&s, FIXTURE, tf, TF_FIXTURE) == ERR_MISMATCH);
    sae_free(&s);
    CHECK(sae_read(&s, TF_FIXTURE) == ERR_MISMATCH);   /* not an SAE: nothing to free */
    free_tf(tf);
}

/* sae_save writes the SAE alone, with its Transformer's name and hash: it
 * reads back whole and still pairs with that Transformer. */
TEST(save_round_trip)
{
    static const char *path = "build/tests/test_sae_save.safetensors";
    tf_model *tf = load_tf(TF_FIXTURE);
    ck_file f;
    sae_model s, back;
    txt_vocab v;
    CHECK(tf && sae_read(&s, FIXTURE) == ERR_OK && ck_read(FIXTURE, &f) == ERR_OK);
    if (!tf) return;
    CHECK(txt_vocab_from_json(&v, ck_meta(&f, "vocab")) == ERR_OK);
    CHECK(sae_save(&s, &v, path) == ERR_OK);
    CHECK(sae_read(&back, path) == ERR_OK);
    CHECK(back.p.n == s.p.n && !memcmp(back.p.data, s.p.data, s.p.n * sizeof(float)));
    CHECK(!memcmp(&back.c, &s.c, sizeof s.c) && !strcmp(back.model_hash, s.model_hash));
    CHECK(sae_check_pair(&back, path, tf, TF_FIXTURE) == ERR_OK);
    sae_free(&back);
    sae_free(&s);
    txt_vocab_free(&v);
    ck_free(&f);
    free_tf(tf);
    remove(path);
}

/* ---- steering -------------------------------------------------------------------- */

TEST(steer_hook_edits)
{
    sae_config c = tiny(SAE_L1);
    sae_model *m = random_sae(&c, 13);
    float x[6] = { 0.3f, -1, 2, 0.5f, 0, 1 }, y[6], f[10], scratch[20];
    sae_steerer st;
    CHECK(sae_steerer_init(&st, m, NULL, 0) == ERR_OK);
    memcpy(y, x, sizeof x);
    sae_steer_hook(&st, 1, 0, y, 6);
    CHECK(memcmp(x, y, sizeof x) == 0);   /* no edit: bit for bit */
    sae_steerer_free(&st);

    sae_encode(m, x, 1, f, scratch);
    sae_edit ed[2] = { { .feature = 2, .value = 1.5f, .clamp = false },
                       { .feature = 4, .value = 3.0f, .clamp = true } };
    CHECK(sae_steerer_init(&st, m, ed, 2) == ERR_OK);
    memcpy(y, x, sizeof x);
    sae_steer_hook(&st, 1, 0, y, 6);
    for (int j = 0; j < 6; j++)
        CHECK_NEAR(y[j], x[j] + 1.5f * m->W_dec->data[2 * 6 + j] + (3.0f - f[4]) * m->W_dec->data[4 * 6 + j], 1e-5);
    sae_steerer_free(&st);
    ed[0].feature = 10;
    CHECK(sae_steerer_init(&st, m, ed, 1) == ERR_ARG);
    free_sae(m);
}

/* ---- attribution ------------------------------------------------------------------- */

static void check_attribution(int layer)
{
    tf_model *tf = load_tf(TF_FIXTURE);
    CHECK(tf != NULL);
    if (!tf) return;
    sae_config c = { .d_model = tf_d_model(tf), .n_features = 24, .layer = layer,
                     .variant = SAE_L1, .l1 = 0.01f };
    sae_model *s = random_sae(&c, 21);
    const int name[5] = { 10, 11, 12, 13, 14 };
    for (int pos = 0; pos <= 5; pos++) {
        sae_attribution a;
        CHECK(sae_attribute(s, tf, name, 5, pos, -1, &a) == ERR_OK);
        CHECK(a.target == a.predicted && a.exact == (layer == tf_n_layers(tf)));
        double sum = 0;
        for (int i = 0; i < a.n_parts; i++) sum += a.part[i].dla;
        CHECK_NEAR(sum, a.logit, 1e-4);
        /* the parts' vectors add up to the residual: so do their act_grad */
        CHECK(a.n_parts >= 2 + !a.exact);
        for (int i = 1; i < a.n_parts; i++)
            if (a.part[i].kind == SAE_PART_FEATURE) CHECK(fabs(a.part[i].dla) <= fabs(a.part[i - 1].dla));
        sae_attribution_free(&a);
    }
    sae_attribution a;
    CHECK(sae_attribute(s, tf, name, 5, 6, -1, &a) == ERR_ARG);
    CHECK(strstr(err_msg(), "past the end") != NULL);
    /* a given target */
    CHECK(sae_attribute(s, tf, name, 5, 2, TOK_EOS, &a) == ERR_OK);
    CHECK(a.target == TOK_EOS);
    sae_attribution_free(&a);
    free_sae(s);
    free_tf(tf);
}

TEST(attribution_sums_to_the_logit_final_layer) { check_attribution(2); }
TEST(attribution_sums_to_the_logit_middle_layer) { check_attribution(1); }

/* At the final layer, ablating a part and recomputing by hand agree. */
TEST(attribution_ablation_matches_logit_lens)
{
    tf_model *tf = load_tf(TF_FIXTURE);
    if (!tf) return;
    const int d = tf_d_model(tf), V = tf_vocab_size(tf);
    sae_config c = { .d_model = d, .n_features = 24, .layer = 2, .variant = SAE_L1, .l1 = 0.01f };
    sae_model *s = random_sae(&c, 22);
    const int name[3] = { 10, 11, 12 }, x[3] = { TOK_SOS, 10, 11 };
    sae_attribution a;
    CHECK(sae_attribute(s, tf, name, 3, 2, -1, &a) == ERR_OK);
    ag_tape t;
    CHECK(ag_init(&t, 1 << 16) == ERR_OK);
    t.grad = false;
    tensor *h = tf_residual(tf, &t, x, 1, 3, 2);
    float *r = h->data + 2 * d, logits[64], before, after;
    tf_unembed(tf, r, logits);
    smp_log_softmax(logits, V, logits);
    before = logits[a.target];
    const sae_part *bias = NULL;
    for (int i = 0; i < a.n_parts; i++)
        if (a.part[i].kind == SAE_PART_BIAS) bias = &a.part[i];
    CHECK(bias != NULL);
    for (int j = 0; j < d; j++) r[j] -= s->b_dec->data[j];
    tf_unembed(tf, r, logits);
    smp_log_softmax(logits, V, logits);
    after = logits[a.target];
    if (bias) CHECK_NEAR(bias->ablation, after - before, 1e-4);
    ag_free(&t);
    sae_attribution_free(&a);
    free_sae(s);
    free_tf(tf);
}

/* The SAE imported from PyTorch, on the activations of the imported
 * Transformer: the mean L1 loss PyTorch computed (import_expected.tsv). */
TEST(imported_pair_loss_matches_pytorch)
{
    const char *tf_path = TEST_DATA("fixtures/import_transformer.safetensors");
    tf_model *tf = load_tf(tf_path);
    sae_model s;
    CHECK(tf && sae_read(&s, TEST_DATA("fixtures/import_sae.safetensors")) == ERR_OK);
    if (!tf) return;
    ck_file f;
    txt_vocab v;
    txt_lines lines;
    ds_names names;
    sae_acts a;
    CHECK(ck_read(tf_path, &f) == ERR_OK && txt_vocab_from_json(&v, ck_meta(&f, "vocab")) == ERR_OK);
    CHECK(txt_read_lines(TEST_DATA("fixtures/import_names.txt"), &lines) == ERR_OK);
    CHECK(ds_from_lines(&names, &lines, &v) == ERR_OK && names.n == 50);
    CHECK(sae_acts_compute(&a, tf, &names, s.c.layer) == ERR_OK);
    s.c.l1 = 0.0003f;   /* the fixture's IMPORT_L1 */
    ag_tape t;
    CHECK(ag_init(&t, 1 << 16) == ERR_OK);
    t.grad = false;
    tensor *l = sae_loss(&s, &t, ag_wrap(&t, a.x, 2, (const int[]){ (int)a.n_rows, a.d }), NULL, NULL);
    CHECK(a.n_rows == 713);   /* a row per target: <SOS> and each character */
    CHECK_NEAR(l->data[0], 0.2052180, 1e-5);
    ag_free(&t);
    sae_acts_free(&a);
    ds_free(&names);
    txt_lines_free(&lines);
    txt_vocab_free(&v);
    ck_free(&f);
    sae_free(&s);
    free_tf(tf);
}
