/* test_saetrain.c - the SAE trainer's model and source: initialisation,
 * batches of whole names, the whole-validation-set loss, the firing
 * bookkeeping and its checkpoint round trip, resampling, and training through tr_run
 * with an exact resume, on the fixture Transformer (d_model 16, 2 layers). */
#include "saetrain.h"
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TF_FIXTURE TEST_DATA("fixtures/transformer.safetensors")
#define OTHER_TF TEST_DATA("fixtures/import_transformer.safetensors")

/* ---- harness ------------------------------------------------------------ */

/* The fixture Transformer, its vocabulary, and n random names of 3 to 9
 * letters (a-z, tokens 6 to 31) for each side. */
typedef struct fixture {
    ck_file   file;
    tf_model  tf;
    txt_vocab vocab;
    ds_names  train, val;
} fixture;

static void random_names(ds_names *d, size_t n, rng *r)
{
    d->n = n;
    d->start = malloc((n + 1) * sizeof *d->start);
    d->tok = malloc(n * 9 * sizeof *d->tok);
    d->max_len = 0;
    d->start[0] = 0;
    for (size_t i = 0; i < n; i++) {
        int len = 3 + (int)rng_below(r, 7);
        for (int j = 0; j < len; j++) d->tok[d->start[i] + (size_t)j] = 6 + (int)rng_below(r, 26);
        d->start[i + 1] = d->start[i] + (size_t)len;
        if (len > d->max_len) d->max_len = len;
    }
}

static bool fixture_init(fixture *f)
{
    memset(f, 0, sizeof *f);
    if (ck_read(TF_FIXTURE, &f->file) || tf_load(&f->tf, &f->file, TF_FIXTURE, false) ||
        txt_vocab_from_json(&f->vocab, ck_meta(&f->file, "vocab")))
        return false;
    rng r;
    rng_seed(&r, 17);
    random_names(&f->train, 20, &r);
    random_names(&f->val, 6, &r);
    return true;
}

static void fixture_free(fixture *f)
{
    ds_free(&f->train);
    ds_free(&f->val);
    txt_vocab_free(&f->vocab);
    tf_free(&f->tf);
    ck_free(&f->file);
}

static sae_config config(sae_variant v, int F)
{
    return (sae_config){ .d_model = 16, .n_features = F, .layer = 1, .variant = v,
                         .l1 = v == SAE_L1 ? 0.01f : 0.0f, .k = v == SAE_TOPK ? 4 : 0 };
}

/* A trainer of F features of variant v on the fixture (seed 1). */
static bool start(sat_trainer *tr, const fixture *f, sae_variant v, int F)
{
    sae_config c = config(v, F);
    return sat_init(tr, &c, &f->tf, TF_FIXTURE, &f->train, &f->val, 1) == ERR_OK;
}

/* ---- setup --------------------------------------------------------------- */

TEST(init_activations_and_b_dec)
{
    fixture f;
    CHECK(fixture_init(&f));
    static sat_trainer tr;
    CHECK(start(&tr, &f, SAE_TOPK, 24));
    size_t rows = 0;
    for (size_t i = 0; i < f.train.n; i++) rows += (size_t)ds_len(&f.train, i) + 1;
    CHECK(tr.train.n_rows == rows && tr.train.n_names == 20 && tr.val.n_names == 6);
    CHECK(tr.since && tr.dead && tr.since[0] == 0 && !tr.dead[23]);
    /* b_dec starts at the mean training activation */
    double mean = 0;
    for (size_t r = 0; r < rows; r++) mean += sat_row(&tr, (int)r)[5];
    CHECK_NEAR(tr.sae.b_dec->data[5], mean / (double)rows, 1e-5);
    CHECK(sat_row(&tr, (int)rows) == tr.val.x && sat_row(&tr, 2) == tr.train.x + 2 * 16);
    CHECK(tr.sae.model_file && !strcmp(tr.sae.model_file, TF_FIXTURE) && tr.sae.model_hash[0]);
    sat_free(&tr);
    /* the l1 variant keeps firing counts too (resampling) */
    CHECK(start(&tr, &f, SAE_L1, 24));
    CHECK(tr.since && tr.dead && tr.val_active && tr.l1_warmup == 0 && tr.resample_every == 0);
    sat_free(&tr);
    /* an SAE that does not fit the Transformer */
    sae_config c = config(SAE_L1, 24);
    c.d_model = 32;
    CHECK(sat_init(&tr, &c, &f.tf, TF_FIXTURE, &f.train, &f.val, 1) == ERR_MISMATCH);
    sat_free(&tr);
    c = config(SAE_L1, 24);
    c.layer = 3;
    CHECK(sat_init(&tr, &c, &f.tf, TF_FIXTURE, &f.train, &f.val, 1) == ERR_MISMATCH);
    sat_free(&tr);
    fixture_free(&f);
}

/* ---- batches and evaluation ------------------------------------------------ */

/* The row ids of b are the complete rows of `names` names, name by name;
 * seen[i] counts name i. */
static bool whole_names(const sae_acts *a, const ds_batch *b, int names, int *seen)
{
    int k = 0, found = 0;
    while (k < b->T) {
        size_t id = (size_t)b->x[k], i = 0;
        while (i < a->n_names && a->row[i + 1] <= id) i++;
        if (i == a->n_names || id != a->row[i]) return false;   /* not a name's first row */
        for (size_t r = a->row[i]; r < a->row[i + 1]; r++, k++)
            if (k >= b->T || (size_t)b->x[k] != r) return false;
        seen[i]++;
        found++;
    }
    return found == names && b->B == 1 && b->n_tokens == (size_t)b->T;
}

TEST(batch_of_B_names_has_exactly_their_rows)
{
    fixture f;
    CHECK(fixture_init(&f));
    static sat_trainer tr;
    CHECK(start(&tr, &f, SAE_L1, 24));
    tr_source src = sat_tr_source(&tr);
    ds_batch b = { 0 };
    rng r;
    rng_seed(&r, 3);
    int seen[20] = { 0 };
    bool ok = true;
    for (int step = 0; step < 40; step++) {
        int B = step % 2 ? 5 : 60;   /* 60 names: more rows than the first buffer holds */
        CHECK(src.next(src.ctx, &r, B, &b) == ERR_OK);
        ok &= whole_names(&tr.train, &b, B, seen);
    }
    CHECK(ok);
    bool all = true;   /* drawn uniformly: every name comes up */
    for (int i = 0; i < 20; i++) all &= seen[i] > 0;
    CHECK(all);
    ds_batch_free(&b);
    sat_free(&tr);
    fixture_free(&f);
}

/* The plain (tapeless) l1 loss of one row: sum (x - x^)^2 + l1 sum |f|. */
static double row_loss(const sae_model *m, const float *x)
{
    const int d = m->c.d_model, F = m->c.n_features;
    float *f = malloc((size_t)F * sizeof *f), *xh = malloc((size_t)d * sizeof *xh);
    float *scratch = malloc(sae_scratch_floats(&m->c) * sizeof *scratch);
    sae_encode(m, x, 1, f, scratch);
    sae_decode(m, f, 1, xh);
    double s = 0;
    for (int j = 0; j < d; j++) s += ((double)x[j] - xh[j]) * ((double)x[j] - xh[j]);
    for (int i = 0; i < F; i++) s += (double)m->c.l1 * fabs(f[i]);
    free(f);
    free(xh);
    free(scratch);
    return s;
}

TEST(eval_is_the_loss_of_every_validation_row)
{
    fixture f;
    CHECK(fixture_init(&f));
    static sat_trainer tr;
    CHECK(start(&tr, &f, SAE_L1, 24));
    tr_model m = sat_tr_model(&tr);
    tr_source src = sat_tr_source(&tr);
    ag_tape t;
    CHECK(ag_init(&t, 1 << 16) == ERR_OK);
    t.grad = false;
    double sum = 0, want = 0;
    size_t n = 0;
    CHECK(src.eval(src.ctx, &m, &t, 16, &sum, &n) == ERR_OK);
    CHECK(n == tr.val.n_rows);
    for (size_t r = 0; r < tr.val.n_rows; r++) want += row_loss(&tr.sae, tr.val.x + r * 16);
    CHECK_NEAR(sum, want, 1e-4 * (double)n);
    ag_free(&t);
    sat_free(&tr);
    fixture_free(&f);
}

/* ---- AuxK's firing bookkeeping ------------------------------------------- */

TEST(firing_marks_dead_after_SAE_DEAD_ROWS_and_alive_when_fired)
{
    fixture f;
    CHECK(fixture_init(&f));
    static sat_trainer tr;
    CHECK(start(&tr, &f, SAE_TOPK, 24));
    enum { N = 1000 };
    float *quiet = calloc((size_t)N * 24, sizeof *quiet);
    for (int i = 0; i < SAE_DEAD_ROWS / N - 1; i++) sat_track_firing(&tr, quiet, N);
    CHECK(tr.since[7] == SAE_DEAD_ROWS - N && !tr.dead[7]);
    sat_track_firing(&tr, quiet, N);
    CHECK(tr.since[7] == SAE_DEAD_ROWS && tr.dead[7] && tr.dead[0]);
    quiet[(size_t)(N - 1) * 24 + 7] = 0.5f;   /* feature 7 fires on the last row */
    sat_track_firing(&tr, quiet, N);
    CHECK(tr.since[7] == 0 && !tr.dead[7] && tr.dead[6] && tr.since[6] == SAE_DEAD_ROWS + N);
    tr.since[3] = INT32_MAX - 5;   /* the count saturates */
    sat_track_firing(&tr, quiet, N);
    CHECK(tr.since[3] == INT32_MAX && tr.dead[3]);
    free(quiet);
    /* a training loss counts its rows; an evaluation does not */
    memset(tr.since, 0, 24 * sizeof *tr.since);
    tr_model m = sat_tr_model(&tr);
    ds_batch b = { 0 };
    rng r;
    rng_seed(&r, 1);
    tr_source src = sat_tr_source(&tr);
    CHECK(src.next(src.ctx, &r, 3, &b) == ERR_OK);
    ag_tape t;
    CHECK(ag_init(&t, 1 << 16) == ERR_OK);
    t.grad = false;
    CHECK(m.loss(m.impl, &t, &b) != NULL);
    int32_t most = 0;
    for (int i = 0; i < 24; i++) most = tr.since[i] > most ? tr.since[i] : most;
    CHECK(most == 0);
    ag_reset(&t);
    t.grad = true;
    CHECK(m.loss(m.impl, &t, &b) != NULL);
    int fired = 0;
    bool counted = true;
    for (int i = 0; i < 24; i++) {
        fired += tr.since[i] == 0;
        counted &= tr.since[i] == 0 || tr.since[i] == b.T;
    }
    CHECK(counted && fired >= 4 && fired < 24);   /* topk 4: at least 4 features fired */
    ds_batch_free(&b);
    ag_free(&t);
    sat_free(&tr);
    fixture_free(&f);
}

static err_code save_source(const tr_source *src, const char *path)
{
    ck_writer *w = ck_writer_new();
    err_code rc = w ? src->save(src->ctx, w) : ERR_NOMEM;
    if (!rc) rc = ck_write(w, path);
    ck_writer_free(w);
    return rc;
}

TEST(firing_bookkeeping_save_load_round_trip)
{
    fixture f;
    CHECK(fixture_init(&f));
    static sat_trainer a, b, other, l1;
    CHECK(start(&a, &f, SAE_TOPK, 24) && start(&b, &f, SAE_TOPK, 24) &&
          start(&other, &f, SAE_TOPK, 32) && start(&l1, &f, SAE_L1, 24));
    for (int i = 0; i < 24; i++) a.since[i] = i * 3000;   /* dead from i = 17 */
    tr_source sa = sat_tr_source(&a), sb = sat_tr_source(&b), so = sat_tr_source(&other);
    tr_source sl = sat_tr_source(&l1);
    const char *path = test_path("since.safetensors");
    CHECK(save_source(&sa, path) == ERR_OK);
    ck_file file;
    CHECK(ck_read(path, &file) == ERR_OK);
    const ck_tensor *t = ck_get(&file, "source.rows_since_fired");
    CHECK(t && t->dtype == CK_I32 && t->ndim == 1 && t->shape[0] == 24);
    CHECK(sb.load(sb.ctx, &file) == ERR_OK);
    CHECK(!memcmp(a.since, b.since, 24 * sizeof *a.since));
    CHECK(!b.dead[16] && b.dead[17] && b.dead[23]);
    CHECK(so.load(so.ctx, &file) == ERR_FORMAT);
    CHECK(!strcmp(err_msg(), "no valid source.rows_since_fired in the checkpoint"));
    CHECK(sl.load(sl.ctx, &file) == ERR_OK && l1.dead[17] && !l1.dead[16]);   /* l1 keeps it too */
    ck_free(&file);
    /* l1 writes its recipe, read back; a checkpoint without any is an l1 one of before */
    l1.l1_warmup = 7;
    l1.resample_every = 9;
    CHECK(save_source(&sl, path) == ERR_OK && ck_read(path, &file) == ERR_OK);
    l1.l1_warmup = l1.resample_every = 0;
    CHECK(sl.load(sl.ctx, &file) == ERR_OK && l1.l1_warmup == 7 && l1.resample_every == 9);
    ck_free(&file);
    ck_writer *w = ck_writer_new();
    CHECK(w && ck_write(w, path) == ERR_OK && ck_read(path, &file) == ERR_OK);
    ck_writer_free(w);
    CHECK(sl.load(sl.ctx, &file) == ERR_OK && l1.l1_warmup == 0 && l1.resample_every == 0);
    CHECK(sb.load(sb.ctx, &file) == ERR_FORMAT);   /* topk needs it */
    ck_free(&file);
    sat_free(&a);
    sat_free(&b);
    sat_free(&other);
    sat_free(&l1);
    fixture_free(&f);
}

/* ---- resampling (l1) -------------------------------------------------------- */

static double norm_of(const float *v, size_t n, size_t stride)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)v[i * stride] * v[i * stride];
    return sqrt(s);
}

TEST(resampling_restarts_the_dead_features_only)
{
    fixture f;
    CHECK(fixture_init(&f));
    static sat_trainer tr, twin;
    CHECK(start(&tr, &f, SAE_L1, 24) && start(&twin, &f, SAE_L1, 24));
    CHECK(sat_resample(&tr, 5) == 0);   /* nothing dead */
    sae_model *m = &tr.sae;
    const size_t d = 16, F = 24;
    for (size_t i = 0; i < m->p.n; i++) m->p.m[i] = m->p.v[i] = twin.sae.p.m[i] = twin.sae.p.v[i] = 1.0f;
    float old4[16], old3[16];
    memcpy(old4, m->W_dec->data + 4 * d, sizeof old4);
    memcpy(old3, m->W_dec->data + 3 * d, sizeof old3);
    tr.dead[3] = tr.dead[5] = twin.dead[3] = twin.dead[5] = 1;
    tr.since[3] = tr.since[5] = SAE_DEAD_ROWS;
    CHECK(sat_resample(&tr, 40) == 2 && sat_resample(&twin, 40) == 2);
    CHECK(!tr.dead[3] && tr.since[3] == 0 && !tr.dead[5]);
    CHECK(!memcmp(m->W_dec->data + 4 * d, old4, sizeof old4));   /* the live ones stay */
    CHECK(memcmp(m->W_dec->data + 3 * d, old3, sizeof old3) != 0);
    CHECK_NEAR(norm_of(m->W_dec->data + 3 * d, d, 1), 1.0, 1e-5);
    CHECK(m->b_enc->data[3] == 0.0f);
    double live = 0.0;
    for (size_t i = 0; i < F; i++)
        if (i != 3 && i != 5) live += norm_of(m->W_enc->data + i, d, F) / (double)(F - 2);
    CHECK_NEAR(norm_of(m->W_enc->data + 3, d, F), 0.2 * live, 1e-4);
    for (size_t j = 0; j < d; j++) {   /* encoder column = decoder row, scaled */
        CHECK_NEAR(m->W_enc->data[j * F + 3] / (0.2 * live), m->W_dec->data[3 * d + j], 1e-4);
        size_t dec = (size_t)(m->W_dec->data + 3 * d + j - m->p.data);
        size_t enc = (size_t)(m->W_enc->data + j * F + 3 - m->p.data);
        CHECK(m->p.m[dec] == 0 && m->p.v[dec] == 0 && m->p.m[enc] == 0 && m->p.v[enc] == 0);
    }
    size_t alive = (size_t)(m->W_dec->data + 4 * d - m->p.data);
    CHECK(m->p.m[alive] == 1.0f && m->p.v[alive] == 1.0f);
    /* the draw depends on the seed and the step only */
    CHECK(!memcmp(m->p.data, twin.sae.p.data, m->p.n * sizeof *m->p.data));
    sat_free(&tr);
    sat_free(&twin);
    fixture_free(&f);
}

/* ---- through the training loop ------------------------------------------ */

typedef struct run_result {
    err_code   rc;
    tr_summary sum;
    char       columns[1024];   /* the summary columns of the final weights */
} run_result;

static tr_options sae_options(const char *out, long steps)
{
    tr_options o;
    tr_options_init(&o, SAE_KIND, out);
    o.data = "unused";
    o.steps = steps;
    o.batch_size = 4;
    o.eval_every = 4;
    o.opt.lr = 1e-2f;
    o.opt.weight_decay = 0.0f;
    return o;
}

/* Train a topk SAE on the fixture. */
static run_result run(fixture *f, const tr_options *o)
{
    run_result r = { 0 };
    static tr_session s;
    static sat_trainer tr;
    r.rc = tr_open(&s, o);
    sae_config c = config(SAE_TOPK, 24);
    if (!r.rc && s.resuming) r.rc = sat_check_resume(&s.resume, o->resume_path, &f->tf, TF_FIXTURE);
    if (!r.rc) r.rc = sat_init(&tr, &c, &f->tf, TF_FIXTURE, &f->train, &f->val, s.o.seed);
    s.vocab = &f->vocab;
    tr_model m = sat_tr_model(&tr);
    tr_source src = sat_tr_source(&tr);
    if (!r.rc) r.rc = tr_run(&s, &m, &src, NULL);
    FILE *cols = fmemopen(r.columns, sizeof r.columns - 1, "w");
    if (!r.rc && cols) r.rc = m.summary_columns(m.impl, cols);
    if (cols) fclose(cols);
    r.sum = s.sum;
    tr_close(&s);
    sat_free(&tr);
    return r;
}

TEST(trains_through_tr_run_and_resumes_exactly)
{
    fixture f;
    CHECK(fixture_init(&f));
    tr_options none = sae_options(test_path("none.safetensors"), 0);
    run_result init = run(&f, &none);
    tr_options full = sae_options(test_path("full.safetensors"), 12);
    full.seed = 5;
    run_result a = run(&f, &full);
    CHECK(init.rc == ERR_OK && a.rc == ERR_OK && a.sum.steps == 12);
    CHECK(a.sum.val_loss < init.sum.val_loss);   /* it learns */
    static const char header[] = "l0\texplained_var\tmse\tce_clean\tce_sae\tce_zero\tce_score\t"
                                 "dead_frac\tdense_frac\tkl_sae\tkl_zero\tkl_score\tcos_sim\tl2_ratio\n";
    CHECK(!strncmp(a.columns, header, sizeof header - 1));
    tr_options half = sae_options(test_path("half.safetensors"), 6);
    half.seed = 5;
    run_result b = run(&f, &half);
    tr_options rest = sae_options(test_path("rest.safetensors"), 12);
    rest.resume_path = half.out_path;
    rest.set |= TR_SET_STEPS;
    run_result c = run(&f, &rest);
    CHECK(b.rc == ERR_OK && c.rc == ERR_OK && c.sum.run_steps == 6);
    CHECK(a.sum.val_loss == c.sum.val_loss && a.sum.train_loss == c.sum.train_loss);
    CHECK(test_same_file(full.out_path, rest.out_path) && !strcmp(a.columns, c.columns));
    CHECK(sat_check_resume(&(ck_file){ 0 }, "x", &f.tf, TF_FIXTURE) != ERR_OK);
    ck_file h;
    CHECK(ck_read(half.out_path, &h) == ERR_OK);
    CHECK(sat_check_resume(&h, half.out_path, &f.tf, OTHER_TF) == ERR_MISMATCH);
    ck_free(&h);
    fixture_free(&f);
}
