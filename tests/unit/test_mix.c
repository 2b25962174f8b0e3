/* test_mix.c - mixtures: EM recovers known weights, a fitted mixture is
 * never worse than its best component on the names it was fitted on (both
 * modes), the loss of a saved mixture under generate's scoring equals the
 * fitted loss, and bad components are refused with one line. */
#include "checkpoint.h"
#include "kinds.h"
#include "mix.h"
#include "ngram.h"
#include "sampling.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Hand-made data: K components over V tokens, n targets (one name each),
 * every component's distribution drawn at random per target. */
static void synthetic(mix_data *d, int K, int V, size_t n, rng *r)
{
    memset(d, 0, sizeof *d);
    d->K = K;
    d->V = V;
    d->n = d->n_names = n;
    d->first = malloc((n + 1) * sizeof *d->first);
    d->where = calloc(n, sizeof *d->where);
    d->target = calloc(n, sizeof *d->target);
    d->logp = malloc(n * K * V * sizeof *d->logp);
    for (size_t i = 0; i <= n; i++) d->first[i] = i;
    for (size_t t = 0; t < n; t++) {
        d->where[t] = (mix_where){ .pos = (int)(t % 15), .evidence = (int)(t % 11) };
        for (int k = 0; k < K; k++) {
            float *lp = d->logp + (t * K + k) * V;
            double z = 0;
            for (int y = 0; y < V; y++) z += lp[y] = (float)exp(3 * rng_uniform(r));
            for (int y = 0; y < V; y++) lp[y] = (float)log(lp[y] / z);
        }
    }
}

/* Targets drawn from the mixture 0.3 p_0 + 0.7 p_1: EM finds those weights. */
TEST(mix_em_recovers_known_weights)
{
    rng r;
    rng_seed(&r, 5);
    mix_data d;
    synthetic(&d, 2, 6, 20000, &r);
    for (size_t t = 0; t < d.n; t++) {
        int k = rng_uniform(&r) < 0.3 ? 0 : 1;
        const float *lp = d.logp + (t * 2 + (size_t)k) * 6;
        double u = rng_uniform(&r), acc = 0;
        int y = 0;
        for (; y < 5 && (acc += exp(lp[y])) < u; y++) {}
        d.target[t] = y;
    }
    mix_config c = { .vocab_size = 6, .n_components = 2, .mode = MIX_LINEAR };
    float w[2];
    CHECK(mix_fit(&d, &c, NULL, 0, w) == ERR_OK);
    CHECK_NEAR(w[0], 0.3, 0.03);
    CHECK_NEAR(w[0] + w[1], 1.0, 1e-5);
    mix_data_free(&d);
}

/* On the names it is fitted on, a mixture is at least as good as its best
 * component, in every mode; cross-fitting never scores a name with weights
 * fitted on it, so it is a little worse than the in-sample fit. */
TEST(mix_never_worse_than_best_component)
{
    rng r;
    rng_seed(&r, 7);
    mix_data d;
    synthetic(&d, 3, 8, 3000, &r);
    for (size_t t = 0; t < d.n; t++) d.target[t] = (int)(rng_uniform(&r) * 3);   /* favours 0..2 */
    uint8_t *side;
    CHECK(mix_halves(d.n_names, 1, &side) == ERR_OK);
    size_t n_half = 0;
    for (size_t i = 0; i < d.n_names; i++) n_half += side[i];
    CHECK(n_half == d.n_names / 2);
    for (int mode = 0; mode < 2; mode++)
        for (int b = 0; b < 3; b++) {
            mix_config c = { .vocab_size = 8, .n_components = 3, .mode = (mix_mode)mode,
                             .buckets = (mix_buckets)b };
            float w[MIX_MAX_BUCKETS * MIX_MAX_COMPONENTS];
            size_t n;
            CHECK(mix_fit(&d, &c, side, 0, w) == ERR_OK);
            double mixed = mix_nll(&d, &c, w, side, 0, &n), best = INFINITY;
            for (int k = 0; k < 3; k++) best = fmin(best, mix_component_nll(&d, k, side, 0, &n));
            CHECK(mixed <= best + 1e-6 * best);
            double cross, fit;
            CHECK(mix_fit(&d, &c, NULL, 0, w) == ERR_OK);
            fit = mix_nll(&d, &c, w, NULL, 0, &n) / (double)n;
            CHECK(mix_crossfit(&d, &c, side, &cross) == ERR_OK);
            CHECK(cross >= fit - 1e-9);
        }
    free(side);
    mix_data_free(&d);
}

/* Sixteen components and forty targets: without the ridge, log-linear
 * weights fit the few targets exactly (large weights, a poor mixture on
 * other names); with it they stay near the best component, and the fit is
 * still no worse than that component. */
TEST(mix_loglinear_sparse_bucket_stays_sane)
{
    rng r;
    rng_seed(&r, 11);
    mix_data d;
    synthetic(&d, MIX_MAX_COMPONENTS, 8, 40, &r);
    for (size_t t = 0; t < d.n; t++) d.target[t] = (int)(rng_uniform(&r) * 8);
    mix_config c = { .vocab_size = 8, .n_components = MIX_MAX_COMPONENTS, .mode = MIX_LOGLINEAR };
    float w[MIX_MAX_COMPONENTS];
    size_t n;
    CHECK(mix_fit(&d, &c, NULL, 0, w) == ERR_OK);
    double norm = 0, best = INFINITY, mean = 0;
    for (int k = 0; k < MIX_MAX_COMPONENTS; k++) {
        norm += (double)w[k] * w[k];
        double nll = mix_component_nll(&d, k, NULL, 0, &n);
        best = fmin(best, nll);
        mean += nll / MIX_MAX_COMPONENTS / (double)n;
    }
    CHECK(norm < 4);
    CHECK(mix_nll(&d, &c, w, NULL, 0, &n) <= best + 1e-6 * best);
    /* on the half it was not fitted on, no worse than a component taken
     * blind, give or take (without the ridge: 0.56 nat worse) */
    uint8_t *side;
    double cross;
    CHECK(mix_halves(d.n_names, 1, &side) == ERR_OK);
    CHECK(mix_crossfit(&d, &c, side, &cross) == ERR_OK);
    CHECK(cross < mean + 0.2);
    free(side);
    mix_data_free(&d);
}

/* A draw from the log-probabilities lp (V). */
static int draw(const float *lp, int V, rng *r)
{
    double u = rng_uniform(r), acc = 0;
    int y = 0;
    for (; y < V - 1 && (acc += exp(lp[y])) < u; y++) {}
    return y;
}

/* Targets drawn from p ∝ p_1 exp(-1.5 [y = <EOS>]): log-linear weights
 * with an <EOS> bias find (0, 1, -1.5), and score better than without. */
TEST(mix_eos_bias_recovers_a_known_bias)
{
    enum { V = 6 };
    rng r;
    rng_seed(&r, 13);
    mix_data d;
    synthetic(&d, 2, V, 20000, &r);
    for (size_t t = 0; t < d.n; t++) {
        float lp[V];
        memcpy(lp, d.logp + (t * 2 + 1) * V, sizeof lp);
        lp[TOK_EOS] -= 1.5f;
        smp_log_softmax(lp, V, lp);
        d.target[t] = draw(lp, V, &r);
    }
    mix_config c = { .vocab_size = V, .n_components = 2, .mode = MIX_LOGLINEAR, .eos_bias = true };
    CHECK(mix_n_weights(&c) == 3);
    float w[3], plain[2];
    CHECK(mix_fit(&d, &c, NULL, 0, w) == ERR_OK);
    CHECK_NEAR(w[0], 0.0, 0.05);
    CHECK_NEAR(w[1], 1.0, 0.05);
    CHECK_NEAR(w[2], -1.5, 0.1);
    size_t n;
    double with = mix_nll(&d, &c, w, NULL, 0, &n);
    c.eos_bias = false;
    CHECK(mix_fit(&d, &c, NULL, 0, plain) == ERR_OK);
    CHECK(with < mix_nll(&d, &c, plain, NULL, 0, &n) - 0.01 * (double)n);
    mix_data_free(&d);
}

/* The config keeps the bias through JSON; older files (no "eos_bias") have
 * none; a bias on linear weights, or one that is not a boolean, is refused. */
TEST(mix_config_eos_bias)
{
    mix_config c = { .vocab_size = 10, .n_components = 2, .mode = MIX_LOGLINEAR,
                     .buckets = MIX_BY_POSITION, .eos_bias = true }, back;
    char *json;
    CHECK(mix_config_to_json(&c, &json) == ERR_OK);
    CHECK(mix_config_from_json(&back, json) == ERR_OK);
    CHECK(back.eos_bias && back.mode == MIX_LOGLINEAR && back.buckets == MIX_BY_POSITION);
    free(json);
    CHECK(mix_config_from_json(&back, "{\"model\":\"mix\",\"vocab_size\":10,\"n_components\":2,"
                                      "\"mode\":\"loglinear\",\"buckets\":\"none\"}") == ERR_OK);
    CHECK(!back.eos_bias);
    CHECK(mix_config_from_json(&back, "{\"model\":\"mix\",\"vocab_size\":10,\"n_components\":2,"
                                      "\"mode\":\"loglinear\",\"buckets\":\"none\",\"eos_bias\":1}")
          == ERR_FORMAT);
    c.mode = MIX_LINEAR;
    CHECK(mix_config_check(&c) == ERR_ARG);
    CHECK(strstr(err_msg(), "log-linear") != NULL);
}

/* A 2-gram and a 4-gram fitted on the test names, saved. */
static void ngram_file(const ds_corpus *c, int order, const char *path)
{
    ng_config cfg = NG_DEFAULTS;
    cfg.vocab_size = c->vocab.size;
    cfg.order = order;
    ng_model *m = NULL;
    CHECK(ng_fit(&m, &cfg, &c->train) == ERR_OK);
    CHECK(m && ng_save(m, &c->vocab, path) == ERR_OK);
    ng_free(m);
}

/* The test names, and a 2-gram and a 4-gram of them saved. */
static void test_corpus(ds_corpus *c)
{
    CHECK(ds_load(c, TEST_DATA("gen_names.txt"), TEST_DATA("gen_val.txt"), 0, 0.1) == ERR_OK);
    ngram_file(c, 2, test_path("a.safetensors"));
    ngram_file(c, 4, test_path("b.safetensors"));
}

static void load_components(mdl comp[2])
{
    CHECK(mdl_load(&comp[0], test_path("a.safetensors")) == ERR_OK);
    CHECK(mdl_load(&comp[1], test_path("b.safetensors")) == ERR_OK);
}

/* Save, load through the model interface, score the validation names as
 * generate --score does: the fitted loss, to 1e-5, in every mode (the last
 * with an <EOS> bias). */
TEST(mix_round_trip_scores_the_fitted_loss)
{
    ds_corpus c;
    test_corpus(&c);
    static const mix_buckets buckets[] = { MIX_BY_EVIDENCE, MIX_BY_POSITION, MIX_BY_KNOWN, MIX_BY_KNOWN };
    for (int trial = 0; trial < 4; trial++) {
        mdl comp[2];
        load_components(comp);
        mix_data d;
        CHECK(mix_data_collect(&d, comp, 2, &c.val) == ERR_OK);
        mix_model m;
        mix_config cfg = { .vocab_size = c.vocab.size, .n_components = 2, .mode = (mix_mode)(trial > 0),
                           .buckets = buckets[trial], .eos_bias = trial == 3 };
        CHECK(mix_init(&m, &cfg, comp) == ERR_OK);
        /* the names scored as known names: every <EOS> is predicted after one */
        if (cfg.buckets == MIX_BY_KNOWN) CHECK(mix_known_attach(&m, &d, &c.val, &c.val) == ERR_OK);
        CHECK(mix_fit(&d, &m.c, NULL, 0, m.w) == ERR_OK);
        size_t n;
        double fitted = mix_nll(&d, &m.c, m.w, NULL, 0, &n) / (double)n;
        CHECK(mix_save(&m, test_path("mix.safetensors")) == ERR_OK);
        mix_free(&m);
        mix_data_free(&d);

        mdl loaded;
        mdl_state st;
        CHECK(mdl_load(&loaded, test_path("mix.safetensors")) == ERR_OK);
        CHECK(mdl_state_new(&st, &loaded) == ERR_OK);
        float scratch[64];
        double nll = 0;
        size_t count = 0;
        for (size_t i = 0; i < c.val.n; i++) {
            int n_pred;
            nll += mdl_score_name(&st, ds_name(&c.val, i), ds_len(&c.val, i), &n_pred, scratch);
            count += (size_t)n_pred;
        }
        CHECK(count == n);
        CHECK_NEAR(nll / (double)count, fitted, 1e-5);
        mdl_state_free(&st);
        mdl_free(&loaded);
    }
    ds_corpus_free(&c);
}

/* Known names: the hash set is sorted and distinct, and a target is marked
 * known exactly when the characters before it spell a known name. */
TEST(mix_known_marks_the_end_of_known_names)
{
    ds_names known = { .tok = (int[]){ 5, 6, 5, 6, 7 }, .start = (size_t[]){ 0, 2, 4, 5 }, .n = 3 };
    ds_names names = { .tok = (int[]){ 5, 6, 7, 8 }, .start = (size_t[]){ 0, 3, 4 }, .n = 2 };
    uint64_t *set;
    size_t n;
    CHECK(mix_known_from_names(&known, &set, &n) == ERR_OK);
    CHECK(n == 2);   /* "ab" twice, "c" */
    CHECK(set[0] < set[1]);
    mix_data d = { .n = 6, .n_names = 2, .first = (size_t[]){ 0, 4, 6 } };
    d.where = calloc(d.n, sizeof *d.where);
    for (int t = 0; t < 6; t++) d.where[t].pos = t < 4 ? t : t - 4;
    mix_data_mark_known(&d, &names, set, n);
    /* "abc": after "", "a", "ab" (known), "abc"; "d": after "", "d" */
    static const int want[6] = { 0, 0, 1, 0, 0, 0 };
    for (int t = 0; t < 6; t++) CHECK(d.where[t].known == want[t]);
    mix_config c = { .buckets = MIX_BY_KNOWN };
    CHECK(mix_n_buckets(&c) == 14);
    CHECK(mix_bucket(&c, d.where[2]) == 2 + MIX_POSITION_BUCKETS);
    CHECK(mix_bucket(&c, d.where[1]) == 1);
    free(d.where);
    free(set);
}

/* A known set that is not sorted, or known buckets without a set, is refused. */
TEST(mix_refuses_a_bad_known_set)
{
    ds_corpus c;
    test_corpus(&c);
    mdl comp[2], loaded;
    load_components(comp);
    mix_config cfg = { .vocab_size = c.vocab.size, .n_components = 2, .mode = MIX_LOGLINEAR,
                       .buckets = MIX_BY_KNOWN };
    mix_model m;
    CHECK(mix_init(&m, &cfg, comp) == ERR_OK);
    CHECK(mix_save(&m, test_path("k.safetensors")) == ERR_ARG);   /* no set */
    m.known = malloc(2 * sizeof *m.known);
    m.known[0] = 9;
    m.known[1] = 3;
    m.n_known = 2;
    CHECK(mix_save(&m, test_path("k.safetensors")) == ERR_OK);
    CHECK(mdl_load(&loaded, test_path("k.safetensors")) == ERR_FORMAT);
    CHECK(strstr(err_msg(), "sorted") != NULL);
    m.known[0] = 3;
    m.known[1] = 9;
    CHECK(mix_save(&m, test_path("k.safetensors")) == ERR_OK);
    CHECK(mdl_load(&loaded, test_path("k.safetensors")) == ERR_OK);
    mdl_free(&loaded);
    mix_free(&m);
    ds_corpus_free(&c);
}

/* Components of other vocabularies, and a file missing a component. */
TEST(mix_refuses_bad_components)
{
    ds_corpus a, b;
    CHECK(ds_load(&a, TEST_DATA("gen_names.txt"), NULL, 0, 0.1) == ERR_OK);
    CHECK(ds_load(&b, TEST_DATA("text_names.txt"), NULL, 0, 0.1) == ERR_OK);
    CHECK(a.vocab.size != b.vocab.size);
    ngram_file(&a, 2, test_path("va.safetensors"));
    ngram_file(&b, 2, test_path("vb.safetensors"));
    mdl comp[2];
    CHECK(mdl_load(&comp[0], test_path("va.safetensors")) == ERR_OK);
    CHECK(mdl_load(&comp[1], test_path("vb.safetensors")) == ERR_OK);
    mix_model m;
    mix_config cfg = { .vocab_size = a.vocab.size, .n_components = 2 };
    CHECK(mix_init(&m, &cfg, comp) == ERR_MISMATCH);
    CHECK(strstr(err_msg(), "component 1 has another vocabulary") != NULL);
    mdl_free(&comp[0]);
    mdl_free(&comp[1]);

    /* a mixture of one component, rewritten to claim two */
    CHECK(mdl_load(&comp[0], test_path("va.safetensors")) == ERR_OK);
    cfg.n_components = 1;
    CHECK(mix_init(&m, &cfg, comp) == ERR_OK);
    CHECK(mix_save(&m, test_path("one.safetensors")) == ERR_OK);
    mix_free(&m);
    ck_file f;
    CHECK(ck_read(test_path("one.safetensors"), &f) == ERR_OK);
    ck_writer *w = ck_writer_new();
    char config[256];
    for (int i = 0; i < f.n_meta; i++) {
        const char *v = f.val[i], *one = strstr(v, "\"n_components\":1");
        if (!strcmp(f.key[i], "config") && one) {   /* 1 -> 2 */
            snprintf(config, sizeof config, "%.*s\"n_components\":2%s", (int)(one - v), v,
                     one + strlen("\"n_components\":1"));
            v = config;
        }
        CHECK(ck_put_meta(w, f.key[i], v) == ERR_OK);
    }
    static const float half[2] = { 0.5f, 0.5f };
    for (int i = 0; i < f.n; i++) {
        const ck_tensor *t = &f.t[i];
        bool weights = !strcmp(t->name, "mix.weights");
        CHECK(ck_put(w, t->name, t->dtype, t->ndim, weights ? (const int64_t[]){ 1, 2 } : t->shape,
                     weights ? half : t->data) == ERR_OK);
    }
    CHECK(ck_write(w, test_path("two.safetensors")) == ERR_OK);
    mdl bad;
    CHECK(mdl_load(&bad, test_path("two.safetensors")) == ERR_FORMAT);
    CHECK(strstr(err_msg(), "component 1 is missing") != NULL);
    ck_free(&f);
    ck_writer_free(w);
    ds_corpus_free(&a);
    ds_corpus_free(&b);
}
