/* synth.c - beam search for names that make one SAE feature fire; see
 * synth.h.
 *
 * Every partial name of the beam has the same length t, so a depth runs
 * as one batch (pool, t + 2) through the Transformer without padding: the
 * forward pass gives each child's residual at the SAE's layer (its
 * activation at the new letter) and its next-letter distribution.
 */
#include "synth.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "sampling.h"
#include "text.h"

/* A partial name: <SOS> c_1 .. c_t. */
typedef struct hyp {
    int    *tok;     /* t + 1 tokens (a row of the search's buffer) */
    double  nll;     /* of c_1 .. c_t */
    float   act;     /* highest activation so far, at letter `at` */
    int     at;
    float  *logp;    /* (V) log-probabilities of the next token */
} hyp;

/* A child: parent's index and the token appended, ranked by score. */
typedef struct child {
    int    parent, tok;
    double score;
} child;

typedef struct search {
    const sae_model *s;
    const tf_model  *tf;
    const syn_config *c;
    int      V, d, F, stride;       /* stride: tokens a hyp may hold */
    hyp     *cur, *next;            /* beam x 2, then pool x 2 rows of tokens and logp */
    int      n_cur;
    int     *tok_buf;               /* (2 pool) x stride */
    float   *logp_buf, *f, *rows;   /* (2 pool) x V, pool x (F + scratch), pool x d */
    child   *kids;                  /* beam x V */
    int     *x;                     /* pool x stride: the batch */
    syn_name *best;                 /* count, best first */
    int      n_best;
    ag_tape  tape;
    bool     have_tape;
} search;

static double score_of(const search *S, float act, double nll)
{
    return S->c->weight * act / S->c->act_ref - nll;
}

static int by_score(const void *a, const void *b)
{
    const child *p = a, *q = b;
    if (p->score != q->score) return p->score > q->score ? -1 : 1;
    if (p->parent != q->parent) return p->parent < q->parent ? -1 : 1;
    return p->tok < q->tok ? -1 : p->tok > q->tok;
}

/* The worst J still among the best (-inf while fewer than count). */
static double worst_best(const search *S)
{
    return S->n_best < S->c->count ? -INFINITY : S->best[S->n_best - 1].score;
}

/* The kept name that reaches its peak at the same letter after the same
 * letters as h, or -1. */
static int same_peak(const search *S, const hyp *h)
{
    for (int i = 0; i < S->n_best; i++) {
        const syn_name *b = &S->best[i];
        if (b->at == h->at && !memcmp(b->tok, h->tok + 1, (size_t)h->at * sizeof *b->tok)) return i;
    }
    return -1;
}

/* Offer a finished name (its characters are h->tok[1 .. n]) on which the
 * feature fires.  Of names
 * that share their letters up to the peak, only the best is kept, so that
 * the list is not one prefix with many endings. */
static err_code offer(search *S, const hyp *h, int n, double nll)
{
    double J = score_of(S, h->act, nll);
    if (n < SYN_MIN_CHARS || !(h->act > 0) || J <= worst_best(S)) return ERR_OK;
    int dup = same_peak(S, h);
    if (dup >= 0 && S->best[dup].score >= J) return ERR_OK;
    if (S->c->keep && !S->c->keep(S->c->keep_ctx, h->tok + 1, n)) return ERR_OK;
    if (dup >= 0) {   /* the better name replaces it */
        free(S->best[dup].tok);
        memmove(S->best + dup, S->best + dup + 1, (size_t)(S->n_best - dup - 1) * sizeof *S->best);
        S->best[--S->n_best].tok = NULL;
    }
    int i = S->n_best < S->c->count ? S->n_best++ : S->n_best - 1;
    free(S->best[i].tok);   /* the worst, dropped (NULL on a free slot) */
    int *tok = malloc((size_t)(n ? n : 1) * sizeof *tok);
    if (!tok) return err_set(ERR_NOMEM, "out of memory");
    memcpy(tok, h->tok + 1, (size_t)n * sizeof *tok);
    syn_name nm = { .tok = tok, .n = n, .act = h->act, .at = h->at, .nll = nll, .score = J };
    for (; i > 0 && S->best[i - 1].score < J; i--) S->best[i] = S->best[i - 1];
    S->best[i] = nm;
    return ERR_OK;
}

/* Forward the batch S->x (B, T): each row's activation at its last
 * position and its next-token log-probabilities into hyp rows out[0..B). */
static err_code forward(search *S, int B, int T, hyp *out)
{
    ag_reset(&S->tape);
    const int L = S->s->c.layer, d = S->d, V = S->V;
    tensor *h = tf_residual(S->tf, &S->tape, S->x, B, T, L);
    if (!h) return ERR_ARG;
    for (int b = 0; b < B; b++)
        memcpy(S->rows + (size_t)b * d, h->data + ((size_t)b * T + T - 1) * d, (size_t)d * sizeof *S->rows);
    sae_encode(S->s, S->rows, B, S->f, S->f + (size_t)B * S->F);
    tensor *logits = tf_logits_from(S->tf, &S->tape, h, L, B, T);
    if (!logits) return ERR_ARG;
    for (int b = 0; b < B; b++) {
        smp_log_softmax(logits->data + ((size_t)b * T + T - 1) * V, V, out[b].logp);
        if (T > 1 && S->f[(size_t)b * S->F + S->c->feature] > out[b].act) {
            out[b].act = S->f[(size_t)b * S->F + S->c->feature];
            out[b].at = T - 1;
        }
    }
    return ERR_OK;
}

/* One depth from names of t characters: offer their <EOS> children, then
 * keep the best beam of their character children (none at the limit). */
static err_code step(search *S, int t, int limit)
{
    const int V = S->V, W = S->c->beam, pool = W * SYN_POOL_PER_BEAM;
    int n_kids = 0;
    for (int i = 0; i < S->n_cur; i++) {
        hyp *h = &S->cur[i];
        err_code e = isfinite(h->logp[TOK_EOS]) ? offer(S, h, t, h->nll - h->logp[TOK_EOS]) : ERR_OK;
        if (e) return e;
        for (int v = TOK_EOS + 1; t < limit && v < V; v++) {
            double score = score_of(S, h->act, h->nll - h->logp[v]);
            /* even one a_ref more activation would not reach the best kept */
            if (isfinite(h->logp[v]) && score + S->c->weight > worst_best(S))
                S->kids[n_kids++] = (child){ .parent = i, .tok = v, .score = score };
        }
    }
    qsort(S->kids, (size_t)n_kids, sizeof *S->kids, by_score);
    int B = n_kids < pool ? n_kids : pool;
    for (int b = 0; b < B; b++) {
        const child *k = &S->kids[b];
        const hyp *p = &S->cur[k->parent];
        hyp *h = &S->next[b];
        memcpy(h->tok, p->tok, (size_t)(t + 1) * sizeof *h->tok);
        h->tok[t + 1] = k->tok;
        memcpy(S->x + (size_t)b * (t + 2), h->tok, (size_t)(t + 2) * sizeof *S->x);
        h->nll = p->nll - p->logp[k->tok];
        h->act = p->act;
        h->at = p->at;
    }
    err_code e = B ? forward(S, B, t + 2, S->next) : ERR_OK;
    for (int b = 0; !e && b < B; b++)   /* rank by the children's own activation */
        S->kids[b] = (child){ .parent = b, .tok = 0, .score = score_of(S, S->next[b].act, S->next[b].nll) };
    qsort(S->kids, (size_t)B, sizeof *S->kids, by_score);
    S->n_cur = B < W ? B : W;
    for (int i = 0; !e && i < S->n_cur; i++) {   /* swap the kept rows into cur */
        hyp tmp = S->cur[i];
        S->cur[i] = S->next[S->kids[i].parent];
        S->next[S->kids[i].parent] = tmp;
    }
    return e;
}

static err_code search_init(search *S)
{
    const int W = S->c->beam, pool = W * SYN_POOL_PER_BEAM, V = S->V;
    const size_t rows = (size_t)pool * 2;   /* cur and next, each up to pool */
    S->cur = calloc(rows, sizeof *S->cur);
    S->next = S->cur ? S->cur + pool : NULL;
    S->tok_buf = malloc(rows * S->stride * sizeof *S->tok_buf);
    S->logp_buf = malloc(rows * V * sizeof *S->logp_buf);
    S->f = malloc(((size_t)pool * S->F + sae_scratch_floats(&S->s->c)) * sizeof *S->f);
    S->rows = malloc((size_t)pool * S->d * sizeof *S->rows);
    S->kids = malloc((size_t)W * V * sizeof *S->kids);
    S->x = malloc((size_t)pool * S->stride * sizeof *S->x);
    S->best = calloc((size_t)S->c->count, sizeof *S->best);
    if (!S->cur || !S->tok_buf || !S->logp_buf || !S->f || !S->rows || !S->kids || !S->x || !S->best)
        return err_set(ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < rows; i++) {
        S->cur[i].tok = S->tok_buf + i * S->stride;
        S->cur[i].logp = S->logp_buf + i * V;
    }
    err_code e = ag_init(&S->tape, (size_t)1 << 20);
    if (e) return e;
    S->have_tape = true;
    S->tape.grad = false;
    S->cur[0].tok[0] = TOK_SOS;   /* the root: <SOS> alone */
    S->x[0] = TOK_SOS;
    S->n_cur = 1;
    return forward(S, 1, 1, S->cur);
}

static void search_free(search *S)
{
    if (S->have_tape) ag_free(&S->tape);
    free(S->cur);
    free(S->tok_buf);
    free(S->logp_buf);
    free(S->f);
    free(S->rows);
    free(S->kids);
    free(S->x);
}

err_code syn_search(const sae_model *s, const tf_model *tf, const syn_config *c, syn_name **out,
                    int *n_out)
{
    *out = NULL;
    *n_out = 0;
    if (c->feature < 0 || c->feature >= s->c.n_features)
        return err_set(ERR_ARG, "feature %d out of range [0, %d)", c->feature, s->c.n_features);
    if (c->beam < 1 || c->count < 1 || !(c->weight > 0) || !(c->act_ref > 0))
        return err_set(ERR_ARG, "synth: beam, count, weight and act_ref must be positive");
    int limit = tf_max_len(tf) - 1;
    if (c->max_chars > 0 && c->max_chars < limit) limit = c->max_chars;
    search S = { .s = s, .tf = tf, .c = c, .V = tf_vocab_size(tf), .d = tf_d_model(tf),
                 .F = s->c.n_features, .stride = limit + 2 };
    err_code e = search_init(&S);
    for (int t = 0; !e && t <= limit && S.n_cur > 0; t++) e = step(&S, t, limit);
    search_free(&S);
    if (e) {
        syn_names_free(S.best, S.n_best);
        return e;
    }
    *out = S.best;
    *n_out = S.n_best;
    return ERR_OK;
}

void syn_names_free(syn_name *names, int n)
{
    if (!names) return;
    for (int i = 0; i < n; i++) free(names[i].tok);
    free(names);
}
