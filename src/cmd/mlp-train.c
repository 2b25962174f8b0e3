/* mlp-train - train the Bengio MLP language model on names, with the
 * shared training loop (train.h, trcli.h). */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "mlp.h"
#include "trcli.h"

static const trc_flag flags[] = {
    TRC_INT_FLAG("d-model", "d_model", 1, 4096),
    TRC_INT_FLAG("hidden", "d_hidden", 1, 65536),
    TRC_INT_FLAG("context", "n_context", 1, 1024),
    TRC_END_FLAGS
};

static _Noreturn void usage(const tr_options *o)
{
    mlp_config c = MLP_DEFAULTS;
    printf("Usage: mlp-train --data FILE [OPTION]...\n"
           "Train the Bengio (2003) MLP: the previous N characters, embedded and\n"
           "concatenated, a tanh hidden layer, then the next-character logits.\n"
           "\n"
           "Model:\n"
           "      --d-model N        embedding size (default %d)\n"
           "      --hidden N         hidden units (default %d)\n"
           "      --context N        characters of context, <SOS> before the start (default %d)\n"
           "On --resume the model is the checkpoint's; model flags must agree with it.\n"
           "\n", c.d_model, c.d_hidden, c.n_context);
    trc_print_usage(stdout, o);
    printf("\nExample: mlp-train --data data/villes.txt --keep-best --log mlp.tsv\n");
    exit(fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_FAILURE);
}

/* The config: the flags on the defaults, or the checkpoint's (checked
 * before any data is read). */
static cJSON *start_config(const tr_session *s, const cJSON *given)
{
    const mlp_config c = MLP_DEFAULTS;
    char *defaults = NULL;
    if (mlp_config_to_json(&c, &defaults)) cli_die_err();
    cJSON *config = trc_config(s, defaults, given, flags);
    free(defaults);
    return config;
}

/* ... then the data's vocabulary. */
static mlp_config finish_config(const tr_session *s, cJSON *config, const cJSON *given)
{
    mlp_config c;
    char *text = trc_config_finish(s, config, given);
    if (mlp_config_from_json(&c, text)) trc_config_error(s);
    free(text);
    return c;
}

static char *config_json(const void *impl)
{
    char *json = NULL;
    mlp_config_to_json(&((const mlp_model *)impl)->c, &json);
    return json;
}

static tensor *loss(void *impl, ag_tape *t, const ds_batch *b) { return mlp_loss(impl, t, b); }

int main(int argc, char **argv)
{
    cli_init("mlp-train", argv);
    tr_options o;
    tr_options_init(&o, MLP_KIND, "mlp.safetensors");
    cJSON *given = trc_parse(argc, argv, &o, flags, usage);
    trc_check_args(&o, argc, argv, optind);

    static tr_session s;   /* static: an exit on an error leaves nothing unreachable */
    trc_open(&s, &o);
    cJSON *config = start_config(&s, given);
    trc_load_names(&s);
    mlp_config c = finish_config(&s, config, given);
    cJSON_Delete(given);
    static mlp_model net;
    if (mlp_init(&net, &c)) cli_die_err();
    rng init;
    rng_seed(&init, s.o.seed);
    mlp_init_weights(&net, &init);

    tr_model m = { .kind = MLP_KIND, .params = &net.p, .impl = &net, .loss = loss,
                   .config_json = config_json, .soft_targets = true,
                   .replica_new = mlp_replica_new, .replica_free = mlp_replica_free };
    err_code e = trc_run(&s, &m, NULL);
    mlp_free(&net);
    tr_close(&s);
    return trc_exit_status(e);
}
