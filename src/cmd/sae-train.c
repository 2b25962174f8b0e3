/* sae-train - train a sparse autoencoder (sae.h) on the residual stream of
 * a trained Transformer, with the shared training loop (train.h).
 *
 * The Transformer is frozen, so its activations are computed once, for
 * every real position of every training and validation name (36k names x
 * ~12 positions x 64 floats is about 100 MB), and a batch is the rows of
 * batch_size names drawn at random: a step costs the SAE alone.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "kinds.h"
#include "sae.h"
#include "trcli.h"
#include "transformer.h"

#define DEFAULT_DATA "data/villes.txt"

enum { DEFAULT_EXPANSION = 4, DEFAULT_BATCH = 16, EVAL_ROWS = 4096, EVAL_NAMES = 64 };

/* Model flags given on the command line (negative / 0 = not given). */
typedef struct model_flags {
    const char *model;     /* NULL = the shipped Transformer */
    int    layer, features, topk;
    double expansion, l1;
} model_flags;

_Noreturn static void usage(const tr_options *o)
{
    printf("Usage: sae-train [-m TRANSFORMER] [OPTION]...\n"
           "Train a sparse autoencoder on the residual stream of a trained Transformer:\n"
           "  f = ReLU((x - b_dec) W_enc + b_enc),  x^ = f W_dec + b_dec,\n"
           "decoder rows of unit norm; x is the residual after --layer blocks at every\n"
           "real position (<SOS> and each character) of the names of --data.\n"
           "\n"
           "SAE:\n"
           "  -m, --model FILE      the Transformer; default: the one shipped in\n"
           "                        weights/transformer.safetensors\n"
           "      --layer L         residual stream after L blocks, 0 = the embeddings\n"
           "                        (default: the last, the input of the final norm)\n"
           "      --features N      number of features (default: --expansion x d_model)\n"
           "      --expansion X     features per residual dimension (default %d)\n"
           "      --l1 X            L1 coefficient: loss = mean sum (x - x^)^2 + X mean sum |f|\n"
           "                        (default %g)\n"
           "      --topk K          TopK variant instead: keep the K largest pre-activations,\n"
           "                        plus the AuxK loss (coefficient 1/32) that revives\n"
           "                        features dead for %d rows\n"
           "On --resume the SAE is the checkpoint's; SAE flags must agree with it.\n"
           "The split seed defaults to the Transformer's, --batch-size counts names, and\n"
           "--weight-decay defaults to 0 (Adam, the reference recipe).\n"
           "\n",
           DEFAULT_EXPANSION, (double)SAE_L1_DEFAULT, SAE_DEAD_ROWS);
    trc_print_usage(stdout, o);
    printf("\nThe summary goes on with the SAE evaluated on the validation names with the\n"
           "final weights (explore sae-stats describes them):\n"
           "  l0 explained_var mse ce_clean ce_sae ce_zero ce_score dead_frac dense_frac\n");
    exit(fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_FAILURE);
}

/* ---- the trainer: SAE, activations, AuxK bookkeeping ---------------------- */

typedef struct trainer {
    sae_model       sae;
    const tf_model *tf;           /* the frozen Transformer */
    const ds_names *val_names;    /* evaluated at the end (summary_columns) */
    sae_acts        train, val;   /* batch rows index train, then val (offset train.n_rows) */
    int32_t        *since;        /* topk: training rows since each feature last fired */
    uint8_t        *dead;         /* topk: since >= SAE_DEAD_ROWS */
} trainer;

static const float *row_of(const trainer *tr, int id)
{
    size_t r = (size_t)id;
    return r < tr->train.n_rows ? tr->train.x + r * tr->train.d
                                : tr->val.x + (r - tr->train.n_rows) * tr->val.d;
}

/* AuxK's notion of dead: no activation on the last SAE_DEAD_ROWS rows. */
static void track_firing(trainer *tr, const tensor *f)
{
    const int F = tr->sae.c.n_features, N = tn_rows(f);
    for (int i = 0; i < F; i++) {
        bool fired = false;
        for (int r = 0; r < N && !fired; r++) fired = f->data[(size_t)r * F + i] > 0.0f;
        int64_t s = fired ? 0 : (int64_t)tr->since[i] + N;
        tr->since[i] = s > INT32_MAX ? INT32_MAX : (int32_t)s;
        tr->dead[i] = tr->since[i] >= SAE_DEAD_ROWS;
    }
}

/* A batch is b->T activation rows, their ids in b->x (B = 1). */
static tensor *loss_fn(void *impl, ag_tape *t, const ds_batch *b)
{
    trainer *tr = impl;
    const int N = b->T, d = tr->sae.c.d_model;
    tensor *x = ag_wrap(t, ag_alloc(t, (size_t)N * d * sizeof(float)), 2, (const int[]){ N, d });
    if (!x) return NULL;
    for (int r = 0; r < N; r++) memcpy(x->data + (size_t)r * d, row_of(tr, b->x[r]), (size_t)d * sizeof(float));
    bool training = t->grad && tr->since;
    tensor *f = NULL;
    tensor *loss = sae_loss(&tr->sae, t, x, training ? tr->dead : NULL, &f);
    if (loss && training) track_firing(tr, f);
    return loss;
}

static char *config_json(const void *impl)
{
    char *json = NULL;
    sae_config_to_json(&((const trainer *)impl)->sae.c, &json);
    return json;
}

static err_code put_meta(const void *impl, ck_writer *w)
{
    return sae_put_meta(&((const trainer *)impl)->sae, w);
}

static void after_backward(void *impl) { sae_project_decoder_grad(&((trainer *)impl)->sae); }
static void after_update(void *impl) { sae_normalize_decoder(&((trainer *)impl)->sae); }

/* The SAE's evaluation on the validation names, as columns of the summary. */
static err_code summary_columns(const void *impl, FILE *f)
{
    const trainer *tr = impl;
    sae_stats st;
    err_code e = sae_evaluate(&tr->sae, tr->tf, tr->val_names, EVAL_NAMES, &st, NULL);
    if (!e) sae_stats_write_tsv(f, &st);
    return e;
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

static err_code src_next(void *ctx, rng *r, int batch_size, ds_batch *b)
{
    const sae_acts *a = &((const trainer *)ctx)->train;
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
static err_code src_eval(void *ctx, const tr_model *m, ag_tape *t, int batch_size,
                         double *loss_sum, size_t *n_targets)
{
    const trainer *tr = ctx;
    ds_batch b = { 0 };
    err_code e = reserve_rows(&b, EVAL_ROWS);
    *loss_sum = 0;
    *n_targets = 0;
    for (size_t r = 0; !e && r < tr->val.n_rows; r += EVAL_ROWS) {
        size_t n = tr->val.n_rows - r < EVAL_ROWS ? tr->val.n_rows - r : EVAL_ROWS;
        for (size_t i = 0; i < n; i++) b.x[i] = (int)(tr->train.n_rows + r + i);
        b.B = 1;
        b.T = (int)n;
        b.n_tokens = n;
        ag_reset(t);
        tensor *loss = m->loss(m->impl, t, &b);
        if (!loss) e = ERR_ARG;
        else *loss_sum += (double)loss->data[0] * (double)n;
        *n_targets += n;
    }
    ds_batch_free(&b);
    return e;
}

#define SINCE_NAME "source.rows_since_fired"

static err_code src_save(void *ctx, ck_writer *w)
{
    const trainer *tr = ctx;
    if (!tr->since) return ERR_OK;
    return ck_put(w, SINCE_NAME, CK_I32, 1, (const int64_t[]){ tr->sae.c.n_features }, tr->since);
}

static err_code src_load(void *ctx, const ck_file *f)
{
    trainer *tr = ctx;
    if (!tr->since) return ERR_OK;
    const ck_tensor *t = ck_get(f, SINCE_NAME);
    if (!t || t->dtype != CK_I32 || t->numel != (size_t)tr->sae.c.n_features)
        return err_set(ERR_FORMAT, "no valid %s in the checkpoint", SINCE_NAME);
    memcpy(tr->since, t->data, t->numel * sizeof *tr->since);
    for (int i = 0; i < tr->sae.c.n_features; i++) tr->dead[i] = tr->since[i] >= SAE_DEAD_ROWS;
    return ERR_OK;
}

/* ---- setup ------------------------------------------------------------------ */

static const trc_flag flags[] = {
    TRC_STRING_FLAG("model", "model", 'm'),
    TRC_INT_FLAG("layer", "layer", 0, TF_MAX_LAYERS),
    TRC_INT_FLAG("features", "n_features", 1, SAE_MAX_FEATURES),
    TRC_REAL_FLAG("expansion", "expansion", 1e-3, 1e4),
    TRC_REAL_FLAG("l1", "l1", 0, 1e6),
    TRC_INT_FLAG("topk", "k", 1, SAE_MAX_FEATURES),
    TRC_END_FLAGS
};

/* The flags given, as model_flags (negative / 0 = not given). */
static model_flags parse(int argc, char **argv, tr_options *o)
{
    cJSON *given = trc_parse(argc, argv, o, flags, usage);
    trc_check_args(o, argc, argv, optind);
    const cJSON *m = cJSON_GetObjectItem(given, "model"), *layer = cJSON_GetObjectItem(given, "layer"),
                *features = cJSON_GetObjectItem(given, "n_features"),
                *expansion = cJSON_GetObjectItem(given, "expansion"),
                *l1 = cJSON_GetObjectItem(given, "l1"), *k = cJSON_GetObjectItem(given, "k");
    model_flags f = { .model = m ? strdup(m->valuestring) : NULL, .layer = layer ? layer->valueint : -1,
                      .features = features ? features->valueint : 0,
                      .expansion = expansion ? expansion->valuedouble : 0,
                      .l1 = l1 ? l1->valuedouble : -1, .topk = k ? k->valueint : 0 };
    cJSON_Delete(given);
    if (f.features && f.expansion > 0) cli_usage("give --features or --expansion, not both");
    if (f.topk && f.l1 >= 0) cli_usage("--l1 applies to the l1 variant, not to --topk");
    return f;
}

/* The SAE config: from the flags and the Transformer, or the checkpoint's. */
static sae_config resolve_config(const tr_session *s, const model_flags *f, const tf_model *tf)
{
    sae_config c = { .d_model = tf_d_model(tf), .layer = tf_n_layers(tf), .variant = SAE_L1,
                     .l1 = SAE_L1_DEFAULT };
    if (s->resuming) {
        if (sae_config_from_json(&c, ck_meta(&s->resume, "config")))
            cli_die("%s: %s", s->o.resume_path, err_msg());
        if ((f->layer >= 0 && f->layer != c.layer) || (f->features && f->features != c.n_features) ||
            (f->topk && (c.variant != SAE_TOPK || f->topk != c.k)) ||
            (f->l1 >= 0 && (c.variant != SAE_L1 || (float)f->l1 != c.l1)) || f->expansion > 0)
            cli_usage("SAE flags differ from the configuration in %s", s->o.resume_path);
        return c;
    }
    if (f->layer >= 0) c.layer = f->layer;
    double expansion = f->expansion > 0 ? f->expansion : DEFAULT_EXPANSION;
    c.n_features = f->features ? f->features : (int)(expansion * c.d_model + 0.5);
    if (c.n_features < 1) c.n_features = 1;
    if (f->l1 >= 0) c.l1 = (float)f->l1;
    if (f->topk) {
        c.variant = SAE_TOPK;
        c.k = f->topk;
        c.l1 = 0.0f;
    }
    if (c.layer > tf_n_layers(tf))
        cli_usage("--layer %d: %s has %d layers", c.layer, f->model, tf_n_layers(tf));
    if (sae_config_check(&c)) cli_usage("%s", err_msg());
    return c;
}

/* The training names, encoded with the Transformer's vocabulary. */
static void load_names(tr_session *s, const mdl *m)
{
    if (ds_load_with_vocab(&s->corpus, &m->vocab, s->o.data, s->o.val_data, s->o.split_seed, 0.1))
        cli_die_err();
    s->have_corpus = true;
    s->vocab = &s->corpus.vocab;
    if (s->corpus.train.n == 0) cli_die("%s: no training names", s->o.data);
    if (s->corpus.val.n == 0) cli_die("%s: no validation names", s->o.data);
}

/* The Transformer's split seed, unless --split-seed was given. */
static void default_split_seed(tr_options *o, const mdl *m)
{
    const char *seed = ck_meta(&m->file, "split_seed");
    char *end;
    if ((o->set & TR_SET_SPLIT_SEED) || !seed || !*seed) return;
    uint64_t v = strtoull(seed, &end, 10);
    if (!*end) o->split_seed = v;
}

int main(int argc, char **argv)
{
    cli_init("sae-train", argv);
    tr_options o;
    tr_options_init(&o, SAE_KIND, "weights/sae.safetensors");
    o.data = DEFAULT_DATA;
    o.batch_size = DEFAULT_BATCH;
    o.opt.weight_decay = 0.0f;
    static model_flags f;   /* static: its strings stay reachable to the end */
    f = parse(argc, argv, &o);
    if (!f.model) f.model = cli_default_weights(CLI_DEFAULT_MODEL);

    mdl lm;
    if (mdl_load(&lm, f.model)) cli_die_err();
    const tf_model *tf = tf_of_mdl(&lm);
    if (!tf) cli_die("%s: %s", f.model, err_msg());
    default_split_seed(&o, &lm);

    tr_session s;
    trc_open(&s, &o);
    sae_config cfg = resolve_config(&s, &f, tf);
    load_names(&s, &lm);

    trainer *tr = calloc(1, sizeof *tr);
    if (!tr) cli_die("out of memory");
    tr->tf = tf;
    tr->val_names = &s.corpus.val;
    if (sae_init(&tr->sae, &cfg) || sae_set_model_file(&tr->sae, f.model)) cli_die_err();
    if (s.resuming) {
        sae_model old;
        if (sae_load(&old, &s.resume, s.o.resume_path, false) ||
            sae_check_pair(&old, s.o.resume_path, tf, f.model))
            cli_die_err();
        sae_free(&old);
    }
    if (cli_progress_enabled())   /* a few seconds on the full corpus, before the progress line */
        fprintf(stderr, "activations of %zu names after layer %d...\r", s.corpus.train.n + s.corpus.val.n,
                cfg.layer);
    if (sae_acts_compute(&tr->train, tf, &s.corpus.train, cfg.layer) ||
        sae_acts_compute(&tr->val, tf, &s.corpus.val, cfg.layer))
        cli_die("%s", err_msg());
    rng init;
    rng_seed(&init, s.o.seed);
    sae_init_weights(&tr->sae, &init);
    sae_acts_mean(&tr->train, tr->sae.b_dec->data);   /* the reference's b_dec start */
    if (cfg.variant == SAE_TOPK) {
        tr->since = calloc((size_t)cfg.n_features, sizeof *tr->since);
        tr->dead = calloc((size_t)cfg.n_features, sizeof *tr->dead);
        if (!tr->since || !tr->dead) cli_die("out of memory");
    }

    tr_model m = { .kind = SAE_KIND, .params = &tr->sae.p, .impl = tr, .loss = loss_fn,
                   .config_json = config_json, .put_meta = put_meta,
                   .after_backward = after_backward, .after_update = after_update,
                   .summary_columns = summary_columns };
    tr_source src = { .ctx = tr, .next = src_next, .eval = src_eval, .save = src_save,
                      .load = src_load };
    err_code e = trc_run(&s, &m, &src);
    int status = trc_exit_status(e);
    tr_close(&s);
    sae_acts_free(&tr->train);
    sae_acts_free(&tr->val);
    free(tr->since);
    free(tr->dead);
    sae_free(&tr->sae);
    free(tr);
    mdl_free(&lm);
    if (!status && cli_close(stdout, "-")) cli_die_err();
    return status;
}
