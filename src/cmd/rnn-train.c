/* rnn-train - train the recurrent LM (plain tanh RNN or GRU cells) on names,
 * or with --text on running text (trtext.h), with the shared training loop
 * (train.h).
 *
 * Running text: the training stream is cut into batch-size tracks of equal
 * length, walked side by side one window of --window tokens per step; each
 * track's hidden state is carried from one window to the next (truncated
 * backpropagation: gradients stop at the window boundary) and starts from
 * the learned h0 at the beginning of every pass over the tracks.  The
 * validation stream is walked the same way, its every token predicted once. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "rnn.h"
#include "stream.h"
#include "trcli.h"
#include "trtext.h"

_Noreturn static void usage(const tr_options *o)
{
    const rnn_config c = RNN_DEFAULTS;
    printf("Usage: rnn-train --data FILE [OPTION]...\n"
           "  or:  rnn-train --text FILE [OPTION]...\n"
           "Train a recurrent language model (plain tanh RNN or GRU cells) on names, one\n"
           "per line, or with --text on running text.\n"
           "\n"
           "Model:\n"
           "      --cell C        rnn (h = tanh(W[x; h] + b)) or gru (default %s)\n"
           "      --d-model N     embedding and state width (default %d)\n"
           "      --layers N      stacked cells, each with a learned initial state (default %d)\n"
           "      --dropout P     dropout on the input of every layer and on the top\n"
           "                      layer's output, training only (default %g)\n"
           "      --dropout-mode M  standard: masks per element (the default); variational:\n"
           "                      one mask per sequence, the same at every time step\n"
           "On --resume the model is the checkpoint's; model flags must agree with it.\n"
           "\n",
           rnn_cell_name(c.cell), c.d_model, c.n_layers, (double)c.dropout);
    trt_print_usage(stdout);
    printf("On running text the hidden state is carried from window to window.\n\n");
    trc_print_usage(stdout, o);
    exit(0);
}

/* The RNN as stream.h drives it: its loss from a carried state. */
static tensor *rnn_loss_carried(void *impl, ag_tape *t, const ds_batch *b, const float *h_in,
                                float *h_out)
{
    return rnn_loss_state(impl, t, b, h_in, h_out);
}

static tensor *loss_fn(void *impl, ag_tape *t, const ds_batch *b) { return rnn_loss(impl, t, b); }

static char *config_json(const void *impl)
{
    char *json = NULL;
    rnn_config_to_json(&((const rnn_model *)impl)->c, &json);
    return json;
}

/* ---- main ----------------------------------------------------------------- */

static const char *const cells[] = { "rnn", "gru", NULL };
static const char *const dropout_modes[] = { "standard", "variational", NULL };

static const trc_flag flags[] = {
    TRC_WORD_FLAG("cell", "cell", cells),
    TRC_INT_FLAG("d-model", "d_model", 1, RNN_MAX_DIM),
    TRC_INT_FLAG("layers", "n_layers", 1, RNN_MAX_LAYERS),
    TRC_REAL_FLAG("dropout", "dropout", 0, 0.99),
    TRC_WORD_FLAG("dropout-mode", "dropout_mode", dropout_modes),
    TRT_FLAGS,
    TRC_END_FLAGS
};

/* The config: the flags on the defaults, or the checkpoint's. */
static cJSON *start_config(const tr_session *s, const cJSON *given, bool text)
{
    rnn_config c = RNN_DEFAULTS;
    c.text = text;
    char *defaults = NULL;
    if (rnn_config_to_json(&c, &defaults)) cli_die_err();
    cJSON *config = trc_config(s, defaults, given, flags);
    free(defaults);
    return config;
}

/* ... then the data's vocabulary. */
static rnn_config finish_config(const tr_session *s, cJSON *config, const cJSON *given)
{
    rnn_config c;
    char *text = trc_config_finish(s, config, given);
    if (rnn_config_from_json(&c, text)) trc_config_error(s);
    free(text);
    return c;
}

int main(int argc, char **argv)
{
    cli_init("rnn-train", argv);
    tr_options o;
    tr_options_init(&o, RNN_KIND, "rnn.safetensors");
    /* static: an exit on an error below leaves nothing unreachable */
    static trt_text text;
    static tr_session s;
    static rnn_model net;
    cJSON *given = trc_parse(argc, argv, &o, flags, usage);
    trt_take(&text, given, &o);
    trc_check_args(&o, argc, argv, optind);

    trc_open(&s, &o);
    trt_check_resume(&text, &s);
    cJSON *config = start_config(&s, given, text.on);
    if (text.on) trt_load(&text, &s);
    else trc_load_names(&s);
    trt_config(&text, &s, config, given);
    rnn_config cfg = finish_config(&s, config, given);
    cJSON_Delete(given);
    if (rnn_init(&net, &cfg)) cli_die_err();
    rng init;
    rng_seed(&init, s.o.seed);
    rnn_init_weights(&net, &init);

    tr_model m = { .kind = RNN_KIND, .params = &net.p, .impl = &net, .loss = loss_fn,
                   .config_json = config_json, .soft_targets = true,
                   .replica_new = rnn_replica_new, .replica_free = rnn_replica_free };
    tr_source src;
    if (text.on) {
        stm_model sm = { .kind = RNN_KIND, .params = &net.p, .impl = &net,
                         .loss_state = rnn_loss_carried, .config_json = config_json,
                         .state_layers = cfg.n_layers, .state_width = cfg.d_model };
        trt_start(&text, &s, &sm, &m, &src);
    }
    err_code e = trc_run(&s, &m, text.on ? &src : NULL);
    tr_close(&s);
    trt_free(&text);
    rnn_free(&net);
    return trc_exit_status(e);
}
