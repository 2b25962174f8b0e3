/* test_units.c - automatic labels and unit profiles against brute force:
 * the contexts of a letter, the best label of a planted unit, the label
 * texts, the neurons' orientation, maxima, counts, histograms and ranked
 * names, quantile ranks and the monosemanticity summary. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "label.h"
#include "rng.h"
#include "test.h"
#include "units.h"

/* Names over the letters a..z (tokens TOK_FIRST + letter - 'a'), with a
 * vocabulary of those 26 letters; rows as sae_acts lays them out. */
typedef struct corpus {
    ds_names  names;
    size_t   *row;
    txt_vocab v;
} corpus;

static corpus make_corpus(const char *const *words, size_t n)
{
    corpus c = { .names = { .n = n }, .row = malloc((n + 1) * sizeof(size_t)) };
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += strlen(words[i]);
    c.names.tok = malloc((total + 1) * sizeof(int));
    c.names.start = malloc((n + 1) * sizeof(size_t));
    c.names.start[0] = c.row[0] = 0;
    for (size_t i = 0; i < n; i++) {
        const size_t len = strlen(words[i]);
        for (size_t k = 0; k < len; k++) c.names.tok[c.names.start[i] + k] = TOK_FIRST + words[i][k] - 'a';
        c.names.start[i + 1] = c.names.start[i] + len;
        c.row[i + 1] = c.row[i] + len + 1;
        if ((int)len > c.names.max_len) c.names.max_len = (int)len;
    }
    int32_t cp[26];
    for (int k = 0; k < 26; k++) cp[k] = 'a' + k;
    CHECK(txt_vocab_build(&c.v, cp, 26) == ERR_OK);
    return c;
}

static void free_corpus(corpus *c)
{
    free(c->names.tok);
    free(c->names.start);
    free(c->row);
    txt_vocab_free(&c->v);
}

static const char *const WORDS[] = { "saintmalo", "saintlo", "lyon", "sainte", "paris", "sarlat", "nantes",
                                     "saintes", "lasalle", "brest", "dijon", "arles" };
enum { N_WORDS = sizeof WORDS / sizeof WORDS[0] };

/* The label texts of the contexts of one letter. */
TEST(contexts_of_a_letter)
{
    corpus c = make_corpus(WORDS, N_WORDS);
    lb_index x;
    CHECK(lb_index_build(&x, &c.names, c.row) == ERR_OK);
    CHECK(x.n_rows == c.row[N_WORDS]);
    CHECK(x.first[c.row[0]] == x.first[c.row[0] + 1]);   /* <SOS>: none */
    /* letter 2 of "lyon" (y): windows y, ly, ^ly, each with the "o" after,
     * then letter 2; not near the end (4 letters: it is letter 3 from it). */
    const size_t r = c.row[2] + 2;
    const char *want[] = { "after \"y\"", "after \"ly\"", "after \"^ly\"", "\"y\" of \"yo\"", "\"y\" of \"lyo\"",
                           "\"y\" of \"^lyo\"", "letter 2", "letter 3 from the end" };
    CHECK(x.first[r + 1] - x.first[r] == 8);
    for (size_t k = x.first[r]; k < x.first[r + 1] && k - x.first[r] < 8; k++) {
        char buf[64];
        lb_describe(&x, x.id[k], &c.v, buf, sizeof buf);
        CHECK(!strcmp(buf, want[k - x.first[r]]));
    }
    lb_index_free(&x);
    free_corpus(&c);
}

/* A unit firing exactly after "sai" gets that label, precision = recall = 1
 * (not "after i" nor "after ai": laine, dijon and paris have those too);
 * firing on the first four only, the best is "after ^sai" (4 of its 5). */
TEST(best_label_of_a_planted_unit)
{
    const char *words[] = { "saint", "saintlo", "saie", "saix", "saina", "lasai", "laine", "dijon", "paris" };
    corpus c = make_corpus(words, 9);
    lb_index x;
    CHECK(lb_index_build(&x, &c.names, c.row) == ERR_OK);
    size_t rows[16], n = 0;
    for (size_t i = 0; i < 9; i++)
        for (int p = 3; p <= ds_len(&c.names, i); p++) {
            const int *t = ds_name(&c.names, i);
            if (t[p - 3] == TOK_FIRST + 's' - 'a' && t[p - 2] == TOK_FIRST && t[p - 1] == TOK_FIRST + 'i' - 'a')
                rows[n++] = c.row[i] + (size_t)p;
        }
    CHECK(n == 6);
    uint32_t *hits = calloc((size_t)x.n, sizeof *hits);
    int *touched = malloc((size_t)x.n * sizeof *touched);
    lb_label l;
    lb_best(&x, rows, n, &l, hits, touched);
    char buf[64];
    lb_describe(&x, l.context, &c.v, buf, sizeof buf);
    CHECK(!strcmp(buf, "after \"sai\""));
    CHECK(l.precision == 1.0 && l.recall == 1.0 && l.hits == 6 && l.support == 6 && l.fired == 6);
    for (int i = 0; i < x.n; i++) CHECK(hits[i] == 0);
    lb_best(&x, rows, 4, &l, hits, touched);
    lb_describe(&x, l.context, &c.v, buf, sizeof buf);
    CHECK(!strcmp(buf, "after \"^sai\""));
    CHECK(fabs(l.precision - 0.8) < 1e-12 && l.recall == 1.0);
    lb_describe(&x, -1, &c.v, buf, sizeof buf);
    CHECK(!strcmp(buf, "-"));
    free(hits);
    free(touched);
    lb_index_free(&x);
    free_corpus(&c);
}

/* ---- profiles ------------------------------------------------------------------- */

enum { D = 5 };

static sae_acts random_acts(const corpus *c, uint64_t seed)
{
    rng r;
    rng_seed(&r, seed);
    sae_acts a = { .n_names = c->names.n, .n_rows = c->row[c->names.n], .d = D, .row = c->row };
    a.x = malloc(a.n_rows * D * sizeof *a.x);
    for (size_t k = 0; k < a.n_rows * D; k++) a.x[k] = (float)((int)rng_below(&r, 17) - 6) / 4.0f;
    return a;
}

static int by_float(const void *pa, const void *pb)
{
    const float a = *(const float *)pa, b = *(const float *)pb;
    return (a > b) - (a < b);
}

TEST(neuron_profiles_against_brute_force)
{
    corpus c = make_corpus(WORDS, N_WORDS);
    sae_acts a = random_acts(&c, 7);
    lb_index x;
    un_profile p;
    CHECK(lb_index_build(&x, &c.names, c.row) == ERR_OK);
    CHECK(un_profile_compute(&p, &a, NULL, &x) == ERR_OK);
    float col[256], letters[16];
    for (int u = 0; u < D; u++) {
        size_t n = 0;
        for (size_t i = 0; i < a.n_names; i++)
            for (size_t r = a.row[i] + 1; r < a.row[i + 1]; r++) col[n++] = a.x[r * D + u];
        CHECK(n == p.letters);
        qsort(col, n, sizeof *col, by_float);
        CHECK(p.centre[u] == col[n / 2]);
        CHECK(p.sign[u] == (col[n - 1] - col[n / 2] >= col[n / 2] - col[0] ? 1.0f : -1.0f));
        float mx = 0;
        size_t active = 0, strong = 0, hist = 0, names = 0;
        for (size_t i = 0; i < a.n_names; i++) {
            float best = -INFINITY;
            CHECK(un_letters(&p, &a, NULL, i, u, letters) == ERR_OK);
            for (size_t r = a.row[i] + 1; r < a.row[i + 1]; r++) {
                const float v = p.sign[u] * (a.x[r * D + u] - p.centre[u]);
                CHECK(letters[r - a.row[i] - 1] == v);
                best = fmaxf(best, v);
                active += v > 0;
            }
            names += best > 0;
            mx = fmaxf(mx, best);
        }
        for (size_t i = 0; i < a.n_names; i++)
            for (size_t r = a.row[i] + 1; r < a.row[i + 1]; r++) {
                const float v = p.sign[u] * (a.x[r * D + u] - p.centre[u]);
                strong += v > 0 && v >= UN_STRONG * mx;
            }
        CHECK(p.strong[u] == strong);
        for (int b = 0; b < UN_HIST_BINS; b++) hist += p.hist[(size_t)u * UN_HIST_BINS + b];
        CHECK(p.max[u] == mx && p.active[u] == active && hist == active && un_names(&p, u) == names);
        for (size_t k = 1; k < un_names(&p, u); k++)   /* ranked by their highest activation */
            CHECK(p.nm_max[p.nm_first[u] + k] <= p.nm_max[p.nm_first[u] + k - 1]);
        CHECK(un_quantile_rank(&p, u, 1.0) == 0 && un_quantile_rank(&p, u, 0.0) == names - 1);
        CHECK(p.label[u].fired == p.strong[u]);
    }
    un_profile_free(&p);
    lb_index_free(&x);
    free(a.x);
    free_corpus(&c);
}

TEST(summary_of_labels)
{
    un_profile p = { .U = 5 };
    lb_label l[5] = { { .context = 0, .precision = 0.9, .f1 = 0.3 }, { .context = -1, .precision = 0 },
                      { .context = 3, .precision = 0.5, .f1 = 0.1 }, { .context = 2, .precision = 0.8, .f1 = 0.7 },
                      { .context = 1, .precision = 0.2, .f1 = 0.2 } };
    p.label = l;
    un_summary s;
    CHECK(un_summarise(&p, 0.8, &s) == ERR_OK);
    CHECK(s.units == 5 && s.labelled == 4 && s.precise == 2);
    CHECK_NEAR(s.share_precise, 0.5, 1e-12);
    CHECK_NEAR(s.median_precision, 0.65, 1e-12);
    CHECK_NEAR(s.median_f1, 0.25, 1e-12);
}

/* The features of a TopK SAE: maxima, active letters and strong letters
 * against each name encoded alone. */
TEST(feature_profiles_against_brute_force)
{
    corpus c = make_corpus(WORDS, N_WORDS);
    sae_acts a = random_acts(&c, 11);
    sae_config cfg = { .d_model = D, .n_features = 9, .layer = 1, .variant = SAE_TOPK, .k = 3 };
    sae_model s;
    CHECK(sae_init(&s, &cfg) == ERR_OK);
    rng r;
    rng_seed(&r, 3);
    sae_init_weights(&s, &r);
    lb_index x;
    un_profile p;
    CHECK(lb_index_build(&x, &c.names, c.row) == ERR_OK);
    CHECK(un_profile_compute(&p, &a, &s, &x) == ERR_OK);
    float f[16 * 9], scratch[2 * 9], letters[16];
    for (int u = 0; u < 9; u++) {
        float mx = 0;
        size_t active = 0, strong = 0;
        for (int pass = 0; pass < 2; pass++)
            for (size_t i = 0; i < a.n_names; i++) {
                const int rows = (int)(a.row[i + 1] - a.row[i]);
                sae_encode(&s, a.x + a.row[i] * D, rows, f, scratch);
                CHECK(un_letters(&p, &a, &s, i, u, letters) == ERR_OK);
                for (int k = 1; k < rows; k++) {
                    const float v = f[k * 9 + u];
                    CHECK(letters[k - 1] == v);
                    if (pass == 0) mx = fmaxf(mx, v), active += v > 0;
                    else strong += v > 0 && v >= UN_STRONG * mx;
                }
            }
        CHECK(p.max[u] == mx && p.active[u] == active && p.strong[u] == strong);
        CHECK(p.centre[u] == 0 && p.sign[u] == 1);
    }
    un_profile_free(&p);
    lb_index_free(&x);
    sae_free(&s);
    free(a.x);
    free_corpus(&c);
}
