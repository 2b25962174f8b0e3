/* distill.c - soft targets from out-of-fold teachers; see distill.h. */
#include "distill.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kinds.h"
#include "mix.h"
#include "sampling.h"

typedef struct fold_id { int k, n; uint64_t seed; } fold_id;

/* The fold of the model whose metadata keys start with prefix in f: its own
 * "fold" and "split_seed", or, for a mix, its components' (all the same). */
static err_code model_fold(const ck_file *f, const char *path, const char *prefix, int depth,
                           fold_id *out)
{
    char key[256];
    snprintf(key, sizeof key, "%.200smodel", prefix);
    const char *kind = ck_meta(f, key);
    if (kind && !strcmp(kind, MIX_KIND) && depth < 8) {
        snprintf(key, sizeof key, "%.200sconfig", prefix);
        cJSON *c = cJSON_Parse(ck_meta(f, key) ? ck_meta(f, key) : "");
        const cJSON *nc = cJSON_GetObjectItemCaseSensitive(c, "n_components");
        int n = cJSON_IsNumber(nc) ? nc->valueint : 0;
        cJSON_Delete(c);
        if (n < 1 || n > MIX_MAX_COMPONENTS)
            return err_set(ERR_FORMAT, "%s: a mixture without a valid n_components", path);
        for (int i = 0; i < n; i++) {
            fold_id one;
            char sub[256];
            snprintf(sub, sizeof sub, "%.200scomponents.%d.", prefix, i);
            err_code e = model_fold(f, path, sub, depth + 1, &one);
            if (e) return e;
            if (i > 0 && (one.k != out->k || one.n != out->n || one.seed != out->seed))
                return err_set(ERR_ARG, "%s: its components were trained on different folds "
                               "(%d/%d and %d/%d)", path, out->k, out->n, one.k, one.n);
            *out = one;
        }
        return ERR_OK;
    }
    snprintf(key, sizeof key, "%.200sfold", prefix);
    const char *fold = ck_meta(f, key);
    snprintf(key, sizeof key, "%.200ssplit_seed", prefix);
    const char *seed = ck_meta(f, key);
    char *end = NULL;
    if (!fold || !seed)
        return err_set(ERR_ARG, "%s: not trained with --fold K/N (%s%s has no fold): it saw "
                       "every training name", path, prefix[0] ? "component " : "",
                       prefix[0] ? prefix : "it");
    out->seed = strtoull(seed, &end, 10);
    if (*end || ds_fold_parse(fold, &out->k, &out->n))
        return err_set(ERR_FORMAT, "%s: bad fold '%s' or split_seed '%s'", path, fold, seed);
    return ERR_OK;
}

static bool same_vocab(const txt_vocab *a, const txt_vocab *b)
{
    return a->size == b->size && !memcmp(a->cp, b->cp, (size_t)a->size * sizeof *a->cp);
}

/* Load the teachers, and find the teacher of every fold (by_fold[k], -1 none). */
static err_code open_teachers(const tr_session *s, mdl *t, int *by_fold, int *n_folds)
{
    const tr_options *o = &s->o;
    fold_id first = { 0 };
    for (int k = 0; k < DS_MAX_FOLDS; k++) by_fold[k] = -1;
    for (int i = 0; i < o->n_teachers; i++) {
        fold_id f;
        err_code e = mdl_load(&t[i], o->teacher[i]);
        if (!e) e = model_fold(&t[i].file, o->teacher[i], "", 0, &f);
        if (e) return e;
        if (mix_weighs_known_names(&t[i]))
            return err_set(ERR_ARG, "%s: a mixture weighted by known names (mix --buckets known) "
                           "would teach every training name not to end: mix the teachers with "
                           "--buckets position", o->teacher[i]);
        if (!same_vocab(&t[i].vocab, s->vocab))
            return err_set(ERR_MISMATCH, "%s: another vocabulary (%d tokens) than the training "
                           "data's (%d)", o->teacher[i], t[i].vocab.size, s->vocab->size);
        if (f.seed != o->split_seed)
            return err_set(ERR_ARG, "%s: trained on split seed %" PRIu64 ", not %" PRIu64
                           " (it saw validation names)", o->teacher[i], f.seed, o->split_seed);
        if (i == 0) first = f;
        if (f.n != first.n)
            return err_set(ERR_ARG, "%s: fold %d/%d, but %s is of %d folds", o->teacher[i], f.k,
                           f.n, o->teacher[0], first.n);
        if (by_fold[f.k] >= 0)
            return err_set(ERR_ARG, "%s and %s: two teachers of fold %d/%d",
                           o->teacher[by_fold[f.k]], o->teacher[i], f.k, f.n);
        by_fold[f.k] = i;
    }
    *n_folds = first.n;
    return ERR_OK;
}

/* The teacher of every training name (owner[i]), or the fold left without one. */
static err_code assign(const tr_session *s, const int *by_fold, int n_folds, int *owner)
{
    const ds_names *d = &s->corpus.train;
    for (size_t i = 0; i < d->n; i++) {
        int f = ds_fold_of(s->vocab, ds_name(d, i), ds_len(d, i), s->o.split_seed, n_folds);
        if (by_fold[f] < 0)
            return err_set(ERR_ARG, "no out-of-fold teacher for the training names of fold "
                           "%d/%d (give a teacher trained with --fold %d/%d)", f, n_folds, f,
                           n_folds);
        owner[i] = by_fold[f];
    }
    return ERR_OK;
}

/* out (len + 1, V) = the teacher's next-token distributions along name;
 * for a name longer than the teacher can take (a Transformer sized on less
 * data), the name's own targets (one-hot): it learns from the data alone.
 * Returns whether the teacher scored it. */
static bool score_name(mdl_state *st, const int *name, int len, int V, float *out)
{
    if (len > mdl_max_chars(st->m)) {
        memset(out, 0, (size_t)(len + 1) * (size_t)V * sizeof *out);
        for (int j = 0; j <= len; j++) out[(size_t)j * V + (j < len ? name[j] : TOK_EOS)] = 1;
        return false;
    }
    mdl_start(st);
    for (int j = 0; j <= len; j++) {
        float *p = out + (size_t)j * V, sum = 0;
        mdl_next(st, j ? name[j - 1] : TOK_SOS, p);
        smp_log_softmax(p, V, p);
        for (int v = 0; v < V; v++) sum += p[v] = expf(p[v]);
        for (int v = 0; v < V; v++) p[v] /= sum;   /* rows sum to 1, to rounding */
    }
    return true;
}

static err_code fill(tr_session *s, mdl *t, const int *owner, size_t *too_long)
{
    const ds_names *d = &s->corpus.train;
    const int V = s->vocab->size, n = s->o.n_teachers;
    mdl_state st[TR_MAX_TEACHERS] = { { 0 } };
    err_code e = ERR_OK;
    for (int i = 0; !e && i < n; i++) e = mdl_state_new(&st[i], &t[i]);
    size_t rows = d->start[d->n] + d->n;
    if (!e && !(s->soft = malloc(rows * (size_t)V * sizeof *s->soft)))
        e = err_set(ERR_NOMEM, "out of memory for the teachers' targets (%zu x %d)", rows, V);
    for (size_t i = 0; !e && i < d->n; i++)
        *too_long += !score_name(&st[owner[i]], ds_name(d, i), ds_len(d, i), V,
                                 s->soft + tr_soft_row(d, i) * (size_t)V);
    for (int i = 0; i < n; i++) mdl_state_free(&st[i]);
    if (e) {
        free(s->soft);
        s->soft = NULL;
    }
    return e;
}

err_code dst_soft_targets(tr_session *s, size_t *too_long)
{
    *too_long = 0;
    if (!(s->o.distill_weight > 0) || !s->o.n_teachers) return ERR_OK;
    mdl t[TR_MAX_TEACHERS] = { { 0 } };
    int by_fold[DS_MAX_FOLDS], n_folds = 0;
    int *owner = malloc((s->corpus.train.n ? s->corpus.train.n : 1) * sizeof *owner);
    err_code e = owner ? open_teachers(s, t, by_fold, &n_folds)
                       : err_set(ERR_NOMEM, "out of memory for the teachers");
    if (!e) e = assign(s, by_fold, n_folds, owner);
    if (!e) e = fill(s, t, owner, too_long);
    for (int i = 0; i < s->o.n_teachers; i++) mdl_free(&t[i]);
    free(owner);
    return e;
}
