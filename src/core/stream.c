/* stream.c - running text as a training source; see stream.h. */
#include "stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the corpus ---------------------------------------------------------- */

static err_code vocab_copy(txt_vocab *dst, const txt_vocab *src)
{
    dst->cp = malloc((size_t)src->size * sizeof *dst->cp);
    if (!dst->cp) return err_set(ERR_NOMEM, "out of memory");
    memcpy(dst->cp, src->cp, (size_t)src->size * sizeof *dst->cp);
    dst->size = src->size;
    return ERR_OK;
}

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

/* Tokens (n, malloc'ed) of code points cp; an unknown character names path. */
static err_code encode(const txt_vocab *v, const char *path, const int32_t *cp, size_t n, int **tok)
{
    *tok = malloc((n ? n : 1) * sizeof **tok);
    if (!*tok) return err_set(ERR_NOMEM, "out of memory");
    err_code rc = txt_vocab_encode(v, cp, n, *tok);
    return rc ? err_prefix(rc, path) : ERR_OK;
}

/* The last 10% of the training tokens become the validation stream. */
static err_code split_off_val(stm_corpus *c)
{
    c->n_val = c->n_train / 10;
    c->n_train -= c->n_val;
    c->val = malloc((c->n_val ? c->n_val : 1) * sizeof *c->val);
    if (!c->val) return err_set(ERR_NOMEM, "out of memory");
    if (c->n_val) memcpy(c->val, c->train + c->n_train, c->n_val * sizeof *c->val);
    return ERR_OK;
}

err_code stm_corpus_load(stm_corpus *c, const char *path, const char *val_path,
                         const txt_vocab *vocab)
{
    memset(c, 0, sizeof *c);
    int32_t *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    err_code rc = txt_read_stream(path, &a, &na);
    if (!rc && val_path) rc = txt_read_stream(val_path, &b, &nb);
    if (!rc) rc = vocab ? vocab_copy(&c->vocab, vocab) : vocab_of(&c->vocab, a, na, b, nb);
    if (!rc) rc = encode(&c->vocab, path, a, na, &c->train);
    c->n_train = na;
    if (!rc) rc = val_path ? encode(&c->vocab, val_path, b, nb, &c->val) : split_off_val(c);
    if (val_path) c->n_val = nb;
    if (!rc && c->n_val < 2)
        rc = err_set(ERR_ARG, "%s: the validation stream is too short", val_path ? val_path : path);
    free(a);
    free(b);
    if (rc) stm_corpus_free(c);
    return rc;
}

void stm_corpus_free(stm_corpus *c)
{
    txt_vocab_free(&c->vocab);
    free(c->train);
    free(c->val);
    memset(c, 0, sizeof *c);
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
    s->state = calloc(state_floats(m, batch_size), sizeof *s->state);
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

tr_model stm_tr_model(stm_source *s)
{
    return (tr_model){ .kind = s->m.kind, .params = s->m.params, .impl = s,
                       .loss = carried_loss, .config_json = config_json };
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
    const stm_source *s = ctx;
    *loss_sum = 0;
    *n_targets = 0;
    int B = (size_t)batch_size < s->c->n_val - 1 ? batch_size : (int)(s->c->n_val - 1);
    stm_tracks k = { 0 };
    ds_batch b = { 0 };
    float *state = malloc(state_floats(&s->m, B) * sizeof *state);
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
    if (!rc) rc = ck_put(w, "source.state", CK_F32, 3, shape, s->state);
    return rc;
}

static err_code load(void *ctx, const ck_file *f)
{
    stm_source *s = ctx;
    const char *pos = ck_meta(f, "source.pos"), *win = ck_meta(f, "source.window");
    const int64_t shape[3] = { s->m.state_layers, s->tracks.B, s->m.state_width };
    const float *state;
    char *end = NULL;
    size_t p = pos ? strtoull(pos, &end, 10) : 0;
    if (!pos || *end || p > stm_n_windows(&s->tracks, s->window))
        return err_set(ERR_FORMAT, "no valid running-text position (source.pos)");
    if (!win || atoi(win) != s->window)
        return err_set(ERR_ARG, "the checkpoint was trained with --window %s, not %d",
                       win ? win : "?", s->window);
    if (ck_get_f32(f, "source.state", 3, shape, &state))
        return err_set(ERR_ARG, "the checkpoint carries no state for %d tracks: keep its "
                       "--batch-size and --text file", s->tracks.B);
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
