/* mlp-train - train the Bengio MLP language model on names. */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "mlp.h"
#include "train.h"

enum { OPT_D_MODEL = TR_OPT_END, OPT_HIDDEN, OPT_CONTEXT };

static const struct option options[] = {
    TR_LONG_OPTIONS,
    { "d-model", required_argument, NULL, OPT_D_MODEL },
    { "hidden",  required_argument, NULL, OPT_HIDDEN },
    { "context", required_argument, NULL, OPT_CONTEXT },
    { 0 }
};

static _Noreturn void usage(const tr_options *o)
{
    mlp_config c = MLP_DEFAULTS;
    printf("Usage: mlp-train --data FILE [OPTION]...\n"
           "Train the Bengio (2003) MLP: the previous N characters, embedded and\n"
           "concatenated, a tanh hidden layer, then the next-character logits.\n"
           "\n"
           "Model (ignored with --resume, which keeps the checkpoint's):\n"
           "      --d-model N        embedding size (default %d)\n"
           "      --hidden N         hidden units (default %d)\n"
           "      --context N        characters of context, <SOS> before the start (default %d)\n"
           "\n", c.d_model, c.d_hidden, c.n_context);
    tr_print_usage(stdout, o);
    printf("\nExample: mlp-train --data data/villes.txt --keep-best --log mlp.tsv\n");
    exit(fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_FAILURE);
}

static char *config_json(const void *impl) { return mlp_config_to_json(&((const mlp *)impl)->c); }

static tensor *loss(void *impl, ag_tape *t, const ds_batch *b) { return mlp_loss(impl, t, b); }

int main(int argc, char **argv)
{
    cli_init("mlp-train", argv);
    tr_options o;
    tr_options_init(&o, "mlp", "weights/mlp.safetensors");
    mlp_config c = MLP_DEFAULTS;
    int code;
    while ((code = getopt_long(argc, argv, TR_SHORT_OPTIONS, options, NULL)) != -1) {
        if (tr_parse_option(&o, code, optarg)) continue;
        switch (code) {
        case OPT_D_MODEL: c.d_model = (int)cli_long("--d-model", optarg, 1, 4096); break;
        case OPT_HIDDEN: c.d_hidden = (int)cli_long("--hidden", optarg, 1, 65536); break;
        case OPT_CONTEXT: c.n_context = (int)cli_long("--context", optarg, 1, 1024); break;
        case 'h': usage(&o);
        case 'V': cli_version();
        default: cli_bad_flag();
        }
    }
    tr_check_args(&o, argc, argv, optind);

    tr_session s;
    if (tr_open(&s, &o) || tr_load_names(&s)) cli_die_err();
    if (s.resuming && mlp_config_from_json(&c, ck_meta(&s.resume, "config"))) cli_die_err();
    c.vocab_size = s.vocab->size;
    mlp net;
    if (mlp_init(&net, &c)) cli_die_err();
    rng init;
    rng_seed(&init, s.o.seed);
    mlp_init_weights(&net, &init);

    tr_model m = { .kind = "mlp", .params = &net.params, .impl = &net, .loss = loss,
                   .config_json = config_json };
    err_code e = tr_run(&s, &m, NULL);
    mlp_free(&net);
    tr_close(&s);
    return tr_exit_status(e);
}
