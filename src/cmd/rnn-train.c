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
#include "trcli.h"

enum { DEFAULT_WINDOW = 128, MAX_WINDOW = 1 << 16 };

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

/* ---- running text --------------------------------------------------------- */

/* Tracks of a token stream: track b predicts tok[start[b] + i + 1] from
 * tok[start[b] + i] for i < len[b]. */
typedef struct tracks {
    int    B;
    size_t *start, *len;
    size_t longest;
} tracks;

/* Split the n - 1 (input, target) pairs of a stream into B tracks, the
 * first n_pairs % B one pair longer, so every pair is in exactly one. */
static err_code tracks_init(tracks *k, size_t n, int B)
{
    size_t pairs = n > 1 ? n - 1 : 0;
    if (pairs < (size_t)B)
        return err_set(ERR_ARG, "a stream of %zu characters is too short for %d tracks", n, B);
    k->B = B;
    k->start = malloc((size_t)B * sizeof *k->start);
    k->len = malloc((size_t)B * sizeof *k->len);
    if (!k->start || !k->len) return err_set(ERR_NOMEM, "out of memory");
    size_t base = pairs / (size_t)B, extra = pairs % (size_t)B, at = 0;
    for (int b = 0; b < B; b++) {
        k->start[b] = at;
        k->len[b] = base + ((size_t)b < extra);
        at += k->len[b];
    }
    k->longest = base + (extra > 0);
    return ERR_OK;
}

static void tracks_free(tracks *k)
{
    free(k->start);
    free(k->len);
}

/* The (B, T) batch of window w (characters w*W .. w*W + W - 1 of each
 * track), <pad> past a track's end; T = the longest row. */
static err_code fill_window(ds_batch *b, const int *tok, const tracks *k, size_t w, int W)
{
    size_t from = w * (size_t)W;
    int T = k->longest - from < (size_t)W ? (int)(k->longest - from) : W;
    if (b->cap_B < k->B || b->cap_T < T) {
        free(b->x);
        free(b->y);
        b->x = calloc((size_t)k->B * (size_t)T, sizeof *b->x);
        b->y = calloc((size_t)k->B * (size_t)T, sizeof *b->y);
        if (!b->x || !b->y) return err_set(ERR_NOMEM, "out of memory for a batch");
        b->cap_B = k->B;
        b->cap_T = T;
    }
    b->B = k->B;
    b->T = T;
    b->n_tokens = 0;
    for (int r = 0; r < k->B; r++) {
        int *x = b->x + (size_t)r * T, *y = b->y + (size_t)r * T;
        size_t have = k->len[r] > from ? k->len[r] - from : 0;
        int n = have < (size_t)T ? (int)have : T;
        const int *src = tok + k->start[r] + from;
        for (int i = 0; i < n; i++) {
            x[i] = src[i];
            y[i] = src[i + 1];
        }
        for (int i = n; i < T; i++) x[i] = y[i] = TOK_PAD;
        b->n_tokens += (size_t)n;
    }
    return ERR_OK;
}

static size_t n_windows(const tracks *k, int W) { return (k->longest + (size_t)W - 1) / (size_t)W; }

/* The trainer: the model, and for running text the streams and the states
 * the next loss call starts from and carries to. */
typedef struct trainer {
    rnn_model   net;
    /* running text */
    txt_vocab   vocab;
    int        *train_tok, *val_tok;
    size_t      n_train, n_val;
    int         window;
    tracks      train_tracks;
    size_t      pos;            /* windows of the current pass already trained */
    float      *state;          /* (n_layers, B, d) carried training state */
    const float *h_in;          /* state of the next loss call (NULL = h0) */
    float      *h_out;
} trainer;

static tensor *loss_fn(void *impl, ag_tape *t, const ds_batch *b)
{
    trainer *tr = impl;
    return rnn_loss_state(&tr->net, t, b, tr->h_in, tr->h_out);
}

static char *config_json(const void *impl)
{
    char *json = NULL;
    rnn_config_to_json(&((const trainer *)impl)->net.c, &json);
    return json;
}

static size_t state_floats(const trainer *tr, int B)
{
    return (size_t)tr->net.c.n_layers * (size_t)B * (size_t)tr->net.c.d_model;
}

static err_code text_next(void *ctx, rng *r, int batch_size, ds_batch *b)
{
    (void)r;            /* the walk is deterministic */
    (void)batch_size;   /* = the number of tracks */
    trainer *tr = ctx;
    if (tr->pos == n_windows(&tr->train_tracks, tr->window)) tr->pos = 0;   /* a new pass */
    tr->h_in = tr->pos ? tr->state : NULL;
    tr->h_out = tr->state;
    return fill_window(b, tr->train_tok, &tr->train_tracks, tr->pos++, tr->window);
}

static err_code text_eval(void *ctx, const tr_model *m, ag_tape *t, int batch_size,
                          double *loss_sum, size_t *n_targets)
{
    trainer *tr = ctx;
    *loss_sum = 0;
    *n_targets = 0;
    int B = (size_t)batch_size < tr->n_val - 1 ? batch_size : (int)(tr->n_val - 1);
    tracks k = { 0 };
    ds_batch b = { 0 };
    float *state = malloc(state_floats(tr, B) * sizeof *state);
    err_code rc = state ? tracks_init(&k, tr->n_val, B) : err_set(ERR_NOMEM, "out of memory");
    const float *saved_in = tr->h_in;
    float *saved_out = tr->h_out;
    for (size_t w = 0; !rc && w < n_windows(&k, tr->window); w++) {
        rc = fill_window(&b, tr->val_tok, &k, w, tr->window);
        if (rc) break;
        tr->h_in = w ? state : NULL;
        tr->h_out = state;
        ag_reset(t);
        tensor *loss = m->loss(m->impl, t, &b);
        if (!loss) {
            rc = ERR_ARG;
            break;
        }
        *loss_sum += (double)loss->data[0] * (double)b.n_tokens;
        *n_targets += b.n_tokens;
    }
    tr->h_in = saved_in;
    tr->h_out = saved_out;
    ds_batch_free(&b);
    tracks_free(&k);
    free(state);
    return rc;
}

/* The walk's position and the carried state, so --resume continues exactly. */
static err_code text_save(void *ctx, ck_writer *w)
{
    trainer *tr = ctx;
    char num[2][32];
    snprintf(num[0], sizeof num[0], "%zu", tr->pos);
    snprintf(num[1], sizeof num[1], "%d", tr->window);
    const int64_t shape[3] = { tr->net.c.n_layers, tr->train_tracks.B, tr->net.c.d_model };
    err_code rc = ck_put_meta(w, "source.pos", num[0]);
    if (!rc) rc = ck_put_meta(w, "source.window", num[1]);
    if (!rc) rc = ck_put(w, "source.state", CK_F32, 3, shape, tr->state);
    return rc;
}

static err_code text_load(void *ctx, const ck_file *f)
{
    trainer *tr = ctx;
    const char *pos = ck_meta(f, "source.pos"), *win = ck_meta(f, "source.window");
    const int64_t shape[3] = { tr->net.c.n_layers, tr->train_tracks.B, tr->net.c.d_model };
    const float *state;
    char *end = NULL;
    size_t p = pos ? strtoull(pos, &end, 10) : 0;
    if (!pos || *end || p > n_windows(&tr->train_tracks, tr->window))
        return err_set(ERR_FORMAT, "no valid running-text position (source.pos)");
    if (!win || atoi(win) != tr->window)
        return err_set(ERR_ARG, "the checkpoint was trained with --window %s, not %d",
                       win ? win : "?", tr->window);
    if (ck_get_f32(f, "source.state", 3, shape, &state))
        return err_set(ERR_ARG, "the checkpoint carries no state for %d tracks: keep its "
                       "--batch-size and --text file", tr->train_tracks.B);
    memcpy(tr->state, state, state_floats(tr, tr->train_tracks.B) * sizeof *state);
    tr->pos = p;
    return ERR_OK;
}

/* Read one stream and encode it with v. */
static err_code encode_stream(const char *path, const txt_vocab *v, int **tok, size_t *n)
{
    int32_t *cp = NULL;
    err_code rc = txt_read_stream(path, &cp, n);
    if (!rc && !(*tok = malloc((*n ? *n : 1) * sizeof **tok)))
        rc = err_set(ERR_NOMEM, "out of memory");
    if (!rc && (rc = txt_vocab_encode(v, cp, *n, *tok))) {
        char msg[512];   /* err_set formats into the buffer err_msg points at */
        snprintf(msg, sizeof msg, "%s", err_msg());
        rc = err_set(rc, "%s: %s", path, msg);
    }
    free(cp);
    return rc;
}

/* The vocabulary (the checkpoint's on --resume, else the streams'
 * characters) and the train / validation token streams. */
static err_code load_text(tr_session *s, trainer *tr, const char *path, const char *val_path)
{
    err_code rc;
    if (s->resuming) {
        rc = txt_vocab_from_json(&tr->vocab, ck_meta(&s->resume, "vocab"));
        if (rc) return err_set(rc, "%s: no valid vocabulary", s->o.resume_path);
    } else {
        int32_t *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        rc = txt_read_stream(path, &a, &na);
        if (!rc && val_path) rc = txt_read_stream(val_path, &b, &nb);
        int32_t *all = rc ? NULL : realloc(a, (na + nb + 1) * sizeof *a);
        if (!rc && !all) rc = err_set(ERR_NOMEM, "out of memory");
        if (!rc) {
            a = all;
            if (nb) memcpy(a + na, b, nb * sizeof *b);
            rc = txt_vocab_build(&tr->vocab, a, na + nb);
        }
        free(a);
        free(b);
        if (rc) return rc;
    }
    int *tok = NULL;
    size_t n = 0;
    if ((rc = encode_stream(path, &tr->vocab, &tok, &n))) return rc;
    if (val_path) {
        tr->train_tok = tok;
        tr->n_train = n;
        rc = encode_stream(val_path, &tr->vocab, &tr->val_tok, &tr->n_val);
    } else {   /* the last 10% validates; both parts are whole streams */
        size_t n_val = n / 10;
        tr->train_tok = tok;
        tr->n_train = n - n_val;
        tr->val_tok = malloc((n_val ? n_val : 1) * sizeof *tr->val_tok);
        if (!tr->val_tok) return err_set(ERR_NOMEM, "out of memory");
        memcpy(tr->val_tok, tok + tr->n_train, n_val * sizeof *tok);
        tr->n_val = n_val;
    }
    if (rc) return rc;
    if (tr->n_val < 2)
        return err_set(ERR_ARG, "%s: the validation stream is too short", val_path ? val_path : path);
    s->vocab = &tr->vocab;
    return ERR_OK;
}

static void trainer_free(trainer *tr)
{
    rnn_free(&tr->net);
    txt_vocab_free(&tr->vocab);
    free(tr->train_tok);
    free(tr->val_tok);
    tracks_free(&tr->train_tracks);
    free(tr->state);
}

/* ---- main ----------------------------------------------------------------- */

static const char *const cells[] = { "rnn", "gru", NULL };

static const trc_flag flags[] = {
    TRC_WORD_FLAG("cell", "cell", cells),
    TRC_INT_FLAG("d-model", "d_model", 1, RNN_MAX_DIM),
    TRC_INT_FLAG("layers", "n_layers", 1, RNN_MAX_LAYERS),
    TRC_REAL_FLAG("dropout", "dropout", 0, 0.99),
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
    cJSON *config = trc_config(s, defaults, given);
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
    trc_config_fresh(s, config, given, "vocab_size", s->vocab->size);
    char *json = trc_config_text(config);
    if (rnn_config_from_json(&c, json)) cli_die("%s: %s", s->resuming ? s->o.resume_path : "config", err_msg());
    free(json);
    cJSON_Delete(config);
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
    static trainer tr;
    trc_open(&s, &o);
    cJSON *config = start_config(&s, given, text != NULL);
    if (text && load_text(&s, &tr, o.data, s.o.val_data)) cli_die_err();
    if (!text) trc_load_names(&s);
    rnn_config cfg = finish_config(&s, config, given);
    cJSON_Delete(given);
    if (rnn_init(&tr.net, &cfg)) cli_die_err();
    rng init;
    rng_seed(&init, s.o.seed);
    rnn_init_weights(&tr.net, &init);

    tr_source text_src = { .ctx = &tr, .next = text_next, .eval = text_eval, .save = text_save,
                       .load = text_load };
    if (text) {
        tr.window = window ? window : DEFAULT_WINDOW;
        if (s.resuming && !window) {   /* the checkpoint's window */
            const char *w = ck_meta(&s.resume, "source.window");
            if (w && atoi(w) > 0 && atoi(w) <= MAX_WINDOW) tr.window = atoi(w);
        }
        if (tracks_init(&tr.train_tracks, tr.n_train, s.o.batch_size)) cli_die_err();
        tr.state = calloc(state_floats(&tr, s.o.batch_size), sizeof *tr.state);
        if (!tr.state) cli_die("out of memory");
    }

    tr_model m = { .kind = RNN_KIND, .params = &tr.net.p, .impl = &tr,
                   .loss = loss_fn, .config_json = config_json };
    err_code e = trc_run(&s, &m, text ? &text_src : NULL);
    tr_close(&s);
    trainer_free(&tr);
    return trc_exit_status(e);
}
