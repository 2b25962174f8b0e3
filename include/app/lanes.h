/* lanes.h - many names through one model at once: a pool of worker threads,
 * each driving `lanes` streams of the model through batched steps
 * (mdl_next_batch), so that a step reads the weights once for all of them.
 *
 * A job is a range of items (names to sample, names to score), each an
 * independent chain of tokens; a lane takes the next item when its own is
 * done, so the batch stays full.  Which lane or thread runs an item does not
 * change its result: the job keeps one random stream per item and the
 * batched step gives each stream the logits it would get alone.
 *
 *   ln_pool p;
 *   ln_pool_new(&p, m, lanes, threads, sizeof(my_lane));
 *   ln_pool_run(&p, &job, first, last);   // items [first, last), any order
 *   ln_pool_free(&p);
 */
#ifndef VILLES_LANES_H
#define VILLES_LANES_H

#include <stddef.h>

#include "error.h"
#include "model.h"
#include "team.h"

enum { LN_MAX_THREADS = 64 };

/* What the lanes do with their items.  data is the lane's job data
 * (lane_size bytes, zeroed once), st its stream, scratch 2 V floats of its
 * thread.  Called on the pool's threads, several at once: a job writes
 * only to its lane's data and to its item's own result. */
typedef struct ln_job {
    void *ctx;
    /* Take item i: mdl_start(st) and return the first token to feed. */
    int (*begin)(void *ctx, void *data, mdl_state *st, long i);
    /* The logits after the last token fed (the job may overwrite them):
     * the next token to feed (>= 0), or < 0 when the item is finished.  A
     * job may also restart its item (mdl_start, and return <SOS>). */
    int (*step)(void *ctx, void *data, mdl_state *st, float *logits, float *scratch);
} ln_job;

typedef struct ln_worker ln_worker;

typedef struct ln_pool {
    const mdl *m;
    int        threads;
    ln_worker *w;          /* (threads) */
    tm_team    team;       /* the threads, made once (team.h); one when they could not start */
} ln_pool;

/* lanes >= 1 streams on each of threads >= 1 threads (at most
 * LN_MAX_THREADS), each lane with lane_size bytes of job data. */
err_code ln_pool_new(ln_pool *p, const mdl *m, int lanes, int threads, size_t lane_size);
/* One lane on one thread: the caller's stream st (not freed by the pool),
 * hooks and all. */
err_code ln_pool_wrap(ln_pool *p, mdl_state *st, size_t lane_size);
void     ln_pool_free(ln_pool *p);
/* Run items [first, last) to the end (on the calling thread and
 * threads - 1 others, started by ln_pool_new; if they could not start, the
 * calling thread takes every item). */
void     ln_pool_run(ln_pool *p, const ln_job *job, long first, long last);

#endif
