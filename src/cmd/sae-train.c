/* sae-train - train a sparse autoencoder (sae.h) on the residual stream of
 * a trained Transformer, with the shared training loop (train.h) and the
 * SAE's model and source (saetrain.h: activations computed once).  The
 * default is TopK, k = 16: the table in README.md says why.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "kinds.h"
#include "sae.h"
#include "saetrain.h"
#include "trcli.h"
#include "transformer.h"

#define DEFAULT_DATA "data/villes.txt"

enum { DEFAULT_EXPANSION = 4, DEFAULT_BATCH = 16, DEFAULT_TOPK = 16 };

/* Model flags given on the command line (negative / 0 = not given). */
typedef struct model_flags {
    const char *model;     /* NULL = the shipped Transformer */
    int    layer, features, topk;
    double expansion, l1;
    long   l1_warmup, resample_every;   /* -1 = not given */
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
           "      --topk K          TopK: keep the K largest pre-activations (default %d),\n"
           "                        plus the AuxK loss (coefficient 1/32) that revives\n"
           "                        features dead for %d rows\n"
           "      --l1 X            the L1 variant instead: loss = mean sum (x - x^)^2 +\n"
           "                        X mean sum |f| for activations scaled to mean |x|^2 =\n"
           "                        d_model (SAELens' normalisation; the checkpoint holds\n"
           "                        the coefficient for the raw ones); 1 gives L0 ~ 10 on\n"
           "                        the shipped Transformer\n"
           "      --l1-warmup N     with --l1: the coefficient ramps up from 0 over N steps\n"
           "      --resample-every N  with --l1: every N steps, the features dead for %d\n"
           "                        rows restart on badly reconstructed inputs\n"
           "On --resume the SAE is the checkpoint's; SAE flags must agree with it.\n"
           "The split seed defaults to the Transformer's, --batch-size counts names, and\n"
           "--weight-decay defaults to 0 (Adam, the reference recipe).\n"
           "\n",
           DEFAULT_EXPANSION, DEFAULT_TOPK, SAE_DEAD_ROWS, SAE_DEAD_ROWS);
    trc_print_usage(stdout, o);
    printf("\nThe summary goes on with the SAE evaluated on the validation names with the\n"
           "final weights (explore sae-stats describes them):\n"
           "  l0 explained_var mse ce_clean ce_sae ce_zero ce_score dead_frac dense_frac\n"
           "  kl_sae kl_zero kl_score cos_sim l2_ratio\n");
    exit(fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_FAILURE);
}

/* ---- setup ------------------------------------------------------------------ */

static const trc_flag flags[] = {
    TRC_STRING_FLAG("model", "model", 'm'),
    TRC_INT_FLAG("layer", "layer", 0, TF_MAX_LAYERS),
    TRC_INT_FLAG("features", "n_features", 1, SAE_MAX_FEATURES),
    TRC_REAL_FLAG("expansion", "expansion", 1e-3, 1e4),
    TRC_REAL_FLAG("l1", "l1", 0, 1e6),
    TRC_INT_FLAG("topk", "k", 1, SAE_MAX_FEATURES),
    TRC_INT_FLAG("l1-warmup", "l1_warmup", 0, 1000000000),
    TRC_INT_FLAG("resample-every", "resample_every", 0, 1000000000),
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
                *l1 = cJSON_GetObjectItem(given, "l1"), *k = cJSON_GetObjectItem(given, "k"),
                *warm = cJSON_GetObjectItem(given, "l1_warmup"),
                *every = cJSON_GetObjectItem(given, "resample_every");
    model_flags f = { .model = m ? strdup(m->valuestring) : NULL, .layer = layer ? layer->valueint : -1,
                      .features = features ? features->valueint : 0,
                      .expansion = expansion ? expansion->valuedouble : 0,
                      .l1 = l1 ? l1->valuedouble : -1, .topk = k ? k->valueint : 0,
                      .l1_warmup = warm ? warm->valueint : -1,
                      .resample_every = every ? every->valueint : -1 };
    cJSON_Delete(given);
    if (f.features && f.expansion > 0) cli_usage("give --features or --expansion, not both");
    if (o->resume_path && (f.l1 >= 0 || f.l1_warmup >= 0 || f.resample_every >= 0))
        cli_usage("--l1, --l1-warmup and --resample-every are the checkpoint's on --resume");
    if (f.topk && f.l1 >= 0) cli_usage("give --topk or --l1, not both");
    if (f.l1 < 0 && (f.l1_warmup >= 0 || f.resample_every >= 0))
        cli_usage("--l1-warmup and --resample-every go with --l1");
    return f;
}

/* The SAE config: from the flags and the Transformer, or the checkpoint's. */
static sae_config resolve_config(const tr_session *s, const model_flags *f, const tf_model *tf)
{
    sae_config c = { .d_model = tf_d_model(tf), .layer = tf_n_layers(tf), .variant = SAE_TOPK };
    if (s->resuming) {
        if (sae_config_from_json(&c, ck_meta(&s->resume, "config")))
            cli_die("%s: %s", s->o.resume_path, err_msg());
        if ((f->layer >= 0 && f->layer != c.layer) || (f->features && f->features != c.n_features) ||
            (f->topk && (c.variant != SAE_TOPK || f->topk != c.k)) || f->expansion > 0)
            cli_usage("SAE flags differ from the configuration in %s", s->o.resume_path);
        return c;
    }
    if (f->layer >= 0) c.layer = f->layer;
    double expansion = f->expansion > 0 ? f->expansion : DEFAULT_EXPANSION;
    c.n_features = f->features ? f->features : (int)(expansion * c.d_model + 0.5);
    if (c.n_features < 1) c.n_features = 1;
    if (f->l1 >= 0) {   /* normalised here; sat_set_l1 scales it */
        c.variant = SAE_L1;
        c.l1 = (float)f->l1;
    } else {
        c.k = f->topk ? f->topk : c.n_features < DEFAULT_TOPK ? c.n_features : DEFAULT_TOPK;
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
    tr_options_init(&o, SAE_KIND, "sae.safetensors");
    o.data = DEFAULT_DATA;
    o.batch_size = DEFAULT_BATCH;
    o.opt.weight_decay = 0.0f;
    static model_flags f;   /* static: its strings stay reachable to the end */
    f = parse(argc, argv, &o);
    if (!f.model) f.model = cli_default_weights(CLI_DEFAULT_MODEL);

    /* static: an exit on an error below leaves nothing unreachable */
    static mdl lm;
    static tr_session s;
    static sat_trainer tr;
    if (mdl_load(&lm, f.model)) cli_die_err();
    const tf_model *tf = tf_of_mdl(&lm);
    if (!tf) cli_die("%s: %s", f.model, err_msg());
    default_split_seed(&o, &lm);
    trc_open(&s, &o);
    sae_config cfg = resolve_config(&s, &f, tf);
    load_names(&s, &lm);
    if (s.resuming && sat_check_resume(&s.resume, s.o.resume_path, tf, f.model)) cli_die_err();
    if (cli_progress_enabled())   /* a few seconds on the full corpus, before the progress line */
        fprintf(stderr, "activations of %zu names after layer %d...\r", s.corpus.train.n + s.corpus.val.n,
                cfg.layer);
    if (sat_init(&tr, &cfg, tf, f.model, &s.corpus.train, &s.corpus.val, s.o.seed)) cli_die_err();
    tr.step = &s.step;
    if (!s.resuming && cfg.variant == SAE_L1) sat_set_l1(&tr, cfg.l1, f.l1_warmup, f.resample_every);
    tr_model m = sat_tr_model(&tr);
    tr_source src = sat_tr_source(&tr);
    err_code e = trc_run(&s, &m, &src);
    int status = trc_exit_status(e);
    tr_close(&s);
    sat_free(&tr);
    mdl_free(&lm);
    if (!status && cli_close(stdout, "-")) cli_die_err();
    return status;
}
