/* shard.c - the data-parallel step of the training loop; see shard.h. */
#include "shard.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { SH_ALIGN = 16 };   /* parameter slices start on 64 bytes */

void sh_gather_soft(ds_batch *b, const ds_names *d, const size_t *idx, const float *soft_all,
                    size_t V, float weight, float *soft)
{
    for (int r = 0; r < b->B; r++)
        memcpy(soft + (size_t)r * b->T * V, soft_all + tr_soft_row(d, idx[r]) * V,
               ((size_t)ds_len(d, idx[r]) + 1) * V * sizeof *soft);
    b->soft = soft;
    b->soft_weight = weight;
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
    int lo = j->row0 + (int)((long)j->rows * k / S->n);
    int hi = j->row0 + (int)((long)j->rows * (k + 1) / S->n);
    w->loss = 0;
    w->n_tokens = 0;
    if (hi == lo) return ERR_OK;   /* more workers than rows */
    err_code rc = ds_batch_fill(&w->b, j->d, j->idx + lo, hi - lo);
    if (rc) return rc;
    if (w->soft) sh_gather_soft(&w->b, j->d, j->idx + lo, j->soft_all, j->V, j->soft_weight, w->soft);
    rng_seed(&w->dropout, rng_at(j->seed, (uint64_t)j->step * 4096u + (uint64_t)(j->shard0 + k)));
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

static void work(void *ctx, int k)
{
    sh_shards *S = ctx;
    if (S->eval) {
        eval_batches(S, k);
        return;
    }
    S->w[k].rc = shard_backward(S, k);
    tm_barrier(&S->team);
    size_t n = S->m->params->n, per = (n / SH_ALIGN + (size_t)S->n - 1) / (size_t)S->n * SH_ALIGN;
    size_t lo = (size_t)k * per, hi = lo + per < n ? lo + per : n;
    if (lo < hi) sum_slice(S, lo, hi);
}

err_code sh_step(sh_shards *S, const sh_job *job, double *loss)
{
    S->job = *job;
    S->eval = false;
    tm_run(&S->team, work, S);
    double sum = 0;
    for (int k = 0; k < S->n; k++) {
        if (S->w[k].rc) return S->w[k].rc;
        sum += S->w[k].loss * (double)S->w[k].n_tokens;
    }
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
    w->rc = ERR_OK;
    w->tape.grad = false;
    w->tape.training = false;
    size_t step = (size_t)j->batch_size * (size_t)S->n;
    for (size_t i = (size_t)k * (size_t)j->batch_size; !w->rc && i < j->d->n; i += step) {
        int B = j->d->n - i < (size_t)j->batch_size ? (int)(j->d->n - i) : j->batch_size;
        if ((w->rc = ds_batch_fill(&w->b, j->d, j->idx + i, B))) break;
        w->b.soft = NULL;
        ag_reset(&w->tape);
        tensor *loss = S->m->loss(w->replica, &w->tape, &w->b);
        if (!loss) {
            w->rc = ERR_ARG;
            break;
        }
        w->eval_sum += (double)loss->data[0] * (double)w->b.n_tokens;
        w->eval_n += w->b.n_tokens;
    }
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
    S->eval = true;
    tm_run(&S->team, work, S);
    for (int k = 0; k < S->n; k++) {
        if (!rc) rc = S->w[k].rc;
        *loss_sum += S->w[k].eval_sum;
        *n_targets += S->w[k].eval_n;
    }
    free(order);
    return rc;
}

const char *sh_first_nonfinite(const sh_shards *S)
{
    for (int k = 0; k < S->n; k++) {
        const char *op = ag_first_nonfinite(&S->w[k].tape);
        if (op) return op;
    }
    return NULL;
}
