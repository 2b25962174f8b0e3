/* mamba-train - train the Mamba LM (mamba.h), a selective state-space
 * model, on a names file, with the shared training loop (train.h, trcli.h). */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "mamba.h"
#include "trcli.h"
#include "trtext.h"

static const trc_flag flags[] = {
    TRC_INT_FLAG("d-model", "d_model", 1, MAMBA_MAX_DIM),
    TRC_INT_FLAG("layers", "n_layers", 1, MAMBA_MAX_LAYERS),
    TRC_INT_FLAG("d-state", "d_state", 1, MAMBA_MAX_STATE),
    TRC_INT_FLAG("expand", "expand_factor", 1, MAMBA_MAX_EXPAND),
    TRC_INT_FLAG("d-conv", "d_conv", 1, MAMBA_MAX_CONV),
    TRC_INT_FLAG("dt-rank", "dt_rank", 0, MAMBA_MAX_DIM),
    TRT_FLAGS,
    TRC_END_FLAGS
};

_Noreturn static void usage(const tr_options *o)
{
    const mamba_config c = MAMBA_DEFAULTS;
    printf("Usage: mamba-train --data FILE [OPTION]...\n"
           "  or:  mamba-train --text FILE [OPTION]...\n"
           "Train the Mamba language model on names (one per line): residual blocks\n"
           "x + mixer(RMSNorm(x)), the mixer a causal depthwise convolution and a\n"
           "selective state-space scan gated by SiLU; RMSNorm, lm_head tied to the\n"
           "embedding.  Parameter names are the workshop notebooks'.\n"
           "\n"
           "Model:\n"
           "      --d-model N        residual width (default %d)\n"
           "      --layers N         blocks (default %d, as the notebooks)\n"
           "      --d-state N        state size N per channel (default %d)\n"
           "      --expand N         the mixer's width is N * d-model (default %d)\n"
           "      --d-conv N         convolution width over time (default %d)\n"
           "      --dt-rank N        rank of the step-size projection; 0 = ceil(d-model/16)\n"
           "                         (default %d)\n"
           "On --resume the model is the checkpoint's; model flags must agree with it.\n"
           "\n",
           c.d_model, c.n_layers, c.d_state, c.expand_factor, c.d_conv, c.dt_rank);
    trt_print_usage(stdout);
    printf("On running text each window is seen afresh (the state starts at zero).\n\n");
    trc_print_usage(stdout, o);
    exit(0);
}

/* The config: the flags on the defaults, or the checkpoint's (checked
 * before any data is read). */
static cJSON *start_config(const tr_session *s, const cJSON *given)
{
    char *defaults = NULL;
    const mamba_config c = MAMBA_DEFAULTS;
    if (mamba_config_to_json(&c, &defaults)) cli_die_err();
    cJSON *config = trc_config(s, defaults, given, flags);
    free(defaults);
    return config;
}

/* ... then the data's vocabulary (the tokenizer's on running text). */
static mamba_config finish_config(const tr_session *s, cJSON *config, const cJSON *given,
                                  const trt_text *t)
{
    mamba_config c;
    trt_config(t, s, config, given);
    char *text = trc_config_finish(s, config, given);
    if (mamba_config_from_json(&c, text)) trc_config_error(s);
    free(text);
    return c;
}

static tensor *loss_fn(void *impl, ag_tape *t, const ds_batch *b) { return mamba_loss(impl, t, b); }

/* On running text: each window afresh, no state carried across windows. */
static tensor *loss_windowed(void *impl, ag_tape *t, const ds_batch *b, const float *h_in,
                             float *h_out)
{
    return mamba_loss(impl, t, b);
}

static char *config_json(const void *impl)
{
    char *json = NULL;
    mamba_config_to_json(&((const mamba_model *)impl)->c, &json);
    return json;
}

int main(int argc, char **argv)
{
    cli_init("mamba-train", argv);
    tr_options o;
    tr_options_init(&o, MAMBA_KIND, "mamba.safetensors");
    o.steps = 10000;
    static trt_text text;  /* static: an exit on an error leaves nothing unreachable */
    static tr_session s;
    cJSON *given = trc_parse(argc, argv, &o, flags, usage);
    trt_take(&text, given, &o);
    trc_check_args(&o, argc, argv, optind);

    trc_open(&s, &o);
    trt_check_resume(&text, &s);
    cJSON *config = start_config(&s, given);
    if (text.on) trt_load(&text, &s);
    else trc_load_names(&s);
    mamba_config cfg = finish_config(&s, config, given, &text);
    cJSON_Delete(given);

    static mamba_model net;
    if (mamba_init(&net, &cfg)) cli_die_err();
    rng init;
    rng_seed(&init, s.o.seed);
    mamba_init_weights(&net, &init);

    tr_model m = { .kind = MAMBA_KIND, .params = &net.p, .impl = &net,
                   .loss = loss_fn, .config_json = config_json,
                   .replica_new = mamba_replica_new, .replica_free = mamba_replica_free };
    tr_source src;
    if (text.on) {
        stm_model sm = { .kind = MAMBA_KIND, .params = &net.p, .impl = &net,
                         .loss_state = loss_windowed, .config_json = config_json };
        trt_start(&text, &s, &sm, &m, &src);
    }
    err_code e = trc_run(&s, &m, text.on ? &src : NULL);
    tr_close(&s);
    trt_free(&text);
    mamba_free(&net);
    return trc_exit_status(e);
}
