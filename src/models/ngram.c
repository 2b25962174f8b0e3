/* ngram.c - n-gram models with sparse counts; see ngram.h.
 *
 * Keys: a k-token tuple (oldest first) packs into 64 bits as
 *   1 << (k * bits) | t_1 << ((k-1) * bits) | ... | t_k
 * with bits = ceil(log2 V).  The leading 1 marks the length, so no key is 0
 * (0 marks an empty slot) and the empty context (k = 0) is the key 1.
 *
 * What a model keeps, for each order k = 1..n: a hash table of the contexts
 * h seen (k-1 tokens), each pointing at its run of continuations (w, count)
 * in next[k], where count is the raw count of (h w) at the highest order and
 * the continuation count N1+(. h w) below.  A whole next-token distribution
 * then costs one probe and one short run a order, not V probes.
 *
 * Fitting counts the distinct n-grams in a hash table; every lower order
 * comes from them (the distinct (k+1)-grams are the suffixes of the distinct
 * n-grams, and N1+(. h w) counts the distinct (k+1)-grams ending in h w).
 * Loading a checkpoint rebuilds the same tables from the stored n-grams.
 */
#include "ngram.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"

enum { NG_MAX_ORDER = 31 };   /* 63 key bits / at least 2 bits a token */

const char *const ng_smoothing_names[] = { "none", "addk", "kn", NULL };

/* A hash table slot.  Grams: a = raw count, b = continuation count.
 * Contexts: a = start of the run in next[k], b = its length. */
typedef struct ng_entry { uint64_t key; uint32_t a, b; } ng_entry;
typedef struct ng_table { ng_entry *e; size_t cap, n; } ng_table;

/* One continuation w of a context and the count order k interpolates with. */
typedef struct ng_next { uint32_t w, count; } ng_next;

struct ng_model {
    ng_config c;
    int       bits;
    int       support;                     /* S = V - 2: <EOS> and the characters */
    size_t    n_grams;                     /* distinct order-n grams */
    ng_table  ctx[NG_MAX_ORDER + 1];       /* [1..n] */
    ng_next  *next[NG_MAX_ORDER + 1];      /* [1..n] runs of continuations */
    double    D[NG_MAX_ORDER + 1][4];      /* Kneser-Ney discount of order k for counts 1, 2, 3+ */
};

/* ---- hash tables -------------------------------------------------------- */

static size_t slot_of(uint64_t key, size_t mask)
{
    key ^= key >> 33;   /* murmur3 finaliser: keys differ in their low bits */
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    key *= 0xc4ceb9fe1a85ec53ULL;
    key ^= key >> 33;
    return (size_t)key & mask;
}

static const ng_entry *tab_find(const ng_table *t, uint64_t key)
{
    if (!t->cap) return NULL;
    size_t mask = t->cap - 1;
    for (size_t i = slot_of(key, mask);; i = (i + 1) & mask) {
        if (t->e[i].key == key) return &t->e[i];
        if (!t->e[i].key) return NULL;
    }
}

static ng_entry *tab_slot(ng_entry *e, size_t cap, uint64_t key)
{
    size_t mask = cap - 1, i = slot_of(key, mask);
    while (e[i].key && e[i].key != key) i = (i + 1) & mask;
    return &e[i];
}

static err_code tab_grow(ng_table *t)
{
    size_t cap = t->cap ? 2 * t->cap : 1024;
    ng_entry *e = calloc(cap, sizeof *e);
    if (!e) return err_set(ERR_NOMEM, "out of memory for n-gram counts");
    for (size_t i = 0; i < t->cap; i++)
        if (t->e[i].key) *tab_slot(e, cap, t->e[i].key) = t->e[i];
    free(t->e);
    t->e = e;
    t->cap = cap;
    return ERR_OK;
}

/* The entry of key, added with zero counts if absent; NULL when out of memory. */
static ng_entry *tab_get(ng_table *t, uint64_t key)
{
    if (2 * (t->n + 1) > t->cap && tab_grow(t)) return NULL;   /* load <= 1/2 */
    ng_entry *s = tab_slot(t->e, t->cap, key);
    if (!s->key) {
        s->key = key;
        t->n++;
    }
    return s;
}

static void tab_free(ng_table *t)
{
    free(t->e);
    *t = (ng_table){ 0 };
}

/* ---- keys --------------------------------------------------------------- */

static int bits_for(int V)
{
    int b = 1;
    while ((1 << b) < V) b++;
    return b;
}

int ng_max_order(int V)
{
    int n = 63 / bits_for(V);
    return n < NG_MAX_ORDER ? n : NG_MAX_ORDER;
}

static uint64_t pack(const int *tok, int k, int bits)
{
    uint64_t key = 1;
    for (int i = 0; i < k; i++) key = key << bits | (uint64_t)tok[i];
    return key;
}

/* Token i (0 = oldest) of a k-token key. */
static int key_token(uint64_t key, int k, int i, int bits)
{
    return (int)(key >> ((k - 1 - i) * bits) & ((1u << bits) - 1));
}

/* The (k-1)-token suffix of a k-token key: drop the oldest token. */
static uint64_t key_suffix(uint64_t key, int k, int bits)
{
    uint64_t low = (uint64_t)1 << ((k - 1) * bits);
    return (key & (low - 1)) | low;
}

/* ---- counting ----------------------------------------------------------- */

/* The discount of a count at order k; 0 without Kneser-Ney. */
static double discount(const ng_model *m, int k, uint32_t count)
{
    return m->c.smoothing == NG_KN ? m->D[k][count < 3 ? count : 3] : 0.0;
}

/* The discounts of order k for counts 1, 2 and 3+: the fixed --discount,
 * or (modified Kneser-Ney, Chen & Goodman 1998) estimated from the numbers
 * n_c of grams seen exactly c times: Y = n1 / (n1 + 2 n2),
 * D_c = c - (c + 1) Y n_{c+1} / n_c.  An estimate left undefined by a zero
 * n_c falls back to the default discount; each D_c is kept in [0, c] so
 * that every seen gram keeps a non-negative share. */
static void set_discounts(ng_model *m, int k, size_t len)
{
    double n_c[5] = { 0 };
    for (size_t i = 0; i < len; i++)
        if (m->next[k][i].count <= 4) n_c[m->next[k][i].count]++;
    double Y = n_c[1] / (n_c[1] + 2 * n_c[2]);
    for (int c = 1; c <= 3; c++) {
        double D = m->c.discount;
        if (D == NG_DISCOUNT_ESTIMATED) {
            D = c - (c + 1) * Y * n_c[c + 1] / n_c[c];
            if (!isfinite(D)) D = NG_DEFAULT_DISCOUNT;
        }
        m->D[k][c] = fmin(fmax(D, 0.0), c);
    }
}

/* Build ctx[k] and next[k] from the k-grams g: count the continuations of
 * each context, give each context its run, then fill the runs. */
static err_code index_order(ng_model *m, int k, ng_table *g)
{
    ng_table *h = &m->ctx[k];
    for (size_t i = 0; i < g->cap; i++) {
        if (!g->e[i].key) continue;
        ng_entry *c = tab_get(h, g->e[i].key >> m->bits);
        if (!c) return ERR_NOMEM;
        c->b++;
    }
    uint32_t at = 0;
    for (size_t i = 0; i < h->cap; i++) {
        h->e[i].a = at;   /* empty slots too: harmless, never read */
        at += h->e[i].b;
        h->e[i].b = 0;
    }
    m->next[k] = malloc((at ? at : 1) * sizeof *m->next[k]);
    if (!m->next[k]) return err_set(ERR_NOMEM, "out of memory for n-gram counts");
    uint32_t mask = (1u << m->bits) - 1;
    for (size_t i = 0; i < g->cap; i++) {
        const ng_entry *e = &g->e[i];
        if (!e->key) continue;
        ng_entry *c = tab_get(h, e->key >> m->bits);
        m->next[k][c->a + c->b++] = (ng_next){ (uint32_t)(e->key & mask),
                                               k == m->c.order ? e->a : e->b };
    }
    set_discounts(m, k, at);
    return ERR_OK;
}

/* From the distinct n-grams in gram[n] (raw counts in a): the k-grams of
 * every lower order with their continuation counts, then the context
 * tables and runs of every order.  Frees the gram tables. */
static err_code derive(ng_model *m, ng_table *gram)
{
    int n = m->c.order;
    err_code e = ERR_OK;
    m->n_grams = n > 0 ? gram[n].n : 0;
    for (int k = n - 1; !e && k >= 1; k--) {
        const ng_table *up = &gram[k + 1];
        for (size_t i = 0; !e && i < up->cap; i++) {
            if (!up->e[i].key) continue;
            ng_entry *s = tab_get(&gram[k], key_suffix(up->e[i].key, k + 1, m->bits));
            if (s) s->b++;
            else e = ERR_NOMEM;
        }
    }
    for (int k = 1; !e && k <= n; k++) e = index_order(m, k, &gram[k]);
    for (int k = 0; k <= n; k++) tab_free(&gram[k]);
    return e;
}

err_code ng_config_check(const ng_config *c)
{
    int V = c->vocab_size;
    if (V < TOK_FIRST || V > (1 << 16))
        return err_set(ERR_ARG, "a vocabulary of %d tokens is out of range", V);
    int max = ng_max_order(V);
    if (c->order < 0 || c->order > max)
        return err_set(ERR_ARG, "order %d is out of range for a vocabulary of %d tokens "
                       "(0 to %d: the grams must fit a 64-bit key)", c->order, V, max);
    if ((unsigned)c->smoothing > NG_KN) return err_set(ERR_ARG, "unknown smoothing %d", c->smoothing);
    if (!(c->k > 0) || !isfinite(c->k)) return err_set(ERR_ARG, "add-k needs k > 0, not %g", c->k);
    /* D <= 1 <= every count keeps max(c - D, 0) = c - D, so each context sums to 1. */
    if (!(c->discount >= 0 && c->discount <= 1) && c->discount != NG_DISCOUNT_ESTIMATED)
        return err_set(ERR_ARG, "the discount must be in [0, 1], not %g", c->discount);
    return ERR_OK;
}

err_code ng_config_to_json(const ng_config *c, char **json)
{
    char buf[256];
    snprintf(buf, sizeof buf, "{\"vocab_size\":%d,\"order\":%d,\"smoothing\":\"%s\",\"k\":%.17g,"
             "\"discount\":%.17g}", c->vocab_size, c->order,
             (unsigned)c->smoothing <= NG_KN ? ng_smoothing_names[c->smoothing] : "?", c->k,
             c->discount);
    *json = strdup(buf);
    return *json ? ERR_OK : err_set(ERR_NOMEM, "cannot build the ngram config JSON");
}

/* A number of the config object, or NaN when absent or not a number. */
static double config_number(const cJSON *cfg, const char *key)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(cfg, key);
    return cJSON_IsNumber(x) ? x->valuedouble : NAN;
}

err_code ng_config_from_json(ng_config *c, const char *json)
{
    cJSON *cfg = mdl_config_object(json, NG_KIND);
    if (!cfg) return ERR_FORMAT;
    double v = config_number(cfg, "vocab_size"), order = config_number(cfg, "order");
    const cJSON *sm = cJSON_GetObjectItemCaseSensitive(cfg, "smoothing");
    ng_config r = { .k = config_number(cfg, "k"), .discount = config_number(cfg, "discount") };
    int smoothing = -1;
    for (int i = 0; cJSON_IsString(sm) && ng_smoothing_names[i]; i++)
        if (strcmp(sm->valuestring, ng_smoothing_names[i]) == 0) smoothing = i;
    cJSON_Delete(cfg);
    if (!(v >= 0 && v <= INT32_MAX && v == floor(v)) || !(order >= 0 && order <= NG_MAX_ORDER &&
        order == floor(order)) || smoothing < 0 || isnan(r.k) || isnan(r.discount))
        return err_set(ERR_FORMAT, "ngram config: a field is missing or malformed");
    r.vocab_size = (int)v;
    r.order = (int)order;
    r.smoothing = (ng_smoothing)smoothing;
    if (ng_config_check(&r)) return err_prefix(ERR_FORMAT, "ngram config");
    *c = r;
    return ERR_OK;
}

static err_code model_new(ng_model **out, const ng_config *c)
{
    *out = NULL;
    err_code e = ng_config_check(c);
    if (e) return e;
    ng_model *m = calloc(1, sizeof *m);
    if (!m) return err_set(ERR_NOMEM, "out of memory for an n-gram model");
    m->c = *c;
    m->bits = bits_for(c->vocab_size);
    m->support = c->vocab_size - TOK_EOS;
    *out = m;
    return ERR_OK;
}

/* Shift token w into a context of n-1 tokens (oldest first). */
static void push(int *ctx, int n, int w)
{
    if (n < 2) return;
    memmove(ctx, ctx + 1, (size_t)(n - 2) * sizeof *ctx);
    ctx[n - 2] = w;
}

/* Count the n-grams of one name, <SOS>^(n-1) c1 ... cm <EOS>, into g. */
static err_code count_name(const ng_model *m, ng_table *g, const int *tok, int len)
{
    int n = m->c.order, ctx[NG_MAX_ORDER];
    for (int i = 0; i < n - 1; i++) ctx[i] = TOK_SOS;
    for (int t = 0; t <= len; t++) {
        int w = t < len ? tok[t] : TOK_EOS;
        if (w < TOK_FIRST && t < len) return err_set(ERR_ARG, "a name holds a special token");
        if (w >= m->c.vocab_size)
            return err_set(ERR_ARG, "token %d is outside a vocabulary of %d", w, m->c.vocab_size);
        ng_entry *e = tab_get(g, pack(ctx, n - 1, m->bits) << m->bits | (uint64_t)w);
        if (!e) return ERR_NOMEM;
        e->a++;
        push(ctx, n, w);
    }
    return ERR_OK;
}

err_code ng_fit(ng_model **out, const ng_config *c, const ds_names *d)
{
    if (!out || !c || !d) return err_set(ERR_ARG, "ng_fit: NULL argument");
    ng_model *m;
    err_code e = model_new(&m, c);
    if (e) return e;
    /* Counts are stored as I32: a context total is at most the number of targets. */
    if (d->n && d->start[d->n] + d->n > INT32_MAX)
        e = err_set(ERR_ARG, "too many names for 32-bit n-gram counts");
    ng_table gram[NG_MAX_ORDER + 1] = { { 0 } };
    for (size_t i = 0; !e && c->order > 0 && i < d->n; i++)
        e = count_name(m, &gram[c->order], ds_name(d, i), ds_len(d, i));
    if (!e) e = derive(m, gram);
    for (int k = 0; k <= c->order; k++) tab_free(&gram[k]);   /* after an error */
    if (e) {
        ng_free(m);
        return e;
    }
    *out = m;
    return ERR_OK;
}

void ng_free(ng_model *m)
{
    if (!m) return;
    for (int k = 0; k <= NG_MAX_ORDER; k++) {
        tab_free(&m->ctx[k]);
        free(m->next[k]);
    }
    free(m);
}

size_t ng_size(const ng_model *m) { return m ? m->n_grams : 0; }

/* ---- probabilities ------------------------------------------------------ */

/* The run of continuations of the context of order k (the last k-1 tokens
 * of ctx); NULL when that context was never seen. */
static const ng_next *continuations(const ng_model *m, const int *ctx, int k, uint32_t *len)
{
    const ng_entry *h = tab_find(&m->ctx[k], pack(ctx + (m->c.order - k), k - 1, m->bits));
    if (!h) return NULL;
    *len = h->b;
    return m->next[k] + h->a;
}

/* Every smoothing is one interpolation step per order, from the uniform
 * distribution up:
 *   p_k(w) = (alpha(w) + beta p_{k-1}(w)) / z,   z = sum_w alpha(w) + beta
 * which sums to 1 whenever p_{k-1} does.  With c the count of (h w):
 *   none  alpha = c,            beta = 0      (order n only)
 *   addk  alpha = c,            beta = k S    (order n only)
 *   kn    alpha = c - D_k(c),   beta = sum_w D_k(c)   (every order)
 * An unseen context leaves p_{k-1} as it is. */
/* The first order interpolated (order 0 has none: the loops run k = 1..0). */
static int lowest_order(const ng_model *m)
{
    return m->c.smoothing == NG_KN || m->c.order == 0 ? 1 : m->c.order;
}

static double alpha(const ng_model *m, int k, uint32_t count)
{
    return count - discount(m, k, count);
}

/* z and beta of one order, for the run of continuations of its context. */
static void weights(const ng_model *m, int k, const ng_next *run, uint32_t len, double *z,
                    double *beta)
{
    double a = 0, b = 0;
    for (uint32_t i = 0; i < len; i++) {
        a += alpha(m, k, run[i].count);
        b += discount(m, k, run[i].count);
    }
    if (m->c.smoothing == NG_ADDK) b = m->c.k * m->support;
    *z = a + b;
    *beta = b;
}

/* The whole distribution (the model interface, sampling). */
static void dist(const ng_model *m, const int *ctx, double *p)
{
    p[TOK_PAD] = p[TOK_SOS] = 0;
    for (int w = TOK_EOS; w < m->c.vocab_size; w++) p[w] = 1.0 / m->support;
    for (int k = lowest_order(m); k <= m->c.order; k++) {
        uint32_t len;
        double z, beta;
        const ng_next *run = continuations(m, ctx, k, &len);
        if (!run) continue;
        weights(m, k, run, len, &z, &beta);
        for (int w = TOK_EOS; w < m->c.vocab_size; w++) p[w] *= beta / z;
        for (uint32_t i = 0; i < len; i++) p[run[i].w] += alpha(m, k, run[i].count) / z;
    }
}

/* One probability of that distribution (evaluation: no V-long loops). */
static double prob(const ng_model *m, const int *ctx, int w)
{
    if (w < TOK_EOS || w >= m->c.vocab_size) return 0;
    double p = 1.0 / m->support;
    for (int k = lowest_order(m); k <= m->c.order; k++) {
        uint32_t len, i = 0;
        double z, beta;
        const ng_next *run = continuations(m, ctx, k, &len);
        if (!run) continue;
        weights(m, k, run, len, &z, &beta);
        while (i < len && run[i].w != (uint32_t)w) i++;
        p = ((i < len ? alpha(m, k, run[i].count) : 0) + beta * p) / z;
    }
    return p;
}

void ng_dist(const ng_model *m, const int *ctx, double *p) { dist(m, ctx, p); }

double ng_prob(const ng_model *m, const int *ctx, int w) { return prob(m, ctx, w); }

double ng_nll(const ng_model *m, const ds_names *d, size_t *n_pred)
{
    int n = m->c.order, ctx[NG_MAX_ORDER];
    double nll = 0;
    size_t count = 0;
    for (size_t i = 0; i < d->n; i++) {
        const int *tok = ds_name(d, i);
        int len = ds_len(d, i);
        for (int j = 0; j < n - 1; j++) ctx[j] = TOK_SOS;
        for (int t = 0; t <= len; t++) {
            int w = t < len ? tok[t] : TOK_EOS;
            nll -= log(prob(m, ctx, w));
            push(ctx, n, w);
        }
        count += (size_t)len + 1;
    }
    *n_pred = count;
    return nll;
}

/* ---- checkpoints -------------------------------------------------------- */

static int by_key(const void *a, const void *b)
{
    uint64_t x = ((const ng_entry *)a)->key, y = ((const ng_entry *)b)->key;
    return (x > y) - (x < y);
}

/* The distinct n-grams as tensors: grams (N, n) tokens oldest first, sorted
 * by key so that the file does not depend on the hash table, and counts (N). */
static err_code gram_tensors(const ng_model *m, int32_t **grams, int32_t **counts)
{
    int n = m->c.order;
    size_t N = m->n_grams, n_tok = N * (size_t)n, j = 0;
    ng_entry *sorted = malloc((N ? N : 1) * sizeof *sorted);
    *grams = malloc((n_tok ? n_tok : 1) * sizeof **grams);
    *counts = malloc((N ? N : 1) * sizeof **counts);
    if (!sorted || !*grams || !*counts) {
        free(sorted);
        return err_set(ERR_NOMEM, "out of memory saving an n-gram model");
    }
    const ng_table *h = &m->ctx[n];
    for (size_t i = 0; n > 0 && i < h->cap; i++) {
        if (!h->e[i].key) continue;
        const ng_next *run = m->next[n] + h->e[i].a;
        for (uint32_t r = 0; r < h->e[i].b; r++)
            sorted[j++] = (ng_entry){ h->e[i].key << m->bits | run[r].w, run[r].count, 0 };
    }
    qsort(sorted, N, sizeof *sorted, by_key);
    for (size_t r = 0; r < N; r++) {
        for (int t = 0; t < n; t++) (*grams)[r * n + t] = key_token(sorted[r].key, n, t, m->bits);
        (*counts)[r] = (int32_t)sorted[r].a;
    }
    free(sorted);
    return ERR_OK;
}

err_code ng_save(const ng_model *m, const txt_vocab *v, const char *path)
{
    return ng_save_meta(m, v, path, NULL, 0);
}

err_code ng_save_meta(const ng_model *m, const txt_vocab *v, const char *path,
                      const char *const (*meta)[2], int n_meta)
{
    if (!m || !v || !path) return err_set(ERR_ARG, "ng_save: NULL argument");
    int32_t *grams = NULL, *counts = NULL;
    char *config = NULL;
    ck_writer *w = ck_writer_new();
    err_code e = ng_config_to_json(&m->c, &config);
    if (!e) e = mdl_put_meta(w, NG_KIND, config, v);
    for (int i = 0; !e && i < n_meta; i++) e = ck_put_meta(w, meta[i][0], meta[i][1]);
    if (!e) e = gram_tensors(m, &grams, &counts);
    int64_t gshape[2] = { (int64_t)ng_size(m), m->c.order }, cshape[1] = { gshape[0] };
    if (!e) e = ck_put(w, "grams", CK_I32, 2, gshape, grams);
    if (!e) e = ck_put(w, "counts", CK_I32, 1, cshape, counts);
    if (!e) e = ck_write(w, path);
    ck_writer_free(w);
    free(config);
    free(grams);
    free(counts);
    return e;
}

/* One stored n-gram: <SOS> only as leading padding of the context, <EOS>
 * only as the target, <pad> nowhere, a positive count. */
static bool valid_gram(const int32_t *g, int n, int32_t count, int V)
{
    if (count < 1) return false;
    bool padding = true;
    for (int t = 0; t < n - 1; t++) {
        if (g[t] == TOK_SOS && !padding) return false;
        padding = g[t] == TOK_SOS;
        if (g[t] != TOK_SOS && (g[t] < TOK_FIRST || g[t] >= V)) return false;
    }
    return g[n - 1] >= TOK_EOS && g[n - 1] < V;
}

/* Add row r of the stored n-grams to g. */
static err_code add_stored_gram(const ng_model *m, ng_table *g, const int32_t *row, int32_t count,
                                size_t r, const char *path)
{
    int n = m->c.order, tok[NG_MAX_ORDER];
    if (!valid_gram(row, n, count, m->c.vocab_size))
        return err_set(ERR_FORMAT, "%s: n-gram %zu is invalid", path, r);
    for (int t = 0; t < n; t++) tok[t] = row[t];
    ng_entry *s = tab_get(g, pack(tok, n, m->bits));
    if (!s) return ERR_NOMEM;
    if (s->a) return err_set(ERR_FORMAT, "%s: n-gram %zu is stored twice", path, r);
    s->a = (uint32_t)count;
    return ERR_OK;
}

static err_code load_grams(ng_model *m, const ck_file *f, const char *path)
{
    int n = m->c.order;
    const ck_tensor *g = ck_get(f, "grams"), *cnt = ck_get(f, "counts");
    if (!g || !cnt || g->dtype != CK_I32 || cnt->dtype != CK_I32 || g->ndim != 2 ||
        cnt->ndim != 1 || g->shape[1] != n || cnt->shape[0] != g->shape[0])
        return err_set(ERR_FORMAT, "%s: the n-gram tensors 'grams' (N, %d) and 'counts' (N) "
                       "are missing or malformed", path, n);
    const int32_t *grams = g->data, *counts = cnt->data;
    ng_table gram[NG_MAX_ORDER + 1] = { { 0 } };
    uint64_t total = 0;
    err_code e = ERR_OK;
    for (size_t r = 0; !e && n > 0 && r < (size_t)g->shape[0]; r++) {
        e = add_stored_gram(m, &gram[n], grams + r * (size_t)n, counts[r], r, path);
        /* Counts stay I32 when summed, as in a fit. */
        if (!e && (total += (uint64_t)counts[r]) > INT32_MAX)
            e = err_set(ERR_FORMAT, "%s: n-gram counts overflow", path);
    }
    if (!e) e = derive(m, gram);
    for (int k = 0; k <= n; k++) tab_free(&gram[k]);   /* after an error */
    return e;
}

err_code ng_load(ng_model **out, const ck_file *f, const char *path)
{
    *out = NULL;
    const char *json;
    ng_config c;
    ng_model *m;
    err_code e = mdl_read_meta(f, path, NG_KIND, &json, NULL);
    if (e) return e;
    if ((e = ng_config_from_json(&c, json)) || (e = model_new(&m, &c))) return err_prefix(e, path);
    if ((e = load_grams(m, f, path))) {
        ng_free(m);
        return e;
    }
    *out = m;
    return ERR_OK;
}

/* ---- the model interface: the state is the context ---------------------- */

/* The model is opaque and ng_load allocates it, so these are the vtable's
 * functions themselves (model.h's exceptions), not MDL_KIND's wrappers. */
static err_code ng_kind_load(const ck_file *f, const char *path, void **impl)
{
    ng_model *m;
    err_code e = ng_load(&m, f, path);
    *impl = m;
    return e;
}

static void ng_kind_free(void *impl) { ng_free(impl); }

/* The context, and room for one distribution (V doubles). */
typedef struct ng_state { int ctx[NG_MAX_ORDER]; double p[]; } ng_state;

static void *ng_kind_state_new(const void *impl)
{
    const ng_model *m = impl;
    ng_state *s = calloc(1, sizeof *s + (size_t)m->c.vocab_size * sizeof *s->p);
    if (!s) err_set(ERR_NOMEM, "out of memory for an n-gram state");
    return s;
}

static void ng_kind_state_free(void *st) { free(st); }

static void ng_kind_start(const void *impl, void *st)
{
    const ng_model *m = impl;
    ng_state *s = st;
    for (int i = 0; i < m->c.order - 1; i++) s->ctx[i] = TOK_SOS;
}

/* Log-probabilities are logits: their softmax is the distribution itself. */
static void ng_kind_next(const void *impl, void *st, int tok, float *logits)
{
    const ng_model *m = impl;
    ng_state *s = st;
    push(s->ctx, m->c.order, tok);
    dist(m, s->ctx, s->p);
    for (int w = 0; w < m->c.vocab_size; w++)
        logits[w] = s->p[w] > 0 ? (float)log(s->p[w]) : -INFINITY;
}

static int ng_kind_max_len(const void *impl) { return 0; }

/* The longest order whose context (the last k-1 tokens fed) was seen in
 * training: 1 (the unigram's empty context) to the order. */
static int ng_kind_evidence(const void *impl, const void *st)
{
    const ng_model *m = impl;
    const ng_state *s = st;
    uint32_t len;
    int k = m->c.order;
    while (k > 1 && !continuations(m, s->ctx, k, &len)) k--;
    return k;
}

const mdl_kind ng_kind = { MDL_KIND_MEMBERS(ng, NG_KIND), .evidence = ng_kind_evidence };
