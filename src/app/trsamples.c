/* trsamples.c - names sampled during training; see trsamples.h. */
#include "trsamples.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kinds.h"

/* Token order: shorter first, then token by token. */
static int cmp_key(const void *pa, const void *pb)
{
    const trs_key *a = pa, *b = pb;
    if (a->len != b->len) return a->len < b->len ? -1 : 1;
    return memcmp(a->tok, b->tok, (size_t)a->len * sizeof *a->tok);
}

err_code trs_init(trs_sampler *t, const tr_session *s, const tr_model *m, long n)
{
    memset(t, 0, sizeof *t);
    const mdl_kind *kind = mdl_find_kind(m->kind);
    if (!kind || !s->have_corpus) return err_set(ERR_ARG, "--samples: %s does not generate names", m->kind);
    t->model = (mdl){ .kind = kind, .impl = m->impl, .vocab = *s->vocab };
    t->n = n;
    const ds_names *d = &s->corpus.train;
    t->n_train = d->n;
    t->sorted = malloc((d->n ? d->n : 1) * sizeof *t->sorted);
    t->names = malloc((size_t)n * sizeof *t->names);
    t->tok = malloc((size_t)n * TRS_MAX_CHARS * sizeof *t->tok);
    t->scratch = malloc(3 * (size_t)s->vocab->size * sizeof *t->scratch);
    if (!t->sorted || !t->names || !t->tok || !t->scratch) {
        trs_free(t);
        return err_set(ERR_NOMEM, "out of memory for --samples");
    }
    for (size_t i = 0; i < d->n; i++) t->sorted[i] = (trs_key){ ds_name(d, i), ds_len(d, i) };
    qsort(t->sorted, d->n, sizeof *t->sorted, cmp_key);
    return ERR_OK;
}

/* The shares of the round's names: sorted (a copy) for the distinct count. */
static err_code measure(trs_sampler *t)
{
    trs_key *k = malloc((size_t)t->n * sizeof *k);
    if (!k) return err_set(ERR_NOMEM, "out of memory for --samples");
    memcpy(k, t->names, (size_t)t->n * sizeof *k);
    qsort(k, (size_t)t->n, sizeof *k, cmp_key);
    double copied = 0, distinct = 0, chars = 0;
    for (long i = 0; i < t->n; i++) {
        copied += bsearch(&k[i], t->sorted, t->n_train, sizeof *t->sorted, cmp_key) != NULL;
        distinct += i == 0 || cmp_key(&k[i], &k[i - 1]) != 0;
        chars += k[i].len;
    }
    free(k);
    t->copied = copied / (double)t->n;
    t->distinct = distinct / (double)t->n;
    t->mean_len = chars / (double)t->n;
    return ERR_OK;
}

err_code trs_sample(trs_sampler *t, uint64_t seed, long step)
{
    t->copied = t->distinct = t->mean_len = NAN;   /* what the log says if this fails */
    rng r;   /* its own: the training rng is never drawn from */
    rng_seed(&r, rng_at(seed ^ 0x73616d706c6573u, (uint64_t)step));
    /* a fresh state each round: the weights changed since the last one */
    mdl_state st;
    err_code rc = mdl_state_new(&st, &t->model);
    if (rc) return rc;
    const smp_config c = SMP_DEFAULTS;
    for (long i = 0; i < t->n; i++) {
        int *tok = t->tok + (size_t)i * TRS_MAX_CHARS;
        int len = mdl_sample_name(&st, &c, &r, NULL, 0, TRS_MAX_CHARS, tok, t->scratch);
        t->names[i] = (trs_key){ tok, len > 0 ? len : 0 };
    }
    mdl_state_free(&st);
    return measure(t);
}

void trs_show(const trs_sampler *t, char *out, size_t cap, size_t width)
{
    size_t used = 0;
    out[0] = '\0';
    for (long i = 0; i < t->n; i++) {
        char name[4 * TRS_MAX_CHARS + 3] = "", tok[8];
        if (i) strcat(name, ", ");
        for (int j = 0; j < t->names[i].len; j++)
            strcat(name, txt_token_str(&t->model.vocab, t->names[i].tok[j], tok));
        size_t len = strlen(name);
        if (used + len > width || used + len >= cap) break;
        memcpy(out + used, name, len + 1);
        used += len;
    }
}

void trs_log_values(const trs_sampler *t, FILE *f)
{
    fprintf(f, "\t%.4f\t%.4f\t%.2f", t->copied, t->distinct, t->mean_len);
}

void trs_free(trs_sampler *t)
{
    free(t->sorted);
    free(t->names);
    free(t->tok);
    free(t->scratch);
    memset(t, 0, sizeof *t);
}
