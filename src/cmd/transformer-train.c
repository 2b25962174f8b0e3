/* transformer-train - train the decoder-only Transformer LM (transformer.h)
 * on a names file, or with --text on running text (trtext.h), with the
 * shared training loop (train.h, trcli.h).
 *
 * Running text: each window of --window tokens is seen afresh (no state
 * carried; positions 0 .. window - 1), so max_len is the window. */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "transformer.h"
#include "trcli.h"
#include "trtext.h"

static const trc_flag flags[] = {
    TRC_INT_FLAG("d-model", "d_model", 1, TF_MAX_DIM),
    TRC_INT_FLAG("heads", "n_heads", 1, TF_MAX_DIM),
    TRC_INT_FLAG("layers", "n_layers", 1, TF_MAX_LAYERS),
    TRC_REAL_FLAG("dropout", "dropout", 0, 0.99),
    TRC_REAL_FLAG("attn-dropout", "attn_dropout", 0, 0.99),
    TRC_REAL_FLAG("emb-dropout", "emb_dropout", 0, 0.99),
    TRC_INT_FLAG("max-len", "max_len", 2, TF_MAX_LEN),
    TRT_FLAGS,
    TRC_END_FLAGS
};

_Noreturn static void usage(const tr_options *o)
{
    const tf_config c = TF_DEFAULTS;
    printf("Usage: transformer-train --data FILE [OPTION]...\n"
           "  or:  transformer-train --text FILE [OPTION]...\n"
           "Train the decoder-only Transformer language model on names (one per line),\n"
           "or with --text on running text: pre-norm blocks of causal multi-head\n"
           "attention and a SwiGLU MLP, learned positions, RMSNorm, lm_head tied to\n"
           "the embedding.\n"
           "\n"
           "Model:\n"
           "      --d-model N        residual width (default %d)\n"
           "      --heads N          attention heads, must divide --d-model (default %d)\n"
           "      --layers N         blocks (default %d; the workshop notebooks use 1)\n"
           "      --dropout P        dropout on the embeddings and on the outputs of\n"
           "                         attention and MLP, 0 <= P <= 0.99 (default %g)\n"
           "      --attn-dropout P   dropout on the attention probabilities (default %g)\n"
           "      --emb-dropout P    embedding dropout: each letter of a batch dropped\n"
           "                         with probability P at all its occurrences, on the\n"
           "                         input side only (default %g)\n"
           "      --max-len N        positions, <SOS> included (default: the longest name\n"
           "                         of the data + 2; on running text, --window)\n"
           "On --resume the model is the checkpoint's; model flags must agree with it.\n"
           "\n",
           c.d_model, c.n_heads, c.n_layers, (double)c.dropout, (double)c.attn_dropout,
           (double)c.emb_dropout);
    trt_print_usage(stdout);
    printf("On running text each window is seen afresh: the Transformer's context is\n"
           "the window.  'generate --chars' slides it: every token is predicted from the\n"
           "max_len - 1 before it at most.\n\n");
    trc_print_usage(stdout, o);
    exit(0);
}

/* A config error in the flags alone is a usage error, before any data is read. */
static void check_heads(const cJSON *given)
{
    const tf_config k = TF_DEFAULTS;
    const cJSON *d = cJSON_GetObjectItem(given, "d_model"), *h = cJSON_GetObjectItem(given, "n_heads");
    int d_model = d ? d->valueint : k.d_model, heads = h ? h->valueint : k.n_heads;
    if (d_model % heads) cli_usage("--heads %d does not divide --d-model %d", heads, d_model);
}

/* Characters of the longest training or validation name. */
static int longest_name(const tr_session *s)
{
    const ds_corpus *c = &s->corpus;
    return c->train.max_len > c->val.max_len ? c->train.max_len : c->val.max_len;
}

/* The config: the flags on the defaults, or the checkpoint's (checked
 * before any data is read). */
static cJSON *start_config(const tr_session *s, const cJSON *given)
{
    char *defaults = NULL;
    const tf_config c = TF_DEFAULTS;
    if (tf_config_to_json(&c, &defaults)) cli_die_err();
    cJSON *config = trc_config(s, defaults, given, flags);
    free(defaults);
    return config;
}

/* ... then the data's vocabulary and (unless given) room for its longest
 * name, or for a window of running text. */
static tf_config finish_config(const tr_session *s, cJSON *config, const cJSON *given,
                               const trt_text *t)
{
    tf_config c;
    int need = t->on ? trt_window(t, s) : longest_name(s) + 2;
    trc_config_fresh(s, config, given, "max_len", need);
    trt_config(t, s, config, given);
    char *text = trc_config_finish(s, config, given);
    if (tf_config_from_json(&c, text)) trc_config_error(s);
    if (t->on && need > c.max_len)
        cli_die("--window %d is longer than max_len %d", need, c.max_len);
    if (!t->on && need - 1 > c.max_len)
        cli_die("the longest name has %d characters: max_len %d leaves room for %d",
                need - 2, c.max_len, c.max_len - 1);
    free(text);
    return c;
}

static tensor *loss_fn(void *impl, ag_tape *t, const ds_batch *b) { return tf_loss(impl, t, b); }

/* On running text: no state to carry, each window afresh. */
static tensor *loss_windowed(void *impl, ag_tape *t, const ds_batch *b, const float *h_in,
                             float *h_out)
{
    return tf_loss(impl, t, b);
}

static char *config_json(const void *impl)
{
    char *json = NULL;
    tf_config_to_json(&((const tf_model *)impl)->c, &json);
    return json;
}

int main(int argc, char **argv)
{
    cli_init("transformer-train", argv);
    tr_options o;
    tr_options_init(&o, TF_KIND, "transformer.safetensors");
    o.steps = 10000;   /* the notebooks' Transformer recipe */
    static trt_text text;  /* static: an exit on an error leaves nothing unreachable */
    static tr_session s;
    cJSON *given = trc_parse(argc, argv, &o, flags, usage);
    trt_take(&text, given, &o);
    trc_check_args(&o, argc, argv, optind);
    check_heads(given);

    trc_open(&s, &o);
    trt_check_resume(&text, &s);
    cJSON *config = start_config(&s, given);
    if (text.on) trt_load(&text, &s);
    else trc_load_names(&s);
    tf_config cfg = finish_config(&s, config, given, &text);
    cJSON_Delete(given);

    static tf_model net;
    if (tf_init(&net, &cfg)) cli_die_err();
    rng init;
    rng_seed(&init, s.o.seed);
    tf_init_weights(&net, &init);

    tr_model m = { .kind = TF_KIND, .params = &net.p, .impl = &net,
                   .loss = loss_fn, .config_json = config_json,
                   .soft_targets = true, .replica_new = tf_replica_new,
                   .replica_free = tf_replica_free };
    tr_source src;
    if (text.on) {
        stm_model sm = { .kind = TF_KIND, .params = &net.p, .impl = &net,
                         .loss_state = loss_windowed, .config_json = config_json };
        trt_start(&text, &s, &sm, &m, &src);
    }
    err_code e = trc_run(&s, &m, text.on ? &src : NULL);
    tr_close(&s);
    trt_free(&text);
    tf_free(&net);
    return trc_exit_status(e);
}
