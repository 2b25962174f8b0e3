/* test_train.c - the shared training loop, driven with a toy bigram model
 * (logits = W[x], W (V, V)): flags, exact resume after --steps and after a
 * signal, NaN stop keeping the last good checkpoint, --keep-best, the
 * whole-set validation loss, kind mismatch on --resume, the summary and
 * the columns a trainer adds to it. */
#include "cli.h"
#include "ops.h"
#include "test.h"
#include "train.h"
#include "trcli.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *DATA = TEST_DATA("train_villes400.txt");

/* ---- a toy model -------------------------------------------------------- */

typedef struct toy {
    tn_params p;
    tensor   *W;
    long      calls;        /* loss() calls */
    long      signal_at;    /* raise SIGINT in this call (0 = never) */
    long      poison_at;    /* make W NaN in this call (0 = never) */
    int       arena_moves;  /* times the tape's main block changed */
    void     *arena;
} toy;

static tensor *toy_loss(void *impl, ag_tape *t, const ds_batch *b)
{
    toy *m = impl;
    if (t->grad) {   /* training steps only */
        m->calls++;
        if (m->calls == m->signal_at) raise(SIGINT);
        if (m->calls == m->poison_at) tn_fill(m->W, NAN);
        if (t->blocks[0].mem != m->arena) m->arena_moves++;
        m->arena = t->blocks[0].mem;
    }
    tensor *logits = op_embedding(t, m->W, b->x, b->B * b->T, 0, NULL);
    return op_cross_entropy(t, logits, b->y, TOK_PAD);
}

static char *toy_config(const void *impl)
{
    (void)impl;
    return strdup("{\"toy\":1}");
}

static void toy_init(toy *m, int V, uint64_t seed)
{
    memset(m, 0, sizeof *m);
    tn_params_init(&m->p);
    m->W = tn_param(&m->p, "W", true, 2, (const int[]){ V, V });
    CHECK(tn_params_alloc(&m->p) == ERR_OK);
    rng r;
    rng_seed(&r, seed);
    tn_fill_normal(m->W, &r, 0.0f, 0.5f);
}

/* The toy's summary columns: when columns_text is set, toy_model adds a
 * summary_columns callback that writes it and returns columns_rc. */
static const char *columns_text;
static err_code    columns_rc;
static int         columns_calls;
static float       columns_saw_w0;   /* W[0] when called: the final weights */

static err_code toy_columns(const void *impl, FILE *f)
{
    columns_calls++;
    columns_saw_w0 = ((const toy *)impl)->W->data[0];
    fputs(columns_text, f);
    return columns_rc ? err_set(columns_rc, "toy columns failed") : ERR_OK;
}

static tr_model toy_model(toy *m)
{
    return (tr_model){ .kind = "toy", .params = &m->p, .impl = m, .loss = toy_loss,
                       .config_json = toy_config,
                       .summary_columns = columns_text ? toy_columns : NULL };
}

/* ---- harness ------------------------------------------------------------ */

__attribute__((constructor)) static void name_program(void) { cli_init("test_train", NULL); }

static tr_options toy_options(const char *out, long steps)
{
    tr_options o;
    tr_options_init(&o, "toy", out);
    o.data = DATA;
    o.steps = steps;
    o.batch_size = 8;
    o.eval_every = 10;
    o.opt.lr = 0.05f;
    o.threads = 1;
    return o;
}

typedef struct run_result {
    err_code rc;
    tr_summary sum;
    char     stdout_text[1024];
    float    W[64 * 64];
    int      n;
} run_result;

/* Open a session, train a fresh toy model (seeded 3) or resume into one,
 * with stdout captured. */
static run_result run(const tr_options *o, toy *m)
{
    run_result r;
    memset(&r, 0, sizeof r);
    tr_session s;
    r.rc = tr_open(&s, o);
    if (!r.rc) r.rc = tr_load_names(&s);
    if (r.rc) {
        tr_close(&s);
        return r;
    }
    toy_init(m, s.vocab->size, 3);
    tr_model tm = toy_model(m);
    fflush(stdout);
    int saved = dup(1);
    FILE *cap = tmpfile();
    dup2(fileno(cap), 1);
    r.rc = trc_run(&s, &tm, NULL);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    rewind(cap);
    size_t n = fread(r.stdout_text, 1, sizeof r.stdout_text - 1, cap);
    r.stdout_text[n] = 0;
    fclose(cap);
    r.sum = s.sum;
    r.n = m->W->n;
    memcpy(r.W, m->W->data, (size_t)m->W->n * sizeof(float));
    tr_close(&s);
    tn_params_free(&m->p);
    return r;
}


static const char *meta_of(const char *path, const char *key, char *out, size_t cap)
{
    ck_file f;
    out[0] = 0;
    if (ck_read(path, &f) == ERR_OK && ck_meta(&f, key)) snprintf(out, cap, "%s", ck_meta(&f, key));
    ck_free(&f);
    return out;
}

/* ---- flags -------------------------------------------------------------- */

TEST(train_options_defaults_and_parsing)
{
    tr_options o;
    tr_options_init(&o, "mlp", "weights/mlp.safetensors");
    CHECK(o.batch_size == 64 && o.seed == 1 && o.split_seed == 0 && o.set == 0);
    CHECK_NEAR(o.opt.lr, 3e-4, 1e-9);
    CHECK_NEAR(o.opt.weight_decay, 0.01, 1e-9);
    CHECK(trc_parse_option(&o, TRC_OPT_LR, "0.01"));
    CHECK(trc_parse_option(&o, TRC_OPT_SCHEDULE, "cosine"));
    CHECK(trc_parse_option(&o, TRC_OPT_STEPS, "123"));
    CHECK(trc_parse_option(&o, 'o', "x.safetensors"));
    CHECK(trc_parse_option(&o, TRC_OPT_KEEP_BEST, NULL));
    CHECK(o.steps == 123 && o.opt.schedule == OPT_COSINE && o.keep_best);
    CHECK(!strcmp(o.out_path, "x.safetensors"));
    CHECK(o.set == (TR_SET_LR | TR_SET_SCHEDULE | TR_SET_STEPS));
    CHECK(!trc_parse_option(&o, 'h', NULL));
    CHECK(!trc_parse_option(&o, TRC_OPT_END, "1"));
}

/* --data shows its default when the program sets one, else "required". */
TEST(train_usage_data_default)
{
    tr_options o;
    tr_options_init(&o, "mlp", "weights/mlp.safetensors");
    char text[8192];
    for (int with_default = 0; with_default < 2; with_default++) {
        o.data = with_default ? "data/villes.txt" : NULL;
        FILE *f = tmpfile();
        trc_print_usage(f, &o);
        rewind(f);
        size_t n = fread(text, 1, sizeof text - 1, f);
        text[n] = 0;
        fclose(f);
        const char *line = strstr(text, "--data FILE");
        CHECK(line != NULL);
        if (!line) continue;
        CHECK(strncmp(strchr(line, '('), with_default ? "(default data/villes.txt)\n" : "(required)\n",
                      with_default ? 26 : 11) == 0);
    }
}

TEST(train_last_path)
{
    char b[64];
    tr_last_path("weights/mlp.safetensors", b, sizeof b);
    CHECK(!strcmp(b, "weights/mlp.last.safetensors"));
    tr_last_path("model.bin", b, sizeof b);
    CHECK(!strcmp(b, "model.bin.last"));
}

/* ---- the loop ----------------------------------------------------------- */

TEST(train_summary_and_learning)
{
    toy m;
    tr_options o = toy_options(test_path("sum.safetensors"), 60);
    o.log_path = test_path("sum.log");
    run_result r = run(&o, &m);
    CHECK(r.rc == ERR_OK);
    CHECK(!strncmp(r.stdout_text, "model\tparams\tsteps\ttrain_loss\tval_loss\tbest_val_loss\t"
                   "best_step\tseconds\tsteps_per_s\ttokens_per_s\ntoy\t", 95));
    CHECK(r.sum.steps == 60 && r.sum.run_steps == 60);
    CHECK(r.sum.val_loss < 3.5 && r.sum.train_loss < 3.5);   /* log(V = 35ish) = 3.6 at start */
    /* the log: a header and a row per evaluation (10, 20, ..., 60) */
    FILE *f = fopen(o.log_path, "r");
    char line[256];
    int rows = 0;
    while (f && fgets(line, sizeof line, f)) rows++;
    if (f) fclose(f);
    CHECK(rows == 7);
    /* the arena settles: nothing is allocated in the loop once warm */
    CHECK(m.arena_moves <= 4);
}

/* A trainer's summary columns follow the common ones, in the one summary,
 * computed once on the final weights. */
TEST(train_summary_extra_columns)
{
    toy m;
    tr_options o = toy_options(test_path("cols.safetensors"), 20);
    columns_text = "extra_a\textra_b\n1.5\tx\n";
    columns_rc = ERR_OK;
    columns_calls = 0;
    run_result r = run(&o, &m);
    columns_text = NULL;
    CHECK(r.rc == ERR_OK);
    CHECK(columns_calls == 1);
    CHECK(columns_saw_w0 == r.W[0]);
    const char *nl = strchr(r.stdout_text, '\n');
    CHECK(nl && !strncmp(nl - 28, "tokens_per_s\textra_a\textra_b\n", 29));
    size_t len = strlen(r.stdout_text);
    CHECK(len > 7 && !strcmp(r.stdout_text + len - 7, "\t1.5\tx\n"));
    int lines = 0, tabs[2] = { 0, 0 };
    for (const char *p = r.stdout_text; *p; p++) {
        if (*p == '\t' && lines < 2) tabs[lines]++;
        lines += *p == '\n';
    }
    CHECK(lines == 2 && tabs[0] == 11 && tabs[1] == 11);
}

/* A failing or malformed column callback: tr_run's error, no summary (the
 * checkpoint is written before). */
TEST(train_summary_columns_errors)
{
    static const struct { const char *text; err_code rc; const char *msg; } cases[] = {
        { "a\tb\n1\t2\n", ERR_IO, "toy columns failed" },
        { "a\tb\n1\n", ERR_OK, "not a two-line TSV" },
        { "a\n", ERR_OK, "not a two-line TSV" },
        { "a\n1\n2\n", ERR_OK, "not a two-line TSV" },
        { "", ERR_OK, "not a two-line TSV" },
        { "\n\n", ERR_OK, "not a two-line TSV" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        toy m;
        tr_options o = toy_options(test_path("colerr.safetensors"), 10);
        columns_text = cases[i].text;
        columns_rc = cases[i].rc;
        run_result r = run(&o, &m);
        columns_text = NULL;
        CHECK(r.rc == (cases[i].rc ? cases[i].rc : ERR_ARG));
        CHECK(strstr(err_msg(), cases[i].msg) != NULL);
        CHECK(r.stdout_text[0] == 0);
        char step[32];
        CHECK(!strcmp(meta_of(o.out_path, "step", step, sizeof step), "10"));
        remove(o.out_path);
    }
}

/* --steps N/2, then --resume to N: bit-for-bit the uninterrupted run. */
TEST(train_resume_after_steps_is_exact)
{
    toy m;
    tr_options full = toy_options(test_path("full.safetensors"), 40);
    run_result a = run(&full, &m);
    tr_options half = toy_options(test_path("half.safetensors"), 20);
    run_result b = run(&half, &m);
    tr_options rest = toy_options(test_path("half.safetensors"), 40);
    rest.resume_path = test_path("half.safetensors");
    rest.set |= TR_SET_STEPS;
    run_result c = run(&rest, &m);
    CHECK(a.rc == ERR_OK && b.rc == ERR_OK && c.rc == ERR_OK);
    CHECK(c.sum.run_steps == 20 && c.sum.steps == 40);
    CHECK(!memcmp(a.W, c.W, (size_t)a.n * sizeof(float)));
    CHECK(a.sum.val_loss == c.sum.val_loss);
    CHECK(a.sum.train_loss == c.sum.train_loss);
    CHECK(a.sum.best_val_loss == c.sum.best_val_loss);
    CHECK(test_same_file(full.out_path, rest.out_path));
}

/* SIGINT mid-run with a cosine schedule and clipping: a checkpoint is
 * written, and resuming it (no flags repeated) ends exactly where the
 * uninterrupted run ends. */
TEST(train_interrupt_then_resume_is_exact)
{
    toy m;
    tr_options o = toy_options(test_path("a.safetensors"), 50);
    o.opt.schedule = OPT_COSINE;
    o.opt.warmup = 5;
    o.opt.clip = 0.5f;
    run_result a = run(&o, &m);

    tr_options oi = o;
    oi.out_path = test_path("b.safetensors");
    tr_session s;
    CHECK(tr_open(&s, &oi) == ERR_OK && tr_load_names(&s) == ERR_OK);
    toy_init(&m, s.vocab->size, 3);
    m.signal_at = 23;
    tr_model tm = toy_model(&m);
    err_code rc = trc_run(&s, &tm, NULL);
    CHECK(rc == ERR_INTERRUPT);
    CHECK(strstr(err_msg(), "interrupted at step 23") != NULL);
    CHECK(s.step == 23);
    tr_close(&s);
    tn_params_free(&m.p);
    char step[32];
    CHECK(!strcmp(meta_of(oi.out_path, "step", step, sizeof step), "23"));
    CHECK(signal(SIGINT, SIG_DFL) == SIG_DFL);   /* the handler was taken down */

    tr_options orr;   /* only --resume: everything else from the checkpoint */
    tr_options_init(&orr, "toy", oi.out_path);
    orr.data = DATA;
    orr.resume_path = oi.out_path;
    run_result c = run(&orr, &m);
    CHECK(a.rc == ERR_OK && c.rc == ERR_OK);
    CHECK(c.sum.steps == 50 && c.sum.run_steps == 27);
    CHECK(!memcmp(a.W, c.W, (size_t)a.n * sizeof(float)));
    CHECK(a.sum.val_loss == c.sum.val_loss && a.sum.train_loss == c.sum.train_loss);
    CHECK(test_same_file(o.out_path, oi.out_path));
}

/* A NaN loss stops the run naming the step; the checkpoint of the last
 * evaluation (step 20) is left as it was. */
TEST(train_nan_stops_and_keeps_last_checkpoint)
{
    toy m;
    tr_options o = toy_options(test_path("nan.safetensors"), 100);
    tr_session s;
    CHECK(tr_open(&s, &o) == ERR_OK && tr_load_names(&s) == ERR_OK);
    toy_init(&m, s.vocab->size, 3);
    m.poison_at = 27;
    tr_model tm = toy_model(&m);
    err_code rc = tr_run(&s, &tm, NULL, NULL);
    CHECK(rc == ERR_NAN);
    CHECK(strstr(err_msg(), "at step 27") != NULL);
    CHECK(strstr(err_msg(), "(step 20) was left as it was") != NULL);
    tr_close(&s);
    tn_params_free(&m.p);
    char step[32];
    CHECK(!strcmp(meta_of(o.out_path, "step", step, sizeof step), "20"));
    ck_file f;
    CHECK(ck_read(o.out_path, &f) == ERR_OK);
    const ck_tensor *W = ck_get(&f, "W");
    bool finite = W != NULL;
    for (size_t i = 0; W && i < W->numel; i++) finite &= isfinite(((const float *)W->data)[i]);
    CHECK(finite);
    CHECK(ck_get(&f, "optim.m.W") && ck_get(&f, "optim.v.W"));
    ck_free(&f);
}

/* --keep-best: the file holds the evaluation of lowest validation loss; on
 * an interrupt the latest state goes to the .last file instead. */
TEST(train_keep_best)
{
    toy m;
    tr_options o = toy_options(test_path("best.safetensors"), 60);
    o.opt.lr = 3.0f;   /* overshoots: the validation loss does not fall steadily */
    o.keep_best = true;
    run_result r = run(&o, &m);
    CHECK(r.rc == ERR_OK);
    char step[32], best[32];
    snprintf(best, sizeof best, "%ld", r.sum.best_step);
    CHECK(!strcmp(meta_of(o.out_path, "step", step, sizeof step), best));
    CHECK(r.sum.best_val_loss <= r.sum.val_loss);

    tr_session s;
    o.out_path = test_path("best2.safetensors");
    CHECK(tr_open(&s, &o) == ERR_OK && tr_load_names(&s) == ERR_OK);
    toy_init(&m, s.vocab->size, 3);
    m.signal_at = 15;
    tr_model tm = toy_model(&m);
    CHECK(trc_run(&s, &tm, NULL) == ERR_INTERRUPT);
    tr_close(&s);
    tn_params_free(&m.p);
    CHECK(!strcmp(meta_of(test_path("best2.safetensors"), "step", step, sizeof step), "10"));
    CHECK(!strcmp(meta_of(test_path("best2.last.safetensors"), "step", step, sizeof step), "15"));
}

/* The validation loss is the mean over all targets, whatever the batching. */
TEST(train_eval_names_is_whole_set_mean)
{
    ds_corpus c;
    CHECK(ds_load(&c, DATA, NULL, 0, 0.1) == ERR_OK);
    toy m;
    toy_init(&m, c.vocab.size, 9);
    tr_model tm = toy_model(&m);
    ag_tape t;
    ag_init(&t, 0);
    double s1, s7;
    size_t n1, n7;
    CHECK(tr_eval_names(&tm, &t, &c.val, 1, &s1, &n1) == ERR_OK);
    CHECK(tr_eval_names(&tm, &t, &c.val, 7, &s7, &n7) == ERR_OK);
    CHECK(t.grad);   /* restored */
    /* by hand: sum over names of -log p(target) */
    double want = 0;
    size_t count = 0;
    int V = c.vocab.size;
    for (size_t i = 0; i < c.val.n; i++) {
        int prev = TOK_SOS;
        for (int p = 0; p <= ds_len(&c.val, i); p++) {
            int y = p < ds_len(&c.val, i) ? ds_name(&c.val, i)[p] : TOK_EOS;
            const float *row = m.W->data + (size_t)prev * V;
            double mx = row[0], z = 0;
            for (int v = 1; v < V; v++) mx = fmax(mx, row[v]);
            for (int v = 0; v < V; v++) z += exp(row[v] - mx);
            want += mx + log(z) - row[y];
            count++;
            prev = y;
        }
    }
    CHECK(n1 == count && n7 == count);
    CHECK_NEAR(s1 / n1, want / count, 1e-5);
    CHECK_NEAR(s7 / n7, want / count, 1e-5);
    ag_free(&t);
    tn_params_free(&m.p);
    ds_corpus_free(&c);
}

TEST(train_resume_rejects_other_kind_and_bad_output)
{
    toy m;
    tr_options o = toy_options(test_path("kind.safetensors"), 10);
    run_result r = run(&o, &m);
    CHECK(r.rc == ERR_OK);
    tr_options o2;
    tr_options_init(&o2, "mlp", test_path("x.safetensors"));
    o2.data = DATA;
    o2.resume_path = o.out_path;
    tr_session s;
    CHECK(tr_open(&s, &o2) == ERR_MISMATCH);
    CHECK(strstr(err_msg(), "toy") != NULL);
    tr_options o3 = toy_options("/nonexistent-dir/x.safetensors", 10);
    CHECK(tr_open(&s, &o3) == ERR_IO);
    CHECK(strstr(err_msg(), "/nonexistent-dir") != NULL);
}

/* --ema: the checkpoint's parameters are the average, the raw weights sit
 * under optim.raw.*, and the reported validation loss is the average's
 * (recomputed here from the saved parameters). */
TEST(train_ema_saves_and_evaluates_the_average)
{
    toy m;
    tr_options o = toy_options(test_path("ema.safetensors"), 40);
    o.ema = 0.9f;
    run_result r = run(&o, &m);
    CHECK(r.rc == ERR_OK);
    ck_file f;
    CHECK(ck_read(o.out_path, &f) == ERR_OK);
    const ck_tensor *avg = ck_get(&f, "W"), *raw = ck_get(&f, TR_RAW_PREFIX "W");
    CHECK(avg && raw && avg->numel == raw->numel);
    bool differ = false;
    for (size_t i = 0; avg && raw && i < avg->numel; i++)
        differ |= ((const float *)avg->data)[i] != ((const float *)raw->data)[i];
    CHECK(differ);
    CHECK(avg && !memcmp(r.W, avg->data, avg->numel * sizeof(float)));   /* the model ends on the average */

    ds_corpus c;
    CHECK(ds_load(&c, DATA, NULL, 0, 0.1) == ERR_OK);
    toy e;
    toy_init(&e, c.vocab.size, 1);
    CHECK(avg && (size_t)e.W->n == avg->numel);
    if (avg) memcpy(e.W->data, avg->data, avg->numel * sizeof(float));
    tr_model tm = toy_model(&e);
    ag_tape t;
    ag_init(&t, 0);
    double sum;
    size_t n;
    CHECK(tr_eval_names(&tm, &t, &c.val, 16, &sum, &n) == ERR_OK);
    CHECK_NEAR(sum / n, r.sum.val_loss, 1e-6);
    ag_free(&t);
    tn_params_free(&e.p);
    tn_params_free(&m.p);
    ds_corpus_free(&c);
    ck_free(&f);
}

/* --ema survives --resume bit for bit, and a tiny decay follows the weights. */
TEST(train_ema_resume_is_exact)
{
    toy m;
    tr_options full = toy_options(test_path("emafull.safetensors"), 40);
    full.ema = 0.95f;
    run_result a = run(&full, &m);
    tr_options half = full;
    half.out_path = test_path("emahalf.safetensors");
    half.steps = 20;
    run_result b = run(&half, &m);
    tr_options rest;   /* --resume and --steps only: the average comes from the checkpoint */
    tr_options_init(&rest, "toy", half.out_path);
    rest.data = DATA;
    rest.resume_path = half.out_path;
    rest.steps = 40;
    rest.set |= TR_SET_STEPS;
    run_result c = run(&rest, &m);
    CHECK(a.rc == ERR_OK && b.rc == ERR_OK && c.rc == ERR_OK);
    CHECK(!memcmp(a.W, c.W, (size_t)a.n * sizeof(float)));
    CHECK(a.sum.val_loss == c.sum.val_loss);
    CHECK(test_same_file(full.out_path, half.out_path));

    tr_options tiny = toy_options(test_path("ematiny.safetensors"), 30);
    tiny.ema = 1e-6f;
    run_result d = run(&tiny, &m);
    ck_file f;
    CHECK(d.rc == ERR_OK && ck_read(tiny.out_path, &f) == ERR_OK);
    const ck_tensor *raw = ck_get(&f, TR_RAW_PREFIX "W");
    double worst = 0;
    for (size_t i = 0; raw && i < raw->numel; i++)
        worst = fmax(worst, fabs(((const float *)raw->data)[i] - d.W[i]));
    CHECK(raw && worst < 1e-5);
    ck_free(&f);
}

/* --swa-start: the weights written are the plain mean of the weights after
 * steps s0..steps (s0 = FRAC x steps), here against runs stopped at each of
 * those steps (the constant schedule does not depend on --steps); and it
 * survives --resume bit for bit. */
TEST(train_swa_is_the_mean_of_the_last_weights_and_resumes_exactly)
{
    toy m;
    tr_options o = toy_options(test_path("swa.safetensors"), 40);
    o.swa_start = 0.9f;   /* s0 = 36: the mean of 5 states */
    run_result a = run(&o, &m);
    CHECK(a.rc == ERR_OK);
    static float mean[64 * 64];
    memset(mean, 0, sizeof mean);
    for (long k = 36; k <= 40; k++) {
        tr_options plain = toy_options(test_path("swak.safetensors"), k);
        run_result r = run(&plain, &m);
        CHECK(r.rc == ERR_OK && r.n == a.n);
        for (int i = 0; i < r.n; i++) mean[i] += r.W[i] / 5.0f;
    }
    double worst = 0, moved = 0;
    for (int i = 0; i < a.n; i++) worst = fmax(worst, fabs(mean[i] - a.W[i]));
    CHECK(worst < 1e-5);
    tr_options last = toy_options(test_path("swal.safetensors"), 40);
    run_result raw = run(&last, &m);
    for (int i = 0; i < a.n; i++) moved = fmax(moved, fabs(raw.W[i] - a.W[i]));
    CHECK(moved > 1e-4);   /* the mean is not the last weights */

    tr_options full = toy_options(test_path("swafull.safetensors"), 40);
    full.swa_start = 0.75f;   /* s0 = 30 */
    run_result b = run(&full, &m);
    tr_options half = full;
    half.out_path = test_path("swahalf.safetensors");
    half.steps = 35;
    half.swa_start = 30.0f / 35.0f;   /* the same s0 */
    run_result c = run(&half, &m);
    tr_options rest;
    tr_options_init(&rest, "toy", half.out_path);
    rest.data = DATA;
    rest.resume_path = half.out_path;
    rest.steps = 40;
    rest.swa_start = 0.75f;
    rest.set |= TR_SET_STEPS | TR_SET_SWA;
    run_result d = run(&rest, &m);
    CHECK(b.rc == ERR_OK && c.rc == ERR_OK && d.rc == ERR_OK);
    CHECK(!memcmp(b.W, d.W, (size_t)b.n * sizeof(float)));
    CHECK(b.sum.val_loss == d.sum.val_loss);

    tr_options both = toy_options(test_path("swaema.safetensors"), 10);
    both.swa_start = 0.5f;
    both.ema = 0.9f;
    CHECK(run(&both, &m).rc == ERR_ARG);
}
