/* saetrain.c - training an SAE on a frozen Transformer's activations; see
 * saetrain.h. */
#include "saetrain.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define SINCE_NAME "source.rows_since_fired"

/* ---- setup ------------------------------------------------------------------ */

/* The AuxK bookkeeping of the topk variant: nothing fired yet, nothing dead. */
static err_code alloc_firing(sat_trainer *tr)
{
    if (tr->sae.c.variant != SAE_TOPK) return ERR_OK;
    tr->since = calloc((size_t)tr->sae.c.n_features, sizeof *tr->since);
    tr->dead = calloc((size_t)tr->sae.c.n_features, sizeof *tr->dead);
    return tr->since && tr->dead ? ERR_OK : err_set(ERR_NOMEM, "out of memory");
}

err_code sat_init(sat_trainer *tr, const sae_config *c, const tf_model *tf, const char *model_path,
                  const ds_names *train, const ds_names *val, uint64_t seed)
{
    memset(tr, 0, sizeof *tr);
    tr->tf = tf;
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
    tr->since = NULL;
    tr->dead = NULL;
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

/* AuxK's notion of dead: no activation on the last SAE_DEAD_ROWS rows. */
void sat_track_firing(sat_trainer *tr, const float *f, int N)
{
    if (!tr->since) return;
    const int F = tr->sae.c.n_features;
    for (int i = 0; i < F; i++) {
        bool fired = false;
        for (int r = 0; r < N && !fired; r++) fired = f[(size_t)r * F + i] > 0.0f;
        int64_t s = fired ? 0 : (int64_t)tr->since[i] + N;
        tr->since[i] = s > INT32_MAX ? INT32_MAX : (int32_t)s;
        tr->dead[i] = tr->since[i] >= SAE_DEAD_ROWS;
    }
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
    bool training = t->grad && tr->since;
    tensor *f = NULL;
    tensor *l = sae_loss(&tr->sae, t, x, training ? tr->dead : NULL, &f);
    if (l && training) sat_track_firing(tr, f->data, tn_rows(f));
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
static void after_update(void *impl) { sae_normalize_decoder(&((sat_trainer *)impl)->sae); }

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
                       .summary_columns = summary_columns };
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
    const sat_trainer *tr = ctx;
    ds_batch b = { 0 };
    err_code e = reserve_rows(&b, SAT_EVAL_ROWS);
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
    if (!tr->since) return ERR_OK;
    return ck_put(w, SINCE_NAME, CK_I32, 1, (const int64_t[]){ tr->sae.c.n_features }, tr->since);
}

static err_code load(void *ctx, const ck_file *f)
{
    sat_trainer *tr = ctx;
    if (!tr->since) return ERR_OK;
    const ck_tensor *t = ck_get(f, SINCE_NAME);
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
