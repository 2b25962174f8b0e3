/* shard.c - the data-parallel step of the training loop; see shard.h. */
#include "shard.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { SH_ALIGN = 16 };   /* parameter slices start on 64 bytes */
/* The work of a shard of r rows padded to T positions: r T (T + SH_T_COST),
 * the matrix products linear in T and attention and the per-position
 * softmaxes growing faster (measured on the Transformer d64: shards of
 * equal r T took 16% longer for the long names; with this term they take
 * the same time, within 1%). */
enum { SH_T_COST = 48 };

void sh_gather_soft(ds_batch *b, const ds_names *d, const size_t *idx, const float *soft_all,
                    size_t V, float weight, float *soft)
{
    for (int r = 0; r < b->B; r++)
        memcpy(soft + (size_t)r * b->T * V, soft_all + tr_soft_row(d, idx[r]) * V,
               ((size_t)ds_len(d, idx[r]) + 1) * V * sizeof *soft);
    b->soft = soft;
    b->soft_weight = weight;
}

/* The work of rows [a, b) of a length-sorted batch. */
static long cost(const ds_names *d, const size_t *idx, int a, int b)
{
    if (b <= a) return 0;
    long T = ds_len(d, idx[b - 1]) + 1;
    return (long)(b - a) * T * (T + SH_T_COST);
}

/* Greedy cut under cap: the shards needed (bounds written when not NULL). */
static int cut(const ds_names *d, const size_t *idx, int B, long cap, int *bounds)
{
    int shards = 0, a = 0;
    while (a < B) {
        int b = a + 1;
        while (b < B && cost(d, idx, a, b + 1) <= cap) b++;
        if (bounds) bounds[shards] = a;
        shards++;
        a = b;
    }
    return shards;
}

void sh_balance(const ds_names *d, size_t *idx, int B, int G, int *bounds)
{
    for (int i = 1; i < B; i++) {   /* insertion sort: stable, B is small */
        size_t x = idx[i];
        int j = i;
        for (; j > 0 && ds_len(d, idx[j - 1]) > ds_len(d, x); j--) idx[j] = idx[j - 1];
        idx[j] = x;
    }
    long lo = 1, hi = cost(d, idx, 0, B);   /* the smallest cap that G shards meet */
    while (lo < hi) {
        long mid = lo + (hi - lo) / 2;
        if (cut(d, idx, B, mid, NULL) <= G) hi = mid;
        else lo = mid + 1;
    }
    int n = cut(d, idx, B, lo, bounds);
    for (int s = n; s <= G; s++) bounds[s] = B;   /* fewer shards: the last ones empty */
}

err_code sh_init(sh_shards *S, const tr_model *m, int n, size_t soft_floats, bool check_finite)
{
    memset(S, 0, sizeof *S);
    S->m = m;
    if (!m->replica_new) return err_set(ERR_ARG, "%s: no replica for data-parallel training", m->kind);
    if (!(S->w = calloc((size_t)n, sizeof *S->w))) return err_set(ERR_NOMEM, "out of memory");
    S->n = n;
    size_t bytes = m->params->n * sizeof(float);
    for (int k = 0; k < n; k++) {
        sh_worker *w = &S->w[k];
        if (!(w->grad = aligned_alloc(64, bytes ? bytes : 64)))
            return err_set(ERR_NOMEM, "out of memory for %d gradient buffers", n);
        memset(w->grad, 0, bytes);
        if (!(w->replica = m->replica_new(m->impl, w->grad))) return ERR_NOMEM;
        err_code rc = ag_init(&w->tape, (size_t)1 << 20);
        if (rc) return rc;
        w->tape.rng = &w->dropout;
        w->tape.check_finite = check_finite;
        if (soft_floats && !(w->soft = malloc(soft_floats * sizeof *w->soft)))
            return err_set(ERR_NOMEM, "out of memory");
    }
    return tm_init(&S->team, n);
}

void sh_free(sh_shards *S)
{
    tm_free(&S->team);
    for (int k = 0; S->w && k < S->n; k++) {
        sh_worker *w = &S->w[k];
        if (w->replica) S->m->replica_free(w->replica);
        free(w->grad);
        ag_free(&w->tape);
        ds_batch_free(&w->b);
        free(w->soft);
    }
    free(S->w);
    memset(S, 0, sizeof *S);
}

/* Worker k's shard: its mean loss and, when finite, its gradient. */
static err_code shard_backward(sh_shards *S, int k)
{
    const sh_job *j = &S->job;
    sh_worker *w = &S->w[k];
    int lo = j->bounds[j->shard0 + k], hi = j->bounds[j->shard0 + k + 1];
    w->loss = 0;
    w->n_tokens = 0;
    if (hi == lo) return ERR_OK;   /* more workers than rows */
    err_code rc = ds_batch_fill(&w->b, j->d, j->idx + lo, hi - lo);
    if (rc) return rc;
    if (w->soft) sh_gather_soft(&w->b, j->d, j->idx + lo, j->soft_all, j->V, j->soft_weight, w->soft);
    rng_seed(&w->dropout, rng_at(j->seed, (uint64_t)j->step * 4096u + (uint64_t)(j->shard0 + k)));
    if (j->letter_cdf) ds_noise_inputs(&w->b, j->letter_cdf, j->V, j->input_noise, &w->dropout);
    ag_reset(&w->tape);
    w->tape.grad = true;
    w->tape.training = true;
    tensor *loss = S->m->loss(w->replica, &w->tape, &w->b);
    if (!loss) return ERR_ARG;
    w->loss = loss->data[0];
    w->n_tokens = w->b.n_tokens;
    if (isfinite(w->loss)) ag_backward(&w->tape, loss);
    return ERR_OK;
}

/* grad[lo, hi) = sum over the workers, in order, of their weighted
 * gradients; their buffers zeroed there for the next step. */
static void sum_slice(sh_shards *S, size_t lo, size_t hi)
{
    float *g = S->m->params->grad;
    const double total = (double)S->job.total;
    memset(g + lo, 0, (hi - lo) * sizeof *g);
    for (int k = 0; k < S->n; k++) {
        float *src = S->w[k].grad;
        if (!S->w[k].n_tokens) continue;
        const float a = (float)((double)S->w[k].n_tokens / total);
        for (size_t i = lo; i < hi; i++) g[i] += a * src[i];
        memset(src + lo, 0, (hi - lo) * sizeof *src);
    }
}

static void eval_batches(sh_shards *S, int k);

static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Worker k's parameters for AdamW: those starting in its share of the buffer. */
static void adamw_part(sh_shards *S, int k)
{
    tn_params *p = S->m->params;
    size_t lo = p->n * (size_t)k / (size_t)S->n, hi = p->n * (size_t)(k + 1) / (size_t)S->n;
    int first = 0, last;
    while (first < p->count && p->e[first].offset < lo) first++;
    for (last = first; last < p->count && p->e[last].offset < hi; last++) {}
    opt_adamw_entries(p, S->opt, S->job.step, S->lr, first, last);
}

static void work(void *ctx, int k)
{
    sh_shards *S = ctx;
    if (S->what == SH_EVAL) {
        eval_batches(S, k);
        return;
    }
    if (S->what == SH_ADAMW) {
        adamw_part(S, k);
        return;
    }
    double t0 = thread_cpu();
    S->w[k].rc = shard_backward(S, k);
    S->w[k].cpu = thread_cpu() - t0;
    if (S->w[k].rc) snprintf(S->w[k].msg, sizeof S->w[k].msg, "%s", err_msg());
    tm_barrier(&S->team);
    size_t n = S->m->params->n, per = (n / SH_ALIGN + (size_t)S->n - 1) / (size_t)S->n * SH_ALIGN;
    size_t lo = (size_t)k * per, hi = lo + per < n ? lo + per : n;
    if (lo < hi) sum_slice(S, lo, hi);
}

err_code sh_step(sh_shards *S, const sh_job *job, double *loss)
{
    S->job = *job;
    S->what = SH_STEP;
    tm_run(&S->team, work, S);
    double sum = 0, slowest = 0;
    for (int k = 0; k < S->n; k++) {
        if (S->w[k].rc) return err_set(S->w[k].rc, "%s", S->w[k].msg);
        sum += S->w[k].loss * (double)S->w[k].n_tokens;
        S->cpu_sum += S->w[k].cpu;
        slowest = S->w[k].cpu > slowest ? S->w[k].cpu : slowest;
    }
    S->cpu_max += slowest;
    *loss = sum / (double)job->total;
    return ERR_OK;
}

/* Worker k evaluates the batches k, k + n, k + 2n, ... of the length order. */
static void eval_batches(sh_shards *S, int k)
{
    const sh_job *j = &S->job;
    sh_worker *w = &S->w[k];
    w->eval_sum = 0;
    w->eval_n = 0;
    w->tape.grad = false;
    w->tape.training = false;
    w->msg[0] = '\0';
    w->rc = tr_eval_batches(S->m, w->replica, &w->tape, &w->b, j->d, j->idx, j->batch_size, k,
                            S->n, &w->eval_sum, &w->eval_n);
    if (w->rc) snprintf(w->msg, sizeof w->msg, "%s", err_msg());
}

err_code sh_eval(sh_shards *S, const ds_names *d, int batch_size, double *loss_sum,
                 size_t *n_targets)
{
    *loss_sum = 0;
    *n_targets = 0;
    if (d->n == 0) return ERR_OK;
    size_t *order;
    err_code rc = ds_length_order(d, &order);
    if (rc) return rc;
    S->job = (sh_job){ .d = d, .idx = order, .batch_size = batch_size };
    S->what = SH_EVAL;
    tm_run(&S->team, work, S);
    for (int k = 0; k < S->n; k++) {
        if (!rc && S->w[k].rc) rc = err_set(S->w[k].rc, "%s", S->w[k].msg);
        *loss_sum += S->w[k].eval_sum;
        *n_targets += S->w[k].eval_n;
    }
    free(order);
    return rc;
}

void sh_adamw(sh_shards *S, const opt_config *c, long step, float lr)
{
    S->what = SH_ADAMW;
    S->opt = c;
    S->lr = lr;
    S->job.step = step;
    tm_run(&S->team, work, S);
}

const char *sh_first_nonfinite(const sh_shards *S)
{
    for (int k = 0; k < S->n; k++) {
        const char *op = ag_first_nonfinite(&S->w[k].tape);
        if (op) return op;
    }
    return NULL;
}
