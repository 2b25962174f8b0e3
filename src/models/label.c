/* label.c - the contexts of every letter and the best label of a unit;
 * see label.h. */
#include "label.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_PER_ROW = 2 * (LB_MAX_BEFORE + 1) + 2, TABLE_MIN = 1 << 12 };

/* ---- The dictionary of contexts (open addressing on their bytes) -------- */

typedef struct dict {
    lb_index *x;
    int      *slot;      /* (cap) context id + 1, 0 = empty */
    size_t    cap;
    int       n_alloc;   /* contexts allocated in x->ctx / x->count */
} dict;

static uint64_t hash_ctx(const lb_context *c)
{
    const unsigned char *p = (const unsigned char *)c;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < sizeof *c; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static err_code dict_grow(dict *d)
{
    size_t cap = d->cap ? 2 * d->cap : TABLE_MIN;
    int *slot = calloc(cap, sizeof *slot);
    if (!slot) return err_set(ERR_NOMEM, "out of memory for %zu contexts", cap);
    for (int i = 0; i < d->x->n; i++) {
        size_t at = hash_ctx(&d->x->ctx[i]) & (cap - 1);
        while (slot[at]) at = (at + 1) & (cap - 1);
        slot[at] = i + 1;
    }
    free(d->slot);
    d->slot = slot;
    d->cap = cap;
    return ERR_OK;
}

/* The id of context c, added when new; -1 with err_set when out of memory. */
static int dict_id(dict *d, const lb_context *c)
{
    if (2 * (size_t)(d->x->n + 1) > d->cap && dict_grow(d)) return -1;
    size_t at = hash_ctx(c) & (d->cap - 1);
    for (; d->slot[at]; at = (at + 1) & (d->cap - 1))
        if (!memcmp(&d->x->ctx[d->slot[at] - 1], c, sizeof *c)) return d->slot[at] - 1;
    lb_index *x = d->x;
    if (x->n == d->n_alloc) {
        int n_alloc = d->n_alloc ? 2 * d->n_alloc : TABLE_MIN;
        lb_context *ctx = realloc(x->ctx, (size_t)n_alloc * sizeof *ctx);
        if (ctx) x->ctx = ctx;
        size_t *count = ctx ? realloc(x->count, (size_t)n_alloc * sizeof *count) : NULL;
        if (!count) {
            err_set(ERR_NOMEM, "out of memory for %d contexts", n_alloc);
            return -1;
        }
        x->count = count;
        d->n_alloc = n_alloc;
    }
    x->ctx[x->n] = *c;
    x->count[x->n] = 0;
    d->slot[at] = x->n + 1;
    return x->n++;
}

/* ---- The contexts of one letter ------------------------------------------ */

/* The token at index i of a name of n letters seen as ^ tok $: i = 0 is ^,
 * i = n + 1 is $. */
static int edge_tok(const int *tok, int n, int i) { return i == 0 ? TOK_SOS : i == n + 1 ? TOK_EOS : tok[i - 1]; }

/* The contexts of letter p (1 .. n) of tok (n) into out; returns how many. */
static int letter_contexts(const int *tok, int n, int p, lb_context *out)
{
    int m = 0;
    for (int after = 0; after <= 1; after++)
        for (int before = 0; before <= LB_MAX_BEFORE && p - before >= 0; before++) {
            lb_context *c = &out[m++];   /* all ints, no padding: hashed and compared by bytes */
            *c = (lb_context){ .kind = LB_CTX_WINDOW, .before = before, .after = after };
            for (int i = p - before, j = 0; i <= p + after; i++) c->tok[j++] = edge_tok(tok, n, i);
        }
    if (p <= LB_MAX_EDGE) out[m++] = (lb_context){ .kind = LB_CTX_FROM_START, .k = p };
    if (n - p < LB_MAX_EDGE) out[m++] = (lb_context){ .kind = LB_CTX_FROM_END, .k = n - p };
    return m;
}

void lb_index_free(lb_index *x)
{
    if (!x) return;
    free(x->first);
    free(x->id);
    free(x->ctx);
    free(x->count);
    memset(x, 0, sizeof *x);
}

err_code lb_index_build(lb_index *x, const ds_names *names, const size_t *row)
{
    memset(x, 0, sizeof *x);
    x->n_rows = row[names->n];
    x->first = calloc(x->n_rows + 1, sizeof *x->first);
    x->id = malloc((x->n_rows * MAX_PER_ROW + 1) * sizeof *x->id);
    dict d = { .x = x };
    err_code e = x->first && x->id ? ERR_OK : err_set(ERR_NOMEM, "out of memory for the contexts of %zu letters", x->n_rows);
    size_t k = 0;
    lb_context ctx[MAX_PER_ROW];
    for (size_t i = 0; !e && i < names->n; i++) {
        const int *tok = ds_name(names, i), n = ds_len(names, i);
        x->first[row[i]] = k;   /* <SOS>: no context */
        for (int p = 1; !e && p <= n; p++) {
            x->first[row[i] + p] = k;
            int m = letter_contexts(tok, n, p, ctx);
            for (int j = 0; j < m && !e; j++) {
                int id = dict_id(&d, &ctx[j]);
                if (id < 0) e = ERR_NOMEM;
                else {
                    x->id[k++] = id;
                    x->count[id]++;
                }
            }
        }
        if (row[i + 1] != row[i] + (size_t)n + 1) e = err_set(ERR_ARG, "lb_index_build: rows of name %zu", i);
    }
    if (!e) x->first[x->n_rows] = k;
    free(d.slot);
    if (e) lb_index_free(x);
    return e;
}

void lb_best(const lb_index *x, const size_t *rows, size_t n, lb_label *out, uint32_t *hits, int *touched)
{
    int n_touched = 0;
    *out = (lb_label){ .context = -1, .fired = n };
    for (size_t i = 0; i < n; i++)
        for (size_t k = x->first[rows[i]]; k < x->first[rows[i] + 1]; k++)
            if (hits[x->id[k]]++ == 0) touched[n_touched++] = x->id[k];
    for (int t = 0; t < n_touched; t++) {
        const int id = touched[t];
        const size_t support = x->count[id];
        const double p = (double)hits[id] / (double)support, r = (double)hits[id] / (double)n;
        const double f1 = 2 * p * r / (p + r);
        if (support >= LB_MIN_SUPPORT && f1 > out->f1)
            *out = (lb_label){ .context = id, .fired = n, .support = support, .hits = hits[id],
                               .precision = p, .recall = r, .f1 = f1 };
        hits[id] = 0;
    }
}

/* Window tokens from..to of c as text ("^" and "$" at the edges). */
static void window_text(const lb_context *c, int from, int to, const txt_vocab *v, char *buf, size_t size)
{
    size_t len = 0;
    char tok[8];
    buf[0] = 0;
    for (int i = from; i <= to && len < size; i++) {
        const char *s = c->tok[i] == TOK_SOS ? "^" : c->tok[i] == TOK_EOS ? "$" : txt_token_str(v, c->tok[i], tok);
        len += (size_t)snprintf(buf + len, size - len, "%s", s);
    }
}

void lb_describe(const lb_index *x, int context, const txt_vocab *v, char *buf, size_t size)
{
    if (context < 0) {
        snprintf(buf, size, "-");
        return;
    }
    const lb_context *c = &x->ctx[context];
    char all[8 * LB_WINDOW], cur[8];
    switch (c->kind) {
    case LB_CTX_FROM_START: snprintf(buf, size, "letter %d", c->k); break;
    case LB_CTX_FROM_END:
        if (c->k == 0) snprintf(buf, size, "last letter");
        else snprintf(buf, size, "letter %d from the end", c->k + 1);
        break;
    default:
        window_text(c, 0, c->before + c->after, v, all, sizeof all);
        if (c->after == 0) {
            snprintf(buf, size, "after \"%s\"", all);
            break;
        }
        window_text(c, c->before, c->before, v, cur, sizeof cur);
        snprintf(buf, size, "\"%s\" of \"%s\"", cur, all);
    }
}
