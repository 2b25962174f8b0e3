/* interp.c - explore's analyses: top names, frequencies, rankings, logit
 * lens, PCA and cosine neighbours; see interp.h. */
#include "interp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd.h"
#include "sampling.h"

/* The scan computes the unit activations of whole names a few megabytes
 * at a time: large enough for fast products, small enough for any SAE. */
enum { CHUNK_FLOATS = 1 << 22, CHUNK_MIN_ROWS = 64, POWER_ITERS = 500, LENS_TAPE = 1 << 16 };

/* ---- Rankings ------------------------------------------------------------- */

typedef struct ranked { double v; int i; } ranked;

static int by_rank(const void *pa, const void *pb)
{
    const ranked *a = pa, *b = pb;
    if (a->v != b->v) return a->v > b->v ? -1 : 1;
    return (a->i > b->i) - (a->i < b->i);
}

/* Sort r (n) and write its indices into order (n). */
static void rank_sorted(ranked *r, int n, int *order)
{
    qsort(r, (size_t)n, sizeof *r, by_rank);
    for (int k = 0; k < n; k++) order[k] = r[k].i;
}

err_code ip_rank(const double *v, int n, int *order)
{
    ranked *r = malloc(((size_t)n + 1) * sizeof *r);
    if (!r) return err_set(ERR_NOMEM, "out of memory ranking %d values", n);
    for (int i = 0; i < n; i++) r[i] = (ranked){ v[i], i };
    rank_sorted(r, n, order);
    free(r);
    return ERR_OK;
}

/* The predictable tokens (never <pad>, <SOS>) by logit (V) into order;
 * r (V) scratch.  Returns their count. */
static int rank_tokens(const float *logit, int V, int *order, ranked *r)
{
    int n = 0;
    for (int v = TOK_EOS; v < V; v++) r[n++] = (ranked){ logit[v], v };
    rank_sorted(r, n, order);
    return n;
}

/* ---- Units and the scan ---------------------------------------------------- */

static int n_units(const sae_model *sae, int d) { return sae ? sae->c.n_features : d; }

/* The error for a unit id out of range, as explore shows it. */
static err_code out_of_range(const char *what, int id, int n)
{
    return err_set(ERR_ARG, "%s %d out of range: there are %d (0 to %d)", what, id, n, n - 1);
}

/* out (N, U) = unit activations of residual rows x (N, d): the SAE's
 * features, or (sae NULL) the rows themselves.  scratch: sae_scratch_floats. */
static void units_of(const sae_model *sae, const float *x, int N, int d, float *out, float *scratch)
{
    if (sae) sae_encode(sae, x, N, out, scratch);
    else memcpy(out, x, (size_t)N * d * sizeof *out);
}

static int rows_of(const sae_acts *a, size_t nm) { return (int)(a->row[nm + 1] - a->row[nm]); }

double ip_freq(const ip_scan *sc, int u)
{
    return sc->positions ? (double)sc->active[u] / (double)sc->positions : 0.0;
}

/* The slot (u - first) of a unit with a list, else -1. */
static int slot_of(const ip_scan *sc, int u) { return u >= sc->first && u < sc->first + sc->n ? u - sc->first : -1; }

int ip_top_count(const ip_scan *sc, int u)
{
    int s = slot_of(sc, u);
    return s < 0 ? 0 : tk_count(&sc->best, s);
}

size_t ip_top_name(const ip_scan *sc, int u, int rank) { return tk_item(&sc->best, slot_of(sc, u), rank); }
float  ip_top_score(const ip_scan *sc, int u, int rank) { return tk_score(&sc->best, slot_of(sc, u), rank); }

const float *ip_top_letters(const ip_scan *sc, int u, int rank)
{
    return sc->letters + ((size_t)slot_of(sc, u) * sc->best.K + rank) * sc->L;
}

void ip_scan_free(ip_scan *sc)
{
    if (!sc) return;
    free(sc->active);
    free(sc->letters);
    tk_free(&sc->best);
    memset(sc, 0, sizeof *sc);
}

/* Buffers of one pass: unit activations of a chunk of rows, each unit's
 * maximum over the current name, the SAE's scratch. */
typedef struct scan_bufs {
    size_t rows;       /* rows of act */
    float *act;        /* (rows, U) */
    float *best;       /* (U) */
    float *scratch;
} scan_bufs;

static err_code bufs_init(scan_bufs *b, const sae_model *sae, int U, int L)
{
    b->rows = CHUNK_FLOATS / (size_t)U > CHUNK_MIN_ROWS ? CHUNK_FLOATS / (size_t)U : CHUNK_MIN_ROWS;
    if (b->rows < (size_t)L + 1) b->rows = (size_t)L + 1;   /* a whole name always fits */
    b->act = malloc(b->rows * (size_t)U * sizeof *b->act);
    b->best = malloc((size_t)U * sizeof *b->best);
    b->scratch = sae ? malloc(sae_scratch_floats(&sae->c) * sizeof *b->scratch) : NULL;
    if (!b->act || !b->best || (sae && !b->scratch))
        return err_set(ERR_NOMEM, "out of memory for the activations of %d units", U);
    return ERR_OK;
}

static void bufs_free(scan_bufs *b)
{
    free(b->act);
    free(b->best);
    free(b->scratch);
}

/* Offer name nm, whose unit activations are act (rows, U), to the lists of
 * the units that have one; count its letters. */
static void scan_name(ip_scan *sc, const float *act, int rows, size_t nm, float *best, bool positive_only)
{
    const int U = sc->U;
    for (int u = 0; u < U; u++) best[u] = -INFINITY;
    for (int r = 1; r < rows; r++) {   /* letters: skip <SOS> */
        const float *v = act + (size_t)r * U;
        for (int u = 0; u < U; u++) {
            if (v[u] > best[u]) best[u] = v[u];
            sc->active[u] += v[u] > 0.0f;
        }
        sc->positions++;
    }
    for (int s = 0; s < sc->n; s++) {
        float m = best[sc->first + s];
        if (!positive_only || m > 0.0f) tk_offer(&sc->best, s, m, nm);
    }
}

/* One pass over all names, a chunk of whole names at a time. */
static void scan_pass(ip_scan *sc, const sae_acts *a, const sae_model *sae, scan_bufs *b, bool positive_only)
{
    for (size_t i = 0; i < a->n_names;) {
        size_t j = i;   /* names i .. j-1 fill the chunk */
        while (j < a->n_names && a->row[j + 1] - a->row[i] <= b->rows) j++;
        size_t r0 = a->row[i];
        units_of(sae, a->x + r0 * a->d, (int)(a->row[j] - r0), a->d, b->act, b->scratch);
        for (size_t nm = i; nm < j; nm++)
            scan_name(sc, b->act + (a->row[nm] - r0) * sc->U, rows_of(a, nm), nm, b->best, positive_only);
        i = j;
    }
}

typedef struct kept { size_t name; size_t at; } kept;   /* a kept name and its letters' slot */

static int by_kept_name(const void *pa, const void *pb)
{
    const kept *a = pa, *b = pb;
    return (a->name > b->name) - (a->name < b->name);
}

/* The letter activations of every kept name, each name's units computed
 * once however many lists hold it (names are encoded alone, as a view of
 * one name would encode them). */
static err_code fill_letters(ip_scan *sc, const sae_acts *a, const sae_model *sae, scan_bufs *b)
{
    const int K = sc->best.K;
    size_t n_kept = 0;
    kept *list = malloc(((size_t)sc->n * K + 1) * sizeof *list);
    sc->letters = malloc(((size_t)sc->n * K * sc->L + 1) * sizeof *sc->letters);
    if (!list || !sc->letters) {
        free(list);
        return err_set(ERR_NOMEM, "out of memory for the top %d names of %d units", K, sc->n);
    }
    for (int s = 0; s < sc->n; s++)
        for (int k = 0; k < tk_count(&sc->best, s); k++)
            list[n_kept++] = (kept){ tk_item(&sc->best, s, k), (size_t)s * K + k };
    qsort(list, n_kept, sizeof *list, by_kept_name);
    for (size_t i = 0; i < n_kept; i++) {
        size_t nm = list[i].name;
        int rows = rows_of(a, nm), u = sc->first + (int)(list[i].at / (size_t)K);
        if (i == 0 || nm != list[i - 1].name)   /* a new name: its units */
            units_of(sae, a->x + a->row[nm] * a->d, rows, a->d, b->act, b->scratch);
        float *out = sc->letters + list[i].at * sc->L;
        for (int p = 1; p < rows; p++) out[p - 1] = b->act[(size_t)p * sc->U + u];
    }
    free(list);
    return ERR_OK;
}

static int longest_name(const sae_acts *a)
{
    int L = 0;
    for (size_t i = 0; i < a->n_names; i++)
        if (rows_of(a, i) - 1 > L) L = rows_of(a, i) - 1;
    return L;
}

err_code ip_scan_units(ip_scan *sc, const sae_acts *a, const sae_model *sae, int K, int only,
                       bool positive_only)
{
    memset(sc, 0, sizeof *sc);
    const int U = n_units(sae, a->d);
    if (only >= U) return out_of_range(sae ? "feature" : "neuron", only, U);
    if (K < 0 || U <= 0) return err_set(ERR_ARG, "ip_scan_units: K %d, %d units", K, U);
    if ((size_t)K > a->n_names) K = (int)a->n_names;   /* no more names than there are */
    sc->U = U;
    sc->first = only < 0 ? 0 : only;
    sc->n = only < 0 ? U : 1;
    sc->L = longest_name(a);
    scan_bufs b = { 0 };
    sc->active = calloc((size_t)U, sizeof *sc->active);
    err_code e = sc->active ? ERR_OK : err_set(ERR_NOMEM, "out of memory for %d units", U);
    if (!e) e = tk_init(&sc->best, sc->n, K);
    if (!e) e = bufs_init(&b, sae, U, sc->L);
    if (!e) {
        scan_pass(sc, a, sae, &b, positive_only);
        tk_sort(&sc->best);
        e = fill_letters(sc, a, sae, &b);
    }
    bufs_free(&b);
    if (e) ip_scan_free(sc);
    return e;
}

/* ---- Logits ---------------------------------------------------------------- */

err_code ip_feature_logits(const sae_model *s, const tf_model *tf, int feature, float *logit,
                           int *order, int *n)
{
    const int F = s->c.n_features, V = tf_vocab_size(tf);
    if (feature < 0 || feature >= F) return out_of_range("feature", feature, F);
    ranked *r = malloc((size_t)V * sizeof *r);
    if (!r) return err_set(ERR_NOMEM, "out of memory for %d logits", V);
    sae_feature_logits(s, tf, feature, logit);
    *n = rank_tokens(logit, V, order, r);
    free(r);
    return ERR_OK;
}

void ip_lens_free(ip_lens *l)
{
    if (!l) return;
    free(l->tok);
    free(l->prob);
    memset(l, 0, sizeof *l);
}

/* The lens at every position of the residual h (T, d) after layer L. */
static void lens_layer(ip_lens *l, const tf_model *tf, const float *h, int L, float *p, int *order, ranked *r)
{
    const int V = tf_vocab_size(tf), d = tf_d_model(tf);
    for (int pos = 0; pos < l->T; pos++) {
        tf_unembed(tf, h + (size_t)pos * d, p);
        smp_log_softmax(p, V, p);
        rank_tokens(p, V, order, r);
        size_t at = ip_lens_at(l, L, pos);
        for (int k = 0; k < l->K; k++) {
            l->tok[at + k] = order[k];
            l->prob[at + k] = exp(p[order[k]]);
        }
    }
}

err_code ip_logit_lens(ip_lens *out, const tf_model *tf, const int *tok, int n, int K)
{
    memset(out, 0, sizeof *out);
    const int V = tf_vocab_size(tf), NL = tf_n_layers(tf), T = n + 1;
    if (n < 0 || T > tf_max_len(tf) || K < 0)
        return err_set(ERR_ARG, "logit lens: %d letters (at most %d), K %d", n, tf_max_len(tf) - 1, K);
    *out = (ip_lens){ .n_layers = NL, .T = T, .K = K < V - TOK_EOS ? K : V - TOK_EOS };
    size_t cells = (size_t)(NL + 1) * T * out->K + 1;
    int *x = malloc((size_t)T * sizeof *x), *order = malloc((size_t)V * sizeof *order);
    float *p = malloc((size_t)V * sizeof *p);
    ranked *r = malloc((size_t)V * sizeof *r);
    out->tok = malloc(cells * sizeof *out->tok);
    out->prob = malloc(cells * sizeof *out->prob);
    ag_tape t;
    bool tape = false;
    err_code e = ERR_OK;
    if (!x || !order || !p || !r || !out->tok || !out->prob)
        e = err_set(ERR_NOMEM, "out of memory for the logit lens");
    if (!e && !(e = ag_init(&t, LENS_TAPE))) tape = true;
    if (!e) {
        t.grad = false;
        x[0] = TOK_SOS;
        memcpy(x + 1, tok, (size_t)n * sizeof *x);
    }
    for (int L = 0; !e && L <= NL; L++) {
        ag_reset(&t);
        tensor *h = tf_residual(tf, &t, x, 1, T, L);
        if (!h) e = ERR_ARG;
        else lens_layer(out, tf, h->data, L, p, order, r);
    }
    if (tape) ag_free(&t);
    free(x);
    free(order);
    free(p);
    free(r);
    if (e) ip_lens_free(out);
    return e;
}

/* ---- Embeddings -------------------------------------------------------------- */

/* The leading eigenvector of the symmetric matrix C (d, d) by power
 * iteration, into v (d); deterministic start, sign fixed so that the
 * largest component is positive. */
static void leading_eigenvector(const double *C, int d, double *v, double *tmp)
{
    for (int i = 0; i < d; i++) v[i] = 1.0 + 0.01 * i;
    for (int it = 0; it < POWER_ITERS; it++) {
        double norm = 0;
        for (int i = 0; i < d; i++) {
            tmp[i] = 0;
            for (int j = 0; j < d; j++) tmp[i] += C[(size_t)i * d + j] * v[j];
            norm += tmp[i] * tmp[i];
        }
        norm = sqrt(norm);
        if (norm == 0) return;
        for (int i = 0; i < d; i++) v[i] = tmp[i] / norm;
    }
    int big = 0;
    for (int i = 1; i < d; i++)
        if (fabs(v[i]) > fabs(v[big])) big = i;
    if (v[big] < 0)
        for (int i = 0; i < d; i++) v[i] = -v[i];
}

/* C (d, d) -= lambda v v^T, lambda = v^T C v: the component along v gone. */
static void deflate(double *C, int d, const double *v)
{
    double lambda = 0;
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) lambda += v[i] * C[(size_t)i * d + j] * v[j];
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) C[(size_t)i * d + j] -= lambda * v[i] * v[j];
}

err_code ip_pca2_axes(const float *E, int n, int d, double *mean, double *axes)
{
    if (n < 1 || d < 1) return err_set(ERR_ARG, "ip_pca2: %d rows of %d", n, d);
    double *C = calloc((size_t)d * d, sizeof *C), *tmp = malloc((size_t)d * sizeof *tmp);
    if (!C || !tmp) {
        free(C);
        free(tmp);
        return err_set(ERR_NOMEM, "out of memory for the PCA of %d dimensions", d);
    }
    memset(mean, 0, (size_t)d * sizeof *mean);
    for (int r = 0; r < n; r++)
        for (int j = 0; j < d; j++) mean[j] += E[(size_t)r * d + j] / n;
    for (int r = 0; r < n; r++)   /* C = sum of the centred rows' outer products */
        for (int i = 0; i < d; i++)
            for (int j = 0; j < d; j++)
                C[(size_t)i * d + j] += (E[(size_t)r * d + i] - mean[i]) * (E[(size_t)r * d + j] - mean[j]);
    for (int k = 0; k < 2; k++) {
        leading_eigenvector(C, d, axes + (size_t)k * d, tmp);
        deflate(C, d, axes + (size_t)k * d);
    }
    free(C);
    free(tmp);
    return ERR_OK;
}

void ip_pca2_project(const double *mean, const double *axes, int d, const float *x, double xy[2])
{
    for (int k = 0; k < 2; k++) {
        double s = 0;
        for (int j = 0; j < d; j++) s += (x[j] - mean[j]) * axes[(size_t)k * d + j];
        xy[k] = s;
    }
}

err_code ip_pca2(const float *E, int n, int d, double *xy)
{
    if (n < 0 || d < 1) return err_set(ERR_ARG, "ip_pca2: %d rows of %d", n, d);
    if (n == 0) return ERR_OK;
    double *mean = malloc((size_t)d * sizeof *mean), *axes = malloc(2 * (size_t)d * sizeof *axes);
    err_code e = mean && axes ? ip_pca2_axes(E, n, d, mean, axes)
                              : err_set(ERR_NOMEM, "out of memory for the PCA of %d dimensions", d);
    for (int r = 0; !e && r < n; r++) ip_pca2_project(mean, axes, d, E + (size_t)r * d, xy + 2 * r);
    free(mean);
    free(axes);
    return e;
}

static double dot(const float *a, const float *b, int d)
{
    double s = 0;
    for (int j = 0; j < d; j++) s += (double)a[j] * b[j];
    return s;
}

err_code ip_cosine_neighbours(const float *E, int n, int d, int K, int *nb, float *cos)
{
    if (n < 0 || d < 1 || K < 0 || K > (n > 0 ? n - 1 : 0))
        return err_set(ERR_ARG, "ip_cosine_neighbours: %d neighbours among %d rows", K, n);
    double *norm = malloc(((size_t)n + 1) * sizeof *norm);
    ranked *r = malloc(((size_t)n + 1) * sizeof *r);
    int *order = malloc(((size_t)n + 1) * sizeof *order);
    err_code e = ERR_OK;
    if (!norm || !r || !order) {
        e = err_set(ERR_NOMEM, "out of memory for the neighbours of %d rows", n);
        goto done;
    }
    for (int i = 0; i < n; i++) norm[i] = sqrt(dot(E + (size_t)i * d, E + (size_t)i * d, d));
    for (int i = 0; i < n; i++) {
        for (int q = 0; q < n; q++) {   /* the row itself ranks last */
            double s = dot(E + (size_t)i * d, E + (size_t)q * d, d);
            float c = q == i ? -INFINITY : norm[i] > 0 && norm[q] > 0 ? (float)(s / (norm[i] * norm[q])) : 0.0f;
            r[q] = (ranked){ c, q };
        }
        rank_sorted(r, n, order);
        for (int k = 0; k < K; k++) {
            nb[(size_t)i * K + k] = order[k];
            cos[(size_t)i * K + k] = (float)r[k].v;
        }
    }
done:
    free(norm);
    free(r);
    free(order);
    return e;
}
