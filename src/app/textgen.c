/* textgen.c - running text from and under any model; see textgen.h. */
#include "textgen.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "stream.h"
#include "text.h"

bool tg_is_text_model(const mdl *m) { return stm_is_text_model(&m->file); }

static err_code out_of_memory(void) { return err_set(ERR_NOMEM, "out of memory"); }

/* Tokens (*tok, *n, malloc'ed) of code points cp (n_cp) under m's tokenizer;
 * an unknown character names `what`. */
static err_code tokenize(const mdl *m, const char *what, const int32_t *cp, size_t n_cp, int **tok,
                         size_t *n)
{
    int *chars = malloc((n_cp ? n_cp : 1) * sizeof *chars);
    if (!chars) return out_of_memory();
    err_code rc = txt_vocab_encode(&m->vocab, cp, n_cp, chars);
    if (rc) rc = err_set(rc, "%s: %s", what, err_msg());
    else rc = bpe_encode(&m->tokens, chars, n_cp, tok, n);
    free(chars);
    return rc;
}

/* ---- a stream fed token by token ------------------------------------------ */

/* The tokens fed so far, and where the model is in its window. */
typedef struct feeder {
    mdl_state *st;
    int        L;           /* the model's positions; 0 = unbounded */
    int        pos;         /* tokens fed since the model's start */
    int       *hist;        /* the last tokens fed (the window), L of them at most */
    int        n_hist;
} feeder;

static err_code feeder_init(feeder *f, mdl_state *st)
{
    *f = (feeder){ .st = st, .L = mdl_max_len(st->m) };
    f->hist = malloc((size_t)(f->L > 0 ? f->L : 1) * sizeof *f->hist);
    mdl_start(st);
    return f->hist ? ERR_OK : out_of_memory();
}

/* Feed tok, sliding the window when the model's positions are full: the
 * model restarts on the last L tokens.  logits: the next token's. */
static void feed_sliding(feeder *f, int tok, float *logits)
{
    if (f->L <= 0) {
        mdl_next(f->st, tok, logits);
        return;
    }
    if (f->n_hist == f->L) memmove(f->hist, f->hist + 1, (size_t)--f->n_hist * sizeof *f->hist);
    f->hist[f->n_hist++] = tok;
    if (f->pos == f->L) {
        mdl_start(f->st);
        for (int i = 0; i < f->n_hist; i++) mdl_next(f->st, f->hist[i], logits);
        return;
    }
    mdl_next(f->st, tok, logits);
    f->pos++;
}

/* Feed tok in windows of L tokens, each afresh (as the trainers evaluate). */
static void feed_windowed(feeder *f, int tok, float *logits)
{
    if (f->L > 0 && f->pos == f->L) {
        mdl_start(f->st);
        f->pos = 0;
    }
    mdl_next(f->st, tok, logits);
    f->pos++;
}

/* ---- sampling ------------------------------------------------------------- */

/* Print up to *left characters of token t; *left decreases. */
static void put_token(const bpe *b, int t, long *left, FILE *out)
{
    char utf8[8];
    for (size_t i = 0; i < bpe_token_chars(b, t) && *left > 0; i++, --*left) {
        txt_encode_cp(b->cp[b->start[t] + i], utf8);
        fputs(utf8, out);
    }
}

/* The tokens to start from: --prefix's, else a newline, else <SOS>. */
static err_code start_tokens(const mdl *m, const gen_options *o, int **tok, size_t *n)
{
    if (o->prefix) {
        int32_t *cp;
        size_t n_cp;
        err_code rc = txt_decode(o->prefix, &cp, &n_cp);
        if (!rc) rc = tokenize(m, "--prefix", cp, n_cp, tok, n);
        free(cp);
        if (!rc && !*n) rc = err_set(ERR_ARG, "--prefix is empty");
        return rc;
    }
    int newline = txt_vocab_token(&m->vocab, '\n');
    *tok = malloc(sizeof **tok);
    if (!*tok) return out_of_memory();
    **tok = newline >= 0 ? newline : TOK_SOS;
    *n = 1;
    return ERR_OK;
}

err_code tg_sample(mdl_state *st, const gen_options *o, FILE *out)
{
    const mdl *m = st->m;
    int V = mdl_vocab_size(m), *start = NULL;
    size_t n_start = 0;
    feeder f = { 0 };
    float *logits = malloc(3 * (size_t)V * sizeof *logits);   /* logits, sampling scratch */
    err_code rc = logits ? start_tokens(m, o, &start, &n_start) : out_of_memory();
    if (!rc) rc = feeder_init(&f, st);
    for (size_t i = 0; !rc && i < n_start; i++) feed_sliding(&f, start[i], logits);
    if (!rc && o->prefix) fputs(o->prefix, out);
    rng r;
    rng_seed(&r, o->seed);
    for (long left = o->chars; !rc && left > 0 && !ferror(out);) {
        logits[TOK_PAD] = logits[TOK_SOS] = logits[TOK_EOS] = -INFINITY;
        int t = smp_sample(logits, V, &o->smp, &r, logits + V);
        if (t < 0) {
            rc = err_set(ERR_ARG, "the model gives probability 0 to every token after %ld "
                         "characters", o->chars - left);
            break;
        }
        put_token(&m->tokens, t, &left, out);
        feed_sliding(&f, t, logits);
    }
    if (!rc) fputc('\n', out);
    free(f.hist);
    free(start);
    free(logits);
    return rc;
}

/* ---- scoring -------------------------------------------------------------- */

err_code tg_score(mdl_state *st, const gen_options *o, FILE *out, FILE *info)
{
    const mdl *m = st->m;
    const char *name = strcmp(o->score, "-") ? o->score : "standard input";
    int32_t *cp = NULL;
    int *tok = NULL;
    size_t n_cp = 0, n = 0;
    err_code rc = txt_read_stream(o->score, &cp, &n_cp);
    if (!rc) stm_strip_gutenberg(cp, &n_cp);
    if (!rc) rc = tokenize(m, name, cp, n_cp, &tok, &n);
    free(cp);
    if (!rc && n < 2) rc = err_set(ERR_ARG, "%s: fewer than 2 tokens to score", name);
    int V = mdl_vocab_size(m);
    float *logits = rc ? NULL : malloc((size_t)V * sizeof *logits);
    feeder f = { 0 };
    if (!rc) rc = logits ? feeder_init(&f, st) : out_of_memory();
    double nll = 0;
    size_t chars = 0;
    for (size_t i = 0; !rc && i + 1 < n; i++) {
        feed_windowed(&f, tok[i], logits);
        smp_log_softmax(logits, V, logits);   /* the whole softmax, as the trainers' loss */
        nll -= logits[tok[i + 1]];
        chars += bpe_token_chars(&m->tokens, tok[i + 1]);
    }
    if (!rc) {
        fprintf(out, "tokens\tchars\ttotal_loss\tloss_per_token\tloss_per_char\n");
        fprintf(out, "%zu\t%zu\t%.6f\t%.6f\t%.6f\n", n - 1, chars, nll, nll / (double)(n - 1),
                nll / (double)chars);
        fprintf(info, "mean loss: %.6f nats/char over %zu characters (%.6f nats/token)\n",
                nll / (double)chars, chars, nll / (double)(n - 1));
    }
    free(f.hist);
    free(logits);
    free(tok);
    return rc;
}
