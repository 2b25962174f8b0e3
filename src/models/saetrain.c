/* saetrain.c - training an SAE on a frozen Transformer's activations; see
 * saetrain.h. */
#include "saetrain.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SINCE_NAME "source.rows_since_fired"
#define WARMUP_KEY "source.l1_warmup"
#define RESAMPLE_KEY "source.resample_every"

enum { RESAMPLE_POOL = 4096 };   /* training rows a resampling draws from */
#define RESAMPLE_ENC_SCALE 0.2   /* new encoder column: 0.2 x the live ones' mean norm */

/* ---- setup ------------------------------------------------------------------ */

/* The firing bookkeeping: nothing fired yet, nothing dead. */
static err_code alloc_firing(sat_trainer *tr)
{
    const size_t F = (size_t)tr->sae.c.n_features;
    tr->since = calloc(F, sizeof *tr->since);
    tr->dead = calloc(F, sizeof *tr->dead);
    tr->val_active = calloc(F, sizeof *tr->val_active);
    return tr->since && tr->dead && tr->val_active ? ERR_OK : err_set(ERR_NOMEM, "out of memory");
}

err_code sat_init(sat_trainer *tr, const sae_config *c, const tf_model *tf, const char *model_path,
                  const ds_names *train, const ds_names *val, uint64_t seed)
{
    memset(tr, 0, sizeof *tr);
    tr->tf = tf;
    tr->seed = seed;
    tr->val_names = val;
    if (c->d_model != tf_d_model(tf) || c->layer < 0 || c->layer > tf_n_layers(tf))
        return err_set(ERR_MISMATCH, "an SAE of d_model %d at layer %d does not fit %s "
                       "(d_model %d, %d layers)", c->d_model, c->layer, model_path,
                       tf_d_model(tf), tf_n_layers(tf));
    err_code e = sae_init(&tr->sae, c);
    if (!e) e = sae_set_model_file(&tr->sae, model_path);
    if (!e) e = sae_acts_compute(&tr->train, tf, train, c->layer);
    if (!e) e = sae_acts_compute(&tr->val, tf, val, c->layer);
    if (e) return e;
    rng init;
    rng_seed(&init, seed);
    sae_init_weights(&tr->sae, &init);
    sae_acts_mean(&tr->train, tr->sae.b_dec->data);   /* the reference's b_dec start */
    return alloc_firing(tr);
}

void sat_free(sat_trainer *tr)
{
    sae_acts_free(&tr->train);
    sae_acts_free(&tr->val);
    free(tr->since);
    free(tr->dead);
    free(tr->val_active);
    tr->since = NULL;
    tr->dead = NULL;
    tr->val_active = NULL;
    sae_free(&tr->sae);
}

err_code sat_check_resume(const ck_file *f, const char *path, const tf_model *tf,
                          const char *model_path)
{
    sae_model old;
    err_code e = sae_load(&old, f, path, false);
    if (!e) e = sae_check_pair(&old, path, tf, model_path);
    sae_free(&old);
    return e;
}

/* ---- the model ---------------------------------------------------------------- */

const float *sat_row(const sat_trainer *tr, int id)
{
    size_t r = (size_t)id;
    return r < tr->train.n_rows ? tr->train.x + r * tr->train.d
                                : tr->val.x + (r - tr->train.n_rows) * tr->val.d;
}

double sat_l1_scale(const sat_trainer *tr)
{
    const sae_acts *a = &tr->train;
    double sq = 0.0;
    for (size_t i = 0; i < a->n_rows * (size_t)a->d; i++) sq += (double)a->x[i] * a->x[i];
    return sq > 0 ? sqrt((double)a->d * (double)a->n_rows / sq) : 1.0;
}

void sat_set_l1(sat_trainer *tr, double l1, long warmup, long resample_every)
{
    tr->sae.c.l1 = (float)(l1 / sat_l1_scale(tr));
    tr->l1_warmup = warmup > 0 ? warmup : 0;
    tr->resample_every = resample_every > 0 ? resample_every : 0;
}

/* Dead: no activation on the last SAE_DEAD_ROWS rows. */
void sat_track_firing(sat_trainer *tr, const float *f, int N)
{
    const int F = tr->sae.c.n_features;
    for (int i = 0; i < F; i++) {
        bool fired = false;
        for (int r = 0; r < N && !fired; r++) fired = f[(size_t)r * F + i] > 0.0f;
        int64_t s = fired ? 0 : (int64_t)tr->since[i] + N;
        tr->since[i] = s > INT32_MAX ? INT32_MAX : (int32_t)s;
        tr->dead[i] = tr->since[i] >= SAE_DEAD_ROWS;
    }
}

/* The share of the L1 coefficient at the step being trained (the loop
 * counts it once the step is done). */
static float l1_ramp(const sat_trainer *tr)
{
    if (!tr->step || tr->l1_warmup <= 0) return 1.0f;
    double r = (double)(*tr->step + 1) / (double)tr->l1_warmup;
    return r < 1.0 ? (float)r : 1.0f;
}

/* Features f (N, F) of validation rows, for the --log columns. */
static void tally_validation(sat_trainer *tr, const float *f, int N)
{
    const int F = tr->sae.c.n_features;
    for (size_t i = 0; i < (size_t)N * F; i++)
        if (f[i] > 0.0f) {
            tr->val_active[i % F]++;
            tr->val_l0 += 1.0;
        }
    tr->val_rows += (size_t)N;
}

/* A batch is b->T activation rows, their ids in b->x (B = 1). */
static tensor *loss(void *impl, ag_tape *t, const ds_batch *b)
{
    sat_trainer *tr = impl;
    const int N = b->T, d = tr->sae.c.d_model;
    tensor *x = ag_wrap(t, ag_alloc(t, (size_t)N * d * sizeof(float)), 2, (const int[]){ N, d });
    if (!x) return NULL;
    for (int r = 0; r < N; r++)
        memcpy(x->data + (size_t)r * d, sat_row(tr, b->x[r]), (size_t)d * sizeof(float));
    bool training = t->grad;
    tr->sae.l1_ramp = training ? l1_ramp(tr) : 1.0f;   /* validation: the full objective */
    tensor *f = NULL;
    tensor *l = sae_loss(&tr->sae, t, x, training ? tr->dead : NULL, &f);
    if (l && training) sat_track_firing(tr, f->data, tn_rows(f));
    else if (l) tally_validation(tr, f->data, tn_rows(f));
    return l;
}

static char *config_json(const void *impl)
{
    char *json = NULL;
    sae_config_to_json(&((const sat_trainer *)impl)->sae.c, &json);
    return json;
}

static err_code put_meta(const void *impl, ck_writer *w)
{
    return sae_put_meta(&((const sat_trainer *)impl)->sae, w);
}

static void after_backward(void *impl) { sae_project_decoder_grad(&((sat_trainer *)impl)->sae); }
static void after_update(void *impl)
{
    sat_trainer *tr = impl;
    sae_normalize_decoder(&tr->sae);
    long step = tr->step ? *tr->step + 1 : 0;   /* the loop counts the step after this call */
    if (tr->sae.c.variant == SAE_L1 && tr->resample_every > 0 && step > 0 &&
        step % tr->resample_every == 0)
        sat_resample(tr, step);
}

static void log_values(const void *impl, FILE *f)
{
    const sat_trainer *tr = impl;
    const int F = tr->sae.c.n_features;
    int dead = 0;
    for (int i = 0; i < F; i++) dead += tr->val_active[i] == 0;
    fprintf(f, "\t%.3f\t%.6f", tr->val_rows ? tr->val_l0 / (double)tr->val_rows : 0.0,
            (double)dead / F);
}

/* The SAE's evaluation on the validation names, as columns of the summary. */
static err_code summary_columns(const void *impl, FILE *f)
{
    const sat_trainer *tr = impl;
    sae_stats st;
    err_code e = sae_evaluate(&tr->sae, tr->tf, tr->val_names, SAT_EVAL_NAMES, &st, NULL);
    if (!e) sae_stats_write_tsv(f, &st);
    return e;
}

tr_model sat_tr_model(sat_trainer *tr)
{
    return (tr_model){ .kind = SAE_KIND, .params = &tr->sae.p, .impl = tr, .loss = loss,
                       .config_json = config_json, .put_meta = put_meta,
                       .after_backward = after_backward, .after_update = after_update,
                       .summary_columns = summary_columns,
                       .log_columns = "\tl0\tdead_frac", .log_values = log_values };
}

/* ---- the source: rows of random training names ------------------------------ */

/* Room for n row ids in b->x (growing geometrically). */
static err_code reserve_rows(ds_batch *b, size_t n)
{
    if (n > INT32_MAX) return err_set(ERR_ARG, "too many activation rows");
    if ((int)n <= b->cap_T) return ERR_OK;
    size_t cap = b->cap_T ? 2 * (size_t)b->cap_T : 256;
    while (cap < n) cap *= 2;
    if (cap > INT32_MAX) cap = INT32_MAX;
    int *x = realloc(b->x, cap * sizeof *x);
    if (!x) return err_set(ERR_NOMEM, "out of memory for a batch");
    b->x = x;
    b->cap_B = 1;
    b->cap_T = (int)cap;
    return ERR_OK;
}

static err_code next(void *ctx, rng *r, int batch_size, ds_batch *b)
{
    const sae_acts *a = &((const sat_trainer *)ctx)->train;
    size_t n = 0;
    for (int i = 0; i < batch_size; i++) {
        size_t name = rng_below(r, (uint32_t)a->n_names);
        err_code e = reserve_rows(b, n + (a->row[name + 1] - a->row[name]));
        if (e) return e;
        for (size_t row = a->row[name]; row < a->row[name + 1]; row++) b->x[n++] = (int)row;
    }
    b->B = 1;
    b->T = (int)n;
    b->n_tokens = n;
    return ERR_OK;
}

/* The SAE loss over every validation row (the loss is a mean over rows). */
static err_code eval(void *ctx, const tr_model *m, ag_tape *t, int batch_size, double *loss_sum,
                     size_t *n_targets)
{
    (void)batch_size;   /* rows, not names, bound a validation batch */
    sat_trainer *tr = ctx;
    ds_batch b = { 0 };
    err_code e = reserve_rows(&b, SAT_EVAL_ROWS);
    memset(tr->val_active, 0, (size_t)tr->sae.c.n_features * sizeof *tr->val_active);
    tr->val_l0 = 0;
    tr->val_rows = 0;
    *loss_sum = 0;
    *n_targets = 0;
    for (size_t r = 0; !e && r < tr->val.n_rows; r += SAT_EVAL_ROWS) {
        size_t n = tr->val.n_rows - r < SAT_EVAL_ROWS ? tr->val.n_rows - r : SAT_EVAL_ROWS;
        for (size_t i = 0; i < n; i++) b.x[i] = (int)(tr->train.n_rows + r + i);
        b.B = 1;
        b.T = (int)n;
        b.n_tokens = n;
        ag_reset(t);
        tensor *l = m->loss(m->impl, t, &b);
        if (!l) e = ERR_ARG;
        else *loss_sum += (double)l->data[0] * (double)n;
        *n_targets += n;
    }
    ds_batch_free(&b);
    return e;
}

static err_code save(void *ctx, ck_writer *w)
{
    const sat_trainer *tr = ctx;
    char warmup[24], every[24];
    snprintf(warmup, sizeof warmup, "%ld", tr->l1_warmup);
    snprintf(every, sizeof every, "%ld", tr->resample_every);
    err_code e = ck_put_meta(w, WARMUP_KEY, warmup);
    if (!e) e = ck_put_meta(w, RESAMPLE_KEY, every);
    if (e) return e;
    return ck_put(w, SINCE_NAME, CK_I32, 1, (const int64_t[]){ tr->sae.c.n_features }, tr->since);
}

static err_code load(void *ctx, const ck_file *f)
{
    sat_trainer *tr = ctx;
    const char *warmup = ck_meta(f, WARMUP_KEY), *every = ck_meta(f, RESAMPLE_KEY);
    tr->l1_warmup = warmup ? strtol(warmup, NULL, 10) : 0;   /* absent: written before them */
    tr->resample_every = every ? strtol(every, NULL, 10) : 0;
    const ck_tensor *t = ck_get(f, SINCE_NAME);
    if (!t && tr->sae.c.variant == SAE_L1) return ERR_OK;   /* written before l1 kept it */
    if (!t || t->dtype != CK_I32 || t->numel != (size_t)tr->sae.c.n_features)
        return err_set(ERR_FORMAT, "no valid %s in the checkpoint", SINCE_NAME);
    memcpy(tr->since, t->data, t->numel * sizeof *tr->since);
    for (int i = 0; i < tr->sae.c.n_features; i++) tr->dead[i] = tr->since[i] >= SAE_DEAD_ROWS;
    return ERR_OK;
}

tr_source sat_tr_source(sat_trainer *tr)
{
    return (tr_source){ .ctx = tr, .next = next, .eval = eval, .save = save, .load = load };
}

/* ---- resampling dead features (l1) ------------------------------------------ */

/* The Adam moments of the parameter value at `at` (inside p's buffer) restart. */
static void reset_moments(tn_params *p, const float *at)
{
    size_t i = (size_t)(at - p->data);
    p->m[i] = 0.0f;
    p->v[i] = 0.0f;
}

/* Mean norm of the encoder columns of the live features (1 if none). */
static double live_encoder_norm(const sat_trainer *tr)
{
    const int d = tr->sae.c.d_model, F = tr->sae.c.n_features;
    const float *W = tr->sae.W_enc->data;
    double sum = 0.0;
    int n = 0;
    for (int i = 0; i < F; i++) {
        if (tr->dead[i]) continue;
        double sq = 0.0;
        for (int j = 0; j < d; j++) sq += (double)W[(size_t)j * F + i] * W[(size_t)j * F + i];
        sum += sqrt(sq);
        n++;
    }
    return n ? sum / n : 1.0;
}

/* Feature i takes the unit direction e (d) as its decoder row, scale x e
 * as its encoder column, b_enc 0, fresh moments, and a fresh firing count. */
static void reinit_feature(sat_trainer *tr, int i, const float *e, double scale)
{
    sae_model *m = &tr->sae;
    const int d = m->c.d_model, F = m->c.n_features;
    for (int j = 0; j < d; j++) {
        float *dec = m->W_dec->data + (size_t)i * d + j, *enc = m->W_enc->data + (size_t)j * F + i;
        *dec = e[j];
        *enc = (float)(scale * e[j]);
        reset_moments(&m->p, dec);
        reset_moments(&m->p, enc);
    }
    m->b_enc->data[i] = 0.0f;
    reset_moments(&m->p, m->b_enc->data + i);
    tr->since[i] = 0;
    tr->dead[i] = 0;
}

/* Index p with cum[p - 1] <= u < cum[p] (cum ascending, n >= 1). */
static int draw_cumulative(const double *cum, int n, double u)
{
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (cum[mid] > u) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

int sat_resample(sat_trainer *tr, long step)
{
    sae_model *m = &tr->sae;
    const int d = m->c.d_model, F = m->c.n_features;
    const size_t rows = tr->train.n_rows;
    int n_dead = 0;
    for (int i = 0; i < F; i++) n_dead += tr->dead[i] != 0;
    if (!n_dead || !rows) return 0;
    const int P = rows < RESAMPLE_POOL ? (int)rows : RESAMPLE_POOL;
    float *x = malloc((size_t)P * d * sizeof *x), *err = malloc((size_t)P * d * sizeof *err);
    float *f = malloc(((size_t)P * F + sae_scratch_floats(&m->c)) * sizeof *f);
    double *cum = malloc((size_t)P * sizeof *cum);
    int done = 0;
    if (x && err && f && cum) {
        rng r;
        rng_seed(&r, rng_at(tr->seed, (uint64_t)step));
        for (int p = 0; p < P; p++)
            memcpy(x + (size_t)p * d, tr->train.x + (size_t)rng_below(&r, (uint32_t)rows) * d,
                   (size_t)d * sizeof *x);
        sae_encode(m, x, P, f, f + (size_t)P * F);
        sae_decode(m, f, P, err);
        for (int p = 0; p < P; p++) {   /* err = x - x^, drawn by its squared norm */
            double sq = 0.0;
            for (int j = 0; j < d; j++) {
                float *e = err + (size_t)p * d + j;
                *e = x[(size_t)p * d + j] - *e;
                sq += (double)*e * *e;
            }
            cum[p] = (p ? cum[p - 1] : 0.0) + sq;
        }
        double scale = RESAMPLE_ENC_SCALE * live_encoder_norm(tr);
        for (int i = 0; i < F && cum[P - 1] > 0; i++) {
            if (!tr->dead[i]) continue;
            float *e = err + (size_t)draw_cumulative(cum, P, rng_uniform(&r) * cum[P - 1]) * d;
            double n = 0.0;   /* > 0: a row of zero error is never drawn */
            for (int j = 0; j < d; j++) n += (double)e[j] * e[j];
            for (int j = 0; j < d; j++) e[j] = (float)(e[j] / sqrt(n));   /* a direction */
            reinit_feature(tr, i, e, scale);
            done++;
        }
    }
    free(x);
    free(err);
    free(f);
    free(cum);
    return done;
}
