/* dataset.c - the names dataset, its length order and distinct names, its
 * seeded split of distinct names, and batches trimmed to their longest
 * name; see dataset.h. */
#include "dataset.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

static size_t line_len(const txt_lines *l, size_t i) { return l->start[i + 1] - l->start[i]; }
static int    line_kept(const txt_lines *l, size_t i) { return line_len(l, i) >= DS_MIN_NAME_LEN; }
static const char *display_name(const char *path) { return strcmp(path, "-") == 0 ? "stdin" : path; }

/* Space for n names of `total` tokens in all; d->n is set, offsets not. */
static err_code names_alloc(ds_names *d, size_t n, size_t total)
{
    *d = (ds_names){ 0 };
    d->tok = malloc((total ? total : 1) * sizeof *d->tok);
    d->start = malloc((n + 1) * sizeof *d->start);
    if (!d->tok || !d->start) {
        ds_free(d);
        return err_set(ERR_NOMEM, "out of memory for the names");
    }
    d->n = n;
    d->start[0] = 0;
    return ERR_OK;
}

static void names_set_max_len(ds_names *d)
{
    d->max_len = 0;
    for (size_t i = 0; i < d->n; i++)
        if (ds_len(d, i) > d->max_len) d->max_len = ds_len(d, i);
}

/* Encode the kept lines.  An unknown character is reported as
 * "NAME:LINE: character ..." (or "line LINE: ..." when name is NULL). */
static err_code encode_lines(ds_names *out, const txt_lines *lines, const txt_vocab *v, const char *name)
{
    size_t n = 0, total = 0;
    for (size_t i = 0; i < lines->n; i++)
        if (line_kept(lines, i)) n++, total += line_len(lines, i);
    err_code e = names_alloc(out, n, total);
    for (size_t i = 0, k = 0; !e && i < lines->n; i++) {
        if (!line_kept(lines, i)) continue;
        size_t len = line_len(lines, i);
        e = txt_vocab_encode(v, lines->cp + lines->start[i], len, out->tok + out->start[k]);
        if (e) {
            if (name) err_set(e, "%s:%zu: %s", display_name(name), i + 1, err_msg());
            else err_set(e, "line %zu: %s", i + 1, err_msg());
        }
        out->start[k + 1] = out->start[k] + len;
        k++;
    }
    if (e) {
        ds_free(out);
        return e;
    }
    names_set_max_len(out);
    return ERR_OK;
}

err_code ds_from_lines(ds_names *out, const txt_lines *lines, const txt_vocab *v)
{
    if (!out) return err_set(ERR_ARG, "ds_from_lines: no output");
    *out = (ds_names){ 0 };
    if (!lines || !v) return err_set(ERR_ARG, "ds_from_lines: missing argument");
    return encode_lines(out, lines, v, NULL);
}

void ds_free(ds_names *d)
{
    if (!d) return;
    free(d->tok);
    free(d->start);
    *d = (ds_names){ 0 };
}

/* ---- length order --------------------------------------------------------- */

typedef struct by_len { int len; size_t i; } by_len;

static int by_len_cmp(const void *pa, const void *pb)
{
    const by_len *a = pa, *b = pb;
    if (a->len != b->len) return a->len < b->len ? -1 : 1;
    return (a->i > b->i) - (a->i < b->i);
}

err_code ds_length_order(const ds_names *d, size_t **order)
{
    if (!order) return err_set(ERR_ARG, "ds_length_order: no output");
    *order = NULL;
    if (!d) return err_set(ERR_ARG, "ds_length_order: no names");
    by_len *key = malloc((d->n ? d->n : 1) * sizeof *key);
    size_t *o = malloc((d->n ? d->n : 1) * sizeof *o);
    if (!key || !o) {
        free(key);
        free(o);
        return err_set(ERR_NOMEM, "out of memory ordering %zu names", d->n);
    }
    for (size_t i = 0; i < d->n; i++) key[i] = (by_len){ ds_len(d, i), i };
    qsort(key, d->n, sizeof *key, by_len_cmp);
    for (size_t i = 0; i < d->n; i++) o[i] = key[i].i;
    free(key);
    *order = o;
    return ERR_OK;
}

/* ---- loading and splitting ---------------------------------------------- */

/* The vocabulary of the kept lines of a and b: characters only seen in
 * skipped lines would be tokens no name ever uses. */
static err_code build_vocab(txt_vocab *v, const txt_lines *a, const txt_lines *b)
{
    const txt_lines *files[2] = { a, b };
    size_t total = 0;
    for (int f = 0; f < 2; f++)
        for (size_t i = 0; i < files[f]->n; i++)
            if (line_kept(files[f], i)) total += line_len(files[f], i);
    int32_t *cp = malloc((total ? total : 1) * sizeof *cp);
    if (!cp) return err_set(ERR_NOMEM, "out of memory building the vocabulary");
    size_t n = 0;
    for (int f = 0; f < 2; f++)
        for (size_t i = 0; i < files[f]->n; i++)
            if (line_kept(files[f], i)) {
                memcpy(cp + n, files[f]->cp + files[f]->start[i], line_len(files[f], i) * sizeof *cp);
                n += line_len(files[f], i);
            }
    err_code e = txt_vocab_build(v, cp, n);
    free(cp);
    return e;
}

static err_code vocab_copy(txt_vocab *dst, const txt_vocab *src)
{
    *dst = (txt_vocab){ 0 };
    if (!src || !src->cp || src->size < TOK_FIRST) return err_set(ERR_ARG, "no vocabulary given");
    dst->cp = malloc((size_t)src->size * sizeof *dst->cp);
    if (!dst->cp) return err_set(ERR_NOMEM, "out of memory for the vocabulary");
    memcpy(dst->cp, src->cp, (size_t)src->size * sizeof *dst->cp);
    dst->size = src->size;
    return ERR_OK;
}

/* Copy the rows i of src with side[i] == want into dst, in order. */
static err_code copy_rows(ds_names *dst, const ds_names *src, const uint8_t *side, uint8_t want)
{
    size_t n = 0, total = 0;
    for (size_t i = 0; i < src->n; i++)
        if (side[i] == want) n++, total += (size_t)ds_len(src, i);
    err_code e = names_alloc(dst, n, total);
    if (e) return e;
    for (size_t i = 0, k = 0; i < src->n; i++) {
        if (side[i] != want) continue;
        memcpy(dst->tok + dst->start[k], ds_name(src, i), (size_t)ds_len(src, i) * sizeof *dst->tok);
        dst->start[k + 1] = dst->start[k] + (size_t)ds_len(src, i);
        k++;
    }
    names_set_max_len(dst);
    return ERR_OK;
}

typedef struct name_ref { const int *tok; int len; size_t row; } name_ref;

/* Lexicographic order on tokens, the same as on code points since token
 * numbers ascend with code points in every vocabulary: the split does not
 * depend on which vocabulary encoded the names. */
static int name_cmp(const void *pa, const void *pb)
{
    const name_ref *a = pa, *b = pb;
    int len = a->len < b->len ? a->len : b->len;
    for (int i = 0; i < len; i++)
        if (a->tok[i] != b->tok[i]) return a->tok[i] < b->tok[i] ? -1 : 1;
    return (a->len > b->len) - (a->len < b->len);
}

/* group[row] (all->n) = index of the row's name among the distinct names,
 * in sorted order, so that the ids do not depend on the order of the file;
 * *n_distinct = their number. */
static err_code distinct_groups(const ds_names *all, size_t *group, size_t *n_distinct)
{
    const size_t n = all->n;
    name_ref *sorted = malloc((n ? n : 1) * sizeof *sorted);
    if (!sorted) return err_set(ERR_NOMEM, "out of memory sorting %zu names", n);
    for (size_t i = 0; i < n; i++) sorted[i] = (name_ref){ ds_name(all, i), ds_len(all, i), i };
    qsort(sorted, n, sizeof *sorted, name_cmp);
    size_t nd = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && name_cmp(&sorted[i - 1], &sorted[i]) != 0) nd++;
        group[sorted[i].row] = nd;
    }
    *n_distinct = n ? nd + 1 : 0;
    free(sorted);
    return ERR_OK;
}

err_code ds_distinct(ds_names *out, const ds_names *all)
{
    if (!out) return err_set(ERR_ARG, "ds_distinct: no output");
    *out = (ds_names){ 0 };
    if (!all) return err_set(ERR_ARG, "ds_distinct: no names");
    const size_t n = all->n;
    size_t nd = 0, *group = malloc((n ? n : 1) * sizeof *group);
    uint8_t *first = malloc(n ? n : 1), *seen = calloc(n ? n : 1, 1);
    err_code e = group && first && seen ? distinct_groups(all, group, &nd)
                                        : err_set(ERR_NOMEM, "out of memory for %zu names", n);
    for (size_t i = 0; !e && i < n; i++) {   /* in file order: the first row of each name */
        first[i] = !seen[group[i]];
        seen[group[i]] = 1;
    }
    if (!e) e = copy_rows(out, all, first, 1);
    free(group);
    free(first);
    free(seen);
    return e;
}

/* Split `all` by distinct names: shuffle the distinct names with the seed,
 * the first round(val_frac * distinct) go to validation, and every row
 * follows its name. */
static err_code split(ds_names *train, ds_names *val, const ds_names *all,
                      uint64_t seed, double val_frac)
{
    size_t n = all->n, nd = 0;
    size_t *group = malloc(n * sizeof *group);
    size_t *order = malloc(n * sizeof *order);
    uint8_t *is_val = calloc(n, 1), *side = malloc(n);
    err_code e = group && order && is_val && side ? distinct_groups(all, group, &nd)
                 : err_set(ERR_NOMEM, "out of memory splitting the names");
    if (e) goto done;

    for (size_t g = 0; g < nd; g++) order[g] = g;
    rng r;
    rng_seed(&r, seed);
    rng_shuffle(&r, order, nd);
    size_t n_val = (size_t)llround(val_frac * (double)nd);
    if (n_val == 0 || n_val == nd) {
        e = err_set(ERR_ARG, "a validation fraction of %g of %zu distinct names leaves the %s set empty",
                    val_frac, nd, n_val == 0 ? "validation" : "training");
        goto done;
    }
    for (size_t k = 0; k < n_val; k++) is_val[order[k]] = 1;
    for (size_t i = 0; i < n; i++) side[i] = is_val[group[i]];
    e = copy_rows(train, all, side, 0);
    if (!e) e = copy_rows(val, all, side, 1);
done:
    free(group);
    free(order);
    free(is_val);
    free(side);
    return e;
}

static err_code require_names(const ds_names *d, const char *path)
{
    if (d->n > 0) return ERR_OK;
    return err_set(ERR_FORMAT, "%s: no names of at least %d characters", display_name(path),
                   DS_MIN_NAME_LEN);
}

/* ds_load and ds_load_with_vocab; fixed == NULL builds the vocabulary. */
static err_code load(ds_corpus *c, const txt_vocab *fixed, const char *data_path,
                     const char *val_path, uint64_t split_seed, double val_frac)
{
    if (!c) return err_set(ERR_ARG, "ds_load: no output");
    *c = (ds_corpus){ .split_seed = split_seed };
    if (!data_path) return err_set(ERR_ARG, "no data file given");
    if (!val_path && !(val_frac > 0 && val_frac < 1))
        return err_set(ERR_ARG, "the validation fraction must be between 0 and 1, not %g", val_frac);

    txt_lines data = { 0 }, val = { 0 };
    ds_names all = { 0 };
    err_code e = txt_read_lines(data_path, &data);
    if (!e && val_path) e = txt_read_lines(val_path, &val);
    if (!e) e = fixed ? vocab_copy(&c->vocab, fixed) : build_vocab(&c->vocab, &data, &val);
    if (!e) e = encode_lines(&all, &data, &c->vocab, data_path);
    if (!e) e = require_names(&all, data_path);
    if (!e && val_path) {
        e = encode_lines(&c->val, &val, &c->vocab, val_path);
        if (!e) e = require_names(&c->val, val_path);
        if (!e) {
            c->train = all;   /* the whole data file trains */
            all = (ds_names){ 0 };
        }
    } else if (!e) {
        e = split(&c->train, &c->val, &all, split_seed, val_frac);
    }
    ds_free(&all);
    txt_lines_free(&data);
    txt_lines_free(&val);
    if (e) ds_corpus_free(c);
    return e;
}

err_code ds_load(ds_corpus *c, const char *data_path, const char *val_path,
                 uint64_t split_seed, double val_frac)
{
    return load(c, NULL, data_path, val_path, split_seed, val_frac);
}

err_code ds_load_with_vocab(ds_corpus *c, const txt_vocab *v, const char *data_path,
                            const char *val_path, uint64_t split_seed, double val_frac)
{
    if (!v) return err_set(ERR_ARG, "ds_load_with_vocab: no vocabulary");
    return load(c, v, data_path, val_path, split_seed, val_frac);
}

void ds_corpus_free(ds_corpus *c)
{
    if (!c) return;
    txt_vocab_free(&c->vocab);
    ds_free(&c->train);
    ds_free(&c->val);
}

/* ---- folds ---------------------------------------------------------------- */

/* Salt of the fold hash, so that folds do not follow the split, which is
 * drawn from the same seed. */
static const uint64_t DS_FOLD_SALT = 0xD1B54A32D192ED03ull;

int ds_fold_of(const txt_vocab *v, const int *tok, int len, uint64_t seed, int n_folds)
{
    uint64_t h = rng_at(seed ^ DS_FOLD_SALT, (uint64_t)len);
    for (int i = 0; i < len; i++) h = rng_at(h, (uint64_t)(uint32_t)v->cp[tok[i]]);
    return (int)(h % (uint64_t)n_folds);
}

static err_code check_fold(int k, int n_folds)
{
    if (n_folds < 2 || n_folds > DS_MAX_FOLDS || k < 0 || k >= n_folds)
        return err_set(ERR_ARG, "fold %d/%d: need 0 <= K < N and 2 <= N <= %d", k, n_folds,
                       DS_MAX_FOLDS);
    return ERR_OK;
}

err_code ds_fold_parse(const char *s, int *k, int *n_folds)
{
    char tail;
    if (!s || sscanf(s, "%d/%d%c", k, n_folds, &tail) != 2 || *s < '0' || *s > '9')
        return err_set(ERR_ARG, "'%s' is not a fold K/N", s ? s : "");
    return check_fold(*k, *n_folds);
}

err_code ds_drop_fold(ds_corpus *c, int k, int n_folds)
{
    err_code e = check_fold(k, n_folds);
    if (e) return e;
    const ds_names *d = &c->train;
    uint8_t *side = malloc(d->n ? d->n : 1);
    if (!side) return err_set(ERR_NOMEM, "out of memory for the folds");
    for (size_t i = 0; i < d->n; i++)
        side[i] = ds_fold_of(&c->vocab, ds_name(d, i), ds_len(d, i), c->split_seed, n_folds) == k;
    ds_names kept;
    e = copy_rows(&kept, d, side, 0);
    free(side);
    if (e) return e;
    if (kept.n == 0) {
        ds_free(&kept);
        return err_set(ERR_ARG, "fold %d/%d leaves no training name", k, n_folds);
    }
    kept.max_len = d->max_len;   /* see dataset.h */
    ds_free(&c->train);
    c->train = kept;
    return ERR_OK;
}

/* ---- batches ------------------------------------------------------------ */

/* Make room for (B, T); the buffers only ever grow. */
static err_code batch_reserve(ds_batch *b, int B, int T)
{
    if (B <= b->cap_B && T <= b->cap_T) return ERR_OK;
    int cap_B = B > b->cap_B ? B : b->cap_B, cap_T = T > b->cap_T ? T : b->cap_T;
    size_t count = (size_t)cap_B * (size_t)cap_T;
    int *x = realloc(b->x, count * sizeof *x);
    if (!x) return err_set(ERR_NOMEM, "out of memory for a batch");
    b->x = x;
    int *y = realloc(b->y, count * sizeof *y);
    if (!y) return err_set(ERR_NOMEM, "out of memory for a batch");
    b->y = y;
    b->cap_B = cap_B;
    b->cap_T = cap_T;
    return ERR_OK;
}

err_code ds_batch_fill(ds_batch *b, const ds_names *d, const size_t *idx, int B)
{
    if (!b || !d || !idx || B <= 0) return err_set(ERR_ARG, "ds_batch_fill: bad arguments");
    int longest = 0;
    for (int i = 0; i < B; i++) {
        if (idx[i] >= d->n)
            return err_set(ERR_ARG, "name %zu out of range (%zu names)", idx[i], d->n);
        if (ds_len(d, idx[i]) > longest) longest = ds_len(d, idx[i]);
    }
    int T = longest + 1;   /* room for <SOS> in x and <EOS> in y */
    if ((size_t)B * (size_t)T > (size_t)INT32_MAX) return err_set(ERR_ARG, "batch too large");
    err_code e = batch_reserve(b, B, T);
    if (e) return e;

    b->B = B;
    b->T = T;
    b->n_tokens = 0;
    memset(b->x, 0, (size_t)B * (size_t)T * sizeof *b->x);   /* TOK_PAD == 0 */
    memset(b->y, 0, (size_t)B * (size_t)T * sizeof *b->y);
    for (int i = 0; i < B; i++) {
        int n = ds_len(d, idx[i]);
        const int *name = ds_name(d, idx[i]);
        int *x = b->x + (size_t)i * T, *y = b->y + (size_t)i * T;
        x[0] = TOK_SOS;
        memcpy(x + 1, name, (size_t)n * sizeof *x);
        memcpy(y, name, (size_t)n * sizeof *y);
        y[n] = TOK_EOS;
        b->n_tokens += (size_t)n + 1;
    }
    return ERR_OK;
}

void ds_batch_free(ds_batch *b)
{
    if (!b) return;
    free(b->x);
    free(b->y);
    *b = (ds_batch){ 0 };
}

void ds_letter_cdf(const ds_names *d, size_t V, double *cdf)
{
    for (size_t v = 0; v < V; v++) cdf[v] = 0;
    for (size_t i = 0; i < d->start[d->n]; i++) cdf[d->tok[i]] += 1;
    for (size_t v = 1; v < V; v++) cdf[v] += cdf[v - 1];
    for (size_t v = 0; v < V; v++) cdf[v] /= cdf[V - 1];
}

void ds_noise_inputs(ds_batch *b, const double *cdf, size_t V, float p, rng *r)
{
    for (int i = 0; i < b->B; i++)
        for (int t = 1; t < b->T && b->y[(size_t)i * b->T + t]; t++) {
            if (rng_uniform(r) >= p) continue;
            double u = rng_uniform(r);
            size_t v = 0;
            while (v + 1 < V && cdf[v] <= u) v++;
            b->x[(size_t)i * b->T + t] = (int)v;
        }
}
