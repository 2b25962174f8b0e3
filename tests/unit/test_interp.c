/* test_interp.c - explore's analyses against brute force: rankings, the
 * top names and frequencies of neurons and SAE features, PCA on points
 * with known principal axes, cosine neighbours, a feature's logits, and
 * the logit lens (at the last layer: the model's own logits). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd.h"
#include "interp.h"
#include "kinds.h"
#include "rng.h"
#include "test.h"

#define TF_FIXTURE TEST_DATA("fixtures/transformer.safetensors")

TEST(rank_descending_ties_lower_index_first)
{
    const double v[] = { 0.5, 2.0, -1.0, 2.0, 0.5, 3.0 };
    int order[6];
    CHECK(ip_rank(v, 6, order) == ERR_OK);
    const int want[] = { 5, 1, 3, 0, 4, 2 };
    CHECK(!memcmp(order, want, sizeof want));
}

/* ---- the scan ---------------------------------------------------------------- */

enum { N_NAMES = 40, D = 6 };

/* Residual rows of N_NAMES names of 1 to 9 letters (row 0 of each = <SOS>),
 * values on a coarse grid so that maxima tie across names. */
static sae_acts random_acts(uint64_t seed)
{
    rng r;
    rng_seed(&r, seed);
    sae_acts a = { .n_names = N_NAMES, .d = D, .row = malloc((N_NAMES + 1) * sizeof(size_t)) };
    a.row[0] = 0;
    for (size_t i = 0; i < N_NAMES; i++) a.row[i + 1] = a.row[i] + 2 + rng_below(&r, 9);
    a.n_rows = a.row[N_NAMES];
    a.x = malloc(a.n_rows * D * sizeof *a.x);
    for (size_t k = 0; k < a.n_rows * D; k++) a.x[k] = (float)((int)rng_below(&r, 9) - 4) / 4.0f;
    return a;
}

/* Unit activations (rows of name nm, U) computed for that name alone. */
static float *units_of_name(const sae_acts *a, const sae_model *s, size_t nm)
{
    int rows = (int)(a->row[nm + 1] - a->row[nm]), U = s ? s->c.n_features : a->d;
    float *out = malloc((size_t)rows * U * sizeof *out);
    if (!s) {
        memcpy(out, a->x + a->row[nm] * a->d, (size_t)rows * U * sizeof *out);
        return out;
    }
    float *scratch = malloc(sae_scratch_floats(&s->c) * sizeof *scratch);
    sae_encode(s, a->x + a->row[nm] * a->d, rows, out, scratch);
    free(scratch);
    return out;
}

/* The scan against brute force: every unit's frequency; every listed
 * unit's names ranked by their maximum (ties: lower name first), with the
 * letters' activations. */
static void check_scan(const sae_acts *a, const sae_model *s, int K, int only, bool positive_only)
{
    ip_scan sc;
    CHECK(ip_scan_units(&sc, a, s, K, only, positive_only) == ERR_OK);
    const int U = s ? s->c.n_features : a->d;
    CHECK(sc.U == U && sc.positions == a->n_rows - a->n_names);
    float mx[N_NAMES][64];
    size_t active[64] = { 0 };
    for (size_t nm = 0; nm < a->n_names; nm++) {
        float *act = units_of_name(a, s, nm);
        for (int u = 0; u < U; u++) mx[nm][u] = -INFINITY;
        for (size_t p = 1; p < a->row[nm + 1] - a->row[nm]; p++)
            for (int u = 0; u < U; u++) {
                mx[nm][u] = fmaxf(mx[nm][u], act[p * U + u]);
                active[u] += act[p * U + u] > 0.0f;
            }
        free(act);
    }
    for (int u = 0; u < U; u++) {
        CHECK_NEAR(ip_freq(&sc, u), (double)active[u] / (double)sc.positions, 1e-12);
        if (only >= 0 && u != only) {
            CHECK(ip_top_count(&sc, u) == 0);
            continue;
        }
        int eligible = 0;
        for (size_t nm = 0; nm < a->n_names; nm++) eligible += !positive_only || mx[nm][u] > 0.0f;
        CHECK(ip_top_count(&sc, u) == (eligible < K ? eligible : K));
        for (int k = 0; k < ip_top_count(&sc, u); k++) {
            size_t nm = ip_top_name(&sc, u, k);
            CHECK_NEAR(ip_top_score(&sc, u, k), mx[nm][u], 1e-5);
            int above = 0;   /* names ranking above nm */
            for (size_t q = 0; q < a->n_names; q++)
                above += mx[q][u] > mx[nm][u] || (mx[q][u] == mx[nm][u] && q < nm);
            CHECK(above == k);
            float *act = units_of_name(a, s, nm);
            const float *letters = ip_top_letters(&sc, u, k);
            for (size_t p = 1; p < a->row[nm + 1] - a->row[nm]; p++) CHECK(letters[p - 1] == act[p * U + u]);
            free(act);
        }
    }
    ip_scan_free(&sc);
}

TEST(scan_neurons_against_brute_force)
{
    sae_acts a = random_acts(3);
    check_scan(&a, NULL, 5, -1, false);
    check_scan(&a, NULL, 5, -1, true);
    check_scan(&a, NULL, 3, 4, false);        /* one unit */
    check_scan(&a, NULL, 0, -1, true);        /* frequencies only */
    check_scan(&a, NULL, 1000, -1, false);    /* more than there are names */
    ip_scan sc;
    CHECK(ip_scan_units(&sc, &a, NULL, 5, D, false) == ERR_ARG);
    CHECK(strstr(err_msg(), "neuron 6 out of range") != NULL);
    sae_acts_free(&a);
}

static sae_model *random_sae(sae_variant v, uint64_t seed)
{
    sae_config c = { .d_model = D, .n_features = 12, .layer = 1, .variant = v,
                     .l1 = v == SAE_L1 ? 0.01f : 0.0f, .k = v == SAE_TOPK ? 3 : 0 };
    sae_model *m = malloc(sizeof *m);
    CHECK(sae_init(m, &c) == ERR_OK);
    rng r;
    rng_seed(&r, seed);
    sae_init_weights(m, &r);
    tn_fill_normal(m->b_enc, &r, -0.2f, 0.3f);   /* some features often off */
    return m;
}

TEST(scan_features_against_brute_force)
{
    sae_acts a = random_acts(5);
    for (int v = 0; v < 2; v++) {
        sae_model *s = random_sae((sae_variant)v, 7 + v);
        check_scan(&a, s, 4, -1, true);
        check_scan(&a, s, 2, 11, true);
        ip_scan sc;
        CHECK(ip_scan_units(&sc, &a, s, 4, 12, true) == ERR_ARG);
        CHECK(strstr(err_msg(), "feature 12 out of range") != NULL);
        sae_free(s);
        free(s);
    }
    sae_acts_free(&a);
}

/* ---- embeddings -------------------------------------------------------------- */

TEST(pca_finds_the_known_axes)
{
    enum { N = 30, DD = 5 };
    /* orthonormal axes, each with its largest coordinate positive */
    const double u1[DD] = { 0.8, 0.6, 0, 0, 0 }, u2[DD] = { 0, 0, 0.6, 0, 0.8 };
    /* points on an ellipse: coordinates a along u1, b along u2, with sum a =
     * sum b = sum a b = 0 (a full period), so the sample's axes are u1, u2 */
    float E[N * DD];
    double a[N], b[N];
    for (int i = 0; i < N; i++) {
        a[i] = 3.0 * cos(2 * M_PI * i / N);
        b[i] = sin(2 * M_PI * i / N);
        for (int j = 0; j < DD; j++) E[i * DD + j] = (float)(a[i] * u1[j] + b[i] * u2[j] + 0.5 * j);
    }
    double xy[2 * N];
    CHECK(ip_pca2(E, N, DD, xy) == ERR_OK);
    for (int i = 0; i < N; i++) {
        CHECK_NEAR(xy[2 * i], a[i], 1e-5);
        CHECK_NEAR(xy[2 * i + 1], b[i], 1e-5);
    }
}

TEST(cosine_neighbours_against_brute_force)
{
    enum { N = 9, DD = 4, K = 4 };
    float E[N * DD];
    rng r;
    rng_seed(&r, 13);
    for (int i = 0; i < N * DD; i++) E[i] = rng_normal(&r);
    memset(E + 3 * DD, 0, DD * sizeof *E);               /* a zero row: cosine 0 */
    memcpy(E + 7 * DD, E + 1 * DD, DD * sizeof *E);      /* a duplicate: cosine 1 */
    int nb[N * K];
    float cs[N * K];
    CHECK(ip_cosine_neighbours(E, N, DD, K, nb, cs) == ERR_OK);
    for (int i = 0; i < N; i++) {
        double c[N];
        for (int q = 0; q < N; q++) {
            double s = 0, ni = 0, nq = 0;
            for (int j = 0; j < DD; j++) {
                s += (double)E[i * DD + j] * E[q * DD + j];
                ni += (double)E[i * DD + j] * E[i * DD + j];
                nq += (double)E[q * DD + j] * E[q * DD + j];
            }
            c[q] = ni > 0 && nq > 0 ? s / sqrt(ni * nq) : 0.0;
        }
        for (int k = 0; k < K; k++) {
            int q = nb[i * K + k], above = 0;
            CHECK(q != i);
            CHECK_NEAR(cs[i * K + k], c[q], 1e-6);
            for (int p = 0; p < N; p++) above += p != i && (c[p] > c[q] + 1e-6 || (fabs(c[p] - c[q]) <= 1e-6 && p < q));
            CHECK(above == k);
        }
    }
    CHECK(nb[1 * K] == 7 && nb[7 * K] == 1);
    CHECK_NEAR(cs[1 * K], 1.0, 1e-6);
    CHECK(cs[3 * K] == 0.0f);
    CHECK(ip_cosine_neighbours(E, N, DD, N, nb, cs) == ERR_ARG);   /* only N - 1 others */
}

/* ---- the Transformer: a feature's logits and the logit lens ------------------- */

TEST(feature_logits_ranked)
{
    mdl lm;
    CHECK(mdl_load(&lm, TF_FIXTURE) == ERR_OK);
    const tf_model *tf = tf_of_mdl(&lm);
    sae_config c = { .d_model = tf_d_model(tf), .n_features = 8, .layer = tf_n_layers(tf),
                     .variant = SAE_L1, .l1 = 0.01f };
    sae_model s;
    CHECK(sae_init(&s, &c) == ERR_OK);
    rng r;
    rng_seed(&r, 17);
    sae_init_weights(&s, &r);
    const int V = tf_vocab_size(tf);
    float *logit = malloc((size_t)V * sizeof *logit), *want = malloc((size_t)V * sizeof *want);
    int *order = malloc((size_t)V * sizeof *order), n = 0;
    CHECK(ip_feature_logits(&s, tf, 5, logit, order, &n) == ERR_OK);
    sae_feature_logits(&s, tf, 5, want);
    CHECK(n == V - TOK_EOS);
    for (int k = 0; k < n; k++) {
        CHECK(order[k] >= TOK_EOS && logit[order[k]] == want[order[k]]);
        if (k) CHECK(logit[order[k - 1]] >= logit[order[k]]);
    }
    CHECK(ip_feature_logits(&s, tf, 8, logit, order, &n) == ERR_ARG);
    free(logit);
    free(want);
    free(order);
    sae_free(&s);
    mdl_free(&lm);
}

TEST(logit_lens_last_layer_is_the_models_prediction)
{
    mdl lm;
    CHECK(mdl_load(&lm, TF_FIXTURE) == ERR_OK);
    const tf_model *tf = tf_of_mdl(&lm);
    const int V = tf_vocab_size(tf), NL = tf_n_layers(tf), n = 4, tok[] = { 5, 9, 6, 12 };
    ip_lens l;
    CHECK(ip_logit_lens(&l, tf, tok, n, 1000) == ERR_OK);   /* K cut to the predictable tokens */
    CHECK(l.n_layers == NL && l.T == n + 1 && l.K == V - TOK_EOS);
    ag_tape t;
    CHECK(ag_init(&t, 1 << 20) == ERR_OK);
    t.grad = false;
    int x[] = { TOK_SOS, 5, 9, 6, 12 };
    tensor *logits = tf_forward(tf, &t, x, 1, n + 1);
    for (int pos = 0; pos <= n; pos++) {
        const float *z = logits->data + (size_t)pos * V;
        double mx = -INFINITY, sum = 0;
        for (int v = 0; v < V; v++) mx = fmax(mx, z[v]);
        for (int v = 0; v < V; v++) sum += exp(z[v] - mx);
        for (int L = 0; L <= NL; L++) {
            const size_t at = ip_lens_at(&l, L, pos);
            for (int k = 1; k < l.K; k++) CHECK(l.prob[at + k - 1] >= l.prob[at + k]);
        }
        const size_t at = ip_lens_at(&l, NL, pos);
        for (int k = 0; k < l.K; k++) {
            CHECK(l.tok[at + k] >= TOK_EOS);
            CHECK_NEAR(l.prob[at + k], exp(z[l.tok[at + k]] - mx) / sum, 1e-5);
        }
    }
    ag_free(&t);
    ip_lens_free(&l);
    int *long_name = calloc((size_t)tf_max_len(tf), sizeof *long_name);
    for (int i = 0; i < tf_max_len(tf); i++) long_name[i] = 5;
    CHECK(ip_logit_lens(&l, tf, long_name, tf_max_len(tf), 3) == ERR_ARG);
    free(long_name);
    mdl_free(&lm);
}
