/* stream.c - running text as a training source; see stream.h. */
#include "stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the corpus ---------------------------------------------------------- */

/* The characters of both streams, a (na) then b (nb). */
static err_code vocab_of(txt_vocab *v, const int32_t *a, size_t na, const int32_t *b, size_t nb)
{
    int32_t *all = malloc((na + nb + 1) * sizeof *all);
    if (!all) return err_set(ERR_NOMEM, "out of memory");
    if (na) memcpy(all, a, na * sizeof *a);
    if (nb) memcpy(all + na, b, nb * sizeof *b);
    err_code rc = txt_vocab_build(v, all, na + nb);
    free(all);
    return rc;
}

/* Character tokens (n, malloc'ed) of code points cp; an unknown character names path. */
static err_code encode(const txt_vocab *v, const char *path, const int32_t *cp, size_t n, int **tok)
{
    *tok = malloc((n ? n : 1) * sizeof **tok);
    if (!*tok) return err_set(ERR_NOMEM, "out of memory");
    err_code rc = txt_vocab_encode(v, cp, n, *tok);
    return rc ? err_prefix(rc, path) : ERR_OK;
}

/* ---- Project Gutenberg ---------------------------------------------------- */

/* Whether the line starting at cp[i] is "***", spaces, then word. */
static bool is_marker(const int32_t *cp, size_t n, size_t i, const char *word)
{
    if (i + 3 > n || cp[i] != '*' || cp[i + 1] != '*' || cp[i + 2] != '*') return false;
    for (i += 3; i < n && cp[i] == ' '; i++) continue;
    for (; *word; word++, i++)
        if (i >= n || cp[i] != (unsigned char)*word) return false;
    return true;
}

/* The start of the line after the one holding cp[i] (n when it is the last). */
static size_t next_line(const int32_t *cp, size_t n, size_t i)
{
    while (i < n && cp[i] != '\n') i++;
    return i < n ? i + 1 : n;
}

int stm_strip_gutenberg(int32_t *cp, size_t *n)
{
    size_t from = 0, to = *n;
    int found = 0;
    for (size_t i = 0; i < *n; i = next_line(cp, *n, i))
        if (is_marker(cp, *n, i, "START OF")) {
            from = next_line(cp, *n, i);
            found++;
            break;
        }
    for (size_t i = from; i < *n; i = next_line(cp, *n, i))
        if (is_marker(cp, *n, i, "END OF")) {
            to = i;
            found++;
            break;
        }
    memmove(cp, cp + from, (to - from) * sizeof *cp);
    *n = to - from;
    return found;
}

/* ---- the corpus ------------------------------------------------------------ */

/* One file's code points, its Gutenberg header and footer dropped unless keep. */
static err_code read_text(const char *path, bool keep, int32_t **cp, size_t *n)
{
    err_code rc = txt_read_stream(path, cp, n);
    if (!rc && !keep) stm_strip_gutenberg(*cp, n);
    return rc;
}

/* The books' code points joined, in order, into *all (the caller frees it). */
static err_code read_books(const stm_text_options *o, int32_t **all, size_t *n_all)
{
    if (o->n_books < 1) return err_set(ERR_ARG, "no running text given");
    for (int i = 0; i < o->n_books; i++) {
        int32_t *cp;
        size_t n;
        err_code rc = read_text(o->books[i], o->keep_gutenberg, &cp, &n);
        if (rc) return rc;
        int32_t *grown = realloc(*all, (*n_all + n + 1) * sizeof *grown);
        if (grown) {
            memcpy(grown + *n_all, cp, n * sizeof *cp);
            *all = grown;
            *n_all += n;
        }
        free(cp);
        if (!grown) return err_set(ERR_NOMEM, "out of memory");
    }
    return ERR_OK;
}

/* The validation code points: the file held out, or the last 10% of a (*na). */
static err_code read_val(const stm_text_options *o, int32_t *a, size_t *na, int32_t **b, size_t *nb)
{
    if (o->val_path) return read_text(o->val_path, o->keep_gutenberg, b, nb);
    *nb = *na / 10;
    *na -= *nb;
    *b = malloc((*nb ? *nb : 1) * sizeof **b);
    if (!*b) return err_set(ERR_NOMEM, "out of memory");
    if (*nb) memcpy(*b, a + *na, *nb * sizeof **b);
    return ERR_OK;
}

/* The character vocabulary of tokenizer t. */
static err_code vocab_of_bpe(txt_vocab *v, const bpe *t)
{
    v->cp = malloc((size_t)t->n_base * sizeof *v->cp);
    if (!v->cp) return err_set(ERR_NOMEM, "out of memory");
    v->size = t->n_base;
    for (int i = 0; i < t->n_base; i++) v->cp[i] = i < TOK_FIRST ? -1 : t->cp[t->start[i]];
    return ERR_OK;
}

/* A copy of tokenizer t for vocabulary v (through its JSON form). */
static err_code bpe_copy(bpe *dst, const txt_vocab *v, const bpe *t)
{
    char *json = NULL;
    err_code rc = bpe_to_json(t, &json);
    if (!rc) rc = bpe_from_json(dst, v, json);
    free(json);
    return rc;
}

/* The tokenizer: the given one, or the characters with merges learned
 * from the training characters (n) when o asks for subwords. */
static err_code tokenizer(stm_corpus *c, const stm_text_options *o, const int *chars, size_t n)
{
    if (o->given) {
        c->subwords = o->given->n_merges > 0;
        return bpe_copy(&c->tok, &c->vocab, o->given);
    }
    c->subwords = o->vocab_size > 0;
    err_code rc = bpe_init(&c->tok, &c->vocab);
    if (!rc && c->subwords) rc = bpe_learn(&c->tok, chars, n, o->vocab_size);
    return rc;
}

/* Characters predicted in the validation stream: all but the first token's. */
static size_t predicted_chars(const stm_corpus *c)
{
    size_t n = 0;
    for (size_t i = 1; i < c->n_val; i++) n += bpe_token_chars(&c->tok, c->val[i]);
    return n;
}

/* Tokenize the training (a, na) and validation (b, nb) code points. */
static err_code tokenize(stm_corpus *c, const stm_text_options *o, const int32_t *a, size_t na,
                         const int32_t *b, size_t nb)
{
    const char *train_name = o->n_books == 1 ? o->books[0] : "the training books";
    const char *val_name = o->val_path ? o->val_path : train_name;
    int *ca = NULL, *cb = NULL;
    err_code rc = o->given ? vocab_of_bpe(&c->vocab, o->given) : vocab_of(&c->vocab, a, na, b, nb);
    if (!rc) rc = encode(&c->vocab, train_name, a, na, &ca);
    if (!rc) rc = encode(&c->vocab, val_name, b, nb, &cb);
    if (!rc) rc = tokenizer(c, o, ca, na);
    if (!rc) rc = bpe_encode(&c->tok, ca, na, &c->train, &c->n_train);
    if (!rc) rc = bpe_encode(&c->tok, cb, nb, &c->val, &c->n_val);
    if (!rc && c->n_val < 2)
        rc = err_set(ERR_ARG, "%s: the validation stream is too short", val_name);
    if (!rc) c->val_chars = predicted_chars(c);
    free(ca);
    free(cb);
    return rc;
}

err_code stm_corpus_load(stm_corpus *c, const stm_text_options *o)
{
    memset(c, 0, sizeof *c);
    int32_t *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    err_code rc = read_books(o, &a, &na);
    if (!rc) rc = read_val(o, a, &na, &b, &nb);
    if (!rc) rc = tokenize(c, o, a, na, b, nb);
    free(a);
    free(b);
    if (rc) stm_corpus_free(c);
    return rc;
}

void stm_corpus_free(stm_corpus *c)
{
    txt_vocab_free(&c->vocab);
    bpe_free(&c->tok);
    free(c->train);
    free(c->val);
    memset(c, 0, sizeof *c);
}

/* ---- the tokenizer in checkpoints ------------------------------------------ */

err_code stm_put_tokenizer(ck_writer *w, const stm_corpus *c)
{
    err_code rc = ck_put_meta(w, "tokenizer", c->subwords ? "bpe" : "char");
    char *merges = NULL;
    if (!rc && c->subwords) rc = bpe_to_json(&c->tok, &merges);
    if (!rc && c->subwords) rc = ck_put_meta(w, "merges", merges);
    free(merges);
    return rc;
}

bool stm_is_text_model(const ck_file *f) { return ck_meta(f, "tokenizer") != NULL; }

err_code stm_read_tokenizer(const ck_file *f, const char *path, bpe *b)
{
    txt_vocab v;
    const char *kind = ck_meta(f, "tokenizer");
    err_code rc = txt_vocab_from_json(&v, ck_meta(f, "vocab"));
    if (!rc && kind && !strcmp(kind, "bpe")) rc = bpe_from_json(b, &v, ck_meta(f, "merges"));
    else if (!rc && kind && strcmp(kind, "char")) rc = err_set(ERR_FORMAT, "unknown tokenizer");
    else if (!rc) rc = bpe_init(b, &v);
    txt_vocab_free(&v);
    return rc ? err_prefix(rc, path) : ERR_OK;
}

/* ---- tracks and windows -------------------------------------------------- */

err_code stm_tracks_init(stm_tracks *k, size_t n, int B)
{
    memset(k, 0, sizeof *k);
    size_t pairs = n > 1 ? n - 1 : 0;
    if (B < 1 || pairs < (size_t)B)
        return err_set(ERR_ARG, "a stream of %zu characters is too short for %d tracks", n, B);
    k->start = malloc((size_t)B * sizeof *k->start);
    k->len = malloc((size_t)B * sizeof *k->len);
    if (!k->start || !k->len) return err_set(ERR_NOMEM, "out of memory");
    k->B = B;
    size_t base = pairs / (size_t)B, extra = pairs % (size_t)B, at = 0;
    for (int b = 0; b < B; b++) {
        k->start[b] = at;
        k->len[b] = base + ((size_t)b < extra);
        at += k->len[b];
    }
    k->longest = base + (extra > 0);
    return ERR_OK;
}

void stm_tracks_free(stm_tracks *k)
{
    free(k->start);
    free(k->len);
    memset(k, 0, sizeof *k);
}

size_t stm_n_windows(const stm_tracks *k, int W)
{
    return (k->longest + (size_t)W - 1) / (size_t)W;
}

/* Room for a (B, T) batch in b. */
static err_code reserve(ds_batch *b, int B, int T)
{
    if (b->cap_B >= B && b->cap_T >= T) return ERR_OK;
    free(b->x);
    free(b->y);
    b->x = calloc((size_t)B * (size_t)T, sizeof *b->x);
    b->y = calloc((size_t)B * (size_t)T, sizeof *b->y);
    b->cap_B = b->cap_T = 0;
    if (!b->x || !b->y) return err_set(ERR_NOMEM, "out of memory for a batch");
    b->cap_B = B;
    b->cap_T = T;
    return ERR_OK;
}

err_code stm_fill_window(ds_batch *b, const int *tok, const stm_tracks *k, size_t w, int W)
{
    size_t from = w * (size_t)W;
    int T = k->longest - from < (size_t)W ? (int)(k->longest - from) : W;
    err_code rc = reserve(b, k->B, T);
    if (rc) return rc;
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

/* ---- the source ---------------------------------------------------------- */

/* Floats of the state of B rows. */
static size_t state_floats(const stm_model *m, int B)
{
    return (size_t)m->state_layers * (size_t)B * (size_t)m->state_width;
}

err_code stm_source_init(stm_source *s, const stm_model *m, const stm_corpus *c, int window,
                         int batch_size)
{
    memset(s, 0, sizeof *s);
    s->m = *m;
    s->c = c;
    s->window = window;
    if (window < 1 || window > STM_MAX_WINDOW)
        return err_set(ERR_ARG, "a window of %d characters: give 1 to %d", window, STM_MAX_WINDOW);
    err_code rc = stm_tracks_init(&s->tracks, c->n_train, batch_size);
    if (rc) return rc;
    s->state = calloc(state_floats(m, batch_size) + 1, sizeof *s->state);   /* + 1: none */
    return s->state ? ERR_OK : err_set(ERR_NOMEM, "out of memory");
}

void stm_source_free(stm_source *s)
{
    stm_tracks_free(&s->tracks);
    free(s->state);
    s->state = NULL;
}

/* tr_model.loss: the current window from the carried state, carried on. */
static tensor *carried_loss(void *impl, ag_tape *t, const ds_batch *b)
{
    stm_source *s = impl;
    return s->m.loss_state(s->m.impl, t, b, s->h_in, s->state);
}

static char *config_json(const void *impl)
{
    const stm_source *s = impl;
    return s->m.config_json(s->m.impl);
}

static err_code put_meta(const void *impl, ck_writer *w)
{
    const stm_source *s = impl;
    return stm_put_tokenizer(w, s->c);
}

/* The last evaluation per character, beside the loop's per token. */
static err_code summary_columns(const void *impl, FILE *f)
{
    const stm_source *s = impl;
    fprintf(f, "val_tokens\tval_chars\tval_loss_per_char\n%zu\t%zu\t%.6f\n", s->c->n_val - 1,
            s->c->val_chars, s->c->val_chars ? s->val_nats / (double)s->c->val_chars : 0.0);
    return ERR_OK;
}

tr_model stm_tr_model(stm_source *s)
{
    return (tr_model){ .kind = s->m.kind, .params = s->m.params, .impl = s,
                       .loss = carried_loss, .config_json = config_json, .put_meta = put_meta,
                       .summary_columns = summary_columns };
}

static err_code next(void *ctx, rng *r, int batch_size, ds_batch *b)
{
    (void)r;            /* the walk is deterministic */
    (void)batch_size;   /* = the number of tracks */
    stm_source *s = ctx;
    if (s->pos == stm_n_windows(&s->tracks, s->window)) s->pos = 0;   /* a new pass */
    s->h_in = s->pos ? s->state : NULL;
    return stm_fill_window(b, s->c->train, &s->tracks, s->pos++, s->window);
}

/* The validation stream in min(batch_size, n_val - 1) tracks, its own state
 * carried from window to window; m is the source's own model (loss_state
 * is called directly, so the training walk's state is not touched). */
static err_code eval(void *ctx, const tr_model *m, ag_tape *t, int batch_size, double *loss_sum,
                     size_t *n_targets)
{
    (void)m;
    stm_source *s = ctx;
    *loss_sum = 0;
    *n_targets = 0;
    int B = (size_t)batch_size < s->c->n_val - 1 ? batch_size : (int)(s->c->n_val - 1);
    stm_tracks k = { 0 };
    ds_batch b = { 0 };
    float *state = malloc((state_floats(&s->m, B) + 1) * sizeof *state);
    err_code rc = state ? stm_tracks_init(&k, s->c->n_val, B) : err_set(ERR_NOMEM, "out of memory");
    for (size_t w = 0; !rc && w < stm_n_windows(&k, s->window); w++) {
        rc = stm_fill_window(&b, s->c->val, &k, w, s->window);
        if (rc) break;
        ag_reset(t);
        tensor *loss = s->m.loss_state(s->m.impl, t, &b, w ? state : NULL, state);
        if (!loss) {
            rc = ERR_ARG;
            break;
        }
        *loss_sum += (double)loss->data[0] * (double)b.n_tokens;
        *n_targets += b.n_tokens;
    }
    ds_batch_free(&b);
    stm_tracks_free(&k);
    free(state);
    s->val_nats = *loss_sum;
    return rc;
}

/* The walk's position and the carried state, so --resume continues exactly. */
static err_code save(void *ctx, ck_writer *w)
{
    const stm_source *s = ctx;
    char num[2][32];
    snprintf(num[0], sizeof num[0], "%zu", s->pos);
    snprintf(num[1], sizeof num[1], "%d", s->window);
    const int64_t shape[3] = { s->m.state_layers, s->tracks.B, s->m.state_width };
    err_code rc = ck_put_meta(w, "source.pos", num[0]);
    if (!rc) rc = ck_put_meta(w, "source.window", num[1]);
    if (!rc && s->m.state_layers) rc = ck_put(w, "source.state", CK_F32, 3, shape, s->state);
    return rc;
}

static err_code load(void *ctx, const ck_file *f)
{
    stm_source *s = ctx;
    const char *pos = ck_meta(f, "source.pos"), *win = ck_meta(f, "source.window");
    const int64_t shape[3] = { s->m.state_layers, s->tracks.B, s->m.state_width };
    const float *state = NULL;
    char *end = NULL;
    size_t p = pos ? strtoull(pos, &end, 10) : 0;
    if (!pos || *end || p > stm_n_windows(&s->tracks, s->window))
        return err_set(ERR_FORMAT, "no valid running-text position (source.pos)");
    if (!win || atoi(win) != s->window)
        return err_set(ERR_ARG, "the checkpoint was trained with --window %s, not %d",
                       win ? win : "?", s->window);
    if (s->m.state_layers && ck_get_f32(f, "source.state", 3, shape, &state))
        return err_set(ERR_ARG, "the checkpoint carries no state for %d tracks: keep its "
                       "--batch-size and --text file", s->tracks.B);
    if (s->m.state_layers)
        memcpy(s->state, state, state_floats(&s->m, s->tracks.B) * sizeof *state);
    s->pos = p;
    return ERR_OK;
}

tr_source stm_tr_source(stm_source *s)
{
    return (tr_source){ .ctx = s, .next = next, .eval = eval, .save = save, .load = load };
}

int stm_window(const ck_file *resume, int given)
{
    if (given > 0) return given;
    const char *w = ck_meta(resume, "source.window");
    if (w && atoi(w) > 0 && atoi(w) <= STM_MAX_WINDOW) return atoi(w);
    return STM_DEFAULT_WINDOW;
}
