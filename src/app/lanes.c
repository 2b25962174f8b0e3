/* lanes.c - a pool of threads driving batched streams; see lanes.h. */
#include "lanes.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct ln_worker {
    int          lanes;
    bool         borrowed;  /* st[0] is the caller's (ln_pool_wrap) */
    mdl_state   *st;        /* (lanes) */
    mdl_state  **live;      /* (lanes) the streams of this step */
    int         *pending;   /* (lanes) the token each lane feeds next; -1 = idle */
    int         *tok;       /* (lanes) this step's tokens */
    int         *which;     /* (lanes) the lane of each stream of this step */
    char        *data;      /* (lanes, lane_size) */
    size_t       lane_size;
    float       *logits;    /* (lanes, V) */
    float       *scratch;   /* (2 V) */
};

/* One run: the job, the items left, shared by the threads. */
typedef struct ln_run {
    const ln_job *job;
    atomic_long   next;
    long          last;
    const mdl    *m;
} ln_run;

static void worker_free(ln_worker *w)
{
    for (int i = 0; w->st && !w->borrowed && i < w->lanes; i++) mdl_state_free(&w->st[i]);
    free(w->st);
    free(w->live);
    free(w->pending);
    free(w->tok);
    free(w->which);
    free(w->data);
    free(w->logits);
    free(w->scratch);
}

/* Everything but the streams. */
static err_code worker_alloc(ln_worker *w, const mdl *m, int lanes, size_t lane_size)
{
    const size_t V = (size_t)mdl_vocab_size(m);
    *w = (ln_worker){ .lanes = lanes, .lane_size = lane_size };
    w->st = calloc((size_t)lanes, sizeof *w->st);
    w->live = malloc((size_t)lanes * sizeof *w->live);
    w->pending = malloc((size_t)lanes * sizeof *w->pending);
    w->tok = malloc((size_t)lanes * sizeof *w->tok);
    w->which = malloc((size_t)lanes * sizeof *w->which);
    w->data = calloc((size_t)lanes, lane_size ? lane_size : 1);
    w->logits = malloc((size_t)lanes * V * sizeof *w->logits);
    w->scratch = malloc(2 * V * sizeof *w->scratch);
    err_code e = w->st && w->live && w->pending && w->tok && w->which && w->data && w->logits &&
                 w->scratch ? ERR_OK : err_set(ERR_NOMEM, "out of memory for %d streams", lanes);
    return e;
}

static err_code worker_new(ln_worker *w, const mdl *m, int lanes, size_t lane_size)
{
    err_code e = worker_alloc(w, m, lanes, lane_size);
    for (int i = 0; !e && i < lanes; i++) e = mdl_state_new(&w->st[i], m);
    return e;
}

err_code ln_pool_wrap(ln_pool *p, mdl_state *st, size_t lane_size)
{
    *p = (ln_pool){ .m = st->m };
    p->w = calloc(1, sizeof *p->w);
    if (!p->w) return err_set(ERR_NOMEM, "out of memory for a stream");
    p->threads = 1;
    err_code e = worker_alloc(p->w, st->m, 1, lane_size);
    if (!e) e = tm_init(&p->team, 1);
    p->w->borrowed = true;
    if (!e) p->w->st[0] = *st;
    else ln_pool_free(p);
    return e;
}

err_code ln_pool_new(ln_pool *p, const mdl *m, int lanes, int threads, size_t lane_size)
{
    *p = (ln_pool){ .m = m };
    if (lanes < 1 || threads < 1 || threads > LN_MAX_THREADS)
        return err_set(ERR_ARG, "ln_pool_new: %d lanes on %d threads", lanes, threads);
    p->w = calloc((size_t)threads, sizeof *p->w);
    if (!p->w) return err_set(ERR_NOMEM, "out of memory for %d threads", threads);
    err_code e = ERR_OK;
    for (; !e && p->threads < threads; p->threads++) e = worker_new(&p->w[p->threads], m, lanes, lane_size);
    if (!e && tm_init(&p->team, threads)) e = tm_init(&p->team, 1);   /* then one thread works */
    if (e) ln_pool_free(p);
    return e;
}

void ln_pool_free(ln_pool *p)
{
    tm_free(&p->team);
    for (int t = 0; p->w && t < p->threads; t++) worker_free(&p->w[t]);
    free(p->w);
    *p = (ln_pool){ 0 };
}

/* Lane i takes the next item, if any: its first token, or -1. */
static int claim(ln_run *run, ln_worker *w, int i)
{
    long item = atomic_fetch_add(&run->next, 1);
    if (item >= run->last) return -1;
    return run->job->begin(run->job->ctx, w->data + (size_t)i * w->lane_size, &w->st[i], item);
}

/* Steps until every lane is idle and no item is left. */
static void work(ln_run *run, ln_worker *w)
{
    const size_t V = (size_t)mdl_vocab_size(run->m);
    const ln_job *job = run->job;
    for (int i = 0; i < w->lanes; i++) w->pending[i] = claim(run, w, i);
    for (;;) {
        int n = 0;
        for (int i = 0; i < w->lanes; i++)
            if (w->pending[i] >= 0) {
                w->live[n] = &w->st[i];
                w->tok[n] = w->pending[i];
                w->which[n++] = i;
            }
        if (!n) return;
        mdl_next_batch(w->live, n, w->tok, w->logits);
        for (int j = 0; j < n; j++) {
            const int i = w->which[j];
            int t = job->step(job->ctx, w->data + (size_t)i * w->lane_size, &w->st[i],
                              w->logits + (size_t)j * V, w->scratch);
            w->pending[i] = t >= 0 ? t : claim(run, w, i);
        }
    }
}

typedef struct run_ctx { ln_run *run; ln_pool *p; } run_ctx;

static void work_k(void *ctx, int k)
{
    run_ctx *c = ctx;
    work(c->run, &c->p->w[k]);
}

void ln_pool_run(ln_pool *p, const ln_job *job, long first, long last)
{
    ln_run run = { .job = job, .last = last, .m = p->m };
    atomic_init(&run.next, first);
    run_ctx c = { &run, p };
    tm_run(&p->team, work_k, &c);   /* the items are claimed one by one: any thread count */
}
