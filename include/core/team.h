/* team.h - a fixed team of threads running one function at a time.
 *
 *   tm_team t;
 *   if (tm_init(&t, 4)) ...error...
 *   tm_run(&t, fn, ctx);   // fn(ctx, k) for k = 0..3 at once, k = 0 on the
 *                          // calling thread; returns when all have returned
 *   tm_free(&t);
 *
 * The threads are made once by tm_init and wait between runs, so a run
 * allocates nothing (the training loop's data-parallel step, train.h).
 * Inside fn, tm_barrier(&t) waits until every one of the n has reached it
 * (e.g. between computing gradients and summing them).
 */
#ifndef VILLES_TEAM_H
#define VILLES_TEAM_H

#include <pthread.h>
#include <stdbool.h>

#include "error.h"

typedef void (*tm_fn)(void *ctx, int k);

typedef struct tm_member { struct tm_team *team; int k; pthread_t thread; } tm_member;

typedef struct tm_team {
    int               n;          /* threads, the caller's included */
    tm_member        *members;    /* n - 1 started threads (k = 1..n-1) */
    int               started;
    pthread_mutex_t   mu;
    pthread_cond_t    go, done;
    pthread_barrier_t barrier;
    unsigned long     generation; /* runs started */
    int               running;    /* threads still in the current run */
    bool              quit;
    tm_fn             fn;
    void             *ctx;
} tm_team;

err_code tm_init(tm_team *t, int n);
void     tm_run(tm_team *t, tm_fn fn, void *ctx);
void     tm_barrier(tm_team *t);
void     tm_free(tm_team *t);   /* harmless on a zeroed team */

#endif
