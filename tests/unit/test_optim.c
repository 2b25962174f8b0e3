/* test_optim.c - AdamW against the update written out by hand in double,
 * clipping, learning-rate schedules. */
#include "optim.h"
#include "test.h"

#include <math.h>
#include <string.h>

/* Two parameters: w (decayed) and b (not). */
static void make(tn_params *p, tensor **w, tensor **b)
{
    tn_params_init(p);
    *w = tn_param(p, "w", true, 2, (const int[]){ 2, 3 });
    *b = tn_param(p, "b", false, 1, (const int[]){ 3 });
    tn_params_alloc(p);
}

/* The AdamW recurrence for one scalar, in double, as the PyTorch docs
 * state it: decay, moments, bias-corrected step. */
struct ref { double p, m, v; };
static void ref_step(struct ref *r, double g, const opt_config *c, long t, double lr, bool decay)
{
    if (decay) r->p -= lr * c->weight_decay * r->p;
    r->m = c->beta1 * r->m + (1 - c->beta1) * g;
    r->v = c->beta2 * r->v + (1 - c->beta2) * g * g;
    double mh = r->m / (1 - pow(c->beta1, t)), vh = r->v / (1 - pow(c->beta2, t));
    r->p -= lr * mh / (sqrt(vh) + c->eps);
}

TEST(adamw_matches_hand_computed_steps)
{
    tn_params p;
    tensor *w, *b;
    make(&p, &w, &b);
    opt_config c = OPT_DEFAULTS;
    c.lr = 0.01f;
    c.weight_decay = 0.1f;
    tensor *ts[2] = { w, b };
    struct ref r[2][6];
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < ts[k]->n; i++) {
            ts[k]->data[i] = 0.5f - 0.3f * (float)i * (k ? -1.0f : 1.0f);
            r[k][i] = (struct ref){ ts[k]->data[i], 0.0, 0.0 };
        }
    /* step 1, closed form: p (1 - lr wd) - lr g / (|g| + eps) */
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < ts[k]->n; i++) ts[k]->grad[i] = 0.2f * (float)(i + 1) * (k ? 1.0f : -1.0f);
    double w0 = w->data[1], g0 = w->grad[1];
    opt_adamw_step(&p, &c, 1, c.lr);
    CHECK_NEAR(w->data[1], w0 * (1 - 0.01 * 0.1) - 0.01 * g0 / (fabs(g0) + 1e-8), 1e-7);
    double b0 = r[1][2].p;
    CHECK_NEAR(b->data[2], b0 - 0.01, 1e-7);   /* no decay on b */
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < ts[k]->n; i++) ref_step(&r[k][i], ts[k]->grad[i], &c, 1, c.lr, k == 0);
    /* steps 2..5 with changing gradients and learning rate */
    double worst = 0.0;
    for (long t = 2; t <= 5; t++) {
        float lr = 0.01f / (float)t;
        for (int k = 0; k < 2; k++)
            for (int i = 0; i < ts[k]->n; i++) ts[k]->grad[i] = sinf((float)(t * 7 + i + 3 * k));
        opt_adamw_step(&p, &c, t, lr);
        for (int k = 0; k < 2; k++)
            for (int i = 0; i < ts[k]->n; i++) {
                ref_step(&r[k][i], ts[k]->grad[i], &c, t, lr, k == 0);
                worst = fmax(worst, fabs(r[k][i].p - ts[k]->data[i]));
                worst = fmax(worst, fabs(r[k][i].m - p.m[p.e[k].offset + i]));
                worst = fmax(worst, fabs(r[k][i].v - p.v[p.e[k].offset + i]));
            }
    }
    CHECK(worst < 1e-6);
    tn_params_free(&p);
}

TEST(clip_scales_to_max_norm)
{
    tn_params p;
    tensor *w, *b;
    make(&p, &w, &b);
    for (int i = 0; i < w->n; i++) w->grad[i] = (float)i;        /* 0+1+4+9+16+25 = 55 */
    for (int i = 0; i < b->n; i++) b->grad[i] = 3.0f;            /* + 27 = 82 */
    float norm = opt_clip(&p, 0.0f);                            /* 0: only measure */
    CHECK_NEAR(norm, sqrt(82.0), 1e-5);
    CHECK(w->grad[5] == 5.0f);
    CHECK_NEAR(opt_clip(&p, 100.0f), sqrt(82.0), 1e-5);          /* below: unchanged */
    CHECK(w->grad[5] == 5.0f);
    CHECK_NEAR(opt_clip(&p, 2.0f), sqrt(82.0), 1e-5);
    CHECK_NEAR(opt_clip(&p, 0.0f), 2.0, 1e-5);
    CHECK_NEAR(w->grad[5], 5.0 * 2.0 / sqrt(82.0), 1e-5);
    tn_params_free(&p);
}

TEST(learning_rate_schedules)
{
    opt_config c = OPT_DEFAULTS;
    c.lr = 1e-3f;
    CHECK(opt_lr_at(&c, 1) == 1e-3f && opt_lr_at(&c, 100000) == 1e-3f);
    c.schedule = OPT_COSINE;
    c.warmup = 10;
    c.total_steps = 110;
    c.min_lr_frac = 0.1f;
    CHECK_NEAR(opt_lr_at(&c, 1), 1e-4, 1e-9);
    CHECK_NEAR(opt_lr_at(&c, 5), 5e-4, 1e-9);
    CHECK_NEAR(opt_lr_at(&c, 10), 1e-3, 1e-9);
    CHECK_NEAR(opt_lr_at(&c, 60), 1e-3 * (0.1 + 0.9 * 0.5), 1e-9);
    CHECK_NEAR(opt_lr_at(&c, 35), 1e-3 * (0.1 + 0.9 * 0.5 * (1 + cos(M_PI / 4))), 1e-9);
    CHECK_NEAR(opt_lr_at(&c, 110), 1e-4, 1e-9);
    CHECK_NEAR(opt_lr_at(&c, 500), 1e-4, 1e-9);
    c.warmup = 0;   /* cosine without warm-up starts at the peak */
    CHECK_NEAR(opt_lr_at(&c, 0), 1e-3, 1e-9);
    CHECK(opt_lr_at(&c, 2) < 1e-3f);
}

/* Threads share a step by entries (train.h's data parallelism): the same bits. */
TEST(adamw_entries_split_is_the_whole_step)
{
    tn_params p, q;
    tensor *w, *b, *w2, *b2;
    make(&p, &w, &b);
    make(&q, &w2, &b2);
    opt_config c = OPT_DEFAULTS;
    c.weight_decay = 0.1f;
    for (size_t i = 0; i < p.n; i++) {
        p.data[i] = q.data[i] = 0.1f * (float)i - 0.3f;
        p.grad[i] = q.grad[i] = 0.05f * (float)(i % 5) - 0.1f;
    }
    for (long t = 1; t <= 3; t++) {
        opt_adamw_step(&p, &c, t, 0.01f);
        opt_adamw_entries(&q, &c, t, 0.01f, 1, 2);
        opt_adamw_entries(&q, &c, t, 0.01f, 0, 1);
    }
    CHECK(!memcmp(p.data, q.data, p.n * sizeof *p.data));
    CHECK(!memcmp(p.v, q.v, p.n * sizeof *p.v));
    tn_params_free(&p);
    tn_params_free(&q);
}
