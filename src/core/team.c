/* team.c - a fixed team of threads; see team.h. */
#include "team.h"

#include <stdlib.h>
#include <string.h>

static void *member_main(void *arg)
{
    tm_member *me = arg;
    tm_team *t = me->team;
    unsigned long seen = 0;
    for (;;) {
        pthread_mutex_lock(&t->mu);
        while (!t->quit && t->generation == seen) pthread_cond_wait(&t->go, &t->mu);
        if (t->quit) {
            pthread_mutex_unlock(&t->mu);
            return NULL;
        }
        seen = t->generation;
        tm_fn fn = t->fn;
        void *ctx = t->ctx;
        pthread_mutex_unlock(&t->mu);
        fn(ctx, me->k);
        pthread_mutex_lock(&t->mu);
        if (--t->running == 0) pthread_cond_signal(&t->done);
        pthread_mutex_unlock(&t->mu);
    }
}

err_code tm_init(tm_team *t, int n)
{
    memset(t, 0, sizeof *t);
    if (n < 1) return err_set(ERR_ARG, "tm_init: %d threads", n);
    t->n = n;
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->go, NULL);
    pthread_cond_init(&t->done, NULL);
    pthread_barrier_init(&t->barrier, NULL, (unsigned)n);
    if (n > 1 && !(t->members = calloc((size_t)n - 1, sizeof *t->members))) {
        tm_free(t);
        return err_set(ERR_NOMEM, "out of memory for %d threads", n);
    }
    for (int k = 1; k < n; k++) {
        tm_member *m = &t->members[k - 1];
        *m = (tm_member){ .team = t, .k = k };
        if (pthread_create(&m->thread, NULL, member_main, m)) {
            tm_free(t);
            return err_set(ERR_NOMEM, "cannot start thread %d of %d", k + 1, n);
        }
        t->started++;
    }
    return ERR_OK;
}

void tm_run(tm_team *t, tm_fn fn, void *ctx)
{
    pthread_mutex_lock(&t->mu);
    t->fn = fn;
    t->ctx = ctx;
    t->running = t->n - 1;
    t->generation++;
    pthread_cond_broadcast(&t->go);
    pthread_mutex_unlock(&t->mu);
    fn(ctx, 0);
    pthread_mutex_lock(&t->mu);
    while (t->running > 0) pthread_cond_wait(&t->done, &t->mu);
    pthread_mutex_unlock(&t->mu);
}

void tm_barrier(tm_team *t)
{
    if (t->n > 1) pthread_barrier_wait(&t->barrier);
}

void tm_free(tm_team *t)
{
    if (!t || t->n == 0) return;
    pthread_mutex_lock(&t->mu);
    t->quit = true;
    pthread_cond_broadcast(&t->go);
    pthread_mutex_unlock(&t->mu);
    for (int i = 0; i < t->started; i++) pthread_join(t->members[i].thread, NULL);
    free(t->members);
    pthread_barrier_destroy(&t->barrier);
    pthread_cond_destroy(&t->done);
    pthread_cond_destroy(&t->go);
    pthread_mutex_destroy(&t->mu);
    memset(t, 0, sizeof *t);
}
