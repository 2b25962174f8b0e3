/* transformer-train - train the decoder-only Transformer LM (transformer.h)
 * on a names file, with the shared training loop (train.h). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "train.h"
#include "transformer.h"

enum { OPT_D_MODEL = TR_OPT_END, OPT_HEADS, OPT_LAYERS, OPT_DROPOUT, OPT_MAX_LEN };

/* Model flags given on the command line (0 / negative = not given). */
typedef struct model_flags {
    int   d_model, n_heads, n_layers, max_len;
    float dropout;
    bool  dropout_set;
} model_flags;

_Noreturn static void usage(const tr_options *o)
{
    const tf_config c = TF_DEFAULTS;
    printf("Usage: transformer-train --data FILE [OPTION]...\n"
           "Train the decoder-only Transformer language model on names (one per line):\n"
           "pre-norm blocks of causal multi-head attention and a SwiGLU MLP, learned\n"
           "positions, RMSNorm, lm_head tied to the embedding.\n"
           "\n"
           "Model:\n"
           "      --d-model N        residual width (default %d)\n"
           "      --heads N          attention heads, must divide --d-model (default %d)\n"
           "      --layers N         blocks (default %d; the workshop notebooks use 1)\n"
           "      --dropout P        dropout on the embeddings and on the outputs of\n"
           "                         attention and MLP, 0 <= P <= 0.99 (default %g)\n"
           "      --max-len N        positions, <SOS> included (default: the longest name\n"
           "                         of the data + 2)\n"
           "On --resume the model is the checkpoint's; model flags must agree with it.\n"
           "\n",
           c.d_model, c.n_heads, c.n_layers, (double)c.dropout);
    tr_print_usage(stdout, o);
    exit(0);
}

/* Characters of the longest training or validation name. */
static int longest_name(const tr_session *s)
{
    const ds_corpus *c = &s->corpus;
    return c->train.max_len > c->val.max_len ? c->train.max_len : c->val.max_len;
}

/* The config: from the flags (defaults for the others) or the checkpoint's. */
static tf_config resolve_config(const tr_session *s, const model_flags *f)
{
    tf_config c = TF_DEFAULTS;
    if (s->resuming) {
        const char *json = ck_meta(&s->resume, "config");
        if (!json) cli_die("%s: no config in the metadata", s->o.resume_path);
        if (tf_config_from_json(&c, json)) cli_die("%s: %s", s->o.resume_path, err_msg());
        if ((f->d_model && f->d_model != c.d_model) || (f->n_heads && f->n_heads != c.n_heads) ||
            (f->n_layers && f->n_layers != c.n_layers) || (f->max_len && f->max_len != c.max_len) ||
            (f->dropout_set && f->dropout != c.dropout))
            cli_usage("model flags differ from the configuration in %s", s->o.resume_path);
        return c;
    }
    c.vocab_size = s->vocab->size;
    if (f->d_model) c.d_model = f->d_model;
    if (f->n_heads) c.n_heads = f->n_heads;
    if (f->n_layers) c.n_layers = f->n_layers;
    if (f->dropout_set) c.dropout = f->dropout;
    c.max_len = f->max_len ? f->max_len : longest_name(s) + 2;
    if (tf_config_check(&c)) cli_usage("%s", err_msg());
    return c;
}

/* Every name of the corpus, <SOS> included, must fit the positional table. */
static void check_fits(const tr_session *s, const tf_config *c)
{
    const int longest = longest_name(s);
    if (longest + 1 > c->max_len)
        cli_die("the longest name has %d characters: max_len %d leaves room for %d", longest,
                c->max_len, c->max_len - 1);
}

static tensor *loss_fn(void *impl, ag_tape *t, const ds_batch *b) { return tf_loss(impl, t, b); }

static char *config_json(const void *impl)
{
    char *json = NULL;
    tf_config_to_json(&((const tf_model *)impl)->c, &json);
    return json;
}

int main(int argc, char **argv)
{
    cli_init("transformer-train", argv);
    static const struct option opts[] = {
        TR_LONG_OPTIONS,
        { "d-model", required_argument, NULL, OPT_D_MODEL },
        { "heads",   required_argument, NULL, OPT_HEADS },
        { "layers",  required_argument, NULL, OPT_LAYERS },
        { "dropout", required_argument, NULL, OPT_DROPOUT },
        { "max-len", required_argument, NULL, OPT_MAX_LEN },
        { 0 }
    };
    tr_options o;
    tr_options_init(&o, TF_KIND, "weights/transformer.safetensors");
    o.steps = 10000;   /* the notebooks' Transformer recipe */
    model_flags f = { 0 };
    int c;
    while ((c = getopt_long(argc, argv, TR_SHORT_OPTIONS, opts, NULL)) != -1) {
        if (tr_parse_option(&o, c, optarg)) continue;
        switch (c) {
        case OPT_D_MODEL: f.d_model = (int)cli_long("--d-model", optarg, 1, TF_MAX_DIM); break;
        case OPT_HEADS:   f.n_heads = (int)cli_long("--heads", optarg, 1, TF_MAX_DIM); break;
        case OPT_LAYERS:  f.n_layers = (int)cli_long("--layers", optarg, 1, TF_MAX_LAYERS); break;
        case OPT_MAX_LEN: f.max_len = (int)cli_long("--max-len", optarg, 2, TF_MAX_LEN); break;
        case OPT_DROPOUT:
            f.dropout = (float)cli_double("--dropout", optarg, 0.0, 0.99);
            f.dropout_set = true;
            break;
        case 'h': usage(&o);
        case 'V': cli_version();
        default:  cli_bad_flag();
        }
    }
    tr_check_args(&o, argc, argv, optind);
    /* A config error in the flags alone is a usage error, before any data is read. */
    if (f.d_model || f.n_heads) {
        tf_config k = TF_DEFAULTS;
        if (f.d_model) k.d_model = f.d_model;
        if (f.n_heads) k.n_heads = f.n_heads;
        if (k.d_model % k.n_heads)
            cli_usage("--heads %d does not divide --d-model %d", k.n_heads, k.d_model);
    }

    tr_session s;
    if (tr_open(&s, &o) || tr_load_names(&s)) cli_die_err();
    tf_config cfg = resolve_config(&s, &f);
    check_fits(&s, &cfg);

    tf_model *net = malloc(sizeof *net);
    if (!net || tf_init(net, &cfg)) cli_die("%s", net ? err_msg() : "out of memory");
    rng init;
    rng_seed(&init, s.o.seed);
    tf_init_weights(net, &init);

    tr_model m = { .kind = TF_KIND, .params = &net->p, .impl = net,
                   .loss = loss_fn, .config_json = config_json };
    err_code e = tr_run(&s, &m, NULL);
    tr_close(&s);
    tf_free(net);
    free(net);
    return tr_exit_status(e);
}
