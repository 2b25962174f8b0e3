/* rnn-train - train the recurrent LM (plain tanh RNN or GRU cells) on names,
 * or with --text on running text, with the shared training loop (train.h).
 *
 * Running text: the file is one stream of characters (no <SOS>/<EOS> per
 * line); its last 10% is the validation stream.  The training stream is cut
 * into batch-size tracks of equal length, walked side by side one window of
 * --window characters per step; each track's hidden state is carried from
 * one window to the next (truncated backpropagation: gradients stop at the
 * window boundary) and starts from the learned h0 at the beginning of every
 * pass over the tracks.  The validation stream is walked the same way, its
 * every character predicted once. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "rnn.h"
#include "stream.h"
#include "trcli.h"

enum { DEFAULT_WINDOW = STM_DEFAULT_WINDOW, MAX_WINDOW = STM_MAX_WINDOW };

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
           "\n"
           "Running text:\n"
           "      --text FILE     train on FILE as one stream of characters instead of\n"
           "                      names (replaces --data; its last 10%% is the validation\n"
           "                      stream unless --val-data gives one).  The stream is cut\n"
           "                      into --batch-size tracks walked one window per step, the\n"
           "                      hidden state carried from window to window.  Then\n"
           "                      'generate -m MODEL --chars N' prints running text.\n"
           "      --window N      characters per window (default %d)\n"
           "\n",
           rnn_cell_name(c.cell), c.d_model, c.n_layers, (double)c.dropout, DEFAULT_WINDOW);
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

/* The vocabulary (the checkpoint's on --resume, else the streams') and the streams. */
static void load_text(const tr_session *s, stm_corpus *c)
{
    txt_vocab given = { 0 };
    if (s->resuming && txt_vocab_from_json(&given, ck_meta(&s->resume, "vocab")))
        cli_die("%s: no valid vocabulary", s->o.resume_path);
    if (stm_corpus_load(c, s->o.data, s->o.val_data, s->resuming ? &given : NULL)) cli_die_err();
    txt_vocab_free(&given);
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
    TRC_STRING_FLAG("text", "text", 0),
    TRC_INT_FLAG("window", "window", 1, MAX_WINDOW),
    TRC_END_FLAGS
};

/* Take member key (a string or a number) out of the flags given. */
static cJSON *take(cJSON *given, const char *key) { return cJSON_DetachItemFromObject(given, key); }

/* The flags: --text replaces --data; the running-text ones are taken out of given. */
static cJSON *parse_flags(int argc, char **argv, tr_options *o, const char **text, int *window)
{
    cJSON *given = trc_parse(argc, argv, o, flags, usage);
    cJSON *t = take(given, "text"), *w = take(given, "window");
    *text = t ? strdup(t->valuestring) : NULL;
    *window = w ? w->valueint : 0;
    cJSON_Delete(t);
    cJSON_Delete(w);
    if (*text) {
        if (o->data) cli_usage("give --data (names) or --text (running text), not both");
        o->data = *text;
    } else if (*window) {
        cli_usage("--window applies to --text only");
    }
    trc_check_args(o, argc, argv, optind);
    return given;
}

/* The config: the flags on the defaults, or the checkpoint's, which must
 * be a model of the same data kind (checked before any data is read). */
static cJSON *start_config(const tr_session *s, const cJSON *given, bool text)
{
    rnn_config c = RNN_DEFAULTS;
    c.text = text;
    char *defaults = NULL;
    if (rnn_config_to_json(&c, &defaults)) cli_die_err();
    cJSON *config = trc_config(s, defaults, given, flags);
    free(defaults);
    if (s->resuming && cJSON_IsTrue(cJSON_GetObjectItem(config, "text")) != text)
        cli_usage("%s is a %s model: resume it with %s", s->o.resume_path,
                  text ? "names" : "running-text", text ? "--data FILE" : "--text FILE");
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
    tr_options_init(&o, RNN_KIND, "weights/rnn.safetensors");
    static const char *text;   /* static: reachable to the end */
    int window = 0;
    cJSON *given = parse_flags(argc, argv, &o, &text, &window);

    /* static: an exit on an error below leaves nothing unreachable */
    static tr_session s;
    static rnn_model net;
    static stm_corpus corpus;
    static stm_source walk;
    trc_open(&s, &o);
    cJSON *config = start_config(&s, given, text != NULL);
    if (text) {
        load_text(&s, &corpus);
        s.vocab = &corpus.vocab;
    } else {
        trc_load_names(&s);
    }
    rnn_config cfg = finish_config(&s, config, given);
    cJSON_Delete(given);
    if (rnn_init(&net, &cfg)) cli_die_err();
    rng init;
    rng_seed(&init, s.o.seed);
    rnn_init_weights(&net, &init);

    tr_model m = { .kind = RNN_KIND, .params = &net.p, .impl = &net, .loss = loss_fn,
                   .config_json = config_json,
                   .soft_targets = true };
    tr_source src;
    if (text) {
        stm_model sm = { .kind = RNN_KIND, .params = &net.p, .impl = &net,
                         .loss_state = rnn_loss_carried, .config_json = config_json,
                         .state_layers = cfg.n_layers, .state_width = cfg.d_model };
        if (stm_source_init(&walk, &sm, &corpus, stm_window(s.resuming ? &s.resume : NULL, window),
                            s.o.batch_size))
            cli_die_err();
        m = stm_tr_model(&walk);
        src = stm_tr_source(&walk);
    }
    err_code e = trc_run(&s, &m, text ? &src : NULL);
    tr_close(&s);
    stm_source_free(&walk);
    stm_corpus_free(&corpus);
    rnn_free(&net);
    return trc_exit_status(e);
}
