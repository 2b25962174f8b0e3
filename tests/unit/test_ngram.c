/* test_ngram.c - n-gram models: distributions, exact MLE loss, checkpoints,
 * and the model interface (model.h, kinds.h) driven through an n-gram. */
#include "test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "dataset.h"
#include "kinds.h"
#include "ngram.h"
#include "rng.h"

static ds_corpus load_corpus(void)
{
    ds_corpus c;
    err_code e = ds_load(&c, TEST_DATA("gen_names.txt"), TEST_DATA("gen_val.txt"), 0, 0.1);
    CHECK(e == ERR_OK);
    if (e) fprintf(stderr, "  %s\n", err_msg());
    return c;
}

static ng_model *fit(const ds_corpus *c, int order, ng_smoothing s, double discount)
{
    ng_config cfg = { .vocab_size = c->vocab.size, .order = order, .smoothing = s, .k = 0.5,
                      .discount = discount };
    ng_model *m = NULL;
    err_code e = ng_fit(&m, &cfg, &c->train);
    CHECK(e == ERR_OK && m);
    if (e) fprintf(stderr, "  %s\n", err_msg());
    return m;
}

static void temp_path(char *out, size_t cap, const char *what)
{
    const char *dir = getenv("TMPDIR");
    snprintf(out, cap, "%s/villes-test-%s-%d.safetensors", dir && *dir ? dir : "/tmp", what,
             (int)getpid());
}

/* ---- every context is a distribution ---------------------------------- */

/* Check one context: the probabilities sum to 1, <pad> and <SOS> get 0, and
 * ng_prob agrees with ng_dist.  Returns 1 when the context was fine. */
static int check_context(const ng_model *m, const int *ctx, int V)
{
    double p[256], sum = 0;
    ng_dist(m, ctx, p);
    int ok = p[TOK_PAD] == 0 && p[TOK_SOS] == 0;
    for (int w = 0; w < V; w++) {
        ok &= p[w] >= 0 && p[w] <= 1;
        ok &= fabs(ng_prob(m, ctx, w) - p[w]) < 1e-15;
        sum += p[w];
    }
    return ok && fabs(sum - 1) < 1e-12;
}

/* Contexts of the names in d (seen in training or not), then random ones:
 * a run of <SOS> padding followed by random characters. */
static void check_all_contexts(const ng_model *m, const ds_corpus *c, int order)
{
    int V = c->vocab.size, ctx[16], bad = 0, checked = 0;
    const ds_names *sets[2] = { &c->train, &c->val };
    for (int s = 0; s < 2; s++) {
        for (size_t i = 0; i < sets[s]->n; i++) {
            const int *tok = ds_name(sets[s], i);
            int len = ds_len(sets[s], i);
            for (int t = 0; t <= len; t++) {
                for (int j = 0; j < order - 1; j++) {
                    int pos = t - (order - 1) + j;
                    ctx[j] = pos < 0 ? TOK_SOS : tok[pos];
                }
                bad += !check_context(m, ctx, V);
                checked++;
            }
        }
    }
    rng r;
    rng_seed(&r, 42);
    for (int trial = 0; trial < 500; trial++) {
        int pad = (int)rng_below(&r, (uint32_t)order);
        for (int j = 0; j < order - 1; j++)
            ctx[j] = j < pad ? TOK_SOS : TOK_FIRST + (int)rng_below(&r, (uint32_t)(V - TOK_FIRST));
        bad += !check_context(m, ctx, V);
        checked++;
    }
    CHECK(checked > 500);
    CHECK(bad == 0);
    if (bad) fprintf(stderr, "  order %d: %d of %d contexts do not sum to 1\n", order, bad, checked);
}

TEST(ngram_contexts_sum_to_one_every_smoothing)
{
    ds_corpus c = load_corpus();
    const struct { ng_smoothing s; double D; } cases[] = {
        { NG_NONE, 0 }, { NG_ADDK, 0 }, { NG_KN, NG_DISCOUNT_ESTIMATED }, { NG_KN, 0.75 },
        { NG_KN, 0 }, { NG_KN, 1 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int order = 0; order <= 6; order++) {
            ng_model *m = fit(&c, order, cases[i].s, cases[i].D);
            if (m) check_all_contexts(m, &c, order);
            ng_free(m);
        }
    }
    ds_corpus_free(&c);
}

/* ---- exact maximum-likelihood loss ------------------------------------- */

/* Mean loss of d under m. */
static double mean_loss(const ng_model *m, const ds_names *d, size_t *n)
{
    return ng_nll(m, d, n) / (double)*n;
}

/* The 3-gram MLE loss of d, counted here with plain dense arrays. */
static double mle_trigram_loss(const ds_names *d, int V)
{
    int *c3 = calloc((size_t)V * V * V, sizeof *c3), *c2 = calloc((size_t)V * V, sizeof *c2);
    for (int pass = 0; pass < 2; pass++) {   /* count, then score */
        double nll = 0;
        size_t n = 0;
        for (size_t i = 0; i < d->n; i++) {
            int a = TOK_SOS, b = TOK_SOS, len = ds_len(d, i);
            for (int t = 0; t <= len; t++) {
                int w = t < len ? ds_name(d, i)[t] : TOK_EOS;
                if (pass == 0) {
                    c3[(a * V + b) * V + w]++;
                    c2[a * V + b]++;
                } else {
                    nll -= log((double)c3[(a * V + b) * V + w] / c2[a * V + b]);
                    n++;
                }
                a = b;
                b = w;
            }
        }
        if (pass == 1) {
            free(c3);
            free(c2);
            return nll / (double)n;
        }
    }
    return NAN;
}

TEST(ngram_trigram_mle_loss_is_exact)
{
    ds_corpus c = load_corpus();
    ng_model *m = fit(&c, 3, NG_NONE, 0);
    size_t n;
    double loss = mean_loss(m, &c.train, &n);
    double want = mle_trigram_loss(&c.train, c.vocab.size);
    CHECK(want > 0.1);
    CHECK_NEAR(loss, want, 1e-12);
    size_t chars = 0;
    for (size_t i = 0; i < c.train.n; i++) chars += (size_t)ds_len(&c.train, i) + 1;
    CHECK(n == chars);
    /* The validation file holds a character never seen in training. */
    CHECK(isinf(mean_loss(m, &c.val, &n)));
    ng_free(m);
    ds_corpus_free(&c);
}

/* Bigram counts c2[h * V + w] of the names of d, counted with plain code. */
static int *count_bigrams(const ds_names *d, int V)
{
    int *c2 = calloc((size_t)V * V, sizeof *c2);
    for (size_t i = 0; i < d->n; i++) {
        int h = TOK_SOS, len = ds_len(d, i);
        for (int t = 0; t <= len; t++) {
            int w = t < len ? ds_name(d, i)[t] : TOK_EOS;
            c2[h * V + w]++;
            h = w;
        }
    }
    return c2;
}

/* none and add-k bigrams against their formulas: c(h w) / c(h) (uniform for
 * an unseen h) and (c(h w) + k) / (c(h) + k S). */
TEST(ngram_none_and_addk_bigrams_match_their_formulas)
{
    ds_corpus c = load_corpus();
    int V = c.vocab.size, S = V - 2, *c2 = count_bigrams(&c.train, V), bad = 0, unseen = 0;
    ng_model *none = fit(&c, 2, NG_NONE, 0), *addk = fit(&c, 2, NG_ADDK, 0);   /* k = 0.5 */
    for (int h = TOK_SOS; h < V; h++) {
        double ch = 0, p_none[256], p_addk[256];
        for (int w = 0; w < V; w++) ch += c2[h * V + w];
        unseen += ch == 0;
        ng_dist(none, &h, p_none);
        ng_dist(addk, &h, p_addk);
        for (int w = TOK_EOS; w < V; w++) {
            double x = c2[h * V + w];
            bad += fabs(p_none[w] - (ch ? x / ch : 1.0 / S)) > 1e-12;
            bad += fabs(p_addk[w] - (x + 0.5) / (ch + 0.5 * S)) > 1e-12;
        }
    }
    CHECK(unseen > 0);   /* <EOS> at least, and the characters only in validation */
    CHECK(bad == 0);
    ng_free(none);
    ng_free(addk);
    free(c2);
    ds_corpus_free(&c);
}

/* Modified Kneser-Ney discounts for counts 1, 2, 3+ from the values x[0..n). */
static void mkn_discounts(const int *x, int n, double D[4])
{
    double c[5] = { 0 };
    for (int i = 0; i < n; i++)
        if (x[i] >= 1 && x[i] <= 4) c[x[i]]++;
    double Y = c[1] / (c[1] + 2 * c[2]);
    for (int k = 1; k <= 3; k++) {
        D[k] = k - (k + 1) * Y * c[k + 1] / c[k];
        if (!isfinite(D[k])) D[k] = NG_DEFAULT_DISCOUNT;
        D[k] = fmin(fmax(D[k], 0), k);
    }
}

static double disc(const double D[4], int x) { return D[x < 3 ? x : 3]; }

/* An interpolated Kneser-Ney bigram, computed here with dense arrays:
 * P1(w) = (max(N1+(. w) - D, 0) + mass1 / S) / N1+(. .), then
 * P2(w|h) = (max(c(h w) - D, 0) + mass(h) P1(w)) / c(h), or P1(w) when c(h) = 0. */
static void check_kn_bigram(const ds_corpus *c, double fixed_D)
{
    int V = c->vocab.size, S = V - 2;
    int *c2 = count_bigrams(&c->train, V), *cont = calloc((size_t)V, sizeof *cont);
    for (int h = 0; h < V; h++)
        for (int w = 0; w < V; w++) cont[w] += c2[h * V + w] > 0;
    double D1[4], D2[4];
    mkn_discounts(cont, V, D1);
    mkn_discounts(c2, V * V, D2);
    if (fixed_D >= 0)
        for (int k = 1; k <= 3; k++) D1[k] = D2[k] = fixed_D;
    double p1[256], total1 = 0, mass1 = 0;
    for (int w = 0; w < V; w++) {
        total1 += cont[w];
        if (cont[w]) mass1 += disc(D1, cont[w]);
    }
    for (int w = 0; w < V; w++)
        p1[w] = w < TOK_EOS ? 0 : (fmax(cont[w] - disc(D1, cont[w]), 0) + mass1 / S) / total1;

    ng_model *m = fit(c, 2, NG_KN, fixed_D >= 0 ? fixed_D : NG_DISCOUNT_ESTIMATED);
    int bad = 0;
    for (int h = TOK_SOS; h < V; h++) {
        double ch = 0, mass = 0;
        for (int w = 0; w < V; w++) {
            ch += c2[h * V + w];
            if (c2[h * V + w]) mass += disc(D2, c2[h * V + w]);
        }
        double p2[256];
        ng_dist(m, &h, p2);
        for (int w = 0; w < V; w++) {
            int x = c2[h * V + w];
            double want = w < TOK_EOS ? 0 : ch ? (fmax(x - (x ? disc(D2, x) : 0), 0) + mass * p1[w]) / ch : p1[w];
            bad += fabs(p2[w] - want) > 1e-12;
        }
    }
    CHECK(bad == 0);
    ng_free(m);
    free(c2);
    free(cont);
}

TEST(ngram_kneser_ney_bigram_matches_direct_computation)
{
    ds_corpus c = load_corpus();
    check_kn_bigram(&c, 0.6);
    check_kn_bigram(&c, -1);   /* the estimated (modified Kneser-Ney) discounts */
    ds_corpus_free(&c);
}

TEST(ngram_order_zero_is_uniform_and_smoothed_losses_are_finite)
{
    ds_corpus c = load_corpus();
    ng_model *m = fit(&c, 0, NG_NONE, 0);
    size_t n;
    CHECK_NEAR(mean_loss(m, &c.val, &n), log(c.vocab.size - 2.0), 1e-12);
    CHECK(ng_size(m) == 0);
    ng_free(m);
    for (int s = NG_ADDK; s <= NG_KN; s++) {
        m = fit(&c, 4, (ng_smoothing)s, NG_DISCOUNT_ESTIMATED);
        double val = mean_loss(m, &c.val, &n), train = mean_loss(m, &c.train, &n);
        CHECK(isfinite(val) && val > train);
        ng_free(m);
    }
    ds_corpus_free(&c);
}

TEST(ngram_counts_are_sparse_and_keys_bounded)
{
    CHECK(ng_max_order(46) == 10);    /* 6 bits a token */
    CHECK(ng_max_order(100) == 9);    /* 7 bits */
    ds_corpus c = load_corpus();
    ng_config cfg = { .vocab_size = 46, .order = 11, .smoothing = NG_KN, .k = 1, .discount = 0.75 };
    ng_model *m = NULL;
    CHECK(ng_fit(&m, &cfg, &c.train) == ERR_ARG && !m);
    CHECK(strstr(err_msg(), "order 11") != NULL);
    cfg = (ng_config){ .vocab_size = c.vocab.size, .order = 3, .smoothing = NG_KN, .k = 1,
                       .discount = 1.5 };
    CHECK(ng_fit(&m, &cfg, &c.train) == ERR_ARG);
    /* Distinct 7-grams: at most one per target, far below V^7. */
    m = fit(&c, 7, NG_KN, NG_DISCOUNT_ESTIMATED);
    size_t targets = 0;
    for (size_t i = 0; i < c.train.n; i++) targets += (size_t)ds_len(&c.train, i) + 1;
    CHECK(ng_size(m) > 0 && ng_size(m) <= targets);
    ng_free(m);
    ds_corpus_free(&c);
}

/* ---- checkpoints and the model interface ------------------------------- */

TEST(ngram_checkpoint_round_trip_through_model_interface)
{
    ds_corpus c = load_corpus();
    char path[256];
    temp_path(path, sizeof path, "ngram");
    for (int order = 0; order <= 5; order += 5) {
        ng_model *m = fit(&c, order, NG_KN, NG_DISCOUNT_ESTIMATED);
        CHECK(ng_save(m, &c.vocab, path) == ERR_OK);
        mdl md;
        mdl_state st;
        err_code e = mdl_load(&md, path);
        CHECK(e == ERR_OK);
        if (e) {
            fprintf(stderr, "  %s\n", err_msg());
            ng_free(m);
            continue;
        }
        CHECK(strcmp(md.kind->name, NG_KIND) == 0);
        CHECK(mdl_vocab_size(&md) == c.vocab.size && mdl_max_len(&md) == 0);
        CHECK(mdl_state_new(&st, &md) == ERR_OK);
        /* Scoring every validation name through the interface gives ng_nll. */
        float scratch[256];
        double sum = 0;
        size_t n_pred = 0, n_want;
        for (size_t i = 0; i < c.val.n; i++) {
            int k;
            sum += mdl_score_name(&st, ds_name(&c.val, i), ds_len(&c.val, i), &k, scratch);
            n_pred += (size_t)k;
        }
        double want = mean_loss(m, &c.val, &n_want) * (double)n_want;
        CHECK(n_pred == n_want);
        CHECK_NEAR(sum, want, 1e-5 * (double)n_want);   /* float logits */
        mdl_state_free(&st);
        mdl_free(&md);
        ng_free(m);
    }
    remove(path);
    ds_corpus_free(&c);
}

TEST(ngram_sampling_respects_prefix_limits_and_specials)
{
    ds_corpus c = load_corpus();
    char path[256];
    temp_path(path, sizeof path, "ngram-sample");
    ng_model *m = fit(&c, 3, NG_KN, NG_DISCOUNT_ESTIMATED);
    CHECK(ng_save(m, &c.vocab, path) == ERR_OK);
    mdl md;
    mdl_state st;
    CHECK(mdl_load(&md, path) == ERR_OK);
    CHECK(mdl_state_new(&st, &md) == ERR_OK);
    int V = mdl_vocab_size(&md), tok[64], prefix[2] = { ds_name(&c.train, 0)[0], ds_name(&c.train, 0)[1] };
    float *scratch = malloc(3 * (size_t)V * sizeof *scratch);
    rng r;
    rng_seed(&r, 1);
    smp_config sc = SMP_DEFAULTS;
    int bad = 0;
    for (int i = 0; i < 300; i++) {
        int n = mdl_sample_name(&st, &sc, &r, i % 2 ? prefix : NULL, i % 2 ? 2 : 0, 12, tok, scratch);
        bad += n < 0 || n > 12;
        for (int j = 0; j < n; j++) bad += tok[j] < TOK_FIRST || tok[j] >= V;
        if (i % 2) bad += n < 2 || tok[0] != prefix[0] || tok[1] != prefix[1];
    }
    CHECK(bad == 0);
    /* The same seed gives the same names. */
    int a[64], b[64], na, nb;
    rng_seed(&r, 9);
    na = mdl_sample_name(&st, &sc, &r, NULL, 0, 40, a, scratch);
    rng_seed(&r, 9);
    nb = mdl_sample_name(&st, &sc, &r, NULL, 0, 40, b, scratch);
    CHECK(na == nb && memcmp(a, b, (size_t)na * sizeof *a) == 0);
    /* A prefix longer than the limit is cut to it. */
    CHECK(mdl_sample_name(&st, &sc, &r, prefix, 2, 1, tok, scratch) == 1 && tok[0] == prefix[0]);
    free(scratch);
    mdl_state_free(&st);
    mdl_free(&md);
    ng_free(m);
    remove(path);
    ds_corpus_free(&c);
}

/* Write an n-gram checkpoint by hand, to feed the loader bad contents. */
static err_code write_raw(const char *path, const char *model, const char *config,
                          const char *vocab, const int32_t *grams, int64_t N, int64_t n,
                          const int32_t *counts)
{
    ck_writer *w = ck_writer_new();
    int64_t gs[2] = { N, n }, cs[1] = { N };
    err_code e = ck_put_meta(w, "format", CK_FORMAT);
    if (!e) e = ck_put_meta(w, "format_version", CK_FORMAT_VERSION);
    if (!e) e = ck_put_meta(w, "model", model);
    if (!e) e = ck_put_meta(w, "config", config);
    if (!e && vocab) e = ck_put_meta(w, "vocab", vocab);
    if (!e) e = ck_put(w, "grams", CK_I32, 2, gs, grams);
    if (!e) e = ck_put(w, "counts", CK_I32, 1, cs, counts);
    if (!e) e = ck_write(w, path);
    ck_writer_free(w);
    return e;
}

TEST(ngram_loader_rejects_bad_checkpoints)
{
    static const char vocab[] = "[\"<pad>\",\"<SOS>\",\"<EOS>\",\"a\",\"b\"]";
    static const char cfg[] =
        "{\"vocab_size\":5,\"order\":2,\"smoothing\":\"kn\",\"k\":1,\"discount\":0.75}";
    char path[256];
    temp_path(path, sizeof path, "ngram-bad");
    const struct { const char *what, *model, *config, *vocab; int32_t g[4], c[2]; err_code e; } cases[] = {
        { "good", "ngram", cfg, vocab, { 1, 3, 3, 2 }, { 2, 1 }, ERR_OK },
        { "unknown kind", "bogus", cfg, vocab, { 1, 3, 3, 2 }, { 2, 1 }, ERR_FORMAT },
        { "no vocab", "ngram", cfg, NULL, { 1, 3, 3, 2 }, { 2, 1 }, ERR_FORMAT },
        { "vocab size", "ngram", "{\"vocab_size\":6,\"order\":2,\"smoothing\":\"kn\",\"k\":1,\"discount\":0.75}",
          vocab, { 1, 3, 3, 2 }, { 2, 1 }, ERR_FORMAT },
        { "bad smoothing", "ngram", "{\"vocab_size\":5,\"order\":2,\"smoothing\":\"x\",\"k\":1,\"discount\":0.75}",
          vocab, { 1, 3, 3, 2 }, { 2, 1 }, ERR_FORMAT },
        { "bad discount", "ngram", "{\"vocab_size\":5,\"order\":2,\"smoothing\":\"kn\",\"k\":1,\"discount\":7}",
          vocab, { 1, 3, 3, 2 }, { 2, 1 }, ERR_FORMAT },
        { "config not json", "ngram", "{", vocab, { 1, 3, 3, 2 }, { 2, 1 }, ERR_FORMAT },
        { "token past vocab", "ngram", cfg, vocab, { 1, 3, 3, 9 }, { 2, 1 }, ERR_FORMAT },
        { "pad in context", "ngram", cfg, vocab, { 0, 3, 3, 2 }, { 2, 1 }, ERR_FORMAT },
        { "EOS in context", "ngram", cfg, vocab, { 2, 3, 3, 2 }, { 2, 1 }, ERR_FORMAT },
        { "SOS as target", "ngram", cfg, vocab, { 1, 1, 3, 2 }, { 2, 1 }, ERR_FORMAT },
        { "zero count", "ngram", cfg, vocab, { 1, 3, 3, 2 }, { 0, 1 }, ERR_FORMAT },
        { "negative count", "ngram", cfg, vocab, { 1, 3, 3, 2 }, { -5, 1 }, ERR_FORMAT },
        { "duplicate", "ngram", cfg, vocab, { 1, 3, 1, 3 }, { 2, 1 }, ERR_FORMAT },
        { "overflow", "ngram", cfg, vocab, { 1, 3, 3, 2 }, { INT32_MAX, INT32_MAX }, ERR_FORMAT },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK(write_raw(path, cases[i].model, cases[i].config, cases[i].vocab, cases[i].g, 2, 2,
                        cases[i].c) == ERR_OK);
        mdl md;
        err_code e = mdl_load(&md, path);
        if (e != cases[i].e) fprintf(stderr, "  case '%s': got %d (%s)\n", cases[i].what, e, err_msg());
        CHECK(e == cases[i].e);
        CHECK(e == ERR_OK || strstr(err_msg(), path) != NULL);   /* errors name the file */
        if (!e) mdl_free(&md);
    }
    /* grams of the wrong width */
    int32_t g[3] = { 1, 3, 2 }, cnt[1] = { 1 };
    CHECK(write_raw(path, "ngram", cfg, vocab, g, 1, 3, cnt) == ERR_OK);
    mdl md;
    CHECK(mdl_load(&md, path) == ERR_FORMAT);
    remove(path);
}
