/* shard.h - the data-parallel step of the training loop (private to
 * train.c; the semantics are documented in train.h).
 *
 * n workers, each with a replica of the model (tr_model.replica_new: the
 * shared weights, a gradient buffer of its own), its own tape, batch and
 * dropout rng, on a team of n threads (team.h; worker 0 is the caller).
 * A step takes its shards' rows of the batch drawn by the loop (sorted by
 * length and cut by sh_balance), each trimmed to its longest name; every
 * worker builds its shard's mean loss and backpropagates; then, after a
 * barrier, each thread sums a slice of the parameters over the workers in
 * the fixed order 0..n-1, worker k weighted by its share of the whole
 * batch's targets, into params->grad (and zeroes those slices for the next
 * step).  The result is the whole batch's mean-loss gradient up to the
 * order of the float sums.  Nothing is allocated once warm.
 */
#ifndef VILLES_SHARD_H
#define VILLES_SHARD_H

#include "optim.h"
#include "team.h"
#include "train.h"

typedef struct sh_worker {
    void     *replica;
    float    *grad;              /* params->n floats */
    ag_tape   tape;
    ds_batch  b;
    float    *soft;              /* the shard's soft targets, or NULL */
    rng       dropout;
    double    loss;              /* the shard's mean loss (this step) */
    size_t    n_tokens;
    double    cpu;               /* thread CPU seconds of its shard (this step) */
    double    eval_sum;          /* evaluation: sums over the worker's batches */
    size_t    eval_n;
    err_code  rc;
    char      msg[256];          /* rc's message (err_msg is per thread) */
} sh_worker;

/* What one step or evaluation needs. */
typedef struct sh_job {
    const ds_names *d;
    const size_t   *idx;         /* the rows of the batch (names) */
    const int      *bounds;      /* shard s (of every process) takes rows
                                    [bounds[s], bounds[s + 1]) of idx */
    size_t          total;       /* non-pad targets of the whole batch (every process) */
    const float    *soft_all;    /* tr_session.soft, or NULL */
    size_t          V;
    float           soft_weight;
    uint64_t        seed;        /* dropout: rng_at(seed, step * 4096 + shard) */
    const double   *letter_cdf;  /* --input-noise (drawn from the shard's dropout rng,
                                    before the masks), or NULL */
    float           input_noise;
    long            step;
    int             shard0;      /* global index of worker 0's shard (rank * n) */
    int             batch_size;  /* evaluation */
} sh_job;

typedef struct sh_shards {
    const tr_model *m;
    int             n;
    sh_worker      *w;
    tm_team         team;
    sh_job          job;
    enum { SH_STEP, SH_EVAL, SH_ADAMW } what;   /* the job */
    const opt_config *opt;       /* SH_ADAMW: the update's settings */
    float           lr;
    double          cpu_sum, cpu_max;   /* over the steps: the shards' thread CPU
                                           seconds, and the slowest shard's */
} sh_shards;

/* Sort idx[0..B) by name length (stable) and cut it into G shards of
 * about equal work (rows x padded length, with a term for attention):
 * bounds[0..G] (bounds[0] = 0, bounds[G] = B).  Sorting changes only the
 * order of the sums, and trims the shards of short names. */
void sh_balance(const ds_names *d, size_t *idx, int B, int G, int *bounds);

/* n workers for m (which has replica_new); soft_floats: the room of a
 * shard's soft targets (0 = no distillation). */
err_code sh_init(sh_shards *S, const tr_model *m, int n, size_t soft_floats, bool check_finite);
void     sh_free(sh_shards *S);
/* One step's gradient into m->params->grad; *loss = this process's share
 * of the whole batch's mean loss (sum over its shards of loss * targets /
 * total). */
err_code sh_step(sh_shards *S, const sh_job *job, double *loss);
/* Validation loss of d (as tr_eval_names, the batches shared out among the
 * workers, their sums added in worker order). */
err_code sh_eval(sh_shards *S, const ds_names *d, int batch_size, double *loss_sum,
                 size_t *n_targets);
/* opt_adamw_step(m->params, c, step, lr) with the parameters shared out
 * among the threads (the same bits). */
void     sh_adamw(sh_shards *S, const opt_config *c, long step, float lr);
/* The first non-finite op a worker's tape found (check_finite), or NULL. */
const char *sh_first_nonfinite(const sh_shards *S);

/* (train.c) Add to *loss_sum and *n_targets the loss of impl (a model or
 * a replica of m) over the batches first, first + stride, ... of batch_size
 * names of d in the given order, on t as it is set (the caller turns
 * gradients and dropout off), b filled in turn: tr_eval_names's loop, which
 * the workers share out. */
err_code tr_eval_batches(const tr_model *m, void *impl, ag_tape *t, ds_batch *b,
                         const ds_names *d, const size_t *order, int batch_size, int first,
                         int stride, double *loss_sum, size_t *n_targets);

/* The soft targets of the names idx[0..b->B) of d into soft (b->B, b->T, V)
 * from soft_all (tr_session.soft), and b pointed at them. */
void sh_gather_soft(ds_batch *b, const ds_names *d, const size_t *idx, const float *soft_all,
                    size_t V, float weight, float *soft);

#endif
